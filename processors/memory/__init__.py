"""Long-term memory: records and their expiry (`records`, pure), ranking (`retrieval`, bm25s) and
PII redaction (`redaction`, Presidio). The store is `sinks/memory_store.py`."""
