"""The watchdog: restarts a service that died or stopped making progress, with backoff.

Started by `agentlog up` beside the services, as a process manager would (systemd's
`Restart=on-failure` and `WatchdogSec`, Kubernetes' liveness probes: see infra/). Once a second
it judges every service from its heartbeat (the gateway and the mail server by answering on
their ports). A service that is down, whose main loop is silent, or that makes no progress
although the cluster answers, is stopped (SIGTERM, then SIGKILL) and started again; a service
that keeps failing waits longer each time (1 s, 2 s, 4 s … up to a minute). The local broker is
not its business: `agentlog up` starts it, and in production it is the cluster's.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib import request

from streams.health import Health, judge, read_health, watchdog_file
from streams.kafka import wait_for_broker
from streams.service import ServiceContext
from streams.settings import Settings, load_settings
from streams.supervisor import Proc, alive, pid_of, services, spawn, start_lock

__all__ = ["Watchdog", "main", "PROBE_FAILURES", "START_GRACE_S"]

PROBE_FAILURES = 3
"""Consecutive failed probes of the gateway (or the mail server) that count as stalled."""
START_GRACE_S = 60.0
"""The least time a service has after its start to write its first heartbeat (or answer its
probe), whatever `stall_s`: on a busy machine a service's imports and first group join take
longer than a short stall limit, and one stopped while `up` waits for it fails the `up`."""
_MAX_BACKOFF_S = 60.0
_HEALTHY_RESET_S = 120.0


@dataclass
class _Record:
    restarts: int = 0
    failures_in_a_row: int = 0
    last_reason: str = ""
    last_restart_at: float = 0.0
    next_allowed_at: float = 0.0
    probe_failures: int = 0


class Watchdog:
    def __init__(self, settings: Settings, *, log: logging.Logger) -> None:
        self.settings = settings
        self.log = log
        self.records: dict[str, _Record] = {}

    @property
    def _grace(self) -> float:
        return max(self.settings.stall_s, START_GRACE_S)

    def health(self, proc: Proc, now: float, kafka: _Lazy) -> Health:
        up = alive(self.settings, proc)
        if proc.name in ("gateway", "mail"):
            record = self.records.setdefault(proc.name, _Record())
            if not up:
                return Health("down", "not running")
            answers = self._probe(proc)
            started = self._started_at(proc)
            if not answers and started is not None and now - started < self._grace:
                return Health("starting", "not answering yet")
            record.probe_failures = 0 if answers else record.probe_failures + 1
            if record.probe_failures >= PROBE_FAILURES:
                return Health("stalled", f"did not answer {record.probe_failures} probes in a row")
            return Health("idle" if answers else "starting")
        h = judge(read_health(self.settings, proc.name), alive=up, pid=pid_of(self.settings, proc),
                  now=now, stall_s=self.settings.stall_s, kafka_answers=kafka.get())
        started = self._started_at(proc)
        if h.state == "starting" and started is not None and now - started > self._grace:
            return Health("stalled", f"no heartbeat {now - started:.0f} s after its start")
        return h

    def check(self, now: float) -> None:
        kafka = _Lazy(lambda: _kafka_answers(self.settings))
        for proc in services(self.settings):
            record = self.records.setdefault(proc.name, _Record())
            judged_pid = pid_of(self.settings, proc)
            h = self.health(proc, now, kafka)
            if not h.needs_restart:
                if record.failures_in_a_row and now - record.last_restart_at > _HEALTHY_RESET_S:
                    record.failures_in_a_row = 0
                continue
            if now < record.next_allowed_at:
                continue
            self.restart(proc, f"{h.state}: {h.detail}", record, now, judged_pid=judged_pid)
        self._save()

    def restart(self, proc: Proc, reason: str, record: _Record, now: float, *,
                judged_pid: int | None) -> None:
        with start_lock(self.settings):
            pid = pid_of(self.settings, proc)
            running = pid is not None and alive(self.settings, proc)
            if running and pid != judged_pid:
                return  # started again by someone else (`agentlog up`) since it was judged
            if running and pid is not None:
                self.log.warning("stopping %s (pid %d): %s", proc.name, pid, reason)
                _stop(self.settings, proc, pid)
            self.log.warning("starting %s again (%s)", proc.name, reason)
            spawn(self.settings, proc)
        record.restarts += 1
        record.failures_in_a_row += 1
        record.probe_failures = 0
        record.last_reason = reason
        record.last_restart_at = now
        record.next_allowed_at = now + min(_MAX_BACKOFF_S, 2.0 ** (record.failures_in_a_row - 1))

    def _started_at(self, proc: Proc) -> float | None:
        try:
            return self.settings.path("run", f"{proc.name}.pid").stat().st_mtime
        except OSError:
            return None

    def _probe(self, proc: Proc) -> bool:
        try:
            if proc.name == "gateway":
                with request.urlopen(f"http://127.0.0.1:{self.settings.gateway_port}/healthz", timeout=2):
                    return True
            with socket.create_connection(("127.0.0.1", self.settings.smtp_port), timeout=2):
                return True
        except OSError:
            return False

    def _save(self) -> None:
        path = watchdog_file(self.settings)
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({name: vars(r) for name, r in self.records.items()}))
            tmp.replace(path)
        except OSError as exc:
            self.log.warning("cannot write %s: %s", path, exc)


class _Lazy:
    """A value computed the first time it is asked for (the cluster is asked at most once a round)."""

    def __init__(self, compute: Callable[[], bool]) -> None:
        self._compute = compute
        self._value: bool | None = None

    def get(self) -> bool:
        if self._value is None:
            self._value = bool(self._compute())
        return self._value


def _kafka_answers(settings: Settings) -> bool:
    try:
        wait_for_broker(settings, timeout_s=2)
        return True
    except TimeoutError:
        return False


def _stop(settings: Settings, proc: Proc, pid: int, *, grace_s: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while alive(settings, proc) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(settings, proc):
        os.kill(pid, signal.SIGKILL)
        while alive(settings, proc):
            time.sleep(0.05)


def main() -> None:
    settings = load_settings()
    ctx = ServiceContext("watchdog", settings)
    dog = Watchdog(settings, log=ctx.log)
    ctx.mark_ready()
    try:
        while not ctx.stopping:
            dog.check(time.time())
            ctx.progressed()
            ctx.beat()
            time.sleep(1.0)
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
