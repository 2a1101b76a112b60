"""Hot reload of a policy file: edits take effect without a restart, broken edits never do.

The guard asks for the current policy once per decision. Asking is cheap: the file is looked
at no more often than `check_every_s`, and read and parsed only when its stamp (mtime, size,
inode) changed. A file that fails validation is refused once per edit, logged with the
engine's message (file, rule, reason), and the last good policy stays in force.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any, Protocol

from policies.engine import Policy, PolicyError, ToolCatalog, parse_policy

__all__ = ["PolicyReloader"]

_Stamp = tuple[int, int, int]


class _Log(Protocol):
    """What the reloader needs of a logger (logging.Logger fits)."""

    def info(self, msg: str, *args: Any) -> None: ...

    def warning(self, msg: str, *args: Any) -> None: ...


class PolicyReloader:
    """The policy at `path`, re-read when the file changes.

    The first load happens in the constructor and raises PolicyError: a service must not start
    without a good policy. After that `current()` never raises.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        registry: ToolCatalog | None,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        log: _Log | None = None,
    ) -> None:
        self.path = Path(path)
        self._registry = registry
        self._check_every_s = check_every_s
        self._clock = clock
        self._log: _Log = log if log is not None else logging.getLogger("agentlog.policy")
        self.last_error: PolicyError | None = None
        """Why the newest edit was refused; None once a good version is loaded."""
        self.reloads = 0
        """How many times a changed file was loaded successfully after the first load."""
        try:
            self._stamp: _Stamp | None = self._stat()
        except OSError as exc:
            raise PolicyError(f"{self.path}: cannot read the policy ({exc})") from exc
        self._policy = self._read()
        self._checked_at = clock()

    @property
    def policy(self) -> Policy:
        """The policy in force, without looking at the file."""
        return self._policy

    def current(self) -> Policy:
        """The policy in force, after picking up an edit of the file if there is one."""
        now = self._clock()
        if now - self._checked_at < self._check_every_s:
            return self._policy
        self._checked_at = now
        try:
            self._reload_if_changed()
        except Exception as exc:  # noqa: BLE001 - a reload must never take the guard down
            self._refuse(PolicyError(f"{self.path}: reload failed ({type(exc).__name__}: {exc})"))
        return self._policy

    def _reload_if_changed(self) -> None:
        try:
            stamp = self._stat()
        except OSError as exc:
            # A missing file is often an editor's rename in progress; say so once, keep going.
            if self._stamp is not None:
                self._stamp = None
                self._refuse(PolicyError(f"{self.path}: cannot read the policy ({exc})"))
            return
        if stamp == self._stamp:
            return
        # Take the stamp before reading: a write racing the read changes the stamp again, so
        # the next check re-reads instead of keeping a half-seen file.
        self._stamp = stamp
        try:
            policy = self._read()
        except PolicyError as exc:
            self._refuse(exc)
            return
        before, self._policy = self._policy, policy
        self.last_error = None
        if policy.version != before.version:
            self.reloads += 1
            self._log.info("policy %s reloaded: version %s -> %s (%d rules)",
                           self.path, before.version, policy.version, len(policy.rules))
        else:
            self._log.info("policy %s re-read: version %s unchanged", self.path, policy.version)

    def _refuse(self, error: PolicyError) -> None:
        self.last_error = error
        self._log.warning("policy reload refused, keeping version %s: %s",
                          self._policy.version, error)

    def _stat(self) -> _Stamp:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read(self) -> Policy:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise PolicyError(f"{self.path}: cannot read the policy ({exc})") from exc
        return parse_policy(data, source=str(self.path), registry=self._registry)
