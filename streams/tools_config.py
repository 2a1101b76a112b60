"""The installation's tool registry: the built-ins with the tools file's changes and additions."""

from __future__ import annotations

from processors.tools.registry import ToolRegistry
from processors.tools.tools_file import load_tools_file
from streams.settings import Settings

__all__ = ["tool_registry"]


def tool_registry(settings: Settings) -> ToolRegistry:
    """Every service that plans, guards or runs tools reads the same one (`AGENTLOG_TOOLS_FILE`)."""
    return load_tools_file(settings.tools_file)
