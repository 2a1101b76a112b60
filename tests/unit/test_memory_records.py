"""Import lines and what they become: checked fields, redaction, ids, expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from processors.memory.records import ImportItem, InvalidLine, parse_item, prepare

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class _Done:
    text: str


class FakeRedactor:
    version = "test"

    def redact(self, text: str) -> _Done:
        return _Done(text.replace("jane@acme.com", "<EMAIL_ADDRESS>"))


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ({"text": ""}, "non-empty"),
        ({"txt": "x"}, "unknown field"),
        ({"text": "x", "ttl_s": 0}, "positive"),
        ({"text": "x", "ttl_s": True}, "positive"),
        ({"text": "x", "created_at": "yesterday"}, "ISO 8601"),
        ({"text": "x", "metadata": []}, "object"),
        ({"text": "x" * 9000}, "at most"),
        ({"text": "x", "id": ""}, "id"),
    ],
)
def test_bad_lines_say_why(line, says):
    with pytest.raises(InvalidLine, match=says):
        parse_item(line)


def test_prepared_memories_are_redacted_with_expiry_and_stable_ids():
    items = [
        parse_item({"text": "ask jane@acme.com", "subject": "jane", "metadata": {"by": "jane@acme.com"}}),
        parse_item({"id": "fixed", "text": "short", "ttl_s": 60}),
        parse_item({"text": "old", "ttl_s": 60, "created_at": "2026-12-01T11:58:00Z"}),
    ]
    got = prepare(items, tenant_id="acme", redactor=FakeRedactor(), default_ttl_s=86_400, now=NOW)
    assert [m.text for m in got] == ["ask <EMAIL_ADDRESS>", "short"]  # "old" expired a minute ago
    assert got[0].metadata == {"by": "<EMAIL_ADDRESS>"}
    assert got[0].expires_at == NOW + timedelta(days=1) and got[1].expires_at == NOW + timedelta(seconds=60)
    assert got[1].memory_id == "fixed"
    again = prepare(
        [ImportItem("ask jane@acme.com", subject="jane")],
        tenant_id="acme",
        redactor=FakeRedactor(),
        default_ttl_s=86_400,
        now=NOW,
    )
    other = prepare(
        [ImportItem("ask jane@acme.com", subject="jane")],
        tenant_id="globex",
        redactor=FakeRedactor(),
        default_ttl_s=86_400,
        now=NOW,
    )
    assert again[0].memory_id == got[0].memory_id != other[0].memory_id
