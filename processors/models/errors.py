"""What a model adapter raises when it has no answer to give."""

from __future__ import annotations

__all__ = ["MODEL_CALL_FAILED", "ModelError", "NotRecorded"]

MODEL_CALL_FAILED = "model call failed"
"""How a PlanRejected's error begins when no model answered (as opposed to a bad plan)."""


class ModelError(Exception):
    """The model could not be asked: endpoint down, retries spent, a refused request, a reply
    that is no chat completion. The planner turns it into PlanRejected, so a run never hangs."""


class NotRecorded(LookupError):
    """A recorded planner has no recording for this run; replay must say so, not invent one."""
