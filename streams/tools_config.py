"""The installation's tool registry: the built-ins with the tools file's changes and additions,
and the tools its MCP servers list (each server listed inside the sandbox, as its calls run)."""

from __future__ import annotations

import logging
from typing import Any

from processors.tools.mcp_tools import McpServer, mcp_specs
from processors.tools.registry import ToolRegistry, ToolSpec
from processors.tools.sandbox_pool import SandboxPool
from processors.tools.tools_file import load_mcp_servers, load_tools_file
from streams.backends import backend_config
from streams.settings import Settings

__all__ = ["list_server", "tool_registry"]

log = logging.getLogger(__name__)


def tool_registry(settings: Settings) -> ToolRegistry:
    """Every service that plans, guards or runs tools reads the same one (`AGENTLOG_TOOLS_FILE`).

    A server that cannot be listed adds no tools (logged): plans naming them are rejected and the
    guard denies them as unknown, until a restart lists it.
    """
    registry = load_tools_file(settings.tools_file)
    servers = load_mcp_servers(settings.tools_file)
    if not servers:
        return registry
    tools = list(registry)
    pool = SandboxPool(mode=settings.sandbox, size=1, hide=(str(settings.home),))
    try:
        for server in servers:
            listed = list_server(pool, server, settings)
            if listed is None:
                continue
            specs = mcp_specs(server, listed)
            log.info("MCP server %s: %d tool(s): %s", server.name, len(specs),
                     ", ".join(s.name for s in specs))
            tools.extend(specs)
    finally:
        pool.close()
    return ToolRegistry(tools)


def list_server(pool: SandboxPool, server: McpServer, settings: Settings) -> list[dict[str, Any]] | None:
    """The tools `server` lists, asked from inside the sandbox; None (logged) when it cannot say."""
    lister = ToolSpec(name=f"mcp:{server.name}", description="lists the server's tools",
                      input_schema={"type": "object"}, timeout_s=server.timeout_s + 5.0, memory_mb=1024,
                      max_processes=64, network=server.network or server.url is not None,
                      mcp_server=server.to_dict())
    outcome = pool.run(lister, input={}, cfg=backend_config(settings), idempotency_key=f"list/{server.name}")
    tools = (outcome.output or {}).get("tools")
    if outcome.status != "ok" or not isinstance(tools, list):
        log.warning("MCP server %s could not be listed: %s", server.name, outcome.error or outcome.output)
        return None
    return [t for t in tools if isinstance(t, dict)]
