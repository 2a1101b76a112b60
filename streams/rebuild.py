"""Run state rebuilt from the events topic: what a processor knows after a (re)start."""

from __future__ import annotations

from collections.abc import Mapping

from processors.state import FoldError, RunState, evolve
from streams.edge import Intake, Poison, read_partitions
from streams.settings import Settings

__all__ = ["fold_partitions"]


def fold_partitions(settings: Settings, intake: Intake, starts: Mapping[int, int],
                    states: dict[str, RunState], partition_of: dict[str, int], *,
                    stops: Mapping[int, int] | None = None) -> int:
    """Fold the events of each partition in `starts`, from its start offset up to its stop
    (exclusive; default: the end of what is committed), into `states`. A record that is no
    event, or that its run cannot take, is skipped and counted in `intake.parked`, never fatal.
    Returns the events folded."""
    count = 0
    for msg in read_partitions(settings, settings.events_topic, starts, stops=stops, timeout_s=30):
        try:
            event = intake.decode(msg)
            state = evolve(states.get(event.run_id), event)
        except Poison as exc:
            intake.park(msg, str(exc))
            continue
        except FoldError as exc:
            intake.fold_error(msg, exc)
            continue
        states[event.run_id] = state
        partition_of[event.run_id] = msg.partition()
        count += 1
    return count
