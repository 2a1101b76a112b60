"""What every service process shares: logging, graceful stop, the readiness marker."""

from __future__ import annotations

import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Message, Producer

from streams.settings import Settings

__all__ = ["ServiceContext", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class ServiceContext:
    """One running service: its logger, its stop flag and its ready file."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.stopping = False
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO,
            format=f"%(asctime)s {name} %(levelname)s %(message)s",
        )
        self.log = logging.getLogger(name)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.ready_file.unlink(missing_ok=True)

    @property
    def ready_file(self) -> Path:
        return self.settings.path("run", f"{self.name}.ready")

    def mark_ready(self) -> None:
        if not self.ready_file.exists():
            self.ready_file.parent.mkdir(parents=True, exist_ok=True)
            self.ready_file.write_text("ready\n")
            self.log.info("ready")

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def close(self) -> None:
        self.ready_file.unlink(missing_ok=True)
        self.log.info("stopped")

    def dead_letter(self, producer: Producer, msg: Message, reason: str) -> None:
        """Park an unusable record with why, where it came from and who gave up on it."""
        self.log.warning("dead-letter %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), reason)
        producer.produce(
            self.settings.deadletter_topic, key=msg.key(), value=msg.value(),
            headers=[
                ("dlq.reason", reason.encode()[:4000]), ("dlq.service", self.name.encode()),
                ("dlq.topic", (msg.topic() or "").encode()),
                ("dlq.partition", str(msg.partition()).encode()),
                ("dlq.offset", str(msg.offset()).encode()),
                *[(k, v) for k, v in (msg.headers() or []) if not k.startswith("dlq.")],
            ],
        )
