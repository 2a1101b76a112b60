"""What the console adds to the gateway: the tenant's runs a page at a time, its alerts, who a key
is, and the console's own static files at `/`.

The JSON routes are the gateway's like any other (the key's tenant only, the one error shape,
declared in the OpenAPI document); the page and its files are not API and stay out of the
document. The page holds no secret: it asks for a key and sends it as a header, never in a URL.
"""


from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from sinks.run_list import (
    Cursor,
    run_details_query,
    runs_page_query,
    status_of,
    tenant_alerts_query,
    tenant_scope,
)
from streams.api_keys import ApiKey
from streams.gateway_schema import errors
from streams.query_api import run_query
from streams.settings import Settings

__all__ = ["RunSummary", "RunPage", "AlertView", "WhoAmI", "add_console", "STATIC_FILES"]

STATIC_FILES = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
"""The files under `/console/`, with their media types (besides the page itself at `/`)."""

# The page runs only its own script and style and talks only to the gateway that served it.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class RunSummary(BaseModel):
    """One run of the list."""

    run_id: str
    status: Literal["running", "awaiting_approval", "completed", "failed", "cancelled"]
    text: str = Field(description="What the run was asked.")
    route: str
    model: str | None = Field(description="The model that planned it (none before planning).")
    started: datetime
    ended: datetime | None
    duration_ms: int | None = Field(description="From RunStarted to its end; null while it goes on.")
    cost_usd: float = Field(description="What it cost (known once it ended).")
    tool_calls: int = Field(description="Tool calls it ran (ToolExecuted).")
    violations: int = Field(description="Its ToolRejected and ApprovalRequested events.")
    success: bool


class RunPage(BaseModel):
    """A page of runs, newest first."""

    runs: list[RunSummary]
    next: str | None = Field(description="Pass as `before` for the next (older) page; null on the last.")


class AlertView(BaseModel):
    """An alert of the tenant's scope: raised, and resolved or still firing."""

    alert_id: str
    rule: str
    severity: str
    scope: str
    window_start: datetime
    window_end: datetime
    raised_at: datetime
    resolved_at: datetime | None
    firing: bool
    summary: str
    value: float | None
    threshold: float | None
    baseline: float | None


class WhoAmI(BaseModel):
    """The key a request carries, as the gateway knows it (never its secret)."""

    key_id: str
    name: str
    tenant_id: str
    roles: list[str]


def _moment(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _no_nul(name: str, value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise HTTPException(400, f"{name}: must not contain NUL bytes")
    return value or None


def _summary(row: dict[str, Any], details: dict[str, Any]) -> RunSummary:
    started = _moment(row["started"])
    ended = _moment(row["ended"]) if row["ended"] and row["ended_as"] else None
    return RunSummary(
        run_id=row["run_id"], status=status_of(row), text=details.get("text", ""), route=row["route"],
        model=row["model"] or None, started=started, ended=ended,
        duration_ms=int((ended - started).total_seconds() * 1000) if ended else None,
        cost_usd=float(row["cost_usd"] or 0.0), tool_calls=int(details.get("tool_calls", 0)),
        violations=int(row["violations"]), success=bool(row["success"]))


def _page(asset: str) -> bytes:
    return (resources.files("streams.console") / "static" / asset).read_bytes()


def add_console(app: FastAPI, settings: Settings, *, caller: Callable[..., Any],
                needs: Callable[[str], Any]) -> None:
    """Add the console's routes to the gateway `app`; `caller` is its key dependency, `needs(role)`
    its role check."""
    assets = {name: _page(name) for name in ("index.html", *STATIC_FILES)}

    def query(q: Any) -> list[dict[str, Any]]:
        return run_query(settings, q.sql, parameters=q.parameters, sink_running=True).as_dicts()

    @app.get("/", include_in_schema=False)
    def console_page() -> Response:
        return Response(assets["index.html"], media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @app.get("/console/{name}", include_in_schema=False)
    def console_file(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, f"no console file {name}")
        return Response(assets[name], media_type=STATIC_FILES[name], headers=_PAGE_HEADERS)

    @app.get("/v1/whoami", response_model=WhoAmI, responses=errors(400, 401))
    def whoami(key: Annotated[ApiKey, Depends(caller)]) -> WhoAmI:
        """The key this request carries: its id, name, tenant and roles."""
        return WhoAmI(key_id=key.id, name=key.name, tenant_id=key.tenant_id, roles=list(key.roles))

    @app.get("/v1/runs", response_model=RunPage, responses=errors(400, 401, 403, 422, 503))
    def list_runs(key: Annotated[ApiKey, needs("read")],
                  status: Annotated[Literal["running", "awaiting_approval", "completed", "failed",
                                            "cancelled"] | None,
                                    Query(description="Only runs in this state.")] = None,
                  route: Annotated[str | None, Query(max_length=128, description="Only this route.")] = None,
                  q: Annotated[str | None, Query(
                      max_length=200, description="Only runs whose request contains this text "
                                                  "(any case), or whose id starts with it.")] = None,
                  limit: Annotated[int, Query(ge=1, le=200, description="Runs per page.")] = 50,
                  before: Annotated[str | None, Query(
                      max_length=400, description="The `next` of the previous page.")] = None) -> RunPage:
        """The tenant's runs, newest first (by start), a page at a time. The list is read from the
        analytics store, so a run appears once the sink has stored its start (well under a second)."""
        cursor = None
        if _no_nul("before", before):
            try:
                cursor = Cursor.decode(before or "")
            except ValueError as exc:
                raise HTTPException(422, f"before: {exc}") from None
        rows = query(runs_page_query(tenant_id=key.tenant_id, limit=limit, status=status,
                                     route=_no_nul("route", route), text=_no_nul("q", q), before=cursor))
        more, rows = len(rows) > limit, rows[:limit]
        details = {r["run_id"]: r for r in query(run_details_query(
            tenant_id=key.tenant_id, run_ids=[r["run_id"] for r in rows]))} if rows else {}
        runs = [_summary(r, details.get(r["run_id"], {})) for r in rows]
        last = runs[-1] if more and runs else None
        return RunPage(runs=runs, next=Cursor(last.started, last.run_id).encode() if last else None)

    @app.get("/v1/alerts", response_model=list[AlertView], responses=errors(400, 401, 403, 422, 503))
    def list_alerts(key: Annotated[ApiKey, needs("read")],
                    firing: Annotated[bool, Query(description="Only the alerts still firing.")] = False,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AlertView]:
        """The alerts of the tenant's own runs (scope `tenant:<id>`), newest first. Alerts of a
        route or a replay candidate span tenants and are not shown to a tenant's key."""
        rows = query(tenant_alerts_query(tenant_id=key.tenant_id, firing_only=firing, limit=limit))
        scope = tenant_scope(key.tenant_id)
        times = ("window_start", "window_end", "raised_at")
        return [AlertView(**{**r, **{t: _moment(r[t]) for t in times}, "firing": bool(r["firing"]),
                             "resolved_at": _moment(r["resolved_at"]) if r["resolved_at"] else None})
                for r in rows if r["scope"] == scope]
