"""Ranking memories: the hybrid BM25 beats plain BM25 on the labelled set, and a mask excludes."""

from __future__ import annotations

import numpy as np

from processors.memory.retrieval import HybridIndex, KeywordIndex
from tests.benchmarks.retrieval_set import retrieval_set


def recall_at(index, ids, questions, k: int) -> float:
    return sum(q.relevant in [ids[h.position] for h in index.search(q.query, k=k)]
               for q in questions) / len(questions)


def test_hybrid_beats_plain_bm25_by_ten_points_at_k10():
    texts, questions = retrieval_set(memories=1000, questions=200, seed=5)
    ids, body = list(texts), list(texts.values())
    hybrid, plain = HybridIndex(body), KeywordIndex(body)
    assert recall_at(hybrid, ids, questions, 10) >= recall_at(plain, ids, questions, 10) + 0.10
    assert recall_at(hybrid, ids, questions, 1) > recall_at(plain, ids, questions, 1)


def test_inflections_and_joined_names_match():
    index = HybridIndex(["The payments team deploys billing-api every Friday.",
                         "Invoices for Acme are issued in euros.", "Our project code is ORION-7."])
    assert index.search("when are deployments of billingapi?", k=1)[0].position == 0
    assert index.search("What is our project code?", k=1)[0].position == 2


def test_a_mask_excludes_and_nothing_unrelated_is_returned():
    index = HybridIndex(["alpha release notes", "alpha pricing", "gamma"])
    hits = index.search("alpha", k=3, mask=np.array([False, True, True]))
    assert [h.position for h in hits] == [1]
    assert index.search("zzz qqq", k=3) == []
    assert HybridIndex([]).search("anything", k=5) == []


def test_redaction_placeholders_do_not_match_each_other():
    index = HybridIndex(["mail <EMAIL_ADDRESS> about the outage", "the roadmap"])
    assert index.search("<EMAIL_ADDRESS>", k=2) == []
