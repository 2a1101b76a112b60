"""The real stack for integration tests, one per test session (see tests/stack.py), exporting its
spans to a real OpenTelemetry Collector (tests/otel_collector.py) the session starts first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.otel_collector import Collector, running_collector
from tests.stack import Stack, eventually, running_stack

__all__ = ["Stack", "eventually", "stack", "collector"]


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with running_collector(tmp_path_factory.mktemp("otel")) as c:
        yield c


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[Stack]:
    # Every service exports its spans as in production, through the standard variables; a short
    # batch delay lets the trace test read them soon after a run ends.
    with running_stack(tmp_path_factory.mktemp("agentlog-home"),
                       OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_endpoint,
                       OTEL_BSP_SCHEDULE_DELAY="200") as s:
        yield s
