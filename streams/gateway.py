"""The HTTP gateway: runs in, timelines out, people's decisions, per-tenant API keys.

Every error is JSON `{"error": {"status", "message"}}`. A key sees only its tenant's runs: a run
of another tenant answers 404, exactly like a run that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.error import URLError

from confluent_kafka import KafkaException
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from processors.replay.dataset import event_doc
from processors.state import evolve
from schemas.codec import EventCodec
from schemas.events import Event
from streams.api_keys import ApiKey, KeyStore
from streams.approvals import NotWaiting, decide, pending_approvals
from streams.kafka import producer as make_producer
from streams.query_api import QueryError
from streams.runs import (
    AlreadyEnded,
    LogUnavailable,
    NoSuchRun,
    cancel_run,
    follow_run,
    read_run,
    request_run,
    run_id_for,
    run_status,
)
from streams.settings import Settings

__all__ = ["create_app", "RunRequest", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 64 * 1024


class Decision(BaseModel):
    """Body of POST /v1/runs/{run_id}/approve and /reject."""

    approver: str = Field(min_length=1, max_length=200, description="Who decides, for the audit trail.")
    reason: str = Field(default="", max_length=2_000)


class Cancel(BaseModel):
    """Body of POST /v1/runs/{run_id}/cancel."""

    reason: str = Field(default="cancelled over HTTP", max_length=2_000)
    requested_by: str = Field(default="api", min_length=1, max_length=200)


class RunRequest(BaseModel):
    """Body of POST /v1/runs."""

    text: str = Field(min_length=1, max_length=10_000, description="What the agent should do.")
    tenant_id: str | None = Field(default=None, min_length=1, max_length=128,
                                  description="Must be the key's tenant when given.")
    route: str = Field(default="default", min_length=1, max_length=128)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)


def create_app(settings: Settings, codec: EventCodec, keys: KeyStore) -> FastAPI:
    app = FastAPI(title="agentlog gateway", version="0.1.0",
                  description="Runs of AI agents as immutable event timelines on Kafka.")
    producer = make_producer(settings)

    @app.exception_handler(HTTPException)
    async def http_error(_r: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(LogUnavailable)
    @app.exception_handler(KafkaException)
    async def log_down(_r: Request, exc: Exception) -> JSONResponse:
        # Neither missing nor done: the caller may try again (a retried POST with the same
        # Idempotency-Key names the same run).
        return _error(503, f"the event log is not reachable: {exc}")

    @app.exception_handler(QueryError)
    @app.exception_handler(URLError)
    async def store_down(_r: Request, exc: Exception) -> JSONResponse:
        return _error(503, f"the analytics store is not reachable: {exc}")

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return _error(400, "the body is not valid JSON")
        where = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems)
        return _error(422, where)

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        # Content-Length is checked before the body is read; a chunked body is read and measured.
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        if length is None and request.method in ("POST", "PUT", "PATCH"):
            if len(await request.body()) > MAX_BODY_BYTES:
                return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        return await call_next(request)

    def caller(authorization: Annotated[str | None, Header()] = None,
               x_api_key: Annotated[str | None, Header()] = None) -> ApiKey:
        presented = x_api_key or (authorization[7:].strip() if authorization and
                                  authorization.lower().startswith("bearer ") else None)
        if not presented:
            raise HTTPException(401, "an API key is required (Authorization: Bearer <key>)")
        key = keys.lookup(presented)
        if key is None:
            raise HTTPException(401, "unknown API key")
        return key

    def needs(role: str) -> Any:
        def check(key: ApiKey = Depends(caller)) -> ApiKey:
            if role not in key.roles:
                raise HTTPException(403, f"this key may not {role} (its roles: {', '.join(key.roles)})")
            return key
        return Depends(check)

    def own_run(run_id: str, key: ApiKey) -> list[Event]:
        events = read_run(settings, codec, run_id)
        if not events or events[0].tenant_id != key.tenant_id:
            raise HTTPException(404, f"no run {run_id}")
        return events

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/runs", status_code=202)
    def create_run(body: RunRequest, key: ApiKey = needs("submit"),
                   idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> dict[str, Any]:
        if body.tenant_id is not None and body.tenant_id != key.tenant_id:
            raise HTTPException(403, f"this key belongs to tenant {key.tenant_id}, not {body.tenant_id}")
        if idempotency_key is not None:
            earlier = read_run(settings, codec, run_id_for(key.tenant_id, idempotency_key))
            first = earlier[0].payload if earlier else None
            if first is not None and (first.text, first.route) != (body.text, body.route):  # type: ignore[union-attr]
                raise HTTPException(409, "this Idempotency-Key was used for a different request")
        run_id = request_run(settings, producer, codec, text=body.text, tenant_id=key.tenant_id,
                             route=body.route, idempotency_key=idempotency_key, requested_by=key.name)
        return {"run_id": run_id, "status": "accepted", "tenant_id": key.tenant_id}

    @app.get("/v1/runs/{run_id}")
    def get_run(run_id: str, key: ApiKey = needs("read")) -> dict[str, Any]:
        events = own_run(run_id, key)
        return {"run_id": run_id, "status": run_status(events), "events": [event_doc(e) for e in events]}

    @app.get("/v1/runs/{run_id}/events", response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    def stream_run(run_id: str, key: ApiKey = needs("read"),
                   timeout_s: float = 300.0) -> StreamingResponse:
        """Server-sent events: the run's events so far, then each new one, until it ends."""
        own_run(run_id, key)

        def frames() -> Iterator[str]:
            state = None
            for event in follow_run(settings, codec, run_id, timeout_s=min(timeout_s, 3600.0)):
                state = evolve(state, event)
                yield (f"id: {event.seq}\nevent: {event.event_type}\n"
                       f"data: {json.dumps(event_doc(event))}\n\n")
                if state.terminal:
                    break
            yield f"event: end\ndata: {json.dumps({'status': state.status if state else 'unknown'})}\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.post("/v1/runs/{run_id}/cancel", status_code=202)
    def cancel(run_id: str, body: Cancel, key: ApiKey = needs("submit")) -> dict[str, Any]:
        events = own_run(run_id, key)
        try:
            cancel_run(settings, producer, codec, run_id, reason=body.reason,
                       requested_by=body.requested_by, events=events)
        except NoSuchRun as exc:
            raise HTTPException(404, str(exc)) from None
        except AlreadyEnded as exc:
            raise HTTPException(409, str(exc)) from None
        return {"run_id": run_id, "status": "cancel_requested"}

    @app.get("/v1/approvals")
    def list_approvals(key: ApiKey = needs("read")) -> list[dict[str, Any]]:
        return pending_approvals(settings, tenant_id=key.tenant_id)

    def _decide(run_id: str, body: Decision, key: ApiKey, approve: bool) -> dict[str, Any]:
        events = own_run(run_id, key)
        try:
            state = decide(settings, producer, codec, run_id, approve=approve, approver=body.approver,
                           reason=body.reason, events=events)
        except NoSuchRun as exc:
            raise HTTPException(404, str(exc)) from None
        except NotWaiting as exc:
            raise HTTPException(409, str(exc)) from None
        step = state.parked.step_id if state.parked else None
        return {"run_id": run_id, "step_id": step, "decision": "approved" if approve else "rejected"}

    @app.post("/v1/runs/{run_id}/approve", status_code=202)
    def approve(run_id: str, body: Decision, key: ApiKey = needs("approve")) -> dict[str, Any]:
        return _decide(run_id, body, key, True)

    @app.post("/v1/runs/{run_id}/reject", status_code=202)
    def reject(run_id: str, body: Decision, key: ApiKey = needs("approve")) -> dict[str, Any]:
        return _decide(run_id, body, key, False)

    return app
