"""Local Apache Kafka 4 nodes (KRaft, each a broker and a controller) run from Maven Central jars:
one node alone, or several forming one cluster over a static quorum.

`ensure_jars()` resolves the jars with Maven (cached in ~/.m2) into `LIBS_DIR`;
`write_config()` and `format_storage()` prepare a node once, `broker_command()` runs it with the
machine's Java.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["LIBS_DIR", "broker_command", "cluster_id", "ensure_jars", "format_storage", "voters",
           "write_config"]

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


def voters(controller_ports: list[int]) -> str:
    """The static KRaft quorum of local nodes 1, 2, … on these controller ports."""
    return ",".join(f"{n}@127.0.0.1:{port}" for n, port in enumerate(controller_ports, start=1))


def write_config(home: Path, *, node_id: int = 1, port: int, controller_port: int, quorum: str | None = None,
                 replicas: int = 1, min_insync: int = 1) -> Path:
    """server.properties for one combined broker + controller on 127.0.0.1, data under `home`.

    `quorum` names every voter (`voters()`); unset: this node alone. `replicas` and `min_insync`
    apply to Kafka's own topics (consumer offsets, transaction state) and to any topic created
    without its own settings.
    """
    home.mkdir(parents=True, exist_ok=True)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": quorum or f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(home / "data"),
        "num.partitions": "3",
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_insync),
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_insync),
        "transaction.state.log.num.partitions": "3",
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_insync),
        # A replica that fell behind never becomes leader: acknowledged writes are never lost.
        "unclean.leader.election.enable": "false",
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


def cluster_id(path: Path) -> str:
    """The id every node of one cluster is formatted with, made once and kept in `path`."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Kafka's Uuid text form: 16 random bytes in URL-safe base64 without padding; like Kafka's
        # own, never one that starts with "-", which a command line takes for an option.
        text = "-"
        while text.startswith("-"):
            text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        path.write_text(text)
    return path.read_text().strip()


def _java(home: Path, heap: str) -> list[str]:
    return ["java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            "-cp", f"{ensure_jars()}/*"]


def format_storage(home: Path, *, cluster: str, heap: str = "256m") -> None:
    """Format the KRaft storage of cluster id `cluster` the first time only."""
    if (home / "data" / "meta.properties").exists():
        return
    subprocess.run(
        [*_java(home, heap), "kafka.tools.StorageTool", "format", f"--cluster-id={cluster}",
         "-c", str(home / "server.properties")],
        check=True, stdout=subprocess.DEVNULL, env={**os.environ},
    )


def broker_command(home: Path, *, heap: str) -> list[str]:
    """The command line of the broker process."""
    return [*_java(home, heap), "kafka.Kafka", str(home / "server.properties")]
