"""Runs one tool call in a child process, away from the runtime's memory, threads and secrets.

The child gets a minimal environment, an address-space limit and optionally a CPU limit, and is
killed when the wall-clock timeout passes. Whatever happens to it, the caller gets a
`ToolOutcome`; `run_sandboxed` itself never raises for a failed call.

Child protocol: one JSON request on stdin, one JSON line on stdout,
`{"ok": true, "output": {...}}` or `{"ok": false, "error": "..."}`.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from processors.tools.backends import BackendConfig, ToolError, run_tool

__all__ = ["REPO_ROOT", "ToolOutcome", "WarmSandbox", "run_sandboxed"]

REPO_ROOT = Path(__file__).resolve().parents[2]
_STDERR_TAIL = 600


@dataclass(frozen=True)
class ToolOutcome:
    """What became of one sandboxed tool call."""

    status: Literal["ok", "error", "timeout"]
    """"ok" when the tool returned an output; "timeout" when it was killed for running too long."""
    output: dict[str, Any] | None
    """The tool's output when status is "ok", else None."""
    error: str | None
    """A readable reason when status is not "ok", else None."""
    duration_ms: int
    """Wall-clock time of the call, child start-up included."""


def run_sandboxed(
    *,
    tool: str,
    input: dict[str, Any],
    cfg: BackendConfig,
    idempotency_key: str,
    timeout_s: float,
    memory_mb: int = 512,
    cpu_s: int | None = None,
) -> ToolOutcome:
    """Run `tool` on `input` in a fresh child process and report the outcome.

    tool: registered tool name.
    input: the tool's input object (JSON-serialisable).
    cfg: where the backends keep their state.
    idempotency_key: identifies the logical call; retries must pass the same key.
    timeout_s: wall-clock limit; the child is killed when it passes.
    memory_mb: address-space limit of the child.
    cpu_s: CPU-seconds limit of the child; None leaves CPU time to the wall-clock limit.
    """
    started = time.monotonic()

    def outcome(
        status: Literal["ok", "error", "timeout"], output: dict[str, Any] | None, error: str | None
    ) -> ToolOutcome:
        return ToolOutcome(status, output, error, int((time.monotonic() - started) * 1000))

    if timeout_s <= 0 or memory_mb <= 0 or (cpu_s is not None and cpu_s <= 0):
        return outcome("error", None, f"{tool}: timeout_s, memory_mb and cpu_s must be positive")
    try:
        request = json.dumps(
            {"tool": tool, "input": input, "cfg": cfg.to_dict(), "idempotency_key": idempotency_key}
        )
    except (TypeError, ValueError) as exc:
        return outcome("error", None, f"{tool}: input is not JSON-serialisable: {exc}")
    limits = _limits(memory_mb=memory_mb, cpu_s=cpu_s)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "processors.tools.sandbox"],
            input=request.encode("utf-8"),
            capture_output=True,
            check=False,  # the child's exit status is interpreted below
            timeout=timeout_s,
            cwd=REPO_ROOT,
            env=_child_env(),
            # Runs between fork and exec: only setrlimit calls on precomputed values.
            preexec_fn=lambda: _apply_limits(limits),
        )
    except subprocess.TimeoutExpired:
        return outcome("timeout", None, f"{tool}: timed out after {timeout_s:g}s (child killed)")
    except Exception as exc:  # noqa: BLE001 - any failure to start is the call's error, not the runtime's
        return outcome(
            "error", None, f"{tool}: could not start the sandbox: {type(exc).__name__}: {exc}"
        )
    status, output, error = _interpret(tool, proc, cpu_s=cpu_s)
    return outcome(status, output, error)


class WarmSandbox:
    """One long-lived sandbox child answering calls one at a time: the same isolation as
    `run_sandboxed` (own process, minimal environment, address-space limit) without paying a
    Python start-up per call. A child that times out, dies or answers garbage is killed and the
    next call gets a fresh one; so does one that has served `max_calls` calls."""

    def __init__(self, *, memory_mb: int = 512, max_calls: int = 500) -> None:
        """
        memory_mb: address-space limit of the child.
        max_calls: calls one child serves before it is replaced (bounds what a leak can grow).
        """
        self._limits = _limits(memory_mb=memory_mb, cpu_s=None)
        self._max_calls = max_calls
        self._proc: subprocess.Popen[bytes] | None = None
        self._served = 0

    def run(self, *, tool: str, input: dict[str, Any], cfg: BackendConfig, idempotency_key: str,
            timeout_s: float) -> ToolOutcome:
        """Like `run_sandboxed`: never raises for a failed call."""
        started = time.monotonic()

        def outcome(status: Literal["ok", "error", "timeout"], output: dict[str, Any] | None,
                    error: str | None) -> ToolOutcome:
            return ToolOutcome(status, output, error, int((time.monotonic() - started) * 1000))

        try:
            line = json.dumps({"tool": tool, "input": input, "cfg": cfg.to_dict(),
                               "idempotency_key": idempotency_key}) + "\n"
        except (TypeError, ValueError) as exc:
            return outcome("error", None, f"{tool}: input is not JSON-serialisable: {exc}")
        try:
            proc = self._child()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(line.encode("utf-8"))
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
            if not ready:
                self._discard()
                return outcome("timeout", None, f"{tool}: timed out after {timeout_s:g}s (child killed)")
            reply_line = proc.stdout.readline()
        except OSError as exc:  # the child died under us (broken pipe)
            self._discard()
            return outcome("error", None, f"{tool}: sandbox child failed: {exc}")
        self._served += 1
        try:
            reply = json.loads(reply_line) if reply_line else None
        except ValueError:
            reply = None
        status: Literal["ok", "error"]
        output: dict[str, Any] | None
        error: str | None
        if isinstance(reply, dict) and reply.get("ok") is True and isinstance(reply.get("output"), dict):
            status, output, error = "ok", reply["output"], None
        elif isinstance(reply, dict) and reply.get("ok") is False and isinstance(reply.get("error"), str):
            status, output, error = "error", None, reply["error"]
        else:
            code = self._discard()
            why = f"exited with status {code}" if code is not None else "answered garbage"
            return outcome("error", None, f"{tool}: sandbox child {why}")
        if self._served >= self._max_calls:
            self._discard()
        return outcome(status, output, error)

    def close(self) -> None:
        self._discard()

    def _child(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            limits = self._limits
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "processors.tools.sandbox", "--serve"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                # Runs between fork and exec: only setrlimit calls on precomputed values.
                cwd=REPO_ROOT, env=_child_env(), preexec_fn=lambda: _apply_limits(limits),  # noqa: PLW1509
            )
            self._served = 0
        return self._proc

    def _discard(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        return proc.wait()


def _child_env() -> dict[str, str]:
    # Built from scratch, not copied: the runtime's credentials never reach a tool.
    return {
        "PATH": os.defpath,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONNOUSERSITE": "1",
        "PYTHONIOENCODING": "utf-8",
        "LC_ALL": "C.UTF-8",
    }


def _limits(*, memory_mb: int, cpu_s: int | None) -> list[tuple[int, int, int]]:
    wanted = [(resource.RLIMIT_AS, memory_mb * 1024 * 1024), (resource.RLIMIT_CORE, 0)]
    if cpu_s is not None:
        wanted.append((resource.RLIMIT_CPU, cpu_s))
    limits: list[tuple[int, int, int]] = []
    for res, value in wanted:
        # An unprivileged process cannot raise its hard limit, so never ask for more than it is.
        _, hard = resource.getrlimit(res)
        capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
        # For CPU the hard limit sits one second above: SIGXCPU first, SIGKILL if ignored.
        hard_value = (
            capped + 1 if res == resource.RLIMIT_CPU and hard == resource.RLIM_INFINITY else capped
        )
        limits.append((res, capped, hard_value))
    return limits


def _apply_limits(limits: list[tuple[int, int, int]]) -> None:
    for res, soft, hard in limits:
        resource.setrlimit(res, (soft, hard))


def _interpret(
    tool: str, proc: subprocess.CompletedProcess[bytes], *, cpu_s: int | None
) -> tuple[Literal["ok", "error"], dict[str, Any] | None, str | None]:
    lines = [ln for ln in proc.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
    reply: Any = None
    if lines:
        try:
            reply = json.loads(lines[-1])
        except ValueError:
            reply = None
    if (
        isinstance(reply, dict)
        and reply.get("ok") is True
        and isinstance(reply.get("output"), dict)
    ):
        return "ok", reply["output"], None
    if isinstance(reply, dict) and reply.get("ok") is False and isinstance(reply.get("error"), str):
        return "error", None, reply["error"]
    stderr = proc.stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
    if proc.returncode < 0:
        name = _signal_name(-proc.returncode)
        why = f"killed by {name}"
        if -proc.returncode in (signal.SIGXCPU, signal.SIGKILL) and cpu_s is not None:
            why += f" (probably its CPU limit of {cpu_s}s)"
        return "error", None, f"{tool}: sandbox {why}" + (f"; stderr: {stderr}" if stderr else "")
    detail = stderr or f"stdout: {proc.stdout[-_STDERR_TAIL:].decode('utf-8', 'replace')!r}"
    return (
        "error",
        None,
        f"{tool}: sandbox exited with status {proc.returncode} without a valid reply; {detail}",
    )


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _reply_line(raw: bytes | str) -> str:
    """Child side: one request in, exactly one reply line out (never raises)."""
    try:
        request = json.loads(raw)
        cfg = BackendConfig.from_dict(request["cfg"])
        output = run_tool(
            request["tool"], request["input"], cfg, idempotency_key=request["idempotency_key"]
        )
        return json.dumps({"ok": True, "output": output})
    except ToolError as exc:
        return json.dumps({"ok": False, "error": str(exc)})
    except MemoryError:
        return json.dumps(
            {"ok": False, "error": "sandbox: the tool ran out of memory (address-space limit)"}
        )
    except Exception as exc:  # noqa: BLE001 - the child reports every failure of the tool as data
        return json.dumps({"ok": False, "error": f"sandbox: {type(exc).__name__}: {exc}"})


def _child_main(serve: bool) -> int:
    """Child side: answer one request (stdin to EOF), or with `serve` one per line until EOF."""
    reply_stream = sys.stdout
    # A stray print in a backend must not corrupt the reply line.
    sys.stdout = sys.stderr
    requests = iter(sys.stdin.buffer.readline, b"") if serve else [sys.stdin.buffer.read()]
    for raw in requests:
        reply_stream.write(_reply_line(raw) + "\n")
        reply_stream.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main(serve="--serve" in sys.argv[1:]))
