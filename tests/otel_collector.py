"""A real OpenTelemetry Collector for tests (built by `infra/otel/build.sh`), and a reader of the
spans its debug exporter prints."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.free_ports import free_ports

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "infra" / "otel" / "bin" / "otelcol-agentlog"
CONFIG = ROOT / "infra" / "otel" / "collector.yaml"

__all__ = ["Collector", "ReceivedSpan", "running_collector", "BINARY"]


@dataclass
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    status: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Collector:
    grpc_port: int
    http_port: int
    output: Path

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def spans(self) -> list[ReceivedSpan]:
        """Every span the collector printed so far."""
        return parse_debug_output(self.output.read_text(errors="replace"))


_FIELD = re.compile(r"^\s*(Trace ID|Parent ID|ID|Name|Kind|Status code)\s*:\s?(.*)$")
_NAMES = {"Trace ID": "trace_id", "Parent ID": "parent_id", "ID": "span_id", "Name": "name", "Kind": "kind",
          "Status code": "status"}
_ATTR = re.compile(r"^\s*-> ([\w.]+): \w+\((.*)\)$")


def parse_debug_output(text: str) -> list[ReceivedSpan]:
    """The spans in the debug exporter's `detailed` output, with their service's name."""
    spans: list[ReceivedSpan] = []
    service = ""
    current: ReceivedSpan | None = None
    section = ""
    for line in text.splitlines():
        # Each log line of the exporter is prefixed by the collector's logger; the payload follows.
        if "Resource attributes:" in line:
            section, current = "resource", None
            continue
        if re.search(r"Span #\d+", line):
            current = ReceivedSpan("", "", "", "", "", "", "")
            current.service = service
            spans.append(current)
            section = "span"
            continue
        if line.strip().startswith("Attributes:"):
            section = "attributes" if current is not None else section
            continue
        if "ScopeSpans #" in line or "ResourceSpans #" in line or line.strip().startswith("Events:") \
                or line.strip().startswith("Links:"):
            section = "other" if "ResourceSpans" not in line else "resource-next"
            continue
        attr = _ATTR.match(line)
        if attr:
            key, value = attr.groups()
            if section == "resource" and key == "service.name":
                service = value
            elif section == "attributes" and current is not None:
                current.attributes[key] = value
            continue
        found = _FIELD.match(line)
        if found and current is not None and section == "span":
            key, value = found.groups()
            setattr(current, _NAMES[key], value.strip())
    return spans


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def running_collector(home: Path) -> Iterator[Collector]:
    """The collector on free ports, printing what it receives into `home/collector.out`."""
    if not BINARY.exists():
        raise RuntimeError(f"{BINARY} is missing: run infra/otel/build.sh (make test does)")
    grpc, http = free_ports(2)
    home.mkdir(parents=True, exist_ok=True)
    output = home / "collector.out"
    env = {**os.environ, "OTLP_GRPC_PORT": str(grpc), "OTLP_HTTP_PORT": str(http)}
    with output.open("wb") as out:
        proc = subprocess.Popen([str(BINARY), "--config", str(CONFIG)], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    try:
        deadline = time.monotonic() + 30
        while not (_answers(http) and _answers(grpc)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the collector did not start: {output.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Collector(grpc, http, output)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
