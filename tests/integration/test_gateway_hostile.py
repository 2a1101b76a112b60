"""The gateway against clients that mean it harm or just misbehave: many open streams, slow or
malformed requests, absurd parameters, races on one Idempotency-Key or one parked call, NUL
bytes. Real HTTP (and raw sockets) against the real gateway process of the session's stack."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from schemas.events import RunStarted
from streams.api_keys import KeyStore, api_keys_file
from streams.kafka import make_codec
from streams.partitioning import partition_for
from streams.runs import read_run
from tests.integration.conftest import Stack, eventually
from tests.integration.test_log_contract import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.gateway_port}"


def _secret(stack: Stack, tenant: str) -> str:
    """A fresh API key of `tenant` with every role (straight into the key file: the gateway
    re-reads it, and this is quicker than the CLI when a test needs many)."""
    return KeyStore(api_keys_file(stack.settings)).create(tenant_id=tenant, name="hostile")[1]


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _error(r: httpx.Response) -> str:
    """The message of an error in the gateway's one shape."""
    assert r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["status"] == r.status_code, body
    return body["error"]["message"]


def _raw_error(reply: bytes) -> tuple[int, str]:
    """Status and message of a raw HTTP/1.1 reply that must be an error in the gateway's shape."""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"].startswith("application/json"), reply
    error = json.loads(body)["error"]
    assert error["status"] == status, reply
    return status, error["message"]


def _parked(stack: Stack, tenant: str) -> str:
    """A run of `tenant` parked on a call that waits for a person (it stays open)."""
    out = stack.cli_json("submit", "Send an email to buyer@other-corp.example about the renewal",
                         "--wait", "--tenant", tenant)
    assert out["status"] == "awaiting_approval"
    return out["run_id"]


def _completed(http: httpx.Client) -> str:
    run_id = http.post("/v1/runs", json={"text": "What are the API rate limits?"}).json()["run_id"]
    eventually(lambda: http.get(f"/v1/runs/{run_id}").json().get("status") == "completed",
               what="the run to complete")
    return run_id


async def _drain(lines: Any) -> None:
    async for _ in lines:
        pass


def _raw_exchange(port: int, data: bytes, *, wait_s: float) -> tuple[bytes, float]:
    """Send `data` and read until the server closes; returns the reply and the seconds it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        started = time.monotonic()
        sock.sendall(data)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except TimeoutError:
            pass
        return reply, time.monotonic() - started


def test_open_event_streams_hold_no_thread_and_are_limited_per_key_and_in_all(stack: Stack, base: str):
    """As many open streams as the gateway allows (today 64, eight keys of eight), each on a run
    that waits for a person, so none ends: the gateway still answers at once, refuses one more
    (per key and in all) with a 429, and takes a stream again when one closes."""
    per_key, total = stack.settings.gateway_streams_per_key, stack.settings.gateway_streams_total
    run_id = _parked(stack, "streams")
    secrets = [_secret(stack, "streams") for _ in range(-(-total // per_key) + 1)]
    holders = [secrets[i // per_key] for i in range(total)]
    url = f"/v1/runs/{run_id}/events"

    async def scenario() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=total + 16, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
            release = asyncio.Event()
            opened = [asyncio.Event() for _ in holders]

            async def hold(secret: str, first_frame: asyncio.Event) -> int:
                """The stream's status, or -1 if it ended before it was let go."""
                async with http.stream("GET", url, params={"timeout_s": 120}, headers=_auth(secret)) as r:
                    if r.status_code != 200:
                        first_frame.set()
                        return r.status_code
                    lines = r.aiter_lines()
                    async for line in lines:
                        if line == "event: RunStarted":
                            break
                    first_frame.set()
                    rest = asyncio.create_task(_drain(lines))
                    let_go = asyncio.create_task(release.wait())
                    done, _ = await asyncio.wait({rest, let_go}, return_when=asyncio.FIRST_COMPLETED)
                    rest.cancel()
                    let_go.cancel()
                    return 200 if let_go in done else -1

            held = [asyncio.create_task(hold(s, e)) for s, e in zip(holders, opened, strict=True)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 30)
            health = []
            for _ in range(5):
                started = time.monotonic()
                try:
                    r = await http.get("/healthz", timeout=5)
                    health.append((r.status_code, round(time.monotonic() - started, 3)))
                except httpx.TimeoutException as exc:
                    health.append((0, repr(exc)))
            over_key = await http.get(url, params={"timeout_s": 5}, headers=_auth(secrets[0]))
            over_total = await http.get(url, params={"timeout_s": 5}, headers=_auth(secrets[-1]))
            started = time.monotonic()
            read = await http.get(f"/v1/runs/{run_id}", headers=_auth(secrets[-1]))
            read_s = time.monotonic() - started
            release.set()
            statuses = await asyncio.gather(*held)

            async def reopened() -> int:
                async with http.stream("GET", url, params={"timeout_s": 1}, headers=_auth(secrets[0])) as r:
                    return r.status_code

            # A closed stream gives its place back (the server sees the disconnect at once).
            again = [await reopened() for _ in range(3)]
        return {"over_key": over_key, "over_total": over_total, "health": health, "read": read,
                "read_s": read_s, "statuses": statuses, "again": again}

    out = asyncio.run(scenario())
    assert all(status == 200 and took < 1.0 for status, took in out["health"]), out["health"]
    assert Counter(out["statuses"]) == {200: total}  # every stream was open until let go
    assert out["read"].status_code == 200 and out["read_s"] < 15, out["read_s"]
    for r, what in ((out["over_key"], "this API key"), (out["over_total"], "the gateway")):
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "open event streams" in _error(r) and what in _error(r)
    assert out["again"] == [200, 200, 200]


def test_slow_clients_are_cut_off_with_a_408_after_the_read_timeout(stack: Stack):
    port, limit = stack.settings.gateway_port, stack.settings.gateway_read_timeout_s
    secret = _secret(stack, "slow")
    short_body = (f"POST /v1/runs HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {secret}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                  '{"text": "hel').encode()
    slow_head = b"POST /v1/runs HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda data: _raw_exchange(port, data, wait_s=limit + 15),
                                [short_body, slow_head]))
    for (reply, took), what in zip(replies, ("body", "head"), strict=True):
        status, message = _raw_error(reply)
        assert status == 408 and what in message, message
        assert limit - 1 < took < limit + 5, took


def test_a_stream_timeout_must_be_finite_positive_and_at_most_an_hour(stack: Stack):
    http = stack.client("timeouts")
    run_id = _completed(http)
    for timeout_s in ("nan", "-inf", "inf", "0", "-1", "1e9", "3601"):
        r = http.get(f"/v1/runs/{run_id}/events", params={"timeout_s": timeout_s}, timeout=10)
        assert r.status_code == 422 and "timeout_s" in _error(r), (timeout_s, r.text)


def test_one_idempotency_key_with_thirty_different_bodies_runs_one_and_refuses_the_rest(
        stack: Stack, base: str):
    secret, key = _secret(stack, "race"), f"race-{uuid.uuid4()}"
    texts = [f"What are the API rate limits? (variant {i})" for i in range(30)]

    def post(text: str) -> httpx.Response:
        return httpx.post(f"{base}/v1/runs", json={"text": text}, timeout=60,
                          headers={**_auth(secret), "Idempotency-Key": key})

    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(post, texts))
    assert Counter(r.status_code for r in answers) == {202: 1, 409: 29}
    winner = next(t for t, r in zip(texts, answers, strict=True) if r.status_code == 202)
    run_id = next(r.json()["run_id"] for r in answers if r.status_code == 202)
    assert all("different request" in _error(r) for r in answers if r.status_code == 409)
    codec = make_codec(stack.settings)
    events = eventually(lambda: read_run(stack.settings, codec, run_id), what="the run on the log")
    started = [e.payload for e in events if isinstance(e.payload, RunStarted)]
    assert [p.text for p in started] == [winner]
    requested = [m for m in read_topic(stack, stack.settings.inbox_topic) if m.key() == run_id.encode()
                 and dict(m.headers() or []).get("event_type") == b"RunRequested"]
    assert len(requested) == 1  # only the winner's body was ever put on the inbox


def test_one_idempotency_key_with_the_same_body_ten_times_names_one_run(stack: Stack, base: str):
    secret, key = _secret(stack, "race"), f"same-{uuid.uuid4()}"

    def post(_: int) -> httpx.Response:
        return httpx.post(f"{base}/v1/runs", json={"text": "How many orders are pending?"}, timeout=60,
                          headers={**_auth(secret), "Idempotency-Key": key})

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(post, range(10)))
    assert [r.status_code for r in answers] == [202] * 10
    assert len({r.json()["run_id"] for r in answers}) == 1
    run_id = answers[0].json()["run_id"]
    codec = make_codec(stack.settings)
    events = eventually(lambda: (e := read_run(stack.settings, codec, run_id)) and e[-1].event_type ==
                        "RunCompleted" and e, what="the run to complete")
    assert [e.event_type for e in events].count("RunStarted") == 1


def test_an_empty_idempotency_key_is_refused(stack: Stack):
    http = stack.client("keys")
    r = http.post("/v1/runs", json={"text": "What are the API rate limits?"}, headers={"Idempotency-Key": ""})
    assert r.status_code == 400 and "Idempotency-Key" in _error(r)


def test_nul_bytes_and_blank_text_are_refused(stack: Stack):
    http = stack.client("nul")
    run_id = _parked(stack, "nul")
    bad = [("/v1/runs", {"text": "What are the\x00 API rate limits?"}, "NUL"),
           ("/v1/runs", {"text": " \n\t "}, "blank"),
           ("/v1/runs", {"text": "hi", "route": "default\x00"}, "NUL"),
           ("/v1/runs", {"text": "hi", "tenant_id": "nul\x00"}, "NUL"),
           (f"/v1/runs/{run_id}/approve", {"approver": "ana\x00"}, "NUL"),
           (f"/v1/runs/{run_id}/approve", {"approver": "   "}, "blank"),
           (f"/v1/runs/{run_id}/reject", {"approver": "ana", "reason": "no\x00"}, "NUL"),
           (f"/v1/runs/{run_id}/cancel", {"reason": "\x00"}, "NUL"),
           (f"/v1/runs/{run_id}/cancel", {"requested_by": "\x00ana"}, "NUL")]
    for path, body, why in bad:
        r = http.post(path, json=body)
        assert r.status_code == 400 and why in _error(r), (path, body, r.text)
    assert http.get(f"/v1/runs/{run_id}").json()["status"] == "awaiting_approval"
    assert http.get("/v1/runs/a%00b").status_code == 400


def test_a_route_the_models_file_does_not_declare_is_refused(stack: Stack):
    http = stack.client("routes")
    r = http.post("/v1/runs", json={"text": "What are the API rate limits?", "route": "no-such-route"})
    assert r.status_code == 422 and "no-such-route" in _error(r) and "default" in _error(r)
    demo = http.post("/v1/runs", json={"text": "What are the API rate limits?", "route": "demo"})
    assert demo.status_code == 202


def test_the_frameworks_and_the_servers_own_errors_are_in_the_gateways_shape(stack: Stack, base: str):
    r = httpx.get(f"{base}/no/such/path")
    assert r.status_code == 404 and _error(r)
    r = httpx.delete(f"{base}/v1/runs")
    assert r.status_code == 405 and _error(r) and "POST" in r.headers["allow"]
    port = stack.settings.gateway_port
    for garbage in (b"NOT HTTP AT ALL\r\n\r\n", b"GET /healthz HTTP/1.1\r\nHost: gw\r\nBad Header\r\n\r\n",
                    b"GET /h\xffz HTTP/1.1\r\nHost: gw\r\n\r\n"):
        reply, _ = _raw_exchange(port, garbage, wait_s=10)
        status, message = _raw_error(reply)
        assert status == 400 and message, reply


def test_concurrent_decisions_on_one_parked_call_accept_exactly_one(stack: Stack, base: str):
    run_id, secret = _parked(stack, "deciders"), _secret(stack, "deciders")

    def decide(i: int) -> httpx.Response:
        verb = "approve" if i % 2 else "reject"
        return httpx.post(f"{base}/v1/runs/{run_id}/{verb}", json={"approver": f"person-{i}"},
                          headers=_auth(secret), timeout=60)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(decide, range(10)))
    assert Counter(r.status_code for r in answers) == {202: 1, 409: 9}
    assert all("already" in _error(r) for r in answers if r.status_code == 409)
    http = httpx.Client(base_url=base, headers=_auth(secret), timeout=30)
    eventually(lambda: http.get(f"/v1/runs/{run_id}").json()["status"] != "awaiting_approval",
               what="the decision to be applied")
    late = http.post(f"/v1/runs/{run_id}/approve", json={"approver": "late"})
    assert late.status_code == 409 and "already" in _error(late)


def test_a_run_with_an_undecodable_event_is_still_404_to_another_tenant(stack: Stack, base: str):
    owner = stack.client("poison-owner")
    run_id = _completed(owner)
    producer = Producer({"bootstrap.servers": stack.settings.bootstrap_servers})
    producer.produce(stack.settings.events_topic, key=run_id, value=b"\x00garbage",
                     partition=partition_for(run_id, stack.settings.partitions))
    producer.flush(10)
    other = httpx.Client(base_url=base, headers=_auth(_secret(stack, "poison-other")), timeout=30)
    for r in (other.get(f"/v1/runs/{run_id}"), other.get(f"/v1/runs/{run_id}/events"),
              other.post(f"/v1/runs/{run_id}/cancel", json={}),
              other.post(f"/v1/runs/{run_id}/approve", json={"approver": "x"})):
        assert r.status_code == 404 and _error(r) == f"no run {run_id}"
    mine = owner.get(f"/v1/runs/{run_id}")
    assert mine.status_code in (200, 404) and mine.json()
