"""Hot reload: an edit takes effect, a broken edit is refused and the last good policy stays."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from policies import DEFAULT_POLICY_PATH, PolicyError, PolicyReloader, parse_policy
from processors.tools.registry import default_registry

REGISTRY = default_registry()
SQL = {"tool": "query_sql", "input": {"sql": "UPDATE orders SET status = 'paid'"}, "run_metrics": {}}
DENY_WRITES = ("version: 1\nrules:\n  - name: no_writes\n"
               "    when: {tool: query_sql, input: {sql_writes: true}}\n    action: deny\n")
ALLOW_ALL = "version: 1\nrules: []\n"
BROKEN = ("version: 1\nrules:\n  - name: no_writes\n"
          "    when: {tool: query_sql, input: {sql_writes: maybe}}\n    action: deny\n")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 1.0) -> None:
        self.now += seconds


def write(path: Path, text: str) -> None:
    # Bump mtime explicitly: two writes within one filesystem tick must still look different.
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Clock, PolicyReloader]:
    path = tmp_path / "policy.yaml"
    write(path, DENY_WRITES)
    clock = Clock()
    return path, clock, PolicyReloader(path, registry=REGISTRY, clock=clock)


def test_first_load_gives_the_files_policy(setup: tuple[Path, Clock, PolicyReloader]) -> None:
    _path, _, reloader = setup
    policy = reloader.current()
    assert policy.version == parse_policy(DENY_WRITES).version
    assert policy.evaluate(**SQL).rule == "no_writes"
    assert reloader.last_error is None and reloader.reloads == 0


def test_an_edit_is_picked_up_at_the_next_check(setup: tuple[Path, Clock, PolicyReloader]) -> None:
    path, clock, reloader = setup
    old = reloader.current().version
    write(path, ALLOW_ALL)
    clock.advance(0.5)
    assert reloader.current().version == old  # not looked at more often than check_every_s
    clock.advance(0.5)
    new = reloader.current()
    assert new.version == parse_policy(ALLOW_ALL).version != old
    assert new.evaluate(**SQL).action == "allow"
    assert new.evaluate(**SQL).policy_version == new.version
    assert reloader.reloads == 1


def test_a_broken_edit_keeps_the_last_good_policy_then_a_fix_loads(
        setup: tuple[Path, Clock, PolicyReloader], caplog: pytest.LogCaptureFixture) -> None:
    path, clock, reloader = setup
    good = reloader.current()
    write(path, BROKEN)
    clock.advance()
    with caplog.at_level(logging.WARNING, logger="agentlog.policy"):
        kept = reloader.current()
    assert kept is good
    assert isinstance(reloader.last_error, PolicyError)
    assert str(reloader.last_error).startswith(f"{path}: rule 'no_writes' (rules[0]): sql_writes")
    assert f"keeping version {good.version}" in caplog.text

    clock.advance()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agentlog.policy"):
        assert reloader.current() is good
    assert caplog.text == ""  # the same broken file is refused once, not at every check

    write(path, ALLOW_ALL)
    clock.advance()
    fixed = reloader.current()
    assert fixed.version == parse_policy(ALLOW_ALL).version
    assert reloader.last_error is None and reloader.reloads == 1


def test_a_vanished_file_keeps_the_policy_and_its_return_reloads(
        setup: tuple[Path, Clock, PolicyReloader]) -> None:
    path, clock, reloader = setup
    good = reloader.current()
    path.unlink()
    clock.advance()
    assert reloader.current() is good
    assert "cannot read the policy" in str(reloader.last_error)
    write(path, ALLOW_ALL)
    clock.advance()
    assert reloader.current().version == parse_policy(ALLOW_ALL).version
    assert reloader.last_error is None


def test_an_unknown_tool_is_refused_against_the_registry(
        setup: tuple[Path, Clock, PolicyReloader]) -> None:
    path, clock, reloader = setup
    good = reloader.current()
    write(path, DENY_WRITES.replace("tool: query_sql", "tool: query_sq1"))
    clock.advance()
    assert reloader.current() is good
    assert "unknown tools ['query_sq1']" in str(reloader.last_error)


def test_rewriting_the_same_bytes_keeps_the_version(
        setup: tuple[Path, Clock, PolicyReloader]) -> None:
    path, clock, reloader = setup
    before = reloader.current().version
    write(path, DENY_WRITES)
    clock.advance()
    assert reloader.current().version == before and reloader.reloads == 0


def test_an_unexpected_failure_while_reloading_never_raises(
        setup: tuple[Path, Clock, PolicyReloader], monkeypatch: pytest.MonkeyPatch) -> None:
    _path, clock, reloader = setup
    good = reloader.current()

    def boom(_: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(PolicyReloader, "_stat", boom)
    clock.advance()
    assert reloader.current() is good
    assert "RuntimeError: disk on fire" in str(reloader.last_error)


def test_a_bad_first_load_raises(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    with pytest.raises(PolicyError, match=r"rule 'no_writes' \(rules\[0\]\)"):
        PolicyReloader(bad, registry=REGISTRY)
    with pytest.raises(PolicyError, match="cannot read the policy"):
        PolicyReloader(tmp_path / "missing.yaml", registry=REGISTRY)


def test_the_shipped_policy_loads() -> None:
    reloader = PolicyReloader(DEFAULT_POLICY_PATH, registry=REGISTRY)
    assert [r.name for r in reloader.current().rules][-1] == "deny_sql_writes"
