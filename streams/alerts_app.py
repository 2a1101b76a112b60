"""The alerting processor's Faust application: its topics, tables and agents.

    agentlog.events ──(runs table, by run id)──> facts ──(windowed counts, by scope)──> agentlog.alerts
    agentlog.gates  ─────────────────────────────> facts                                     │
                                                                    webhook <── deliveries ──┘

* `events` agent: decodes each event through the edge's `Intake` (NULL, garbage: dead-lettered),
  follows each live run in a table keyed by run id (its tenant, route, whether its success is
  spoiled) and sends what the event adds to its scopes (`tenant:…`, `route:…`) to the facts
  topic, keyed by scope, timestamped with the event's time.
* `gates` agent: forwards each gate verdict to the facts topic under `candidate:<name>`.
* `facts` agent: one tumbling windowed table per windowed rule (counts per scope and window,
  with a changelog topic), a table of each rule's alert state per scope; decides with the pure
  `processors.alerting` and produces the alerts it raises or resolves.
* `deliveries` agent (with a webhook URL): posts each alert record, retried with backoff.

Counts are at least once: after a crash a fact can be counted twice. Alerts do not rest on it:
an alert's id is (rule, scope, window), so raising it again is the same alert, which the sink
stores once and a webhook receiver takes once (the `Idempotency-Key`).
"""

from __future__ import annotations

import logging
import math
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import faust
import httpx
from aiokafka.errors import KafkaError as AIOKafkaError  # type: ignore[import-untyped]
from confluent_kafka import KafkaException
from faust.streams import _current_event
from faust.types import EventT, StreamT

from policies.alert_rules import CostRiseRule, GateRule, RulesReloader, ViolationRateRule
from processors.alerting import (
    Counts,
    Fact,
    RunTrack,
    Track,
    Verdict,
    cost_verdict,
    decide,
    gate_verdict,
    run_facts,
    violation_verdict,
    window_of,
)
from schemas.alert_codec import AlertCodec, GateCodec
from schemas.alerts import GateVerdict
from schemas.codec import DecodeError
from streams.alerts_faust import FaustRecord, broker_urls
from streams.edge import Intake, Outbox, Poison
from streams.kafka import make_codec, producer
from streams.service import ServiceContext
from streams.webhook import deliver

__all__ = ["AlertingApp"]

log = logging.getLogger("alerting")

_BATCH = 1000
_BATCH_S = 0.1
"""Events decided together at most, and the longest wait for a batch to fill."""


class AlertingApp:
    """The Faust app and what its agents share (codecs, the dead-letter outbox, the rules)."""

    def __init__(self, ctx: ServiceContext, rules: RulesReloader) -> None:
        self.ctx = ctx
        settings = self.settings = ctx.settings
        self.rules = rules
        self.intake = Intake(settings, make_codec(settings), service=ctx.name,
                             dead_letters=Outbox(producer(settings)))
        self.alert_codec = AlertCodec()
        self.gate_codec = GateCodec()
        self.processed = 0
        self.raised = 0
        settings.path("alerting").mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            # The consumer group, and the prefix of the changelog topics.
            f"{settings.topic_prefix}-alerting",
            broker=broker_urls(settings.bootstrap_servers),
            store="memory://",  # tables restore from their changelog topics on start
            datadir=str(settings.path("alerting")),
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.topic_replicas,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            key_serializer="json", value_serializer="json",
            web_enabled=False,
            producer_acks=-1,
            # Frequent commits: a restart reprocesses (and counts again) less of the log.
            broker_commit_interval=0.25,
            table_cleanup_interval=30.0,
            worker_redirect_stdouts=False,
        )
        names = (settings.events_topic, settings.gates_topic, settings.alerts_topic)
        self.events, self.gates, self.alerts = (
            self.app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                           value_serializer="raw")
            for name in names)
        self.facts = self.app.topic(settings.alert_facts_topic, key_type=str, internal=True,
                                    partitions=settings.partitions, key_serializer="json",
                                    value_serializer="json")
        self.runs = self.app.Table("runs", default=dict, partitions=settings.partitions)
        self.tracks = self.app.Table("tracks", default=dict, partitions=settings.partitions)
        # Window lengths are fixed for the life of the process: a table's windows are its shape.
        self.windowed = {rule.name: self.app.Table(f"counts-{rule.name}", default=dict,
                                                   partitions=settings.partitions)
                         .tumbling(rule.window_s, expires=_keep(rule)).relative_to_stream()
                         for rule in rules.current().rules if not isinstance(rule, GateRule)}
        self.app.agent(self.events, name="events")(self._on_events)
        self.app.agent(self.gates, name="gates")(self._on_gates)
        self.app.agent(self.facts, name="facts")(self._on_facts)
        if settings.alert_webhook_url:
            self.app.agent(self.alerts, name="deliveries")(self._on_alerts)
        self.app.timer(1.0)(self._tick)

    # ---- events -> facts ------------------------------------------------------------------------

    async def _each(self, stream: StreamT[Any],
                    handle: Callable[[EventT[Any], FaustRecord], Awaitable[None]]) -> None:
        """Run `handle` on every record of `stream`: one it cannot take is dead-lettered with why,
        and the stream goes on; a broker that is away is not the record's fault and is waited out."""
        async for event in stream.events():
            record = FaustRecord(event.message)
            try:
                await handle(event, record)
            except Poison as exc:
                self._park(record, str(exc))
            except (AIOKafkaError, KafkaException):
                raise
            except Exception as exc:
                # Logged with its traceback and parked: nothing a record carries may stop the processor.
                log.exception("record %s[%s]@%s not processed", record.topic(), record.partition(),
                              record.offset())
                self._park(record, f"not processed: {type(exc).__name__}: {exc}")
            # Done with it: committable now. Faust would ack it only when the next record of the
            # stream arrives, leaving the last one of a burst uncommitted until traffic resumes.
            event.ack()
            self._progress()

    async def _on_events(self, stream: StreamT[bytes]) -> None:
        """Events in batches: what a batch adds to a scope in one second is one fact, so a burst
        costs the facts agent a few table writes, not several per event."""
        batches = cast(Any, stream).take_events(_BATCH, within=_BATCH_S)  # a Stream's, not in StreamT
        async for batch in batches:
            adds: dict[tuple[str, int], Counts] = {}
            for event in batch:
                record = FaustRecord(event.message)
                # Table writes go to the changelog partition of the current event: this one's.
                token = _current_event.set(weakref.ref(event))
                try:
                    for fact in self._event(record):
                        key = (fact.scope, math.floor(fact.at))  # windows are whole seconds
                        adds[key] = adds.get(key, Counts()) + fact.counts
                except Poison as exc:
                    self._park(record, str(exc))
                except (AIOKafkaError, KafkaException):
                    raise
                except Exception as exc:
                    log.exception("event %s[%s]@%s not processed", record.topic(), record.partition(),
                                  record.offset())
                    self._park(record, f"not processed: {type(exc).__name__}: {exc}")
                finally:
                    _current_event.reset(token)
            # Sent now and waited for: Faust acks (and later commits) the batch once this returns.
            sent = [await self.facts.send(key=scope, value={"kind": "counts", **counts.to_dict()},
                                          timestamp=float(second), force=True)
                    for (scope, second), counts in adds.items()]
            for future in sent:
                await future
            self.processed += len(batch)
            self.ctx.progressed()

    def _event(self, record: FaustRecord) -> list[Fact]:
        event = self.intake.decode(record)  # type: ignore[arg-type]
        doc = self.runs.get(event.run_id)
        track = RunTrack(**doc) if doc else None
        after, facts = run_facts(event, track)
        if after is None:
            if doc:
                del self.runs[event.run_id]
        elif after != track:
            self.runs[event.run_id] = {"tenant": after.tenant, "route": after.route, "spoiled": after.spoiled}
        return facts

    async def _on_gates(self, stream: StreamT[bytes]) -> None:
        await self._each(stream, self._gate)

    async def _gate(self, _event: EventT[Any], record: FaustRecord) -> None:
        try:
            verdict = self.gate_codec.decode(record.value() or b"")
        except DecodeError as exc:
            raise Poison(f"undecodable: {exc}") from None
        await self.facts.send(key=f"candidate:{verdict.candidate}", timestamp=verdict.at.timestamp(),
                              value={"kind": "gate", **verdict.model_dump(mode="json")})

    # ---- facts -> alerts ------------------------------------------------------------------------

    async def _on_facts(self, stream: StreamT[dict[str, Any]]) -> None:
        await self._each(stream, self._fact)

    async def _fact(self, event: EventT[Any], _record: FaustRecord) -> None:
        scope, value = str(event.key), dict(cast(dict[str, Any], event.value))
        at = float(event.message.timestamp)
        rules = self.rules.current()
        if value.pop("kind", None) == "gate":
            gate = GateVerdict.model_validate(value)
            for rule in rules.of_kind(GateRule):
                # A gate has no time window: the failing verdict that raised it stands for one.
                await self._decide(rule.name, rule.severity, scope, gate_verdict(gate),
                                   (gate.at, gate.at), at)
            return
        add = Counts.from_dict(value)
        kind = scope.split(":", 1)[0]
        for rule in rules.rules:
            table = self.windowed.get(rule.name)
            if table is None or isinstance(rule, GateRule) or kind not in rule.scopes:
                continue
            windows = table[scope]
            current = Counts.from_dict(windows.current(event)) + add
            table[scope] = current.to_dict()
            # A rule edited to another window length keeps the table's until a restart.
            size = table.table.window.size  # type: ignore[union-attr]
            if isinstance(rule, ViolationRateRule):
                baseline = Counts()
                for back in range(1, max(1, math.ceil(rule.baseline_s / size)) + 1):
                    baseline += Counts.from_dict(windows.delta(back * size, event))
                verdict = violation_verdict(rule, current=current, baseline=baseline)
            else:
                assert isinstance(rule, CostRiseRule)
                previous = Counts.from_dict(windows.delta(size, event))
                verdict = cost_verdict(rule, current=current, previous=previous)
            await self._decide(rule.name, rule.severity, scope, verdict, window_of(at, size), at)

    async def _decide(self, rule: str, severity: str, scope: str, verdict: Verdict,
                      window: tuple[datetime, datetime], at: float) -> None:
        key = f"{rule}|{scope}"
        track = Track.from_dict(self.tracks.get(key))
        after, alert = decide(rule=rule, severity=severity, scope=scope, track=track, verdict=verdict,
                              window=window, at=datetime.fromtimestamp(at, UTC))
        if alert is not None:
            # Waited for: the facts' offsets are committed only once the alert is on the topic.
            sent = await self.alerts.send(key=alert.alert_id.encode(), value=self.alert_codec.encode(alert),
                                          force=True)  # now, not when the fact's offset commits
            await sent
            self.raised += 1
            log.info("%s %s %s: %s", alert.kind, alert.severity, alert.scope, alert.summary)
        if after != track:
            self.tracks[key] = after.to_dict()

    # ---- alerts -> webhook ----------------------------------------------------------------------

    async def _on_alerts(self, stream: StreamT[bytes]) -> None:
        url = self.settings.alert_webhook_url
        assert url
        done: OrderedDict[str, None] = OrderedDict()  # a record the topic holds twice is posted once
        async with httpx.AsyncClient(timeout=self.settings.alert_webhook_timeout_s) as client:

            async def post(_event: EventT[Any], record: FaustRecord) -> None:
                try:
                    alert = self.alert_codec.decode(record.value() or b"")
                except DecodeError as exc:
                    raise Poison(f"undecodable: {exc}") from None
                if alert.delivery_id in done:
                    return
                outcome = await deliver(client, url, alert, attempts=self.settings.alert_webhook_attempts,
                                        backoff_s=self.settings.alert_webhook_backoff_s)
                done[alert.delivery_id] = None
                if len(done) > 10_000:
                    done.popitem(last=False)
                if not outcome.delivered:
                    # Alerting goes on; the alert stays on the dead-letter topic for a person.
                    raise Poison(f"webhook delivery failed after {outcome.attempts} attempt(s): "
                                 f"{outcome.last_error}")
                log.info("alert %s delivered (attempt %d)", alert.delivery_id, outcome.attempts)

            await self._each(stream, post)

    # ---- housekeeping ---------------------------------------------------------------------------

    def _park(self, record: FaustRecord, reason: str) -> None:
        self.intake.park(record, reason)  # type: ignore[arg-type]
        assert self.intake.dead_letters is not None
        # Rare, and the record's offset is committed after this returns: wait for the broker.
        self.intake.dead_letters.flush(30)
        self.ctx.parked = sum(self.intake.parked.values())

    def _progress(self) -> None:
        self.processed += 1
        self.ctx.progressed()

    async def _tick(self) -> None:
        if not self.app.rebalancing:
            if not self.ctx.ready_file.exists():
                self.ctx.mark_ready()
            self.ctx.progressed()  # working or idle: the loop answers and is not rebalancing
            self.ctx.lag = await self._lag()
        self.ctx.beat()
        self.rules.current()  # picks up an edit even while no fact arrives

    async def _lag(self) -> int | None:
        """Records waiting in the assigned partitions of the topics the agents read."""
        consumer = self.app.consumer
        sources = {self.settings.events_topic, self.settings.gates_topic, self.settings.alert_facts_topic,
                   self.settings.alerts_topic}
        total, known = 0, False
        try:
            for tp in consumer.assignment():
                if tp.topic not in sources:
                    continue
                high, at = consumer.highwater(tp), await consumer.position(tp)
                if high is None or at is None or high < 0:
                    continue
                known = True
                total += max(high - at, 0)
        except Exception:  # noqa: BLE001 - a figure for the heartbeat; a rebalance may be under way
            return None
        return total if known else None


def _keep(rule: ViolationRateRule | CostRiseRule) -> float:
    """How long a rule's windows are kept: its baseline (or the previous window) and the current."""
    back = rule.baseline_s if isinstance(rule, ViolationRateRule) else rule.window_s
    return back + 2 * rule.window_s

