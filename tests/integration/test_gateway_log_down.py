"""With the broker unreachable, the gateway says so (503, JSON) instead of calling an existing
run missing: a client retries a 503, it gives up on a 404. The real gateway process, over HTTP,
its bootstrap a local port nothing listens on."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from streams.api_keys import KeyStore, api_keys_file
from streams.settings import REPO_ROOT, Settings
from tests.free_ports import free_ports
from tests.stack import eventually

pytestmark = pytest.mark.integration


def test_an_unreachable_log_is_a_503_not_a_404(tmp_path):
    closed, port = free_ports(2)
    settings = Settings(home=tmp_path, bootstrap=f"127.0.0.1:{closed}", gateway_port=port)
    _, secret = KeyStore(api_keys_file(settings)).create(tenant_id="acme", name="tests")
    env = {"PATH": "/usr/bin:/bin", **settings.to_env()}
    gateway = subprocess.Popen([sys.executable, "-m", "streams.services.gateway"], cwd=REPO_ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        eventually(lambda: _answers(f"{url}/healthz"), what="the gateway to listen")
        response = httpx.get(f"{url}/v1/runs/5f00ad7e-6769-5414-8bba-52b3cf1e4dbd",
                             headers={"Authorization": f"Bearer {secret}"}, timeout=60)
    finally:
        gateway.terminate()
        gateway.wait(30)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["status"] == 503 and "event log is not reachable" in error["message"]
    assert "did not answer within 10 s" in error["message"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
