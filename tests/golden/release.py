"""Release the current event schema: `python -m tests.golden.release`.

Writes `schemas/history/agentlog.Event.v<N+1>.avsc` (the schema with every type inlined) and
`tests/golden/events-v<N+1>.avro` (one event of each type written with it), which the schema
evolution tests read with every later schema. Refuses when the current schema is released.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import fastavro
from fastavro.schema import parse_schema

from schemas.codec import HISTORY_DIR, event_fingerprint, event_schema, schema_fingerprint
from tests.factories import envelope, one_of_each

GOLDEN = Path(__file__).parent


def main() -> int:
    released = {int(m.group(1)): p for p in HISTORY_DIR.glob("agentlog.Event.v*.avsc")
                if (m := re.search(r"\.v(\d+)\.avsc$", p.name))}
    if any(schema_fingerprint(json.loads(p.read_text())) == event_fingerprint()
           for p in released.values()):
        print("the current schema is already released", file=sys.stderr)
        return 1
    version = max(released, default=0) + 1
    schema = event_schema()
    (HISTORY_DIR / f"agentlog.Event.v{version}.avsc").write_text(json.dumps(schema, indent=2) + "\n")
    records = []
    for seq, payload in enumerate(one_of_each(), 1):
        record = envelope(payload, seq=seq).model_dump()
        record["payload"] = (f"agentlog.{type(payload).__name__}", record["payload"])
        records.append(record)
    with (GOLDEN / f"events-v{version}.avro").open("wb") as f:
        fastavro.writer(f, parse_schema(schema), records)
    print(f"released agentlog.Event v{version} ({len(records)} golden events)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
