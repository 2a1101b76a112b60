"""The core runs anywhere: importing it pulls in no Kafka, ClickHouse or HTTP client."""

from __future__ import annotations

import subprocess
import sys

CORE = [
    "schemas.events", "schemas.codec", "processors.state", "processors.orchestrator",
    "processors.planning", "processors.guard", "processors.executor", "processors.responder",
    "processors.plan", "processors.planner_scripted", "processors.models", "policies",
    "processors.replay", "processors.replay.scoring", "processors.replay.gate",
    "processors.replay.candidates", "processors.replay.memo", "processors.memory.records",
    "processors.memory.remember", "processors.memory.answers", "processors.spans",
]
FORBIDDEN = ["confluent_kafka", "faust", "aiokafka", "clickhouse_connect", "chdb", "httpx",
             "requests", "urllib3", "fastapi", "uvicorn", "http.client", "smtplib", "sqlite3",
             "opentelemetry"]


def test_core_modules_import_no_io_library():
    code = (
        "import sys, json\n"
        f"for m in {CORE!r}: __import__(m)\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"the core imported {out.stdout.strip()}"
