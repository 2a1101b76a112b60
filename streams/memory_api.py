"""The memory service's loopback endpoint: the process that owns the local memory store answers
the others' operations (`POST /<operation>`, JSON; `GET /healthz`), for callers holding the
installation's query token (as the sink's query endpoint asks)."""

from __future__ import annotations

import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from streams.memory_ops import LocalMemory, MemoryRefused, MemorySettings
from streams.query_api import query_token
from streams.settings import Settings

__all__ = ["serve_memory"]

_MAX_BODY = 64 * 1024 * 1024


def serve_memory(ops: LocalMemory, lock: threading.Lock, *, settings: Settings,
                 memory: MemorySettings) -> ThreadingHTTPServer:
    """Answer on 127.0.0.1:<memory.port> in a background thread; `lock` serialises the store's use
    with the owner's own work (the sweep)."""
    token = query_token(settings).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._send(200 if self.path == "/healthz" else 404, {"ok": self.path == "/healthz"})

        def do_POST(self) -> None:
            presented = (self.headers.get("Authorization") or "").removeprefix("Bearer ").encode()
            if not hmac.compare_digest(presented, token):
                self._send(401, {"error": "the query token is required (Authorization: Bearer …)"})
                return
            try:
                length = int(self.headers.get("Content-Length", 0))
                if not 0 <= length <= _MAX_BODY:
                    raise MemoryRefused(f"body of {length} bytes")
                body = json.loads(self.rfile.read(length) or b"{}")
                with lock:
                    result = ops.call(self.path.strip("/"), body)
                self._send(200, {"result": result})
            except (MemoryRefused, TypeError, ValueError) as exc:
                self._send(422, {"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - the caller gets the store's own message
                self._send(500, {"error": str(exc)})

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", memory.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="memory-api").start()
    return server
