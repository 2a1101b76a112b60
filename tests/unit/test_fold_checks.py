"""The fold refuses an event that cannot be the next of its run, with a named error the edge
turns into a dead letter (instead of an AssertionError that stopped the worker)."""

from __future__ import annotations

import pytest

from processors.state import FoldError, evolve, fold
from schemas.events import RunCancelled, RunStarted, ToolApproved
from tests.factories import envelope

STARTED = envelope(RunStarted(text="hi", route="default", idempotency_key="k"), run_id="r1", seq=1)
APPROVED = ToolApproved(step_id="s1", tool="send_email", input_json="{}", idempotency_key="r1/s1",
                        reason="forged", policy_version="v0")


def test_a_run_must_begin_with_run_started_at_seq_1():
    with pytest.raises(FoldError, match="begins with ToolApproved"):
        evolve(None, envelope(APPROVED, run_id="r1", seq=1))
    with pytest.raises(FoldError, match="begins at seq 4"):
        evolve(None, envelope(RunStarted(text="hi", route="default", idempotency_key="k"), run_id="r1",
                              seq=4))


def test_an_event_must_be_the_next_one_of_the_same_run():
    state = evolve(None, STARTED)
    with pytest.raises(FoldError, match="folded into run r1"):
        evolve(state, envelope(APPROVED, run_id="r2", seq=2))
    with pytest.raises(FoldError, match="has seq 3, but the next is 2"):
        evolve(state, envelope(APPROVED, run_id="r1", seq=3))
    with pytest.raises(FoldError, match="has seq 1, but the next is 2"):
        evolve(state, STARTED)  # delivered twice


def test_nothing_follows_the_end_of_a_run():
    ended = fold([STARTED, envelope(RunCancelled(reason="stop"), run_id="r1", seq=2)])
    assert ended is not None and ended.terminal
    with pytest.raises(FoldError, match="after run r1 ended"):
        evolve(ended, envelope(APPROVED, run_id="r1", seq=3))
