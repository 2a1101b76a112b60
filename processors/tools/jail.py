"""The enforced sandbox's box: what one tool's child may see and use, and the bubblewrap command
that builds it.

A child runs in its own user, mount, PID, IPC, UTS and (unless the tool needs the network)
network namespaces. The whole filesystem is read-only; the runtime user's home, the host's
/tmp and the installation's state directory are replaced by empty tmpfs mounts, and only the
code it runs and the paths its backend needs come back (read-only, or writable when the backend
writes). Its own temporary directory is a small tmpfs. Process count is bounded by a pids cgroup
when the runtime is root (root is exempt from RLIMIT_NPROC) and by RLIMIT_NPROC otherwise, which
the child sets on itself inside its own user namespace.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TOOL_TMP", "PidsCgroup", "SandboxProfile", "SandboxUnavailable", "bwrap_argv", "bwrap_path"]

TOOL_TMP = "/tmp/tool"
"""The child's own temporary directory (a tmpfs); each call works in a fresh folder under it."""


class SandboxUnavailable(RuntimeError):
    """The enforced sandbox cannot be built on this machine; tool calls fail closed."""


@dataclass(frozen=True, kw_only=True)
class SandboxProfile:
    """Everything that decides a tool child's box; children are pooled per profile."""

    network: bool = False
    """Share the host's network namespace; otherwise only an unconnected loopback exists."""
    read_only: tuple[str, ...] = ()
    """Paths the backend reads that the default view hides (under the state dir, home or /tmp)."""
    writable: tuple[str, ...] = ()
    """Paths the backend writes (folders); everything else is read-only."""
    memory_mb: int = 512
    """Address-space limit of each process in the box."""
    max_processes: int = 16
    """Processes and threads the tool may run at once, itself included."""
    max_file_mb: int = 64
    """Largest file the tool may write."""
    max_open_files: int = 256
    """File descriptors per process."""
    tmp_mb: int = 64
    """Size of the box's own temporary directory."""
    preload: tuple[str, ...] = ()
    """Modules the child imports once at start, so its forked calls need not (the MCP client)."""


def bwrap_path() -> str:
    """Where bubblewrap is, or SandboxUnavailable."""
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed; run `sh infra/debian-packages.sh "
                                 "bubblewrap` or set AGENTLOG_SANDBOX=process to run tools without the "
                                 "enforced sandbox")
    return found


def bwrap_argv(profile: SandboxProfile, *, command: list[str], code: list[str], hide: list[str],
               env: dict[str, str]) -> list[str]:
    """The bubblewrap command line that runs `command` inside `profile`'s box.

    command: what runs inside (absolute paths).
    code: folders the command needs to read even when they lie under a hidden one (the Python
        prefix, the virtual environment, the repository).
    hide: folders replaced by an empty tmpfs before `code` and the backend's paths come back
        (the state directory, which holds keys and tokens, is one).
    env: the whole environment inside; nothing of the caller's leaks in.
    """
    argv = [bwrap_path(), "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--clearenv"]
    if profile.network:
        argv.append("--share-net")
    for key, value in sorted(env.items()):
        argv += ["--setenv", key, value]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    home = str(Path.home())
    # The home first (it may hold the code), the state directory after the code (the code's
    # checkout may hold it), so neither re-appears through the other.
    early = [p for p in [home, "/tmp"] if p != "/"]
    late = [p for p in hide if p not in early]
    for path in early:
        argv += ["--tmpfs", path]
    for path in _existing(code):
        argv += ["--ro-bind", path, path]
    for path in late:
        if os.path.isdir(path):
            argv += ["--tmpfs", path]
    for path in _existing(profile.read_only):
        argv += ["--ro-bind", path, path]
    for path in profile.writable:
        argv += ["--bind", path, path]
    # Files of other backends that sit in a writable folder stay read-only.
    for path in _existing(profile.read_only):
        if any(_under(path, w) for w in profile.writable):
            argv += ["--ro-bind", path, path]
    argv += ["--size", str(profile.tmp_mb * 1024 * 1024), "--tmpfs", TOOL_TMP, "--remount-ro", "/tmp",
             "--chdir", TOOL_TMP, "--"]
    return argv + command


def _existing(paths: tuple[str, ...] | list[str]) -> list[str]:
    return [p for p in dict.fromkeys(paths) if os.path.exists(p)]


def _under(path: str, folder: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == os.path.abspath(folder)


class PidsCgroup:
    """A pids cgroup of one child (cgroup v1 `pids` or v2 with the pids controller); only root
    needs it, because RLIMIT_NPROC does not bind root."""

    def __init__(self, *, name: str, max_pids: int) -> None:
        """
        name: the group's folder name, unique on the machine.
        max_pids: processes and threads the group may hold.
        """
        base = _pids_root()
        self.path = base / name
        try:
            self.path.mkdir(exist_ok=True)
            (self.path / "pids.max").write_text(str(max_pids))
            self._procs = os.open(self.path / "cgroup.procs", os.O_WRONLY)
        except OSError as exc:
            raise SandboxUnavailable(f"cannot make a pids cgroup at {self.path}: {exc}") from None

    def join(self) -> None:
        """Move the calling process into the group; safe between fork and exec."""
        os.write(self._procs, b"0")

    def remove(self) -> None:
        """Close and delete the group once its processes are gone."""
        os.close(self._procs)
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # the last killed processes are still leaving
                time.sleep(0.02)


def _pids_root() -> Path:
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").exists() and os.access(v1, os.W_OK):
        return v1
    unified = Path("/sys/fs/cgroup")
    controllers = unified / "cgroup.controllers"
    if controllers.exists() and "pids" in controllers.read_text().split():
        own = Path(Path("/proc/self/cgroup").read_text().strip().splitlines()[-1].split(":", 2)[2])
        parent = unified / own.relative_to("/")
        if "pids" in (parent / "cgroup.subtree_control").read_text().split() and os.access(parent, os.W_OK):
            return parent
    raise SandboxUnavailable(
        "the runtime runs as root, which RLIMIT_NPROC does not bind, and no writable pids cgroup "
        "was found (cgroup v1 /sys/fs/cgroup/pids, or v2 with the pids controller delegated)")
