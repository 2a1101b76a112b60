"""Gateway service: the HTTP API on 127.0.0.1:<gateway_port>.

The process is where slow and malformed clients are met, before the app: a request's head and
then its body must arrive within `gateway_read_timeout_s` (else 408), a body is at most
`MAX_BODY_BYTES` (else 413), and what uvicorn answers itself (a request that is not HTTP) is in
the gateway's JSON error shape like everything the app answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from streams.api_keys import KeyStore, api_keys_file
from streams.gateway import MAX_BODY_BYTES, create_app, error_body
from streams.kafka import make_codec
from streams.service import ServiceContext
from streams.settings import load_settings

__all__ = ["BodyGuard", "gateway_protocol", "main"]

log = logging.getLogger("uvicorn.error")


class BodyGuard:
    """Reads a request's whole body before the app sees it: within `timeout_s` (else 408) and at
    most `limit` bytes (else 413). A body that trickles in or never comes holds nothing but a
    timer; the app then reads it from memory."""

    def __init__(self, app: ASGIApp, *, limit: int, timeout_s: float) -> None:
        self.app, self.limit, self.timeout_s = app, limit, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = f"the body is larger than {self.limit} bytes"
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(413, too_large, scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    if size > self.limit:
                        await self._refuse(413, too_large, scope, receive, send)
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._refuse(408, f"the request body did not arrive within {self.timeout_s:g} s",
                               scope, receive, send)
            return
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(status: int, message: str, scope: Scope, receive: Receive, send: Send) -> None:
        # The rest of the body is never read, so the connection cannot carry another request.
        response = JSONResponse(error_body(status, message), status_code=status,
                                headers={"Connection": "close"})
        await response(scope, receive, send)


def _raw_error(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 error answer, for moments when h11 has no request to answer."""
    body = json.dumps(error_body(status, message)).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class _GatewayProtocol(H11Protocol):
    """uvicorn's h11 protocol, answering its own errors in the gateway's shape and closing a
    connection whose request head does not arrive within `head_timeout_s` (uvicorn has no such
    limit: a client sending one header line a minute would hold its connection for ever)."""

    head_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    # uvicorn's H11Protocol narrows asyncio's BaseTransport to Transport (with an ignore of its own).
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def handle_events(self) -> None:
        try:
            super().handle_events()
        except Exception as exc:  # noqa: BLE001 -- whatever a request's bytes do, the answer is a 400
            log.warning("request not understood: %r", exc)
            self.send_400_response("Invalid HTTP request received.")

    def send_400_response(self, msg: str) -> None:
        self._stop_watching()
        self.transport.write(_raw_error(400, f"not a valid HTTP/1.1 request: {msg}"))
        self.transport.close()

    def _watch_head(self) -> None:
        # Waiting for a request's head (their state IDLE), the clock runs from its first byte (or
        # from the connection); once the head is in, BodyGuard times the body.
        if self.conn.their_state is not h11.IDLE:
            self._stop_watching()
        elif self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _stop_watching(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # part of a head came: say why the connection ends
            self.transport.write(_raw_error(
                408, f"the request head did not arrive within {self.head_timeout_s:g} s"))
        self.transport.close()


def gateway_protocol(*, head_timeout_s: float) -> type[H11Protocol]:
    """The HTTP protocol class for `uvicorn.Config(http=...)`."""
    return type("GatewayProtocol", (_GatewayProtocol,), {"head_timeout_s": head_timeout_s})


def main() -> None:
    settings = load_settings()
    ctx = ServiceContext("gateway", settings)
    app = create_app(settings, make_codec(settings), KeyStore(api_keys_file(settings)))
    guarded = BodyGuard(app, limit=MAX_BODY_BYTES, timeout_s=settings.gateway_read_timeout_s)
    config = uvicorn.Config(
        guarded, host="127.0.0.1", port=settings.gateway_port, log_level="warning", ws="none",
        http=gateway_protocol(head_timeout_s=settings.gateway_read_timeout_s),
        # Open event streams must not hold a stop up for their hour.
        timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run()
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
