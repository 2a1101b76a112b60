"""Replay and evaluation: recorded runs folded through today's processors (exact replay) or a
candidate's (counterfactual replay), scored, and gated.

Pure: no Kafka, ClickHouse or HTTP. Datasets arrive as `RecordedRun`s and results leave as
plain dicts; reading and writing them is `streams/replay_io.py`'s job.
"""

from __future__ import annotations

from processors.replay.compare import Divergence
from processors.replay.counterfactual import Candidate, Simulation, replay_run, simulate
from processors.replay.dataset import (
    FORMAT,
    DatasetError,
    RecordedRun,
    Reference,
    event_doc,
    parse_line,
    read_lines,
    run_doc,
    run_from_doc,
)
from processors.replay.exact import RunCheck, check_run, inbox_record
from processors.replay.recording import RecordedWorld, World
from processors.replay.summary import summarize
from processors.replay.workers import Processors

__all__ = [
    "FORMAT", "Candidate", "DatasetError", "Divergence", "Processors", "RecordedRun",
    "RecordedWorld", "Reference", "RunCheck", "Simulation", "World", "check_run", "event_doc",
    "inbox_record", "parse_line", "read_lines", "replay_run", "run_doc", "run_from_doc",
    "simulate", "summarize",
]
