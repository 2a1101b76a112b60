"""How `agentlog status` and the watchdog judge a service from its heartbeat."""

from __future__ import annotations

from streams.health import judge

NOW = 1_000_000.0


def beat(**over: object) -> dict[str, object]:
    return {"pid": 42, "beat_at": NOW - 1, "progress_at": NOW - 1, "waiting_for": None, "lag": 0,
            "parked": 0, **over}


def state(doc: dict[str, object] | None, *, alive: bool = True, kafka: bool = True) -> tuple[str, str]:
    h = judge(doc, alive=alive, pid=42, now=NOW, stall_s=90, kafka_answers=kafka)
    return h.state, h.detail


def test_a_dead_process_is_down_and_one_without_a_heartbeat_is_starting():
    assert state(beat(), alive=False)[0] == "down"
    assert state(None)[0] == "starting"
    assert state(beat(pid=7))[0] == "starting"  # the heartbeat of a predecessor


def test_a_service_with_work_is_working_and_one_without_is_idle():
    assert state(beat(lag=12)) == ("working", "")
    assert state(beat(lag=0)) == ("idle", "")


def test_a_silent_main_loop_is_stalled_even_while_alive():
    # The orchestrator blocked for minutes in one call: alive, but its loop does not run.
    assert state(beat(beat_at=NOW - 400, progress_at=NOW - 400))[0] == "stalled"


def test_waiting_for_a_cluster_that_does_not_answer_is_not_stalled():
    doc = beat(progress_at=NOW - 300, waiting_for="kafka")
    assert state(doc, kafka=False) == ("waiting", "waiting for kafka")
    # The cluster answers and the service still makes no progress: a restart may help.
    assert state(doc, kafka=True)[0] == "stalled"


def test_failing_without_waiting_for_the_cluster_is_stalled_after_the_limit():
    assert state(beat(progress_at=NOW - 60, waiting_for="clickhouse"))[0] == "waiting"
    assert state(beat(progress_at=NOW - 120, waiting_for="clickhouse"))[0] == "stalled"
