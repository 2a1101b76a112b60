"""The HTTP gateway: runs in, timelines out, people's decisions, per-tenant API keys.

Every error, the framework's and the server's included, is JSON `{"error": {"status", "message"}}`
and is declared in the OpenAPI document. A key sees only its tenant's runs: a run of another
tenant answers 404, exactly like a run that does not exist. Nothing a client does holds a thread
for long: event streams are async and read the log in short calls, bodies arrive within a time
limit, and the checks that must be atomic (one Idempotency-Key, one parked call) are claims in
memory, not a read of the log followed by a write.
"""

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

import anyio
from confluent_kafka import KafkaException
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from processors.replay.dataset import event_doc
from processors.spans import trace_id_of
from processors.state import RunState, Status, evolve, fold
from schemas.codec import EventCodec
from schemas.events import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    Event,
    RunStarted,
)
from sinks.metrics import Query as MetricsQuery
from sinks.metrics import metrics_query, parse_keys, parse_time, replay_delta_query
from streams.api_keys import ApiKey, KeyStore
from streams.approvals import NotWaiting, decide, pending_approvals
from streams.claims import Claims, Places
from streams.console.api import add_console
from streams.gateway_memory import add_memory_routes
from streams.gateway_schema import (
    EVENT_FRAME,
    MAX_BODY_BYTES,
    PROMETHEUS_TEXT,
    READ_ERRORS,
    WRITE_ERRORS,
    Approval,
    Cancel,
    CancelAccepted,
    Decision,
    DecisionAccepted,
    EventDoc,
    MetricsRow,
    ReplayDeltaRow,
    RunAccepted,
    RunId,
    RunRequest,
    RunView,
    error_body,
    errors,
)
from streams.kafka import producer as make_producer
from streams.metrics_export import CONTENT_TYPE as METRICS_CONTENT_TYPE
from streams.metrics_export import render as render_metrics
from streams.models_config import load_models_config
from streams.query_api import QueryError, run_query
from streams.render import event_summary
from streams.run_reads import RunReader
from streams.run_reads import RunView as ReadView
from streams.runs import (
    AlreadyEnded,
    LogUnavailable,
    NoSuchRun,
    cancel_run,
    request_run,
    run_id_for,
    run_status,
)
from streams.settings import Settings

__all__ = ["MAX_BODY_BYTES", "STREAM_POLL_S", "RunRequest", "create_app", "error_body"]

log = logging.getLogger(__name__)

STREAM_POLL_S = 0.25
"""How often an open event stream looks for new events."""
_KEEPALIVE_S = 15.0
_RETRY_AFTER_S = 5


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


@dataclass(frozen=True)
class _Decided:
    """A person's decision as it claims a parked call (the token makes each request its own)."""

    token: str
    approve: bool
    approver: str

    @property
    def verb(self) -> str:
        return "approved" if self.approve else "rejected"


_UNREADABLE = b"unreadable"
"""The fingerprint of a run on the log whose request cannot be read: no body matches it."""


def _fingerprint(text: str, route: str, subject: str | None = None) -> bytes:
    # A request without a subject keeps the fingerprint it had before subjects existed.
    asked = [text, route, *([subject] if subject is not None else [])]
    return hashlib.sha256(json.dumps(asked).encode()).digest()


class _EventStream(StreamingResponse):
    """Server-sent events that give their place back however the stream ends."""

    media_type = "text/event-stream"

    def __init__(self, frames: AsyncIterator[str], *, on_close: Callable[[], None]) -> None:
        super().__init__(frames, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _frame(kind: str, data: Any, *, seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n"


def _doc(event: Event) -> dict[str, Any]:
    """An event as the API shows it: as a dataset holds it, with the line `runs show` prints."""
    return {**event_doc(event), "summary": event_summary(event)}


def _already_decided(run_id: str, events: list[Event]) -> str | None:
    """Who decided the run's latest parked call, if someone (or the clock) did."""
    for event in reversed(events):
        match event.payload:
            case ApprovalGranted(step_id=step, approver=who) | ApprovalDenied(step_id=step, approver=who):
                verb = "approved" if isinstance(event.payload, ApprovalGranted) else "rejected"
                return f"the call {step} of run {run_id} was already {verb} by {who}"
            case ApprovalExpired(step_id=step):
                return f"the call {step} of run {run_id} was already decided: its approval expired"
            case ApprovalRequested():
                return None
    return None


def _approver(named: str, key: ApiKey) -> str:
    """Who decided, as the log records it: the key that signed the request always, beside the name
    the request gives when that is not the key's own identity."""
    identity = f"{key.name} (key {key.id})"
    return identity if named.strip() == identity else f"{named.strip()} · {identity}"


def create_app(settings: Settings, codec: EventCodec, keys: KeyStore) -> FastAPI:
    app = FastAPI(title="agentlog gateway", version="0.2.0", redirect_slashes=False,
                  description="Runs of AI agents as immutable event timelines on Kafka. Every error "
                              "is `{\"error\": {\"status\", \"message\"}}`.")
    producer = make_producer(settings)
    reads = RunReader(settings, codec)
    routes = frozenset(load_models_config(settings.models_file).routes)
    runs_claimed: Claims[bytes] = Claims(capacity=settings.gateway_claims)
    calls_decided: Claims[_Decided] = Claims(capacity=settings.gateway_claims)
    streams = Places(per_holder=settings.gateway_streams_per_key, total=settings.gateway_streams_total)
    stream_reads = anyio.CapacityLimiter(settings.gateway_stream_reads)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if message in (s.phrase for s in HTTPStatus):  # the router's own 404 and 405
            message = f"{message}: {request.method} {request.url.path}"
        headers = exc.headers
        if exc.status_code == 405:  # the router names the methods of the first route of the path only
            allowed = {m for r in app.routes if isinstance(r, Route) and r.methods
                       and r.matches(request.scope)[0] is Match.PARTIAL for m in r.methods}
            headers = {**(headers or {}), "Allow": ", ".join(sorted(allowed))}
        return _error(exc.status_code, message, headers)

    @app.exception_handler(LogUnavailable)
    @app.exception_handler(KafkaException)
    async def log_down(_r: Request, exc: Exception) -> JSONResponse:
        # Neither missing nor done: the caller may try again (a retried POST with the same
        # Idempotency-Key names the same run).
        return _error(503, f"the event log is not reachable: {exc}", {"Retry-After": str(_RETRY_AFTER_S)})

    @app.exception_handler(QueryError)
    async def store_down(_r: Request, exc: Exception) -> JSONResponse:
        return _error(503, f"the analytics store is not reachable: {exc}",
                      {"Retry-After": str(_RETRY_AFTER_S)})

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return _error(400, "the body is not valid JSON")
        malformed = [p for p in problems if p.get("type") == "bad_text"] or problems
        where = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in malformed)
        return _error(400 if malformed is not problems else 422, where)

    @app.exception_handler(Exception)
    async def server_error(_r: Request, exc: Exception) -> JSONResponse:
        # Starlette raises it on after this answer, so the server logs it with its traceback.
        return _error(500, f"internal error ({type(exc).__name__}); it is logged")

    bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
    api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key, instead of Bearer.")

    async def caller(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                     x_api_key: Annotated[str | None, Depends(api_key)]) -> ApiKey:
        presented = x_api_key or (credentials.credentials if credentials else None)
        challenge = {"WWW-Authenticate": "Bearer"}
        if not presented:
            raise HTTPException(401, "an API key is required (Authorization: Bearer <key>)", challenge)
        key = keys.lookup(presented)
        if key is None:
            raise HTTPException(401, "unknown API key", challenge)
        return key

    def needs(role: str) -> Any:
        async def check(key: Annotated[ApiKey, Depends(caller)]) -> ApiKey:
            if role not in key.roles:
                raise HTTPException(403, f"this key may not {role} (its roles: {', '.join(key.roles)})")
            return key
        return Depends(check)

    def own_view(run_id: str, key: ApiKey) -> ReadView:
        """The run as read, if it is the key's tenant's; any other run is missing, so that a run
        id tells nothing about another tenant."""
        if "\x00" in run_id:
            raise HTTPException(400, "run_id: must not contain NUL bytes")
        try:
            view = reads.read(run_id, tenant_id=key.tenant_id)
        except (ValueError, TypeError) as exc:
            # Records under this key that do not decode: whose run it is cannot be told.
            log.warning("run %s cannot be read: %s", run_id, exc)
            raise HTTPException(404, f"no run {run_id}") from None
        if not view.events or any(e.tenant_id != key.tenant_id for e in view.events):
            raise HTTPException(404, f"no run {run_id}")
        return view

    def own_run(run_id: str, key: ApiKey) -> list[Event]:
        return own_view(run_id, key).events

    def requested(run_id: str, tenant_id: str) -> bytes | None:
        """The fingerprint of the request that made `run_id`, if the log has it."""
        try:
            events = reads.read(run_id, tenant_id=tenant_id).events
        except (ValueError, TypeError):
            return _UNREADABLE
        started = next((e.payload for e in events if isinstance(e.payload, RunStarted)), None)
        if started is not None:
            return _fingerprint(started.text, started.route, started.memory_subject)
        return _UNREADABLE if events else None

    async def poll(run_id: str, tenant_id: str, view: ReadView, after_seq: int) -> list[Event]:
        """The run's events past `after_seq`: an open stream reads only the log's tail after what
        it has read (not the run again)."""
        await anyio.to_thread.run_sync(lambda: reads.tail(view, run_id, tenant_id=tenant_id),
                                       limiter=stream_reads)
        return [e for e in view.events if e.seq > after_seq]

    async def frames(run_id: str, tenant_id: str, view: ReadView, until: float) -> AsyncIterator[str]:
        events = list(view.events)
        state: RunState | None = None
        sent, quiet_since = 0, time.monotonic()
        while True:
            for event in events:
                state = evolve(state, event)
                sent = event.seq
                yield _frame(event.event_type, _doc(event), seq=event.seq)
                if state.terminal:
                    yield _frame("end", {"status": state.status})
                    return
            if events:
                quiet_since = time.monotonic()
            now = time.monotonic()
            if now >= until:
                break
            if now - quiet_since >= _KEEPALIVE_S:
                quiet_since = now
                yield ": keep-alive\n\n"  # a comment: proxies keep the connection, a gone client shows
            await asyncio.sleep(min(STREAM_POLL_S, until - now))
            try:
                events = await poll(run_id, tenant_id, view, sent)
            except (LogUnavailable, KafkaException, ValueError, TypeError) as exc:
                log.warning("stream of run %s stopped: %s", run_id, exc)
                status = 503 if isinstance(exc, (LogUnavailable, KafkaException)) else 500
                yield _frame("error", error_body(status, f"the run cannot be read now: {exc}"))
                return
        yield _frame("end", {"status": state.status if state else "unknown"})

    add_console(app, settings, caller=caller, needs=needs)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", response_class=PlainTextResponse, responses=PROMETHEUS_TEXT)
    async def metrics() -> Response:
        return Response(render_metrics(), media_type=METRICS_CONTENT_TYPE)

    @app.post("/v1/runs", status_code=202, response_model=RunAccepted,
              responses=errors(400, 401, 403, 408, 409, 413, 422, 503,
                                s409="This Idempotency-Key was used for a different request."))
    async def create_run(body: RunRequest, key: Annotated[ApiKey, needs("submit")],
                         idempotency_key: Annotated[str | None, Header(
                             max_length=200, json_schema_extra={"minLength": 1, "pattern": r"\S"},
                             description="The same key (per tenant) always names the same run.")] = None,
                         ) -> RunAccepted:
        if body.tenant_id is not None and body.tenant_id != key.tenant_id:
            raise HTTPException(403, f"this key belongs to tenant {key.tenant_id}, not {body.tenant_id}")
        if body.route not in routes:
            raise HTTPException(422, f"route: {body.route!r} is not declared in the models file "
                                     f"(routes: {', '.join(sorted(routes))})")
        asked = _fingerprint(body.text, body.route, body.subject)
        claimed = None
        if idempotency_key is not None:
            if not idempotency_key.strip() or "\x00" in idempotency_key:
                raise HTTPException(400, "Idempotency-Key: must not be empty or blank")
            claimed = run_id_for(key.tenant_id, idempotency_key)
            holder = await runs_claimed.claim(
                claimed, asked, recall=lambda: run_in_threadpool(requested, claimed, key.tenant_id))
            if holder != asked:
                raise HTTPException(409, "this Idempotency-Key was used for a different request")
        try:
            run_id = await run_in_threadpool(
                lambda: request_run(settings, producer, codec, text=body.text, tenant_id=key.tenant_id,
                                    route=body.route, idempotency_key=idempotency_key,
                                    requested_by=key.name, memory_subject=body.subject))
        except BaseException:
            if claimed is not None:
                runs_claimed.release(claimed, asked)  # nothing reached the log: a retry may differ
            raise
        return RunAccepted(run_id=run_id, status="accepted", tenant_id=key.tenant_id)

    @app.get("/v1/runs/{run_id}", response_model=RunView, responses=errors(*READ_ERRORS))
    def get_run(run_id: RunId, key: Annotated[ApiKey, needs("read")]) -> RunView:
        events = own_run(run_id, key)
        return RunView(run_id=run_id, status=run_status(events), trace_id=trace_id_of(events),
                       events=[EventDoc.model_validate(_doc(e)) for e in events])

    @app.get("/v1/runs/{run_id}/events", response_class=_EventStream, status_code=200,
             responses={200: {"description": "Server-sent events: the run's events, then `end`.",
                              "content": {"text/event-stream": {"schema": EVENT_FRAME}}},
                        **errors(*READ_ERRORS, 429, json_ref=True)})
    async def stream_run(run_id: RunId, key: Annotated[ApiKey, needs("read")],
                         timeout_s: Annotated[float, Query(
                             gt=0, le=3600, allow_inf_nan=False,
                             description="Seconds to follow a run that has not ended.")] = 300.0,
                         ) -> _EventStream:
        """The run's events so far, then each new one, until it ends or `timeout_s` passes."""
        view = await run_in_threadpool(own_view, run_id, key)
        full = streams.take(key.id)
        if full is not None:
            holder = "this API key" if full == "holder" else "the gateway"
            most = streams.per_holder if full == "holder" else streams.total
            raise HTTPException(429, f"{holder} holds {most} open event streams, the most allowed; "
                                     "close one or try again later", {"Retry-After": str(_RETRY_AFTER_S)})
        until = time.monotonic() + min(timeout_s, settings.gateway_stream_max_s)
        return _EventStream(frames(run_id, key.tenant_id, view, until),
                            on_close=lambda: streams.give_back(key.id))

    @app.post("/v1/runs/{run_id}/cancel", status_code=202, response_model=CancelAccepted,
              responses=errors(*WRITE_ERRORS, s409="The run already ended."))
    def cancel(run_id: RunId, body: Cancel, key: Annotated[ApiKey, needs("submit")]) -> CancelAccepted:
        events = own_run(run_id, key)
        try:
            cancel_run(settings, producer, codec, run_id, reason=body.reason,
                       requested_by=body.requested_by, events=events)
        except NoSuchRun as exc:
            raise HTTPException(404, str(exc)) from None
        except AlreadyEnded as exc:
            raise HTTPException(409, str(exc)) from None
        return CancelAccepted(run_id=run_id, status="cancel_requested")

    @app.get("/v1/approvals", response_model=list[Approval], responses=errors(400, 401, 403, 503))
    def list_approvals(key: Annotated[ApiKey, needs("read")]) -> list[dict[str, Any]]:
        """The tenant's calls waiting for a person, oldest first."""
        return pending_approvals(settings, tenant_id=key.tenant_id, codec=codec)

    def moment(name: str, value: str | None) -> datetime | None:
        try:
            return None if value is None else parse_time(value, now=datetime.now(UTC))
        except ValueError as exc:
            raise HTTPException(422, f"{name}: {exc}") from None

    def measured(query: MetricsQuery) -> list[dict[str, Any]]:
        return run_query(settings, query.sql, parameters=query.parameters, sink_running=True).as_dicts()

    since_q = Query(max_length=64, description="From this moment: an ISO date or time (UTC unless it "
                                               "says otherwise), or a span before now (30m, 12h, 7d, 2w).")
    until_q = Query(max_length=64, description="Up to this moment (excluded), written like `since`.")

    @app.get("/v1/metrics", response_model=list[MetricsRow], response_model_exclude_unset=True,
             responses=errors(400, 401, 403, 422, 503))
    def get_metrics(key: Annotated[ApiKey, needs("read")],
                    by: Annotated[str | None, Query(
                        max_length=64, description="Group keys, comma-separated, of tenant, route, model "
                                                   "(the planner's) and day (UTC); none: totals.")] = None,
                    since: Annotated[str | None, since_q] = None,
                    until: Annotated[str | None, until_q] = None) -> list[dict[str, Any]]:
        """The five metrics of the key's tenant's runs started in a time range (README, "Metrics")."""
        try:
            keys = parse_keys(by)
        except ValueError as exc:
            raise HTTPException(422, f"by: {exc}") from None
        try:
            query = metrics_query(by=keys, since=moment("since", since), until=moment("until", until),
                                  tenant_id=key.tenant_id)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return measured(query)

    @app.get("/v1/metrics/replay", response_model=list[ReplayDeltaRow],
             responses=errors(400, 401, 403, 422, 503))
    def get_replay_delta(key: Annotated[ApiKey, needs("read")],
                         since: Annotated[str | None, since_q] = None,
                         until: Annotated[str | None, until_q] = None) -> list[dict[str, Any]]:
        """The replay delta per candidate and day, of the replays of the key's tenant's runs alone."""
        try:
            query = replay_delta_query(since=moment("since", since), until=moment("until", until),
                                       tenant_id=key.tenant_id)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return measured(query)

    add_memory_routes(app, settings, needs)

    async def _decide(run_id: str, body: Decision, key: ApiKey, approve: bool) -> DecisionAccepted:
        events = await run_in_threadpool(own_run, run_id, key)
        state = fold(events)
        if state is None or state.status != Status.AWAITING_APPROVAL or state.parked_event_id is None:
            status = state.status if state else "unknown"
            raise HTTPException(409, _already_decided(run_id, events)
                                or f"run {run_id} is not waiting for an approval (it is {status})")
        mine = _Decided(uuid.uuid4().hex, approve, _approver(body.approver, key))
        holder = await calls_decided.claim(state.parked_event_id, mine)
        step = state.parked.step_id if state.parked else None
        if holder != mine:
            raise HTTPException(409, f"the call {step} of run {run_id} was already {holder.verb} "
                                     f"by {holder.approver}")
        try:
            await run_in_threadpool(lambda: decide(settings, producer, codec, run_id, approve=approve,
                                                   approver=mine.approver, reason=body.reason, events=events))
        except NotWaiting as exc:
            calls_decided.release(state.parked_event_id, mine)
            raise HTTPException(409, str(exc)) from None
        except BaseException:
            calls_decided.release(state.parked_event_id, mine)  # not sent: the call still waits
            raise
        return DecisionAccepted(run_id=run_id, step_id=step, decision="approved" if approve else "rejected")

    decision_errors = errors(*WRITE_ERRORS, s409="Nothing waits for a decision: the call was already "
                                                 "decided, or the run is not waiting.")

    @app.post("/v1/runs/{run_id}/approve", status_code=202, response_model=DecisionAccepted,
              responses=decision_errors)
    async def approve(run_id: RunId, body: Decision,
                      key: Annotated[ApiKey, needs("approve")]) -> DecisionAccepted:
        return await _decide(run_id, body, key, True)

    @app.post("/v1/runs/{run_id}/reject", status_code=202, response_model=DecisionAccepted,
              responses=decision_errors)
    async def reject(run_id: RunId, body: Decision,
                     key: Annotated[ApiKey, needs("approve")]) -> DecisionAccepted:
        return await _decide(run_id, body, key, False)

    return app
