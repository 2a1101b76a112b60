"""Local backends of the four registered tools, behind one entry point: `run_tool`.

Each backend is imported only when its tool is called, so the sandbox child that runs one call
loads one backend (and never jsonschema or pydantic).
"""

from __future__ import annotations

from typing import Any

from processors.tools.backends.config import BackendConfig
from processors.tools.backends.errors import ToolError

__all__ = ["TOOL_NAMES", "BackendConfig", "ToolError", "run_tool"]

TOOL_NAMES = ("search_docs", "query_sql", "create_ticket", "send_email")


def run_tool(
    name: str, input: dict[str, Any], cfg: BackendConfig, *, idempotency_key: str
) -> dict[str, Any]:
    """Run one call of tool `name` and return its output; every failure is a `ToolError`.

    idempotency_key: identifies the logical call; side-effecting tools do the work once per key.
    """
    if not isinstance(input, dict):
        raise ToolError(f"{name}: input must be a JSON object, got {type(input).__name__}")
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
