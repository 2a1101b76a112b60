"""The policy engine: the article's file as written, the operators, and refusing bad files."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from typing import Any

import pytest

from policies import DEFAULT_POLICY_PATH, Decision, Policy, PolicyError, load_policy, parse_policy
from processors.tools.registry import default_registry

REGISTRY = default_registry()
NO_METRICS = {"tool_calls": 0, "tickets_created": 0, "emails_sent": 0, "cost_usd": 0.0}
DESTRUCTIVE = r"sql matches (?i)\b(delete|drop|truncate|alter)\b"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(DEFAULT_POLICY_PATH, registry=REGISTRY)


def sql(policy: Policy, statement: str) -> Decision:
    return policy.evaluate(tool="query_sql", input={"sql": statement}, run_metrics=NO_METRICS)


def mail(policy: Policy, **fields: Any) -> Decision:
    return policy.evaluate(tool="send_email", input={"subject": "Hi", "body": "x", **fields},
                           run_metrics=NO_METRICS)


def ticket(policy: Policy, created: int) -> Decision:
    return policy.evaluate(tool="create_ticket", input={"title": "t", "description": "d"},
                           run_metrics={**NO_METRICS, "tickets_created": created})


# ---- the shipped file -------------------------------------------------------------------------


def test_default_file_holds_the_three_article_rules_and_read_only_sql(policy: Policy) -> None:
    assert [(r.name, r.action) for r in policy.rules] == [
        ("deny_external_email_without_approval", "require_human_approval"),
        ("deny_destructive_sql", "deny"),
        ("cap_ticket_creation_rate", "deny"),
        ("deny_sql_writes", "deny"),
    ]
    assert policy.default == "allow"
    digest = hashlib.sha256(DEFAULT_POLICY_PATH.read_bytes()).hexdigest()[:16]
    assert policy.version == f"sha256:{digest}"


def test_version_changes_with_the_bytes() -> None:
    text = DEFAULT_POLICY_PATH.read_text()
    assert parse_policy(text).version != parse_policy(text + "\n# reviewed\n").version
    assert parse_policy(text).version == parse_policy(text.encode()).version


@pytest.mark.parametrize("statement", [
    "DROP TABLE orders",
    "drop table orders;",
    "DeLeTe FROM orders WHERE status = 'refunded'",
    "TRUNCATE TABLE customers",
    "ALTER TABLE customers ADD COLUMN vip INTEGER",
    "SELECT 1; DROP TABLE orders",
    "DELETE/**/FROM orders",
    "select * from orders;\n\tdelete\nfrom orders",
])
def test_destructive_sql_is_denied(policy: Policy, statement: str) -> None:
    decision = sql(policy, statement)
    assert (decision.action, decision.rule) == ("deny", "deny_destructive_sql")
    assert decision.reason.startswith(f"rule deny_destructive_sql: {DESTRUCTIVE}")
    assert decision.policy_version == policy.version


@pytest.mark.parametrize(("statement", "why"), [
    ("UPDATE orders SET status = 'paid'", "a UPDATE statement"),
    ("INSERT INTO orders (id) VALUES (1)", "a INSERT statement"),
    ("SELECT * FROM orders; UPDATE orders SET status = 'paid'", "a UPDATE statement"),
    ("PRAGMA writable_schema = 1", "a PRAGMA statement"),
    ("DR/**/OP TABLE orders", "the SQL could not be parsed"),  # the regex misses it, the parser not
])
def test_writes_the_regex_misses_are_denied_by_the_parser(policy: Policy, statement: str,
                                                           why: str) -> None:
    decision = sql(policy, statement)
    assert (decision.action, decision.rule) == ("deny", "deny_sql_writes")
    assert decision.reason == f"rule deny_sql_writes: sql writes ({why})"


def test_destructive_sql_is_decided_by_the_first_of_the_two_deny_rules(policy: Policy) -> None:
    assert sql(policy, "DROP TABLE orders").reason.endswith("(also matched: deny_sql_writes)")


@pytest.mark.parametrize("statement", [
    "SELECT COUNT(*) FROM customers WHERE country = 'DE'",
    "SELECT dropped_at, deleted_flag FROM audit",
])
def test_reads_are_allowed_by_default(policy: Policy, statement: str) -> None:
    decision = sql(policy, statement)
    assert (decision.action, decision.rule) == ("allow", None)
    assert decision.reason == "no rule matched; the policy default is allow"


@pytest.mark.parametrize("statement", [
    "SELECT * INTO backup FROM users",
    "select id, email into temp leak from customers",
    "SELECT id INTO b FROM customers UNION ALL SELECT id FROM orders",
    "WITH c AS (SELECT * INTO b FROM customers) SELECT * FROM c",
    "SELECT 1 WHERE EXISTS (SELECT * INTO b FROM customers)",
])
def test_select_into_is_a_write(policy: Policy, statement: str) -> None:
    decision = sql(policy, statement)
    assert (decision.action, decision.rule) == ("deny", "deny_sql_writes")
    assert decision.reason == "rule deny_sql_writes: sql writes (SELECT … INTO)"


@pytest.mark.parametrize(("statement", "why"), [
    ("SELECT load_extension('/tmp/evil.so')", "calls load_extension, which loads code"),
    ("select LoAd_ExTeNsIoN('x')", "calls load_extension, which loads code"),
    ('SELECT "load_extension"(\'x\')', "calls load_extension, which loads code"),
    ("SELECT [load_extension]('x')", "calls load_extension, which loads code"),
    ("SELECT `LOAD_EXTENSION`('x')", "calls load_extension, which loads code"),
    ("SELECT load_extension/**/('x')", "calls load_extension, which loads code"),
    ("SELECT load_extension -- hidden\n('x')", "calls load_extension, which loads code"),
    ("SELECT fts3_tokenizer('simple', x'00')", "calls fts3_tokenizer, which loads code"),
    ("SELECT writefile('/etc/cron.d/x', name) FROM customers", "calls writefile, which writes a file"),
    ("SELECT edit(note) FROM orders", "calls edit, which runs an editor"),
    ("SELECT readfile('/etc/passwd')", "calls readfile, which reads a file on the server"),
    ("SELECT * FROM fsdir('/home')", "calls fsdir, which reads a file on the server"),
    ("SELECT name FROM zipfile('/srv/backup.zip')", "calls zipfile, which reads a file on the server"),
    ("SELECT eval('UPDATE orders SET status = 1')", "calls eval, which runs SQL given as text"),
    ("SELECT * FROM file('/etc/passwd')", "calls file, which reads a file on the server"),
    ("SELECT * FROM read_csv('/srv/x.csv')", "calls read_csv, which reads a file on the server"),
    ("SELECT * FROM url('http://10.0.0.1/')", "calls url, which reaches another server"),
    # nested anywhere: a subquery, a CTE, WHERE, ORDER BY, LIMIT, a join, a union's second half
    ("SELECT * FROM (SELECT writefile('x', 'y')) AS s", "calls writefile, which writes a file"),
    ("WITH c AS (SELECT readfile('/etc/shadow') AS f) SELECT f FROM c",
     "calls readfile, which reads a file on the server"),
    ("SELECT id FROM orders WHERE status = (SELECT load_extension('x'))",
     "calls load_extension, which loads code"),
    ("SELECT id FROM orders ORDER BY writefile('x', id)", "calls writefile, which writes a file"),
    ("SELECT id FROM orders LIMIT length(readfile('/etc/passwd'))",
     "calls readfile, which reads a file on the server"),
    ("SELECT o.id FROM orders AS o JOIN fsdir('/') AS f ON f.name = o.note",
     "calls fsdir, which reads a file on the server"),
    ("SELECT 1 UNION SELECT CAST(writefile('x', 'y') AS TEXT)", "calls writefile, which writes a file"),
])
def test_calls_that_load_code_or_touch_files_are_not_plain_reads(policy: Policy, statement: str,
                                                                 why: str) -> None:
    decision = sql(policy, statement)
    assert (decision.action, decision.rule) == ("deny", "deny_sql_writes")
    assert decision.reason == f"rule deny_sql_writes: sql writes ({why})"


@pytest.mark.parametrize("statement", [
    "SELECT * FROM orders WHERE note = 'load_extension(1)'",
    "SELECT readfile, writefile FROM settings",
    'SELECT "edit" FROM settings',
    "SELECT id FROM orders -- writefile('x', 'y')",
    "SELECT id /* load_extension('x') */ FROM orders",
    "SELECT id FROM orders AS zipfile",
    "SELECT upper(note), length(note) FROM orders",
    "SELECT * FROM file",
    "SELECT f.x FROM (SELECT 1) AS f(x)",
])
def test_a_risky_name_that_is_not_called_is_still_a_read(policy: Policy, statement: str) -> None:
    assert (sql(policy, statement).action, sql(policy, statement).rule) == ("allow", None)


@pytest.mark.parametrize("to", [
    "jane.doe@gmail.com",
    "boss@yourcompany.com, jane@gmail.com",
    ["boss@yourcompany.com", "Jane <jane@GMAIL.com>"],
    "boss@yourcompany.com.evil.io",
    "boss@mail.yourcompany.com",
    '"boss@yourcompany.com" <thief@evil.io>',
    "alice@yourcompany.com)<bob@evil.io>",
    "not an address",
    " , , ",
])
def test_external_or_unparseable_recipients_need_approval(policy: Policy, to: Any) -> None:
    decision = mail(policy, to=to)
    assert (decision.action, decision.rule) == (
        "require_human_approval", "deny_external_email_without_approval")
    assert decision.reason.startswith(
        "rule deny_external_email_without_approval: recipient outside yourcompany.com: ")


def test_an_outsider_in_cc_or_bcc_needs_approval(policy: Policy) -> None:
    assert mail(policy, to="a@yourcompany.com", cc=["x@gmail.com"]).action == \
        "require_human_approval"
    assert mail(policy, to="a@yourcompany.com", bcc=["b@yourcompany.com", "spy@rival.io"]) \
        .reason.endswith("spy@rival.io")


@pytest.mark.parametrize("to", [
    '"Boss" <boss@YourCompany.com>',
    "team@yourcompany.com, ops@YOURCOMPANY.COM",
    ["a@yourcompany.com", '"Doe, Jane" <jane@yourcompany.com>'],
    '"odd local"@yourcompany.com',
    "alice@yourcompany.com (Bob from evil.io)",
])
def test_internal_email_is_allowed(policy: Policy, to: Any) -> None:
    decision = mail(policy, to=to, cc=["cc@yourcompany.com"])
    assert (decision.action, decision.rule) == ("allow", None)


def test_third_ticket_allowed_fourth_denied(policy: Policy) -> None:
    assert ticket(policy, created=2).action == "allow"
    fourth = ticket(policy, created=3)
    assert (fourth.action, fourth.rule) == ("deny", "cap_ticket_creation_rate")
    assert fourth.reason == (
        "rule cap_ticket_creation_rate: tickets_created 4 > 3 counting this call")


def test_other_tools_are_not_touched_by_the_ticket_cap(policy: Policy) -> None:
    decision = policy.evaluate(tool="search_docs", input={"query": "refunds"},
                               run_metrics={**NO_METRICS, "tickets_created": 10})
    assert decision.action == "allow"


# ---- fail closed ------------------------------------------------------------------------------


def test_unregistered_tool_is_denied_without_a_rule(policy: Policy) -> None:
    decision = policy.evaluate(tool="rm_rf", input={}, run_metrics=NO_METRICS)
    assert (decision.action, decision.rule) == ("deny", None)
    assert "'rm_rf' is not registered" in decision.reason


@pytest.mark.parametrize("tool_input", [{}, {"sql": 42}, {"sql": "SELECT 1", "extra": True}])
def test_input_off_schema_is_denied(policy: Policy, tool_input: dict[str, Any]) -> None:
    decision = policy.evaluate(tool="query_sql", input=tool_input, run_metrics=NO_METRICS)
    assert (decision.action, decision.rule) == ("deny", None)
    assert decision.reason.startswith("input does not fit query_sql's schema: ")


def test_input_that_is_not_an_object_is_denied(policy: Policy) -> None:
    decision = policy.evaluate(tool="query_sql", input="DROP TABLE x",  # type: ignore[arg-type]
                               run_metrics=NO_METRICS)
    assert (decision.action, decision.rule) == ("deny", None)


def test_registry_can_be_given_to_evaluate() -> None:
    bare = load_policy(DEFAULT_POLICY_PATH)
    assert bare.evaluate(tool="rm_rf", input={}, run_metrics=NO_METRICS).action == "allow"
    assert bare.evaluate(tool="rm_rf", input={}, run_metrics=NO_METRICS,
                         registry=REGISTRY).action == "deny"


def test_unknown_metric_makes_deny_rules_apply_and_allow_rules_not() -> None:
    text = """
version: 1
default: require_human_approval
rules:
  - {name: small_runs_ok, when: {run_metrics: {tool_calls_lt: 5}}, action: allow}
  - {name: cap_mail, when: {tool: send_email, run_metrics: {emails_sent_gte: 3}}, action: deny}
"""
    p = parse_policy(text)
    unknown = p.evaluate(tool="send_email", input={"to": "a@b.co"}, run_metrics={})
    assert (unknown.action, unknown.rule) == ("deny", "cap_mail")
    assert "emails_sent is unknown" in unknown.reason
    other = p.evaluate(tool="search_docs", input={}, run_metrics={"tool_calls": float("nan")})
    assert (other.action, other.rule) == ("require_human_approval", None)


# ---- combining rules --------------------------------------------------------------------------

LAYERED = """
version: 1
default: deny
rules:
  - {name: docs_ok, when: {tool: [search_docs, query_sql]}, action: allow}
  - {name: acme_reviews_sql, when: {tool: query_sql, tenant: acme}, action: require_human_approval}
  - {name: no_writes, when: {tool: query_sql, input: {sql_writes: true}}, action: deny}
  - {name: reads_ok, when: {tool: query_sql, input: {sql_writes: false}}, action: allow}
"""


def test_most_restrictive_matching_rule_wins() -> None:
    p = parse_policy(LAYERED, registry=REGISTRY)
    read = {"sql": "SELECT 1"}
    write = {"sql": "UPDATE orders SET status = 'paid'"}
    assert p.evaluate(tool="query_sql", input=read, run_metrics={}).action == "allow"
    parked = p.evaluate(tool="query_sql", input=read, run_metrics={}, tenant_id="acme")
    assert (parked.action, parked.rule) == ("require_human_approval", "acme_reviews_sql")
    assert parked.reason.endswith("(also matched: docs_ok, reads_ok)")
    denied = p.evaluate(tool="query_sql", input=write, run_metrics={}, tenant_id="acme")
    assert (denied.action, denied.rule) == ("deny", "no_writes")


def test_equal_rank_goes_to_the_first_rule_in_the_file() -> None:
    p = parse_policy(LAYERED)
    assert p.evaluate(tool="query_sql", input={"sql": "SELECT 1"}, run_metrics={}).rule == "docs_ok"


def test_default_action_applies_when_nothing_matches() -> None:
    decision = parse_policy(LAYERED).evaluate(tool="send_email", input={}, run_metrics={})
    assert decision == Decision("deny", None, "no rule matched; the policy default is deny",
                                parse_policy(LAYERED).version)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.action = "allow"  # type: ignore[misc]


def test_missing_default_means_allow() -> None:
    p = parse_policy("version: 1\nrules: []\n")
    assert p.evaluate(tool="x", input={}, run_metrics={}).action == "allow"


# ---- operators --------------------------------------------------------------------------------


def one_rule(when: str, action: str = "deny") -> Policy:
    return parse_policy(f"version: 1\nrules:\n  - {{name: r, when: {when}, action: {action}}}\n")


@pytest.mark.parametrize(("statement", "writes"), [
    ("SELECT * FROM orders", False),
    ("WITH t AS (SELECT 1 AS x) SELECT x FROM t", False),
    ("SELECT 1 UNION SELECT 2", False),
    ("select note from orders where note = 'please delete me'", False),
    ("UPDATE orders SET status = 'paid'", True),
    ("INSERT INTO orders (id) VALUES (1)", True),
    ("REPLACE INTO orders (id) VALUES (1)", True),
    ("PRAGMA writable_schema = 1", True),
    ("ATTACH DATABASE 'x.db' AS x", True),
    ("VACUUM", True),
    ("SELECT 1; DELETE FROM orders", True),
    ("this is not sql at all", True),
    ("   ;  ", True),
])
def test_sql_writes_uses_a_parser(statement: str, writes: bool) -> None:
    writer = one_rule("{input: {sql_writes: true}}")
    reader = one_rule("{input: {sql_writes: false}}", action="require_human_approval")
    assert (writer.evaluate(tool="q", input={"sql": statement}, run_metrics={}).action == "deny") \
        is writes
    assert (reader.evaluate(tool="q", input={"sql": statement}, run_metrics={}).action
            == "require_human_approval") is not writes


@pytest.mark.parametrize("spelling", [
    "writefile(1)", '"writefile"(1)', "[writefile](1)", "`writefile`(1)", "WriteFile(1)",
    '"WRITEFILE"(1)', "writefile/**/(1)", "writefile -- x\n(1)", "writefile\n\t(1)",
    "writefile(DISTINCT 1)", "writefile(*)", "writefile()",
    "1 /* /* */, writefile(1) /* */",  # SQLite's comments do not nest
    "'a\\', writefile(1) --'",  # nor does a backslash escape its quotes
])
def test_every_spelling_sqlite_calls_is_caught(spelling: str) -> None:
    # SQLite is the judge of what a spelling calls: a stand-in function records that it ran.
    ran: list[tuple[Any, ...]] = []
    db = sqlite3.connect(":memory:")
    db.create_function("writefile", -1, lambda *args: ran.append(args) or 1)
    statement = f"SELECT {spelling}"
    db.execute(statement).fetchall()
    db.close()
    assert ran, f"SQLite did not call writefile for {statement!r}"
    decision = one_rule("{input: {sql_writes: true}}").evaluate(
        tool="q", input={"sql": statement}, run_metrics={})
    why = "calls writefile, which writes a file"
    assert (decision.action, decision.reason) == ("deny", f"rule r: sql writes ({why})")


def test_sql_operators_ignore_calls_without_sql() -> None:
    p = one_rule("{input: {sql_writes: true, sql_matches_regex: x}}")
    assert p.evaluate(tool="search_docs", input={"query": "x"}, run_metrics={}).action == "allow"


def test_recipient_domain_in_needs_every_recipient_inside() -> None:
    p = one_rule('{input: {recipient_domain_in: ["partner.org", "Bücher.de"]}}')
    assert p.evaluate(tool="m", input={"to": "A@Partner.org, b@bücher.de"}, run_metrics={}) \
        .action == "deny"
    assert p.evaluate(tool="m", input={"to": "a@partner.org", "cc": ["x@gmail.com"]},
                      run_metrics={}).action == "allow"
    assert p.evaluate(tool="m", input={"to": "garbage"}, run_metrics={}).action == "allow"
    assert p.evaluate(tool="m", input={"query": "no recipients"}, run_metrics={}).action == "allow"


def test_field_equals_compares_types_too() -> None:
    p = one_rule("{tool: create_ticket, input: {field_equals: {priority: high, urgent: true}}}")
    hit = {"priority": "high", "urgent": True}
    assert p.evaluate(tool="create_ticket", input=hit, run_metrics={}).action == "deny"
    assert p.evaluate(tool="create_ticket", input={**hit, "urgent": 1}, run_metrics={}) \
        .action == "allow"
    assert p.evaluate(tool="create_ticket", input={"priority": "high"}, run_metrics={}) \
        .action == "allow"


@pytest.mark.parametrize(("test", "value", "hit"), [
    ("tool_calls_gt: 2", 2, True), ("tool_calls_gt: 3", 2, False),
    ("tool_calls_gte: 3", 2, True), ("tool_calls_lt: 3", 2, False),
    ("tool_calls_lte: 3", 2, True), ("tool_calls_eq: 3", 2, True),
])
def test_metric_comparisons_count_the_proposed_call(test: str, value: int, hit: bool) -> None:
    p = one_rule(f"{{run_metrics: {{{test}}}}}")
    decision = p.evaluate(tool="x", input={}, run_metrics={"tool_calls": value})
    assert (decision.action == "deny") is hit


def test_cost_metric_adds_the_tools_cost() -> None:
    p = parse_policy("version: 1\nrules:\n  - {name: budget, when: {run_metrics: "
                     "{cost_usd_gt: 0.0105}}, action: deny}\n", registry=REGISTRY)
    def at(spent: float) -> str:
        return p.evaluate(tool="query_sql", input={"sql": "SELECT 1"},
                          run_metrics={"cost_usd": spent}).action

    assert (at(0.0094), at(0.0096)) == ("allow", "deny")  # query_sql costs 0.001


def test_tenant_and_route_scopes() -> None:
    p = one_rule("{tenant: [acme, globex], route: support}")
    assert p.evaluate(tool="x", input={}, run_metrics={}, tenant_id="acme", route="support") \
        .reason == "rule r: tenant is acme, route is support"
    assert p.evaluate(tool="x", input={}, run_metrics={}, tenant_id="acme", route="sales") \
        .action == "allow"
    assert p.evaluate(tool="x", input={}, run_metrics={}, tenant_id="initech",
                      route="support").action == "allow"


# ---- refusing bad files -----------------------------------------------------------------------

RULE = "version: 1\nrules:\n  - name: bad_rule\n"


@pytest.mark.parametrize(("text", "reason"), [
    (RULE + "    when: {tool: query_sql}\n    action: deny\n    severity: 3\n", "unknown keys"),
    (RULE + "    when: {tools: query_sql}\n    action: deny\n", "unknown 'when' keys ['tools']"),
    (RULE + "    when: {input: {sql_contains: drop}}\n    action: deny\n",
     "unknown input operator 'sql_contains'"),
    (RULE + "    when: {input: {sql_matches_regex: '(unclosed'}}\n    action: deny\n",
     "bad regex '(unclosed'"),
    (RULE + "    when: {input: {sql_matches_regex: [drop]}}\n    action: deny\n",
     "sql_matches_regex expects a regular expression"),
    (RULE + "    when: {input: {sql_writes: 'yes'}}\n    action: deny\n",
     "sql_writes expects true or false"),
    (RULE + "    when: {input: {recipient_domain_not_in: yourcompany.com}}\n    action: deny\n",
     "recipient_domain_not_in expects a list of domains"),
    (RULE + "    when: {input: {recipient_domain_in: ['not a domain']}}\n    action: deny\n",
     "non-empty list of domain names"),
    (RULE + "    when: {tool: 5}\n    action: deny\n", "'tool' must be a name or a non-empty list"),
    (RULE + "    when: {tool: query_sql}\n    action: block\n", "unknown action 'block'"),
    (RULE + "    when: {run_metrics: {tickets_opened_gt: 3}}\n    action: deny\n",
     "unknown run metric test 'tickets_opened_gt'"),
    (RULE + "    when: {run_metrics: {tickets_created_gt: three}}\n    action: deny\n",
     "tickets_created_gt expects a number"),
    (RULE + "    when: {run_metrics: {tickets_created_gt: true}}\n    action: deny\n",
     "expects a number"),
    (RULE + "    when: [query_sql]\n    action: deny\n", "'when' to be a mapping"),
    (RULE + "    when: {tool: query_sql}\n    action: deny\n  - name: bad_rule\n"
     "    when: {tool: send_email}\n    action: deny\n", "duplicate rule name 'bad_rule'"),
    (RULE + "    when: {tool: query_sql}\n    action: deny\n    action: allow\n",
     "duplicate key 'action'"),
    (RULE + "    when: {tool: query_sq1}\n    action: deny\n", "unknown tools ['query_sq1']"),
])
def test_bad_rules_are_refused_naming_source_rule_and_reason(text: str, reason: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="policies/team.yaml", registry=REGISTRY)
    message = str(caught.value)
    assert message.startswith("policies/team.yaml: ")
    assert reason in message
    if "duplicate key" not in reason:  # the YAML parser reports a line, not a rule
        assert "rule 'bad_rule' (rules[" in message


@pytest.mark.parametrize(("text", "reason"), [
    ("version: 2\nrules: []\n", "'version' must be 1"),
    ("version: 1\nrules: {}\n", "'rules' must be a list"),
    ("version: 1\ndefault: maybe\nrules: []\n", "unknown default action 'maybe'"),
    ("version: 1\nrules: []\nowner: sec\n", "unknown top-level keys ['owner']"),
    ("- just a list\n", "a policy is a mapping"),
    ("version: 1\nrules: [\n", "not valid YAML"),
    ("version: 1\nrules:\n  - 42\n", "rules[0]: expects a mapping"),
])
def test_bad_files_are_refused(text: str, reason: str) -> None:
    with pytest.raises(PolicyError, match=r"^<string>: ") as caught:
        parse_policy(text)
    assert reason in str(caught.value)


def test_missing_file_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="cannot read the policy"):
        load_policy(DEFAULT_POLICY_PATH.with_name("no-such-policy.yaml"))
