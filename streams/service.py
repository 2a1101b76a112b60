"""What every service process shares: logging, graceful stop, readiness and the heartbeat.

The heartbeat (`<home>/run/<name>.health`, JSON) is what `agentlog status`, `agentlog health`
and the watchdog read: when the main loop last ran, when it last made progress (a batch
committed, or nothing left to do), what it waits for, and how many records wait in its
partitions. Under systemd (`Type=notify`, `WatchdogSec=`) the same beat is `WATCHDOG=1`, sent
only while the service makes progress or waits for a cluster that is away.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams import telemetry
from streams.metrics_export import serve_metrics
from streams.settings import Settings

__all__ = ["ServiceContext", "utcnow", "health_file", "ready_file"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def ready_file(settings: Settings, name: str) -> Path:
    """Written by a service once it works; removed when it stops."""
    return settings.path("run", f"{name}.ready")


def health_file(settings: Settings, name: str) -> Path:
    """A service's heartbeat."""
    return settings.path("run", f"{name}.health")


def _notify(message: bytes) -> None:
    """Tell systemd (when it started this process with a notify socket)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, address)
    except OSError:
        pass


class ServiceContext:
    """One running service: its logger, its stop flag, its ready file and its heartbeat."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.stopping = False
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO,
            format=f"%(asctime)s {name} %(levelname)s %(message)s",
        )
        self.log = logging.getLogger(name)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.ready_file.unlink(missing_ok=True)
        self.progress_at = time.time()
        self.waiting_for: str | None = None
        self.lag: int | None = None
        self.parked = 0
        self._written_at = 0.0
        self.metrics = serve_metrics(settings, name)
        telemetry.configure(name)

    @property
    def ready_file(self) -> Path:
        return ready_file(self.settings, self.name)

    def mark_ready(self) -> None:
        if not self.ready_file.exists():
            self.ready_file.parent.mkdir(parents=True, exist_ok=True)
            self.ready_file.write_text("ready\n")
            self.log.info("ready")
            _notify(b"READY=1")
        self.beat(force=True)

    def progressed(self) -> None:
        """The loop did its work (committed a batch, or found nothing to do)."""
        self.progress_at = time.time()
        if self.waiting_for is not None:
            self.log.info("working again (was waiting for %s)", self.waiting_for)
            self.waiting_for = None

    def waiting(self, what: str, why: object) -> None:
        """The loop cannot go on until `what` answers (logged once per wait)."""
        if self.waiting_for != what:
            self.log.warning("waiting for %s: %s", what, why)
        self.waiting_for = what
        self.beat()

    def beat(self, *, force: bool = False) -> None:
        """The main loop is alive; written at most once a second."""
        now = time.time()
        if not force and now - self._written_at < 1.0:
            return
        self._written_at = now
        if now - self.progress_at < self.settings.stall_s or self.waiting_for == "kafka":
            _notify(b"WATCHDOG=1")
        doc: dict[str, Any] = {"pid": os.getpid(), "beat_at": now, "progress_at": self.progress_at,
                               "waiting_for": self.waiting_for, "lag": self.lag,
                               "parked": self.parked}
        path = health_file(self.settings, self.name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc))
            tmp.replace(path)
        except OSError as exc:  # a full disk must not stop the work the heartbeat reports on
            self.log.warning("cannot write the heartbeat: %s", exc)

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.shutdown()
        telemetry.shutdown()
        self.ready_file.unlink(missing_ok=True)
        health_file(self.settings, self.name).unlink(missing_ok=True)
        self.log.info("stopped")
