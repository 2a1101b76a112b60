"""In-process admission for the gateway: first-come claims on keys, and counted places.

`Claims` makes "is this Idempotency-Key (or this parked call) taken?" and "take it" one step, so
of concurrent requests exactly one wins; reading the log first and producing after would let
every request that read before the first one landed win too. `Places` bounds what callers hold
at once (open event streams), per holder and in all.

Both live in one event loop and change only between awaits, which is what makes each check and
its update atomic; they hold no thread while a caller waits.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Claims", "Places"]

V = TypeVar("V")


class _Abandoned(Exception):
    """A claim whose claimant was cancelled while it recalled an earlier holder."""


class Claims(Generic[V]):
    """Who holds each key: the first claim wins, for the `capacity` most recently used keys."""

    def __init__(self, *, capacity: int) -> None:
        self._capacity = capacity
        # A key being recalled holds its future; once known, just its holder (a future weighs more).
        self._held: OrderedDict[Hashable, V | _Pending[V]] = OrderedDict()

    async def claim(self, key: Hashable, value: V, *,
                    recall: Callable[[], Awaitable[V | None]] | None = None) -> V:
        """The value that holds `key`: `value` when this is its first claim, else the earlier one.

        recall: for a key not in memory (never claimed here, or forgotten), finds a holder from
        before, e.g. on the log; concurrent claims of the key wait for it, and its error (the log
        did not answer) is theirs too, leaving the key unclaimed."""
        while key in self._held:
            self._held.move_to_end(key)
            held = self._held[key]
            if not isinstance(held, _Pending):
                return held
            try:
                return await asyncio.shield(held.future)
            except _Abandoned:
                continue  # its claimant went away before it knew: claim it afresh
        mine: _Pending[V] = _Pending(asyncio.get_running_loop().create_future())
        self._held[key] = mine
        while len(self._held) > self._capacity:
            self._held.popitem(last=False)
        try:
            earlier = await recall() if recall is not None else None
        except BaseException as exc:
            self._forget(key, mine)
            mine.future.set_exception(_Abandoned() if isinstance(exc, asyncio.CancelledError) else exc)
            mine.future.exception()  # retrieved, whether or not anybody waits for it
            raise
        holder = value if earlier is None else earlier
        mine.future.set_result(holder)
        if self._held.get(key) is mine:
            self._held[key] = holder
        return holder

    def release(self, key: Hashable, value: V) -> None:
        """Give `key` up when the work its claim stood for failed, so a retry may claim it."""
        if key in self._held and self._held[key] == value:
            del self._held[key]

    def _forget(self, key: Hashable, held: _Pending[V]) -> None:
        if self._held.get(key) is held:
            del self._held[key]


@dataclass(frozen=True, slots=True, eq=False)
class _Pending(Generic[V]):
    future: asyncio.Future[V]


class Places:
    """At most `per_holder` places per holder and `total` in all."""

    def __init__(self, *, per_holder: int, total: int) -> None:
        self.per_holder, self.total = per_holder, total
        self._taken: Counter[str] = Counter()

    def take(self, holder: str) -> str | None:
        """Take a place for `holder`; None when taken, else which limit is reached: 'holder' or 'total'."""
        if self._taken[holder] >= self.per_holder:
            return "holder"
        if self._taken.total() >= self.total:
            return "total"
        self._taken[holder] += 1
        return None

    def give_back(self, holder: str) -> None:
        self._taken[holder] -= 1
        if self._taken[holder] <= 0:
            del self._taken[holder]
