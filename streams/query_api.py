"""Analytics queries across processes: chDB is owned by one process (the sink), which answers
the others over a small loopback HTTP endpoint; a ClickHouse server is queried directly.

The endpoint asks for the installation's query token (`<home>/query_token`, mode 600, made
once like the local API key): a process that cannot read the state directory cannot query.
Outside SQL runs on a read-only client of its own, so a refused write never changes the
session the sink inserts with.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from sinks.clickhouse import ClickHouseStore, QueryResult, StoredRun
from streams.loopback import LoopbackHandler, serve_loopback
from streams.settings import Settings

__all__ = ["serve_queries", "run_query", "run_insert", "stored_run", "waiting_approvals", "QueryError",
           "chdb_path", "clickhouse_password", "query_token"]

_MAX_BODY = 16 * 1024 * 1024
T = TypeVar("T")


class QueryError(RuntimeError):
    """The store refused the query (the message is ClickHouse's)."""


def query_token(settings: Settings) -> str:
    """The installation's query token, made the first time it is asked for."""
    path = settings.path("query_token")
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(secrets.token_urlsafe(32) + "\n")
    os.chmod(tmp, 0o600)
    try:
        os.link(tmp, path)  # the first writer wins; a racing second one reads the first's
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def serve_queries(store: ClickHouseStore, lock: threading.Lock, *, settings: Settings) -> ThreadingHTTPServer:
    """Start answering POST /query {"sql": …} (and /insert into the replay tables) on
    127.0.0.1:<query_port> in a background thread, for callers holding the query token."""
    token = query_token(settings).encode()
    readers: queue.SimpleQueue[ClickHouseStore] = queue.SimpleQueue()

    @contextmanager
    def reader() -> Iterator[ClickHouseStore]:
        """A read-only client of its own for each request at once: reads run side by side, and
        wait for the sink's insert only to learn up to where it has stored."""
        try:
            client = readers.get_nowait()
        except queue.Empty:
            client = store.reader()
        try:
            yield client
        finally:
            readers.put(client)

    def stored_through(topic: str) -> dict[int, int]:
        # Known after the sink's first insert or restore: no wait behind an insert in progress.
        known = store.known_through(topic)
        if known is not None:
            return known
        with lock:
            return store.through(topic)

    class Handler(LoopbackHandler):
        max_body = _MAX_BODY

        def do_POST(self) -> None:  # noqa: N802 - http.server names its hooks
            if not self.authorized():
                return
            try:
                body = self.json_body()
                if self.path == "/insert":
                    with lock:
                        store.insert_rows(str(body["table"]), body["rows"], columns=body["columns"],
                                          token=str(body["token"]))
                    self.send_json(200, {"inserted": len(body["rows"])})
                elif self.path == "/run":
                    topic = str(body["topic"])
                    through = stored_through(topic)
                    with reader() as rd:
                        run = rd.stored_run(topic, str(body["run_id"]), tenant_id=body.get("tenant_id"),
                                            through=through)
                    self.send_json(200, {"through": run.through, "rows": run.rows})
                elif self.path == "/approvals":
                    topic = str(body["topic"])
                    through = stored_through(topic)
                    with reader() as rd:
                        through, waiting = rd.waiting_approvals(topic, tenant_id=body.get("tenant_id"),
                                                                through=through)
                    self.send_json(200, {"through": through, "waiting": waiting})
                else:
                    with reader() as rd:
                        result = rd.query(str(body["sql"]), parameters=body.get("parameters"))
                    self.send_json(200, {"columns": result.columns, "rows": result.rows})
            except Exception as exc:  # noqa: BLE001 - the caller gets ClickHouse's own message
                self.send_json(400, {"error": str(exc)})

    Handler.token = token
    return serve_loopback(settings.query_port, Handler, name="query-api")


def chdb_path(settings: Settings) -> Path:
    return settings.path("clickhouse")


_connections = threading.local()


def _post(settings: Settings, path: str, body: dict[str, Any]) -> Any:
    """POST to the sink's endpoint on this thread's kept-alive connection (one new connection
    per request overflowed the server's accept queue under a burst of reads)."""
    data = json.dumps(body, default=str).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {query_token(settings)}"}
    for attempt in (1, 2):
        conn = getattr(_connections, "conn", None)
        if conn is None or conn.port != settings.query_port:
            conn = http.client.HTTPConnection("127.0.0.1", settings.query_port, timeout=60)
            _connections.conn = conn
        try:
            conn.request("POST", path, body=data, headers=headers)
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            break
        except (http.client.HTTPException, ConnectionError) as exc:
            conn.close()
            _connections.conn = None
            if attempt == 2:  # the sink closed a kept-alive connection, then did not answer a new one
                raise QueryError(f"the sink's query endpoint did not answer: {exc!r}") from None
    if resp.status != 200:
        raise QueryError(answer.get("error", f"HTTP {resp.status}"))
    return answer


def run_query(settings: Settings, sql: str, *, parameters: dict[str, Any] | None = None,
              sink_running: bool) -> QueryResult:
    """Query the store from any process: the server, the running sink, or chDB directly."""
    if settings.clickhouse_url:
        store = ClickHouseStore.connect(url=settings.clickhouse_url, password=clickhouse_password(settings))
        return _guarded(store.reader(), sql, parameters)
    if sink_running:
        body = _post(settings, "/query", {"sql": sql, "parameters": parameters})
        return QueryResult(body["columns"], body["rows"])
    store = ClickHouseStore.connect(url=None, chdb_path=str(chdb_path(settings)))
    try:
        return _guarded(store.reader(), sql, parameters)
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
    _post(settings, "/insert", {"table": table, "columns": columns, "rows": rows, "token": token})


def stored_run(settings: Settings, run_id: str, *, tenant_id: str | None, sink_running: bool) -> StoredRun:
    """What the store holds of one run and up to where (see `ClickHouseStore.stored_run`)."""
    topic = settings.events_topic
    if settings.clickhouse_url or not sink_running:
        return _with_store(settings, lambda s: s.stored_run(topic, run_id, tenant_id=tenant_id))
    body = _post(settings, "/run", {"topic": topic, "run_id": run_id, "tenant_id": tenant_id})
    return StoredRun({int(p): int(o) for p, o in body["through"].items()}, body["rows"])


def waiting_approvals(settings: Settings, *, tenant_id: str | None,
                      sink_running: bool) -> tuple[dict[int, int], list[dict[str, Any]]]:
    """Calls parked as the store holds them, and up to where (see `ClickHouseStore.waiting_approvals`)."""
    topic = settings.events_topic
    if settings.clickhouse_url or not sink_running:
        return _with_store(settings, lambda s: s.waiting_approvals(topic, tenant_id=tenant_id))
    body = _post(settings, "/approvals", {"topic": topic, "tenant_id": tenant_id})
    return {int(p): int(o) for p, o in body["through"].items()}, list(body["waiting"])


def _with_store(settings: Settings, read: Callable[[ClickHouseStore], T]) -> T:
    if settings.clickhouse_url:
        store = ClickHouseStore.connect(url=settings.clickhouse_url, password=clickhouse_password(settings))
    else:
        store = ClickHouseStore.connect(url=None, chdb_path=str(chdb_path(settings)))
    try:
        return read(store.reader())
    except Exception as exc:
        raise QueryError(str(exc)) from exc
    finally:
        store.close()


def _guarded(store: ClickHouseStore, sql: str, parameters: dict[str, Any] | None) -> QueryResult:
    try:
        return store.query(sql, parameters=parameters)
    except Exception as exc:
        raise QueryError(str(exc)) from exc


def clickhouse_password(settings: Settings) -> str | None:
    secret = settings.clickhouse_password
    return secret.get_secret_value() if secret else None
