"""`create_ticket`: the ticket store, a SQLite file where each idempotency key opens one ticket.

The key is UNIQUE in the table, so a retried call (after a crash, a timeout or a redelivered
command) finds the ticket the first attempt opened instead of opening a second one.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from processors.tools.backends.config import BackendConfig
from processors.tools.backends.errors import ToolError

__all__ = ["PRIORITIES", "count_tickets", "create_ticket", "format_ticket_id", "list_tickets"]

PRIORITIES = ("low", "normal", "high")
_BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    priority TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL
)
"""


def format_ticket_id(row_id: int) -> str:
    """The public ticket id of a row id, e.g. 123 -> "TCK-000123"."""
    return f"TCK-{row_id:06d}"


def create_ticket(
    input: dict[str, Any], cfg: BackendConfig, *, idempotency_key: str
) -> dict[str, Any]:
    """Open a ticket, or return the one this idempotency key already opened (`created` false).

    idempotency_key: identifies the logical call; retries must pass the same key.
    """
    if not isinstance(idempotency_key, str) or not idempotency_key:
        raise ToolError("create_ticket: an idempotency key is required")
    title = input.get("title")
    description = input.get("description")
    priority = input.get("priority", "normal")
    if not isinstance(title, str) or not title.strip():
        raise ToolError("create_ticket: 'title' must be a non-empty string")
    if not isinstance(description, str):
        raise ToolError("create_ticket: 'description' must be a string")
    if priority not in PRIORITIES:
        raise ToolError(f"create_ticket: 'priority' must be one of {', '.join(PRIORITIES)}")
    try:
        conn = _open(cfg.tickets_path, create=True)
    except (sqlite3.Error, OSError) as exc:
        raise ToolError(
            f"create_ticket: cannot open ticket store {cfg.tickets_path!r}: {exc}"
        ) from None
    try:
        # IMMEDIATE takes the write lock up front, so find-or-insert is one atomic step even
        # when two processes race with the same key. Looking first (rather than INSERT ... ON
        # CONFLICT) keeps ticket numbers gapless: a conflicting insert would burn an id.
        conn.execute("BEGIN IMMEDIATE")
        row = _find(conn, idempotency_key)
        created = row is None
        if row is None:
            conn.execute(
                "INSERT INTO tickets (idempotency_key, title, description, priority, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (idempotency_key, title, description, priority, _now()),
            )
            row = _find(conn, idempotency_key)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise ToolError(f"create_ticket: ticket store {cfg.tickets_path!r} failed: {exc}") from None
    finally:
        conn.close()
    assert row is not None  # found or just inserted, under the write lock
    row_id, status, stored_priority = row
    return {
        "ticket_id": format_ticket_id(row_id),
        "status": status,
        "priority": stored_priority,
        "created": created,
    }


def list_tickets(path: str) -> list[dict[str, Any]]:
    """Every ticket in the store at `path`, oldest first; empty when the store does not exist."""
    if not Path(path).is_file():
        return []
    conn = _open(path, create=False)
    try:
        rows = conn.execute(
            "SELECT id, idempotency_key, title, description, priority, status, created_at"
            " FROM tickets ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [
        {
            "ticket_id": format_ticket_id(r[0]),
            "idempotency_key": r[1],
            "title": r[2],
            "description": r[3],
            "priority": r[4],
            "status": r[5],
            "created_at": r[6],
        }
        for r in rows
    ]


def count_tickets(path: str) -> int:
    """How many tickets the store at `path` holds; 0 when it does not exist."""
    if not Path(path).is_file():
        return 0
    conn = _open(path, create=False)
    try:
        return int(conn.execute("SELECT count(*) FROM tickets").fetchone()[0])
    finally:
        conn.close()


def _find(conn: sqlite3.Connection, idempotency_key: str) -> tuple[int, str, str] | None:
    row = conn.execute(
        "SELECT id, status, priority FROM tickets WHERE idempotency_key = ?", (idempotency_key,)
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


def _open(path: str, *, create: bool) -> sqlite3.Connection:
    if create:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode: transactions are opened explicitly where they matter.
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        # WAL lets readers (the CLI, tests) look at the store while a ticket is being written.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
