"""`/v1/memories`: search, import and forget the long-term memories of the caller's tenant.

The tenant is always the key's: no request names another. Reading takes the `read` role, importing
and forgetting the `submit` role, as the rest of the gateway. The operations are those of
`agentlog memory` (`streams/memory_ops.py`): through the memory service when it owns the local
store, else on the store opened for the request (one at a time in this process: chDB serves one
process per path, and this process opens it only for the request's time).
"""


import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from processors.memory.records import MAX_TEXT
from streams.api_keys import ApiKey
from streams.gateway_schema import FreeText, Text, errors
from streams.memory_ops import MemoryOps, MemoryRefused, memory_ops
from streams.settings import Settings

__all__ = ["add_memory_routes", "MemoryHit", "MemorySearch", "MemoryLine", "MemoryImport",
           "MemoryImported", "MemoryForgotten"]

T = TypeVar("T")


class MemoryHit(BaseModel):
    id: str
    text: str = Field(description="Redacted when it was stored.")
    score: float = Field(description="Higher is better; comparable within one query only.")
    expires_at: str = Field(description="ISO 8601, UTC.")


class MemorySearch(BaseModel):
    query: str
    results: list[MemoryHit]


class MemoryLine(BaseModel):
    """One memory to store (the fields of an `agentlog memory import` line)."""

    text: Text = Field(max_length=MAX_TEXT)
    id: FreeText | None = Field(default=None, min_length=1, max_length=128)
    subject: FreeText = Field(default="", max_length=256)
    created_at: str | None = Field(default=None, max_length=64, description="ISO 8601; default: now.")
    ttl_s: int | None = Field(default=None, gt=0, le=100 * 365 * 86_400,
                              description="Lifetime in seconds; default: the tenant's.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class MemoryImport(BaseModel):
    memories: list[MemoryLine] = Field(min_length=1, max_length=1000)


class MemoryImported(BaseModel):
    stored: int
    expired: int = Field(description="Already expired when imported: left out.")
    ids: list[str]


class MemoryForgotten(BaseModel):
    forgotten: list[str] = Field(description="The ids deleted.")


def _actor(key: ApiKey) -> str:
    """Who changed the memory, as the memory log records it: the key that signed the request."""
    return f"key:{key.id} ({key.name})"


_NOT_OPTED_IN = "The tenant has not opted in to long-term memory (agentlog memory opt-in)."


def add_memory_routes(app: FastAPI, settings: Settings, needs: Callable[[str], Any]) -> None:
    """Add the memory routes to the gateway's app; `needs(role)` is its key-and-role dependency."""
    one_at_a_time = threading.Lock()

    def with_ops(work: Callable[[MemoryOps], T]) -> T:
        try:
            with one_at_a_time, memory_ops(settings) as ops:
                return work(ops)
        except MemoryRefused as exc:
            raise HTTPException(409 if "opted in" in str(exc) else 422, str(exc)) from None
        except (OSError, RuntimeError) as exc:
            raise HTTPException(503, f"the memory store is not reachable: {exc}") from None

    @app.get("/v1/memories", response_model=MemorySearch, responses=errors(400, 401, 403, 422, 503))
    async def search_memories(
            key: Annotated[ApiKey, needs("read")],
            q: Annotated[Text, Query(min_length=1, max_length=4096, description="What to look for.")],
            k: Annotated[int, Query(ge=1, le=100)] = 10,
            subject: Annotated[FreeText | None, Query(max_length=256)] = None) -> dict[str, Any]:
        """The tenant's memories that answer `q` best (expired ones never)."""
        results = await run_in_threadpool(
            with_ops, lambda ops: ops.search(key.tenant_id, q, k=k, subject=subject))
        return {"query": q, "results": results}

    @app.post("/v1/memories", status_code=201, response_model=MemoryImported,
              responses=errors(400, 401, 403, 408, 409, 413, 422, 503, s409=_NOT_OPTED_IN))
    async def import_memories(body: MemoryImport, key: Annotated[ApiKey, needs("submit")]) -> dict[str, Any]:
        """Store memories, redacted; none unless all are valid, and none for a tenant not opted in."""
        lines = [m.model_dump(exclude_none=True) for m in body.memories]
        done = await run_in_threadpool(with_ops, lambda ops: ops.import_lines(key.tenant_id, lines,
                                                                                actor=_actor(key)))
        return {"stored": done["stored"], "expired": done["expired"], "ids": done["ids"]}

    @app.delete("/v1/memories/{memory_id}", response_model=MemoryForgotten,
                responses=errors(400, 401, 403, 404, 503, s404="No such memory of the key's tenant."))
    async def forget_memory(memory_id: Annotated[str, Path(min_length=1, max_length=128)],
                            key: Annotated[ApiKey, needs("submit")]) -> dict[str, Any]:
        """Forget one memory."""
        if "\x00" in memory_id:
            raise HTTPException(400, "memory_id: must not contain NUL bytes")
        done = await run_in_threadpool(with_ops, lambda ops: ops.forget(
            key.tenant_id, memory_id=memory_id, subject=None, everything=False, actor=_actor(key)))
        if not done["forgotten"]:
            raise HTTPException(404, f"no memory {memory_id}")
        return {"forgotten": done["forgotten"]}

    @app.delete("/v1/memories", response_model=MemoryForgotten, responses=errors(400, 401, 403, 422, 503))
    async def forget_memories(
            key: Annotated[ApiKey, needs("submit")],
            subject: Annotated[FreeText | None, Query(max_length=256)] = None,
            everything: Annotated[bool, Query(alias="all", description="Forget every memory of the tenant.")]
            = False) -> dict[str, Any]:
        """Forget a subject's memories (`subject`) or all of the tenant's (`all=true`), one of them."""
        if (subject is None) == (not everything):
            raise HTTPException(422, "give subject or all=true, one of them")
        done = await run_in_threadpool(with_ops, lambda ops: ops.forget(
            key.tenant_id, memory_id=None, subject=subject, everything=everything, actor=_actor(key)))
        return {"forgotten": done["forgotten"]}
