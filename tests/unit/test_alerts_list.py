"""How `agentlog alerts list` shows alerts: nothing a person looks for is cut off, at 80 columns."""

from __future__ import annotations

from rich.console import Console

from streams.cli.alerts import _table

ROWS = [
    {"severity": "block", "firing": False, "rule": "replay_gate_failed", "scope": "candidate:demo-candidate",
     "raised_at": "2026-12-01 13:27:08.123", "resolved_at": "2026-12-01 13:27:09.500",
     "summary": "replay gate of candidate demo-candidate failed: quality: 0.610 (>= 0.8)"},
    {"severity": "page", "firing": True, "rule": "violation_rate_spike", "scope": "tenant:acme",
     "raised_at": "2026-12-01 23:59:58", "resolved_at": None,
     "summary": "violation rate 66.7 per 100 runs, above 3x the trailing baseline of 16.7"},
]


def _shown(width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(_table(ROWS, "alerts"))
    return " ".join(console.export_text().split())


def test_every_field_of_every_alert_is_shown_whole_at_80_columns() -> None:
    text = _shown(80)
    for row in ROWS:
        for field in ("rule", "scope", "summary"):
            assert row[field] in text, field
    assert "BLOCK resolved replay_gate_failed" in text and "12-01 13:27:08 → 13:27:09" in text
    assert "PAGE FIRING violation_rate_spike" in text and "12-01 23:59:58" in text
    assert "…" not in text
