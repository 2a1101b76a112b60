"""Response builder service: ResponseRequested -> ResponseDrafted."""

from __future__ import annotations

from collections.abc import Iterable

from processors.responder import draft_response
from processors.state import RunState
from schemas.events import Event
from streams.service import ServiceContext, utcnow
from streams.settings import load_settings
from streams.worker import run_worker


def main() -> None:
    ctx = ServiceContext("responder", load_settings())

    def handle(event: Event, _state: RunState | None) -> Iterable[Event]:
        yield draft_response(event, now=utcnow())

    run_worker(ctx, handles=frozenset({"ResponseRequested"}), handle=handle)


if __name__ == "__main__":
    main()
