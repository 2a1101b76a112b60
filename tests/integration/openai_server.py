"""A scriptable stand-in for an OpenAI-compatible server (OpenAI, vLLM, Ollama), for tests.

Stdlib `http.server` on a free loopback port, serving `POST /v1/chat/completions`: each test
says what it answers — errors, delays, garbage, completions — and reads what was sent.

    with serve_llm() as llm:
        llm.reset(Reply(429, headers={"Retry-After": "0.1"}))
        llm.respond = lambda body: Reply(body=completion("Hello."))
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeLLM", "Reply", "Seen", "completion", "serve_llm"]

PATH = "/v1/chat/completions"


@dataclass
class Reply:
    """One answer of the server."""

    status: int = 200
    body: Any = None
    """A dict is sent as JSON, a str as it is."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Sleep before answering (a slow model)."""


@dataclass
class Seen:
    """One request the server received."""

    at: float
    """`time.monotonic()` on arrival."""
    body: dict[str, Any]
    headers: dict[str, str]


def _no_script(_body: dict[str, Any]) -> Reply:
    return Reply(500, "no script")


class FakeLLM:
    """An OpenAI-compatible `/v1/chat/completions` answering from `script` (in order), then
    from `respond`; every request is appended to `seen`."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.respond: Callable[[dict[str, Any]], Reply] = _no_script
        self.seen: list[Seen] = []
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw) if self.path == PATH else {}
                llm.seen.append(Seen(time.monotonic(), body, dict(self.headers)))
                reply = llm.script.popleft() if llm.script else llm.respond(body)
                if self.path != PATH:
                    reply = Reply(404, {"error": {"message": f"no route {self.path}"}})
                time.sleep(reply.delay_s)
                data = (json.dumps(reply.body) if isinstance(reply.body, (dict, list))
                        else str(reply.body or "")).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up, as it should

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """The API root to configure: the part before `/chat/completions`."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def reset(self, *replies: Reply) -> None:
        """Forget what was seen and answer `replies` first (`respond` is left as it is)."""
        self.script = deque(replies)
        self.seen.clear()

    def fresh(self) -> FakeLLM:
        """Back to no script, nothing seen, and a 500 for every request not scripted."""
        self.reset()
        self.respond = _no_script
        return self


@contextmanager
def serve_llm() -> Iterator[FakeLLM]:
    """A running FakeLLM, shut down on exit."""
    server = FakeLLM()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def completion(content: Any, *, prompt_tokens: int = 812, completion_tokens: int = 143,
               model: str = "fake-model") -> dict[str, Any]:
    """A chat completion answering `content` (None: a reply with no content), with usage."""
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
