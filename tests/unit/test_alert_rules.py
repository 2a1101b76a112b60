"""The alert rules file: the shipped defaults load, a bad file is refused with its line and
field, and a running reloader keeps the last good rules."""

from __future__ import annotations

import logging

import pytest

from policies.alert_rules import (
    CostRiseRule,
    GateRule,
    RulesError,
    RulesReloader,
    ViolationRateRule,
    load_rules,
    parse_duration,
    parse_rules,
)
from streams.settings import REPO_ROOT


def test_the_shipped_rules_are_the_three_defaults():
    rules = load_rules(REPO_ROOT / "policies" / "alerts.yaml")
    page, warn, block = rules.rules
    assert page == ViolationRateRule(name="violation_rate_spike", severity="page", scopes=("tenant", "route"),
                                     window_s=86_400, baseline_s=7 * 86_400, factor=3, min_runs=20,
                                     min_baseline_runs=50)
    assert warn == CostRiseRule(name="cost_per_success_rise", severity="warn", window_s=86_400, rise=0.3,
                                min_runs=10)
    assert block == GateRule(name="replay_gate_failed", severity="block")
    assert rules.version.startswith("sha256:")


def test_short_windows_for_tests_and_defaults_for_what_is_left_out():
    text = "version: 1\nrules:\n  - {name: f, kind: violation_rate, window: 5s, baseline: 15s}\n"
    (rule,) = parse_rules(text).rules
    assert (rule.window_s, rule.baseline_s, rule.factor, rule.min_runs) == (5, 15, 3, 20)
    assert rule.severity == "page"


@pytest.mark.parametrize(("text", "message"), [
    ("version: 2\nrules: []\n", "f.yaml:1: field 'version': must be 1"),
    ("version: 1\nrule: []\n", "f.yaml:2: field 'rule': unknown"),
    ("version: 1\nrules: {}\n", "field 'rules': must be a list"),
    ("version: 1\nrules:\n  - name: a\n    kind: violation_rate\n    window: soon\n",
     "f.yaml:5: rule 'a': field 'window': 'soon' is not a duration"),
    ("version: 1\nrules:\n  - name: a\n    kind: violation_rate\n    window: 1.5\n",
     "f.yaml:5: rule 'a': field 'window': must be whole seconds, not 1.5"),
    ("version: 1\nrules:\n  - name: a\n    kind: cost_per_success\n    factor: 3\n",
     "f.yaml:5: rule 'a': field 'factor': unknown for a cost_per_success rule"),
    ("version: 1\nrules:\n  - name: a\n    kind: violation_rate\n    min_runs: 0\n",
     "f.yaml:5: rule 'a': field 'min_runs': must be at least 1"),
    ("version: 1\nrules:\n  - name: a\n    kind: violation_rate\n    scopes: [model]\n",
     "f.yaml:5: rule 'a': field 'scopes': must be a list of tenant and/or route"),
    ("version: 1\nrules:\n  - name: a\n    kind: paging\n",
     "f.yaml:4: rule 'a': field 'kind': must be one of"),
    ("version: 1\nrules:\n  - name: a\n    kind: replay_gate\n    severity: urgent\n",
     "f.yaml:5: rule 'a': field 'severity': must be page, warn or block"),
    ("version: 1\nrules:\n  - {name: a, kind: replay_gate}\n  - {name: a, kind: replay_gate}\n",
     "f.yaml:4: rule 2: field 'name': 'a' is used by an earlier rule"),
    ("version: 1\nrules:\n  - {name: a, kind: violation_rate, window: 2d, baseline: 1d}\n",
     "field 'baseline': must reach back at least one window"),
    ("version: 1\nversion: 1\nrules: []\n", "duplicate key 'version'"),
    ("version: 1\nrules: [\n", "not valid YAML"),
])
def test_a_bad_file_is_refused_naming_line_and_field(text, message):
    with pytest.raises(RulesError) as err:
        parse_rules(text, source="f.yaml")
    assert message in str(err.value)


def test_durations():
    assert [parse_duration(v) for v in (30, 1.5, "30s", "5m", "2h", "1d", "7d")] == [
        30, 1.5, 30, 300, 7200, 86_400, 604_800]
    for bad in ("1w", "-1s", 0, True, None):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_a_running_reloader_keeps_the_last_good_rules(tmp_path, caplog):
    path = tmp_path / "alerts.yaml"
    path.write_text("version: 1\nrules:\n  - {name: a, kind: replay_gate}\n")
    now = [0.0]
    reloader = RulesReloader(path, check_every_s=1, clock=lambda: now[0])
    first = reloader.current()
    path.write_text("version: 1\nrules:\n  - {name: a, kind: replay_gat}\n")
    now[0] = 5
    with caplog.at_level(logging.WARNING):
        assert reloader.current() is first
    assert "field 'kind'" in str(reloader.last_error) and "reload refused" in caplog.text
    path.write_text("version: 1\nrules:\n  - {name: b, kind: replay_gate, severity: warn}\n")
    now[0] = 10
    assert reloader.current().rules == (GateRule(name="b", severity="warn"),)
    assert reloader.last_error is None
    path.unlink()
    now[0] = 15
    assert reloader.current().rules == (GateRule(name="b", severity="warn"),)


def test_a_missing_file_is_refused_at_start(tmp_path):
    with pytest.raises(RulesError, match="cannot read the rules"):
        RulesReloader(tmp_path / "none.yaml")
