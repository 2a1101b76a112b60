"""Runs one tool call in a child process, away from the runtime's memory, threads and secrets.

The child gets a minimal environment, an address-space limit and optionally a CPU limit, and is
killed when the wall-clock timeout passes. Whatever happens to it, the caller gets a
`ToolOutcome`; `run_sandboxed` itself never raises for a failed call.

`WarmSandbox` with a `SandboxProfile` is the enforced sandbox: the child is a warm "zygote"
inside a bubblewrap box (`jail.py`: namespaces, read-only filesystem, no network unless the
profile has it, its own tmpfs, a process cap) that forks one worker per call, so every call gets
fresh per-call limits (CPU seconds, file size) and a fresh working folder, and a call cannot
leave anything behind for the next: whatever processes it left are killed when it ends.

Child protocol: one JSON request on stdin, one JSON line on stdout,
`{"ok": true, "output": {...}}` or `{"ok": false, "error": "..."}`.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import math
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from processors.tools.backends import BackendConfig, ToolError, run_tool
from processors.tools.jail import TOOL_TMP, PidsCgroup, SandboxProfile, SandboxUnavailable, bwrap_argv

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


_NAMES = itertools.count()


class WarmSandbox:
    """One long-lived sandbox child answering calls one at a time: the same isolation as
    `run_sandboxed` (own process, minimal environment, address-space limit) without paying a
    Python start-up per call. A child that times out, dies or answers garbage is killed and the
    next call gets a fresh one; so does one that has served `max_calls` calls.

    With `profile` the child is the enforced sandbox (see the module's docstring)."""

    def __init__(self, *, memory_mb: int = 512, max_calls: int = 500, profile: SandboxProfile | None = None,
                 hide: tuple[str, ...] = ()) -> None:
        """
        memory_mb: address-space limit of the child (without a profile; a profile has its own).
        max_calls: calls one child serves before it is replaced (bounds what a leak can grow).
        profile: the enforced sandbox's box; None runs the plain child (no namespaces).
        hide: folders the enforced child must not see (the state directory).
        """
        self._limits = _limits(memory_mb=memory_mb, cpu_s=None)
        self._max_calls = max_calls
        self._profile = profile
        self._hide = hide
        self._proc: subprocess.Popen[bytes] | None = None
        self._cgroup: PidsCgroup | None = None
        self._served = 0

    def run(self, *, tool: str, input: dict[str, Any], cfg: BackendConfig, idempotency_key: str,
            timeout_s: float, cpu_s: float | None = None, entrypoint: str | None = None,
            fork: bool | None = None, mcp: dict[str, Any] | None = None) -> ToolOutcome:
        """Like `run_sandboxed`: never raises for a failed call.

        fork: run the call in a fresh process of the box (enforced sandbox only); None: for entry
            points and MCP calls yes, for the built-in backends no.
        mcp: the MCP server and tool to call (see `run_tool`).
        cpu_s: CPU seconds of the call (enforced sandbox only); None: the wall-clock limit's.
        entrypoint: `module:function` of a tool that is not one of the built-in backends.
        """
        started = time.monotonic()

        def outcome(status: Literal["ok", "error", "timeout"], output: dict[str, Any] | None,
                    error: str | None) -> ToolOutcome:
            return ToolOutcome(status, output, error, int((time.monotonic() - started) * 1000))

        try:
            line = json.dumps({"tool": tool, "input": input, "cfg": cfg.to_dict(),
                               "idempotency_key": idempotency_key, "entrypoint": entrypoint, "mcp": mcp,
                               "fork": fork if fork is not None else (entrypoint or mcp) is not None,
                               "cpu_s": max(1, math.ceil(cpu_s if cpu_s is not None else timeout_s))}) + "\n"
        except (TypeError, ValueError) as exc:
            return outcome("error", None, f"{tool}: input is not JSON-serialisable: {exc}")
        try:
            proc = self._child()
        except SandboxUnavailable as exc:
            return outcome("error", None, f"{tool}: sandbox unavailable: {exc}")
        try:
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
        if self._proc is not None and self._proc.poll() is not None:
            self._discard()
        if self._proc is None and self._profile is not None:
            self._proc = self._enforced_child(self._profile)
            self._served = 0
        if self._proc is None:
            limits = self._limits
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "processors.tools.sandbox", "--serve"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                # Runs between fork and exec: only setrlimit calls on precomputed values.
                cwd=REPO_ROOT, env=_child_env(), preexec_fn=lambda: _apply_limits(limits),  # noqa: PLW1509
            )
            self._served = 0
        return self._proc

    def _enforced_child(self, profile: SandboxProfile) -> subprocess.Popen[bytes]:
        python = os.path.realpath(sys.executable)
        limits = json.dumps(asdict(profile))
        command = [sys.executable, "-m", "processors.tools.sandbox", "--zygote", limits]
        argv = bwrap_argv(profile, command=command,
                          code=[str(REPO_ROOT), sys.prefix, sys.base_prefix, os.path.dirname(python)],
                          hide=list(self._hide), env={**_child_env(), "TMPDIR": TOOL_TMP})
        cgroup = None
        if os.geteuid() == 0:
            # Three for bubblewrap (outside and its init inside) and the zygote, the rest for the tool.
            cgroup = PidsCgroup(name=f"agentlog-sandbox-{os.getpid()}-{next(_NAMES)}",
                                max_pids=profile.max_processes + 3)
        join = cgroup.join if cgroup is not None else None
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/",
                # Runs between fork and exec: one write of a precomputed fd.
                preexec_fn=join,  # noqa: PLW1509
            )
        except OSError as exc:
            if cgroup is not None:
                cgroup.remove()
            raise SandboxUnavailable(f"cannot start bubblewrap: {exc}") from None
        self._cgroup = cgroup
        return proc

    def _discard(self) -> int | None:
        proc, self._proc = self._proc, None
        cgroup, self._cgroup = self._cgroup, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        if cgroup is not None:
            cgroup.remove()
        return code


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
        output = run_tool(request["tool"], request["input"], cfg, idempotency_key=request["idempotency_key"],
                          entrypoint=request.get("entrypoint"), mcp=request.get("mcp"))
        return json.dumps({"ok": True, "output": output})
    except ToolError as exc:
        return json.dumps({"ok": False, "error": str(exc)})
    except MemoryError:
        return json.dumps(
            {"ok": False, "error": "sandbox: the tool ran out of memory (address-space limit)"}
        )
    except Exception as exc:  # noqa: BLE001 - the child reports every failure of the tool as data
        return json.dumps({"ok": False, "error": f"sandbox: {type(exc).__name__}: {exc}"})


def _zygote_main(limits_json: str) -> int:
    """Child side of the enforced sandbox: set the box's limits on itself, then fork one worker
    per request line, each with its own CPU and file-size limits and working folder."""
    profile = SandboxProfile(**json.loads(limits_json))
    # Imported once here rather than in every forked worker (urllib alone costs ~35 ms).
    for module in (*_BACKEND_MODULES, *profile.preload):
        importlib.import_module(module)
    nproc = profile.max_processes + 2  # bubblewrap's init and this process count too
    for res, value in [(resource.RLIMIT_AS, profile.memory_mb * 1024 * 1024), (resource.RLIMIT_CORE, 0),
                       (resource.RLIMIT_NOFILE, profile.max_open_files), (resource.RLIMIT_NPROC, nproc)]:
        _, hard = resource.getrlimit(res)
        capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(res, (capped, capped))
    # Only inside bubblewrap's PID namespace (its init is 1, this process 2) may leftovers of a
    # call be killed wholesale; anywhere else kill(-1) would reach the whole machine.
    boxed = os.getpid() == 2 and Path("/proc/1/comm").read_text().strip() == "bwrap"
    reply_stream = sys.stdout
    sys.stdout = sys.stderr
    for raw in iter(sys.stdin.buffer.readline, b""):
        try:
            request = json.loads(raw)
            cpu_s, fork = int(request.get("cpu_s") or 10), bool(request.get("fork"))
        except (ValueError, AttributeError, TypeError):
            reply = json.dumps({"ok": False, "error": "sandbox: the request is not a JSON object"})
        else:
            reply = (_fork_call if fork else _warm_call)(raw, profile, cpu_s=cpu_s)
        if boxed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)  # whatever the call left running
        reply_stream.write(reply + "\n")
        reply_stream.flush()
    return 0


def _warm_call(raw: bytes, profile: SandboxProfile, *, cpu_s: int) -> str:
    """A call of trusted backend code, in this process: the box's limits hold, the CPU limit is
    a soft one set around the call (SIGXCPU ends the whole child, which is then replaced)."""
    workdir = tempfile.mkdtemp(dir=TOOL_TMP)
    used = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used.ru_utime + used.ru_stime) + cpu_s
    capped = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (capped, hard))
    os.chdir(workdir)
    os.environ["TMPDIR"] = tempfile.tempdir = workdir
    try:
        return _reply_line(raw)
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        os.chdir(TOOL_TMP)
        shutil.rmtree(workdir, ignore_errors=True)


_BACKEND_MODULES = tuple(f"processors.tools.backends.{m}" for m in ("docs", "sql", "tickets", "email"))


def _fork_call(raw: bytes, profile: SandboxProfile, *, cpu_s: int) -> str:
    """A call in a fresh worker process: per-call CPU and file-size limits, nothing of it
    survives into the next call."""
    workdir = tempfile.mkdtemp(dir=TOOL_TMP)
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        os.close(read_end)
        os.close(write_end)
        return json.dumps({"ok": False, "error": f"sandbox: cannot start the call: {exc}"})
    if pid == 0:  # the worker: never returns
        os.close(read_end)
        try:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
            size = profile.max_file_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
            os.chdir(workdir)
            os.environ["TMPDIR"] = workdir
            tempfile.tempdir = workdir
            reply = _reply_line(raw).encode("utf-8")
            with os.fdopen(write_end, "wb") as out:
                out.write(reply)
        finally:
            os._exit(0)
    os.close(write_end)
    reply, status = _collect(read_end, pid)
    shutil.rmtree(workdir, ignore_errors=True)
    if reply:
        return reply.decode("utf-8", "replace")
    return json.dumps({"ok": False, "error": "sandbox: " + _death(status, profile, cpu_s)})


def _collect(read_end: int, pid: int) -> tuple[bytes, int]:
    """The worker's reply and exit status. Reads while waiting, so a long reply cannot block the
    worker, and stops reading once it has exited, so a process it left holding the pipe cannot
    block the zygote."""
    chunks: list[bytes] = []
    status = 0
    done = False
    while not done:
        ready, _, _ = select.select([read_end], [], [], 0.05)
        if ready:
            chunk = os.read(read_end, 1 << 16)
            if chunk:
                chunks.append(chunk)
                continue
        waited, status = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            done = True
            os.set_blocking(read_end, False)
            try:
                while chunk := os.read(read_end, 1 << 16):
                    chunks.append(chunk)
            except BlockingIOError:
                pass
        elif ready:  # EOF while the worker still runs: it closed its reply
            _, status = os.waitpid(pid, 0)
            done = True
    os.close(read_end)
    return b"".join(chunks), status


def _death(status: int, profile: SandboxProfile, cpu_s: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        why: dict[int, str] = {
            signal.SIGXCPU: f"its CPU limit of {cpu_s}s",
            signal.SIGXFSZ: f"its file-size limit of {profile.max_file_mb} MB",
            signal.SIGKILL: f"its CPU limit of {cpu_s}s or its memory limit of {profile.memory_mb} MB",
            signal.SIGSEGV: f"probably its memory limit of {profile.memory_mb} MB",
        }
        return f"the tool was killed by {_signal_name(sig)} ({why.get(sig, 'a signal')})"
    return f"the tool exited with status {os.waitstatus_to_exitcode(status)} without a reply"


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
    if sys.argv[1:2] == ["--zygote"]:
        raise SystemExit(_zygote_main(sys.argv[2]))
    raise SystemExit(_child_main(serve="--serve" in sys.argv[1:]))
