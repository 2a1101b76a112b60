"""Settings, read once from the environment (`AGENTLOG_*`) or a settings file.

Local defaults start everything on this machine; setting `AGENTLOG_BOOTSTRAP`,
`AGENTLOG_SCHEMA_REGISTRY_URL` or `AGENTLOG_CLICKHOUSE_URL` swaps in production parts.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CHECKOUT", "REPO_ROOT", "Settings", "load_settings"]

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The folder that holds the packages: a checkout's root, or site-packages for an installed wheel."""
CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file()
"""Running from a source checkout (an editable install included), not from an installed wheel."""


def _default_home() -> Path:
    # A checkout keeps its state beside the code (git-ignored); an installed package never writes
    # into site-packages, so its state goes where the command runs.
    return REPO_ROOT / ".agentlog" if CHECKOUT else Path.cwd() / ".agentlog"


class Settings(BaseSettings):
    """One agentlog installation: where its state lives and how its parts are reached."""

    model_config = SettingsConfigDict(env_prefix="AGENTLOG_", frozen=True, extra="ignore")

    home: Path = Field(default_factory=_default_home)
    """State directory: Kafka data, chDB, backends, logs, pid files; default `.agentlog` in the
    checkout (git-ignored), or in the current directory when installed."""
    bootstrap: str | None = None
    """Kafka bootstrap servers of an existing cluster; unset: run the local broker."""
    kafka_port: int = 19092
    """Port of the local broker."""
    controller_port: int = 19093
    """Port of the local broker's KRaft controller."""
    kafka_heap: str = "768m"
    """JVM heap of the local broker (of each, in a local cluster)."""
    brokers: int = Field(1, ge=1)
    """Local brokers `up` runs: 1, a single node; 3, a KRaft cluster (node n on ports + 2(n-1))."""
    brokers_out: list[int] = []
    """Node ids of the local cluster `up` leaves stopped: taken out for maintenance, or lost for good."""
    replication_factor: int | None = Field(None, ge=1)
    """Replicas of every topic; unset: 1 on the local single node, else 3 (local cluster or bootstrap)."""
    min_insync_replicas: int | None = Field(None, ge=1)
    """Replicas that must hold a write before it is acknowledged; unset: 2 with 3 replicas or more, else 1."""
    partitions: int = 3
    """Partitions of the inbox and events topics (they must match: co-partitioning)."""
    topic_prefix: str = "agentlog"
    """Topic names are `<prefix>.inbox`, `<prefix>.events`, `<prefix>.deadletter`."""
    schema_registry_url: str | None = None
    """Confluent-compatible Schema Registry; unset: Avro single-object encoding."""
    clickhouse_url: str | None = None
    """`http(s)://user:pass@host:port/db` of a ClickHouse server; unset: chDB under home."""
    clickhouse_password: SecretStr | None = None
    """Password for the ClickHouse server, kept out of logs."""
    gateway_port: int = 18080
    """HTTP gateway port (127.0.0.1)."""
    query_port: int = 18123
    """Port where the sink answers analytics queries for other processes (chDB is single-process)."""
    metrics_port: int = Field(18090, ge=0, le=65_535)
    """Base port of the services' Prometheus `/metrics`: each service serves on this plus its
    offset (orchestrator 0, planner 1, guard 2, executor 3, responder 4, sink 5, alerting 6,
    watchdog 7); the gateway serves `/metrics` on its own port. 0: none served."""
    metrics_host: str = "127.0.0.1"
    """Address the services' `/metrics` listen on (e.g. 0.0.0.0 in a container)."""
    smtp_port: int = 10025
    """Port of the local SMTP server the send_email tool relays through."""
    mail_from: str = "agent@yourcompany.com"
    """Sender address of the agent's e-mails."""
    policy_file: Path = REPO_ROOT / "policies" / "default.yaml"
    """Policy the guard enforces."""
    docs_dir: Path = REPO_ROOT / "infra" / "sample" / "docs"
    """Folder that search_docs searches."""
    approval_ttl_s: int = 86_400
    """How long a parked call waits for a person."""
    step_timeout_s: float = Field(30.0, gt=0)
    """Time a worker has to answer a request's first attempt (a tool call adds its own limit)."""
    step_attempts: int = Field(3, ge=1)
    """Attempts per request, the first included; a request out of attempts fails the run."""
    step_backoff: float = Field(2.0, ge=1)
    """Each retry is given this many times the time of the attempt before it."""
    run_timeout_s: float = Field(600.0, ge=0)
    """Time a run may work in all, waits for a person not counted; 0: no limit."""
    memory_timeout_s: float = Field(2.0, gt=0)
    """Time the memory service has to retrieve or store for a run; then the run goes on without it."""
    worker_concurrency: int = Field(4, ge=1)
    """Runs a planner, executor or responder works on at once (the executor keeps as many
    warm sandbox children)."""
    tools_file: Path | None = None
    """YAML of changes to the built-in tools (limits, costs, call budgets) and tools of the
    installation's own (entry points); unset: the four built-ins as shipped."""
    sandbox: Literal["enforced", "process"] = "enforced"
    """How tools run: "enforced" in bubblewrap boxes (namespaces, read-only filesystem, no network
    unless registered, process cap); "process" in plain child processes (no namespaces)."""
    default_tenant: str = "default"
    """Tenant of requests that name none."""
    instance_id: str = "0"
    """This process's instance of its service: its static group membership and transactional id."""
    tenant_daily_budget_usd: float | None = None
    """What a tenant may spend per UTC day on model and tool calls; unset: no daily limit."""
    tenant_budgets: dict[str, float] = {}
    """Per-tenant daily limits over the default, e.g. AGENTLOG_TENANT_BUDGETS='{"acme": 25}'."""
    models_file: Path = REPO_ROOT / "processors" / "models" / "models.yaml"
    """Model providers, prices and each route's planner model."""

    # Alerts: the rules the alerting processor evaluates, and where it delivers what they raise.
    alert_rules_file: Path = REPO_ROOT / "policies" / "alerts.yaml"
    """Alert rules (page, warn, block), validated like the policies."""
    alert_webhook_url: str | None = None
    """Where each alert raised or resolved is POSTed as JSON; unset: no delivery."""
    alert_webhook_attempts: int = Field(6, ge=1)
    """Attempts per delivery, the first included; after the last, the alert is dead-lettered."""
    alert_webhook_backoff_s: float = Field(0.5, gt=0)
    """Wait before the first retry, doubled for each retry after it."""
    alert_webhook_timeout_s: float = Field(5.0, gt=0)
    """Time the webhook has to answer one attempt."""

    # The gateway's limits: what one client may hold of it, and for how long.
    gateway_read_timeout_s: float = Field(10.0, gt=0)
    """Time a client has to send a request's head, and then its body; after it, 408."""
    gateway_streams_per_key: int = Field(8, ge=1)
    """Event streams (`GET /v1/runs/{id}/events`) one API key may hold open at once; more: 429."""
    gateway_streams_total: int = Field(64, ge=1)
    """Event streams the gateway holds open at once, all keys together; more: 429."""
    gateway_stream_max_s: float = Field(3600.0, gt=0)
    """Longest an event stream stays open, whatever its `timeout_s`."""
    gateway_stream_reads: int = Field(8, ge=1)
    """Log reads the open event streams make at once, each in a thread."""
    gateway_claims: int = Field(100_000, ge=1)
    """Idempotency keys and decided calls the gateway remembers, so a conflicting request is refused
    at once; an older key is checked against the log."""

    # State that follows live work, and processes that heal.
    snapshot_interval_s: float = Field(5.0, gt=0)
    """How often a folding processor writes snapshots of the runs that changed (a restart folds
    at most this much of the log after them)."""
    snapshot_max_events: int = Field(10_000, ge=1)
    """Events folded after which a checkpoint is written even before the interval passed."""
    sink_batch_s: float = Field(0.3, gt=0, le=60)
    """The longest the sink gathers events before an insert (ClickHouse prefers fewer, larger
    inserts); run reads stay exact whatever it is, their tail of the log is longer."""
    stall_s: float = Field(90.0, gt=0)
    """A service whose main loop is silent this long, or that makes no progress this long while
    the cluster answers, is restarted by the watchdog."""

    @property
    def local_kafka(self) -> bool:
        return self.bootstrap is None

    @property
    def broker_ports(self) -> list[int]:
        """Client port of each local node, node 1 first: kafka_port, then every second port above it."""
        return [self.kafka_port + 2 * i for i in range(self.brokers)]

    @property
    def controller_ports(self) -> list[int]:
        """KRaft controller port of each local node, spaced like `broker_ports`."""
        return [self.controller_port + 2 * i for i in range(self.brokers)]

    @property
    def bootstrap_servers(self) -> str:
        # Every local node: a client started while one is down still finds the cluster.
        return self.bootstrap or ",".join(f"127.0.0.1:{p}" for p in self.broker_ports)

    @property
    def topic_replicas(self) -> int:
        """Replication factor of agentlog's topics (and, locally, of Kafka's internal ones)."""
        if self.replication_factor is not None:
            return self.replication_factor
        return min(3, self.brokers) if self.local_kafka else 3

    @property
    def topic_min_insync(self) -> int:
        if self.min_insync_replicas is not None:
            return self.min_insync_replicas
        return 2 if self.topic_replicas >= 3 else 1

    @property
    def inbox_topic(self) -> str:
        return f"{self.topic_prefix}.inbox"

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}.events"

    @property
    def deadletter_topic(self) -> str:
        return f"{self.topic_prefix}.deadletter"

    @property
    def alerts_topic(self) -> str:
        return f"{self.topic_prefix}.alerts"

    @property
    def alert_facts_topic(self) -> str:
        """The alerting processor's repartition topic: what each event adds to its scopes, by scope."""
        return f"{self.topic_prefix}.alerting.facts"

    @property
    def gates_topic(self) -> str:
        """Where `agentlog gate` records its verdicts, for the block rule."""
        return f"{self.topic_prefix}.gates"

    @property
    def memory_topic(self) -> str:
        """The memory log: every change of a tenant's long-term memory, keyed by tenant."""
        return f"{self.topic_prefix}.memory"

    def snapshots_topic(self, service: str) -> str:
        """The compacted snapshot topic of a folding processor."""
        return f"{self.topic_prefix}.snapshots.{service}"

    @property
    def approval_ttl(self) -> timedelta:
        return timedelta(seconds=self.approval_ttl_s)

    def tenant_budget(self, tenant_id: str) -> float | None:
        return self.tenant_budgets.get(tenant_id, self.tenant_daily_budget_usd)

    def path(self, *parts: str) -> Path:
        """A path under the state directory."""
        return self.home.joinpath(*parts)

    def to_env(self) -> dict[str, str]:
        """These settings as `AGENTLOG_*` variables, so child processes read the same ones."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
            elif isinstance(value, dict):
                text = json.dumps(value)
            else:
                text = str(value)
            env[f"AGENTLOG_{name.upper()}"] = text
        return env


def load_settings() -> Settings:
    """Settings from the environment, over `AGENTLOG_SETTINGS_FILE` (default `agentlog.env`)."""
    env_file = Path(os.environ.get("AGENTLOG_SETTINGS_FILE", "agentlog.env"))
    settings = Settings(_env_file=env_file if env_file.exists() else None)
    if not settings.home.is_absolute():
        settings = settings.model_copy(update={"home": settings.home.resolve()})
    return settings
