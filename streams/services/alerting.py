"""Alerting service: the alert rules (policies/alerts.yaml) evaluated continuously over the log,
alerts raised and resolved on `agentlog.alerts`, and delivered to the webhook when one is set.

Why this service runs on faust-streaming while the others use the confluent-kafka edge: its
work is windowed aggregation keyed by something other than the run. Counting a tenant's or a
route's runs, violations and costs per day, and reading back the seven days before, is what
Faust's windowed tables are (tumbling windows, kept in changelog topics and restored from them
on start or rebalance), and grouping by scope is its repartitioning through a topic. Written on
the edge it would mean a hand-made state store and changelog. The others fold one run at a time
in Kafka transactions (exactly-once, which Faust offers only as an experiment) or are
at-least-once workers that need nothing Faust adds. Nothing here rests on Faust's exactly-once:
alerts are idempotent by (rule, scope, window), and decoding goes through the edge's `Intake`, so
a NULL or undecodable record is dead-lettered and the processor goes on.
"""

from __future__ import annotations

import logging

import faust

from policies.alert_rules import RulesError, RulesReloader
from streams.alerts_app import AlertingApp
from streams.service import ServiceContext
from streams.settings import load_settings


def main() -> None:
    settings = load_settings()
    ctx = ServiceContext("alerting", settings)
    try:
        rules = RulesReloader(settings.alert_rules_file, log=ctx.log)
    except RulesError as exc:
        ctx.log.error("cannot start without good alert rules: %s", exc)
        raise SystemExit(2) from None
    ctx.log.info("alert rules %s (%s): %s", settings.alert_rules_file, rules.current().version,
                 ", ".join(r.name for r in rules.current().rules))
    processor = AlertingApp(ctx, rules)
    worker = faust.Worker(processor.app, loglevel=logging.INFO, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
