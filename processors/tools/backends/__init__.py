"""Local backends of the four registered tools, behind one entry point: `run_tool`.

Each backend is imported only when its tool is called, so the sandbox child that runs one call
loads one backend (and never jsonschema or pydantic).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from processors.tools.backends.config import BackendConfig
from processors.tools.backends.errors import ToolError

__all__ = ["TOOL_NAMES", "BackendConfig", "ToolError", "run_tool", "sandbox_paths"]

TOOL_NAMES = ("search_docs", "query_sql", "create_ticket", "send_email")


def sandbox_paths(name: str, cfg: BackendConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(read-only, writable) paths the backend of tool `name` needs inside the sandbox.

    Every backend file is listed read-only, so one that lies in another backend's writable
    folder stays read-only there; a tool of no backend (an entry point) gets none of them.
    """
    if name not in TOOL_NAMES:
        return (), ()
    everything = (cfg.docs_dir, cfg.sql_path)
    if name == "create_ticket":
        # SQLite writes its journal beside the store, so the folder is writable, not just the file.
        return everything, (os.path.dirname(os.path.abspath(cfg.tickets_path)),)
    return everything, ()


def run_tool(
    name: str, input: dict[str, Any], cfg: BackendConfig, *, idempotency_key: str,
    entrypoint: str | None = None, mcp: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one call of tool `name` and return its output; every failure is a `ToolError`.

    idempotency_key: identifies the logical call; side-effecting tools do the work once per key.
    entrypoint: `module:function` for a tool without a built-in backend; the function takes the
        input object and returns the output object.
    mcp: `{"server": {...}, "tool": name}` to call a tool of an MCP server, or `{"server": {...},
        "list": true}` to list its tools.
    """
    if not isinstance(input, dict):
        raise ToolError(f"{name}: input must be a JSON object, got {type(input).__name__}")
    if entrypoint is not None:
        return _run_entrypoint(name, entrypoint, input)
    if mcp is not None:
        from processors.tools.backends.mcp_client import call_mcp_tool, list_mcp_tools

        if mcp.get("list"):
            return list_mcp_tools(mcp["server"])
        return call_mcp_tool(mcp["server"], str(mcp["tool"]), input)
    try:
        if name == "search_docs":
            from processors.tools.backends.docs import search_docs

            return search_docs(input, cfg)
        if name == "query_sql":
            from processors.tools.backends.sql import query_sql

            return query_sql(input, cfg)
        if name == "create_ticket":
            from processors.tools.backends.tickets import create_ticket

            return create_ticket(input, cfg, idempotency_key=idempotency_key)
        if name == "send_email":
            from processors.tools.backends.email import send_email

            return send_email(input, cfg, idempotency_key=idempotency_key)
    except ToolError:
        raise
    except Exception as exc:
        # Anything a backend did not anticipate still reaches the caller as a ToolError.
        raise ToolError(f"{name} failed: {type(exc).__name__}: {exc}") from exc
    raise ToolError(f"unknown tool {name!r}; known tools: {', '.join(TOOL_NAMES)}")


def _run_entrypoint(name: str, entrypoint: str, input: dict[str, Any]) -> dict[str, Any]:
    module, _, function = entrypoint.partition(":")
    try:
        fn = getattr(importlib.import_module(module), function)
        output = fn(input)
    except ToolError:
        raise
    except Exception as exc:
        raise ToolError(f"{name} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(output, dict):
        raise ToolError(f"{name}: returned {type(output).__name__}, not a JSON object")
    return output
