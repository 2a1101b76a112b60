"""The runs that ended and left memory, kept small: a 16-byte digest each.

Enough to tell a late or repeated record of a long-finished run (dropped) from a record of a
run that never existed (dead-lettered), without holding the run. Sealed pages live in one
sorted numpy array (binary search); the open page is a set. Pages are what the snapshot topic
stores (`FinishedRunsPage`), so a restart reads them instead of the runs' history.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["FinishedRuns", "PAGE_SIZE", "digest"]

PAGE_SIZE = 4096
"""Digests per page: a full page is 64 KiB on the snapshot topic."""
_DTYPE = np.dtype("S16")


def digest(run_id: str) -> bytes:
    return hashlib.blake2b(run_id.encode(), digest_size=16).digest()


class FinishedRuns:
    def __init__(self) -> None:
        self._sealed = np.empty(0, dtype=_DTYPE)
        self._page = 0
        """Number of the page being filled (pages below it are sealed)."""
        self._open: set[bytes] = set()
        self._unwritten: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._sealed) + len(self._open)

    def __contains__(self, run_id: str) -> bool:
        d = digest(run_id)
        if d in self._open:
            return True
        i = int(np.searchsorted(self._sealed, d))
        # numpy drops an S16 value's trailing zero bytes; every digest has 16.
        return i < len(self._sealed) and bytes(self._sealed[i]).ljust(16, b"\0") == d

    def add(self, run_id: str) -> None:
        self._open.add(digest(run_id))
        self._unwritten[self._page] = b""  # the open page changed
        if len(self._open) >= PAGE_SIZE:
            self._seal()

    def unwritten(self) -> dict[int, bytes]:
        """The pages that changed since this was last asked (page number -> sorted digests)."""
        pages = {n: blob or self._blob() for n, blob in self._unwritten.items()}
        self._unwritten = {}
        return pages

    def load(self, pages: dict[int, bytes]) -> None:
        """Restore from stored pages: every page below the last is sealed, the last is open."""
        if not pages:
            return
        last = max(pages)
        sealed = [np.frombuffer(pages[n], dtype=_DTYPE) for n in sorted(pages) if n != last]
        if sealed:
            self._sealed = np.sort(np.concatenate([self._sealed, *sealed]))
        self._page = last
        blob = pages[last]
        self._open = {blob[i:i + 16] for i in range(0, len(blob) - 15, 16)}
        if len(self._open) >= PAGE_SIZE:
            self._seal()
            self._unwritten.clear()

    def _blob(self) -> bytes:
        return b"".join(sorted(self._open))

    def _seal(self) -> None:
        blob = self._blob()
        self._unwritten[self._page] = blob
        page = np.frombuffer(blob, dtype=_DTYPE)  # sorted already: merged in one pass, not re-sorted
        self._sealed = np.insert(self._sealed, np.searchsorted(self._sealed, page), page)
        self._page += 1
        self._open = set()
