"""A real stack for tests: `agentlog up` with its own state and free ports, so a user's own
stack on the default ports is neither used nor disturbed."""

from __future__ import annotations

import contextlib
import json
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

import httpx

from streams.metrics_export import PORT_OFFSETS
from streams.run_reads import close_readers
from streams.settings import Settings
from tests.free_ports import free_ports

__all__ = ["AGENTLOG", "Stack", "eventually", "running_stack"]

AGENTLOG = str(Path(sys.executable).with_name("agentlog"))


@dataclass
class Stack:
    env: dict[str, str]
    settings: Settings

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the installed `agentlog` command against this stack."""
        proc = subprocess.run([AGENTLOG, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"agentlog {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def sql(self, query: str) -> list[dict[str, Any]]:
        return json.loads(self.cli("sql", query, "--json").stdout)

    def client(self, tenant: str = "default", *roles: str) -> httpx.Client:
        """An HTTP client of the gateway holding a fresh API key of `tenant` (all roles unless given)."""
        role_args = [a for r in roles for a in ("--role", r)]
        key = self.cli_json("keys", "create", "--tenant", tenant, "--name", f"tests-{tenant}", *role_args)
        return httpx.Client(base_url=f"http://127.0.0.1:{self.settings.gateway_port}",
                            headers={"Authorization": f"Bearer {key['secret']}"}, timeout=30)

    def stop(self, service: str) -> None:
        """Stop `service` and keep it stopped: the watchdog stops first (`up` starts it again)."""
        for name in dict.fromkeys(("watchdog", service)):
            pid = self.cli_json("status")["services"][name]["pid"]
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            eventually(lambda name=name: not self.cli_json("status")["services"][name]["alive"],
                       what=f"{name} to stop")

    def kill(self, *services: str) -> None:
        """SIGKILL `services` and leave them down until `up`: the watchdog is stopped first, so
        it does not start them again meanwhile."""
        self.stop("watchdog")
        status = self.cli_json("status")["services"]
        for name in services:
            if status[name]["alive"]:
                os.kill(status[name]["pid"], signal.SIGKILL)
        eventually(lambda: not any(self.cli_json("status")["services"][n]["alive"] for n in services),
                   what=f"{', '.join(services)} to die")

    def take_out(self, node_id: int) -> None:
        """From now on `up` leaves local broker `node_id` stopped, as it would a machine lost for good."""
        out = sorted({*self.settings.brokers_out, node_id})
        self.env["AGENTLOG_BROKERS_OUT"] = json.dumps(out)
        self.settings = self.settings.model_copy(update={"brokers_out": out})

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The end of a process's log (`kafka`, `kafka-2`, `sink`, …), for a failure's message,
        without librdkafka's refused connections (a broker that is down floods every log with them)."""
        try:
            text = self.settings.path("logs", f"{name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        kept = [line for line in text if not ("|FAIL|" in line and "Connection refused" in line)]
        refused = len(text) - len(kept)
        return "\n".join(kept[-lines:]) + (f"\n({refused} refused connections left out)" if refused else "")

    @contextmanager
    def restarted(self, service: str, **env: str) -> Iterator[Stack]:
        """Run `service` with extra AGENTLOG_* settings for a while, then as before."""
        self.stop(service)
        try:
            Stack({**self.env, **env}, self.settings).cli("up")
            yield self
        finally:
            self.stop(service)
            self.cli("up")


def eventually(check: Callable[[], Any], *, timeout: float = 30, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (the sink and workers are asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value {value!r}")
        time.sleep(0.3)


def _free_run(n: int, avoid: set[int]) -> int:
    """The first of `n` consecutive ports nothing listens on right now (none of them in `avoid`)."""
    for _ in range(200):
        base = free_ports(1)[0]
        block = range(base, base + n)
        if base + n > 65_535 or avoid & set(block):
            continue
        socks = [socket.socket() for _ in block]
        try:
            for sock, port in zip(socks, block, strict=True):
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {n} consecutive free ports")


@contextmanager
def running_stack(home: Path, *, brokers: int = 1, **extra: str) -> Iterator[Stack]:
    """A stack under `home` on free ports (and `extra` AGENTLOG_* settings), up for the `with`
    block and down after it; `brokers=3` runs a local three-broker cluster."""
    gateway, query, smtp, memory = services = free_ports(4)
    # Node n listens on kafka + 2(n-1) and its controller one above: one block of ports.
    kafka = _free_run(2 * brokers, set(services))
    controller = kafka + 1
    # Each service serves /metrics on the base port plus its offset: one block of ports too.
    metrics = _free_run(len(PORT_OFFSETS), {*services, *range(kafka, kafka + 2 * brokers)})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLOG_")}
    env.update({
        "AGENTLOG_HOME": str(home), "AGENTLOG_KAFKA_PORT": str(kafka), "AGENTLOG_BROKERS": str(brokers),
        "AGENTLOG_CONTROLLER_PORT": str(controller), "AGENTLOG_GATEWAY_PORT": str(gateway),
        "AGENTLOG_QUERY_PORT": str(query), "AGENTLOG_SMTP_PORT": str(smtp),
        "AGENTLOG_MEMORY_PORT": str(memory),
        "AGENTLOG_METRICS_PORT": str(metrics),
        "AGENTLOG_KAFKA_HEAP": "512m", "AGENTLOG_SETTINGS_FILE": str(home / "none.env"), **extra,
    })
    s = Stack(env, Settings(home=home, kafka_port=kafka, controller_port=controller, brokers=brokers,
                            gateway_port=gateway, query_port=query, smtp_port=smtp,
                            metrics_port=metrics))
    try:
        s.cli("up", timeout=300)
        yield s
    finally:
        close_readers(s.settings.home)
        s.cli("down", check=False, timeout=120)
