"""What a person (and the response builder) should learn from a tool's outcome, in one line."""

from __future__ import annotations

import json
from typing import Any

from schemas.events import ToolExecuted

__all__ = ["summarize"]

_MAX = 600


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX else text[: _MAX - 1] + "…"


def _search_docs(out: dict[str, Any]) -> str:
    hits = out.get("hits") or []
    if not hits:
        return "No document matched the question."
    parts = [f"{h.get('doc')}: {h.get('passage', '')}" for h in hits[:2]]
    return f"{len(hits)} passage(s) found. " + " | ".join(parts)


def _query_sql(out: dict[str, Any]) -> str:
    cols, rows = out.get("columns") or [], out.get("rows") or []
    if not rows:
        return "The query returned no rows."
    if len(rows) == 1 and len(cols) == 1:
        return f"{cols[0]} = {rows[0][0]}"
    shown = "; ".join(", ".join(f"{c}={v}" for c, v in zip(cols, row, strict=False)) for row in rows[:5])
    more = f" (+{len(rows) - 5} more rows)" if len(rows) > 5 else ""
    return f"{out.get('row_count', len(rows))} row(s): {shown}{more}"


def _create_ticket(out: dict[str, Any]) -> str:
    verb = "opened" if out.get("created", True) else "already existed"
    return f"Ticket {out.get('ticket_id')} {verb} (priority {out.get('priority', 'normal')})."


def _send_email(out: dict[str, Any]) -> str:
    return f"E-mail sent to {', '.join(out.get('recipients') or [])}."


_SUMMARIES = {
    "search_docs": _search_docs, "query_sql": _query_sql,
    "create_ticket": _create_ticket, "send_email": _send_email,
}


def summarize(result: ToolExecuted) -> str:
    """A short, human-readable account of one execution."""
    if result.status == "timeout":
        return _clip(f"{result.tool} timed out after {result.duration_ms} ms.")
    if result.status != "ok":
        return _clip(f"{result.tool} failed: {result.error or 'unknown error'}")
    try:
        out = json.loads(result.output_json or "{}")
    except ValueError:
        return _clip(result.output_json or "")
    fn = _SUMMARIES.get(result.tool)
    if fn is None or not isinstance(out, dict):
        return _clip(json.dumps(out, sort_keys=True))
    return _clip(fn(out))
