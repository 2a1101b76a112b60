"""The wheel is the product: installed into a fresh virtualenv and run from a directory outside the
checkout, it decodes every released schema's data and runs `agentlog demo` end to end.

The wheel is built from a copy of the working tree (a build in the checkout would leave a `build/`
whose stale files later wheels would pick up); the venv gets every dependency from the index,
as a user's `pip install` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.free_ports import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CHECKOUT = Path(__file__).resolve().parents[2]
HISTORY = CHECKOUT / "schemas" / "history"
RELEASED = sorted(p.name for p in HISTORY.glob("agentlog.Event.v*.avsc"))
SNAPSHOTS_RELEASED = sorted(p.name for p in HISTORY.glob("agentlog.Snapshot.v*.avsc"))
GOLDEN = CHECKOUT / "tests" / "golden"

# Run by the installed interpreter: every released schema's golden records, decoded both as
# the Avro container file holds them and as single-object records framed with that schema.
# Run by the installed interpreter: each released snapshot schema's golden records, framed as a
# restarted processor meets them, read by the installed SnapshotCodec.
_DECODE_SNAPSHOTS = """
import io, json, sys
import fastavro
from fastavro.schema import parse_schema
from schemas.codec import schema_fingerprint
from schemas.snapshot_codec import SnapshotCodec

codec, out = SnapshotCodec(), {}
for released, golden in zip(sys.argv[1::2], sys.argv[2::2]):
    with open(released) as f:
        schema = json.load(f)
    header = b"\\xc3\\x01" + schema_fingerprint(schema)
    with open(golden, "rb") as f:
        records = list(fastavro.reader(f, return_record_name=True, return_record_name_override=True))
    kinds = set()
    for record in records:
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parse_schema(schema), record)
        kinds.add(type(codec.decode(header + body.getvalue()).body).__name__)
    out[released.rsplit("/", 1)[-1]] = sorted(kinds)
print(json.dumps(out))
"""

_DECODE_RELEASED = """
import io, json, sys
import fastavro
from fastavro.schema import parse_schema
import schemas
from schemas.codec import HISTORY_DIR, DecodeError, EventCodec, event_schema, schema_fingerprint
from schemas.events import Event

out = {"package": schemas.__file__, "history": sorted(p.name for p in HISTORY_DIR.glob("*.avsc"))}
try:
    codec = EventCodec()
except Exception as exc:
    out["codec_error"] = f"{type(exc).__name__}: {exc}"
    codec = None
for released, golden in zip(sys.argv[1::2], sys.argv[2::2]):
    with open(released) as f:
        schema = json.load(f)
    writer, header = parse_schema(schema), b"\\xc3\\x01" + schema_fingerprint(schema)
    result = out.setdefault("versions", {}).setdefault(released.rsplit("/", 1)[-1], {})
    with open(golden, "rb") as f:
        records = list(fastavro.reader(f, reader_schema=parse_schema(event_schema()),
                                       return_record_name=True, return_record_name_override=True))
    result["container"] = sum(Event.model_validate({**r, "payload": r["payload"][1]}).event_type
                              == r["event_type"] for r in records)
    with open(golden, "rb") as f:
        as_written = list(fastavro.reader(f, return_record_name=True))
    decoded, errors = 0, set()
    for record in as_written:
        body = io.BytesIO()
        fastavro.schemaless_writer(body, writer, record)
        try:
            decoded += (codec is not None
                        and codec.decode(header + body.getvalue()).event_type == record["event_type"])
        except DecodeError as exc:
            errors.add(str(exc))
    result.update(records=len(as_written), single_object=decoded, errors=sorted(errors))
print(json.dumps(out))
"""

_DEFAULTS = """
import json
from streams.settings import load_settings
from processors.tools.backends.sql import DEFAULT_SAMPLE_SQL
from processors.prompts import PROMPTS_DIR
from streams.replay_io import EXAMPLE_CANDIDATES
from infra import kafka
s = load_settings()
files = {"policy_file": s.policy_file, "models_file": s.models_file, "sample_sql": DEFAULT_SAMPLE_SQL,
         "candidates": EXAMPLE_CANDIDATES, "planner_prompt": PROMPTS_DIR / "planner" / "v1.md",
         "kafka_pom": kafka.POM}
print(json.dumps({"home": str(s.home), "libs_dir": str(kafka.LIBS_DIR),
                  "missing": sorted(k for k, p in files.items() if not p.is_file()),
                  "docs": sorted(p.name for p in s.docs_dir.glob("*.md"))}))
"""


@dataclass(frozen=True)
class Install:
    python: Path
    bin: Path
    site_packages: Path
    env: dict[str, str]
    """An environment that knows nothing of the checkout or of anyone's stack."""


def _run(argv: list[str | Path], **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    proc = subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, \
        f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _working_tree(dest: Path) -> Path:
    """The checkout's files as they are now (tracked and new, nothing git-ignored)."""
    names = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                 cwd=CHECKOUT).stdout.split("\0")
    for name in filter(None, names):
        src = CHECKOUT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    root = tmp_path_factory.mktemp("wheel-install")
    assert not root.is_relative_to(CHECKOUT)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AGENTLOG_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    started = time.monotonic()
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", root / "dist",
          _working_tree(root / "src")], cwd=root, env=env)
    (wheel,) = (root / "dist").glob("agentlog-*.whl")
    built = time.monotonic()
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=root, env=env)
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], cwd=root, env=env)
    installed = time.monotonic()
    print(f"\nwheel built in {built - started:.1f}s, "
          f"fresh venv with every dependency in {installed - built:.1f}s")
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([venv / "bin" / "python", "-c", purelib], cwd=root, env=env).stdout.strip())
    yield Install(python=venv / "bin" / "python", bin=venv / "bin", site_packages=site,
                  env={**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                       "AGENTLOG_SETTINGS_FILE": str(root / "none.env")})
    # A full install is over a gigabyte: not kept for every run on a shared machine.
    shutil.rmtree(venv, ignore_errors=True)


def _golden_name(released: str) -> str:
    """`agentlog.Event.v2.avsc` -> `events-v2.avro` (`agentlog.Snapshot.v1.avsc` ->
    `snapshots-v1.avro`), as tests/golden/release.py writes them."""
    match = re.search(r"\.(v\d+)\.avsc$", released)
    assert match, released
    kind = "snapshots" if released.startswith("agentlog.Snapshot.") else "events"
    return f"{kind}-{match.group(1)}.avro"


def _py(install: Install, script: str, *args: str | Path, cwd: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(_run([install.python, "-c", script, *args], cwd=cwd, env=install.env).stdout)


def test_the_installed_wheel_decodes_data_written_with_every_released_schema(install, tmp_path):
    assert RELEASED, "the checkout has no released schema to check"
    args = [a for name in RELEASED
            for a in (CHECKOUT / "schemas" / "history" / name, GOLDEN / _golden_name(name))]
    out = _py(install, _DECODE_RELEASED, *args, cwd=tmp_path)
    assert Path(out["package"]).is_relative_to(install.site_packages), out["package"]
    assert out.get("codec_error") is None, out["codec_error"]
    assert out["history"] == sorted(p.name for p in HISTORY.glob("*.avsc"))  # every released schema
    for name, result in out["versions"].items():
        assert result["records"] >= 20, name
        assert result["errors"] == [], (name, result["errors"])
        assert result["container"] == result["single_object"] == result["records"], (name, result)


def test_the_installed_wheel_decodes_snapshots_written_with_every_released_schema(install, tmp_path):
    assert SNAPSHOTS_RELEASED, "the checkout has no released snapshot schema to check"
    args = [a for name in SNAPSHOTS_RELEASED
            for a in (CHECKOUT / "schemas" / "history" / name, GOLDEN / _golden_name(name))]
    out = _py(install, _DECODE_SNAPSHOTS, *args, cwd=tmp_path)
    for name, kinds in out.items():
        assert sorted(kinds) == ["Checkpoint", "FinishedRunsPage", "RunSnapshot"], (name, kinds)


def test_the_installed_wheel_keeps_its_state_in_the_current_directory_and_has_its_data_files(
        install, tmp_path):
    out = _py(install, _DEFAULTS, cwd=tmp_path)
    assert out["home"] == str(tmp_path / ".agentlog")
    assert out["missing"] == []
    assert out["docs"] == sorted(p.name for p in (CHECKOUT / "infra" / "sample" / "docs").glob("*.md"))
    assert not Path(out["libs_dir"]).is_relative_to(install.site_packages), out["libs_dir"]


def test_agentlog_demo_runs_end_to_end_from_the_installed_wheel(install, tmp_path):
    home, cache = tmp_path / "home", tmp_path / "cache"
    kafka, controller, gateway, query, smtp = free_ports(5)
    env = {**install.env, "AGENTLOG_HOME": str(home), "XDG_CACHE_HOME": str(cache),
           "AGENTLOG_KAFKA_PORT": str(kafka), "AGENTLOG_CONTROLLER_PORT": str(controller),
           "AGENTLOG_GATEWAY_PORT": str(gateway), "AGENTLOG_QUERY_PORT": str(query),
           "AGENTLOG_SMTP_PORT": str(smtp), "AGENTLOG_KAFKA_HEAP": "512m", "COLUMNS": "200"}
    agentlog = install.bin / "agentlog"
    try:
        started = time.monotonic()
        demo = subprocess.run([agentlog, "demo"], check=False, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        print(f"\nagentlog demo took {time.monotonic() - started:.1f}s")
        assert demo.returncode == 0, f"{demo.stdout}\n{demo.stderr}"
        stored = re.search(r"(\d+) events stored for these 5 runs \(the log holds (\d+)\)", demo.stdout)
        assert stored and stored.group(1) == stored.group(2), demo.stdout
        # It ends with the console's address, and the installed package serves the console's files.
        last_line = demo.stdout.strip().splitlines()[-1]
        assert f"web console: http://127.0.0.1:{gateway}/" in last_line, demo.stdout
        for path in ("/", "/console/console.js", "/console/console.css"):
            assert httpx.get(f"http://127.0.0.1:{gateway}{path}", timeout=10).status_code == 200, path

        def sql(query: str) -> list[dict]:  # type: ignore[type-arg]
            return json.loads(_run([agentlog, "sql", query, "--json"], cwd=tmp_path, env=env).stdout)

        last = sql("SELECT run_id, argMax(event_type, seq) AS last FROM agent_events "
                   "WHERE tenant_id = 'demo' GROUP BY run_id")
        assert sorted(r["last"] for r in last) == ["ApprovalRequested"] + ["RunCompleted"] * 4, last
        # The packaged sample documents, database and ticket store answered.
        executed = {r["tool"]: r for r in sql(
            "SELECT JSONExtractString(payload, 'tool') AS tool, "
            "JSONExtractString(payload, 'status') AS status, "
            "JSONExtractString(payload, 'output_json') AS output FROM agent_events "
            "WHERE tenant_id = 'demo' AND event_type = 'ToolExecuted'")}
        assert {t: r["status"] for t, r in executed.items()} == {
            "search_docs": "ok", "query_sql": "ok", "create_ticket": "ok"}, executed
        assert "refund" in executed["search_docs"]["output"].lower()
    finally:
        subprocess.run([agentlog, "down"], check=False, cwd=tmp_path, env=env, capture_output=True,
                       timeout=120)
    assert (home / "logs" / "orchestrator.log").is_file()
    assert any((cache / "agentlog" / "kafka-libs").glob("*/kafka_2.13-*.jar"))
    ours = [install.site_packages / name
            for name in ("schemas", "processors", "policies", "sinks", "streams", "infra")]
    written = [p for pkg in ours for p in pkg.rglob("*")
               if p.name in ("libs", "target") or p.suffix == ".jar"]
    assert not (install.site_packages / ".agentlog").exists() and written == [], written
