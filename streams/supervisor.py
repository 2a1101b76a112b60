"""`agentlog up / down / status`: the local broker and every service as background processes.

Each process has a pid file and a log under `<home>/run` and `<home>/logs`; `up` starts only
what is not running and returns once everything answers.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib import request

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from infra import kafka as local_kafka
from processors.tools.backends.sql import create_sample_database
from streams.api_keys import KeyStore, api_keys_file, ensure_local_key, local_key_file
from streams.backends import backend_config
from streams.health import judge, read_health, watchdog_restarts
from streams.kafka import TopicError, ensure_topics, wait_for_broker
from streams.service import ready_file
from streams.settings import REPO_ROOT, Settings

__all__ = ["Proc", "SupervisorError", "SERVICES", "alive", "brokers", "down", "pid_of", "processes",
           "services", "spawn", "start_lock", "status", "up"]


SERVICES = ("orchestrator", "planner", "guard", "executor", "responder", "memory", "sink", "alerting",
            "gateway")
"""The runtime's services, in start order."""


class SupervisorError(RuntimeError):
    """A process did not start; the message says which and shows the end of its log."""


@dataclass(frozen=True)
class Proc:
    name: str
    argv: list[str]
    marker: str
    """A piece of the command line that tells this process from a recycled pid."""
    node_id: int | None = None
    """The node id of a local Kafka node; None for everything else."""


def _node_home(settings: Settings, node_id: int, brokers: int) -> Path:
    # A single node keeps the layout it always had; a cluster's nodes live side by side.
    return settings.path("kafka") if brokers == 1 else settings.path("kafka-cluster", f"node-{node_id}")


def _broker(settings: Settings, node_id: int, brokers: int) -> Proc:
    home = _node_home(settings, node_id, brokers)
    return Proc("kafka" if brokers == 1 else f"kafka-{node_id}",
                local_kafka.broker_command(home, heap=settings.kafka_heap),
                str(home / "server.properties"), node_id)


def brokers(settings: Settings) -> list[Proc]:
    """The local Kafka nodes of these settings (none with a bootstrap), node 1 first."""
    if not settings.local_kafka:
        return []
    return [_broker(settings, n, settings.brokers) for n in range(1, settings.brokers + 1)]


def _other_layout(settings: Settings) -> list[Proc]:
    """Local nodes of this home that these settings do not name (a cluster started with
    `up --brokers 3`, seen from a command run without it, or the other way round)."""
    found = [_broker(settings, 1, 1)] if settings.brokers != 1 else []
    for home in sorted(settings.path("kafka-cluster").glob("node-*")):
        n = int(home.name.removeprefix("node-"))
        if settings.brokers == 1 or n > settings.brokers:
            found.append(_broker(settings, n, max(2, n)))
    return [p for p in found if alive(settings, p)]


def processes(settings: Settings) -> list[Proc]:
    """Every process of the stack, in start order."""
    py = sys.executable
    procs = brokers(settings)
    mail = settings.path("backends", "mail")
    procs.append(Proc("mail", [py, "-m", "processors.tools.backends.mailbox", "--host", "127.0.0.1",
                               "--port", str(settings.smtp_port), "--maildir", str(mail)],
                      "processors.tools.backends.mailbox"))
    for name in SERVICES:
        procs.append(Proc(name, [py, "-m", f"streams.services.{name}"], f"streams.services.{name}"))
    # Last to start, first to stop: it must not restart what `down` stops.
    procs.append(Proc("watchdog", [py, "-m", "streams.watchdog"], "streams.watchdog"))
    return procs


def services(settings: Settings) -> list[Proc]:
    """The processes the watchdog looks after: all but the brokers and itself."""
    return [p for p in processes(settings) if p.node_id is None and p.name != "watchdog"]


@contextmanager
def start_lock(settings: Settings) -> Iterator[None]:
    """Held while deciding what to start and starting it, so `up` and the watchdog never start
    one service twice."""
    path = settings.path("run", "start.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.path("run", f"{name}.pid")


def pid_of(settings: Settings, proc: Proc) -> int | None:
    """The pid `proc` was last started with (it may have died since: see `alive`)."""
    try:
        return int(_pid_file(settings, proc.name).read_text())
    except (OSError, ValueError):
        return None


def alive(settings: Settings, proc: Proc) -> bool:
    pid = pid_of(settings, proc)
    if pid is None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return proc.marker in cmdline and state != "Z"


def _ready(settings: Settings, proc: Proc) -> bool:
    if proc.node_id is not None:
        try:
            wait_for_broker(settings, timeout_s=1, node_id=proc.node_id)
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
    return ready_file(settings, proc.name).exists()


def spawn(settings: Settings, proc: Proc) -> subprocess.Popen[bytes]:
    """Start `proc` in the background, its output appended to its log."""
    logs = settings.path("logs")
    logs.mkdir(parents=True, exist_ok=True)
    _pid_file(settings, proc.name).parent.mkdir(parents=True, exist_ok=True)
    # A process killed with SIGKILL leaves its ready file: not a sign its successor is ready.
    ready_file(settings, proc.name).unlink(missing_ok=True)
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


def _prepare_nodes(settings: Settings) -> None:
    """Write every local node's config (ports and quorum from the settings) and format each once."""
    quorum = local_kafka.voters(settings.controller_ports)
    first = _node_home(settings, 1, settings.brokers)
    cluster = local_kafka.cluster_id((first if settings.brokers == 1 else first.parent) / "cluster.id")
    for node in brokers(settings):
        assert node.node_id is not None
        home = _node_home(settings, node.node_id, settings.brokers)
        local_kafka.write_config(home, node_id=node.node_id, port=settings.broker_ports[node.node_id - 1],
                                 controller_port=settings.controller_ports[node.node_id - 1], quorum=quorum,
                                 replicas=settings.topic_replicas, min_insync=settings.topic_min_insync)
        local_kafka.format_storage(home, cluster=cluster)


def _start_brokers(settings: Settings, children: dict[str, subprocess.Popen[bytes]], timeout_s: float,
                   say: Callable[[str], None]) -> list[Proc]:
    """Start the local nodes that are down (but those taken out) all at once: a node of a
    cluster serves only once a majority of the quorum runs. Returns the nodes that should run."""
    others = _other_layout(settings)
    if others:
        raise SupervisorError(f"{', '.join(p.name for p in others)} of another layout run under "
                              f"{settings.home}: `agentlog down` first, or `up --brokers` as they were "
                              "started")
    ports = settings.broker_ports + settings.controller_ports
    if len(set(ports)) < len(ports):
        raise SupervisorError(f"the local nodes' ports overlap ({ports}): node n listens on "
                              "AGENTLOG_KAFKA_PORT and AGENTLOG_CONTROLLER_PORT + 2(n-1)")
    wanted = [p for p in brokers(settings) if p.node_id not in settings.brokers_out]
    todo = [p for p in wanted if not alive(settings, p)]
    if todo:
        say("fetching Kafka jars (first time only)…" if not any(local_kafka.LIBS_DIR.glob("*.jar"))
            else f"starting {', '.join(p.name for p in todo)} on {settings.bootstrap_servers}…")
        _prepare_nodes(settings)
        for proc in todo:
            children[proc.name] = spawn(settings, proc)
    _wait(settings, wanted, timeout_s, children)
    return todo


def up(settings: Settings, *, timeout_s: float = 120.0, say: Callable[[str], None] = print) -> list[str]:
    """Start whatever is not running; returns the names started."""
    children: dict[str, subprocess.Popen[bytes]] = {}
    if settings.local_kafka:
        started = [p.name for p in _start_brokers(settings, children, timeout_s, say)]
    else:
        started = []
        wait_for_broker(settings, timeout_s=30)
    try:
        ensure_topics(settings)
    except TopicError as exc:
        raise SupervisorError(str(exc)) from None
    ensure_local_key(KeyStore(api_keys_file(settings)), local_key_file(settings),
                     tenant_id=settings.default_tenant)
    cfg = backend_config(settings)
    Path(cfg.sql_path).parent.mkdir(parents=True, exist_ok=True)
    create_sample_database(cfg.sql_path)
    running = [p for p in processes(settings) if p.node_id not in settings.brokers_out]
    with start_lock(settings):
        todo = [p for p in running if p.node_id is None and not alive(settings, p)]
        for proc in todo:
            children[proc.name] = spawn(settings, proc)
            started.append(proc.name)
    if todo:
        say(f"starting {', '.join(p.name for p in todo)}…")
    _wait(settings, running, timeout_s, children)
    return started


def _stop(settings: Settings, procs: list[Proc], timeout_s: float) -> list[str]:
    """SIGTERM `procs` together, SIGKILL what still runs after `timeout_s`; returns the names stopped."""
    running = [(p, pid) for p in procs if (pid := pid_of(settings, p)) is not None and alive(settings, p)]
    for _, pid in running:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(alive(settings, p) for p, _ in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p, pid in running:
        if alive(settings, p):
            os.kill(pid, signal.SIGKILL)
    for p in procs:
        _pid_file(settings, p.name).unlink(missing_ok=True)
        ready_file(settings, p.name).unlink(missing_ok=True)
    return [p.name for p, _ in running]


def down(settings: Settings, *, timeout_s: float = 30.0) -> list[str]:
    """Stop every process (services first, the brokers last); returns the names stopped."""
    stopped = []
    for proc in reversed(processes(settings)):
        if proc.node_id is None:
            stopped += _stop(settings, [proc], timeout_s)
    # The nodes of a cluster together: one stopped after the others would wait for a quorum
    # that is gone. Nodes of another layout too, so nothing is left running.
    stopped += _stop(settings, [*brokers(settings), *_other_layout(settings)], timeout_s)
    return stopped


def _kafka_status(settings: Settings) -> dict[str, object]:
    """The cluster as its metadata shows it, and each local node's process."""
    kafka: dict[str, object] = {"bootstrap": settings.bootstrap_servers, "local": settings.local_kafka}
    serving: dict[int, str] = {}
    try:
        admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, "log_level": 0})
        meta = admin.list_topics(timeout=3)
        serving = {b.id: f"{b.host}:{b.port}" for b in meta.brokers.values()}
        kafka["controller"] = meta.controller_id if meta.controller_id >= 0 else None
    except KafkaException:
        kafka["controller"] = None
    if not settings.local_kafka:
        kafka["brokers"] = [{"node_id": n, "address": a, "serving": True} for n, a in sorted(serving.items())]
        kafka["alive"] = bool(serving)
        return kafka
    nodes = []
    ports = settings.broker_ports
    for proc in [*brokers(settings), *_other_layout(settings)]:
        assert proc.node_id is not None
        running = alive(settings, proc)
        nodes.append({"name": proc.name, "node_id": proc.node_id, "pid": pid_of(settings, proc),
                      "alive": running, "out": proc.node_id in settings.brokers_out,
                      "address": (f"127.0.0.1:{ports[proc.node_id - 1]}" if proc.node_id <= len(ports)
                                  else None),
                      # Listed by the cluster's metadata as one of its brokers (registered, caught up).
                      "serving": running and proc.node_id in serving})
    kafka["brokers"] = nodes
    # Alive: every node that should run does (a node taken out is not missed).
    kafka["alive"] = all(n["alive"] for n in nodes if not n["out"])
    if settings.brokers == 1:
        kafka["pid"] = nodes[0]["pid"]
    return kafka


def status(settings: Settings) -> dict[str, Any]:
    """Every process: alive (its process runs) and, from its heartbeat, whether it works (a JSON
    document, as `agentlog status --json` prints it)."""
    services: dict[str, object] = {}
    restarts = watchdog_restarts(settings)
    now = time.time()
    for proc in processes(settings):
        if proc.node_id is not None:
            continue
        up = alive(settings, proc)
        entry: dict[str, object] = {"pid": pid_of(settings, proc), "alive": up}
        if proc.name not in ("gateway", "mail"):
            h = judge(read_health(settings, proc.name), alive=up, pid=pid_of(settings, proc), now=now,
                      stall_s=settings.stall_s, kafka_answers=True)
            entry.update(state=h.state, detail=h.detail, lag=h.lag, parked=h.parked,
                         progress_age_s=round(h.progress_age_s, 1) if h.progress_age_s is not None else None)
        else:
            entry["state"] = "up" if up else "down"
        entry["restarts"] = int(restarts.get(proc.name, {}).get("restarts", 0))
        services[proc.name] = entry
    return {"home": str(settings.home), "kafka": _kafka_status(settings), "services": services,
            "gateway": {"url": f"http://127.0.0.1:{settings.gateway_port}",
                        "local_key_file": str(local_key_file(settings))}}
