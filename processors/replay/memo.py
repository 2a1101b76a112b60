"""Memoized policy and tool contracts, so replaying thousands of runs checks each distinct call
once.

Both wrap pure functions — a policy's decision on a call, a JSON-schema check of an input — and
answer exactly as the wrapped ones do: replay still decides with today's policy and registry,
it only stops recomputing what it has computed. Each memo is bounded, because its keys come
from the dataset.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policies import Decision, Policy, ToolCatalog
from processors.tools.registry import ToolRegistry, ToolSpec

__all__ = ["remembering_registry", "remembering_policy"]

_LIMIT = 200_000
"""Entries per memo; past it, new calls are decided without being remembered."""


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


@dataclass(frozen=True, kw_only=True)
class _RememberingSpec(ToolSpec):
    _seen: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)

    def input_errors(self, value: object) -> list[str]:
        key = _key(value)
        found = self._seen.get(key)
        if found is None:
            found = super().input_errors(value)
            if len(self._seen) < _LIMIT:
                self._seen[key] = found
        return list(found)


@dataclass(frozen=True, kw_only=True)
class _RememberingPolicy(Policy):
    _seen: dict[tuple[Any, ...], Decision] = field(default_factory=dict, repr=False, compare=False)

    def evaluate(self, *, tool: str, input: Mapping[str, Any], run_metrics: Mapping[str, float | None],
                 tenant_id: str = "", route: str = "", registry: ToolCatalog | None = None) -> Decision:
        if registry is not None:  # another catalog than the one this policy was loaded with
            return super().evaluate(tool=tool, input=input, run_metrics=run_metrics,
                                    tenant_id=tenant_id, route=route, registry=registry)
        key = (tool, _key(input), tuple(sorted(run_metrics.items())), tenant_id, route)
        found = self._seen.get(key)
        if found is None:
            found = super().evaluate(tool=tool, input=input, run_metrics=run_metrics,
                                     tenant_id=tenant_id, route=route)
            if len(self._seen) < _LIMIT:
                self._seen[key] = found
        return found


def remembering_registry(registry: ToolRegistry) -> ToolRegistry:
    """`registry`'s tools, each remembering its input checks."""
    fields = [f.name for f in dataclasses.fields(ToolSpec) if f.init and not f.name.startswith("_")]
    return ToolRegistry([_RememberingSpec(**{n: getattr(t, n) for n in fields}) for t in registry])


def remembering_policy(policy: Policy) -> Policy:
    """`policy`, remembering its decision on each distinct call (same version, same rules)."""
    return _RememberingPolicy(version=policy.version, rules=policy.rules, default=policy.default,
                              source=policy.source, registry=policy.registry)
