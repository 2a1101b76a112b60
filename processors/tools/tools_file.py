"""The tools file: an installation's changes to the built-in tools (limits, costs, call budgets)
and its own tools (entry points run in the sandbox), over the four every installation has.

```yaml
tools:
  send_email: {run_call_budget: 2, tenant_call_budget: 200}
  word_count:
    description: Counts the words of a text.
    entrypoint: mytools.text:word_count      # module:function, importable in the sandbox
    input_schema: {type: object, properties: {text: {type: string}}, required: [text]}
    timeout_s: 2
    cost_usd: 0.0001
mcp_servers:                                 # their tools register as mcp:<server>.<tool>
  docs: {command: [python, -m, docs_server], timeout_s: 10}   # stdio, started in the sandbox
  wiki: {url: "http://127.0.0.1:8765/mcp"}                     # streamable HTTP
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from policies.strict_yaml import load_strict
from processors.tools.mcp_tools import McpServer
from processors.tools.registry import DEFAULT_TOOLS, ToolRegistry, ToolSpec

__all__ = ["ToolsFileError", "load_mcp_servers", "load_tools_file", "parse_mcp_servers", "parse_tools"]

_TUNABLE = {"timeout_s", "cost_usd", "memory_mb", "cpu_s", "max_processes", "max_file_mb",
            "run_call_budget", "tenant_call_budget", "fresh_process"}
_NEW_TOOL = _TUNABLE | {"description", "input_schema", "entrypoint", "side_effects", "network"}


class ToolsFileError(ValueError):
    """The tools file is not valid; the message says where."""


def parse_tools(doc: object, *, source: str = "<tools>") -> ToolRegistry:
    """The registry a parsed tools file describes (the built-ins included)."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict) or set(doc) - {"tools", "mcp_servers"}:
        raise ToolsFileError(f"{source}: expects a mapping with the keys 'tools' and 'mcp_servers'")
    entries = doc.get("tools") or {}
    if not isinstance(entries, dict):
        raise ToolsFileError(f"{source}: 'tools' must map tool names to their settings")
    tools = {t.name: t for t in DEFAULT_TOOLS}
    for name, entry in entries.items():
        where = f"{source}: tools.{name}"
        if not isinstance(name, str) or not isinstance(entry, dict):
            raise ToolsFileError(f"{where}: expects a mapping of settings")
        allowed = _TUNABLE if name in tools else _NEW_TOOL
        if unknown := set(entry) - allowed:
            kind = "a built-in tool takes only" if name in tools else "a tool takes"
            raise ToolsFileError(f"{where}: unknown keys {sorted(unknown)} ({kind} {sorted(allowed)})")
        try:
            if name in tools:
                tools[name] = dataclasses.replace(tools[name], **entry)
            else:
                if "entrypoint" not in entry or ":" not in str(entry["entrypoint"]):
                    raise ValueError("a tool of its own needs an 'entrypoint' of the form module:function")
                tools[name] = ToolSpec(name=name, **{"description": name, "input_schema": {"type": "object"},
                                                     **entry})
        except Exception as exc:  # noqa: BLE001 - TypeError, ValueError and jsonschema's SchemaError alike
            raise ToolsFileError(f"{where}: {exc}") from None
        _check(tools[name], where)
    return ToolRegistry(list(tools.values()))


_SERVER_KEYS = {"command", "url", "timeout_s", "network", "cost_usd"}


def parse_mcp_servers(doc: object, *, source: str = "<tools>") -> list[McpServer]:
    """The MCP servers a parsed tools file configures."""
    entries = (doc or {}).get("mcp_servers") or {} if isinstance(doc, dict) else {}
    if not isinstance(entries, dict):
        raise ToolsFileError(f"{source}: 'mcp_servers' must map server names to their settings")
    servers = []
    for name, entry in entries.items():
        where = f"{source}: mcp_servers.{name}"
        if not isinstance(entry, dict) or set(entry) - _SERVER_KEYS:
            raise ToolsFileError(f"{where}: expects a mapping of {sorted(_SERVER_KEYS)}")
        try:
            command = entry.get("command") or ()
            servers.append(McpServer(name=str(name), command=tuple(str(c) for c in command),
                                     **{k: v for k, v in entry.items() if k != "command"}))
        except (TypeError, ValueError) as exc:
            raise ToolsFileError(f"{where}: {exc}") from None
    return servers


def load_tools_file(path: Path | None) -> ToolRegistry:
    """The registry of the tools file at `path`; the built-ins alone when `path` is None."""
    if path is None:
        return ToolRegistry(list(DEFAULT_TOOLS))
    return parse_tools(_read(path), source=str(path))


def load_mcp_servers(path: Path | None) -> list[McpServer]:
    """The MCP servers of the tools file at `path`; none when `path` is None."""
    return [] if path is None else parse_mcp_servers(_read(path), source=str(path))


def _read(path: Path) -> Any:
    try:
        return load_strict(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ToolsFileError(f"{path}: {exc}") from None


def _check(spec: ToolSpec, where: str) -> None:
    for field in ("run_call_budget", "tenant_call_budget", "memory_mb", "max_processes", "max_file_mb"):
        value = getattr(spec, field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ToolsFileError(f"{where}: {field} must be a whole number ≥ 0, got {value!r}")
    for field in ("timeout_s", "cost_usd"):
        value = getattr(spec, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ToolsFileError(f"{where}: {field} must be a number ≥ 0, got {value!r}")
