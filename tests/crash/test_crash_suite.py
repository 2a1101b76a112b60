"""The crash suite: hundreds of runs with tickets and e-mails while every process of the stack
is killed with SIGKILL at random moments and restarted, and a broker is killed once.

It runs twice: on the single node, whose broker is killed half-way and restarted; and on a local
three-broker cluster (replication factor 3, min ISR 2), one of whose brokers is killed half-way
for good: taken out of what `agentlog up` starts, as a machine that is lost, so the rest of the
suite runs on two brokers.

Afterwards, from the log, the backends and ClickHouse themselves: every run reached a terminal
event; per run, seq is dense from 1 with no repeat; every approved ticket and e-mail call left
exactly one ticket or message; ClickHouse holds every event once. The counts are printed.

Run it alone with `make crash` (or `pytest -m crash`); AGENTLOG_CRASH_RUNS (single node),
AGENTLOG_CRASH_CLUSTER_RUNS (cluster) and AGENTLOG_CRASH_SEED change its size and its random schedule.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from tests.crash.chaos import (
    SERVICES,
    Chaos,
    approve,
    check_outcome,
    print_report,
    submit,
    wait_for_runs,
)
from tests.stack import Stack, eventually, running_stack

pytestmark = [pytest.mark.crash, pytest.mark.timeout(1500)]

SEED = int(os.environ.get("AGENTLOG_CRASH_SEED", str(int(time.time()))))
SUBMIT_S = 40.0
"""About how long the clients take to submit their runs: a round of kills takes about as long."""


@dataclass(frozen=True)
class Layout:
    brokers: int
    runs: int
    broker_back: bool
    """Whether the killed broker is started again (single node) or stays dead (cluster)."""


LAYOUTS = [
    pytest.param(Layout(1, int(os.environ.get("AGENTLOG_CRASH_RUNS", "300")), True), id="single-node"),
    pytest.param(Layout(3, int(os.environ.get("AGENTLOG_CRASH_CLUSTER_RUNS", "120")), False),
                 id="three-brokers"),
]


@pytest.fixture(scope="module", params=LAYOUTS)
def layout(request: pytest.FixtureRequest) -> Layout:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def stack(layout: Layout, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Short step timeouts: a request lost with a killed process is asked again soon.
    with running_stack(tmp_path_factory.mktemp(f"crash-home-{layout.brokers}"), brokers=layout.brokers,
                       AGENTLOG_STEP_TIMEOUT_S="10") as s:
        yield s


def test_topics_are_replicated_as_the_layout_allows(stack: Stack, layout: Layout):
    """Before anything breaks: every topic the runtime rests on (Kafka's own included) has the
    layout's replication factor and min ISR, and every broker serves."""
    rf, isr = (3, 2) if layout.brokers == 3 else (1, 1)
    topics = {t["topic"]: t for t in stack.cli_json("topics")}
    assert set(topics) >= {stack.settings.events_topic, stack.settings.inbox_topic,
                           stack.settings.deadletter_topic, "__consumer_offsets", "__transaction_state"}
    for name, t in topics.items():
        assert (t["replication_factor"], t["min_insync_replicas"], t["problems"]) == (rf, isr, []), (name, t)
    assert topics[stack.settings.events_topic]["retention_ms"] == "-1"
    brokers = stack.cli_json("status")["kafka"]["brokers"]
    assert [(b["node_id"], b["alive"], b["serving"]) for b in brokers] == \
        [(n, True, True) for n in range(1, layout.brokers + 1)], brokers


def _broker_kills(chaos: Chaos) -> dict[str, int]:
    return {k: n for k, n in chaos.kills.items() if k.startswith("kafka")}


def _pid(stack: Stack, name: str) -> int | None:
    st = stack.cli_json("status")
    if name.startswith("kafka"):
        node = next(b for b in st["kafka"]["brokers"] if b["name"] == name)
        return node["pid"] if node["alive"] else None
    service = st["services"][name]
    return service["pid"] if service["alive"] else None


def _kill(stack: Stack, name: str) -> bool:
    pid = _pid(stack, name)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL)
    return True


def _busiest_broker(stack: Stack, rng: random.Random) -> str:
    """The node whose loss moves the most: it leads the most partitions of the runtime's topics
    and of Kafka's offsets and transaction state, and the quorum if it is the active controller."""
    admin = AdminClient({"bootstrap.servers": stack.settings.bootstrap_servers, "log_level": 0})
    meta = admin.list_topics(timeout=10)
    load: Counter[int] = Counter(dict.fromkeys(meta.brokers, 0))
    for name, topic in meta.topics.items():
        if name.startswith(stack.settings.topic_prefix) or name in ("__consumer_offsets",
                                                                     "__transaction_state"):
            load.update(p.leader for p in topic.partitions.values())
    load[meta.controller_id] += 1
    top = max(load.values())
    return f"kafka-{rng.choice(sorted(b for b, n in load.items() if n == top))}"


def _break_things(stack: Stack, layout: Layout, chaos: Chaos, rng: random.Random,
                  until: threading.Event) -> None:
    """SIGKILL one process at a time at random moments, each service in turn (shuffled), a broker
    once half-way; `agentlog up` restarts whatever is down, as a process manager would, except a
    broker lost for good."""
    order: list[str] = []
    broker_killed = False
    try:
        while not until.is_set():
            time.sleep(rng.uniform(0.3, 1.5))
            if not broker_killed and len(chaos.runs) >= layout.runs // 2:
                broker_killed = True
                name = "kafka" if layout.brokers == 1 else _busiest_broker(stack, rng)
                if not layout.broker_back:
                    # Marked before the kill, so no `up` can bring it back: the machine is gone.
                    stack.take_out(int(name.removeprefix("kafka-")))
            else:
                order = order or rng.sample(SERVICES, len(SERVICES))
                name = order.pop()
            if _kill(stack, name):
                chaos.kills[name] += 1
            if name.startswith("kafka"):
                time.sleep(rng.uniform(1, 4))  # the broker stays down a while (or for good)
            stack.cli("up", timeout=300)
    except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
        chaos.errors.append(f"chaos: {exc!r}")


def test_runs_survive_random_kills_and_a_broker_loss(stack: Stack, layout: Layout,
                                                      capsys: pytest.CaptureFixture[str]):
    rng = random.Random(SEED)
    chaos = Chaos()
    label = f"seed {SEED}, {layout.brokers} broker(s)"
    client = stack.client("default")
    client.timeout = httpx.Timeout(40)
    # Four clients submit at once, each its share of the runs.
    prefix = f"crash-{SEED}-{layout.brokers}"
    # Paced so that the runs are in flight while every process is killed in turn.
    pause_s = SUBMIT_S * 4 / layout.runs
    submitters = [threading.Thread(target=submit, args=(client, chaos, prefix, range(k, layout.runs, 4)),
                                   kwargs={"pause_s": pause_s}) for k in range(4)]
    approver = threading.Thread(target=approve, args=(client, chaos))
    stop_breaking = threading.Event()
    breaker = threading.Thread(target=_break_things, args=(stack, layout, chaos, rng, stop_breaking))
    started = time.monotonic()
    for t in (*submitters, approver, breaker):
        t.start()
    for t in submitters:
        t.join()
    eventually(lambda: chaos.errors or (set(SERVICES) <= set(chaos.kills) and _broker_kills(chaos)),
               timeout=180, what="every process to be killed once")
    time.sleep(5)  # kills go on while the last runs are in flight
    stop_breaking.set()
    breaker.join()
    stack.cli("up", timeout=300)
    run_ids = set(chaos.runs.values())
    try:
        by_run = wait_for_runs(stack, chaos, run_ids, label=label, timeout_s=300, stall_s=90)
    finally:
        chaos.done.set()
        approver.join()
    assert not chaos.errors, (label, chaos.errors)
    assert len(chaos.runs) == layout.runs and len(run_ids) == layout.runs
    brokers_killed = _broker_kills(chaos)
    assert set(SERVICES) <= set(chaos.kills) and list(brokers_killed.values()) == [1], chaos.kills
    outcome = check_outcome(stack, by_run, run_ids, label=label)

    extra = []
    if not layout.broker_back:
        # The lost broker stayed lost: the cluster ran on two brokers from half-way to the end.
        (lost,) = brokers_killed
        nodes = {b["name"]: b for b in stack.cli_json("status")["kafka"]["brokers"]}
        assert not nodes[lost]["alive"] and nodes[lost]["out"], nodes[lost]
        assert all(b["alive"] and b["serving"] for n, b in nodes.items() if n != lost), nodes
        topics = stack.cli_json("topics")
        assert all(t["leaderless"] == 0 for t in topics), topics
        under = sum(t["under_replicated"] for t in topics)
        extra.append(f"{lost} lost for good half-way; {under} partition(s) under-replicated at the end, "
                     f"none without a leader")
    print_report(capsys, f"crash suite, {label}: took {time.monotonic() - started:.0f} s; "
                 f"SIGKILLs: {dict(sorted(chaos.kills.items()))}", chaos, outcome, *extra)
    assert outcome.statuses == Counter({"RunCompleted": layout.runs}), outcome.statuses
