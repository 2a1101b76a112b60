"""What a service's heartbeat says about it: working, idle, waiting, stalled or down.

Pure: the heartbeat document and the clock come in as data, so `agentlog status`, the watchdog
and the tests judge the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.service import health_file
from streams.settings import Settings

__all__ = ["Health", "judge", "read_health", "watchdog_file", "watchdog_restarts"]


@dataclass(frozen=True)
class Health:
    state: str
    """working | idle | waiting | starting | stalled | down"""
    detail: str = ""
    progress_age_s: float | None = None
    """Seconds since the service last committed work or found nothing to do."""
    lag: int | None = None
    """Records waiting in its partitions."""
    parked: int = 0
    """Records it dead-lettered (or skipped while rebuilding) since it started."""

    @property
    def needs_restart(self) -> bool:
        return self.state in ("stalled", "down")


def read_health(settings: Settings, name: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(health_file(settings, name).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def judge(doc: dict[str, Any] | None, *, alive: bool, pid: int | None, now: float, stall_s: float,
          kafka_answers: bool) -> Health:
    """The state of one service from its heartbeat `doc`.

    stall_s: how long a silent main loop, or a loop without progress, is tolerated.
    kafka_answers: whether the cluster answers now; a service waiting for a cluster that does
    not answer is waiting, not stalled (a restart would not help it).
    """
    if not alive:
        return Health("down", "not running")
    if doc is None or doc.get("pid") != pid:
        return Health("starting", "no heartbeat yet")
    beat_age = now - float(doc.get("beat_at", 0))
    progress_age = now - float(doc.get("progress_at", 0))
    lag, parked = doc.get("lag"), int(doc.get("parked") or 0)
    waiting = doc.get("waiting_for")
    if beat_age > stall_s:
        return Health("stalled", f"main loop silent for {beat_age:.0f} s", progress_age, lag, parked)
    if progress_age > stall_s and not (waiting == "kafka" and not kafka_answers):
        why = f"waiting for {waiting}" if waiting else "failing"
        return Health("stalled", f"no progress for {progress_age:.0f} s ({why})", progress_age, lag, parked)
    if waiting:
        return Health("waiting", f"waiting for {waiting}", progress_age, lag, parked)
    return Health("working" if lag else "idle", "", progress_age, lag, parked)


def watchdog_file(settings: Settings) -> Path:
    """What the watchdog did, per service: restarts, the last reason, when it may restart next."""
    return settings.path("run", "watchdog.json")


def watchdog_restarts(settings: Settings) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(watchdog_file(settings).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
