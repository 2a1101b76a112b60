"""`agentlog policy eval | check | test` through click, and the backtest's comparison."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from policies import DEFAULT_POLICY_PATH, load_policy
from processors.tools.registry import default_registry
from streams.cli import main
from streams.cli.policy import backtest_report

REPO = Path(__file__).resolve().parents[2]
DROP = {"tool": "query_sql", "input": {"sql": "DROP TABLE orders"}}
VERSION = load_policy(DEFAULT_POLICY_PATH).version


def run(*args: str, stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(main, ["policy", *args], input=stdin, catch_exceptions=False)


def decisions(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(autouse=True)
def default_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The command's default policy comes from the settings; pin it to the shipped file.
    monkeypatch.setenv("AGENTLOG_SETTINGS_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("AGENTLOG_POLICY_FILE", str(DEFAULT_POLICY_PATH))
    monkeypatch.setenv("AGENTLOG_HOME", str(tmp_path / "home"))


# ---- eval -------------------------------------------------------------------------------------


def test_eval_one_call_prints_the_decision_with_rule_and_version() -> None:
    (d,) = decisions(run("eval", "--call", json.dumps(DROP)))
    assert list(d) == ["action", "rule", "reason", "policy_version"]
    assert (d["action"], d["rule"], d["policy_version"]) == ("deny", "deny_destructive_sql", VERSION)


def test_eval_an_update_is_denied_by_the_fourth_rule() -> None:
    call = {"tool": "query_sql", "input": {"sql": "UPDATE orders SET status = 'paid'"}}
    (d,) = decisions(run("eval", "--call", json.dumps(call)))
    assert (d["action"], d["rule"]) == ("deny", "deny_sql_writes")


def test_eval_a_file_of_calls_answers_each_in_order_and_malformed_ones_are_denied(
        tmp_path: Path) -> None:
    lines = [
        json.dumps(DROP),
        "{not json",
        "[1, 2]",
        json.dumps({"input": {}}),
        json.dumps({"tool": "query_sql", "input": "DROP TABLE orders"}),
        "",
        json.dumps({"tool": "create_ticket", "input": {"title": "t", "description": "d"},
                    "run_metrics": {"tickets_created": 3}}),
        json.dumps({"tool": "send_email", "input": {"to": "x@gmail.com", "subject": "s", "body": "b"},
                    "tenant_id": "acme", "route": "support"}),
        json.dumps({"tool": "create_ticket", "input": {"title": "t", "description": "d"},
                    "run_metrics": {"tickets": 3}}),
        json.dumps({"tool": "rm_rf", "input": {}}),
    ]
    calls = tmp_path / "calls.jsonl"
    calls.write_text("\n".join(lines) + "\n")
    out = decisions(run("eval", "--calls", str(calls)))
    assert [(d["action"], d["rule"]) for d in out] == [
        ("deny", "deny_destructive_sql"),
        ("deny", None), ("deny", None), ("deny", None), ("deny", None),
        ("deny", "cap_ticket_creation_rate"),
        ("require_human_approval", "deny_external_email_without_approval"),
        ("deny", None),
        ("deny", None),
    ]
    reasons = [d["reason"] for d in out]
    assert reasons[1].startswith("malformed call: line 2: not JSON")
    assert reasons[2] == "malformed call: line 3: a call is an object with 'tool' and 'input', got [1, 2]"
    assert reasons[3] == "malformed call: line 4: 'tool' is missing"
    assert reasons[4] == "malformed call: line 5: 'input' must be an object, got \"DROP TABLE orders\""
    assert reasons[7].startswith("malformed call: line 9: unknown run_metrics ['tickets']")
    assert "'rm_rf' is not registered" in reasons[8]
    assert {d["policy_version"] for d in out} == {VERSION}


def test_eval_reads_calls_from_stdin() -> None:
    (d,) = decisions(run("eval", "--calls", "-", stdin=json.dumps(DROP) + "\n"))
    assert d["rule"] == "deny_destructive_sql"


def test_eval_a_line_that_is_not_utf8_or_too_deep_is_denied_alone() -> None:
    lines = b'{"tool": "query_sql", "input": {"sql": "SELECT \xff"}}\n' + b"[" * 100_000 + b"\n" \
        + json.dumps(DROP).encode()
    out = decisions(run("eval", "--calls", "-", stdin=lines))
    assert out[0]["reason"].startswith("malformed call: line 1: not UTF-8 (")
    assert out[1]["reason"].startswith("malformed call: line 2: not JSON (")
    assert out[2]["rule"] == "deny_destructive_sql"


def test_eval_run_metrics_apply_to_calls_without_their_own() -> None:
    ticket = {"tool": "create_ticket", "input": {"title": "t", "description": "d"}}
    (fresh,) = decisions(run("eval", "--call", json.dumps(ticket)))
    (busy,) = decisions(run("eval", "--call", json.dumps(ticket),
                            "--run-metrics", '{"tickets_created": 3}'))
    (own,) = decisions(run("eval", "--call", json.dumps({**ticket, "run_metrics": {"tickets_created": 0}}),
                           "--run-metrics", '{"tickets_created": 3}'))
    assert (fresh["action"], busy["action"], own["action"]) == ("allow", "deny", "allow")


def test_eval_with_another_policy(tmp_path: Path) -> None:
    lax = tmp_path / "lax.yaml"
    lax.write_text("version: 1\nrules: []\n")
    (d,) = decisions(run("eval", "--policy", str(lax), "--call", json.dumps(DROP)))
    assert (d["action"], d["rule"]) == ("allow", None)
    assert d["policy_version"] != VERSION


@pytest.mark.parametrize(("args", "message"), [
    ((), "give exactly one of --call and --calls"),
    (("--call", "{}", "--calls", "-"), "give exactly one of --call and --calls"),
    (("--call", "{}", "--run-metrics", "[1]"), "run_metrics must be an object"),
    (("--call", "{}", "--run-metrics", '{"cost_usd": "x"}'), "run_metrics.cost_usd must be a number"),
])
def test_eval_usage_errors(args: tuple[str, ...], message: str) -> None:
    result = run("eval", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_eval_with_a_broken_policy_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - {name: r, when: {input: {sql_has: x}}, action: deny}\n")
    result = run("eval", "--policy", str(bad), "--call", json.dumps(DROP))
    assert result.exit_code == 1 and result.stdout == ""
    assert "unknown input operator 'sql_has'" in result.stderr


# ---- check ------------------------------------------------------------------------------------


def test_check_a_good_file() -> None:
    result = run("check", str(DEFAULT_POLICY_PATH))
    assert result.exit_code == 0
    assert result.stdout == f"OK {DEFAULT_POLICY_PATH}: version {VERSION}, 4 rule(s), default allow\n"


@pytest.mark.parametrize(("when", "reason"), [
    ('{tool: query_sql, input: {sql_matches_regex: "(unclosed"}}', "bad regex '(unclosed'"),
    ("{tool: query_sql, input: {sql_contains: drop}}", "unknown input operator 'sql_contains'"),
    ("{tool: create_ticket, run_metrics: {tickets_created_gt: three}}",
     "tickets_created_gt expects a number"),
    ("{tool: query_sq1}", "unknown tools ['query_sq1']"),
])
def test_check_a_bad_file_names_file_rule_and_reason(tmp_path: Path, when: str, reason: str) -> None:
    bad = tmp_path / "team.yaml"
    bad.write_text(f"version: 1\nrules:\n  - {{name: ok, when: {{tool: search_docs}}, action: allow}}\n"
                   f"  - name: broken_rule\n    when: {when}\n    action: deny\n")
    result = run("check", str(bad))
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: {bad}: rule 'broken_rule' (rules[1]): ")
    assert reason in result.stderr


def test_check_a_missing_file(tmp_path: Path) -> None:
    result = run("check", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1 and "cannot read the policy" in result.stderr


# ---- test -------------------------------------------------------------------------------------


def test_the_shipped_cases_pass_and_exercise_every_default_rule() -> None:
    result = run("test", str(REPO / "policies" / "tests"))
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert all(line.startswith("PASS ") for line in lines[:-2])
    assert len(lines) - 2 >= 30
    assert lines[-2] == f"{len(lines) - 2} passed, 0 failed"
    assert lines[-1] == "rules no case exercised: 0"


def write_cases(tmp_path: Path, cases: str, *, policy: str = "policy.yaml") -> Path:
    (tmp_path / "policy.yaml").write_text(
        "version: 1\nrules:\n"
        "  - {name: no_drop, when: {tool: query_sql, input: {sql_matches_regex: '(?i)drop'}}, action: deny}\n"
        "  - {name: cap_mail, when: {tool: send_email, run_metrics: {emails_sent_gt: 1}}, action: deny}\n")
    suite = tmp_path / "cases"
    suite.mkdir(exist_ok=True)
    (suite / "p.cases.yaml").write_text(f"policy: ../{policy}\ncases:\n{cases}")
    return suite


def test_failures_unexercised_rules_and_bad_cases_are_reported(tmp_path: Path) -> None:
    suite = write_cases(tmp_path, """\
  - name: drop denied
    call: {tool: query_sql, input: {sql: drop table t}}
    expect: {action: deny, rule: no_drop}
  - name: wrong expectation
    call: {tool: query_sql, input: {sql: select 1}}
    expect: {action: deny}
  - name: typo in a case
    call: {tool: query_sql, input: {sql: select 1}}
    expct: {action: allow}
  - name: reason checked
    call: {tool: query_sql, input: {sql: DROP x}}
    expect: {action: deny, reason_contains: "'DROP'"}
""")
    result = run("test", str(suite))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    where = f"{suite / 'p.cases.yaml'}"
    assert lines[0] == f"PASS {where}: drop denied"
    assert lines[1] == (f"FAIL {where}: wrong expectation: expected action deny; got action allow, "
                        "rule none: no rule matched; the policy default is allow")
    assert lines[2].startswith(f"FAIL {where}: typo in a case: bad case: unknown keys ['expct']")
    assert lines[3] == f"PASS {where}: reason checked"
    assert lines[4] == "2 passed, 2 failed"
    assert lines[5] == f"rules no case exercised: 1 ({tmp_path / 'policy.yaml'}: cap_mail)"


def test_run_metrics_tenant_and_route_of_a_case(tmp_path: Path) -> None:
    suite = write_cases(tmp_path, """\
  - name: second mail denied
    call: {tool: send_email, input: {to: a@b.co, subject: s, body: b}}
    run_metrics: {emails_sent: 1}
    tenant_id: acme
    route: support
    expect: {action: deny, rule: cap_mail, reason_contains: emails_sent 2 > 1}
  - name: first mail allowed
    call: {tool: send_email, input: {to: a@b.co, subject: s, body: b}}
    expect: {action: allow, rule: null}
""")
    result = run("test", str(suite))
    assert result.exit_code == 0, result.stdout
    assert result.stdout.splitlines()[-1] == \
        f"rules no case exercised: 1 ({tmp_path / 'policy.yaml'}: no_drop)"


@pytest.mark.parametrize(("policy_text", "message"), [
    ("version: 1\nrules:\n  - {name: broken, when: {input: {sql_matches_regex: '('}}, action: deny}\n",
     "rule 'broken' (rules[0]): sql_matches_regex bad regex"),
    (None, "cannot read the policy"),
])
def test_a_case_file_whose_policy_is_bad_fails(tmp_path: Path, policy_text: str | None,
                                               message: str) -> None:
    suite = tmp_path / "cases"
    suite.mkdir()
    if policy_text is not None:
        (tmp_path / "bad.yaml").write_text(policy_text)
    (suite / "b.cases.yaml").write_text(
        "policy: ../bad.yaml\ncases:\n  - {name: x, call: {tool: search_docs, input: {query: q}}, "
        "expect: {action: allow}}\n")
    result = run("test", str(suite))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"FAIL {suite / 'b.cases.yaml'}: ") and message in result.stdout


@pytest.mark.parametrize(("text", "message"), [
    ("cases: []\n", "'policy' must name the policy file"),
    ("policy: ../policy.yaml\ncases: []\n", "'cases' must be a non-empty list"),
    ("policy: ../policy.yaml\ncases: [\n", "cannot read the case file"),
    ("policy: ../policy.yaml\ntests: []\n", "unknown top-level keys ['tests']"),
])
def test_bad_case_files_fail_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    write_cases(tmp_path, "  - {name: x, call: {tool: q, input: {}}, expect: {action: allow}}\n")
    (tmp_path / "cases" / "p.cases.yaml").write_text(text)
    result = run("test", str(tmp_path / "cases"))
    assert result.exit_code == 1 and message in result.stdout


def test_a_directory_without_case_files_fails(tmp_path: Path) -> None:
    result = run("test", str(tmp_path))
    assert result.exit_code == 1 and "no *.cases.yaml file here" in result.stdout


# ---- backtest's comparison (the command itself runs in tests/integration) --------------------


def proposal(event_id: str, tool: str, call_input: dict[str, Any], *, tenant: str = "default",
             tickets: int = 0) -> dict[str, Any]:
    payload = {"step_id": "s1", "tool": tool, "input_json": json.dumps(call_input),
               "objective": "do it", "route": "default", "idempotency_key": f"r-{event_id}/s1",
               "run_metrics": {"tool_calls": 0, "tickets_created": tickets, "emails_sent": 0,
                               "cost_usd": 0.0}}
    return {"tenant_id": tenant, "run_id": f"r-{event_id}", "seq": 3, "event_id": event_id,
            "event_time": "2026-01-01T00:00:00", "payload": json.dumps(payload)}


def answer(event_id: str, event_type: str, rule: str | None) -> dict[str, Any]:
    return {"causation_id": event_id, "event_type": event_type,
            "payload": json.dumps({"step_id": "s1", "tool": "x", "rule": rule, "reason": "r",
                                   "policy_version": "sha256:old"})}


def test_backtest_report_groups_flips_by_decision_rule_tool_and_tenant() -> None:
    new = load_policy(DEFAULT_POLICY_PATH, registry=default_registry())
    proposals = [
        proposal("e1", "query_sql", {"sql": "UPDATE t SET a = 1"}, tenant="acme"),
        proposal("e2", "query_sql", {"sql": "UPDATE t SET a = 2"}, tenant="acme"),
        proposal("e3", "query_sql", {"sql": "SELECT 1"}),
        proposal("e4", "send_email", {"to": "x@gmail.com", "subject": "s", "body": "b"}),
        proposal("e5", "search_docs", {"query": "q"}),  # no recorded answer yet
        {**proposal("e6", "search_docs", {"query": "q"}), "payload": "{broken"},
    ]
    answers = [answer("e1", "ToolApproved", None), answer("e2", "ToolApproved", None),
               answer("e3", "ToolApproved", None), answer("e4", "ToolApproved", None),
               answer("e6", "ToolApproved", None)]
    report = backtest_report(new, proposals, answers)
    assert (report["replayed"], report["flips"], report["undecided"], report["unreadable"]) == \
        (4, 3, 1, ["e6"])
    assert report["by_group"] == [
        {"old_action": "allow", "new_action": "deny", "new_rule": "deny_sql_writes",
         "tool": "query_sql", "tenant_id": "acme", "count": 2},
        {"old_action": "allow", "new_action": "require_human_approval",
         "new_rule": "deny_external_email_without_approval", "tool": "send_email",
         "tenant_id": "default", "count": 1},
    ]
    assert [(f["run_id"], f["step_id"]) for f in report["flipped"]] == \
        [("r-e1", "s1"), ("r-e2", "s1"), ("r-e4", "s1")]
    assert report["recorded_policy_versions"] == {"sha256:old": 4}


def test_backtest_report_of_the_same_decisions_has_no_flips() -> None:
    new = load_policy(DEFAULT_POLICY_PATH, registry=default_registry())
    proposals = [proposal("e1", "query_sql", {"sql": "DROP TABLE t"}),
                 proposal("e2", "create_ticket", {"title": "t", "description": "d"}, tickets=3),
                 proposal("e3", "send_email", {"to": "x@gmail.com", "subject": "s", "body": "b"})]
    answers = [answer("e1", "ToolRejected", "deny_destructive_sql"),
               answer("e2", "ToolRejected", "cap_ticket_creation_rate"),
               answer("e3", "ApprovalRequested", "deny_external_email_without_approval")]
    report = backtest_report(new, proposals, answers)
    assert (report["replayed"], report["flips"], report["by_group"]) == (3, 0, [])


def test_backtest_refuses_an_invalid_policy_before_reading_the_store(tmp_path: Path) -> None:
    bad = tmp_path / "new.yaml"
    bad.write_text("version: 1\nrules:\n  - {name: lax, when: {tool: query_sql}, action: permit}\n")
    result = run("backtest", "--policy", str(bad))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {bad}: rule 'lax' (rules[0]): unknown action 'permit'")


def test_backtest_refuses_a_bad_since() -> None:
    result = run("backtest", "--policy", str(DEFAULT_POLICY_PATH), "--since", "last tuesday")
    assert result.exit_code == 2 and "is not an ISO time" in result.stderr
