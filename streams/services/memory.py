"""Memory service: memory in the runs' timelines, and the owner of the memory store.

It follows `agentlog.events` like the other workers (folding its runs, `fold=True`, so it knows
which runs have memory): a memory run's RunStarted is answered with the memories found for its
request (MemoryRetrieved), and the ResponseFinalized of a memory run that will complete with
what the run leaves, redacted, recorded in the memory log and stored (MemoryStored). Runs of
tenants that have not opted in are not its business. A store that cannot answer is an answer
too (status `unavailable`); one that does not answer in time is the orchestrator's to notice.

Since chDB serves one process per path, it also answers the other processes' memory operations
on its loopback port (`AGENTLOG_MEMORY_PORT`) and sweeps expired memories every
`AGENTLOG_MEMORY_SWEEP_S`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from processors.memory.answers import ACTOR, RETRIEVED_K, not_retrieved, not_stored, retrieved, stored
from processors.memory.records import prepare
from processors.memory.redaction import redactor
from processors.memory.remember import memories_of_finished, retrieval_query
from processors.orchestrator import run_outcome
from processors.results import answer
from processors.state import RunState
from schemas.events import Event, ResponseFinalized, RunStarted
from sinks.memory_store import MemoryStore, NotOptedIn
from streams.memory_api import serve_memory
from streams.memory_log import MemoryLog
from streams.memory_ops import LocalMemory, MemorySettings, open_local
from streams.service import ServiceContext, utcnow
from streams.settings import load_settings
from streams.worker import run_worker

__all__ = ["main"]


def _sweeping(ctx: ServiceContext, store: MemoryStore, lock: threading.Lock, every_s: float) -> None:
    """Delete expired memories now and every `every_s`, beside the worker loop."""
    def sweep() -> None:
        pause, wait = 0.0, threading.Event().wait
        while not ctx.stopping and not wait(pause):
            pause = every_s
            try:
                with lock:
                    gone = store.sweep(now=utcnow())
            except Exception:  # a failed sweep is tried again at the next one
                ctx.log.exception("sweep failed")
                continue
            if gone:
                ctx.log.info("swept %d expired memories", gone)

    threading.Thread(target=sweep, daemon=True, name="memory-sweep").start()


def main() -> None:
    settings = load_settings()
    memory = MemorySettings()
    ctx = ServiceContext("memory", settings)
    store = open_local(settings)
    log = MemoryLog(settings, timeout_s=settings.memory_timeout_s)
    ops = LocalMemory(store, log=log, actor=ACTOR)
    lock = threading.Lock()
    server = serve_memory(ops, lock, settings=settings, memory=memory)
    ctx.log.info("memory store at %s, answering on 127.0.0.1:%d",
                 settings.clickhouse_url or settings.path("memory"), memory.port)
    redact = redactor()  # built once: loading Presidio takes about a second
    _sweeping(ctx, store, lock, memory.sweep_s)

    def retrieve(event: Event, started: RunStarted) -> Event:
        try:
            with lock:
                found = store.search(event.tenant_id, retrieval_query(started), k=RETRIEVED_K,
                                     subject=started.memory_subject, now=utcnow())
            payload = retrieved(started, [(f.memory, f.score) for f in found])
        except Exception as exc:  # noqa: BLE001 - the run goes on without memories; the log says why
            ctx.log.warning("run %s: memories not retrieved: %s", event.run_id, exc)
            payload = not_retrieved(started, f"the memory store did not answer: {exc}")
        ctx.log.info("run %s: %d memories retrieved (%s)", event.run_id, len(payload.memories),
                     payload.status)
        return answer(event, payload, actor=ACTOR, now=utcnow())

    def keep(event: Event, final: ResponseFinalized, state: RunState) -> Event:
        items = memories_of_finished(run_id=state.run_id, request=state.text, answer=final.text,
                                     outcome=run_outcome(state), subject=state.memory_subject or "")
        try:
            with lock:
                ttl = store.tenant_ttl(event.tenant_id)
                if ttl is None:
                    raise NotOptedIn(f"tenant {event.tenant_id!r} opted out of long-term memory")
                now = utcnow()
                records = prepare(items, tenant_id=event.tenant_id, redactor=redact, default_ttl_s=ttl,
                                  now=now, source="run", run_id=state.run_id)
                # Recorded in the memory log first, like every change: the store is rebuilt from it.
                ops.keep(event.tenant_id, records, actor=ACTOR, now=now)
            payload = stored(records)
        except Exception as exc:  # noqa: BLE001 - the run completes anyway; the log says why
            ctx.log.warning("run %s: memories not stored: %s", event.run_id, exc)
            payload = not_stored(str(exc))
        ctx.log.info("run %s: %d memories stored (%s)", event.run_id, len(payload.memories), payload.status)
        return answer(event, payload, actor=ACTOR, now=utcnow())

    def handle(event: Event, state: RunState | None) -> Iterable[Event]:
        p = event.payload
        wanted = (isinstance(p, RunStarted) and p.memory) or (
            isinstance(p, ResponseFinalized) and state is not None and state.memory and state.failure is None)
        if wanted and (late := (utcnow() - event.event_time).total_seconds()) > settings.memory_timeout_s:
            # The orchestrator has gone on without memory already (a service that was down, a
            # backlog): an answer would be dropped, and a store the log does not record must not
            # be written.
            ctx.log.info("run %s: %s asked %.1f s ago, past the %g s memory time limit: not answered",
                         event.run_id, event.event_type, late, settings.memory_timeout_s)
            return
        if isinstance(p, RunStarted) and p.memory:
            yield retrieve(event, p)
        elif isinstance(p, ResponseFinalized) and state is not None and state.memory \
                and state.failure is None:
            yield keep(event, p, state)

    try:
        run_worker(ctx, handles=frozenset({"RunStarted", "ResponseFinalized"}), handle=handle, fold=True)
    finally:
        server.shutdown()
        log.close()
        store.close()


if __name__ == "__main__":
    main()
