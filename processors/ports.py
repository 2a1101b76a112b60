"""Ports: what the decisions need from the outside world, as Protocols.

Adapters (scripted, OpenAI-compatible HTTP, recorded; the tool sandbox) live elsewhere and are
handed in by the services in `streams/`.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["PlannerModel"]


class PlannerModel(Protocol):
    """Turns a request into a plan's raw JSON text (what a model would answer)."""

    provider: str
    model: str
    prompt_version: str

    def plan(self, *, run_id: str, text: str, route: str) -> str: ...

    def usage(self, text: str, output: str) -> tuple[int, int]:
        """Input and output tokens of the call that produced `output`."""
        ...
