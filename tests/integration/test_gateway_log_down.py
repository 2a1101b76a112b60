"""With the broker unreachable, the gateway says so (503, JSON) instead of calling an existing
run missing: a client retries a 503, it gives up on a 404."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from streams.api_keys import KeyStore
from streams.gateway import create_app
from streams.kafka import make_codec
from streams.settings import Settings
from tests.free_ports import free_ports

pytestmark = pytest.mark.integration


def test_an_unreachable_log_is_a_503_not_a_404(tmp_path):
    (closed,) = free_ports(1)  # nothing listens there
    settings = Settings(home=tmp_path, bootstrap=f"127.0.0.1:{closed}")
    keys = KeyStore(tmp_path / "keys.json")
    _, secret = keys.create(tenant_id="acme", name="tests")
    client = TestClient(create_app(settings, make_codec(settings), keys))
    response = client.get("/v1/runs/5f00ad7e-6769-5414-8bba-52b3cf1e4dbd",
                          headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["status"] == 503 and "event log is not reachable" in error["message"]
    assert "did not answer within 10 s" in error["message"]
