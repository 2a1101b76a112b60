"""Gate verdicts on the gates topic: what `agentlog gate` decided, for the block rule to see."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import KafkaException, Producer

from processors.replay.gate import Check
from schemas.alert_codec import GateCodec
from schemas.alerts import GateVerdict
from streams.edge import Outbox
from streams.kafka import wait_for_broker
from streams.settings import Settings

__all__ = ["record_verdict"]


def record_verdict(settings: Settings, producer: Callable[[], Producer], *, candidate: str,
                   checks: list[Check], scores: str, timeout_s: float = 10.0) -> str | None:
    """Put the gate's verdict on the gates topic; None once the broker has it, else why not.

    A cluster that does not answer at once is not waited for: the gate's verdict is the exit
    code, recording it is the extra.
    """
    try:
        wait_for_broker(settings, timeout_s=2)
    except TimeoutError as exc:
        return str(exc)
    at = datetime.now(UTC)
    passed = all(c.passed for c in checks)
    failed = [f"{c.name}: {c.measured} ({c.limit})" for c in checks if not c.passed]
    digest = hashlib.sha256(f"{candidate}\x00{scores}\x00{at.isoformat()}\x00{passed}".encode()).hexdigest()
    verdict = GateVerdict(verdict_id=digest[:32], candidate=candidate, passed=passed, at=at,
                          failed_checks=failed, scores=scores)
    out = Outbox(producer())
    try:
        out.produce(settings.gates_topic, key=candidate.encode(), value=GateCodec().encode(verdict),
                    headers=[("candidate", candidate.encode())])
        out.flush(timeout_s)
    except KafkaException as exc:
        return f"{exc.args[0] if exc.args else exc}"
    return None
