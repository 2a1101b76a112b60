"""The crash suite: hundreds of runs with tickets and e-mails while every process of the stack
is killed with SIGKILL at random moments and restarted, and the broker is killed once.

Afterwards, from the log, the backends and ClickHouse themselves: every run reached a terminal
event; per run, seq is dense from 1 with no repeat; every approved ticket and e-mail call left
exactly one ticket or message; ClickHouse holds every event once. The counts are printed.

Run it alone with `make crash` (or `pytest -m crash`); AGENTLOG_CRASH_RUNS and
AGENTLOG_CRASH_SEED change its size and its random schedule.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from processors.tools.backends.mailbox import read_mailbox
from schemas.events import Event
from streams.kafka import consumer, make_codec
from tests.stack import Stack, eventually, running_stack

pytestmark = [pytest.mark.crash, pytest.mark.timeout(1500)]

SERVICES = ("orchestrator", "planner", "guard", "executor", "responder", "sink", "gateway")
RUNS = int(os.environ.get("AGENTLOG_CRASH_RUNS", "300"))
SEED = int(os.environ.get("AGENTLOG_CRASH_SEED", str(int(time.time()))))
SIDE_EFFECTS = {"create_ticket", "send_email"}


def request_text(i: int) -> str:
    """A mix of work: tickets and internal e-mails, external e-mails a person approves, questions."""
    kind = i % 10
    if kind < 5:
        return f"Open a ticket about crash check {i}, then email ops@yourcompany.com the refund policy"
    if kind < 8:
        return f"Open an urgent ticket: crash check {i} printer jam"
    if kind < 9:
        return f"Send an email to partner{i}@gmail.com about the delayed shipment."
    return f"What is our refund policy? (crash check {i})"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Short step timeouts: a request lost with a killed process is asked again soon.
    with running_stack(tmp_path_factory.mktemp("crash-home"), AGENTLOG_STEP_TIMEOUT_S="10") as s:
        yield s


@dataclass
class Chaos:
    """What the threads of the suite did, for the final report."""

    runs: dict[str, str] = field(default_factory=dict)
    """idempotency key -> run id, as the gateway answered."""
    kills: Counter[str] = field(default_factory=Counter)
    http_retries: int = 0
    approvals: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)


def _kill(stack: Stack, name: str) -> bool:
    st = stack.cli_json("status")
    pid = st["kafka"]["pid"] if name == "kafka" else st["services"][name]["pid"]
    alive = st["kafka"]["alive"] if name == "kafka" else st["services"][name]["alive"]
    if not alive or pid is None:
        return False
    os.kill(pid, signal.SIGKILL)
    return True


def _retrying(chaos: Chaos, call) -> httpx.Response:  # type: ignore[no-untyped-def]
    """Call the gateway until it answers other than with a connection error or a 5xx."""
    deadline = time.monotonic() + 300
    while True:
        try:
            response = call()
            if response.status_code < 500:
                return response
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the gateway did not answer for 300 s")
        chaos.http_retries += 1
        time.sleep(0.3)


def _submit(client: httpx.Client, chaos: Chaos, share: range) -> None:
    try:
        for i in share:
            key = f"crash-{SEED}-{i}"
            r = _retrying(chaos, lambda i=i, key=key: client.post(
                "/v1/runs", json={"text": request_text(i)}, headers={"Idempotency-Key": key}))
            assert r.status_code == 202, r.text
            chaos.runs[key] = r.json()["run_id"]
            time.sleep(0.1)
    except Exception as exc:  # reported by the test, not lost in a thread
        chaos.errors.append(f"submitter: {exc!r}")


def _approve(client: httpx.Client, chaos: Chaos) -> None:
    try:
        while not chaos.done.is_set():
            pending = _retrying(chaos, lambda: client.get("/v1/approvals"))
            for item in pending.json() if pending.status_code == 200 else []:
                r = _retrying(chaos, lambda item=item: client.post(
                    f"/v1/runs/{item['run_id']}/approve",
                    json={"approver": "crash-suite", "reason": "expected"}))
                # 409: an earlier attempt already decided it (its answer was lost with a kill).
                assert r.status_code in (202, 409), r.text
                chaos.approvals += r.status_code == 202
            time.sleep(0.5)
    except Exception as exc:
        chaos.errors.append(f"approver: {exc!r}")


def _break_things(stack: Stack, chaos: Chaos, rng: random.Random, until: threading.Event) -> None:
    """SIGKILL one process at a time at random moments, each service in turn (shuffled),
    the broker once half-way; `agentlog up` restarts whatever is down, as a process manager would."""
    order: list[str] = []
    broker_killed = False
    try:
        while not until.is_set():
            time.sleep(rng.uniform(0.3, 1.5))
            if not broker_killed and len(chaos.runs) >= RUNS // 2:
                name, broker_killed = "kafka", True
            else:
                order = order or rng.sample(SERVICES, len(SERVICES))
                name = order.pop()
            if _kill(stack, name):
                chaos.kills[name] += 1
            if name == "kafka":
                time.sleep(rng.uniform(1, 4))  # the broker stays down a while
            stack.cli("up", timeout=300)
    except Exception as exc:
        chaos.errors.append(f"chaos: {exc!r}")


def _read_log(stack: Stack, topic: str) -> list[Event]:
    settings = stack.settings
    codec = make_codec(settings)
    reader = consumer(settings, None, **{"enable.partition.eof": True})
    partitions = reader.list_topics(topic, timeout=30).topics[topic].partitions
    reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    events, at_end = [], set()
    try:
        while len(at_end) < len(partitions):
            msg = reader.poll(5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                raise AssertionError(str(msg.error()))
            events.append(codec.decode(msg.value()) if topic == settings.events_topic else msg)
    finally:
        reader.close()
    return events


def _runs(events: list[Event]) -> dict[str, list[Event]]:
    by_run: dict[str, list[Event]] = {}
    for e in events:
        by_run.setdefault(e.run_id, []).append(e)
    return by_run


def _all_ended(stack: Stack, run_ids: set[str], chaos: Chaos) -> dict[str, list[Event]] | None:
    assert not chaos.errors, (SEED, chaos.errors)  # a client gave up: no use waiting
    by_run = _runs(_read_log(stack, stack.settings.events_topic))
    ended = {r for r in run_ids if r in by_run and by_run[r][-1].is_terminal}
    return by_run if ended == run_ids else None


def test_runs_survive_random_kills_and_a_broker_restart(stack: Stack, capsys: pytest.CaptureFixture[str]):
    rng = random.Random(SEED)
    chaos = Chaos()
    client = stack.client("default")
    client.timeout = httpx.Timeout(40)
    # Four clients submit at once, each its share of the runs.
    submitters = [threading.Thread(target=_submit, args=(client, chaos, range(k, RUNS, 4)))
                  for k in range(4)]
    approver = threading.Thread(target=_approve, args=(client, chaos))
    stop_breaking = threading.Event()
    breaker = threading.Thread(target=_break_things, args=(stack, chaos, rng, stop_breaking))
    started = time.monotonic()
    for t in (*submitters, approver, breaker):
        t.start()
    for t in submitters:
        t.join()
    time.sleep(5)  # kills go on while the last runs are in flight
    stop_breaking.set()
    breaker.join()
    stack.cli("up", timeout=300)
    run_ids = set(chaos.runs.values())
    try:
        by_run = eventually(lambda: _all_ended(stack, run_ids, chaos), timeout=300,
                            what="every run to end")
    except AssertionError:
        log = _runs(_read_log(stack, stack.settings.events_topic))
        stuck = {r: [e.event_type for e in log.get(r, [])][-3:] for r in sorted(run_ids)
                 if not (log.get(r) and log[r][-1].is_terminal)}
        raise AssertionError(f"seed {SEED}: {len(stuck)} run(s) did not end, e.g. "
                             f"{dict(list(stuck.items())[:5])}; errors: {chaos.errors}") from None
    finally:
        chaos.done.set()
        approver.join()
    assert not chaos.errors, chaos.errors
    assert len(chaos.runs) == RUNS and len(run_ids) == RUNS
    assert set(SERVICES) <= set(chaos.kills) and chaos.kills["kafka"] == 1, chaos.kills

    # Every run: dense seq from 1, one start, one terminal event, and it is the last.
    statuses: Counter[str] = Counter()
    approved_keys: Counter[tuple[str, str]] = Counter()
    events = 0
    for run_id in run_ids:
        timeline = by_run[run_id]
        events += len(timeline)
        assert [e.seq for e in timeline] == list(range(1, len(timeline) + 1)), run_id
        assert sum(e.is_terminal for e in timeline) == 1 and timeline[-1].is_terminal, run_id
        assert [e.event_type for e in timeline].count("RunStarted") == 1, run_id
        statuses[timeline[-1].event_type] += 1
        for e in timeline:
            if e.event_type == "ToolApproved" and e.payload.tool in SIDE_EFFECTS:
                approved_keys[(e.payload.tool, e.payload.idempotency_key)] += 1

    # The backends themselves: one ticket or message per approved call, none without one.
    home = stack.settings.home
    with sqlite3.connect(home / "backends" / "tickets.db") as db:
        tickets = Counter(k for (k,) in db.execute("SELECT idempotency_key FROM tickets"))
    mail = Counter(m["idempotency_key"] for m in read_mailbox(str(home / "backends" / "mail")))
    want_tickets = {k for (tool, k) in approved_keys if tool == "create_ticket"}
    want_mail = {k for (tool, k) in approved_keys if tool == "send_email"}
    assert all(n == 1 for n in approved_keys.values())
    assert set(tickets) == want_tickets and all(n == 1 for n in tickets.values())
    assert set(mail) == want_mail and all(n == 1 for n in mail.values())

    # ClickHouse: every event of these runs, once.
    ids = ",".join(f"'{r}'" for r in sorted(run_ids))
    count_sql = (f"SELECT count() AS n, uniqExact(event_id) AS u FROM agent_events "
                 f"WHERE run_id IN ({ids})")
    stored = eventually(lambda: (row := stack.sql(count_sql)[0])["n"] >= events and row,
                        timeout=120, what="the sink to store every event")
    assert stored == {"n": events, "u": events}, stored
    dead = _read_log(stack, stack.settings.deadletter_topic)
    reasons = Counter(dict(m.headers() or []).get("dlq.reason", b"?").decode()[:60] for m in dead)

    with capsys.disabled():  # the counts are the suite's report: always shown
        print(f"\ncrash suite, seed {SEED}: took {time.monotonic() - started:.0f} s; "
              f"SIGKILLs: {dict(sorted(chaos.kills.items()))}")
        print(f"  runs: {len(run_ids)} submitted, ended: {dict(statuses)}")
        print(f"  events: {events} in the log, {stored['n']} rows in ClickHouse "
              f"({stored['u']} distinct event ids)")
        print(f"  tickets: {sum(tickets.values())} in the ticket store for {len(want_tickets)} "
              f"approved calls; e-mails: {sum(mail.values())} in the Maildir for {len(want_mail)}")
        # An approve sent again (the list read from ClickHouse lags) is accepted and then
        # dropped by the orchestrator: nothing waits any more.
        print(f"  approve calls accepted: {chaos.approvals}; gateway calls retried: "
              f"{chaos.http_retries}; dead letters: {len(dead)} {dict(reasons)}")
    assert statuses == Counter({"RunCompleted": RUNS}), statuses
