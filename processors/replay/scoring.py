"""Scores of a counterfactual replay: quality, cost, latency and policy, candidate against
baseline.

Quality comes from pluggable scorers, each a function of one side of a run's result (its
summary) and the result, returning a score in [0, 1] or None when it has nothing to judge:

- `reference`: the dataset's reference answer — the share of its `must_contain` phrases in the
  answer, or else word overlap (F1) with its `answer`;
- `criteria`: the plan's success criteria — the share of the steps that ran whose observation
  says they did what they were for. Steps the policy or a person stopped are left out: whether
  a call should be allowed is the policy metric's question, not quality's;
- `model`: a model's grade of the answer against the request, the reference and the criteria,
  through a `Grader` (an OpenAI-compatible adapter lives in `model_grader.py`).

A run's quality is the mean of the scores its scorers gave. A candidate run that stopped at a
question the recording could not answer is not scored (it has no answer to judge); the scores
say how many runs each figure rests on.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["METRICS", "Grader", "Scorer", "SCORERS", "reference_score", "criteria_score",
           "model_scorer", "score_results", "policy_regressions"]

METRICS = ("quality", "cost", "latency", "policy")
"""What `score` can measure."""

_RANK = {"allow": 0, "require_human_approval": 1, "deny": 2}
_WORD = re.compile(r"\w+")

Scorer = Callable[[Mapping[str, Any], Mapping[str, Any]], "float | None"]
"""(one side's summary, the whole result) -> a score in [0, 1], or None."""


class Grader(Protocol):
    """A model that grades an answer; raises on failure (the run is then left unscored)."""

    def grade(self, *, request: str, answer: str, reference: str | None,
              criteria: Sequence[str]) -> float: ...


def reference_score(side: Mapping[str, Any], result: Mapping[str, Any]) -> float | None:
    ref = result.get("reference")
    answer = side.get("answer")
    if not ref or answer is None:
        return None
    phrases = ref.get("must_contain") or []
    if phrases:
        text = answer.lower()
        return sum(p.lower() in text for p in phrases) / len(phrases)
    if ref.get("answer"):
        return _f1(_WORD.findall(answer.lower()), _WORD.findall(ref["answer"].lower()))
    return None


def criteria_score(side: Mapping[str, Any], result: Mapping[str, Any]) -> float | None:
    if side.get("answer") is None:
        return None  # it never finished: nothing to judge
    plan = side.get("plan")
    if plan is None:
        return None
    if "errors" in plan:
        return 0.0  # a rejected plan meets no criterion
    stopped = {d["step_id"] for d in side.get("decisions", [])
               if d["action"] == "deny" or d.get("person") in ("denied", "expired")}
    judged = [s for s in plan.get("steps", []) if s["id"] not in stopped]
    if not judged:
        return None
    return float(sum(s.get("status") == "ok" for s in judged) / len(judged))


def model_scorer(grader: Grader) -> Scorer:
    """A scorer asking `grader`; a failed call leaves the run unscored by it."""

    def score(side: Mapping[str, Any], result: Mapping[str, Any]) -> float | None:
        if side.get("answer") is None:
            return None
        ref = result.get("reference") or {}
        criteria = [s["success_criteria"] for s in ((side.get("plan") or {}).get("steps") or [])]
        try:
            grade = grader.grade(request=result.get("text", ""), answer=side["answer"],
                                 reference=ref.get("answer"), criteria=criteria)
        except Exception:  # noqa: BLE001 - one failed grading must not lose the others
            return None
        return min(1.0, max(0.0, float(grade)))

    return score


SCORERS: dict[str, Scorer] = {"reference": reference_score, "criteria": criteria_score}
"""The scorers that need no model, by name."""


def _f1(got: list[str], want: list[str]) -> float:
    if not got or not want:
        return 0.0
    common = 0
    pool: dict[str, int] = {}
    for w in want:
        pool[w] = pool.get(w, 0) + 1
    for w in got:
        if pool.get(w, 0) > 0:
            pool[w] -= 1
            common += 1
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def policy_regressions(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's calls the candidate decides more loosely than the baseline (a denied or held
    call it lets through, a denied one it only holds), and the denials new with the candidate
    (a call the baseline never made, now proposed and denied)."""
    found = []
    for call in result.get("policy_calls", []):
        base, cand = call["baseline"], call["candidate"]
        kind = None
        if _RANK[cand["action"]] < _RANK[base["action"]]:
            kind = "loosened"
        elif base["source"] == "policy" and cand["action"] == "deny":
            kind = "new_violation"
        if kind:
            found.append({"kind": kind, "run_id": result["run_id"], "tenant_id": result.get("tenant_id"),
                          "step_id": call["step_id"], "tool": call["tool"],
                          "input_json": call["input_json"],
                          "baseline": f"{base['action']} ({base['rule'] or 'no rule'})",
                          "candidate": f"{cand['action']} ({cand['rule'] or 'no rule'})"})
    return found


def _grouped(regressions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Regressions by kind, tool and the two decisions, most frequent first, each with a run
    that shows it."""
    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for r in regressions:
        key = (r["kind"], r["tool"], r["baseline"], r["candidate"])
        g = groups.setdefault(key, {"kind": r["kind"], "tool": r["tool"], "baseline": r["baseline"],
                                    "candidate": r["candidate"], "count": 0,
                                    "example_run": r["run_id"], "example_step": r["step_id"]})
        g["count"] += 1
    return sorted(groups.values(), key=lambda g: (-g["count"], g["tool"], g["baseline"]))


def _delta(base: float, cand: float) -> float | None:
    if base == 0:
        return 0.0 if cand == 0 else None  # None: no finite relative change
    return round((cand - base) / base, 6)


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 6) if values else None


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def score_results(results: Iterable[Mapping[str, Any]], *, metrics: Sequence[str] = METRICS,
                  scorers: Mapping[str, Scorer] | None = None) -> dict[str, Any]:
    """Scores of one candidate's results (`replay_run` outputs)."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)} (known: {', '.join(METRICS)})")
    use = dict(SCORERS if scorers is None else scorers)
    per_run: list[dict[str, Any]] = []
    quality: dict[str, dict[str, list[float]]] = {n: {"baseline": [], "candidate": []} for n in use}
    run_quality: dict[str, list[float]] = {"baseline": [], "candidate": []}
    costs: list[tuple[float, float]] = []
    latencies: list[tuple[float, float]] = []
    regressions: list[dict[str, Any]] = []
    names: set[str] = set()
    calls = diverged = unanswered = 0
    for r in results:
        names.add(r.get("candidate_name", ""))
        row: dict[str, Any] = {"run_id": r["run_id"], "diverged": r.get("divergence") is not None,
                               "unanswered": r.get("unanswered")}
        diverged += row["diverged"]
        answered = r.get("unanswered") is None
        unanswered += not answered
        if "quality" in metrics:
            for side in ("baseline", "candidate"):
                got = {n: s for n, fn in use.items() if (s := fn(r[side], r)) is not None}
                for n, s in got.items():
                    quality[n][side].append(s)
                q = _mean(got.values())
                row[f"{side}_quality"] = q
                if q is not None:
                    run_quality[side].append(q)
        base, cand = r["baseline"], r["candidate"]
        if answered:
            costs.append((base["cost_usd"], cand["cost_usd"]))
            latencies.append((base["latency_ms"], cand["latency_ms"]))
            row.update(cost_delta_usd=round(cand["cost_usd"] - base["cost_usd"], 9),
                       latency_delta_ms=cand["latency_ms"] - base["latency_ms"])
        calls += len(r.get("policy_calls", []))
        found = policy_regressions(r)
        regressions.extend(found)
        row["policy_regressions"] = len(found)
        per_run.append(row)
    out: dict[str, Any] = {"format": "agentlog.scores/1", "candidate": ", ".join(sorted(names)),
                           "runs": len(per_run), "metrics": list(metrics),
                           "divergence": {"runs": diverged, "unanswered": unanswered}}
    if "quality" in metrics:
        cand_q, base_q = _mean(run_quality["candidate"]), _mean(run_quality["baseline"])
        out["quality"] = {
            "candidate": cand_q, "baseline": base_q,
            "delta": round(cand_q - base_q, 6) if cand_q is not None and base_q is not None else None,
            "runs": len(run_quality["candidate"]),
            "scorers": {n: {"candidate": _mean(v["candidate"]), "baseline": _mean(v["baseline"]),
                            "runs": len(v["candidate"])} for n, v in quality.items()},
        }
    if "cost" in metrics:
        b, c = sum(x for x, _ in costs), sum(y for _, y in costs)
        out["cost"] = {"baseline_usd": round(b, 9), "candidate_usd": round(c, 9),
                       "delta": _delta(b, c), "runs": len(costs)}
    if "latency" in metrics:
        bl, cl = [x for x, _ in latencies], [y for _, y in latencies]
        out["latency"] = {"baseline_ms": sum(bl), "candidate_ms": sum(cl),
                          "delta": _delta(sum(bl), sum(cl)), "runs": len(latencies),
                          "baseline_p50_ms": _pct(bl, 0.5), "candidate_p50_ms": _pct(cl, 0.5),
                          "baseline_p95_ms": _pct(bl, 0.95), "candidate_p95_ms": _pct(cl, 0.95)}
    if "policy" in metrics:
        out["policy"] = {"regressions": len(regressions), "calls": calls,
                         "loosened": sum(x["kind"] == "loosened" for x in regressions),
                         "new_violations": sum(x["kind"] == "new_violation" for x in regressions),
                         "groups": _grouped(regressions), "found": regressions}
    out["per_run"] = per_run
    return out
