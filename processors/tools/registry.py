"""The tool registry: every tool's name, input contract, limits and cost.

Plans are validated against it, the policy guard fails closed on names it does not hold, and
the executor reads a tool's timeout and side-effect flag from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema

__all__ = ["ToolSpec", "ToolRegistry", "DEFAULT_TOOLS", "default_registry"]


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """A registered tool."""

    name: str
    """Exact name plans and policies refer to."""
    description: str
    """One line a planner (or a person) reads to choose the tool."""
    input_schema: Mapping[str, Any]
    """JSON Schema (draft 2020-12) of the tool's input object."""
    timeout_s: float = 10.0
    """Wall-clock limit of one execution."""
    cost_usd: float = 0.0
    """Estimated cost of one execution, counted against the run's budget."""
    side_effects: bool = False
    """True when a call changes the world; such calls take an idempotency key."""
    network: bool = False
    """True when the tool needs the network (everything else runs without it)."""
    entrypoint: str | None = None
    """`module:function` run in the sandbox for a tool without a built-in backend."""
    memory_mb: int = 512
    """Address-space limit of each of the call's processes."""
    cpu_s: float | None = None
    """CPU seconds one call may use; None: as many as its timeout."""
    max_processes: int = 16
    """Processes and threads one call may run at once."""
    max_file_mb: int = 64
    """Largest file one call may write."""
    run_call_budget: int | None = None
    """Calls one run may make of this tool; None: no limit. An exhausted budget is a refusal
    (rule `tool_call_budget`), which the run sees as an observation."""
    tenant_call_budget: int | None = None
    """Calls one tenant may make of this tool per UTC day; None: no limit."""
    mcp_server: Mapping[str, Any] | None = None
    """For a tool of an MCP server: the server (name, `command` for stdio or `url` for streamable
    HTTP, `timeout_s`), whose tool `mcp_tool` a call runs."""
    mcp_tool: str | None = None
    """The tool's own name on its MCP server (the registered name is `mcp:<server>.<tool>`)."""
    annotations: Mapping[str, Any] | None = None
    """What the MCP server says of the tool (read-only, destructive…): recorded, never trusted."""
    fresh_process: bool | None = None
    """Fork each call a fresh process inside the sandbox (hard per-call CPU limit; nothing of a
    call outlives it), ~3 ms a call; None: yes for entry points, no for the built-in backends,
    which are trusted code and run warm."""
    _validator: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        jsonschema.Draft202012Validator.check_schema(self.input_schema)
        object.__setattr__(self, "_validator", jsonschema.Draft202012Validator(self.input_schema))

    def input_errors(self, value: object) -> list[str]:
        """Every reason `value` is not a valid input, as `path: message`; empty when valid."""
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(map(str, e.absolute_path)) or '<input>'}: {e.message}" for e in errors]


class ToolRegistry:
    """Tools by name; the single list that plans, policies and the executor agree on."""

    def __init__(self, tools: list[ToolSpec]) -> None:
        self._tools = {t.name: t for t in tools}

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._tools.values())

    def get(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)


_ADDRESSES = {
    "oneOf": [
        {"type": "string", "minLength": 3},
        {"type": "array", "items": {"type": "string", "minLength": 3}, "minItems": 1},
    ]
}

DEFAULT_TOOLS: list[ToolSpec] = [
    ToolSpec(
        name="search_docs",
        description="Full-text search over the documents folder; returns the best passages.",
        input_schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 20},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        timeout_s=5.0,
        cost_usd=0.0005,
    ),
    ToolSpec(
        name="query_sql",
        description="Runs SQL against the business database, opened read-only.",
        input_schema={
            "type": "object",
            "properties": {"sql": {"type": "string", "minLength": 1}},
            "required": ["sql"],
            "additionalProperties": False,
        },
        timeout_s=5.0,
        cost_usd=0.001,
    ),
    ToolSpec(
        name="create_ticket",
        description="Opens a ticket in the ticket store.",
        input_schema={
            "type": "object",
            "properties": {
                "title": {"type": "string", "minLength": 1},
                "description": {"type": "string"},
                "priority": {"enum": ["low", "normal", "high"]},
            },
            "required": ["title", "description"],
            "additionalProperties": False,
        },
        timeout_s=5.0,
        cost_usd=0.002,
        side_effects=True,
    ),
    ToolSpec(
        name="send_email",
        description="Sends an e-mail through the SMTP relay.",
        input_schema={
            "type": "object",
            "properties": {
                "to": _ADDRESSES,
                "cc": {"type": "array", "items": {"type": "string"}},
                "bcc": {"type": "array", "items": {"type": "string"}},
                "subject": {"type": "string", "minLength": 1},
                "body": {"type": "string"},
            },
            "required": ["to", "subject", "body"],
            "additionalProperties": False,
        },
        timeout_s=10.0,
        cost_usd=0.002,
        side_effects=True,
        network=True,
    ),
]


def default_registry() -> ToolRegistry:
    """The four tools every installation has."""
    return ToolRegistry(list(DEFAULT_TOOLS))
