"""`agentlog up / down / status`: the local broker and every service as background processes.

Each process has a pid file and a log under `<home>/run` and `<home>/logs`; `up` starts only
what is not running and returns once everything answers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib import request

from infra import kafka as local_kafka
from processors.tools.backends.sql import create_sample_database
from streams.api_keys import KeyStore, api_keys_file, ensure_local_key, local_key_file
from streams.backends import backend_config
from streams.kafka import ensure_topics, wait_for_broker
from streams.settings import REPO_ROOT, Settings

__all__ = ["Proc", "processes", "up", "down", "status", "alive", "SupervisorError"]


class SupervisorError(RuntimeError):
    """A process did not start; the message says which and shows the end of its log."""


@dataclass(frozen=True)
class Proc:
    name: str
    argv: list[str]
    marker: str
    """A piece of the command line that tells this process from a recycled pid."""


def processes(settings: Settings) -> list[Proc]:
    """Every process of the stack, in start order."""
    py = sys.executable
    procs = []
    if settings.local_kafka:
        home = settings.path("kafka")
        procs.append(Proc("kafka", local_kafka.broker_command(home, heap=settings.kafka_heap),
                          str(home / "server.properties")))
    mail = settings.path("backends", "mail")
    procs.append(Proc("mail", [py, "-m", "processors.tools.backends.mailbox", "--host", "127.0.0.1",
                               "--port", str(settings.smtp_port), "--maildir", str(mail)],
                      "processors.tools.backends.mailbox"))
    for name in ("orchestrator", "planner", "guard", "executor", "responder", "sink", "gateway"):
        procs.append(Proc(name, [py, "-m", f"streams.services.{name}"], f"streams.services.{name}"))
    return procs


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.path("run", f"{name}.pid")


def _ready_file(settings: Settings, name: str) -> Path:
    """Written by a service once it works (see `ServiceContext.mark_ready`)."""
    return settings.path("run", f"{name}.ready")


def _pid(settings: Settings, proc: Proc) -> int | None:
    try:
        return int(_pid_file(settings, proc.name).read_text())
    except (OSError, ValueError):
        return None


def alive(settings: Settings, proc: Proc) -> bool:
    pid = _pid(settings, proc)
    if pid is None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return proc.marker in cmdline and state != "Z"


def _ready(settings: Settings, proc: Proc) -> bool:
    if proc.name == "kafka":
        try:
            wait_for_broker(settings, timeout_s=1)
            return True
        except TimeoutError:
            return False
    if proc.name == "mail":
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", settings.smtp_port)) == 0
    if proc.name == "gateway":
        try:
            with request.urlopen(f"http://127.0.0.1:{settings.gateway_port}/healthz", timeout=1):
                return True
        except OSError:
            return False
    return _ready_file(settings, proc.name).exists()


def _spawn(settings: Settings, proc: Proc) -> subprocess.Popen[bytes]:
    logs = settings.path("logs")
    logs.mkdir(parents=True, exist_ok=True)
    _pid_file(settings, proc.name).parent.mkdir(parents=True, exist_ok=True)
    # A process killed with SIGKILL leaves its ready file: not a sign its successor is ready.
    _ready_file(settings, proc.name).unlink(missing_ok=True)
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    with open(logs / f"{proc.name}.log", "ab") as log:
        child = subprocess.Popen(proc.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=REPO_ROOT, env=env, start_new_session=True)
    _pid_file(settings, proc.name).write_text(str(child.pid))
    return child


def _log_tail(settings: Settings, name: str, lines: int = 15) -> str:
    try:
        return "\n".join(settings.path("logs", f"{name}.log").read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(settings: Settings, procs: list[Proc], timeout_s: float,
          children: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = list(procs)
    while waiting:
        for proc in list(waiting):
            # A child of this call is judged by its exit status: until its exec completes, its
            # /proc cmdline is still ours, and `alive` would call a starting process dead.
            child = children.get(proc.name)
            gone = child.poll() is not None if child is not None else not alive(settings, proc)
            if gone:
                raise SupervisorError(f"{proc.name} exited while starting:\n{_log_tail(settings, proc.name)}")
            if _ready(settings, proc):
                waiting.remove(proc)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(p.name for p in waiting)
            raise SupervisorError(f"not ready after {timeout_s:.0f}s: {names}\n"
                                  + _log_tail(settings, waiting[0].name))
        time.sleep(0.2)


def up(settings: Settings, *, timeout_s: float = 120.0, say=print) -> list[str]:  # type: ignore[no-untyped-def]
    """Start whatever is not running; returns the names started."""
    started: list[str] = []
    children: dict[str, subprocess.Popen[bytes]] = {}
    procs = processes(settings)
    if settings.local_kafka:
        broker = procs[0]
        if not alive(settings, broker):
            say("fetching Kafka jars (first time only)…" if not any(local_kafka.LIBS_DIR.glob("*.jar"))
                else f"starting Kafka on {settings.bootstrap_servers}…")
            home = settings.path("kafka")
            local_kafka.write_config(home, port=settings.kafka_port, controller_port=settings.controller_port)
            local_kafka.format_storage(home)
            children[broker.name] = _spawn(settings, broker)
            started.append(broker.name)
        _wait(settings, [broker], timeout_s, children)
        procs = procs[1:]
    else:
        wait_for_broker(settings, timeout_s=30)
    ensure_topics(settings)
    ensure_local_key(KeyStore(api_keys_file(settings)), local_key_file(settings),
                     tenant_id=settings.default_tenant)
    cfg = backend_config(settings)
    Path(cfg.sql_path).parent.mkdir(parents=True, exist_ok=True)
    create_sample_database(cfg.sql_path)
    todo = [p for p in procs if not alive(settings, p)]
    for proc in todo:
        children[proc.name] = _spawn(settings, proc)
        started.append(proc.name)
    if todo:
        say(f"starting {', '.join(p.name for p in todo)}…")
    _wait(settings, processes(settings), timeout_s, children)
    return started


def down(settings: Settings, *, timeout_s: float = 30.0) -> list[str]:
    """Stop every process (services first, the broker last); returns the names stopped."""
    stopped = []
    for proc in reversed(processes(settings)):
        pid = _pid(settings, proc)
        if pid is not None and alive(settings, proc):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while alive(settings, proc) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(settings, proc):
                os.kill(pid, signal.SIGKILL)
            stopped.append(proc.name)
        _pid_file(settings, proc.name).unlink(missing_ok=True)
        _ready_file(settings, proc.name).unlink(missing_ok=True)
    return stopped


def status(settings: Settings) -> dict[str, object]:
    services = {}
    for proc in processes(settings):
        if proc.name == "kafka":
            continue
        services[proc.name] = {"pid": _pid(settings, proc), "alive": alive(settings, proc)}
    kafka: dict[str, object] = {"bootstrap": settings.bootstrap_servers, "local": settings.local_kafka}
    if settings.local_kafka:
        broker = processes(settings)[0]
        kafka.update(pid=_pid(settings, broker), alive=alive(settings, broker))
    return {"home": str(settings.home), "kafka": kafka, "services": services,
            "gateway": {"url": f"http://127.0.0.1:{settings.gateway_port}",
                        "local_key_file": str(local_key_file(settings))}}
