"""The one exception the tool backends raise."""

from __future__ import annotations

__all__ = ["ToolError"]


class ToolError(Exception):
    """A tool call failed for a reason worth showing to the caller (bad input, refused write...)."""
