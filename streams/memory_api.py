"""The memory service's loopback endpoint: the process that owns the local memory store answers
the others' operations (`POST /<operation>`, JSON; `GET /healthz`), for callers holding the
installation's query token (as the sink's query endpoint asks)."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

from streams.loopback import LoopbackHandler, serve_loopback
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

    class Handler(LoopbackHandler):
        max_body = _MAX_BODY

        def do_GET(self) -> None:  # noqa: N802 - http.server names its hooks
            self.send_json(200 if self.path == "/healthz" else 404, {"ok": self.path == "/healthz"})

        def do_POST(self) -> None:  # noqa: N802 - http.server names its hooks
            if not self.authorized():
                return
            try:
                body = self.json_body()
                with lock:
                    result = ops.call(self.path.strip("/"), body)
                self.send_json(200, {"result": result})
            except (MemoryRefused, TypeError, ValueError) as exc:
                self.send_json(422, {"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - the caller gets the store's own message
                self.send_json(500, {"error": str(exc)})

    Handler.token = token
    return serve_loopback(memory.port, Handler, name="memory-api")
