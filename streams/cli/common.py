"""What every command shares: settings, a console, lazily made Kafka clients."""

from __future__ import annotations

from functools import cached_property
from typing import NoReturn

import click
from confluent_kafka import Producer
from rich.console import Console

from schemas.codec import EventCodec
from streams.kafka import make_codec, producer
from streams.settings import Settings

__all__ = ["Context", "pass_ctx", "fail"]


class Context:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.console = Console(highlight=False)

    @cached_property
    def codec(self) -> EventCodec:
        return make_codec(self.settings)

    @cached_property
    def producer(self) -> Producer:
        return producer(self.settings)


pass_ctx = click.make_pass_decorator(Context)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error to stderr and exit with `code`."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
