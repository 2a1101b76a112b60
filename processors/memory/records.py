"""What a memory is, and how an imported or remembered item becomes one: redacted, with an id and
an expiry. Pure: time and the redactor are given."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

__all__ = ["MemoryRecord", "Redactor", "RedactedText", "ImportItem", "InvalidLine", "parse_item", "prepare",
           "memory_id", "DEFAULT_TTL_S", "MAX_TEXT"]

DEFAULT_TTL_S = 30 * 86_400
"""A tenant's default lifetime of a memory when it opts in without naming one."""
MAX_TEXT = 8_192
"""Characters of one memory; longer texts are refused, not cut (a cut could split a placeholder)."""


class RedactedText(Protocol):
    @property
    def text(self) -> str: ...


class Redactor(Protocol):
    """Replaces PII in a text with `<TYPE>` placeholders."""

    version: str

    def redact(self, text: str) -> RedactedText: ...


@dataclass(frozen=True)
class MemoryRecord:
    tenant_id: str
    memory_id: str
    text: str
    """Redacted."""
    subject: str
    """Whom or what it is about ("" for the tenant as a whole)."""
    created_at: datetime
    expires_at: datetime
    source: str = "import"
    """`import`, or `run` for a memory a run left."""
    run_id: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def expired(self, now: datetime) -> bool:
        return self.expires_at <= now


@dataclass(frozen=True)
class ImportItem:
    text: str
    id: str | None = None
    subject: str = ""
    created_at: datetime | None = None
    ttl_s: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


class InvalidLine(ValueError):
    """A line of an import file that is not a memory (the message says why)."""


_KEYS = {"id", "text", "subject", "created_at", "ttl_s", "metadata"}


def parse_item(line: Mapping[str, Any]) -> ImportItem:
    """One JSONL line of `agentlog memory import`, checked field by field."""
    if not isinstance(line, Mapping):
        raise InvalidLine("a line must be a JSON object")
    unknown = set(line) - _KEYS
    if unknown:
        raise InvalidLine(f"unknown field(s) {sorted(unknown)}; expected {sorted(_KEYS)}")
    text = line.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidLine("`text` must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise InvalidLine(f"`text` has {len(text)} characters; at most {MAX_TEXT}")
    ident, subject = line.get("id"), line.get("subject", "")
    if ident is not None and (not isinstance(ident, str) or not ident or len(ident) > 128):
        raise InvalidLine("`id` must be a string of 1 to 128 characters")
    if not isinstance(subject, str) or len(subject) > 256:
        raise InvalidLine("`subject` must be a string of at most 256 characters")
    ttl = line.get("ttl_s")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
        raise InvalidLine("`ttl_s` must be a positive whole number of seconds")
    metadata = line.get("metadata", {})
    if not isinstance(metadata, Mapping):
        raise InvalidLine("`metadata` must be an object")
    created = line.get("created_at")
    at: datetime | None = None
    if created is not None:
        try:
            at = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        except ValueError:
            raise InvalidLine(f"`created_at` {created!r} is not an ISO 8601 time") from None
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return ImportItem(text=text, id=ident, subject=subject, created_at=at, ttl_s=ttl, metadata=dict(metadata))


def memory_id(tenant_id: str, subject: str, text: str) -> str:
    """The id of a memory given none: the same redacted text about the same subject is one memory."""
    digest = hashlib.blake2b(json.dumps([tenant_id, subject, text]).encode(), digest_size=12).hexdigest()
    return f"mem-{digest}"


def prepare(items: Iterable[ImportItem], *, tenant_id: str, redactor: Redactor, default_ttl_s: int,
            now: datetime, source: str = "import", run_id: str = "") -> list[MemoryRecord]:
    """The memories to store: each text redacted, expiry from its `ttl_s` or the tenant's default,
    counted from its creation. One already expired is left out: it could never be returned."""
    out: list[MemoryRecord] = []
    for item in items:
        text = redactor.redact(item.text).text
        created = item.created_at or now
        expires = created + timedelta(seconds=item.ttl_s or default_ttl_s)
        if expires <= now:
            continue
        # Metadata is kept as given but redacted too: it is stored and may be returned.
        metadata = {str(k): redactor.redact(v).text if isinstance(v, str) else v
                    for k, v in item.metadata.items()}
        ident = item.id or memory_id(tenant_id, item.subject, text)
        out.append(MemoryRecord(tenant_id=tenant_id, memory_id=ident,
                                text=text, subject=item.subject, created_at=created, expires_at=expires,
                                source=source, run_id=run_id, metadata=metadata))
    return out
