"""`/v1/memories` on the gateway's own app (in process, its memory log the stack's): the key's
tenant only, roles as the rest of the gateway, redaction, opt-in, forgetting, declared errors."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from streams.api_keys import KeyStore, api_keys_file
from streams.gateway import create_app
from streams.kafka import make_codec
from streams.memory_ops import LocalMemory, open_local
from streams.settings import load_settings
from tests.free_ports import free_ports


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, stack):
    home = tmp_path_factory.mktemp("gateway-memory")
    mp = pytest.MonkeyPatch()
    mp.setenv("AGENTLOG_HOME", str(home))
    (memory_port,) = free_ports(1)
    mp.setenv("AGENTLOG_MEMORY_PORT", str(memory_port))  # no memory service: the store is opened here
    for name in ("AGENTLOG_KAFKA_PORT", "AGENTLOG_BROKERS"):  # the changes go to the stack's memory log
        mp.setenv(name, stack.env[name])
    settings = load_settings()
    keys = KeyStore(api_keys_file(settings))
    secrets = {
        name: keys.create(tenant_id=tenant, name=name, roles=roles)[1]
        for name, tenant, roles in [
            ("acme", "acme", ("submit", "read", "approve")),
            ("reader", "acme", ("read",)),
            ("globex", "globex", ("submit", "read", "approve")),
        ]
    }
    store = open_local(settings)
    LocalMemory(store).opt_in("acme", ttl_s=3600)
    store.close()
    with TestClient(create_app(settings, make_codec(settings), keys)) as client:
        yield client, {n: {"Authorization": f"Bearer {s}"} for n, s in secrets.items()}
    mp.undo()


def test_import_search_and_forget_for_the_keys_tenant_only(gateway):
    http, key = gateway
    body = {
        "memories": [
            {"id": "code", "text": "Our project code is ORION-7, ask jane.doe@acme.com"},
            {"text": "Refunds above 500 EUR go to finance", "subject": "refunds"},
        ]
    }
    stored = http.post("/v1/memories", json=body, headers=key["acme"])
    assert stored.status_code == 201, stored.text
    assert stored.json()["stored"] == 2 and "code" in stored.json()["ids"]

    found = http.get("/v1/memories", params={"q": "what is our project code?", "k": 1}, headers=key["acme"])
    assert found.status_code == 200
    assert found.json()["results"][0]["text"] == "Our project code is ORION-7, ask <EMAIL_ADDRESS>"
    assert (
        http.get("/v1/memories", params={"q": "project code"}, headers=key["globex"]).json()["results"] == []
    )
    assert http.delete("/v1/memories/code", headers=key["globex"]).status_code == 404

    refused = http.post("/v1/memories", json=body, headers=key["globex"])
    assert refused.status_code == 409 and "opted in" in refused.json()["error"]["message"]
    assert http.post("/v1/memories", json=body, headers=key["reader"]).status_code == 403
    assert http.delete("/v1/memories/code", headers=key["reader"]).status_code == 403

    assert http.delete("/v1/memories/code", headers=key["acme"]).json() == {"forgotten": ["code"]}
    assert http.delete("/v1/memories/code", headers=key["acme"]).status_code == 404
    gone = http.delete("/v1/memories", params={"subject": "refunds"}, headers=key["acme"])
    assert gone.status_code == 200 and len(gone.json()["forgotten"]) == 1
    assert http.get("/v1/memories", params={"q": "refunds"}, headers=key["acme"]).json()["results"] == []


def test_bad_requests_are_declared_errors(gateway):
    http, key = gateway
    assert http.get("/v1/memories", params={"q": "x"}).status_code == 401
    assert http.get("/v1/memories", headers=key["acme"]).status_code == 422
    assert http.post("/v1/memories", json={"memories": []}, headers=key["acme"]).status_code == 422
    assert (
        http.post(
            "/v1/memories", json={"memories": [{"text": "x", "ttl_s": 0}]}, headers=key["acme"]
        ).status_code
        == 422
    )
    bad_time = http.post(
        "/v1/memories", json={"memories": [{"text": "x", "created_at": "soon"}]}, headers=key["acme"]
    )
    assert bad_time.status_code == 422 and "created_at" in bad_time.json()["error"]["message"]
    assert http.delete("/v1/memories", headers=key["acme"]).status_code == 422
    assert (
        http.delete("/v1/memories", params={"subject": "s", "all": "true"}, headers=key["acme"]).status_code
        == 422
    )
    doc = http.get("/openapi.json").json()
    assert {"get", "post", "delete"} <= set(doc["paths"]["/v1/memories"])
    assert "409" in doc["paths"]["/v1/memories"]["post"]["responses"]
