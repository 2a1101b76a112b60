"""`query_sql`: one SQL statement against the business database, which is opened read-only.

Three layers keep the database unchanged whatever the statement says: the file is opened with
`mode=ro`, `PRAGMA query_only` is on, and an authorizer refuses ATTACH and PRAGMA assignments
(which could otherwise switch `query_only` off or open another file for writing).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

from processors.tools.backends.config import BackendConfig
from processors.tools.backends.errors import ToolError

__all__ = ["DEFAULT_SAMPLE_SQL", "MAX_ROWS", "create_sample_database", "query_sql"]

MAX_ROWS = 100
DEFAULT_SAMPLE_SQL = Path(__file__).resolve().parents[3] / "infra/sample/shop.sql"

_DENIED_ACTIONS = frozenset({sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH})
# Pragmas whose argument names a table or index rather than setting a value: schema discovery.
_INTROSPECTION_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)


def query_sql(input: dict[str, Any], cfg: BackendConfig) -> dict[str, Any]:
    """Columns and up to 100 rows of the statement's result; `row_count` counts rows returned."""
    sql = input.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise ToolError("query_sql: 'sql' must be a non-empty string")
    conn = _connect_read_only(cfg.sql_path)
    try:
        try:
            cursor = conn.execute(sql)
            fetched = cursor.fetchmany(MAX_ROWS + 1)
        except sqlite3.Error as exc:
            raise ToolError(_explain(exc)) from None
        columns = [d[0] for d in cursor.description] if cursor.description else []
    finally:
        conn.close()
    rows = [[_json_value(v) for v in row] for row in fetched[:MAX_ROWS]]
    return {
        "columns": columns,
        "rows": rows,
        "row_count": len(rows),
        "truncated": len(fetched) > MAX_ROWS,
    }


def _connect_read_only(path: str) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise ToolError(f"query_sql: database {path!r} does not exist")
    # pathname2url quotes '?', '#' and '%' that would otherwise end the file name in the URI.
    uri = f"file:{pathname2url(str(Path(path).resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        raise ToolError(f"query_sql: cannot open database {path!r}: {exc}") from None
    conn.set_authorizer(_authorize)
    return conn


def _authorize(
    action: int, arg1: str | None, arg2: str | None, db: str | None, src: str | None
) -> int:
    if action in _DENIED_ACTIONS:
        return sqlite3.SQLITE_DENY
    # Reading a pragma (arg2 is None) is harmless; setting one is not.
    if (
        action == sqlite3.SQLITE_PRAGMA
        and arg2 is not None
        and (arg1 or "").lower() not in _INTROSPECTION_PRAGMAS
    ):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _explain(exc: sqlite3.Error) -> str:
    message = str(exc)
    lowered = message.lower()
    if any(
        m in lowered for m in ("readonly", "read-only", "not authorized", "authorization denied")
    ):
        return (
            "query_sql: the database is read-only; only SELECT-style statements are allowed"
            f" (sqlite said: {message})"
        )
    if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in lowered:
        return "query_sql: send exactly one SQL statement per call"
    return f"query_sql: {type(exc).__name__}: {message}"


def _json_value(value: Any) -> Any:
    # BLOBs are the one SQLite type JSON cannot carry.
    if isinstance(value, bytes):
        return value.hex()
    return value


def create_sample_database(path: str, sql_file: str | Path = DEFAULT_SAMPLE_SQL) -> None:
    """Create the sample business database at `path` from `sql_file`, unless `path` exists."""
    target = Path(path)
    if target.exists():
        return
    script = Path(sql_file).read_text(encoding="utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so nobody ever opens a half-filled database.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp_name)
        try:
            conn.executescript(script)
            conn.commit()
        finally:
            conn.close()
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
