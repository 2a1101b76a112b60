"""JSON endpoints on 127.0.0.1 for the installation's own processes: the sink's query endpoint and
the memory service's. Only callers holding the installation's query token are served."""

from __future__ import annotations

import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LoopbackHandler", "serve_loopback"]


class LoopbackHandler(BaseHTTPRequestHandler):
    """Kept-alive JSON over HTTP/1.1; subclasses set `token` and answer with `send_json`."""

    protocol_version = "HTTP/1.1"  # kept-alive connections: every answer has its length
    timeout = 60  # an idle kept-alive connection is closed after this
    # Head and body go out in two writes: with Nagle the second waits for the client's delayed
    # acknowledgement of the first, some 40 ms, on every kept-alive request.
    disable_nagle_algorithm = True
    token: bytes = b""
    max_body: int = 64 * 1024 * 1024

    def authorized(self) -> bool:
        """Whether the request holds the query token; answers 401 when it does not."""
        presented = (self.headers.get("Authorization") or "").removeprefix("Bearer ").encode()
        if hmac.compare_digest(presented, self.token):
            return True
        self.send_json(401, {"error": "the query token is required (Authorization: Bearer …)"})
        return False

    def json_body(self) -> Any:
        """The request's JSON body (`{}` when empty); ValueError when it is too large or not JSON."""
        length = int(self.headers.get("Content-Length", 0))
        if not 0 <= length <= self.max_body:
            raise ValueError(f"body of {length} bytes")
        return json.loads(self.rfile.read(length) or b"{}")

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # bursts of requests from many gateway threads at once


def serve_loopback(port: int, handler: type[LoopbackHandler], *, name: str) -> ThreadingHTTPServer:
    """Serve `handler` on 127.0.0.1:`port` in a background thread named `name`."""
    server = _Server(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True, name=name).start()
    return server
