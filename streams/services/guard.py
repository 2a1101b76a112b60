"""Policy guard service: ToolProposed -> ToolApproved | ToolRejected | ApprovalRequested.

The policy file is watched: an edit takes effect on the next decision (checked at most once a
second), a broken edit is refused and logged and the last good version keeps deciding. Each
decision event carries the version that made it.
"""

from __future__ import annotations

from collections.abc import Iterable

from policies import PolicyError, PolicyReloader
from processors.guard import decide_call
from schemas.events import Event, ToolProposed
from streams.kafka import make_codec
from streams.metrics_export import DECISIONS
from streams.run_reads import reader_for
from streams.service import ServiceContext, utcnow
from streams.settings import load_settings
from streams.tool_usage import tool_usage
from streams.tools_config import tool_registry
from streams.worker import run_worker


def main() -> None:
    settings = load_settings()
    ctx = ServiceContext("guard", settings)
    registry = tool_registry(settings)
    reader = reader_for(settings, make_codec(settings))
    try:
        reloader = PolicyReloader(settings.policy_file, registry=registry, log=ctx.log)
    except PolicyError as exc:
        # No good version to fall back on: refuse to start rather than decide without rules.
        ctx.log.error("cannot start without a valid policy: %s", exc)
        raise SystemExit(1) from None
    ctx.log.info("policy %s version %s (%d rules)", settings.policy_file,
                 reloader.policy.version, len(reloader.policy.rules))

    def handle(event: Event, _state: object) -> Iterable[Event]:
        # The reloader logs each version change and each refused edit itself.
        policy = reloader.current()
        p = event.payload
        assert isinstance(p, ToolProposed)
        spec = registry.get(p.tool)
        usage = None
        # Counting costs a run read (and a query), so only for tools with budgets or counting rules.
        if spec is not None and (spec.run_call_budget is not None or spec.tenant_call_budget is not None
                                 or policy.counts_tool_usage(p.tool)):
            usage = tool_usage(settings, reader, event, tool=p.tool,
                               tenant=spec.tenant_call_budget is not None or policy.counts_tool_usage(p.tool))
        decision = decide_call(event, policy=policy, now=utcnow(), approval_ttl=settings.approval_ttl,
                               spec=spec, usage=usage)
        DECISIONS.labels(getattr(decision.payload, "rule", None) or "none", decision.event_type).inc()
        yield decision

    run_worker(ctx, handles=frozenset({"ToolProposed"}), handle=handle)


if __name__ == "__main__":
    main()
