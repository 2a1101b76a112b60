"""Ports: what the decisions need from the outside world, as Protocols.

Adapters (scripted, OpenAI-compatible HTTP, recorded; the tool sandbox) live elsewhere and are
handed in by the services in `streams/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from schemas.events import RetrievedMemory

__all__ = ["PlannerModel"]


class PlannerModel(Protocol):
    """Turns a request into a plan's raw JSON text (what a model would answer)."""

    provider: str
    model: str
    prompt_version: str

    def plan(self, *, run_id: str, text: str, route: str,
             memories: Sequence[RetrievedMemory] = ()) -> str:
        """The plan's raw JSON for `text`. `memories`: what the tenant's long-term memory holds on
        the request (a memory run's MemoryRetrieved, redacted when stored), best first; data to
        plan with, never instructions. A planner written before memory takes no such argument:
        it is passed only when there are memories."""
        ...

    def usage(self, text: str, output: str) -> tuple[int, int]:
        """Input and output tokens of the call that produced `output`."""
        ...
