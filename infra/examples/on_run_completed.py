"""A consumer service in plain confluent-kafka + fastavro that reacts to RunCompleted.

It needs nothing of agentlog but the published schemas (schemas/avro/*.avsc):

    python infra/examples/on_run_completed.py --bootstrap 127.0.0.1:19092 [--max N]
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Consumer
from fastavro.schema import load_schema

SCHEMA = fastavro.parse_schema(
    load_schema(str(Path(__file__).resolve().parents[2] / "schemas/avro/agentlog.Event.avsc")))


def decode(value: bytes) -> dict[str, Any]:
    # Avro single-object encoding: C3 01, an 8-byte schema fingerprint, then the body.
    assert value[:2] == b"\xc3\x01", "not single-object encoded (a Schema Registry is in use?)"
    event = fastavro.schemaless_reader(io.BytesIO(value[10:]), SCHEMA, return_record_name=True,
                                       return_record_name_override=True)
    assert isinstance(event, dict)  # the schema is a record
    return event


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--bootstrap", default="127.0.0.1:19092")
    args.add_argument("--group", default="billing-service")
    args.add_argument("--max", type=int, default=None)
    opts = args.parse_args()
    consumer = Consumer({"bootstrap.servers": opts.bootstrap, "group.id": opts.group,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    consumer.subscribe(["agentlog.events"])
    handled = 0
    while opts.max is None or handled < opts.max:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        if dict(msg.headers() or [])["event_type"] != b"RunCompleted":
            continue  # skipped without decoding
        value = msg.value()
        if value is None:
            continue  # a tombstone: nothing to decode
        event = decode(value)
        _, done = event["payload"]
        print(json.dumps({"run_id": event["run_id"], "tenant_id": event["tenant_id"],
                          "outcome": done["outcome"], "cost_usd": done["cost_usd"]}), flush=True)
        handled += 1
    consumer.close()


if __name__ == "__main__":
    main()
