"""Where the tool backends of an installation live (all under the state directory)."""

from __future__ import annotations

from processors.tools.backends.config import BackendConfig
from streams.settings import Settings

__all__ = ["backend_config"]


def backend_config(settings: Settings) -> BackendConfig:
    return BackendConfig(
        docs_dir=str(settings.docs_dir),
        sql_path=str(settings.path("backends", "shop.db")),
        tickets_path=str(settings.path("backends", "tickets.db")),
        smtp_host="127.0.0.1",
        smtp_port=settings.smtp_port,
        mail_from=settings.mail_from,
    )
