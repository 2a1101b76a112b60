"""A single-node Apache Kafka 4 (KRaft, broker + controller) run from Maven Central jars.

`ensure_jars()` resolves the jars with Maven (cached in ~/.m2) into `LIBS_DIR`;
`start()` formats the storage once and runs the broker with the machine's Java.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["LIBS_DIR", "ensure_jars", "write_config", "format_storage", "broker_command"]

POM = Path(__file__).with_name("kafka") / "pom.xml"


def _libs_dir() -> Path:
    # A checkout keeps the jars beside the pom, where `make` fetches them; an installed package
    # never writes into site-packages, so it fetches them once per user, per pom, into the cache.
    if (Path(__file__).resolve().parents[1] / "pyproject.toml").is_file():
        return POM.parent / "libs"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "agentlog" / "kafka-libs" / hashlib.sha256(POM.read_bytes()).hexdigest()[:12]


LIBS_DIR = _libs_dir()
"""The broker's jars: `infra/kafka/libs` in a checkout; installed, `~/.cache/agentlog/kafka-libs/<pom hash>`
(under `$XDG_CACHE_HOME` when set)."""

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = INFO
"""


def ensure_jars() -> Path:
    """The folder of broker jars, fetched with Maven the first time."""
    if not any(LIBS_DIR.glob("kafka_2.13-*.jar")):
        if shutil.which("mvn") is None:
            raise FileNotFoundError(f"Maven (mvn) is needed once, to fetch the Kafka jars into {LIBS_DIR}")
        LIBS_DIR.mkdir(parents=True, exist_ok=True)
        # Fetched aside, then moved in with the broker's own jar last: another `up` fetching at the
        # same time, or after an interrupted fetch, never takes a partial folder for a complete one.
        with tempfile.TemporaryDirectory(prefix=".fetching-", dir=LIBS_DIR.parent) as staging:
            subprocess.run(
                ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
                check=True,
            )
            for jar in sorted(Path(staging).iterdir(), key=lambda p: p.name.startswith("kafka_2.13-")):
                os.replace(jar, LIBS_DIR / jar.name)
    return LIBS_DIR


def write_config(home: Path, *, port: int, controller_port: int) -> Path:
    """server.properties for one node on 127.0.0.1, data under `home`."""
    home.mkdir(parents=True, exist_ok=True)
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(home / "data"),
        "num.partitions": "3",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "3",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        # The event log keeps everything; retention is set per topic by the runtime.
        "log.retention.hours": "-1",
        # A laptop-sized node: fewer request threads than the defaults (3 and 8) on 2 cores.
        "num.network.threads": "2",
        "num.io.threads": "2",
    }
    path = home / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (home / "log4j2.properties").write_text(_LOG4J2)
    return path


def _java(home: Path, heap: str) -> list[str]:
    return ["java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            "-cp", f"{ensure_jars()}/*"]


def format_storage(home: Path, *, heap: str = "256m") -> None:
    """Format the KRaft storage the first time only."""
    if (home / "data" / "meta.properties").exists():
        return
    subprocess.run(
        [*_java(home, heap), "kafka.tools.StorageTool", "format", "-t", str(uuid.uuid4().hex[:22]),
         "-c", str(home / "server.properties")],
        check=True, stdout=subprocess.DEVNULL, env={**os.environ},
    )


def broker_command(home: Path, *, heap: str) -> list[str]:
    """The command line of the broker process."""
    return [*_java(home, heap), "kafka.Kafka", str(home / "server.properties")]
