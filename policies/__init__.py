"""Policy-as-code: load a YAML policy and decide whether a proposed tool call may run."""

from __future__ import annotations

from pathlib import Path

from policies.engine import (
    METRICS,
    Action,
    Decision,
    Policy,
    PolicyError,
    Rule,
    ToolCatalog,
    ToolContract,
    load_policy,
    parse_policy,
)
from policies.reloader import PolicyReloader

__all__ = [
    "DEFAULT_POLICY_PATH", "METRICS", "Action", "Decision", "Policy", "PolicyError",
    "PolicyReloader", "Rule", "ToolCatalog", "ToolContract", "load_policy", "parse_policy",
]

DEFAULT_POLICY_PATH = Path(__file__).with_name("default.yaml")
"""The shipped policy: the article's three rules and read-only SQL, default allow."""
