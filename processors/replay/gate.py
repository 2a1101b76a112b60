"""The gate: a candidate's scores against thresholds, one verdict per threshold and overall."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Check", "Thresholds", "gate"]


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """What a candidate must meet; an unset threshold is not checked."""

    min_quality: float | None = None
    """Lowest acceptable mean quality of the candidate's runs (0–1)."""
    max_cost_delta: float | None = None
    """Highest acceptable cost change against the baseline, relative (0.15 = +15 %)."""
    max_latency_delta: float | None = None
    """Highest acceptable latency change against the baseline, relative."""
    max_policy_regressions: int | None = None
    """Most calls the candidate may decide more loosely than the baseline (or newly deny)."""


@dataclass(frozen=True, slots=True)
class Check:
    """One threshold's verdict."""

    name: str
    limit: str
    measured: str
    passed: bool
    detail: str = ""
    """What a person needs to act on a failure (which regressions, why unmeasured)."""

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "limit": self.limit, "measured": self.measured,
                "passed": self.passed, "detail": self.detail}


def _pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def gate(scores: Mapping[str, Any], thresholds: Thresholds) -> list[Check]:
    """One Check per set threshold; a metric the scores do not hold fails its threshold."""
    checks: list[Check] = []
    if thresholds.min_quality is not None:
        q = scores.get("quality") or {}
        value = q.get("candidate")
        limit = f">= {thresholds.min_quality:g}"
        if value is None:
            checks.append(Check("quality", limit, "not measured", False,
                                "no run could be scored" if q else "scores have no quality metric"))
        else:
            checks.append(Check("quality", limit, f"{value:.3f}", value >= thresholds.min_quality,
                                f"{q.get('runs', 0)} run(s) scored; baseline {q.get('baseline')}"))
    for name, limit_value in (("cost", thresholds.max_cost_delta),
                              ("latency", thresholds.max_latency_delta)):
        if limit_value is None:
            continue
        m = scores.get(name) or {}
        limit = f"<= {_pct(limit_value)}"
        delta = m.get("delta")
        unit = "usd" if name == "cost" else "ms"
        if not m:
            checks.append(Check(f"{name} delta", limit, "not measured", False,
                                f"scores have no {name} metric"))
        elif delta is None:
            checks.append(Check(f"{name} delta", limit, "unbounded", False,
                                f"baseline {name} is 0, candidate {m.get(f'candidate_{unit}')}"))
        else:
            checks.append(Check(f"{name} delta", limit, _pct(delta), delta <= limit_value,
                                f"baseline {m.get(f'baseline_{unit}')} {unit}, candidate "
                                f"{m.get(f'candidate_{unit}')} {unit} over {m.get('runs')} run(s)"))
    if thresholds.max_policy_regressions is not None:
        p = scores.get("policy")
        limit = f"<= {thresholds.max_policy_regressions}"
        if p is None:
            checks.append(Check("policy regressions", limit, "not measured", False,
                                "scores have no policy metric"))
        else:
            groups = p.get("groups", [])
            named = "; ".join(f"{g['count']} × {g['tool']} {g['baseline']} -> {g['candidate']} "
                              f"(e.g. run {g['example_run']} step {g['example_step']})"
                              for g in groups[:5])
            more = f"; and {len(groups) - 5} more kinds" if len(groups) > 5 else ""
            checks.append(Check("policy regressions", limit, str(p["regressions"]),
                                p["regressions"] <= thresholds.max_policy_regressions,
                                named + more))
    return checks
