"""History benchmark: what a long history costs the runtime, beside the same figures on an empty log.

    .venv/bin/python -m tests.benchmarks.bench_history [--events 0,1000000,10000000] [--live 10000]
        [--gets 1000] [--posts 2000] [--clients 16] [--keep]

One real stack (`agentlog up` on free ports, a temporary home). A few finished runs of each kind
are recorded through it (documents, SQL, tickets, denied SQL, two tools, external e-mails
approved, rejected and cancelled), and `--live` runs are left waiting for a person. Then, for
each history size in turn (the history grows from one size to the next), the services are
stopped (Kafka stays up) and what a long-running agentlog would hold for that history is
written directly: copies of the recorded runs on `agentlog.events` (every id of a run fresh),
their rows in ClickHouse with their real offsets, each folding service's checkpoint at the end
of the log, the orchestrator's pages of finished runs, and every consumer group's offsets at
the end. Once `agentlog up` has restored, it measures:

- restart of the orchestrator, the executor and the responder (SIGKILL → `agentlog up` → the
  ready file is back), and the restore line each logs;
- VmRSS of every process after the restarts;
- GET /v1/runs/{id} p50/p99 over random finished and live runs, through the gateway;
- POST /v1/runs with an Idempotency-Key from `--clients` clients (first and last size only).

Every figure is printed beside the first size's (0: no history) with the ratio, and each of the
issue's aims is judged at the sizes it names.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from processors.state import RunState, Status, fold
from schemas.codec import EventCodec
from sinks.clickhouse import ClickHouseStore, event_row
from streams.api_keys import local_key_file
from streams.edge import Intake, end_offsets, read_partitions
from streams.kafka import FOLDING_SERVICES, consumer, headers_for, make_codec, producer
from streams.live_runs import LiveRuns
from streams.query_api import chdb_path, run_query
from streams.runs import cancel_run, decide_approval, read_run, request_run, run_request
from streams.service import ready_file, utcnow
from streams.settings import Settings
from streams.snapshots import CHECKPOINT_KEY, snapshot_codec
from streams.supervisor import SERVICES
from tests.benchmarks.bench_runtime import TEXTS
from tests.stack import AGENTLOG, Stack, eventually, running_stack

__all__ = ["KINDS", "Template", "main"]

KINDS: list[tuple[str, str, str | None]] = [
    ("documents question", "What is our refund policy for annual plans?", None),
    ("SQL question", "How many customers do we have in Germany?", None),
    ("ticket", "Open an urgent ticket: the checkout page returns 500 errors.", None),
    ("destructive SQL, denied", "Drop the orders table.", None),
    ("SQL, then a ticket", ("Hi. How many customers are on the enterprise plan? Then open a low-priority "
                            "ticket: review the enterprise pricing."), None),
    ("external e-mail, approved", "Send an email to jane.doe@gmail.com about the late shipment.", "approve"),
    ("external e-mail, rejected", "Email partner@supplier.io that the goods are late.", "reject"),
    ("external e-mail, cancelled", "Send an email to bob@example.org about the open invoice.", "cancel"),
]
"""The kinds of finished run the history is made of (text, then what a person does), equally often."""
LIVE_TEXT = "Send an email to someone@external.example about order {n}."
"""Parked by the default policy: a live run waiting for a person."""
RESTARTED = FOLDING_SERVICES
TENANT = "default"
_IDS = ("(?<![0-9a-f])(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})"
        "(?![0-9a-f])")
_ID_BYTES = re.compile(f"({_IDS})".encode())
_ID_TEXT = re.compile(f"({_IDS})")
_RESTORE = re.compile(r"(\d+) live runs from (\d+) snapshots and (\d+) events after them in ([\d.]+) s")
_CHUNK_RUNS = 20_000
_LOG_LINE = re.compile(r"^\S+ \S+ (\S+) (WARNING|ERROR|CRITICAL) (.*)$")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ---- recorded runs, cut where their ids are ------------------------------------------------------

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class _Cut:
    value: tuple[bytes | int, ...]
    headers: Headers
    row: tuple[Any, ...]
    """tenant, run id index, seq, event id index, causation (index, None or literal), type, actor, time."""
    payload: tuple[str | int, ...]


@dataclass(frozen=True)
class Template:
    """One finished run as the stack recorded it, ready to be copied with fresh ids."""

    kind: str
    run_id: str
    ids: tuple[str, ...]
    """The ids of this run met in its records (ids[0] is the run id); copies get fresh ones."""
    events: tuple[_Cut, ...]

    def copy(self) -> tuple[str, list[tuple[bytes, Headers, tuple[Any, ...]]]]:
        """A new run id, and each event's value, headers and row (without partition and offset)."""
        new = [str(uuid.uuid4()) if len(x) == 36 else uuid.uuid4().hex for x in self.ids]
        raw = [x.encode() for x in new]
        out = []
        for cut in self.events:
            value = b"".join([p if isinstance(p, bytes) else raw[p] for p in cut.value])
            payload = "".join([p if isinstance(p, str) else new[p] for p in cut.payload])
            tenant, run, seq, event, cause, kind, actor, at = cut.row
            cause = new[cause] if isinstance(cause, int) else cause
            row = (tenant, new[run], seq, new[event], cause, kind, actor, at, payload)
            out.append((value, cut.headers, row))
        return new[0], out


def _cut_value(data: bytes, index: dict[str, int]) -> tuple[bytes | int, ...]:
    """The record cut at its ids: literal parts, and each id as its index in `index`."""
    parts = _ID_BYTES.split(data)
    return tuple(index.get(part.decode(), part) if i % 2 else part for i, part in enumerate(parts))


def _cut_payload(data: str, index: dict[str, int]) -> tuple[str | int, ...]:
    return tuple(index.get(part, part) if i % 2 else part for i, part in enumerate(_ID_TEXT.split(data)))


def make_templates(codec: EventCodec, runs: dict[str, tuple[str, list[Message]]]) -> list[Template]:
    """Templates of recorded runs (kind, records in offset order). An id met in more than one run
    (a policy version, a prompt hash) is a constant and stays as recorded."""
    seen: Counter[str] = Counter()
    found: dict[str, list[str]] = {}
    for run_id, (_kind, msgs) in runs.items():
        met = (m.decode() for msg in msgs for m in _ID_BYTES.findall(msg.value() or b""))
        ids = list(dict.fromkeys([run_id, *met]))
        found[run_id] = ids
        seen.update(ids)
    out = []
    for run_id, (kind, msgs) in runs.items():
        index = {x: i for i, x in enumerate(x for x in found[run_id] if seen[x] == 1)}
        cuts = []
        for msg in msgs:
            value = msg.value() or b""
            row = event_row(codec.decode(value), topic="", partition=0, offset=0)
            cause = index.get(row[4], row[4]) if row[4] is not None else None
            cuts.append(_Cut(_cut_value(value, index), cast(Headers, msg.headers() or []),
                             (row[0], index[row[1]], row[2], index[row[3]], cause, row[5], row[6], row[7]),
                             _cut_payload(row[8], index)))
        out.append(Template(kind, run_id, tuple(index), tuple(cuts)))
    return out


def check_copies(codec: EventCodec, templates: list[Template]) -> None:
    """Every copy decodes to the same run with new ids, and its rows say what its records say."""
    for t in templates:
        run_id, events = t.copy()
        for value, _headers, row in events:
            event = codec.decode(value)
            expect = event_row(event, topic="", partition=0, offset=0)[:9]
            if event.run_id != run_id or expect != row or event.event_id in t.ids:
                raise SystemExit(f"a copy of the {t.kind} run does not decode as it should:\n{expect}\n{row}")


# ---- the stack -------------------------------------------------------------------------------------

def _pid(settings: Settings, name: str) -> int | None:
    try:
        return int(settings.path("run", f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            raise SystemExit(f"processes {pids} did not stop")
        time.sleep(0.02)


def stop_services(stack: Stack) -> None:
    """SIGTERM the watchdog, then every service; Kafka stays up."""
    settings = stack.settings
    for names in (["watchdog"], [*SERVICES, "mail"]):
        pids = [p for n in names if (p := _pid(settings, n)) is not None and _alive(p)]
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        _wait_gone(pids)


def agentlog_up(stack: Stack) -> float:
    """`agentlog up`, again until everything runs (a slow restore outlasts up's own wait)."""
    began = time.monotonic()
    for _ in range(20):
        if stack.cli("up", check=False, timeout=900).returncode == 0:
            return time.monotonic() - began
    raise SystemExit("agentlog up did not bring the stack up:\n" + stack.log_tail("orchestrator"))


def ends(settings: Settings, reader: Consumer | None = None) -> dict[int, int]:
    """High watermark of each partition of the events topic."""
    own = reader is None
    reader = reader or consumer(settings, None)
    try:
        marks = end_offsets(reader, settings.events_topic, range(settings.partitions), timeout_s=30)
    finally:
        if own:
            reader.close()
    return {p: high for p, (_low, high) in marks.items()}


def last_events(settings: Settings) -> dict[int, int]:
    """Offset of the last event of each partition (-1: none); transaction markers come after it."""
    out = {}
    for p, high in ends(settings).items():
        last, back = -1, 16
        while last < 0 and back < 2 * high + 32:
            for msg in read_partitions(settings, settings.events_topic, {p: max(0, high - back)}):
                last = msg.offset() or 0
            back *= 4
        out[p] = last
    return out


def checkpoint_covers(settings: Settings, service: str) -> dict[int, int]:
    """What the latest checkpoint of each partition covers (-1: none yet)."""
    codec = snapshot_codec(settings, service)
    out = dict.fromkeys(range(settings.partitions), -1)
    for p in out:
        for msg in read_partitions(settings, settings.snapshots_topic(service), {p: 0}, timeout_s=30):
            if msg.key() == CHECKPOINT_KEY.encode() and msg.value() is not None:
                out[p] = codec.decode(msg.value() or b"").covers
    return out


def committed(settings: Settings, group: str) -> dict[int, int]:
    """The committed offsets of a consumer group on the events topic (-1: none)."""
    reader = consumer(settings, group, static=False)
    try:
        parts = [TopicPartition(settings.events_topic, p) for p in range(settings.partitions)]
        return {tp.partition: tp.offset for tp in reader.committed(parts, timeout=30)}
    finally:
        reader.close()


def settle(stack: Stack, *, timeout_s: float = 1800) -> None:
    """Wait until nothing more is appended, the orchestrator's checkpoint covers every event,
    every worker has committed past the last event and the sink holds every event. (Workers
    write a checkpoint only after a batch: the events of their last seconds before the log went
    quiet are folded again when they restart.)"""
    settings = stack.settings
    deadline = time.monotonic() + timeout_s
    quiet, marks = 0, ends(settings)
    while quiet < 3:
        time.sleep(1)
        now = ends(settings)
        quiet = quiet + 1 if now == marks else 0
        marks = now
        if time.monotonic() > deadline:
            raise SystemExit("the log did not go quiet")
    last = last_events(settings)

    def left() -> float:
        return max(60.0, deadline - time.monotonic())

    eventually(lambda: all(c > last[p] for p, c in checkpoint_covers(settings, "orchestrator").items()
                           if last[p] >= 0), timeout=left(), what="a checkpoint of the orchestrator")
    for service in ("planner", "guard", "executor", "responder"):
        group = f"agentlog-{service}"
        eventually(lambda g=group: all(o > last[p] for p, o in committed(settings, g).items()  # type: ignore[misc]
                                       if last[p] >= 0), timeout=left(), what=f"{service} to commit")

    def stored() -> bool:
        rows = run_query(settings, "SELECT source_partition, max(source_offset) FROM agent_events "
                                   "WHERE source_topic = {t:String} GROUP BY source_partition",
                         parameters={"t": settings.events_topic}, sink_running=True).rows
        held = {int(p): int(o) for p, o in rows}
        return all(held.get(p, -1) >= o for p, o in last.items())
    eventually(stored, timeout=left(), what="the sink to hold every event")
    if ends(settings) != marks:
        settle(stack, timeout_s=timeout_s)


def _wait_parked_or_ended(settings: Settings, codec: EventCodec, ids: list[str]) -> list[RunState]:
    def states() -> list[RunState] | None:
        out = [fold(read_run(settings, codec, r)) for r in ids]
        ok = all(s is not None and (s.terminal or s.status == Status.AWAITING_APPROVAL) for s in out)
        return out if ok else None  # type: ignore[return-value]
    return eventually(states, timeout=120, what="the recorded runs")  # type: ignore[no-any-return]


def record_templates(stack: Stack) -> list[Template]:
    """One finished run of each kind, through the stack (the people's decisions through the inbox)."""
    settings = stack.settings
    codec = make_codec(settings)
    out = producer(settings)
    ids = [request_run(settings, out, codec, text=text, tenant_id=TENANT) for _k, text, _then in KINDS]
    for (_kind, _text, then), state in zip(KINDS, _wait_parked_or_ended(settings, codec, ids), strict=True):
        if then == "cancel":
            cancel_run(settings, out, codec, state.run_id, reason="wrong recipient", requested_by="ops")
        elif then is not None:
            decide_approval(settings, out, codec, state, approve=then == "approve", approver="ops",
                            reason="benchmark")
    eventually(lambda: all(s.terminal for s in _wait_parked_or_ended(settings, codec, ids)), timeout=120,
               what="the recorded runs to end")
    kinds = dict(zip(ids, (k for k, _t, _x in KINDS), strict=True))
    msgs: dict[str, list[Message]] = defaultdict(list)
    for msg in read_partitions(settings, settings.events_topic, dict.fromkeys(range(settings.partitions), 0)):
        run_id = (msg.key() or b"").decode()
        if run_id in kinds:
            msgs[run_id].append(msg)
    templates = make_templates(codec, {r: (kinds[r], msgs[r]) for r in ids})
    check_copies(codec, templates)
    return templates


def create_live_runs(stack: Stack, n: int) -> list[str]:
    """`n` runs through the inbox, all at once, each left waiting for a person."""
    settings = stack.settings
    codec = make_codec(settings)
    reader = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": uuid.uuid4().hex,
                       "isolation.level": "read_committed", "auto.offset.reset": "latest"})
    reader.subscribe([settings.events_topic])
    while not reader.assignment():
        reader.poll(0.2)
    out = producer(settings)
    ids = set()
    for i in range(n):
        record = run_request(text=LIVE_TEXT.format(n=i), tenant_id=TENANT, idempotency_key=uuid.uuid4().hex)
        while True:
            try:
                out.produce(settings.inbox_topic, key=record.run_id, value=codec.encode(record),
                            headers=headers_for(record))
                break
            except BufferError:
                out.poll(0.1)
        out.poll(0)
        ids.add(record.run_id)
    out.flush(60)
    parked: set[str] = set()
    deadline = time.monotonic() + 600 + n / 10
    while parked != ids and time.monotonic() < deadline:
        msg = reader.poll(0.5)
        if msg is None or msg.error():
            continue
        kind = dict(msg.headers() or []).get("event_type")
        ended = kind in (b"RunCompleted", b"RunFailed", b"RunCancelled")
        if (msg.key() or b"").decode() in ids and (kind == b"ApprovalRequested" or ended):
            if kind != b"ApprovalRequested":
                raise SystemExit(f"live run {msg.key()!r} ended ({kind!r}) instead of waiting for a person")
            parked.add(msg.key().decode())  # type: ignore[union-attr]
    reader.close()
    if parked != ids:
        raise SystemExit(f"only {len(parked)} of {n} live runs wait for a person")
    return sorted(ids)


# ---- history written directly ---------------------------------------------------------------------

@dataclass
class History:
    """The history written so far: sizes, a sample of its run ids, timings."""

    events: int = 0
    runs: int = 0
    sample: list[str] = field(default_factory=list)
    seen: int = 0
    kafka_s: float = 0.0
    clickhouse_s: float = 0.0
    snapshots_s: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    stages: list[tuple[int, float]] = field(default_factory=list)
    """(size reached, seconds from stopping the services to the stack up again)."""
    restores: list[str] = field(default_factory=list)
    """What each folding service held when history was written (restored here as it would be)."""

    def keep(self, run_id: str, size: int = 20_000) -> None:
        """Reservoir sampling: every run written is equally likely to be in the sample."""
        self.seen += 1
        if len(self.sample) < size:
            self.sample.append(run_id)
        elif (j := self.rng.randrange(self.seen)) < size:
            self.sample[j] = run_id


def _bulk_producer(settings: Settings) -> Producer:
    return producer(settings, **{"linger.ms": 20, "batch.size": 1_000_000,
                                 "queue.buffering.max.messages": 1_000_000,
                                 "queue.buffering.max.kbytes": 1_048_576})


def commit_groups(settings: Settings, marks: dict[int, int]) -> None:
    """Every consumer group of the events topic at its end, as a running stack would have left it.
    Each commit joins as the group's own static member, which takes over its stopped predecessor."""
    for service in ("planner", "guard", "executor", "responder", "sink"):
        member = consumer(settings, f"agentlog-{service}")
        member.subscribe([settings.events_topic])
        deadline = time.monotonic() + 120
        while not member.assignment():
            member.poll(0.2)
            if time.monotonic() > deadline:
                raise SystemExit(f"could not join the group of {service}")
        member.commit(offsets=[TopicPartition(settings.events_topic, p, o) for p, o in marks.items()],
                      asynchronous=False)
        member.close()


def write_history(stack: Stack, templates: list[Template], history: History, *, events: int) -> None:
    """Stop the services, append about `events` events of finished runs (whole runs) and what a
    running stack would have written for them, then `agentlog up`."""
    settings = stack.settings
    settle(stack)
    stage_began = time.monotonic()
    stop_services(stack)
    codec = make_codec(settings)
    # What each folding service holds now, restored as it restores itself: checkpoints written
    # after the history are then exactly what it would have written, had it folded the history.
    before = ends(settings)
    holders = {}
    for service in FOLDING_SERVICES:
        intake = Intake(settings, codec, service=f"bench-{service}", dead_letters=None)
        holders[service] = LiveRuns(settings, service, events=codec, intake=intake,
                                    remember_finished=service == "orchestrator")
        done = holders[service].restore(sorted(before), stops=before)
        history.restores.append(f"{history.events:>12,} ev  {service:<13}{done.runs} live runs from "
                                f"{done.snapshots} snapshots and {done.tail_events} events after them")
    finished = holders["orchestrator"].finished
    store = ClickHouseStore.connect(url=None, chdb_path=str(chdb_path(settings)))
    out = _bulk_producer(settings)
    topic = settings.events_topic
    reports: list[tuple[bytes, int, int]] = []
    failed: list[str] = []

    def delivered(err: Any, msg: Message) -> None:
        if err is not None:
            failed.append(str(err))
        else:
            reports.append((msg.key(), msg.partition(), msg.offset()))  # type: ignore[arg-type]

    goal = history.events + events
    while history.events < goal:
        began = time.monotonic()
        pending: dict[bytes, list[tuple[Any, ...]]] = {}
        produced = 0
        for _ in range(_CHUNK_RUNS):
            if history.events + produced >= goal:
                break
            run_id, copy = history.rng.choice(templates).copy()
            key = run_id.encode()
            pending[key] = [row for _v, _h, row in copy]
            for value, headers, _row in copy:
                while True:
                    try:
                        out.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
                        break
                    except BufferError:
                        out.poll(0.05)
                produced += 1
            out.poll(0)
        if out.flush(120) or failed:
            raise SystemExit(f"history not delivered: {failed[:3]}")
        history.kafka_s += time.monotonic() - began
        began = time.monotonic()
        rows = []
        taken: Counter[bytes] = Counter()
        for key, p, offset in reports:
            i = taken[key]
            taken[key] += 1
            run_rows = pending[key]
            rows.append((*run_rows[i], topic, p, offset))
            if i == len(run_rows) - 1:
                finished[p].add(key.decode())
                history.keep(key.decode())
        if len(rows) != produced:
            raise SystemExit(f"{produced} events produced, {len(rows)} delivery reports")
        reports.clear()
        store.insert_events(rows, token=f"bench-history:{uuid.uuid4()}")
        history.clickhouse_s += time.monotonic() - began
        history.events += produced
        history.runs += len(pending)
    store.close()  # before the sink opens it again
    began = time.monotonic()
    marks = ends(settings)
    for service, live in holders.items():
        # The history's runs ended within it: they change no live run, and only the
        # orchestrator keeps anything of them (their digests, in its pages).
        for name, record, extra, partition in live.checkpoint(marks, at=utcnow()):
            out.produce(settings.snapshots_topic(service), key=name, value=record, headers=extra,
                        partition=partition)
    if out.flush(60):
        raise SystemExit("checkpoints not delivered")
    commit_groups(settings, marks)
    history.snapshots_s += time.monotonic() - began
    agentlog_up(stack)
    history.stages.append((history.events, time.monotonic() - stage_began))


# ---- measurements -----------------------------------------------------------------------------------

@dataclass
class Restart:
    seconds: float
    """SIGKILL → ready file back, `agentlog up` started right after the kill."""
    started_to_ready: float
    """The new process's start (its pid file) → ready."""
    restore: str
    """The restore line it logged (live runs, snapshots, events after them, seconds)."""


def _start_up(stack: Stack) -> subprocess.Popen[bytes]:
    return subprocess.Popen([AGENTLOG, "up"], env=stack.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def restart(stack: Stack, name: str) -> Restart:
    """SIGKILL `name` (the watchdog stopped first) and start it again with `agentlog up`."""
    settings = stack.settings
    watchdog = _pid(settings, "watchdog")
    if _alive(watchdog):
        os.kill(watchdog, signal.SIGTERM)  # type: ignore[arg-type]
        _wait_gone([watchdog])  # type: ignore[list-item]
    pid = _pid(settings, name)
    assert pid is not None and _alive(pid), f"{name} is not running"
    logfile = settings.path("logs", f"{name}.log")
    mark = logfile.stat().st_size
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    _wait_gone([pid])
    ready_file(settings, name).unlink(missing_ok=True)  # left by the killed process (up removes it too)
    up = _start_up(stack)
    started = None
    while not (started is not None and ready_file(settings, name).exists()):
        if started is None and _pid(settings, name) not in (None, pid):
            started = time.monotonic()
        if time.monotonic() - killed > 1800:
            raise SystemExit(f"{name} not ready 30 minutes after its restart")
        if up.poll() is not None and up.returncode != 0:
            up = _start_up(stack)
        time.sleep(0.01)
    ready = time.monotonic()
    up.wait(600)
    agentlog_up(stack)  # the watchdog too
    with open(logfile, "rb") as handle:
        handle.seek(mark)
        lines = [m.group(0) for m in _RESTORE.finditer(handle.read().decode(errors="replace"))]
    return Restart(ready - killed, ready - (started or killed), lines[-1] if lines else "(no restore line)")


def memory(stack: Stack) -> dict[str, tuple[float, float]]:
    """VmRSS and VmHWM (MB) of every process of the stack."""
    out = {}
    for name in ["kafka", *SERVICES, "mail", "watchdog"]:
        pid = _pid(stack.settings, name)
        try:
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        except (OSError, ValueError):
            continue
        out[name] = (int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024)
    return out


def _gateway(stack: Stack) -> tuple[str, dict[str, str]]:
    key = local_key_file(stack.settings).read_text().strip()
    return f"http://127.0.0.1:{stack.settings.gateway_port}", {"Authorization": f"Bearer {key}"}


def get_latency(stack: Stack, finished: list[str], live: list[str], *, n: int,
                rng: random.Random) -> tuple[list[float], Counter[str]]:
    """Milliseconds of `n` GET /v1/runs/{id}, one client, alternating finished and live runs."""
    url, headers = _gateway(stack)
    pools = [p for p in (finished, live) if p]
    out: list[float] = []
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        for i in range(n + 20):
            run_id = rng.choice(pools[i % len(pools)])
            began = time.perf_counter()
            r = client.get(f"/v1/runs/{run_id}")
            ms = (time.perf_counter() - began) * 1000
            if r.status_code != 200 or r.json()["run_id"] != run_id:
                raise SystemExit(f"GET /v1/runs/{run_id}: {r.status_code} {r.text[:300]}")
            if i >= 20:  # the first reads warm the gateway's readers up
                out.append(ms)
                seen[r.json()["status"]] += 1
    return out, seen


@dataclass
class Posts:
    runs_per_s: float
    latencies: list[float]
    statuses: Counter[int]


def post_load(stack: Stack, *, posts: int, clients: int, keyed: bool = True) -> Posts:
    """`posts` POST /v1/runs, each with a fresh Idempotency-Key (or none), from `clients` threads at once."""
    url, headers = _gateway(stack)
    todo = iter(range(posts))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    def client_loop() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                began = time.perf_counter()
                r = client.post("/v1/runs", json={"text": TEXTS[i % len(TEXTS)]},
                                headers={"Idempotency-Key": uuid.uuid4().hex} if keyed else {})
                ms = (time.perf_counter() - began) * 1000
                with lock:
                    latencies.append(ms)
                    statuses[r.status_code] += 1

    with httpx.Client(base_url=url, headers=headers, timeout=120) as warm:
        for i in range(20):  # untimed: connections and the gateway's producer warm
            warm.post("/v1/runs", json={"text": TEXTS[i % len(TEXTS)]},
                      headers={"Idempotency-Key": uuid.uuid4().hex})
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return Posts(statuses[202] / elapsed, latencies, statuses)


@dataclass
class Figures:
    size: int
    runs: int
    stored_events: int
    restarts: dict[str, Restart]
    rss: dict[str, tuple[float, float]]
    gets: list[float]
    get_statuses: Counter[str]
    posts: Posts | None
    unkeyed: Posts | None
    """The same POSTs without an Idempotency-Key (no run read before the produce), for comparison."""
    disk_gb: float
    loadavg: float
    """The machine's 1-minute load average after the measurements (2 cores; others' work included)."""
    problems: dict[str, Counter[str]]
    """Log lines at WARNING or above of every service so far."""


def log_problems(stack: Stack) -> dict[str, Counter[str]]:
    """Per service, its log's lines at WARNING or above (the message, digits blanked)."""
    out: dict[str, Counter[str]] = {}
    for name in [*SERVICES, "watchdog"]:
        try:
            text = stack.settings.path("logs", f"{name}.log").read_text(errors="replace")
        except OSError:
            continue
        found = Counter(re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+", "N", f"{m.group(2)} {m.group(3)}")[:160]
                        for m in map(_LOG_LINE.match, text.splitlines()) if m)
        if found:
            out[name] = found
    return out


def du_gb(path: Path) -> float:
    # Blocks, not sizes: Kafka's index files are sparse, preallocated at 10 MB each. Files come
    # and go meanwhile (ClickHouse's inserts and merges): those are skipped.
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                continue
    return total / 1e9


def measure(stack: Stack, history: History, templates: list[Template], live: list[str], *,
            gets: int, posts: int, clients: int, with_posts: bool) -> Figures:
    settle(stack)
    restarts = {name: restart(stack, name) for name in RESTARTED}
    rss = memory(stack)
    finished = history.sample or [t.run_id for t in templates]
    latencies, statuses = get_latency(stack, finished, live, n=gets, rng=random.Random(history.events))
    stored = int(run_query(stack.settings, "SELECT count() FROM agent_events", sink_running=True).rows[0][0])
    load = unkeyed = None
    if with_posts:
        load = post_load(stack, posts=posts, clients=clients)
        settle(stack)
        unkeyed = post_load(stack, posts=posts, clients=clients, keyed=False)
    return Figures(history.events, history.runs, stored, restarts, rss, latencies, statuses, load, unkeyed,
                   du_gb(stack.settings.home), os.getloadavg()[0], log_problems(stack))


# ---- report -------------------------------------------------------------------------------------------

def report(results: list[Figures], history: History, *, live: int, templates: list[Template],
           setup_s: float) -> None:
    print(f"history benchmark · {os.cpu_count()} CPU(s) · {live} live runs waiting for a person · "
          f"history of {len(templates)} kinds of finished run, "
          f"{statistics.mean(len(t.events) for t in templates):.1f} events per run on average")
    print(f"history written directly: {history.events:,} events ({history.runs:,} runs): Kafka "
          f"{history.kafka_s:.0f} s, ClickHouse {history.clickhouse_s:.0f} s, checkpoints and offsets "
          f"{history.snapshots_s:.0f} s; services down for it: "
          + ", ".join(f"{s:.0f} s (to {n:,} ev)" for n, s in history.stages)
          + f"; stack, recorded runs and live runs {setup_s:.0f} s")
    sizes = [f"{r.size:,} ev" for r in results]
    head = f"{'figure':<40}" + "".join(f"{s:>14}" + (f"{'ratio':>8}" if i else "")
                                       for i, s in enumerate(sizes))
    print("\n" + head)

    def row(name: str, values: list[float | None], unit: str, digits: int = 1) -> None:
        cells = []
        for i, v in enumerate(values):
            cells.append(f"{'—' if v is None else f'{v:,.{digits}f} {unit}':>14}")
            if i:
                b = values[0]
                cells.append(f"{f'{v / b:.2f}x' if v is not None and b else '':>8}")
        print(f"{name:<40}" + "".join(cells))

    row("events in ClickHouse", [float(r.stored_events) for r in results], "", 0)
    row("state on disk (Kafka, chDB, …)", [r.disk_gb for r in results], "GB", 2)
    row("machine load average (1 min)", [r.loadavg for r in results], "", 1)
    for name in RESTARTED:
        row(f"{name} restart: SIGKILL → ready", [r.restarts[name].seconds for r in results], "s", 2)
        row("  its process start → ready", [r.restarts[name].started_to_ready for r in results], "s", 2)
    names = [n for n in ["kafka", *SERVICES, "mail", "watchdog"] if all(n in r.rss for r in results)]
    for name in names:
        row(f"RSS {name}", [r.rss[name][0] for r in results], "MB", 0)
    for name in RESTARTED:
        row(f"  peak RSS {name} (VmHWM)", [r.rss[name][1] for r in results], "MB", 0)
    row("GET /v1/runs/{id} p50", [_pct(r.gets, .5) for r in results], "ms")
    row("GET /v1/runs/{id} p99", [_pct(r.gets, .99) for r in results], "ms")
    row("POST /v1/runs accepted runs/s", [r.posts.runs_per_s if r.posts else None for r in results], "/s")
    row("POST /v1/runs p50", [_pct(r.posts.latencies, .5) if r.posts else None for r in results], "ms")
    row("POST /v1/runs p99", [_pct(r.posts.latencies, .99) if r.posts else None for r in results], "ms")
    row("POST /v1/runs max", [max(r.posts.latencies) if r.posts else None for r in results], "ms")
    row("  without Idempotency-Key: runs/s", [r.unkeyed.runs_per_s if r.unkeyed else None
                                              for r in results], "/s")
    row("  without Idempotency-Key: p50", [_pct(r.unkeyed.latencies, .5) if r.unkeyed else None
                                           for r in results], "ms")
    print("\nwhat the folding services held when history was written (restored by the benchmark, as they"
          " restore):")
    for line in history.restores:
        print(f"  {line}")
    print("\nrestore lines the restarted services logged:")
    for r in results:
        for name in RESTARTED:
            print(f"  {r.size:>12,} ev  {name:<13}{r.restarts[name].restore}")
    for r in results:
        print(f"  {r.size:>12,} ev  GETs by status: {dict(r.get_statuses)}"
              + (f"; POST statuses: {dict(r.posts.statuses)}" if r.posts else ""))
    print("\nlog lines at WARNING or above, by service, new during each size's setup and measurements:")
    before: dict[str, Counter[str]] = {}
    for r in results:
        new = [(name, line, n) for name, found in r.problems.items()
               for line, n in (found - before.get(name, Counter())).most_common(4)]
        for name, line, n in new:
            print(f"  {r.size:>12,} ev  {name:<13}{n:>5} × {line}")
        if not new:
            print(f"  {r.size:>12,} ev  none")
        before = r.problems
    last = results[-1]
    at = f"at {last.size:,} events" + ("" if last.size >= 10_000_000 else " (the aim is stated at 10 M)")
    print("\naims:")

    def aim(text: str, met: bool) -> None:
        print(f"  {'met    ' if met else 'NOT MET'}  {text}")

    for name in RESTARTED:
        seconds = last.restarts[name].seconds
        aim(f"{name} restart ≤ 5 s {at}: {seconds:.2f} s", seconds <= 5)
    processors = [n for n in SERVICES if n in last.rss]
    for name in processors:
        aim(f"RSS {name} ≤ 150 MB {at}: {last.rss[name][0]:.0f} MB", last.rss[name][0] <= 150)
    for r in results:
        p50, p99 = _pct(r.gets, .5), _pct(r.gets, .99)
        aim(f"GET p50 ≤ 20 ms and p99 ≤ 100 ms at {r.size:,} events: {p50:.1f} / {p99:.1f} ms",
            p50 <= 20 and p99 <= 100)
    for r in results:
        if r.posts:
            p50 = _pct(r.posts.latencies, .5)
            aim(f"POST ≥ 300 accepted runs/s and p50 ≤ 20 ms at {r.size:,} events: "
                f"{r.posts.runs_per_s:.0f} runs/s, p50 {p50:.1f} ms", r.posts.runs_per_s >= 300 and p50 <= 20)


def main() -> None:
    args = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    args.add_argument("--events", default="0,1000000,10000000",
                      help="history sizes (events of finished runs), in turn; the first is the reference")
    args.add_argument("--live", type=int, default=10_000, help="runs left waiting for a person")
    args.add_argument("--gets", type=int, default=1000, help="GET /v1/runs/{id} per size")
    args.add_argument("--posts", type=int, default=2000, help="POST /v1/runs at the first and last size")
    args.add_argument("--clients", type=int, default=16, help="concurrent POST clients")
    args.add_argument("--keep", action="store_true", help="keep the stack's home (it is printed)")
    opts = args.parse_args()
    sizes = sorted({int(s) for s in opts.events.split(",")})
    home = Path(tempfile.mkdtemp(prefix="agentlog-bench-history-"))
    free = shutil.disk_usage(home).free
    if free < sizes[-1] * 2_000 + 5e9:  # Kafka ~0.5 KB and chDB ~0.3 KB per event, with room to spare
        raise SystemExit(f"{free / 1e9:.0f} GB free under {home}: not enough for {sizes[-1]:,} events")
    began = time.monotonic()
    results: list[Figures] = []
    history = History()
    try:
        with running_stack(home) as stack:
            templates = record_templates(stack)
            live = create_live_runs(stack, opts.live)
            setup_s = time.monotonic() - began
            for size in sizes:
                if size > history.events:
                    write_history(stack, templates, history, events=size - history.events)
                results.append(measure(stack, history, templates, live, gets=opts.gets, posts=opts.posts,
                                       clients=opts.clients, with_posts=size in (sizes[0], sizes[-1])))
    except (KafkaException, AssertionError) as exc:
        raise SystemExit(f"benchmark failed: {exc}") from exc
    finally:
        if not opts.keep:
            shutil.rmtree(home, ignore_errors=True)
    report(results, history, live=opts.live, templates=templates, setup_s=setup_s)
    print(f"\nwhole benchmark: {(time.monotonic() - began) / 60:.1f} min"
          + (f"; home kept: {home}" if opts.keep else ""))


if __name__ == "__main__":
    main()
