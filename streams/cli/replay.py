"""`agentlog export | replay | score | gate`: datasets of recorded runs, replayed, scored, gated.

    agentlog export --since 2026-11-01 --out runs.jsonl
    agentlog replay --dataset runs.jsonl --check
    agentlog replay --dataset runs.jsonl --candidate loose-policy
    agentlog score --metrics quality,cost,latency,policy
    agentlog gate --min-quality 0.82 --max-cost-delta 0.15 --max-policy-regressions 0

Exit codes: `replay --check` 1 when a run diverged; `gate` 1 when the candidate fails; 2 for a
usage error; 0 otherwise.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from policies import PolicyError
from processors.prompts import PromptError
from processors.replay import DatasetError, RecordedRun, run_doc
from processors.replay.candidates import CandidatesError
from processors.replay.gate import Thresholds, gate
from processors.replay.scoring import METRICS, SCORERS, model_scorer, policy_regressions, score_results
from processors.spans import grader_span
from streams import telemetry
from streams.alerts_gates import record_verdict
from streams.cli.common import Context, fail, pass_ctx
from streams.models_config import ModelsConfigError
from streams.query_api import QueryError
from streams.replay_io import (
    RESULT_COLUMNS,
    RESULTS,
    SCORE_COLUMNS,
    SCORES,
    SUMMARY,
    candidates_path,
    count_runs,
    default_workers,
    latest_dir,
    load_candidate,
    mark_latest,
    new_results_dir,
    read_jsonl,
    replay_lines,
    result_rows,
    results_file,
    runs_from_clickhouse,
    runs_from_topic,
    score_rows,
    scores_file,
    store_in_clickhouse,
    today_processors,
    write_dataset,
)

__all__ = ["export", "replay", "score", "gate_cmd"]

_SHOWN = 20


def _iso(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not an ISO time such as 2026-05-01T12:00:00Z",
                                     param=param) from None
    return value


def _source_options(f: Any) -> Any:
    for option in reversed([
        click.option("--source", type=click.Choice(["clickhouse", "topic"]), default="clickhouse",
                     show_default=True, help="Where recorded runs are read from."),
        click.option("--since", callback=_iso,
                     help="Runs started at or after this ISO time (naive means UTC)."),
        click.option("--until", callback=_iso, help="Runs started before this ISO time."),
        click.option("--tenant", help="Only this tenant's runs."),
        click.option("--route", help="Only runs on this route."),
        click.option("--offsets", metavar="P:FIRST-[LAST],…",
                     help="--source topic: runs whose RunStarted is in these offset ranges."),
    ]):
        f = option(f)
    return f


def _recorded(ctx: Context, source: str, since: str | None, until: str | None, tenant: str | None,
              route: str | None, offsets: str | None) -> list[RecordedRun]:
    try:
        if source == "topic":
            return runs_from_topic(ctx.settings, since=since, until=until, tenant=tenant,
                                   route=route, offsets=offsets)
        if offsets:
            raise click.BadParameter("offsets are for --source topic", param_hint="--offsets")
        return runs_from_clickhouse(ctx.settings, since=since, until=until, tenant=tenant, route=route)
    except QueryError as exc:
        fail(f"query failed: {exc}")
    except ValueError as exc:  # an offset range that is not one
        raise click.BadParameter(str(exc), param_hint="--offsets") from None


@click.command("export")
@_source_options
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="The JSONL dataset to write (- for stdout).")
@pass_ctx
def export(ctx: Context, source: str, since: str | None, until: str | None, tenant: str | None,
           route: str | None, offsets: str | None, out: str) -> None:
    """Write recorded runs as a dataset: one run per line, with all its events.

    Each line is `{"format": "agentlog.run/1", "run_id", "tenant_id", "route", "text", "status",
    "answer", "events": [...]}`, the events shaped as `runs show --json` prints them. Add a
    `"reference": {"answer": …, "must_contain": […]}` to a line to score answers against it.
    """
    runs = _recorded(ctx, source, since, until, tenant, route, offsets)
    runs.sort(key=lambda r: (r.events[0].event_time if r.events else datetime.min.replace(tzinfo=UTC),
                             r.run_id))
    if out == "-":
        n = write_dataset(runs, sys.stdout)
    else:
        with open(out, "w", encoding="utf-8") as handle:
            n = write_dataset(runs, handle)
    events = sum(len(r.events) for r in runs)
    click.echo(f"exported {n} run(s), {events} event(s), from {source} to {out}", err=out == "-")


@contextmanager
def _progress(total: int | None, show: bool) -> Iterator[Any]:
    if not show:
        yield lambda _n: None
        return
    # No refresh thread (auto_refresh=False): the replay may fork worker processes, and a
    # thread holding a lock at that moment would leave the lock held in every child.
    bar = Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("runs · {task.fields[events]} events"), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True, auto_refresh=False)
    task = bar.add_task("replay", total=total, events=0)
    seen = {"events": 0, "shown": 0.0}

    def advance(events: int) -> None:
        seen["events"] += events
        bar.update(task, advance=1, events=seen["events"])
        if time.monotonic() - seen["shown"] >= 0.1:
            seen["shown"] = time.monotonic()
            bar.refresh()

    with bar:
        yield advance


@click.command("replay")
@click.option("--dataset", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSONL dataset (`agentlog export`); without it, runs are read from --source.")
@_source_options
@click.option("--check", is_flag=True, help="Exact replay: today's processors must decide as recorded.")
@click.option("--candidate", help="Counterfactual replay with this candidate (see --candidates).")
@click.option("--candidates", "candidates_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Candidates file (default: ./candidates.yaml, else the shipped example).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the results (default: a new one under <home>/replay/).")
@click.option("--workers", type=int, help="Processes to replay in (default: by dataset size).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--store/--no-store", default=True, show_default=True,
              help="Also store the results in ClickHouse (replay_results).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def replay(ctx: Context, dataset: Path | None, source: str, since: str | None, until: str | None,
           tenant: str | None, route: str | None, offsets: str | None, check: bool,
           candidate: str | None, candidates_file: Path | None, out_dir: Path | None,
           workers: int | None, progress: bool | None, store: bool, as_json: bool) -> None:
    """Replay recorded runs: exactly (--check) or with a candidate (--candidate NAME).

    Nothing with side effects runs: tool observations, people's decisions and model outputs
    come from the recording. Results go to a directory that `score` and `gate` read next.
    """
    if check == (candidate is not None):
        raise click.UsageError("give exactly one of --check and --candidate NAME")
    cands = candidates_path(candidates_file) if candidate else None
    try:
        # Built here once to fail early and clearly; worker processes build their own.
        baseline = today_processors(ctx.settings)
        if cands is not None and candidate is not None:
            load_candidate(cands, candidate, baseline=baseline)
    except (CandidatesError, PolicyError, ModelsConfigError, PromptError) as exc:
        fail(str(exc), code=2)
    if dataset is not None:
        total: int | None = count_runs(dataset)
        lines: Any = dataset.open(encoding="utf-8")
        origin = str(dataset)
    else:
        recorded = _recorded(ctx, source, since, until, tenant, route, offsets)
        total = len(recorded)
        lines = (json.dumps(run_doc(r.run_id, r.events)) for r in recorded)
        origin = source
    label = "check" if check else str(candidate)
    directory = out_dir or new_results_dir(ctx.settings, label)
    directory.mkdir(parents=True, exist_ok=True)
    n_workers = workers or default_workers(total or 0)
    show = sys.stderr.isatty() if progress is None else progress
    tally = _Tally(check=check)
    begun = time.perf_counter()
    try:
        with (directory / RESULTS).open("w", encoding="utf-8") as out, _progress(total, show) as advance:
            def counted(n: int) -> None:
                tally.events += n
                advance(n)
            for result in replay_lines(lines, kind="check" if check else "candidate",
                                       settings=ctx.settings, candidates=cands, name=candidate,
                                       workers=n_workers, on_run=counted):
                out.write(json.dumps(result, ensure_ascii=False) + "\n")
                tally.add(result)
    except DatasetError as exc:
        fail(str(exc), code=2)
    finally:
        if hasattr(lines, "close"):
            lines.close()
    seconds = time.perf_counter() - begun
    summary = {"format": "agentlog.replay/1", "mode": "check" if check else "candidate",
               "candidate": label, "candidates_file": str(cands) if cands else None,
               "dataset": origin, **tally.counts(), "seconds": round(seconds, 3),
               "events_per_s": round(tally.events / seconds) if seconds > 0 else None,
               "workers": n_workers, "replayed_at": datetime.now(UTC).isoformat(),
               "results_dir": str(directory)}
    (directory / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    mark_latest(ctx.settings, directory)
    summary["stored"] = _store_results(ctx, directory, summary) if store else "files"
    if as_json:
        click.echo(json.dumps(summary))
    elif check:
        _print_check(summary, tally.shown, directory)
    else:
        _print_candidate(ctx, summary, tally.shown, directory)
    if check and summary["diverged"]:
        raise SystemExit(1)


@dataclass
class _Tally:
    """What the summary and the printout need, kept as results stream by: a big replay's
    results stay in their file, not in memory."""

    check: bool
    runs: int = 0
    events: int = 0
    diverged: int = 0
    unanswered: int = 0
    regressions: int = 0
    shown: list[dict[str, Any]] = field(default_factory=list)
    """The first results worth printing: diverged runs of a check, any run of a candidate."""

    def add(self, result: dict[str, Any]) -> None:
        self.runs += 1
        self.diverged += result.get("divergence") is not None
        if not self.check:
            self.unanswered += result.get("unanswered") is not None
            self.regressions += len(policy_regressions(result))
        if len(self.shown) < _SHOWN and (not self.check or result.get("divergence")):
            self.shown.append(result)

    def counts(self) -> dict[str, int]:
        out = {"runs": self.runs, "events": self.events, "diverged": self.diverged}
        if not self.check:
            out.update(unanswered=self.unanswered, policy_regressions=self.regressions)
        return out


def _store_results(ctx: Context, directory: Path, summary: dict[str, Any]) -> str:
    """Copy the results file into `replay_results`, a batch of runs per insert."""
    at = datetime.now(UTC)
    batch: list[dict[str, Any]] = []
    sent = 0

    def flush() -> str | None:
        nonlocal sent
        regressions = {r["run_id"]: len(policy_regressions(r)) for r in batch}
        rows = result_rows(directory.name, summary["mode"], summary["candidate"], at, batch, regressions)
        sent += 1
        batch.clear()
        return store_in_clickhouse(ctx.settings, "replay_results", RESULT_COLUMNS, rows,
                                   token=f"replay:{directory.name}:{sent}")

    for result in read_jsonl(directory / RESULTS):
        batch.append(result)
        if len(batch) >= 2000 and (why := flush()) is not None:
            return f"files only: {why}"
    why = flush() if batch else None
    return "ClickHouse" if why is None else f"files only: {why}"


def _print_check(summary: dict[str, Any], diverged: list[dict[str, Any]], directory: Path) -> None:
    click.echo(f"exact replay of {summary['runs']} run(s), {summary['events']} event(s) in "
               f"{summary['seconds']:.2f} s ({summary['events_per_s'] or 0:,} events/s): "
               + (f"{summary['diverged']} diverged" if summary["diverged"] else "no divergence"))
    # Plain lines, not a table: a run id, a seq and a differing value must survive a narrow
    # terminal whole, and the value is shown around where it starts to differ.
    for r in diverged:
        d = r["divergence"]
        click.echo(f"\nrun {r['run_id']} ({r['tenant_id']}): first divergence at seq {d['seq']} "
                   f"{d['event_type'] or '(past the recording)'}, decided by {d['processor']}")
        click.echo(f"  {d['reason']}")
        for line in _differing(d.get("expected"), d.get("got")):
            click.echo(f"  {line}")
    if summary["diverged"] > len(diverged):
        click.echo(f"\n… and {summary['diverged'] - len(diverged)} more in {directory / RESULTS}")
    click.echo(f"results: {directory} · stored: {summary['stored']}")


def _differing(expected: dict[str, Any] | None, got: dict[str, Any] | None) -> list[str]:
    if expected is None or got is None:
        shown = expected or got or {}
        return [f"{'expected' if expected else 'got'}: {_clip(json.dumps(shown, ensure_ascii=False))}",
                f"{'got' if expected else 'expected'}: nothing"]
    lines = []
    for name in [k for k in expected if k != "event_type"] or ["event_type"]:
        a, b = expected.get(name), got.get(name)
        a_text, b_text = (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in (a, b))
        at = next((i for i, (x, y) in enumerate(zip(a_text, b_text, strict=False)) if x != y),
                  min(len(a_text), len(b_text)))
        lo = max(0, at - 40)
        lead = "…" if lo else ""
        lines.append(f"{name}: expected {lead}{_clip(a_text[lo:])!r}")
        lines.append(f"{' ' * len(name)}       got {lead}{_clip(b_text[lo:])!r}")
    return lines


def _clip(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _print_candidate(ctx: Context, summary: dict[str, Any], results: list[dict[str, Any]],
                     directory: Path) -> None:
    """The summary, and the first runs side by side (all of them are in the results file)."""
    click.echo(f"candidate {summary['candidate']}: {summary['runs']} run(s), {summary['events']} "
               f"recorded event(s) in {summary['seconds']:.2f} s · {summary['diverged']} diverged "
               f"from the recording · {summary['unanswered']} stopped at a call the recording "
               f"cannot answer · {summary['policy_regressions']} policy regression(s)")
    table = Table(title_justify="left")
    for col in ("run", "status", "answer", "cost $", "latency ms", "first divergence"):
        table.add_column(col, overflow="fold")
    for r in results:
        b, c, d = r["baseline"], r["candidate"], r.get("divergence")
        where = f"seq {d['seq']}: {d['reason']}" if d else "-"
        table.add_row(r["run_id"][:8], f"{b['status']} → {c['status']}",
                      "same" if b["answer"] == c["answer"] else "changed",
                      f"{b['cost_usd']:.4f} → {c['cost_usd']:.4f}",
                      f"{b['latency_ms']} → {c['latency_ms']}", where)
    ctx.console.print(table)
    if summary["runs"] > len(results):
        click.echo(f"… and {summary['runs'] - len(results)} more in {directory / RESULTS}")
    click.echo(f"results: {directory} · stored: {summary['stored']} · next: agentlog score")


@click.command("score")
@click.argument("results", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--metrics", default=",".join(METRICS), show_default=True,
              help="Comma-separated: " + ", ".join(METRICS) + ".")
@click.option("--scorers", default=",".join(SCORERS), show_default=True,
              help="Quality scorers: " + ", ".join(SCORERS) + " (and a model with --grader).")
@click.option("--grader", metavar="PROVIDER/MODEL",
              help="Add a model-graded scorer: an openai_compatible provider of the models file.")
@click.option("--store/--no-store", default=True, show_default=True,
              help="Also store the scores in ClickHouse (replay_scores).")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@pass_ctx
def score(ctx: Context, results: Path | None, metrics: str, scorers: str, grader: str | None,
          store: bool, as_json: bool) -> None:
    """Score a candidate's replay results against the baseline (default: the latest replay).

    Writes scores.json beside the results, where `gate` reads it.
    """
    try:
        path = results_file(ctx.settings, results)
    except FileNotFoundError as exc:
        fail(str(exc), code=2)
    summary_path = path.parent / SUMMARY
    if summary_path.exists() and json.loads(summary_path.read_text()).get("mode") == "check":
        fail(f"{path} holds exact-replay results (--check), which have nothing to score; "
             "replay a candidate: agentlog replay --dataset FILE --candidate NAME", code=2)
    chosen = [m.strip() for m in metrics.split(",") if m.strip()]
    use = {}
    for name in (s.strip() for s in scorers.split(",") if s.strip()):
        if name not in SCORERS:
            raise click.BadParameter(f"unknown scorer {name!r} (known: {', '.join(SCORERS)})",
                                     param_hint="--scorers")
        use[name] = SCORERS[name]
    closer = None
    if grader:
        model_grader, closer = _grader(ctx, grader)
        use["model"] = model_scorer(model_grader)
    try:
        scores = score_results(read_jsonl(path), metrics=chosen, scorers=use)
    except (ValueError, KeyError) as exc:
        fail(f"cannot score {path}: {exc}", code=2)
    finally:
        if closer is not None:
            closer()
    scores["results"] = str(path)
    out = path.parent / SCORES
    out.write_text(json.dumps(scores, indent=2) + "\n")
    scores["stored"] = _store_scores(ctx, path.parent, scores) if store else "files"
    if as_json:
        click.echo(json.dumps(scores))
        return
    _print_scores(ctx, scores, out)


def _grader(ctx: Context, spec: str) -> tuple[Any, Any]:
    from processors.models import OpenAICompatibleProvider
    from processors.replay.model_grader import OpenAICompatibleGrader
    from streams.models_config import api_keys_from_env, load_models_config

    provider_name, _, model = spec.partition("/")
    config = load_models_config(ctx.settings.models_file)
    provider = config.providers.get(provider_name)
    if not model or not isinstance(provider, OpenAICompatibleProvider):
        raise click.BadParameter(f"{spec!r}: name an openai_compatible provider of "
                                 f"{ctx.settings.models_file} and a model, as PROVIDER/MODEL",
                                 param_hint="--grader")
    keys = api_keys_from_env(config)
    made = OpenAICompatibleGrader(
        base_url=provider.base_url, model=model,
        api_key=keys.get(provider.api_key_env) if provider.api_key_env else None,
        api_key_env=provider.api_key_env, timeout_s=provider.timeout_s,
        max_retries=provider.max_retries)
    if not telemetry.configure("grader"):
        return made, made.close
    traced = _TracedGrader(made, provider_name)
    return traced, traced.close


class _TracedGrader:
    """A model grader whose every call is a `chat` span (when spans are exported)."""

    def __init__(self, grader: Any, provider: str) -> None:
        self.grader, self.provider = grader, provider

    def close(self) -> None:
        self.grader.close()
        telemetry.shutdown()

    def grade(self, **asked: Any) -> float:
        started, score, error = datetime.now(UTC), None, None
        self.grader.last_reply = None
        try:
            score = float(self.grader.grade(**asked))
            return score
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            reply = self.grader.last_reply
            telemetry.emit(grader_span(
                provider=self.provider, model=self.grader.model, started=started, ended=datetime.now(UTC),
                input_tokens=reply.input_tokens if reply else None,
                output_tokens=reply.output_tokens if reply else None, score=score, error_type=error), None)


def _store_scores(ctx: Context, directory: Path, scores: dict[str, Any]) -> str:
    rows = score_rows(directory.name, datetime.now(UTC), scores)
    digest = hashlib.sha256(json.dumps(scores, sort_keys=True, default=str).encode()).hexdigest()
    why = store_in_clickhouse(ctx.settings, "replay_scores", SCORE_COLUMNS, rows,
                              token=f"scores:{directory.name}:{digest[:16]}")
    return "ClickHouse" if why is None else f"files only: {why}"


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value * 100:+.1f}%"
    if kind == "usd":
        return f"{value:.6f}"
    if kind == "q":
        return f"{value:.3f}"
    return str(value)


def _print_scores(ctx: Context, scores: dict[str, Any], out: Path) -> None:
    div = scores["divergence"]
    click.echo(f"scores of candidate {scores['candidate']} over {scores['runs']} run(s) "
               f"({div['runs']} diverged, {div['unanswered']} unanswered)")
    table = Table(title_justify="left")
    for col in ("metric", "baseline", "candidate", "delta", "runs"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    if q := scores.get("quality"):
        table.add_row("quality", _fmt(q["baseline"], "q"), _fmt(q["candidate"], "q"),
                      _fmt(q["delta"], "q"), str(q["runs"]))
        for name, s in q["scorers"].items():
            table.add_row(f"  {name}", _fmt(s["baseline"], "q"), _fmt(s["candidate"], "q"), "",
                          str(s["runs"]))
    if c := scores.get("cost"):
        table.add_row("cost $", _fmt(c["baseline_usd"], "usd"), _fmt(c["candidate_usd"], "usd"),
                      _fmt(c["delta"], "pct"), str(c["runs"]))
    if lat := scores.get("latency"):
        table.add_row("latency ms", str(lat["baseline_ms"]), str(lat["candidate_ms"]),
                      _fmt(lat["delta"], "pct"), str(lat["runs"]))
    if p := scores.get("policy"):
        table.add_row("policy regressions", "", str(p["regressions"]), "", str(p["calls"]) + " calls")
    ctx.console.print(table)
    for g in (scores.get("policy") or {}).get("groups", [])[:_SHOWN]:
        click.echo(f"  {g['count']} {g['kind']}: {g['tool']} {g['baseline']} → {g['candidate']} "
                   f"(e.g. run {g['example_run']}, step {g['example_step']})")
    click.echo(f"scores: {out} · stored: {scores['stored']} · next: agentlog gate")


@click.command("gate")
@click.argument("scores", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--min-quality", type=float, help="Lowest acceptable mean quality (0–1).")
@click.option("--max-cost-delta", type=float, help="Highest cost change vs the baseline (0.15 = +15%).")
@click.option("--max-latency-delta", type=float, help="Highest latency change vs the baseline.")
@click.option("--max-policy-regressions", type=int, help="Most policy regressions allowed.")
@click.option("--json", "as_json", is_flag=True, help="The verdict as JSON.")
@click.option("--record/--no-record", default=True, show_default=True,
              help="Put the verdict on the gates topic, where the block alert rule reads it.")
@pass_ctx
def gate_cmd(ctx: Context, scores: Path | None, min_quality: float | None,
             max_cost_delta: float | None, max_latency_delta: float | None,
             max_policy_regressions: int | None, as_json: bool, record: bool) -> None:
    """Pass or fail a candidate on its scores (default: the latest replay's): exit 0 or 1."""
    thresholds = Thresholds(min_quality=min_quality, max_cost_delta=max_cost_delta,
                            max_latency_delta=max_latency_delta,
                            max_policy_regressions=max_policy_regressions)
    if all(v is None for v in (min_quality, max_cost_delta, max_latency_delta, max_policy_regressions)):
        raise click.UsageError("give at least one threshold (--min-quality, --max-cost-delta, "
                               "--max-latency-delta, --max-policy-regressions)")
    try:
        path = scores_file(ctx.settings, scores)
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        hint = latest_dir(ctx.settings)
        fail(f"no scores{f' in {hint}' if hint else ''}: run `agentlog score` first", code=2)
    checks = gate(loaded, thresholds)
    passed = all(c.passed for c in checks)
    not_recorded: str | None = "not asked (--no-record)"
    if record:
        # The verdict stands whether or not it could be recorded: CI still gets its exit code.
        candidate = str(loaded.get("candidate") or "(unnamed)")
        not_recorded = record_verdict(ctx.settings, lambda: ctx.producer, candidate=candidate, checks=checks,
                                      scores=str(path))
    if as_json:
        click.echo(json.dumps({"passed": passed, "candidate": loaded.get("candidate"),
                               "scores": str(path), "checks": [c.to_json() for c in checks],
                               "recorded": not_recorded is None, "not_recorded": not_recorded}))
    else:
        table = Table(title=f"gate of candidate {loaded.get('candidate')}", title_justify="left")
        for col in ("threshold", "limit", "measured", "verdict"):
            table.add_column(col)
        for c in checks:
            table.add_row(c.name, c.limit, c.measured,
                          "[green]pass[/]" if c.passed else "[bold red]FAIL[/]")
        ctx.console.print(table)
        # Below the table, whole: a regression's run id must be copyable from a narrow terminal.
        for c in checks:
            if c.detail:
                click.echo(f"{c.name}: {c.detail}")
        click.echo("PASS" if passed else "FAIL")
        if record and not_recorded is not None:
            click.echo(f"note: the verdict was not recorded for the alert rules: {not_recorded}", err=True)
    if not passed:
        raise SystemExit(1)
