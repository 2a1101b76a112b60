"""`search_docs`: full-text search over a folder of markdown/text documents (SQLite FTS5).

The folder is indexed into an in-memory FTS5 table the first time it is searched and again only
when a file is added, removed or modified, so repeated searches in one process cost a query.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processors.tools.backends.config import BackendConfig
from processors.tools.backends.errors import ToolError

__all__ = ["Passage", "search_docs", "split_passages"]

_SUFFIXES = frozenset({".md", ".markdown", ".txt"})
_MAX_PASSAGE = 500
_DEFAULT_TOP_K = 3
_MAX_TOP_K = 20
_MAX_TERMS = 32  # a pasted page as query must not cost a query per word
_CANDIDATES = 200  # passages re-ranked by query coverage; more than any top_k needs
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_STOP_WORDS = frozenset(
    """a about above after again all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further get got
    had has have having he her here hers him his how i if in into is it its itself just let me
    more most my no nor not of off on once only or other our ours out over own please same she
    should so some such than that the their theirs them then there these they this those through
    to too under until up very was we were what when where which while who whom why will with
    would you your yours s t d ll m re ve""".split()  # noqa: SIM905 - a paragraph reads better than 130 quoted words
)


@dataclass(frozen=True)
class Passage:
    """One searchable piece of a document."""

    section: str
    """Heading the passage sits under ("" before the first heading)."""
    text: str
    """The passage itself, at most 500 characters."""


@dataclass
class _Index:
    key: tuple[tuple[str, int, int], ...]
    conn: sqlite3.Connection
    lock: threading.Lock


# One index per folder; replaced (not accumulated) when the folder changes.
_INDEXES: dict[str, _Index] = {}
_INDEXES_LOCK = threading.Lock()


def search_docs(input: dict[str, Any], cfg: BackendConfig) -> dict[str, Any]:
    """Best passages for a plain-language query, ranked by bm25 (higher `score` is better)."""
    query = input.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ToolError("search_docs: 'query' must be a non-empty string")
    top_k = input.get("top_k", _DEFAULT_TOP_K)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= _MAX_TOP_K:
        raise ToolError(f"search_docs: 'top_k' must be an integer from 1 to {_MAX_TOP_K}")
    terms = _query_terms(query)
    if not terms:
        return {"hits": [], "total": 0}
    match = " OR ".join(terms)
    index = _index_for(cfg.docs_dir)
    with index.lock:
        total = index.conn.execute(
            "SELECT count(*) FROM passages WHERE passages MATCH ?", (match,)
        ).fetchone()[0]
        # Column weights: a word in a heading says more about a passage than one in its body.
        candidates = index.conn.execute(
            "SELECT rowid, doc, title, section, body, bm25(passages, 0.0, 2.0, 3.0, 1.0) AS rank"
            " FROM passages WHERE passages MATCH ? ORDER BY rank LIMIT ?",
            (match, _CANDIDATES),
        ).fetchall()
        coverage = _coverage(index.conn, terms, [c[0] for c in candidates])
    # bm25 alone lets one rare word (say "many") outrank a passage holding most of the query;
    # scaling by the share of query terms present favours the latter, as a reader would.
    scored = sorted(
        (
            (-rank * coverage.get(rowid, 0) / len(terms), doc, title, section, body)
            for rowid, doc, title, section, body, rank in candidates
        ),
        key=lambda hit: -hit[0],
    )
    hits = [
        {"doc": doc, "title": title, "section": section, "passage": body, "score": round(score, 4)}
        for score, doc, title, section, body in scored[:top_k]
    ]
    return {"hits": hits, "total": int(total)}


def _query_terms(query: str) -> list[str]:
    """The query's words as quoted FTS5 strings, so user text is never parsed as syntax."""
    words = [w.lower() for w in _WORD.findall(query)]
    terms = [w for w in words if w not in _STOP_WORDS] or words
    unique = list(dict.fromkeys(terms))[:_MAX_TERMS]
    return ['"' + t.replace('"', '""') + '"' for t in unique]


def _coverage(conn: sqlite3.Connection, terms: list[str], rowids: list[int]) -> dict[int, int]:
    """How many of the query terms each candidate passage contains."""
    counts: dict[int, int] = dict.fromkeys(rowids, 0)
    if not rowids:
        return counts
    placeholders = ",".join("?" * len(rowids))
    for term in terms:
        for (rowid,) in conn.execute(
            f"SELECT rowid FROM passages WHERE passages MATCH ? AND rowid IN ({placeholders})",
            (term, *rowids),
        ):
            counts[rowid] += 1
    return counts


def _index_for(docs_dir: str) -> _Index:
    root = Path(docs_dir)
    if not root.is_dir():
        raise ToolError(f"search_docs: documents folder {docs_dir!r} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file())
    stats = [(p, p.stat()) for p in files]
    key = tuple((str(p.relative_to(root)), st.st_mtime_ns, st.st_size) for p, st in stats)
    cache_key = str(root.resolve())
    with _INDEXES_LOCK:
        cached = _INDEXES.get(cache_key)
        if cached is not None and cached.key == key:
            return cached
        # A replaced index is not closed here: a concurrent search may still hold it; garbage
        # collection closes its connection once nobody does.
        fresh = _Index(key=key, conn=_build(root, files), lock=threading.Lock())
        _INDEXES[cache_key] = fresh
    return fresh


def _build(root: Path, files: list[Path]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    # Porter stemming lets "refunds" find "refund" and "days" find "day".
    conn.execute(
        "CREATE VIRTUAL TABLE passages USING fts5("
        "doc UNINDEXED, title, section, body, tokenize='porter unicode61')"
    )
    rows: list[tuple[str, str, str, str]] = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        title = _title(text) or path.stem
        doc = str(path.relative_to(root))
        rows.extend((doc, title, p.section, p.text) for p in split_passages(text))
    conn.executemany("INSERT INTO passages (doc, title, section, body) VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    return conn


def _title(text: str) -> str | None:
    for line in text.splitlines():
        m = _HEADING.match(line)
        if m:
            return m.group(2)
    return None


def split_passages(text: str) -> list[Passage]:
    """Paragraphs of a document with the heading they sit under, each at most 500 characters."""
    passages: list[Passage] = []
    section = ""
    block: list[str] = []

    def flush() -> None:
        paragraph = " ".join(line.strip() for line in block).strip()
        block.clear()
        passages.extend(Passage(section=section, text=chunk) for chunk in _chunks(paragraph))

    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            flush()
            section = heading.group(2)
        elif line.strip():
            block.append(line)
        else:
            flush()
    flush()
    return passages


def _chunks(paragraph: str) -> list[str]:
    """Cut a long paragraph at sentence ends so that no passage exceeds the limit."""
    if len(paragraph) <= _MAX_PASSAGE:
        return [paragraph] if paragraph else []
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        candidate = f"{current} {sentence}".strip()
        if len(candidate) <= _MAX_PASSAGE:
            current = candidate
            continue
        if current:
            chunks.append(current)
        # A single sentence longer than the limit is cut hard; rare in prose.
        rest = sentence
        while len(rest) > _MAX_PASSAGE:
            chunks.append(rest[:_MAX_PASSAGE])
            rest = rest[_MAX_PASSAGE:]
        current = rest
    if current:
        chunks.append(current)
    return chunks
