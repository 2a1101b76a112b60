"""The web console: runs, live timelines, the approval queue, metrics and alerts, served by the
gateway at `/` from the static files beside this module (`static/`), on the gateway's JSON API."""

from streams.console.api import add_console

__all__ = ["add_console"]
