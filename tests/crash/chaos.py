"""What the crash and outage suites share: clients that submit runs and approve calls over HTTP
while the stack is being broken, reading the log back, telling which process a stuck run waits
for, the final checks against the log, the backends and ClickHouse, and the printed report."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition

from processors.tools.backends.mailbox import read_mailbox
from schemas.events import Event
from streams.kafka import consumer, make_codec
from tests.stack import Stack

__all__ = [
    "SERVICES", "Chaos", "Outcome", "approve", "check_outcome", "health", "print_report", "read_events",
    "read_log", "request_text", "retrying", "submit", "wait_for_runs", "waiting_for",
]

SERVICES = ("orchestrator", "planner", "guard", "executor", "responder", "memory", "sink", "gateway")
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


@dataclass
class Chaos:
    """What the clients of a suite did, for its checks and its report."""

    patience_s: float = 300.0
    """How long a client keeps retrying a gateway that does not answer before it gives up."""
    runs: dict[str, str] = field(default_factory=dict)
    """idempotency key -> run id, as the gateway answered."""
    kills: Counter[str] = field(default_factory=Counter)
    http_retries: int = 0
    approvals: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    """Set when the approver may stop."""
    errors: list[str] = field(default_factory=list)


def retrying(chaos: Chaos, call: Callable[[], httpx.Response]) -> httpx.Response:
    """Call the gateway until it answers other than with a connection error or a 5xx."""
    deadline = time.monotonic() + chaos.patience_s
    last = "no answer"
    while True:
        try:
            response = call()
            if response.status_code < 500:
                return response
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"the gateway did not answer for {chaos.patience_s:.0f} s (last: {last})")
        chaos.http_retries += 1
        time.sleep(0.3)


def submit(client: httpx.Client, chaos: Chaos, prefix: str, share: Iterable[int], *,
           until: threading.Event | None = None, pause_s: float = 0.1) -> None:
    """POST one run per index of `share` (key `<prefix>-<i>`), each retried until accepted;
    stops early once `until` is set."""
    try:
        for i in share:
            if until is not None and until.is_set():
                return
            key = f"{prefix}-{i}"
            r = retrying(chaos, lambda i=i, key=key: client.post(
                "/v1/runs", json={"text": request_text(i)}, headers={"Idempotency-Key": key}))
            assert r.status_code == 202, r.text
            chaos.runs[key] = r.json()["run_id"]
            time.sleep(pause_s)
    except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
        chaos.errors.append(f"submitter: {exc!r}")


def approve(client: httpx.Client, chaos: Chaos) -> None:
    """Approve every parked call, as a person would, until `chaos.done`."""
    try:
        while not chaos.done.is_set():
            pending = retrying(chaos, lambda: client.get("/v1/approvals"))
            for item in pending.json() if pending.status_code == 200 else []:
                r = retrying(chaos, lambda item=item: client.post(
                    f"/v1/runs/{item['run_id']}/approve",
                    json={"approver": "crash-suite", "reason": "expected"}))
                # 409: an earlier attempt already decided it (its answer was lost with a kill).
                assert r.status_code in (202, 409), r.text
                chaos.approvals += r.status_code == 202
            time.sleep(0.5)
    except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
        chaos.errors.append(f"approver: {exc!r}")


def read_log(stack: Stack, topic: str) -> list[Message]:
    """Every committed record of `topic`, from the beginning to the end as of now."""
    # Quiet: a broker lost for good is refused at every reconnect, and that is no error of this read.
    reader = consumer(stack.settings, None, **{"enable.partition.eof": True, "log_level": 0})
    partitions = reader.list_topics(topic, timeout=30).topics[topic].partitions
    reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records: list[Message] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 120
    try:
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic} could not be read to its end in 120 s "
                                     f"(partitions at end: {sorted(at_end)})")
            msg = reader.poll(5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                raise AssertionError(str(msg.error()))
            records.append(msg)
    finally:
        reader.close()
    return records


def read_events(stack: Stack, topic: str | None = None) -> dict[str, list[Event]]:
    """The events topic (or `topic`, e.g. the inbox), decoded, by run in log order; on another
    topic than the events, records that do not decode are left out."""
    topic = topic or stack.settings.events_topic
    codec = make_codec(stack.settings)
    by_run: dict[str, list[Event]] = {}
    for msg in read_log(stack, topic):
        try:
            e = codec.decode(msg.value())
        except Exception:  # poison on the inbox is the dead-letter path's business, not this report's
            if topic == stack.settings.events_topic:
                raise
            continue
        by_run.setdefault(e.run_id, []).append(e)
    return by_run


# The worker that answers each kind of request; anything else is the orchestrator's to follow.
_ANSWERED_BY = {"RunStarted": "planner", "ToolProposed": "guard", "ToolApproved": "executor",
                "ResponseRequested": "responder", "ResponseDrafted": "responder",
                "ApprovalRequested": "the approver (a person)"}


def waiting_for(timeline: list[Event], inbox: Sequence[Event] = ()) -> str:
    """Who should act next on a run that has not ended: the process a stuck run points at. An
    answer to the run's last request already on the inbox (`inbox`: the run's inbox records) means
    the orchestrator has not applied it."""
    if not timeline:
        return "orchestrator (accepted on the inbox, never started)"
    last = timeline[-1]
    asked = {last.event_id}
    if last.event_type in ("RequestRetried", "StepTimedOut"):
        asked.add(last.payload.request_id)  # type: ignore[union-attr]
    # A worker's answer, not a timer's record (the timer's are on the inbox too, applied or not).
    applied = {e.event_id for e in timeline} | {e.causation_id for e in timeline}
    answers = [r.event_type for r in inbox
               if r.causation_id in asked and r.actor != "timer" and r.event_id not in applied]
    if answers:
        return f"orchestrator (answered on the inbox: {', '.join(dict.fromkeys(answers))})"
    if last.event_type in ("RequestRetried", "StepTimedOut"):
        kind = last.payload.request_type  # type: ignore[union-attr]
        return f"{_ANSWERED_BY.get(kind, 'orchestrator')} (a retried {kind})"
    return _ANSWERED_BY.get(last.event_type, "orchestrator")


def health(stack: Stack, names: Iterable[str] = (), *, lines: int = 15) -> str:
    """Which processes are down (and the ones named), each with the end of its log."""
    try:
        st = stack.cli_json("status")
    except Exception as exc:  # noqa: BLE001 - the report must not hide the failure it explains
        return f"`agentlog status` failed: {exc}"
    state = {name: s["alive"] for name, s in st["services"].items()}
    state.update({b["name"]: b["alive"] for b in st["kafka"]["brokers"] if not b.get("out")})
    wanted = [n for n, ok in state.items() if not ok] + [n for n in names if state.get(n)]
    if not wanted:
        return "every process is alive"
    pids = {name: s["pid"] for name, s in st["services"].items()}
    parts = []
    for name in dict.fromkeys(wanted):
        parts.append(f"--- {name} ({'alive' if state[name] else 'DEAD'}), end of its log:\n"
                     f"{stack.log_tail(name, lines)}")
        if state[name] and pids.get(name):
            parts.append(_stacks(pids[name]))
    return "\n".join(parts)


def _stacks(pid: int) -> str:
    """Where a live but stuck process is, thread by thread, when py-spy is at hand (it is optional)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return "(py-spy is not installed: no thread dump)"
    dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60,
                          check=False)
    return f"--- its threads (py-spy dump):\n{(dump.stdout or dump.stderr).strip()}"


def _describe_unended(stack: Stack, by_run: dict[str, list[Event]], run_ids: set[str],
                      limit: int = 5) -> tuple[str, set[str]]:
    stuck = {r: by_run.get(r, []) for r in sorted(run_ids)
             if not (by_run.get(r) and by_run[r][-1].is_terminal)}
    inbox = read_events(stack, stack.settings.inbox_topic)
    waits = {r: waiting_for(t, inbox.get(r, [])) for r, t in stuck.items()}
    blamed = Counter(waits.values())
    lines = [f"{len(stuck)} of {len(run_ids)} run(s) did not end; they wait for: {dict(blamed)}"]
    for run_id, timeline in list(stuck.items())[:limit]:
        tail = [f"{e.seq}:{e.event_type}@{e.event_time:%H:%M:%S}" for e in timeline[-4:]]
        lines.append(f"  {run_id}: last events {tail or ['none']} -> waiting for {waits[run_id]}")
    services = {w.split()[0] for w in blamed if w.split()[0] in SERVICES}
    return "\n".join(lines), services


def wait_for_runs(stack: Stack, chaos: Chaos, run_ids: set[str], *, label: str, timeout_s: float = 300,
                  stall_s: float = 60) -> dict[str, list[Event]]:
    """The log once every run of `run_ids` has ended; fails, saying which did not, what they wait
    for and the processes to blame, after `timeout_s` or once the log gained no event for `stall_s`."""
    deadline = time.monotonic() + timeout_s
    seen, moved = -1, time.monotonic()
    while True:
        if chaos.errors:  # a client gave up: no use waiting
            raise AssertionError(f"{label}: a client gave up: {chaos.errors}\n{health(stack, ['gateway'])}")
        by_run = read_events(stack)
        if all(by_run.get(r) and by_run[r][-1].is_terminal for r in run_ids):
            return by_run
        total = sum(len(by_run.get(r, ())) for r in run_ids)
        if total != seen:
            seen, moved = total, time.monotonic()
        now = time.monotonic()
        if now > deadline or now - moved > stall_s:
            why = (f"no new event for {now - moved:.0f} s" if now - moved > stall_s
                   else f"{timeout_s:.0f} s passed")
            summary, blamed = _describe_unended(stack, by_run, run_ids)
            raise AssertionError(f"{label}: {summary}\n({why}; client errors: {chaos.errors or 'none'})\n"
                                 f"{health(stack, sorted(blamed))}")
        time.sleep(2)


@dataclass
class Outcome:
    """What the checks counted, for the report."""

    statuses: Counter[str]
    events: int
    stored: dict[str, int]
    tickets: Counter[str]
    mail: Counter[str]
    want_tickets: set[str]
    want_mail: set[str]
    dead_letters: int
    reasons: dict[str, int]


def _once(found: Counter[str], wanted: set[str], what: str) -> None:
    doubled = {k: n for k, n in found.items() if n > 1}
    missing, stray = wanted - set(found), set(found) - wanted
    assert not (doubled or missing or stray), (
        f"{what}: {len(doubled)} done twice or more {dict(list(doubled.items())[:5])}, "
        f"{len(missing)} approved calls left none {sorted(missing)[:5]}, "
        f"{len(stray)} without an approved call {sorted(stray)[:5]}")


def check_outcome(stack: Stack, by_run: dict[str, list[Event]], run_ids: set[str], *, label: str,
                  store_timeout_s: float = 120) -> Outcome:
    """Every run: dense seq from 1, one start, one terminal event and it is the last; one ticket or
    message per approved side effect and none without one; ClickHouse holds every event once."""
    statuses: Counter[str] = Counter()
    approved: Counter[tuple[str, str]] = Counter()
    events = 0
    for run_id in sorted(run_ids):
        timeline = by_run[run_id]
        events += len(timeline)
        seqs = [e.seq for e in timeline]
        assert seqs == list(range(1, len(timeline) + 1)), \
            f"{label}: run {run_id}: seq {seqs} is not dense from 1"
        kinds = [e.event_type for e in timeline]
        assert sum(e.is_terminal for e in timeline) == 1 and timeline[-1].is_terminal, \
            f"{label}: run {run_id}: not one terminal event, last: {kinds}"
        assert kinds.count("RunStarted") == 1, \
            f"{label}: run {run_id}: {kinds.count('RunStarted')} RunStarted"
        statuses[timeline[-1].event_type] += 1
        for e in timeline:
            call: Any = e.payload
            if e.event_type == "ToolApproved" and call.tool in SIDE_EFFECTS:
                approved[(call.tool, call.idempotency_key)] += 1
    twice = {k: n for k, n in approved.items() if n > 1}
    assert not twice, f"{label}: calls approved more than once: {dict(list(twice.items())[:5])}"

    # The backends themselves: one ticket or message per approved call, none without one.
    home = stack.settings.home
    with sqlite3.connect(home / "backends" / "tickets.db") as db:
        tickets = Counter(k for (k,) in db.execute("SELECT idempotency_key FROM tickets"))
    mail = Counter(m["idempotency_key"] for m in read_mailbox(str(home / "backends" / "mail")))
    want_tickets = {k for (tool, k) in approved if tool == "create_ticket"}
    want_mail = {k for (tool, k) in approved if tool == "send_email"}
    _once(tickets, want_tickets, f"{label}: tickets")
    _once(mail, want_mail, f"{label}: e-mails")

    # ClickHouse: every event of these runs, once.
    ids = ",".join(f"'{r}'" for r in sorted(run_ids))
    count_sql = f"SELECT count() AS n, uniqExact(event_id) AS u FROM agent_events WHERE run_id IN ({ids})"
    deadline = time.monotonic() + store_timeout_s
    stored: dict[str, Any] = {}
    while True:
        try:
            stored = stack.sql(count_sql)[0]
        except AssertionError as exc:  # the query port is the sink's: it may be down
            stored = {"n": -1, "u": -1, "error": str(exc)[-300:]}
        if stored["n"] >= events:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{label}: the sink stored {stored} of {events} events in "
                                 f"{store_timeout_s:.0f} s\n{health(stack, ['sink'])}")
        time.sleep(1)
    assert stored == {"n": events, "u": events}, \
        f"{label}: ClickHouse holds {stored}, the log {events} events"
    dead = read_log(stack, stack.settings.deadletter_topic)
    reasons = Counter(dict(m.headers() or []).get("dlq.reason", b"?").decode()[:60] for m in dead)
    return Outcome(statuses, events, stored, tickets, mail, want_tickets, want_mail, len(dead), dict(reasons))


def print_report(capsys: pytest.CaptureFixture[str], headline: str, chaos: Chaos, outcome: Outcome,
                 *extra: str) -> None:
    """The counts, always shown: they are the suite's report."""
    with capsys.disabled():
        print(f"\n{headline}")
        print(f"  runs: {len(chaos.runs)} submitted, ended: {dict(outcome.statuses)}")
        print(f"  events: {outcome.events} in the log, {outcome.stored['n']} rows in ClickHouse "
              f"({outcome.stored['u']} distinct event ids)")
        print(f"  tickets: {sum(outcome.tickets.values())} in the ticket store for "
              f"{len(outcome.want_tickets)} approved calls; e-mails: {sum(outcome.mail.values())} in the "
              f"Maildir for {len(outcome.want_mail)}")
        # An approve sent again (the list read from ClickHouse lags) is accepted and then
        # dropped by the orchestrator: nothing waits any more.
        print(f"  approve calls accepted: {chaos.approvals}; gateway calls retried: "
              f"{chaos.http_retries}; dead letters: {outcome.dead_letters} {outcome.reasons}")
        for line in extra:
            print(f"  {line}")
