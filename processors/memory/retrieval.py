"""Ranking memories: BM25 (bm25s) over word stems and over character n-grams, fused.

Words alone miss a memory that says "deployment" to a question that asks "deploys", or
"on-call" to "oncall"; Snowball stems catch inflections, character n-grams inside words catch
compounds, hyphenation and typos. The two BM25 rankings are merged by reciprocal-rank fusion,
which needs no score calibration between them. `KeywordIndex` is plain BM25 over lowercased words
(bm25s' own tokenizer, English stop words), the baseline `tests/benchmarks/bench_retrieval.py`
measures against.

No I/O: an index is built from texts the store hands over, and queried in memory.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import bm25s  # type: ignore[import-untyped]
import numpy as np
import Stemmer  # type: ignore[import-not-found]

__all__ = ["RETRIEVER_VERSION", "Hit", "HybridIndex", "KeywordIndex", "MemoryIndex", "tokens"]

RETRIEVER_VERSION = "bm25s-hybrid-1"
"""Recorded in `MemoryRetrieved`: which ranking chose the memories."""

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_PLACEHOLDER = re.compile(r"<[A-Z_]+>")
_RRF_K = 60
_DEPTH = 1000
_STEM = Stemmer.Stemmer("english")
_STOP = frozenset(bm25s.stopwords.STOPWORDS_EN)


@dataclass(frozen=True)
class Hit:
    position: int
    """Index of the document in the sequence the index was built from."""
    score: float
    """Higher is better; comparable within one query only."""


def tokens(text: str) -> list[str]:
    """Stemmed words, stop words and redaction placeholders left out."""
    words = _WORD.findall(_PLACEHOLDER.sub(" ", text).lower())
    stems: list[str] = _STEM.stemWords([w for w in words if w not in _STOP])
    return stems


@functools.lru_cache(maxsize=200_000)
def _word_grams(word: str) -> tuple[str, ...]:
    padded = f"#{word}#"
    return tuple(padded[i:i + 4] for i in range(max(1, len(padded) - 3)))


def _grams(text: str) -> list[str]:
    out: list[str] = []
    for word in _WORD.findall(_PLACEHOLDER.sub(" ", text).lower()):
        if word not in _STOP:
            out.extend(_word_grams(word))
    return out


class _Bm25:
    def __init__(self, docs: Sequence[list[str]]) -> None:
        self._model: Any = bm25s.BM25()
        # bm25s refuses an empty corpus or an empty document; a placeholder token matches no query.
        self._model.index([d or ["\x00"] for d in docs] or [["\x00"]], show_progress=False)
        self._vocab: dict[str, int] = self._model.vocab_dict
        self._n = len(docs)

    def scores(self, query: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        known = [t for t in query if t in self._vocab]
        if not known or not self._n:
            return np.zeros(self._n, dtype=np.float32)
        return np.asarray(self._model.get_scores(known), dtype=np.float32)[: self._n]


class MemoryIndex:
    """What every index answers: the best `k` of the documents that `mask` allows."""

    def __len__(self) -> int:
        raise NotImplementedError

    def scores(self, query: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        raise NotImplementedError

    def search(self, query: str, *, k: int,
               mask: np.ndarray[Any, np.dtype[np.bool_]] | None = None) -> list[Hit]:
        """The `k` best documents with a positive score, best first; `mask` False excludes one."""
        scores = self.scores(query)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        if not len(scores):
            return []
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(int(i), float(scores[i])) for i in top if scores[i] > 0]


class KeywordIndex(MemoryIndex):
    """Plain BM25 over lowercased words: the baseline."""

    def __init__(self, texts: Sequence[str]) -> None:
        self._bm25 = _Bm25([[w for w in _WORD.findall(t.lower()) if w not in _STOP] for t in texts])
        self._n = len(texts)

    def __len__(self) -> int:
        return self._n

    def scores(self, query: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        return self._bm25.scores([w for w in _WORD.findall(query.lower()) if w not in _STOP])


class HybridIndex(MemoryIndex):
    """BM25 over word stems and over character 4-grams, fused by reciprocal rank."""

    def __init__(self, texts: Sequence[str]) -> None:
        self._words = _Bm25([tokens(t) for t in texts])
        self._grams = _Bm25([_grams(t) for t in texts])
        self._n = len(texts)

    def __len__(self) -> int:
        return self._n

    def scores(self, query: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        fused = np.zeros(self._n, dtype=np.float32)
        for scores in (self._words.scores(tokens(query)), self._grams.scores(_grams(query))):
            # Each ranking is fused to a depth of _DEPTH matching documents (past it 1/(k+rank) adds
            # next to nothing): a query over 100 k memories sorts a thousand, not all that match.
            hit = np.flatnonzero(scores > 0)
            if len(hit) > _DEPTH:
                hit = hit[np.argpartition(-scores[hit], _DEPTH - 1)[:_DEPTH]]
            order = hit[np.argsort(-scores[hit], kind="stable")]
            fused[order] += 1.0 / (_RRF_K + np.arange(1, len(order) + 1, dtype=np.float32))
        return fused
