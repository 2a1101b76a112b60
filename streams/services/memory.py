"""Memory service: owns the memory store, sweeps expired memories every
`AGENTLOG_MEMORY_SWEEP_S`, and answers the other processes' memory operations on its loopback
port (`AGENTLOG_MEMORY_PORT`), since chDB serves one process per path.

It does not yet follow the log: retrieving for RunStarted and storing on RunCompleted (the
MemoryRetrieved / MemoryStored events) are to come, in this process, on the worker loop.
"""

from __future__ import annotations

import threading
import time

from streams.memory_api import serve_memory
from streams.memory_ops import LocalMemory, MemorySettings, open_local
from streams.service import ServiceContext, utcnow
from streams.settings import load_settings

__all__ = ["main"]


def main() -> None:
    settings = load_settings()
    memory = MemorySettings()
    ctx = ServiceContext("memory", settings)
    store = open_local(settings)
    lock = threading.Lock()
    ops = LocalMemory(store)
    server = serve_memory(ops, lock, settings=settings, memory=memory)
    ctx.log.info("memory store at %s, answering on 127.0.0.1:%d",
                 settings.clickhouse_url or settings.path("memory"), memory.port)
    ctx.mark_ready()
    next_sweep = 0.0
    try:
        while not ctx.stopping:
            if time.monotonic() >= next_sweep:
                with lock:
                    gone = store.sweep(now=utcnow())
                if gone:
                    ctx.log.info("swept %d expired memories", gone)
                next_sweep = time.monotonic() + memory.sweep_s
            ctx.progressed()
            ctx.beat()
            time.sleep(0.2)
    finally:
        server.shutdown()
        store.close()
        ctx.close()


if __name__ == "__main__":
    main()
