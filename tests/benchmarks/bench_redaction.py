"""Redaction recall per entity type on the labelled set, Presidio's defaults beside the tuned
redactor, and precision (the share of redacted characters that were PII; plus the characters
redacted from sentences that hold none).

    .venv/bin/python -m tests.benchmarks.bench_redaction [--per-type 300] [--seed 7]

An entity counts as found when spans of its type cover at least 80 % of its characters; as
redacted (any type) when spans of any type cover that much (PII redacted under another name is
still gone from the text).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from processors.memory.redaction import PresidioRedactor
from tests.benchmarks.redaction_set import NEGATIVES, labelled_set


def measure(engine: PresidioRedactor, samples: list) -> dict:
    typed, anyhow, total = Counter(), Counter(), Counter()
    redacted = wrong = 0
    started = time.perf_counter()
    for s in samples:
        found = engine.find(s.text)
        total[s.type] += 1
        need = 0.8 * (s.end - s.start)
        overlap = [max(0, min(e.end, s.end) - max(e.start, s.start)) for e in found]
        typed[s.type] += sum(o for o, e in zip(overlap, found, strict=True) if e.type == s.type) >= need
        anyhow[s.type] += sum(overlap) >= need
        spans = sum(e.end - e.start for e in found)
        redacted += spans
        wrong += spans - sum(overlap)
    per_text = (time.perf_counter() - started) / len(samples) * 1000
    negatives = sum(e.end - e.start for t in NEGATIVES for e in engine.find(t))
    return {"typed": {t: typed[t] / total[t] for t in total}, "any": {t: anyhow[t] / total[t] for t in total},
            "precision": 1 - wrong / redacted if redacted else 1.0, "negatives": negatives, "ms": per_text,
            "n": dict(total)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-type", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    samples = labelled_set(per_type=args.per_type, seed=args.seed)
    before = measure(PresidioRedactor(tuned=False), samples)
    after = measure(PresidioRedactor(tuned=True), samples)
    print(f"{len(samples)} labelled sentences ({args.per_type} per type, seed {args.seed}); "
          f"{len(NEGATIVES)} sentences without PII ({sum(map(len, NEGATIVES))} characters)")
    print(f"{'entity':<15} {'default':>8} {'tuned':>8} {'tuned, any type':>16}")
    for t in before["typed"]:
        print(f"{t:<15} {before['typed'][t]:>8.3f} {after['typed'][t]:>8.3f} {after['any'][t]:>16.3f}")
    for name, r in (("default", before), ("tuned", after)):
        print(f"{name}: precision {r['precision']:.4f} (share of redacted characters that were PII), "
              f"{r['negatives']} characters redacted from the sentences without PII, "
              f"{r['ms']:.2f} ms a sentence")


if __name__ == "__main__":
    main()
