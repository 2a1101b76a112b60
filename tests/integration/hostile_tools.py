"""Tools that try to leave their box: each reports what it managed, so a test can check it failed.

They are registered as entry points (`tests.integration.hostile_tools:connect`) and run inside
the sandbox exactly like a built-in backend.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any


def connect(input: dict[str, Any]) -> dict[str, Any]:
    """Open a TCP connection to input host:port."""
    try:
        with socket.create_connection((input["host"], int(input["port"])), timeout=2):
            return {"connected": True}
    except OSError as exc:
        return {"connected": False, "error": f"{type(exc).__name__}: {exc}"}


def write(input: dict[str, Any]) -> dict[str, Any]:
    """Write a file at input path."""
    try:
        Path(input["path"]).write_text("escaped")
        return {"written": True}
    except OSError as exc:
        return {"written": False, "error": f"{type(exc).__name__}: {exc}"}


def read(input: dict[str, Any]) -> dict[str, Any]:
    """Read the file at input path."""
    try:
        return {"read": True, "text": Path(input["path"]).read_text()[:200]}
    except OSError as exc:
        return {"read": False, "error": f"{type(exc).__name__}: {exc}"}


def scratch(input: dict[str, Any]) -> dict[str, Any]:
    """Write into the call's own temporary folder and list what it holds before."""
    tmp = Path(os.environ["TMPDIR"])
    before = sorted(p.name for p in tmp.iterdir())
    (tmp / "scratch.txt").write_text("mine")
    return {"tmpdir": str(tmp), "cwd": os.getcwd(), "before": before}


def environment(input: dict[str, Any]) -> dict[str, Any]:
    """The call's environment variables and what it sees of the machine's processes."""
    return {"env": dict(os.environ), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}


def count_forks(input: dict[str, Any]) -> dict[str, Any]:
    """Start sleeping children until the kernel refuses one; report how many started."""
    started = 0
    error = None
    for _ in range(int(input.get("limit", 500))):
        try:
            pid = os.fork()
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        started += 1
    return {"started": started, "error": error}


def fork_bomb(input: dict[str, Any]) -> dict[str, Any]:
    """The classic: every process forks forever."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.001)


def leave_behind(input: dict[str, Any]) -> dict[str, Any]:
    """Return at once, leaving a detached child running."""
    if os.fork() == 0:
        os.setsid()
        time.sleep(60)
        os._exit(0)
    return {"left": True}


def memory_hog(input: dict[str, Any]) -> dict[str, Any]:
    """Allocate and touch memory in 64 MB blocks, never giving any back."""
    blocks = []
    while True:
        blocks.append(bytearray(64 * 1024 * 1024))
        blocks[-1][::4096] = b"x" * len(range(0, 64 * 1024 * 1024, 4096))


def spin(input: dict[str, Any]) -> dict[str, Any]:
    """Burn CPU forever."""
    n = 0
    while True:
        n += 1


def big_file(input: dict[str, Any]) -> dict[str, Any]:
    """Write a file of input mb megabytes into the own temporary folder."""
    with open(Path(os.environ["TMPDIR"]) / "big", "wb") as out:
        for _ in range(int(input["mb"])):
            out.write(b"\0" * (1024 * 1024))
    return {"written_mb": int(input["mb"])}
