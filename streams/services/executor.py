"""Tool executor service: ToolApproved -> ToolExecuted, each call in a sandboxed child process.

It folds every run of its partitions and runs a ToolApproved only when the run's history shows
the guard's approval of that very proposal, or a person's grant of that very parked call;
anything else is refused to the dead letters. Each call runs in a warm sandbox child of its
tool's box (`AGENTLOG_SANDBOX`: bubblewrap namespaces, read-only filesystem, no network unless
registered, process, memory, CPU and file-size limits; see processors/tools/jail.py), replaced
on timeout or crash; calls of different runs run side by side, one child each
(`AGENTLOG_WORKER_CONCURRENCY`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from processors.executor import execution_result, refusal
from processors.state import RunState
from processors.tools.jail import SandboxUnavailable, bwrap_path
from processors.tools.sandbox_pool import SandboxPool
from schemas.events import Event, ToolApproved
from streams.backends import backend_config
from streams.metrics_export import TOOL_CALLS, TOOL_SECONDS
from streams.service import ServiceContext, utcnow
from streams.settings import load_settings
from streams.tools_config import tool_registry
from streams.worker import Refused, run_worker


def main() -> None:
    settings = load_settings()
    ctx = ServiceContext("executor", settings)
    registry = tool_registry(settings)
    cfg = backend_config(settings)
    # The state directory holds the installation's keys and tokens: no tool sees it.
    sandboxes = SandboxPool(mode=settings.sandbox, size=settings.worker_concurrency,
                            hide=(str(settings.home),))
    if settings.sandbox == "enforced":
        try:
            bwrap_path()
        except SandboxUnavailable as exc:  # every call will fail closed with this reason
            ctx.log.error("tools cannot run: %s", exc)

    def handle(event: Event, state: RunState | None) -> Iterable[Event]:
        why = refusal(state, event, registry=registry)
        if why is not None:
            raise Refused(why)
        p = event.payload
        assert isinstance(p, ToolApproved)
        spec = registry.get(p.tool)
        assert spec is not None
        outcome = sandboxes.run(spec, input=json.loads(p.input_json), cfg=cfg,
                                idempotency_key=p.idempotency_key)
        ctx.log.info("%s %s %s: %s in %d ms", event.run_id, p.step_id, p.tool, outcome.status,
                     outcome.duration_ms)
        TOOL_CALLS.labels(p.tool, outcome.status).inc()
        TOOL_SECONDS.labels(p.tool).observe(outcome.duration_ms / 1000)
        yield execution_result(
            event, status=outcome.status,
            output_json=json.dumps(outcome.output, sort_keys=True) if outcome.output is not None else None,
            error=outcome.error, duration_ms=outcome.duration_ms, cost_usd=spec.cost_usd, now=utcnow(),
        )

    try:
        run_worker(ctx, handles=frozenset({"ToolApproved"}), handle=handle, fold=True,
                   concurrency=settings.worker_concurrency)
    finally:
        sandboxes.close()


if __name__ == "__main__":
    main()
