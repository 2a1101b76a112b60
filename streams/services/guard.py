"""Policy guard service: ToolProposed -> ToolApproved | ToolRejected | ApprovalRequested."""

from __future__ import annotations

from collections.abc import Iterable

from policies import load_policy
from processors.guard import decide_call
from processors.tools.registry import default_registry
from schemas.events import Event
from streams.service import ServiceContext, utcnow
from streams.settings import load_settings
from streams.worker import run_worker


def main() -> None:
    settings = load_settings()
    ctx = ServiceContext("guard", settings)
    policy = load_policy(settings.policy_file, registry=default_registry())
    ctx.log.info("policy %s version %s", settings.policy_file, policy.version)

    def handle(event: Event) -> Iterable[Event]:
        yield decide_call(event, policy=policy, now=utcnow(), approval_ttl=settings.approval_ttl)

    run_worker(ctx, handles=frozenset({"ToolProposed"}), handle=handle)


if __name__ == "__main__":
    main()
