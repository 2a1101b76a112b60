"""`agentlog policy eval | check | test | backtest`: read, test and backtest policies."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click
from pydantic import ValidationError

from policies import Decision, Policy, PolicyError, load_policy
from policies.testing import FRESH_RUN, parse_call, parse_metrics, run_suite
from schemas.events import ToolProposed
from streams.cli.common import Context, fail, pass_ctx
from streams.query_api import QueryError, run_query
from streams.settings import load_settings
from streams.supervisor import alive, processes
from streams.tools_config import tool_registry

__all__ = ["policy", "backtest_report", "RECORDED_ACTION"]

RECORDED_ACTION = {"ToolApproved": "allow", "ToolRejected": "deny",
                   "ApprovalRequested": "require_human_approval"}
"""The guard's answer to a ToolProposed, by event type, as a policy action."""

_PROPOSALS_SQL = """
SELECT tenant_id, run_id, seq, event_id, event_time, payload
FROM agent_events
WHERE event_type = 'ToolProposed'
  AND event_time >= parseDateTime64BestEffort({since:String}, 3, 'UTC')
ORDER BY event_time, tenant_id, run_id, seq
LIMIT 1 BY event_id
"""
# The guard's own answer is caused by the proposal; a ToolApproved after a person's approval
# is caused by ApprovalGranted instead, so it never shadows the recorded policy decision.
_DECISIONS_SQL = """
SELECT causation_id, event_type, payload
FROM agent_events
WHERE event_type IN ('ToolApproved', 'ToolRejected', 'ApprovalRequested')
  AND causation_id IN (
    SELECT event_id FROM agent_events
    WHERE event_type = 'ToolProposed'
      AND event_time >= parseDateTime64BestEffort({since:String}, 3, 'UTC'))
ORDER BY seq
LIMIT 1 BY causation_id
"""
_SHOWN_FLIPS = 50


@click.group("policy")
def policy() -> None:
    """Policy-as-code tools for reviewers."""
    # sqlglot warns on stderr when it falls back on a statement it cannot fully parse; the
    # decision's reason already says so.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)


def _load(path: Path) -> Policy:
    try:
        # The installation's tools (its tools file and MCP servers), as the guard loads it.
        return load_policy(path, registry=tool_registry(load_settings()))
    except PolicyError as exc:
        fail(str(exc))


def _decision_json(decision: Decision) -> str:
    return json.dumps(dataclasses.asdict(decision))


# ---- eval -------------------------------------------------------------------------------------


@policy.command("eval")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Policy file (default: the configured policy, AGENTLOG_POLICY_FILE).")
@click.option("--call", "call_json", metavar="JSON",
              help='One call: {"tool": …, "input": {…}}, optionally run_metrics, tenant_id, route.')
@click.option("--calls", "calls_file", type=click.File("rb"), metavar="FILE.jsonl",
              help="One call per line (- reads stdin); blank lines are skipped.")
@click.option("--run-metrics", "metrics_json", metavar="JSON",
              help="Run counters before the call(s), for calls without their own "
                   "(default: a fresh run, every counter 0).")
@pass_ctx
def eval_cmd(ctx: Context, policy_file: Path | None, call_json: str | None,
             calls_file: BinaryIO | None, metrics_json: str | None) -> None:
    """Print the decision on each call, one JSON object per line, in order.

    A malformed call is denied with the reason, like any call the guard cannot check.
    """
    if (call_json is None) == (calls_file is None):
        raise click.UsageError("give exactly one of --call and --calls")
    base = dict(FRESH_RUN)
    if metrics_json is not None:
        try:
            base = parse_metrics(json.loads(metrics_json))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise click.BadParameter(str(exc), param_hint="--run-metrics") from None
    loaded = _load(policy_file or ctx.settings.policy_file)
    # Lines are decoded one by one so that one bad byte denies one call, not the whole batch.
    lines: Iterable[tuple[str, str | bytes]] = (
        [("", call_json)] if call_json is not None
        else ((f"line {n}: ", line) for n, line in enumerate(calls_file or (), 1) if line.strip()))
    for where, text in lines:
        click.echo(_decision_json(_eval_one(loaded, where, text, base)))


def _eval_one(loaded: Policy, where: str, text: str | bytes, base: Mapping[str, float]) -> Decision:
    try:
        value = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError as exc:
        return Decision("deny", None, f"malformed call: {where}not UTF-8 ({exc})", loaded.version)
    except (ValueError, RecursionError) as exc:
        return Decision("deny", None, f"malformed call: {where}not JSON ({exc})", loaded.version)
    try:
        call = parse_call(value, run_metrics=base)
    except ValueError as exc:
        return Decision("deny", None, f"malformed call: {where}{exc}", loaded.version)
    return loaded.evaluate(tool=call.tool, input=call.input, run_metrics=call.run_metrics,
                           tenant_id=call.tenant_id, route=call.route)


# ---- check ------------------------------------------------------------------------------------


@policy.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check_cmd(file: Path) -> None:
    """Validate FILE: exit 0 with its version, or 1 naming the rule and the reason."""
    loaded = _load(file)
    click.echo(f"OK {file}: version {loaded.version}, {len(loaded.rules)} rule(s), "
               f"default {loaded.default}")


# ---- test -------------------------------------------------------------------------------------


@policy.command("test")
@click.argument("target", metavar="DIR", type=click.Path(path_type=Path))
def test_cmd(target: Path) -> None:
    """Run the policy unit tests in DIR (every *.cases.yaml under it, or one such file).

    Prints PASS or FAIL per case, then the rules no case exercised; exits 1 if a case failed.
    """
    report = run_suite(target, registry=tool_registry(load_settings()))
    for r in report.results:
        label = f"{r.file}: {r.name}" if r.name else r.file
        click.echo(f"PASS {label}" if r.passed else f"FAIL {label}: {r.problem}")
    click.echo(f"{len(report.passed)} passed, {len(report.failed)} failed")
    missing = [f"{src}: {', '.join(names)}" for src, names in report.unexercised.items() if names]
    click.echo(f"rules no case exercised: {report.unexercised_count}"
               + (f" ({'; '.join(missing)})" if missing else ""))
    if report.failed:
        raise SystemExit(1)


# ---- backtest ---------------------------------------------------------------------------------


def _replay(loaded: Policy, proposal: ToolProposed, tenant_id: str) -> Decision:
    # What processors.guard.decide_call does with a recorded proposal, without the event.
    try:
        call_input = json.loads(proposal.input_json)
    except ValueError:
        call_input = None
    return loaded.evaluate(
        tool=proposal.tool,
        input=call_input if isinstance(call_input, dict) else {"<invalid>": proposal.input_json},
        run_metrics=proposal.run_metrics.model_dump(), tenant_id=tenant_id, route=proposal.route,
    )


def backtest_report(loaded: Policy, proposals: Iterable[Mapping[str, Any]],
                    decisions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Replay recorded proposals through `loaded` and compare with the recorded decisions.

    `proposals` are agent_events rows of ToolProposed (tenant_id, run_id, event_id, event_time,
    payload); `decisions` rows of the guard's answers (causation_id, event_type, payload).
    """
    recorded = {d["causation_id"]: d for d in decisions}
    groups: Counter[tuple[str, str, str | None, str, str]] = Counter()
    versions: Counter[str] = Counter()
    flipped: list[dict[str, Any]] = []
    replayed = undecided = 0
    unreadable: list[str] = []
    for row in proposals:
        answer = recorded.get(row["event_id"])
        if answer is None:
            undecided += 1  # the guard has not answered yet (or its answer is not stored yet)
            continue
        try:
            proposal = ToolProposed.model_validate_json(row["payload"])
            old = json.loads(answer["payload"])
            old_action = RECORDED_ACTION[answer["event_type"]]
        except (ValidationError, ValueError, KeyError):
            unreadable.append(row["event_id"])
            continue
        replayed += 1
        versions[str(old.get("policy_version"))] += 1
        new = _replay(loaded, proposal, row["tenant_id"])
        if new.action == old_action:
            continue
        groups[(old_action, new.action, new.rule, proposal.tool, row["tenant_id"])] += 1
        flipped.append({
            "run_id": row["run_id"], "step_id": proposal.step_id, "tenant_id": row["tenant_id"],
            "tool": proposal.tool, "event_time": str(row.get("event_time", "")),
            "old_action": old_action, "old_rule": old.get("rule"),
            "old_policy_version": old.get("policy_version"),
            "new_action": new.action, "new_rule": new.rule, "new_reason": new.reason,
        })
    by_group = [{"old_action": o, "new_action": n, "new_rule": r, "tool": t, "tenant_id": ten,
                 "count": c}
                for (o, n, r, t, ten), c in sorted(groups.items(), key=lambda g: (-g[1], str(g[0])))]
    return {"policy": loaded.source, "policy_version": loaded.version, "replayed": replayed,
            "flips": len(flipped), "undecided": undecided, "unreadable": unreadable,
            "recorded_policy_versions": dict(versions.most_common()),
            "by_group": by_group, "flipped": flipped}


def _since_param(since: str | None) -> str:
    if since is None:
        return "1970-01-01 00:00:00.000"
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise click.BadParameter(f"{since!r} is not an ISO time such as 2026-05-01T12:00:00Z",
                                 param_hint="--since") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the store keeps UTC
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@policy.command("backtest")
@click.option("--policy", "policy_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The candidate policy.")
@click.option("--since", help="Only calls proposed at or after this ISO time (naive means UTC).")
@click.option("--json", "as_json", is_flag=True, help="The report, with every flipped call, as JSON.")
@pass_ctx
def backtest_cmd(ctx: Context, policy_file: Path, since: str | None, as_json: bool) -> None:
    """Replay the recorded tool calls through a candidate policy and report what would flip.

    Reads every ToolProposed and the guard's recorded answer from the ClickHouse store; exits 0
    whatever flips, 1 when the candidate policy is invalid.
    """
    loaded = _load(policy_file)
    params = {"since": _since_param(since)}
    sink = next(p for p in processes(ctx.settings) if p.name == "sink")
    running = alive(ctx.settings, sink)
    try:
        proposals = run_query(ctx.settings, _PROPOSALS_SQL, parameters=params, sink_running=running)
        answers = run_query(ctx.settings, _DECISIONS_SQL, parameters=params, sink_running=running)
    except QueryError as exc:
        fail(f"query failed: {exc}")
    report = backtest_report(loaded, proposals.as_dicts(), answers.as_dicts())
    report["since"] = since
    if as_json:
        click.echo(json.dumps(report, default=str))
        return
    _print_backtest(report)


def _print_backtest(report: dict[str, Any]) -> None:
    # Plain lines, not a table: ids, rule names and tenants must survive a narrow terminal whole.
    window = f" since {report['since']}" if report["since"] else ""
    click.echo(f"backtest of {report['policy']} ({report['policy_version']}): {report['replayed']} "
               f"recorded call(s){window} replayed, {report['flips']} would flip")
    if report["undecided"] or report["unreadable"]:
        click.echo(f"skipped: {report['undecided']} without a recorded decision, "
                   f"{len(report['unreadable'])} unreadable")
    if not report["flips"]:
        return
    click.echo("\nflips by decision, new rule, tool, tenant:")
    groups = [(str(g["count"]), f"{g['old_action']} -> {g['new_action']}", g["new_rule"] or "(no rule)",
               g["tool"], g["tenant_id"]) for g in report["by_group"]]
    for line in _aligned(groups):
        click.echo(f"  {line}")
    shown = report["flipped"][:_SHOWN_FLIPS]
    more = len(report["flipped"]) - len(shown)
    click.echo("\nflipped calls" + (f" (first {len(shown)}; --json lists all)" if more > 0 else "") + ":")
    calls = [(f["run_id"], f["step_id"], f["tool"], f["tenant_id"],
              (f"{f['old_action']} ({f['old_rule'] or 'no rule'}) -> "
               f"{f['new_action']} ({f['new_rule'] or 'no rule'})")) for f in shown]
    for line in _aligned(calls):
        click.echo(f"  {line}")


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
