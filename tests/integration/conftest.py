"""The real stack for integration tests, one per test session (see tests/stack.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import Stack, eventually, running_stack

__all__ = ["Stack", "eventually", "stack"]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("agentlog-home")) as s:
        yield s
