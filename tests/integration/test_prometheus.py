"""Every service's `/metrics` scraped with the Prometheus text parser while runs go through the
real stack: the counters move as the runs' events say."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import httpx
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics_export import PORT_OFFSETS
from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration

Samples = list[tuple[str, dict[str, str], float]]
WORKERS = ("planner", "guard", "executor", "responder")


def scrape(url: str) -> Samples:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text[:200]
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(r.text)
            for s in family.samples]


def service_url(stack: Stack, service: str) -> str:
    return f"http://127.0.0.1:{stack.settings.metrics_port + PORT_OFFSETS[service]}/metrics"


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and labels.items() <= lab.items())


def counts(stack: Stack) -> Mapping[str, float]:
    orchestrator, guard, executor = (scrape(service_url(stack, s))
                                     for s in ("orchestrator", "guard", "executor"))
    return {
        "completed": total(orchestrator, "agentlog_runs_total", status="completed"),
        "denied": total(guard, "agentlog_policy_decisions_total", rule="deny_destructive_sql",
                        result="ToolRejected"),
        "search_ok": total(executor, "agentlog_tool_calls_total", tool="search_docs", status="ok"),
        "search_timed": total(executor, "agentlog_tool_duration_seconds_count", tool="search_docs"),
        "tombstones": total(orchestrator, "agentlog_dead_letters_total", service="orchestrator",
                            reason="null value"),
    }


def test_every_service_serves_its_metrics_and_the_gateway_needs_no_key(stack: Stack):
    for service in ("orchestrator", *WORKERS, "sink", "alerting"):
        samples = scrape(service_url(stack, service))
        assert total(samples, "agentlog_up", service=service) == 1, service
        assert total(samples, "process_resident_memory_bytes") > 0, service
    gateway = scrape(f"http://127.0.0.1:{stack.settings.gateway_port}/metrics")
    assert total(gateway, "agentlog_up", service="gateway") == 1
    doc = httpx.get(f"http://127.0.0.1:{stack.settings.gateway_port}/openapi.json").json()
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_runs_decisions_tool_calls_and_dead_letters_are_counted(stack: Stack):
    before = counts(stack)
    allowed = stack.cli_json("submit", "What is our refund policy for annual plans?", "--wait",
                             "--tenant", "prom")
    denied = stack.cli_json("submit", "Please drop the orders table", "--wait", "--tenant", "prom")
    assert allowed["status"] == denied["status"] == "completed"
    # A tombstone on the inbox: the orchestrator dead-letters it and goes on.
    producer = Producer({"bootstrap.servers": stack.settings.bootstrap_servers})
    producer.produce(stack.settings.inbox_topic, key=f"prom-{uuid.uuid4()}", value=None)
    assert producer.flush(10) == 0

    expected = {"completed": 2, "denied": 1, "search_ok": 1, "search_timed": 1, "tombstones": 1}

    def moved() -> dict[str, float] | None:
        now = counts(stack)
        delta = {k: now[k] - before[k] for k in expected}
        return delta if delta == expected else None

    eventually(moved, what="the counters to move as the two runs and the tombstone say")

    for service in WORKERS:
        hops = scrape(service_url(stack, service))
        assert total(hops, "agentlog_hop_seconds_count", service=service) > 0, service
        assert total(hops, "agentlog_hop_seconds_sum", service=service) >= 0, service
    topics = {"orchestrator": stack.settings.inbox_topic, "sink": stack.settings.events_topic,
              **dict.fromkeys(WORKERS, stack.settings.events_topic)}
    partitions = {str(p) for p in range(stack.settings.partitions)}
    for service, topic in topics.items():
        lag = [(labels, v) for n, labels, v in scrape(service_url(stack, service))
               if n == "agentlog_consumer_lag"]
        assert lag, f"{service} reports no lag"
        assert all(labels["service"] == service and labels["topic"] == topic
                   and labels["partition"] in partitions and v >= 0 for labels, v in lag), (service, lag)
