"""Where the local tool backends keep their state and reach their services.

The runtime builds one `BackendConfig` and hands it to every call; the sandbox ships it to its
child process as JSON, so it holds plain values only and never looks at the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["BackendConfig"]


@dataclass(frozen=True, kw_only=True)
class BackendConfig:
    """Paths and addresses of the four tools' backends."""

    docs_dir: str
    """Folder of markdown/text documents that `search_docs` indexes."""
    sql_path: str
    """SQLite business database that `query_sql` opens read-only."""
    tickets_path: str
    """SQLite file of the ticket store (created on first use)."""
    smtp_host: str
    """Host of the SMTP relay `send_email` delivers to."""
    smtp_port: int
    """Port of that relay."""
    mail_from: str
    """Address put in the From header and used as envelope sender."""

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackendConfig:
        """Rebuild a config from `to_dict()` output; unknown keys are an error, not ignored."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        missing = names - set(data)
        if unknown or missing:
            raise ValueError(
                f"bad BackendConfig: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        return cls(
            docs_dir=str(data["docs_dir"]),
            sql_path=str(data["sql_path"]),
            tickets_path=str(data["tickets_path"]),
            smtp_host=str(data["smtp_host"]),
            smtp_port=int(data["smtp_port"]),
            mail_from=str(data["mail_from"]),
        )
