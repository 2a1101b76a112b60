"""Settings come from a file and the environment; production parts replace the local ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.settings import REPO_ROOT, load_settings


@pytest.fixture(autouse=True)
def _no_agentlog_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # What these tests set is all there is: a shell's AGENTLOG_* variables are not theirs.
    for name in [n for n in os.environ if n.startswith("AGENTLOG_")]:
        monkeypatch.delenv(name)


def test_defaults_run_everything_locally(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for var in ("AGENTLOG_BOOTSTRAP", "AGENTLOG_HOME", "AGENTLOG_SETTINGS_FILE",
                "AGENTLOG_SCHEMA_REGISTRY_URL", "AGENTLOG_CLICKHOUSE_URL"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert s.local_kafka and s.bootstrap_servers == "127.0.0.1:19092"
    assert s.home == REPO_ROOT / ".agentlog"
    assert s.schema_registry_url is None and s.clickhouse_url is None


def test_a_settings_file_names_production_parts_and_the_environment_wins(monkeypatch, tmp_path):
    env_file = tmp_path / "prod.env"
    env_file.write_text(
        "AGENTLOG_BOOTSTRAP=kafka-1:9092,kafka-2:9092\n"
        "AGENTLOG_SCHEMA_REGISTRY_URL=http://registry:8081\n"
        "AGENTLOG_CLICKHOUSE_URL=http://analytics@clickhouse:8123/agentlog\n"
        "AGENTLOG_CLICKHOUSE_PASSWORD=s3cret\n"
        "AGENTLOG_HOME=relative-state\n")
    monkeypatch.setenv("AGENTLOG_SETTINGS_FILE", str(env_file))
    monkeypatch.setenv("AGENTLOG_BOOTSTRAP", "override:9092")
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert not s.local_kafka and s.bootstrap_servers == "override:9092"
    assert s.schema_registry_url == "http://registry:8081"
    assert s.clickhouse_url == "http://analytics@clickhouse:8123/agentlog"
    assert "s3cret" not in repr(s) and s.clickhouse_password.get_secret_value() == "s3cret"
    assert s.home == Path(tmp_path / "relative-state")
    # Child processes get the same settings, the secret included.
    assert s.to_env()["AGENTLOG_CLICKHOUSE_PASSWORD"] == "s3cret"
    assert s.to_env()["AGENTLOG_BOOTSTRAP"] == "override:9092"
