"""MCP servers as tool backends, through the official `mcp` SDK: list a server's tools, call one.

Runs inside the sandbox like every backend: a stdio server is started by this process, so it is
a process of the box (its namespaces, read-only filesystem, limits) and dies with the call. Every
failure — a server that does not start, does not answer in time, answers garbage or reports an
error — is a `ToolError` with the reason, which the executor records as the call's outcome.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import anyio

from processors.tools.backends.errors import ToolError

# The SDK logs every unparsable line a server writes with a traceback; the error is the call's.
logging.getLogger("mcp").setLevel(logging.CRITICAL)

__all__ = ["list_mcp_tools", "call_mcp_tool"]

_MAX_TEXT = 100_000


def list_mcp_tools(server: dict[str, Any]) -> dict[str, Any]:
    """`{"tools": [{name, description, input_schema, annotations}]}` of the server."""
    async def go(session: Any) -> dict[str, Any]:
        listed = await session.list_tools()
        return {"tools": [{"name": t.name, "description": t.description or "",
                           "input_schema": t.input_schema,
                           "annotations": _annotations(t)}
                          for t in listed.tools]}
    return _with_session(server, go, what="list its tools")


def call_mcp_tool(server: dict[str, Any], tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The call's result as `{"content": [...], "structured": ..., "server", "tool"}`."""
    async def go(session: Any) -> dict[str, Any]:
        result = await session.call_tool(tool, arguments, read_timeout_seconds=float(server["timeout_s"]))
        content = [_block(b) for b in getattr(result, "content", None) or []]
        if getattr(result, "is_error", False):
            text = " ".join(b.get("text", "") for b in content)[:2000]
            raise ToolError(f"mcp:{server['name']}.{tool}: the server reported an error: {text}")
        return {"server": server["name"], "tool": tool, "content": content,
                "structured": getattr(result, "structured_content", None)}
    return _with_session(server, go, what=f"call {tool}")


def _annotations(tool: Any) -> dict[str, Any]:
    found = getattr(tool, "annotations", None)
    return found.model_dump(exclude_none=True) if found is not None else {}


def _block(block: Any) -> dict[str, Any]:
    kind = getattr(block, "type", "unknown")
    if kind == "text":
        return {"type": "text", "text": str(block.text)[:_MAX_TEXT]}
    return {"type": str(kind)}  # images, audio, resources: recorded by kind only


def _with_session(server: dict[str, Any], go: Any, *, what: str) -> dict[str, Any]:
    from mcp import ClientSession

    name, timeout = server["name"], float(server["timeout_s"])

    async def main() -> dict[str, Any]:
        with anyio.fail_after(timeout):
            async with _transport(server) as streams, ClientSession(streams[0], streams[1],
                                                                     read_timeout_seconds=timeout) as session:
                await session.initialize()
                out: dict[str, Any] = await go(session)
                return out

    try:
        return anyio.run(main)
    except ToolError:
        raise
    except TimeoutError:
        raise ToolError(f"MCP server {name} did not {what} within {timeout:g}s") from None
    except BaseException as exc:  # noqa: BLE001 - anyio wraps failures in exception groups
        raise ToolError(f"MCP server {name} could not {what}: {_reason(exc)}") from None


def _transport(server: dict[str, Any]) -> Any:
    if server.get("url"):
        from mcp.client.streamable_http import streamable_http_client

        return streamable_http_client(server["url"])
    from mcp.client.stdio import StdioServerParameters, stdio_client

    command = list(server["command"])
    # Only what the box gives: the minimal environment, plus what the registration names.
    env = {**os.environ, **(server.get("env") or {})}
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    return stdio_client(params, errlog=open(os.devnull, "w"))  # lives as long as the call


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:500]
