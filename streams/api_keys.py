"""Per-tenant API keys of the gateway, stored hashed in a JSON file under the state directory.

A key is shown once, when it is made; the file holds its SHA-256 (keys are 256-bit random
tokens, so a fast hash is enough: there is nothing to brute-force). The gateway re-reads the
file when it changes, so a new or revoked key takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streams.settings import Settings

__all__ = ["ApiKey", "KeyStore", "ROLES", "LOCAL_KEY_NAME", "ensure_local_key",
           "api_keys_file", "local_key_file"]

ROLES = ("submit", "read", "approve")
"""submit: create and cancel runs; read: read runs and approvals; approve: decide parked calls."""
LOCAL_KEY_NAME = "local-default"
_PREFIX = "al_"


@dataclass(frozen=True)
class ApiKey:
    id: str
    """Public handle of the key (for listing and revoking); not a secret."""
    name: str
    tenant_id: str
    sha256: str
    roles: tuple[str, ...] = field(default=ROLES)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """The key file: create, list, revoke, and look a presented key up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._keys: list[ApiKey] = []

    def keys(self) -> list[ApiKey]:
        """The keys as the file holds them now (re-read only when it changed)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._keys = None, []
            return []
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            data = json.loads(self.path.read_text())
            self._keys = [ApiKey(**{**k, "roles": tuple(k["roles"])}) for k in data.get("keys", [])]
            self._stamp = stamp
        return list(self._keys)

    def lookup(self, presented: str) -> ApiKey | None:
        digest = _digest(presented)
        for key in self.keys():
            if hmac.compare_digest(key.sha256, digest):
                return key
        return None

    def create(self, *, tenant_id: str, name: str, roles: tuple[str, ...] = ROLES) -> tuple[ApiKey, str]:
        """A new key; returns it and the secret, which is not stored and cannot be shown again."""
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")
        if not tenant_id.strip():
            raise ValueError("a key belongs to a tenant: give one")
        secret = _PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(id=secrets.token_hex(4), name=name, tenant_id=tenant_id, sha256=_digest(secret),
                     roles=tuple(roles))
        self._write([*self.keys(), key])
        return key, secret

    def revoke(self, key_id: str) -> ApiKey:
        keys = self.keys()
        gone = [k for k in keys if k.id == key_id]
        if not gone:
            raise KeyError(f"no key {key_id}")
        self._write([k for k in keys if k.id != key_id])
        return gone[0]

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": [{**asdict(k), "roles": list(k.roles)} for k in keys]}, indent=1))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)  # atomic: the gateway never reads half a file


def ensure_local_key(store: KeyStore, secret_file: Path, *, tenant_id: str,
                     name: str = LOCAL_KEY_NAME) -> str:
    """The local default key (all roles, the default tenant), made the first time.

    Its secret is kept in `secret_file` (mode 600) so `agentlog up` can print it again: a
    convenience of the local stack; production keys are made with `agentlog keys create`.
    """
    if secret_file.exists():
        secret = secret_file.read_text().strip()
        if store.lookup(secret) is not None:
            return secret
    _, secret = store.create(tenant_id=tenant_id, name=name)
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(secret + "\n")
    os.chmod(secret_file, 0o600)
    return secret


def api_keys_file(settings: Settings) -> Path:
    """Where an installation keeps its hashed keys."""
    return settings.path("gateway", "api_keys.json")


def local_key_file(settings: Settings) -> Path:
    """Where the local default key's secret is kept for `agentlog up` to print."""
    return settings.path("gateway", "local_api_key")
