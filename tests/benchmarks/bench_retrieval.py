"""Retrieval quality and speed of the memory store.

    .venv/bin/python -m tests.benchmarks.bench_retrieval [--memories 100000] [--searches 1000]

1. Quality: recall@1/5/10 of the hybrid ranking (`HybridIndex`) beside plain BM25 (`KeywordIndex`)
   on the labelled question-to-memory set (tests/benchmarks/retrieval_set.py), same memories,
   same questions, same run.
2. Speed, on chDB: `--memories` memories in one tenant (the labelled ones plus generated
   filler), imported through `MemoryStore.put` in batches of 10,000 (memories/s, redaction apart:
   Presidio's time per text is measured beside it), the first search (which builds the tenant's
   index), then `--searches` searches of the labelled questions: p50/p99 of `MemoryStore.search`
   (the store's freshness check included).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from processors.memory.records import MemoryRecord
from processors.memory.redaction import PresidioRedactor
from processors.memory.retrieval import HybridIndex, KeywordIndex
from sinks.memory_store import MemoryStore
from tests.benchmarks.retrieval_set import retrieval_set

_FILLER = ["customer", "order", "invoice", "deploy", "service", "team", "billing", "report", "alert",
           "backup", "migration", "region", "cluster", "ticket", "refund", "contract", "renewal",
           "discount", "latency", "release", "incident", "review", "budget", "quota", "schema", "index",
           "cache", "queue", "worker", "export", "import", "api", "gateway", "partner", "vendor"]


def quality(texts: dict[str, str], questions: list) -> dict[str, dict[int, float]]:
    ids, body = list(texts), list(texts.values())
    out: dict[str, dict[int, float]] = {}
    for name, index in (("plain BM25", KeywordIndex(body)), ("hybrid", HybridIndex(body))):
        got = [[ids[h.position] for h in index.search(q.query, k=10)] for q in questions]
        out[name] = {k: sum(q.relevant in g[:k] for q, g in zip(questions, got, strict=True)) / len(questions)
                     for k in (1, 5, 10)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--searches", type=int, default=1000)
    args = parser.parse_args()
    texts, questions = retrieval_set()
    print(f"quality: {len(texts)} memories, {len(questions)} questions")
    for name, r in quality(texts, questions).items():
        print(f"  {name:<11} recall@1 {r[1]:.3f}  @5 {r[5]:.3f}  @10 {r[10]:.3f}")

    rng = random.Random(1)
    now = datetime.now(UTC)
    later = now + timedelta(days=30)
    body = list(texts.values())
    body += [" ".join(rng.choices(_FILLER, k=rng.randint(6, 14))) + f" #{i}"
             for i in range(args.memories - len(body))]
    records = [MemoryRecord(tenant_id="bench", memory_id=f"m{i:07d}", text=t, subject="", created_at=now,
                            expires_at=later) for i, t in enumerate(body)]
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore.connect(url=None, chdb_path=f"{tmp}/memory")
        store.opt_in("bench", now=now)
        started = time.perf_counter()
        for i in range(0, len(records), 10_000):
            store.put("bench", records[i:i + 10_000])
        took = time.perf_counter() - started
        print(f"import: {len(records)} memories in {took:.2f} s = {len(records) / took:,.0f} memories/s "
              "(store only)")
        redactor = PresidioRedactor()
        sample = body[:500]
        started = time.perf_counter()
        for t in sample:
            redactor.redact(t)
        per = (time.perf_counter() - started) / len(sample)
        print(f"redaction: {per * 1000:.2f} ms a memory = {1 / per:,.0f} memories/s on one core")
        started = time.perf_counter()
        store.search("bench", questions[0].query, now=now)
        print(f"first search (loads the tenant's {len(records)} memories, builds its index): "
              f"{time.perf_counter() - started:.2f} s")
        times = []
        for i in range(args.searches):
            q = questions[i % len(questions)].query
            started = time.perf_counter()
            store.search("bench", q, k=10, now=now)
            times.append(time.perf_counter() - started)
        ms = np.array(times) * 1000
        print(f"search over {len(records)} memories: p50 {np.percentile(ms, 50):.2f} ms, "
              f"p99 {np.percentile(ms, 99):.2f} ms ({args.searches} searches)")
        store.close()


if __name__ == "__main__":
    main()
