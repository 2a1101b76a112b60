"""One client for any OpenAI-compatible `/chat/completions` endpoint (OpenAI, vLLM, Ollama …).

The planner and the response writer differ in what they ask, not in how: both go through
`ChatClient`. Sync httpx, one client per model adapter (connections are reused). Failures that
may pass — 429, 5xx, timeouts, refused connections — are retried with exponential backoff and
jitter, honoring `Retry-After`; other 4xx are not, since asking again gets the same answer.
When every try has failed, `ModelError` says why. The content comes back exactly as the model
wrote it: judging it is the caller's job.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from processors.models.errors import ModelError

__all__ = ["ChatClient", "ChatReply", "estimate_tokens"]

_SNIPPET = 300  # characters of a server's error body worth quoting in an error
_CHARS_PER_TOKEN = 4  # rough estimate, used only when a server reports no usage


@dataclass(frozen=True)
class ChatReply:
    """What one chat completion came back with."""

    content: str
    """The first choice's content, exactly as written."""
    input_tokens: int
    """Prompt tokens as the server reported them, else estimated."""
    output_tokens: int
    """Completion tokens as the server reported them, else estimated."""


class ChatClient:
    """POSTs chat completions to one model on one server, with retries; see the module doc."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        job: str,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """
        base_url: API root, the part before `/chat/completions`.
        model: model id sent to the server, and named in errors.
        job: what the calls are for (`planner`, `finalizer`): named in a missing-key error and
            in the User-Agent, so a server's logs tell the two apart.
        api_key: sent as a bearer token; None sends none.
        api_key_env: where the key was to come from; with no `api_key`, calls fail naming it.
        timeout_s: limit on each HTTP attempt.
        max_retries: further attempts after a retryable failure.
        backoff_s: first retry delay, doubled on each retry, plus up to half again of jitter.
        max_backoff_s: longest single wait, also for a server's Retry-After.
        rng: source of the jitter (a seeded one in tests).
        sleep: how to wait between attempts (a recorder in tests).
        transport: httpx transport (a mock in tests).
        """
        if max_retries < 0 or timeout_s <= 0 or backoff_s < 0 or max_backoff_s < 0:
            raise ValueError("max_retries, backoff_s and max_backoff_s must be >= 0, timeout_s > 0")
        self.model = model
        self.job = job
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        self._api_key_env = api_key_env
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._json_schema = True  # until the server says it cannot do structured outputs
        self._client = httpx.Client(timeout=timeout_s, transport=transport,
                                    headers={"User-Agent": f"agentlog-{job}"})

    def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> ChatReply:
        """One chat completion of `messages` (`{"role", "content"}` each).

        temperature: sampling temperature sent with the request.
        json_schema: the `json_schema` object of a structured-output `response_format`
            (`{"name", "schema", "strict"}`); a server that refuses json_schema gets JSON mode
            instead, from then on. None sends no `response_format`: plain text.
        """
        if self._api_key is None and self._api_key_env:
            raise ModelError(f"no API key for {self.url}: environment variable "
                             f"{self._api_key_env} is not set for the {self.job}")
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages],
                                "temperature": temperature}
        if json_schema is not None:
            body["response_format"] = self._response_format(json_schema)
        reply = self._post(body, json_schema)
        content = _content(reply, self.url)
        prompt_text = "".join(m.get("content", "") for m in messages)
        tokens_in, tokens_out = _usage(reply, (prompt_text, content))
        return ChatReply(content, tokens_in, tokens_out)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- HTTP ------------------------------------------------------------------------------

    def _response_format(self, json_schema: Mapping[str, Any]) -> dict[str, Any]:
        if not self._json_schema:
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": dict(json_schema)}

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _post(self, body: dict[str, Any], json_schema: Mapping[str, Any] | None) -> Mapping[str, Any]:
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                response = self._client.post(self.url, json=body, headers=self._headers())
            except httpx.TimeoutException:
                reason = f"no answer within {self._timeout_s:g} s"
            except httpx.TransportError as exc:
                reason = f"cannot reach the server ({type(exc).__name__}: {exc})"
            except httpx.HTTPError as exc:  # anything else httpx raises is no transient fault
                raise ModelError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
            else:
                status = response.status_code
                if (status == 400 and json_schema is not None and self._json_schema
                        and _about_response_format(response)):
                    # Older vLLM/Ollama builds lack json_schema; JSON mode still keeps the model
                    # to JSON. Remembered, so later calls do not pay for the refusal again.
                    self._json_schema = False
                    body = {**body, "response_format": self._response_format(json_schema)}
                    continue
                if response.is_success:
                    return _json_body(response, self.url)
                reason = f"HTTP {status}: {_snippet(response)}"
                if status != 429 and status < 500:
                    raise ModelError(f"{self.url} refused the request ({reason}); not retried")
                retry_after = _retry_after(response)
            if attempt >= self._max_retries:
                tries = "1 try" if attempt == 0 else f"{attempt + 1} tries"
                raise ModelError(f"{self.model} at {self.url} failed after {tries}; last: {reason}")
            self._sleep(self._delay(attempt, retry_after))
            attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._max_backoff_s)
        base = min(self._backoff_s * 2.0**attempt, self._max_backoff_s)
        # Jitter spreads the retries of many clients that failed together.
        return min(base + self._rng.uniform(0, base / 2), self._max_backoff_s)


def estimate_tokens(text: str) -> int:
    """Tokens of `text` at 4 characters a token: for servers that report no usage."""
    return max(1, math.ceil(len(text) / _CHARS_PER_TOKEN))


def _about_response_format(response: httpx.Response) -> bool:
    body = response.text.lower()
    return "response_format" in body or "json_schema" in body


def _json_body(response: httpx.Response, url: str) -> Mapping[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise ModelError(f"{url} answered HTTP {response.status_code} with a body that is not "
                         f"JSON: {_snippet(response)}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{url} answered {type(data).__name__}, not a chat completion object")
    return data


def _content(reply: Mapping[str, Any], url: str) -> str:
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ModelError(f"{url} answered no choices: {json.dumps(reply)[:_SNIPPET]}")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # some servers answer in parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict)) or None
    if not isinstance(content, str):
        refusal = message.get("refusal") if isinstance(message, dict) else None
        why = f"refused: {refusal}" if refusal else f"finish_reason {choices[0].get('finish_reason')!r}"
        raise ModelError(f"{url} answered no content ({why})")
    return content


def _usage(reply: Mapping[str, Any], texts: tuple[str, str]) -> tuple[int, int]:
    usage = reply.get("usage")
    counts: list[int] = []
    for key, text in zip(("prompt_tokens", "completion_tokens"), texts, strict=True):
        value = usage.get(key) if isinstance(usage, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            counts.append(value)
        else:
            counts.append(estimate_tokens(text))
    return counts[0], counts[1]


def _retry_after(response: httpx.Response) -> float | None:
    # Seconds only; an HTTP date is rare from model servers and falls back to the backoff.
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return (text[:_SNIPPET] + "…") if len(text) > _SNIPPET else (text or "<empty body>")
