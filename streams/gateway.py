"""The HTTP gateway: requests become RunRequested records on the inbox."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel, Field

from schemas.codec import EventCodec
from streams.approvals import NotWaiting, decide, pending_approvals
from streams.kafka import producer as make_producer
from streams.runs import AlreadyEnded, NoSuchRun, cancel_run, read_run, request_run, run_status
from streams.settings import Settings

__all__ = ["create_app", "RunRequest"]


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
    tenant_id: str | None = Field(default=None, min_length=1, max_length=128)
    route: str = Field(default="default", min_length=1, max_length=128)


def create_app(settings: Settings, codec: EventCodec) -> FastAPI:
    app = FastAPI(title="agentlog gateway", version="0.1.0")
    producer = make_producer(settings)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/runs", status_code=202)
    def create_run(body: RunRequest,
                   idempotency_key: str | None = Header(default=None, max_length=200)) -> dict[str, Any]:
        tenant = body.tenant_id or settings.default_tenant
        run_id = request_run(settings, producer, codec, text=body.text, tenant_id=tenant,
                             route=body.route, idempotency_key=idempotency_key)
        return {"run_id": run_id, "status": "accepted", "tenant_id": tenant}

    @app.get("/v1/runs/{run_id}")
    def get_run(run_id: str) -> dict[str, Any]:
        events = read_run(settings, codec, run_id)
        if not events:
            raise HTTPException(404, detail=f"no run {run_id}")
        return {"run_id": run_id, "status": run_status(events),
                "events": [e.model_dump(mode="json") for e in events]}

    @app.get("/v1/approvals")
    def list_approvals(tenant_id: str | None = None) -> list[dict[str, Any]]:
        return pending_approvals(settings, tenant_id=tenant_id)

    def _decide(run_id: str, body: Decision, approve: bool) -> dict[str, Any]:
        try:
            state = decide(settings, producer, codec, run_id, approve=approve, approver=body.approver,
                           reason=body.reason)
        except NoSuchRun as exc:
            raise HTTPException(404, detail=str(exc)) from None
        except NotWaiting as exc:
            raise HTTPException(409, detail=str(exc)) from None
        step = state.parked.step_id if state.parked else None
        return {"run_id": run_id, "step_id": step, "decision": "approved" if approve else "rejected"}

    @app.post("/v1/runs/{run_id}/cancel", status_code=202)
    def cancel(run_id: str, body: Cancel) -> dict[str, Any]:
        try:
            cancel_run(settings, producer, codec, run_id, reason=body.reason, requested_by=body.requested_by)
        except NoSuchRun as exc:
            raise HTTPException(404, detail=str(exc)) from None
        except AlreadyEnded as exc:
            raise HTTPException(409, detail=str(exc)) from None
        return {"run_id": run_id, "status": "cancel_requested"}

    @app.post("/v1/runs/{run_id}/approve", status_code=202)
    def approve(run_id: str, body: Decision) -> dict[str, Any]:
        return _decide(run_id, body, True)

    @app.post("/v1/runs/{run_id}/reject", status_code=202)
    def reject(run_id: str, body: Decision) -> dict[str, Any]:
        return _decide(run_id, body, False)

    return app
