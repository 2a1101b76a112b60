"""A real stack for tests: `agentlog up` with its own state and free ports, so a user's own
stack on the default ports is neither used nor disturbed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from streams.settings import Settings
from tests.free_ports import free_ports

__all__ = ["Stack", "eventually", "running_stack", "AGENTLOG"]

AGENTLOG = str(Path(sys.executable).with_name("agentlog"))


@dataclass
class Stack:
    env: dict[str, str]
    settings: Settings

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the installed `agentlog` command against this stack."""
        proc = subprocess.run([AGENTLOG, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
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
        pid = self.cli_json("status")["services"][service]["pid"]
        os.kill(pid, signal.SIGTERM)
        eventually(lambda: not self.cli_json("status")["services"][service]["alive"],
                   what=f"{service} to stop")

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


@contextmanager
def running_stack(home: Path, **extra: str) -> Iterator[Stack]:
    """A stack under `home` on free ports (and `extra` AGENTLOG_* settings), up for the `with`
    block and down after it."""
    kafka, controller, gateway, query, smtp = free_ports(5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLOG_")}
    env.update({
        "AGENTLOG_HOME": str(home), "AGENTLOG_KAFKA_PORT": str(kafka),
        "AGENTLOG_CONTROLLER_PORT": str(controller), "AGENTLOG_GATEWAY_PORT": str(gateway),
        "AGENTLOG_QUERY_PORT": str(query), "AGENTLOG_SMTP_PORT": str(smtp),
        "AGENTLOG_KAFKA_HEAP": "512m", "AGENTLOG_SETTINGS_FILE": str(home / "none.env"), **extra,
    })
    s = Stack(env, Settings(home=home, kafka_port=kafka, controller_port=controller,
                            gateway_port=gateway, query_port=query, smtp_port=smtp))
    try:
        s.cli("up", timeout=300)
        yield s
    finally:
        s.cli("down", check=False, timeout=120)
