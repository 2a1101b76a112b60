"""Prometheus metrics of one agentlog process, and the tiny HTTP server that serves them.

Every service process serves `/metrics` on `metrics_port + offset` (see `PORT_OFFSETS`); the
gateway serves it as a route on its own port. The counters are incremented on the hot path, so
they are plain `prometheus_client` metrics: a short lock per update, no I/O; the server thread
renders them only when scraped.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

from streams.settings import Settings

__all__ = ["REGISTRY", "CONTENT_TYPE", "PORT_OFFSETS", "UP", "RUNS", "DECISIONS", "TOOL_CALLS",
           "TOOL_SECONDS", "HOP_SECONDS", "LAG", "DEAD_LETTERS", "metrics_port", "serve_metrics",
           "render", "hop", "reason_class"]

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
"""This process's metrics (and the process collector's CPU, memory and open files)."""
ProcessCollector(registry=REGISTRY)

CONTENT_TYPE = CONTENT_TYPE_LATEST

PORT_OFFSETS: dict[str, int] = {"orchestrator": 0, "planner": 1, "guard": 2, "executor": 3,
                                "responder": 4, "sink": 5, "alerting": 6, "watchdog": 7, "memory": 8}
"""Each service's port is `metrics_port` plus its offset (the gateway uses its own port)."""

# Fast enough for a hop between two processes, long enough for a model call or a slow tool.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

UP = Gauge("agentlog_up", "1 while this agentlog process runs.", ["service"], registry=REGISTRY)
RUNS = Counter("agentlog_runs_total", "Runs ended, by terminal status (as the orchestrator committed them).",
               ["status"], registry=REGISTRY)
DECISIONS = Counter("agentlog_policy_decisions_total", "The guard's decisions, by rule and result.",
                    ["rule", "result"], registry=REGISTRY)
TOOL_CALLS = Counter("agentlog_tool_calls_total", "Tool calls the executor ran, by tool and status.",
                     ["tool", "status"], registry=REGISTRY)
TOOL_SECONDS = Histogram("agentlog_tool_duration_seconds", "Time of one tool call in its sandbox.",
                         ["tool"], buckets=_BUCKETS, registry=REGISTRY)
HOP_SECONDS = Histogram("agentlog_hop_seconds",
                        "From an event's time to the time of the worker's answer to it.",
                        ["service", "event_type"], buckets=_BUCKETS, registry=REGISTRY)
LAG = Gauge("agentlog_consumer_lag", "Records past the consumer's position, per assigned partition.",
            ["service", "topic", "partition"], registry=REGISTRY)
DEAD_LETTERS = Counter("agentlog_dead_letters_total", "Records dead-lettered, by service and reason class.",
                       ["service", "reason"], registry=REGISTRY)

_WORDS = re.compile(r"[A-Za-z]+")


def reason_class(reason: str) -> str:
    """The first words of a dead letter's reason, before any value it quotes (a run id, a key):
    a label of few values."""
    words: list[str] = []
    for word in reason.split(":")[0].split()[:3]:
        if not _WORDS.fullmatch(word):
            break
        words.append(word.lower())
    return " ".join(words) or "other"


def hop(service: str, event_type: str, asked_at: datetime, answered_at: datetime) -> None:
    """Record one hop: the event appended at `asked_at`, the worker's answer at `answered_at`."""
    HOP_SECONDS.labels(service, event_type).observe(max((answered_at - asked_at).total_seconds(), 0.0))


def metrics_port(settings: Settings, service: str) -> int | None:
    """Where `service` serves its metrics; None when they are off or it has no port of its own."""
    offset = PORT_OFFSETS.get(service)
    if not settings.metrics_port or offset is None:
        return None
    return settings.metrics_port + offset


def serve_metrics(settings: Settings, service: str) -> WSGIServer | None:
    """Serve `/metrics` for `service` in a daemon thread; a port that is taken is logged, not fatal
    (the service's work matters more than its scrape)."""
    UP.labels(service).set(1)
    port = metrics_port(settings, service)
    if port is None:
        return None
    try:
        server, _thread = start_http_server(port, addr=settings.metrics_host, registry=REGISTRY)
    except OSError as exc:
        log.warning("%s: metrics not served on %s:%d: %s", service, settings.metrics_host, port, exc)
        return None
    log.info("%s: metrics on http://%s:%d/metrics", service, settings.metrics_host, port)
    return server


def render() -> bytes:
    """This process's metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)
