"""The scripted planner: plain requests give valid plans, and its SQL runs on the shop schema."""

from __future__ import annotations

import json
import sqlite3
import types
from collections.abc import Iterator
from typing import Any

import pytest

import policies.engine
import processors.plan
import processors.planner_scripted
from policies import DEFAULT_POLICY_PATH, load_policy
from processors.plan import validate_plan
from processors.planner_scripted import SAMPLE_REQUESTS, ScriptedPlanner
from processors.tools.registry import default_registry

REGISTRY = default_registry()
RUN_ID = "run-2026-0001"
SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
    country TEXT NOT NULL, plan TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
    price_usd REAL NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL,
    total_usd REAL NOT NULL, status TEXT NOT NULL, ordered_at TEXT NOT NULL);
"""
ROWS = """
INSERT INTO customers VALUES (1, 'Ada', 'ada@a.example', 'DE', 'team', '2025-01-02'),
    (2, 'Bo', 'bo@b.example', 'DE', 'starter', '2026-02-03'),
    (3, 'Cy', 'cy@c.example', 'FR', 'enterprise', '2026-03-04');
INSERT INTO products VALUES (1, 'Seats', 'add-on', 150), (2, 'Team plan', 'subscription', 199);
INSERT INTO orders VALUES (1, 1, 1, 2, 300, 'paid', '2026-01-10'),
    (2, 1, 2, 1, 199, 'refunded', '2026-02-11'), (3, 3, 2, 5, 995, 'paid', '2026-03-12'),
    (4, 2, 1, 1, 150, 'pending', '2026-03-13');
"""

S, Q, T, E = "search_docs", "query_sql", "create_ticket", "send_email"
CASES: list[tuple[str, list[str]]] = [
    ("What is our refund policy?", [S]),
    ("How do I escalate an incident to the on-call engineer?", [S]),
    ("summarize the data retention policy", [S]),
    ("hello there", [S]),
    ("How many customers do we have?", [Q]),
    ("how many customers are in Germany", [Q]),
    ("What is our total revenue?", [Q]),
    ("total revenue by country", [Q]),
    ("What's the average order value?", [Q]),
    ("Show me the top 5 customers by revenue", [Q]),
    ("list refunded orders", [Q]),
    ("How many orders are pending?", [Q]),
    ("Which product sold the most?", [Q]),
    ("which country has the most clients", [Q]),
    ("number of purchases per month in 2026", [Q]),
    ("how much revenue came from French customers in March 2026", [Q]),
    ("list the 10 most recent orders over $500", [Q]),
    ("what did ada@a.example order", [Q]),
    ("Drop the orders table", [Q]),
    ("delete all refunded orders", [Q]),
    ("truncate customers", [Q]),
    ("alter table customers add column vip boolean", [Q]),
    ("Please remove customer 5", [Q]),
    ("mark order 7 as refunded", [Q]),
    ("Send an email to jane.doe@gmail.com about the delayed shipment", [E]),
    ("write to boss@yourcompany.com and cc carol@gmail.com saying the demo moved to Friday", [E]),
    ("let jane@gmail.com know that her refund was processed", [E]),
    ("Open an urgent ticket: the checkout page returns 500 errors", [T]),
    ("please file a low priority bug about the typo on the pricing page", [T]),
    ("The VPN keeps dropping, can you raise an incident?", [T]),
    ("look up the refund policy and email it to anna@acme.io", [S, E]),
    ("email the total revenue by country to cfo@yourcompany.com", [Q, E]),
    ("How many orders are pending? Then open a ticket to chase them and email ops@acme.io",
     [Q, T, E]),
]


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    connection.executescript(SCHEMA)
    yield connection
    connection.close()


def plan_for(text: str) -> dict[str, Any]:
    raw = ScriptedPlanner().plan(run_id=RUN_ID, text=text)
    checked = validate_plan(raw, registry=REGISTRY, run_id=RUN_ID)
    assert checked.errors == [], (text, checked.errors)
    decoded: dict[str, Any] = json.loads(raw)
    return decoded


def inputs(text: str, tool: str) -> list[dict[str, Any]]:
    return [s["input"] for s in plan_for(text)["steps"] if s["tool"] == tool]


@pytest.mark.parametrize(("text", "tools"), CASES)
def test_requests_give_valid_plans_with_the_expected_tools(
    text: str, tools: list[str], db: sqlite3.Connection
) -> None:
    plan = plan_for(text)
    assert [s["tool"] for s in plan["steps"]] == tools
    assert plan["maxSteps"] == len(tools) + 2 and plan["budgetUsd"] == 0.5
    assert [s["id"] for s in plan["steps"]] == [f"s{i}" for i in range(1, len(tools) + 1)]
    for sql in (i["sql"] for i in inputs(text, Q)):
        db.execute(sql).fetchall()  # raises on SQL that SQLite or the schema refuses


def test_there_are_enough_varied_cases() -> None:
    assert len(CASES) >= 25 and {t for _, tools in CASES for t in tools} == {S, Q, T, E}


@pytest.mark.parametrize(("text", "sql"), [
    ("Drop the orders table.", "DROP TABLE orders"),
    ("drop the clients table", "DROP TABLE customers"),
    ("delete all refunded orders", "DELETE FROM orders WHERE status = 'refunded'"),
    ("truncate customers", "DELETE FROM customers"),
    ("remove customer 5", "DELETE FROM customers WHERE id = 5"),
    ("delete the orders of customer 7", "DELETE FROM orders WHERE customer_id = 7"),
    ("delete customers from Germany",  "DELETE FROM customers WHERE country = 'DE'"),
    ("alter table customers add column vip boolean",
     "ALTER TABLE customers ADD COLUMN vip INTEGER"),
    ("rename the products table to products_old", "ALTER TABLE products RENAME TO products_old"),
    ("drop the email column from the customers table", "ALTER TABLE customers DROP COLUMN email"),
    ("set the plan of customer 3 to Enterprise",
     "UPDATE customers SET plan = 'enterprise' WHERE id = 3"),
    ("run: DELETE FROM orders WHERE id = 1;", "DELETE FROM orders WHERE id = 1"),
])
def test_change_requests_become_the_statement_asked_for(
    text: str, sql: str, db: sqlite3.Connection
) -> None:
    assert inputs(text, Q) == [{"sql": sql}]
    db.execute(sql)


def test_destructive_requests_are_stopped_by_the_default_policy_not_the_planner() -> None:
    policy = load_policy(DEFAULT_POLICY_PATH, registry=REGISTRY)
    metrics = {"tool_calls": 0, "tickets_created": 0, "emails_sent": 0, "cost_usd": 0.0}
    expected = {"docs": "allow", "sql": "allow", "destructive_sql": "deny",
                "external_email": "require_human_approval", "ticket": "allow"}
    assert set(SAMPLE_REQUESTS) == set(expected)
    for name, text in SAMPLE_REQUESTS.items():
        (step,) = plan_for(text)["steps"]
        decision = policy.evaluate(tool=step["tool"], input=step["input"], run_metrics=metrics)
        assert decision.action == expected[name], (name, decision)


def test_sql_answers_are_correct_on_sample_rows(db: sqlite3.Connection) -> None:
    db.executescript(ROWS)

    def answer(text: str) -> list[tuple[Any, ...]]:
        (only,) = inputs(text, Q)
        return db.execute(only["sql"]).fetchall()

    assert answer("how many customers do we have") == [(3,)]
    assert answer("how many customers are in Germany") == [(2,)]
    assert answer("what is our total revenue") == [(1295.0,)]  # refunded and pending excluded
    assert answer("total revenue by country") == [("FR", 995.0), ("DE", 300.0)]
    assert answer("average order value") == [(647.5,)]
    assert answer("top 1 customer by revenue") == [("Cy", 995.0)]
    assert answer("how many orders are pending") == [(1,)]
    assert answer("which product sold the most") == [("Team plan", 5)]
    assert [r[0] for r in answer("list refunded orders")] == [2]
    assert answer("how many customers signed up in 2026") == [(2,)]
    assert answer("how much did customer 1 spend") == [(300.0,)]
    assert answer("most expensive product") == [("Team plan", 199.0)]


def test_email_recipients_subject_and_body() -> None:
    (mail,) = inputs("Write to \"Boss\" boss@YourCompany.com, sam@partner.org about Q3 numbers", E)
    assert mail["to"] == ["boss@YourCompany.com", "sam@partner.org"]
    assert mail["subject"] == "Q3 numbers" and "Q3 numbers" in mail["body"]
    (mail,) = inputs("email bob@yourcompany.com and cc carol@gmail.com saying the demo moved", E)
    assert (mail["to"], mail["cc"]) == ("bob@yourcompany.com", ["carol@gmail.com"])
    assert mail["subject"] == "Re: the demo moved" and "The demo moved." in mail["body"]


def test_email_about_a_previous_step_takes_its_topic() -> None:
    (mail,) = inputs("look up the refund policy and email it to anna@acme.io", E)
    assert mail["subject"] == "Re: the refund policy"


def test_ticket_priority_and_title() -> None:
    def one(text: str) -> dict[str, Any]:
        (ticket,) = inputs(text, T)
        assert ticket["description"] == text and len(ticket["title"]) <= 80
        return ticket

    assert one("Open an urgent ticket: the checkout page returns 500 errors")["priority"] == "high"
    assert one("log an incident for the payment outage asap")["title"] == "The payment outage"
    assert one("create a P1 ticket for the API gateway")["priority"] == "high"
    assert one("file a minor issue about the footer colour")["priority"] == "low"
    assert one("open a ticket about the export, not urgent")["priority"] == "low"
    assert one("create a ticket to renew the TLS certificate")["priority"] == "normal"
    long = one("open a ticket about" + " the very long description of a problem" * 5)
    assert long["title"].endswith("…") and len(long["title"]) <= 80


def test_several_intents_keep_their_order() -> None:
    text = "Open a ticket about slow exports, then email ops@acme.io and list pending orders"
    assert [s["tool"] for s in plan_for(text)["steps"]] == [T, E, Q]


def test_the_planner_is_deterministic_and_reports_usage() -> None:
    text = SAMPLE_REQUESTS["external_email"]
    first = ScriptedPlanner().plan(run_id=RUN_ID, text=text, route="support")
    assert first == ScriptedPlanner().plan(run_id=RUN_ID, text=f"  {text} ")
    planner = ScriptedPlanner()
    assert (planner.model, planner.prompt_version) == ("scripted-v1", "scripted/1")
    assert planner.usage("one two three", first) == planner.usage("one two three", first)
    assert planner.usage("one two three four five six seven eight nine ten", "x") == (13, 1)


def test_plans_are_the_compact_sorted_json_plan_to_json_writes() -> None:
    raw = ScriptedPlanner().plan(run_id=RUN_ID, text="how many customers do we have")
    checked = validate_plan(raw, registry=REGISTRY)
    assert checked.plan is not None and processors.plan.plan_to_json(checked.plan) == raw


def test_core_modules_import_no_io_libraries() -> None:
    forbidden = {"confluent_kafka", "faust", "aiokafka", "clickhouse_connect", "chdb", "httpx",
                 "requests", "socket", "os", "time", "datetime", "urllib"}
    for module in (processors.plan, processors.planner_scripted, policies.engine):
        imported = {v.__name__.split(".")[0] for v in vars(module).values()
                    if isinstance(v, types.ModuleType)}
        assert not imported & forbidden, (module.__name__, imported & forbidden)
