"""Alert delivery to a webhook: an HTTP POST of the alert's JSON, retried with backoff.

Every attempt carries the same `Idempotency-Key` (the alert id and whether it was raised or
resolved), so a receiver that saw an attempt whose answer was lost, or a record the alerts topic
holds twice, acts once. A 2xx answer is a delivery; a 4xx other than 408 and 429 is a refusal
that retrying cannot change; anything else (5xx, timeouts, refused connections) is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from schemas.alerts import Alert

__all__ = ["Delivery", "deliver"]

log = logging.getLogger(__name__)

_RETRIED_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Delivery:
    """How a delivery went."""

    delivered: bool
    attempts: int
    last_error: str = ""


async def deliver(client: httpx.AsyncClient, url: str, alert: Alert, *, attempts: int, backoff_s: float,
                  sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Delivery:
    """POST `alert` to `url` until it is taken or `attempts` are spent; never raises."""
    headers = {"Idempotency-Key": alert.delivery_id, "Content-Type": "application/json",
               "User-Agent": "agentlog-alerting"}
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            answer = await client.post(url, json=alert.to_json(), headers=headers)
            if answer.is_success:
                return Delivery(True, attempt)
            error = f"HTTP {answer.status_code}"
            if 400 <= answer.status_code < 500 and answer.status_code not in _RETRIED_4XX:
                return Delivery(False, attempt, f"{error}: refused")
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if attempt < attempts:
            delay = backoff_s * 2 ** (attempt - 1)
            log.warning("alert %s: webhook attempt %d failed (%s); again in %.1f s",
                        alert.delivery_id, attempt, error, delay)
            await sleep(delay)
    return Delivery(False, attempts, error)
