"""Warm sandbox children for the executor, pooled per box: a tool's calls run only in children
built for its profile (its network, its backend's paths, its limits), at most `size` at once."""

from __future__ import annotations

import queue
import threading
from typing import Any, Literal

from processors.tools.backends import BackendConfig, sandbox_paths
from processors.tools.jail import SandboxProfile
from processors.tools.registry import ToolSpec
from processors.tools.sandbox import ToolOutcome, WarmSandbox

__all__ = ["MCP_PRELOAD", "SandboxPool", "profile_for"]

MCP_PRELOAD = ("processors.tools.backends.mcp_client", "mcp", "mcp.client.stdio",
               "mcp.client.streamable_http")
"""What an MCP tool's box imports once, instead of in every call (about a second)."""


def _mcp_request(spec: ToolSpec) -> dict[str, Any] | None:
    if spec.mcp_server is None:
        return None
    if spec.mcp_tool is None:  # the server itself: list its tools
        return {"server": dict(spec.mcp_server), "list": True}
    return {"server": dict(spec.mcp_server), "tool": spec.mcp_tool}


def profile_for(spec: ToolSpec, cfg: BackendConfig) -> SandboxProfile:
    """The box one tool's calls run in."""
    read_only, writable = sandbox_paths(spec.name, cfg)
    return SandboxProfile(network=spec.network, read_only=read_only, writable=writable,
                          memory_mb=spec.memory_mb, max_processes=spec.max_processes,
                          max_file_mb=spec.max_file_mb, preload=MCP_PRELOAD if spec.mcp_server else ())


class SandboxPool:
    """Children per profile, created when first needed and reused; thread-safe."""

    def __init__(self, *, mode: Literal["enforced", "process"], size: int,
                 hide: tuple[str, ...] = ()) -> None:
        """
        mode: "enforced" (bubblewrap boxes) or "process" (plain children: no namespaces).
        size: children per profile, as many as calls that may run at once.
        hide: folders the enforced children must not see (the state directory).
        """
        self._mode = mode
        self._size = size
        self._hide = hide
        self._lock = threading.Lock()
        self._idle: dict[SandboxProfile | None, queue.SimpleQueue[WarmSandbox]] = {}
        self._all: list[WarmSandbox] = []

    def run(self, spec: ToolSpec, *, input: dict[str, Any], cfg: BackendConfig,
            idempotency_key: str) -> ToolOutcome:
        """One call of `spec` in a child of its box; never raises for a failed call."""
        profile = profile_for(spec, cfg) if self._mode == "enforced" else None
        idle = self._queue(profile)
        child = idle.get()
        try:
            return child.run(tool=spec.name, input=input, cfg=cfg, idempotency_key=idempotency_key,
                             timeout_s=spec.timeout_s, cpu_s=spec.cpu_s, entrypoint=spec.entrypoint,
                             fork=spec.fresh_process, mcp=_mcp_request(spec))
        finally:
            idle.put(child)

    def close(self) -> None:
        """Stop every child."""
        with self._lock:
            for child in self._all:
                child.close()

    def _queue(self, profile: SandboxProfile | None) -> queue.SimpleQueue[WarmSandbox]:
        with self._lock:
            idle = self._idle.get(profile)
            if idle is None:
                idle = self._idle[profile] = queue.SimpleQueue()
                for _ in range(self._size):
                    # A child starts on its first call, so an unused slot costs nothing.
                    child = WarmSandbox(profile=profile, hide=self._hide)
                    self._all.append(child)
                    idle.put(child)
            return idle
