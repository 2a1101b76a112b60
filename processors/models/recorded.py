"""The recorded provider: answers each run's planning call with what the model said back then.

Replay needs no network and no model: a run's PlanGenerated (`plan_json`) or PlanRejected
(`raw_output`) holds the output the planner validated, and its ModelCall the tokens. A run
with no recording raises `NotRecorded`, so replay reports it instead of inventing a plan.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from processors.models.errors import MODEL_CALL_FAILED, ModelError, NotRecorded
from schemas.events import Event, ModelCall, PlanGenerated, PlanRejected, RetrievedMemory

__all__ = ["Recording", "RecordedPlanner"]


@dataclass(frozen=True)
class Recording:
    """One run's recorded planning call."""

    raw_output: str
    """The model's output as the planner validated it."""
    model_call: ModelCall
    """Provider, model, prompt version, tokens, latency and cost as recorded."""
    event_type: str
    """PlanGenerated or PlanRejected."""
    failure: str | None = None
    """Why the model call failed, when no model answered; replay raises it as a ModelError."""


class RecordedPlanner:
    """`PlannerModel` that replays recorded outputs by run id."""

    provider = "recorded"
    """Recorded calls are not model calls; `model_call(run_id)` gives the original's."""
    model = "recorded"
    prompt_version = "recorded"

    def __init__(self, events_by_run: Mapping[str, Iterable[Event]]) -> None:
        """events_by_run: each run's events (any order; the first planning event counts)."""
        self._recordings: dict[str, Recording] = {}
        for run_id, events in events_by_run.items():
            for event in sorted(events, key=lambda e: e.seq):
                if (found := _recording(event.event_type, event.payload)) is not None:
                    self._recordings[run_id] = found
                    break
        self._served: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> RecordedPlanner:
        """From events of any runs, grouped by their run id."""
        runs: dict[str, list[Event]] = {}
        for event in events:
            runs.setdefault(event.run_id, []).append(event)
        return cls(runs)

    @classmethod
    def from_jsonl(cls, source: str | Path | IO[str]) -> RecordedPlanner:
        """From JSON lines, each a run as `agentlog runs show --json` prints it
        (`{"run_id", "events": [...]}`) or one event with its `run_id` (payloads may be JSON text,
        as ClickHouse stores them). Only planning events are read; the rest are skipped."""
        if isinstance(source, (str, Path)):
            with open(source, encoding="utf-8") as handle:
                return cls.from_jsonl(handle)
        found: dict[str, list[tuple[int, Recording]]] = {}
        for n, line in enumerate(source, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
                for run_id, seq, recording in _recordings_of(doc):
                    found.setdefault(run_id, []).append((seq, recording))
            except ValidationError as exc:  # before ValueError: it is one, but a verbose one
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<payload>'}: {e['msg']}"
                                     for e in exc.errors())
                raise ValueError(f"line {n}: not a recorded {exc.title} ({problems})") from None
            except ValueError as exc:
                raise ValueError(f"line {n}: not a recorded run or event ({exc})") from None
        return cls.from_recordings({r: min(rs, key=lambda x: x[0])[1] for r, rs in found.items()})

    @classmethod
    def from_recordings(cls, recordings: Mapping[str, Recording]) -> RecordedPlanner:
        """From recordings by run id."""
        planner = cls({})
        planner._recordings = dict(recordings)
        return planner

    @property
    def run_ids(self) -> list[str]:
        """Runs with a recording, sorted."""
        return sorted(self._recordings)

    def recording(self, run_id: str) -> Recording:
        """The recording of `run_id`; NotRecorded when there is none."""
        try:
            return self._recordings[run_id]
        except KeyError:
            raise NotRecorded(f"run {run_id} has no recorded plan (no PlanGenerated or "
                              "PlanRejected among its events)") from None

    def model_call(self, run_id: str) -> ModelCall:
        """The recorded call of `run_id`: what replay reports as the original model call."""
        return self.recording(run_id).model_call

    def plan(self, *, run_id: str, text: str = "", route: str = "default",
             memories: Sequence[RetrievedMemory] = ()) -> str:
        """The output recorded for `run_id` (the request text, route and memories are not consulted);
        a call that failed then raises its ModelError again."""
        found = self.recording(run_id)
        if found.failure is not None:
            raise ModelError(found.failure)
        call = found.model_call
        self._served[found.raw_output] = (call.input_tokens, call.output_tokens)
        return found.raw_output

    def usage(self, text: str, output: str) -> tuple[int, int]:
        """The recorded tokens of the run whose output `plan()` last returned as `output`."""
        try:
            return self._served[output]
        except KeyError:
            raise NotRecorded("usage() of an output plan() did not return") from None


def _recording(event_type: str, payload: object) -> Recording | None:
    if isinstance(payload, PlanGenerated):
        return Recording(payload.plan_json, payload.model_call, event_type)
    if isinstance(payload, PlanRejected):
        prefix = f"{MODEL_CALL_FAILED}: "
        failed = not payload.raw_output and payload.errors and payload.errors[0].startswith(prefix)
        failure = payload.errors[0].removeprefix(prefix) if failed else None
        return Recording(payload.raw_output, payload.model_call, event_type, failure)
    return None


def _recordings_of(doc: dict[str, Any]) -> list[tuple[str, int, Recording]]:
    if isinstance(doc.get("events"), list):  # a whole run
        run_id = doc.get("run_id")
        events = [e for e in doc["events"] if isinstance(e, dict)]
    elif "event_type" in doc:  # one event
        run_id, events = doc.get("run_id"), [doc]
    else:
        raise ValueError("expected a run with 'events' or an event with 'run_id' and 'event_type'")
    if not isinstance(run_id, str) or not run_id:
        raise ValueError("no run_id")
    out: list[tuple[str, int, Recording]] = []
    for event in events:
        model = _PLANNING.get(event.get("event_type", ""))
        if model is None:
            continue  # another event of a run: nothing to replay from it
        payload = event.get("payload")
        if isinstance(payload, str):
            payload = json.loads(payload)
        recording = _recording(event["event_type"], model.model_validate(payload))
        seq = event.get("seq")
        if recording is not None:  # always: the payload is a plan or a rejected one
            out.append((run_id, seq if isinstance(seq, int) else 0, recording))
    return out


_PLANNING: dict[str, type[PlanGenerated] | type[PlanRejected]] = {
    "PlanGenerated": PlanGenerated, "PlanRejected": PlanRejected}
