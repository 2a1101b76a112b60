"""Analytics queries across processes: chDB is owned by one process (the sink), which answers
the others over a small loopback HTTP endpoint; a ClickHouse server is queried directly."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib import error, request

from sinks.clickhouse import ClickHouseStore, QueryResult
from streams.settings import Settings

__all__ = ["serve_queries", "run_query", "run_insert", "QueryError", "chdb_path", "clickhouse_password"]


class QueryError(RuntimeError):
    """The store refused the query (the message is ClickHouse's)."""


def serve_queries(store: ClickHouseStore, lock: threading.Lock, *, port: int) -> ThreadingHTTPServer:
    """Start answering POST /query {"sql": …} on 127.0.0.1:`port` in a background thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path == "/insert":
                    with lock:
                        store.insert_rows(str(body["table"]), body["rows"], columns=body["columns"],
                                          token=str(body["token"]))
                    self._send(200, {"inserted": len(body["rows"])})
                    return
                with lock:
                    result = store.query(str(body["sql"]), parameters=body.get("parameters"))
                self._send(200, {"columns": result.columns, "rows": result.rows})
            except Exception as exc:  # the caller gets ClickHouse's own message
                self._send(400, {"error": str(exc)})

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="query-api").start()
    return server


def chdb_path(settings: Settings) -> Path:
    return settings.path("clickhouse")


def run_query(settings: Settings, sql: str, *, parameters: dict[str, Any] | None = None,
              sink_running: bool) -> QueryResult:
    """Query the store from any process: the server, the running sink, or chDB directly."""
    if settings.clickhouse_url:
        store = ClickHouseStore.connect(url=settings.clickhouse_url, password=clickhouse_password(settings))
        return _guarded(store, sql, parameters)
    if sink_running:
        req = request.Request(
            f"http://127.0.0.1:{settings.query_port}/query",
            data=json.dumps({"sql": sql, "parameters": parameters}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with request.urlopen(req, timeout=60) as resp:
                body = json.loads(resp.read())
        except error.HTTPError as exc:
            raise QueryError(json.loads(exc.read()).get("error", str(exc))) from None
        return QueryResult(body["columns"], body["rows"])
    store = ClickHouseStore.connect(url=None, chdb_path=str(chdb_path(settings)))
    try:
        return _guarded(store, sql, parameters)
    finally:
        store.close()


def run_insert(settings: Settings, table: str, columns: list[str], rows: list[list[Any]], *,
               token: str, sink_running: bool) -> None:
    """Insert rows into a replay table from any process (see `REPLAY_TABLES`); `token` makes a
    retried insert a no-op."""
    if settings.clickhouse_url or not sink_running:
        store = (ClickHouseStore.connect(url=settings.clickhouse_url,
                                         password=clickhouse_password(settings))
                 if settings.clickhouse_url
                 else ClickHouseStore.connect(url=None, chdb_path=str(chdb_path(settings))))
        try:
            store.insert_rows(table, rows, columns=columns, token=token)
        except Exception as exc:
            raise QueryError(str(exc)) from exc
        finally:
            store.close()
        return
    req = request.Request(
        f"http://127.0.0.1:{settings.query_port}/insert",
        data=json.dumps({"table": table, "columns": columns, "rows": rows, "token": token},
                        default=str).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with request.urlopen(req, timeout=60):
            pass
    except error.HTTPError as exc:
        raise QueryError(json.loads(exc.read()).get("error", str(exc))) from None


def _guarded(store: ClickHouseStore, sql: str, parameters: dict[str, Any] | None) -> QueryResult:
    try:
        return store.query(sql, parameters=parameters)
    except Exception as exc:
        raise QueryError(str(exc)) from exc


def clickhouse_password(settings: Settings) -> str | None:
    secret = settings.clickhouse_password
    return secret.get_secret_value() if secret else None
