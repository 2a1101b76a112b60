"""API keys are stored hashed, looked up by their secret, and revocable."""

from __future__ import annotations

import stat

import pytest

from streams.api_keys import KeyStore, ensure_local_key


def test_a_key_is_stored_hashed_and_found_by_its_secret(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    key, secret = store.create(tenant_id="acme", name="ci", roles=("read",))
    text = (tmp_path / "keys.json").read_text()
    assert secret not in text and key.sha256 in text
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
    found = KeyStore(tmp_path / "keys.json").lookup(secret)
    assert found == key and found.roles == ("read",)
    assert store.lookup(secret + "x") is None


def test_revoking_a_key_refuses_it_to_every_reader(tmp_path):
    store, reader = KeyStore(tmp_path / "keys.json"), KeyStore(tmp_path / "keys.json")
    key, secret = store.create(tenant_id="acme", name="ci")
    assert reader.lookup(secret) is not None
    store.revoke(key.id)
    assert reader.lookup(secret) is None
    with pytest.raises(KeyError):
        store.revoke(key.id)


def test_unknown_roles_and_missing_tenants_are_refused(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    with pytest.raises(ValueError, match="unknown role"):
        store.create(tenant_id="acme", name="x", roles=("admin",))
    with pytest.raises(ValueError, match="tenant"):
        store.create(tenant_id=" ", name="x")


def test_the_local_key_is_made_once_and_reused(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    first = ensure_local_key(store, tmp_path / "local", tenant_id="default")
    assert ensure_local_key(store, tmp_path / "local", tenant_id="default") == first
    assert store.lookup(first).tenant_id == "default" and len(store.keys()) == 1
