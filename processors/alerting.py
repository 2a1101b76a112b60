"""Alert decisions, pure: what an event adds to its scopes' windows, whether a rule's condition
holds for a window's counts, and whether that raises or resolves an alert.

The alerting processor (streams/services/alerting.py) keeps the counts in windowed tables and
calls these; time arrives as data (the events' own times), so the same log gives the same
alerts, and an alert's id comes from (rule, scope, window) alone: a duplicate is the same alert.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from policies.alert_rules import CostRiseRule, ViolationRateRule
from schemas.alerts import Alert, AlertRaised, AlertResolved, GateVerdict, alert_id
from schemas.events import SPOILER_TYPES, TERMINAL_TYPES, VIOLATION_TYPES, Event, RunStarted

__all__ = ["Counts", "Fact", "RunTrack", "Verdict", "Track", "run_facts", "violation_verdict",
           "cost_verdict", "gate_verdict", "decide", "window_of"]


@dataclass(frozen=True, slots=True)
class Counts:
    """What a scope's runs did in one window."""

    runs: int = 0
    """Runs started."""
    violations: int = 0
    """ToolRejected and ApprovalRequested events."""
    ended: int = 0
    """Runs ended (RunCompleted, RunFailed, RunCancelled)."""
    successes: int = 0
    """Runs ended in RunCompleted with none of SPOILER_TYPES in them."""
    cost_usd: float = 0.0
    """What the ended runs cost, all of them."""

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.runs + other.runs, self.violations + other.violations, self.ended + other.ended,
                      self.successes + other.successes, round(self.cost_usd + other.cost_usd, 9))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> Counts:
        return cls(**doc) if doc else cls()


@dataclass(frozen=True, slots=True)
class Fact:
    """An addition to one scope's counts at one time (seconds since the epoch)."""

    scope: str
    at: float
    counts: Counts


@dataclass(frozen=True, slots=True)
class RunTrack:
    """What the processor remembers of a live run: its scopes, and whether its success is spoiled."""

    tenant: str
    route: str | None
    spoiled: bool = False

    def scopes(self) -> list[str]:
        return [f"tenant:{self.tenant}", *([f"route:{self.route}"] if self.route is not None else [])]


def run_facts(event: Event, track: RunTrack | None) -> tuple[RunTrack | None, list[Fact]]:
    """The run's track after `event` (None once it ended) and what `event` adds to its scopes."""
    at = event.event_time.timestamp()
    if track is None:
        # A run whose start this processor never saw still belongs to its tenant.
        route = event.payload.route if isinstance(event.payload, RunStarted) else None
        track = RunTrack(tenant=event.tenant_id, route=route)
    kind = event.event_type
    add = Counts()
    if kind == "RunStarted":
        add = Counts(runs=1)
    elif kind in VIOLATION_TYPES:
        add = Counts(violations=1)
    if kind in SPOILER_TYPES:
        track = replace(track, spoiled=True)
    if kind in TERMINAL_TYPES:
        cost = float(getattr(event.payload, "cost_usd", 0.0) or 0.0)
        success = kind == "RunCompleted" and not track.spoiled
        end = add + Counts(ended=1, successes=int(success), cost_usd=cost)
        return None, [Fact(s, at, end) for s in track.scopes()]
    if add == Counts():
        return track, []
    return track, [Fact(s, at, add) for s in track.scopes()]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's condition on one window: holds (True), does not (False), or cannot be judged
    yet (None: too few runs)."""

    breach: bool | None
    value: float | None = None
    threshold: float | None = None
    baseline: float | None = None
    runs: int = 0
    summary: str = ""


def _rate(c: Counts) -> float:
    return 100.0 * c.violations / c.runs if c.runs else 0.0


def violation_verdict(rule: ViolationRateRule, *, current: Counts, baseline: Counts) -> Verdict:
    """Violations per 100 runs in the current window against `factor` × the baseline's rate."""
    if current.runs < rule.min_runs or baseline.runs < rule.min_baseline_runs:
        return Verdict(None, runs=current.runs)
    rate, base = _rate(current), _rate(baseline)
    threshold = rule.factor * base
    # A baseline without violations would make any violation a page: the threshold is at least
    # one violation per window's runs, times the factor.
    threshold = max(threshold, rule.factor * 100.0 / max(current.runs, 1))
    breach = rate > threshold
    return Verdict(breach, round(rate, 3), round(threshold, 3), round(base, 3), current.runs,
                   f"{rate:.1f} violations per 100 runs ({current.violations} in {current.runs} runs), "
                   f"{'above' if breach else 'within'} {rule.factor:g}× the baseline {base:.1f}")


def cost_verdict(rule: CostRiseRule, *, current: Counts, previous: Counts) -> Verdict:
    """Cost per successful run in the current window against the previous window's, plus `rise`.
    A window without a successful run has no cost per success and is not judged."""
    if (current.ended < rule.min_runs or previous.ended < rule.min_runs
            or not current.successes or not previous.successes):
        return Verdict(None, runs=current.ended)
    value, before = current.cost_usd / current.successes, previous.cost_usd / previous.successes
    threshold = before * (1 + rule.rise)
    breach = value > threshold and value > 0
    change = f"{(value / before - 1) * 100:+.0f} %" if before else "from nothing"
    return Verdict(breach, round(value, 9), round(threshold, 9), round(before, 9), current.ended,
                   f"cost per successful run ${value:.6f} ({change} on the previous window's "
                   f"${before:.6f}; {current.successes} of {current.ended} runs succeeded)")


def gate_verdict(verdict: GateVerdict) -> Verdict:
    failed = "; ".join(verdict.failed_checks) or "failed"
    return Verdict(not verdict.passed, summary=(f"replay gate of candidate {verdict.candidate} "
                                                f"{'passed' if verdict.passed else 'failed: ' + failed}"))


def window_of(at: float, size_s: float) -> tuple[datetime, datetime]:
    """The tumbling window of `size_s` seconds that holds `at` (aligned on the epoch, as Faust's)."""
    start = at - (at % size_s)
    return (datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + size_s, UTC))


@dataclass(frozen=True, slots=True)
class Track:
    """A rule's alert state in one scope."""

    firing: bool = False
    alert_id: str = ""
    window_start: float = 0.0
    window_end: float = 0.0
    last_raised: float | None = None
    """Start of the window the latest alert was raised for: one alert per window at most."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> Track:
        return cls(**doc) if doc else cls()


def decide(*, rule: str, severity: str, scope: str, track: Track, verdict: Verdict,
           window: tuple[datetime, datetime], at: datetime) -> tuple[Track, Alert | None]:
    """Raise when the condition starts to hold, resolve when it stops; nothing otherwise.

    A condition that holds again in the window that raised the alert (it resolved meanwhile) is
    the same (rule, scope, window), the same alert: it is not raised twice.
    """
    start, end = window
    if verdict.breach is True and not track.firing:
        if track.last_raised == start.timestamp():
            return track, None
        aid = alert_id(rule, scope, start)
        alert = Alert(alert_id=aid, rule=rule, severity=severity, scope=scope, window_start=start,
                      window_end=end, at=at, summary=verdict.summary,
                      body=AlertRaised(value=verdict.value, threshold=verdict.threshold,
                                       baseline=verdict.baseline, runs=verdict.runs))
        return Track(True, aid, start.timestamp(), end.timestamp(), start.timestamp()), alert
    if verdict.breach is False and track.firing:
        alert = Alert(alert_id=track.alert_id, rule=rule, severity=severity, scope=scope,
                      window_start=datetime.fromtimestamp(track.window_start, UTC),
                      window_end=datetime.fromtimestamp(track.window_end, UTC), at=at,
                      summary=f"resolved: {verdict.summary}",
                      body=AlertResolved(value=verdict.value, resolved_window_start=start))
        return replace(track, firing=False), alert
    return track, None
