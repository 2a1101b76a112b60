"""Replay's I/O: datasets in (a JSONL file, ClickHouse, the events topic), results and scores out
(files under `<home>/replay/`, and ClickHouse), and the processors replay decides with.

The decisions are `processors/replay`'s; this module finds their inputs and keeps their outputs.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from confluent_kafka import KafkaException, Message, TopicPartition

from policies import load_policy
from processors.models import planner_for, writer_for
from processors.replay import (
    Candidate,
    Processors,
    RecordedRun,
    check_run,
    parse_line,
    replay_run,
    run_doc,
    run_from_doc,
)
from processors.replay.candidates import CandidatesError, models_for, parse_candidates
from processors.replay.memo import remembering_policy, remembering_registry
from schemas.events import Event, RunStarted
from streams.edge import Intake, LogUnavailable, Poison, read_partitions
from streams.kafka import consumer, header, make_codec
from streams.models_config import api_keys_from_env, load_models_config
from streams.orchestration import orchestrator_config
from streams.query_api import run_insert, run_query
from streams.settings import REPO_ROOT, Settings
from streams.supervisor import alive, processes
from streams.tools_config import tool_registry

__all__ = [
    "EXAMPLE_CANDIDATES", "RESULTS", "SUMMARY", "SCORES", "RESULT_COLUMNS", "SCORE_COLUMNS",
    "today_processors", "candidates_path", "load_candidate", "count_runs", "write_dataset",
    "runs_from_clickhouse", "runs_from_topic", "parse_offsets", "new_results_dir", "mark_latest",
    "latest_dir", "results_file", "scores_file", "read_jsonl", "replay_lines", "default_workers",
    "result_rows", "score_rows", "store_in_clickhouse",
]

EXAMPLE_CANDIDATES = REPO_ROOT / "processors" / "replay" / "candidates.example.yaml"
"""The candidates file used when none is named and `./candidates.yaml` does not exist."""
RESULTS, SUMMARY, SCORES = "results.jsonl", "summary.json", "scores.json"
_LATEST = "LATEST"


# ---- the processors replay decides with ---------------------------------------------------------


def today_processors(settings: Settings) -> Processors:
    """The configured policy, tools, models and approval TTL: what the stack decides with now."""
    tools = tool_registry(settings)  # the tools file's tools and its MCP servers' too
    registry = remembering_registry(tools)
    return Processors(
        policy=remembering_policy(load_policy(settings.policy_file, registry=registry)),
        registry=registry, models=load_models_config(settings.models_file),
        orchestrator=orchestrator_config(settings, tools),
        approval_ttl=settings.approval_ttl)


def candidates_path(given: Path | None) -> Path:
    """The candidates file: the one named, else `./candidates.yaml`, else the shipped example."""
    if given is not None:
        return given
    local = Path("candidates.yaml")
    return local if local.exists() else EXAMPLE_CANDIDATES


def load_candidate(path: Path, name: str, *, baseline: Processors) -> Candidate:
    """Candidate `name` of the file at `path`, built over today's `baseline`.

    Its planner and finalizer adapters are built here, so a candidate naming an
    OpenAI-compatible model calls it during replay; one naming none calls no model.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CandidatesError(f"{path}: cannot read the candidates file ({exc})") from None
    candidates = parse_candidates(text, source=str(path)).candidates
    spec = candidates.get(name)
    if spec is None:
        raise CandidatesError(f"{path}: no candidate {name!r} (candidates: {', '.join(sorted(candidates))})")
    here = path.resolve().parent
    base = load_models_config(here / spec.models_file) if spec.models_file else baseline.models
    models = models_for(spec, base, source=f"{path}: candidate {name}")
    policy = baseline.policy
    if spec.policy is not None:
        policy = remembering_policy(load_policy(here / spec.policy, registry=baseline.registry))
    keys = api_keys_from_env(models)
    planners = writers = None
    if spec.planner is not None:
        planners = {r: planner_for(r, models, registry=baseline.registry, api_keys=keys)
                    for r in models.routes}
    if spec.finalizer is not None:
        writers = {r: writer_for(r, models, api_keys=keys) for r in models.routes}
    return Candidate(name=name, description=spec.description,
                     processors=dataclasses.replace(baseline, policy=policy, models=models),
                     planners=planners, writers=writers)


# ---- datasets -----------------------------------------------------------------------------------


def count_runs(path: Path) -> int:
    """Non-blank lines of a dataset file, for a progress bar's total."""
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def write_dataset(runs: Iterable[RecordedRun], out: IO[str]) -> int:
    """Write `runs` as JSONL; returns how many."""
    n = 0
    for run in runs:
        out.write(json.dumps(run_doc(run.run_id, run.events), ensure_ascii=False) + "\n")
        n += 1
    return n


def _utc(value: str | None, default: datetime) -> datetime:
    if value is None:
        return default
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def utc_param(value: str | None, default: datetime) -> str:
    """An ISO time (naive means UTC) as ClickHouse's `YYYY-MM-DD hh:mm:ss.fff` in UTC."""
    return _utc(value, default).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# Runs are picked by their RunStarted; every event of a picked run is read, also those after
# `until`, so a run is replayed whole. LIMIT 1 BY guards against a row stored twice.
_RUNS_SQL = """
SELECT tenant_id, run_id, seq, event_id, causation_id, event_type, actor,
       toUnixTimestamp64Milli(event_time) AS ms, payload
FROM agent_events
WHERE (tenant_id, run_id) IN (
    SELECT tenant_id, run_id FROM agent_events
    WHERE event_type = 'RunStarted'
      AND event_time >= parseDateTime64BestEffort({since:String}, 3, 'UTC')
      AND event_time < parseDateTime64BestEffort({until:String}, 3, 'UTC')
      AND ({tenant:String} = '' OR tenant_id = {tenant:String})
      AND ({route:String} = '' OR JSONExtractString(payload, 'route') = {route:String})
    ORDER BY event_time, run_id
    LIMIT {limit:UInt64})
ORDER BY tenant_id, run_id, seq
LIMIT 1 BY tenant_id, run_id, seq
"""
_EPOCH, _FOREVER = datetime(1970, 1, 1, tzinfo=UTC), datetime(2999, 1, 1, tzinfo=UTC)


def runs_from_clickhouse(settings: Settings, *, since: str | None = None, until: str | None = None,
                         tenant: str | None = None, route: str | None = None,
                         limit: int = 10_000_000) -> list[RecordedRun]:
    """Runs started in [since, until) (ISO times), whole, from `agent_events`."""
    sink = next(p for p in processes(settings) if p.name == "sink")
    params = {"since": utc_param(since, _EPOCH), "until": utc_param(until, _FOREVER),
              "tenant": tenant or "", "route": route or "", "limit": limit}
    rows = run_query(settings, _RUNS_SQL, parameters=params,
                     sink_running=alive(settings, sink)).as_dicts()
    runs: dict[str, list[dict[str, Any]]] = {}
    tenants: dict[str, str] = {}
    for row in rows:
        when = datetime.fromtimestamp(int(row.pop("ms")) / 1000, UTC)
        runs.setdefault(row["run_id"], []).append({**row, "event_time": when})
        tenants[row["run_id"]] = row["tenant_id"]
    return [run_from_doc({"run_id": r, "tenant_id": tenants[r], "events": evs})
            for r, evs in runs.items()]


def parse_offsets(text: str) -> dict[int, tuple[int, int | None]]:
    """`0:100-200,1:50-` as {partition: (first offset, last offset or None)}."""
    out: dict[int, tuple[int, int | None]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            partition, span = part.split(":")
            first, _, last = span.partition("-")
            out[int(partition)] = (int(first or 0), int(last) if last else None)
        except ValueError:
            raise ValueError(f"{part!r} is not PARTITION:FIRST-[LAST]") from None
    return out


def runs_from_topic(settings: Settings, *, since: str | None = None, until: str | None = None,
                    tenant: str | None = None, route: str | None = None,
                    offsets: str | None = None) -> list[RecordedRun]:
    """Runs whose RunStarted is in the time range (or in the offset ranges), whole, read from
    the events topic up to its end as it stands when the read begins."""
    lo, hi = _utc(since, _EPOCH), _utc(until, _FOREVER)
    spans = parse_offsets(offsets) if offsets else {}
    intake = Intake(settings, make_codec(settings), service="replay", dead_letters=None)
    picked: dict[bytes, list[Event]] = {}
    for msg in _scan(settings, spans, since=lo):
        key = msg.key() or b""
        first = header(msg.headers(), "event_type") == "RunStarted"
        if not first and key not in picked:
            continue  # only the events of picked runs are decoded at all
        last = spans.get(msg.partition() or 0, (0, None))[1]
        if first and last is not None and (msg.offset() or 0) > last:
            continue
        try:
            event = intake.decode(msg)
        except Poison as exc:
            intake.park(msg, str(exc))
            continue
        started = event.payload
        if not first:
            picked[key].append(event)
        elif (isinstance(started, RunStarted) and lo <= event.event_time < hi
              and (not tenant or event.tenant_id == tenant) and (not route or started.route == route)):
            picked[key] = [event]
    return [RecordedRun(evs[0].run_id, evs[0].tenant_id, tuple(sorted(evs, key=lambda e: e.seq)))
            for evs in picked.values()]


def _scan(settings: Settings, spans: dict[int, tuple[int, int | None]], *,
          since: datetime) -> Iterator[Message]:
    """The events topic's records from each partition's first offset in `spans` (else from
    the first record at or after `since`) up to the partition's end when the scan begins."""
    topic = settings.events_topic
    reader = consumer(settings, None, **{"enable.partition.eof": True})
    try:
        try:
            parts = sorted(spans) or sorted(reader.list_topics(topic, timeout=10).topics[topic].partitions)
            if spans:
                starts = {p: spans[p][0] for p in parts}
            else:
                at = int(since.timestamp() * 1000)
                found = reader.offsets_for_times([TopicPartition(topic, p, at) for p in parts], timeout=10)
                # No record at or after `since`: nothing to read there.
                starts = {tp.partition: tp.offset if tp.offset >= 0 else _PAST_THE_END for tp in found}
        except KafkaException as exc:
            raise LogUnavailable(f"{topic} did not answer ({exc.args[0]})") from None
        yield from read_partitions(settings, topic, starts, timeout_s=30, reader=reader)
    finally:
        reader.close()


_PAST_THE_END = 2**62


# ---- results and scores -------------------------------------------------------------------------


def new_results_dir(settings: Settings, label: str) -> Path:
    """A fresh directory for one replay's results, named by time and candidate."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    directory = settings.path("replay", f"{stamp}-{label}")
    directory.mkdir(parents=True)
    return directory


def mark_latest(settings: Settings, directory: Path) -> None:
    """Make `directory` what `score` and `gate` read when given no path."""
    latest = settings.path("replay", _LATEST)
    latest.parent.mkdir(parents=True, exist_ok=True)
    latest.write_text(str(directory.resolve()) + "\n")


def latest_dir(settings: Settings) -> Path | None:
    latest = settings.path("replay", _LATEST)
    if not latest.exists():
        return None
    return Path(latest.read_text().strip())


def _in_dir(settings: Settings, given: Path | None, name: str) -> Path:
    if given is None:
        directory = latest_dir(settings)
        if directory is None:
            raise FileNotFoundError(f"no replay results under {settings.path('replay')}: run "
                                    "`agentlog replay` first, or name the file")
        return directory / name
    return given / name if given.is_dir() else given


def results_file(settings: Settings, given: Path | None) -> Path:
    """The results file named (or in the directory named), else the latest replay's."""
    return _in_dir(settings, given, RESULTS)


def scores_file(settings: Settings, given: Path | None) -> Path:
    """The scores file named (or in the directory named), else the latest replay's."""
    return _in_dir(settings, given, SCORES)


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


# ---- running replays over many runs -------------------------------------------------------------

_JOB: Callable[[RecordedRun], dict[str, Any]] | None = None


def _job_for(kind: str, settings: Settings, candidates: Path | None,
             name: str | None) -> Callable[[RecordedRun], dict[str, Any]]:
    baseline = today_processors(settings)
    if kind == "check":
        return lambda run: check_run(run, processors=baseline).to_json()
    assert candidates is not None and name is not None
    candidate = load_candidate(candidates, name, baseline=baseline)
    return lambda run: replay_run(run, candidate=candidate, baseline=baseline)


def _start_worker(kind: str, settings: Settings, candidates: Path | None, name: str | None) -> None:
    global _JOB  # noqa: PLW0603 - a pool worker's job, set once by the pool's initializer
    _JOB = _job_for(kind, settings, candidates, name)


def _run_lines(lines: list[tuple[int, str]]) -> list[tuple[dict[str, Any], int]]:
    assert _JOB is not None
    out = []
    for number, line in lines:
        run = parse_line(line, number=number)
        if run is not None:
            out.append((_JOB(run), len(run.events)))
    return out


def replay_lines(lines: Iterable[str], *, kind: str, settings: Settings,
                 candidates: Path | None = None, name: str | None = None, workers: int = 1,
                 on_run: Callable[[int], None] = lambda _n: None,
                 chunk: int = 200) -> Iterator[dict[str, Any]]:
    """Replay each dataset line (`kind` is `check` or `candidate`), in order.

    workers: processes to spread the runs over (runs are independent); 1 replays in this one.
    on_run: called with each run's event count, for progress.
    """
    if workers <= 1:
        job = _job_for(kind, settings, candidates, name)
        for number, line in enumerate(lines, 1):
            run = parse_line(line, number=number)
            if run is not None:
                yield job(run)
                on_run(len(run.events))
        return
    # forkserver, not fork: a fork copies only the calling thread, and a process that holds Kafka
    # clients (their librdkafka threads) or a lock another thread holds can hang its children;
    # the server is a fresh process that imports the replay code once and forks the workers.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    with ctx.Pool(workers, initializer=_start_worker,
                  initargs=(kind, settings, candidates, name)) as pool:
        for done in pool.imap(_run_lines, _chunks(enumerate(lines, 1), chunk)):
            for result, events in done:
                yield result
                on_run(events)


def _chunks(lines: Iterable[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    batch: list[tuple[int, str]] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def default_workers(runs: int) -> int:
    """One process per ~2,000 runs, up to the machine's cores: small replays stay in-process."""
    return max(1, min(os.cpu_count() or 1, runs // 2000))


# ---- ClickHouse -----------------------------------------------------------------------------------

RESULT_COLUMNS = [
    "replay_id", "mode", "candidate", "replayed_at", "tenant_id", "run_id", "route", "diverged",
    "divergent_seq", "divergent_event", "unanswered", "baseline_status", "candidate_status",
    "baseline_cost_usd", "candidate_cost_usd", "baseline_latency_ms", "candidate_latency_ms",
    "policy_regressions", "result",
]
SCORE_COLUMNS = ["replay_id", "candidate", "scored_at", "metric", "baseline", "candidate_value",
                 "delta", "runs", "scores"]


def result_rows(replay_id: str, mode: str, candidate: str, at: datetime,
                results: Sequence[dict[str, Any]], regressions: dict[str, int]) -> list[list[Any]]:
    """`replay_results` rows, one per run."""
    rows = []
    for r in results:
        div = r.get("divergence") or {}
        base, cand = r.get("baseline") or {}, r.get("candidate") or {}
        rows.append([
            replay_id, mode, candidate, at.isoformat(), r.get("tenant_id", ""), r["run_id"],
            r.get("route") or "",
            int(bool(div)), div.get("seq"), div.get("event_type") or "", r.get("unanswered"),
            base.get("status", r.get("status", "")), cand.get("status", ""),
            float(base.get("cost_usd", 0.0)), float(cand.get("cost_usd", 0.0)),
            int(base.get("latency_ms", 0)), int(cand.get("latency_ms", 0)),
            regressions.get(r["run_id"], 0), json.dumps(r, ensure_ascii=False),
        ])
    return rows


def score_rows(replay_id: str, at: datetime, scores: dict[str, Any]) -> list[list[Any]]:
    """`replay_scores` rows, one per metric."""
    rows = []
    blob = json.dumps({k: v for k, v in scores.items() if k != "per_run"}, ensure_ascii=False)
    q, c, lat, p = (scores.get(k) for k in ("quality", "cost", "latency", "policy"))
    if q:
        rows.append(["quality", q["baseline"], q["candidate"], q["delta"], q["runs"]])
    if c:
        rows.append(["cost_usd", c["baseline_usd"], c["candidate_usd"], c["delta"], c["runs"]])
    if lat:
        rows.append(["latency_ms", lat["baseline_ms"], lat["candidate_ms"], lat["delta"], lat["runs"]])
    if p:
        rows.append(["policy_regressions", 0.0, float(p["regressions"]), None, scores["runs"]])
    return [[replay_id, scores.get("candidate", ""), at.isoformat(), m, b, v, d, n, blob]
            for m, b, v, d, n in rows]


def store_in_clickhouse(settings: Settings, table: str, columns: list[str], rows: list[list[Any]],
                        *, token: str) -> str | None:
    """Insert `rows` into a replay table; None when stored, else why not (the files stay the
    record either way)."""
    sink = next(p for p in processes(settings) if p.name == "sink")
    try:
        run_insert(settings, table, columns, rows, token=token,
                   sink_running=alive(settings, sink))
    except Exception as exc:  # noqa: BLE001 - storage is a copy; the replay itself succeeded
        return f"ClickHouse refused the insert: {exc}"
    return None
