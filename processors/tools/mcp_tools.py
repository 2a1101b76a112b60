"""MCP servers' tools as registered tools: namespaced `mcp:<server>.<tool>`, with the server's
JSON schema as input contract, called in the sandbox like any tool.

What a server says of its tools (read-only, destructive) is kept in `annotations` and never
trusted: every MCP tool counts as side-effecting (it takes an idempotency key, and the policy,
not the server, decides what it may do).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from processors.tools.registry import ToolSpec

__all__ = ["McpServer", "mcp_specs", "mcp_tool_name"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, kw_only=True)
class McpServer:
    """One configured MCP server."""

    name: str
    """Its namespace in tool names (letters, digits, `_`, `-`)."""
    command: tuple[str, ...] = ()
    """For stdio: the program and its arguments, started inside the sandbox for each call."""
    url: str | None = None
    """For streamable HTTP: the endpoint (`http://host:port/mcp`)."""
    timeout_s: float = 10.0
    """Limit of one exchange (start-up, initialize and the call)."""
    network: bool = False
    """A stdio server's box shares the network; an HTTP server's always does (to reach it)."""
    cost_usd: float = 0.0
    """Cost counted for each call of its tools."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"MCP server name {self.name!r} must be letters, digits, '_' or '-'")
        if bool(self.command) == bool(self.url):
            raise ValueError(f"MCP server {self.name}: give exactly one of 'command' (stdio) "
                             "and 'url' (HTTP)")
        if self.timeout_s <= 0:
            raise ValueError(f"MCP server {self.name}: timeout_s must be positive")

    def to_dict(self) -> dict[str, Any]:
        """What the sandbox child needs to reach it."""
        return {"name": self.name, "command": list(self.command), "url": self.url,
                "timeout_s": self.timeout_s}


def mcp_tool_name(server: str, tool: str) -> str:
    """The registered name of a server's tool."""
    return f"mcp:{server}.{tool}"


def mcp_specs(server: McpServer, listed: Sequence[Mapping[str, Any]]) -> list[ToolSpec]:
    """The registered tools of one server, from what it listed; a tool whose schema is not valid
    JSON Schema is left out (and named in the error), so no call can skip validation."""
    specs = []
    for tool in listed:
        name = str(tool.get("name", ""))
        if not _NAME.match(name):
            continue
        schema = tool.get("input_schema") or {"type": "object"}
        specs.append(ToolSpec(
            name=mcp_tool_name(server.name, name),
            description=str(tool.get("description") or name)[:500],
            input_schema=schema, timeout_s=server.timeout_s + 5.0, cost_usd=server.cost_usd,
            side_effects=True, network=server.network or server.url is not None,
            memory_mb=1024, max_processes=64, mcp_server=server.to_dict(), mcp_tool=name,
            annotations=dict(tool.get("annotations") or {}),
        ))
    return specs
