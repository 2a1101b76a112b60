"""The orchestrator's configuration from the settings: what the service and replay decide with."""

from __future__ import annotations

from processors.orchestrator import OrchestratorConfig, Timeouts
from processors.tools.registry import ToolRegistry
from streams.settings import Settings
from streams.tools_config import tool_registry

__all__ = ["orchestrator_config"]


def orchestrator_config(settings: Settings, tools: ToolRegistry | None = None) -> OrchestratorConfig:
    # The tools file's costs and timeouts, as the planner, guard and executor see them.
    tools = tools if tools is not None else tool_registry(settings)
    return OrchestratorConfig(
        tool_costs={t.name: t.cost_usd for t in tools},
        tool_timeouts={t.name: t.timeout_s for t in tools},
        timeouts=Timeouts(step_s=settings.step_timeout_s, attempts=settings.step_attempts,
                          backoff=settings.step_backoff, run_s=settings.run_timeout_s),
        memory_timeout_s=settings.memory_timeout_s,
    )
