"""A planner over any OpenAI-compatible `/chat/completions` endpoint (OpenAI, vLLM, Ollama …).

Sync httpx, one client per planner (connections are reused). Failures that may pass — 429,
5xx, timeouts, refused connections — are retried with exponential backoff and jitter, honoring
`Retry-After`; other 4xx are not, since asking again gets the same answer. When every try has
failed, `ModelError` says why. The model's content is returned exactly as written: judging it
is the plan validator's job, and the raw text is what PlanRejected records.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from processors.models.errors import ModelError
from processors.plan import AgentPlan
from processors.prompts import Prompt
from processors.tools.registry import ToolRegistry

__all__ = ["OpenAICompatiblePlanner", "render_tools", "user_message"]

_SNIPPET = 300  # characters of a server's error body worth quoting in an error
_CHARS_PER_TOKEN = 4  # rough estimate, used only when a server reports no usage


class OpenAICompatiblePlanner:
    """`PlannerModel` over HTTP; `plan()` returns the model's content, `usage()` its tokens."""

    provider = "openai_compatible"
    """Recorded as the provider of every call."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        prompt: Prompt,
        registry: ToolRegistry,
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
        model: model id sent to the server and recorded with each call.
        prompt: the system prompt; its `{{tools}}` is filled from `registry`.
        registry: the tools a plan may use.
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
        self.prompt_version = prompt.version
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._system = prompt.render(tools=render_tools(registry))
        self._api_key = api_key
        self._api_key_env = api_key_env
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._json_schema = True  # until the server says it cannot do structured outputs
        self._last: tuple[str, tuple[int, int]] | None = None
        self._client = httpx.Client(timeout=timeout_s, transport=transport,
                                    headers={"User-Agent": "agentlog-planner"})

    @property
    def system_prompt(self) -> str:
        """The rendered system prompt every call sends."""
        return self._system

    def plan(self, *, run_id: str, text: str, route: str = "default") -> str:
        """Ask the model for the plan of `text`; its content, exactly as written."""
        if self._api_key is None and self._api_key_env:
            raise ModelError(f"no API key for {self.url}: environment variable "
                             f"{self._api_key_env} is not set for the planner")
        user = user_message(run_id=run_id, text=text, route=route)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": self._system},
                         {"role": "user", "content": user}],
            "temperature": 0,
            "response_format": self._response_format(),
        }
        reply = self._post(body)
        content = _content(reply, self.url)
        self._last = (content, _usage(reply, (self._system + user, content)))
        return content

    def usage(self, text: str, output: str) -> tuple[int, int]:
        """(prompt, completion) tokens of the call that returned `output`, as the server
        reported them; estimated at 4 characters a token when it did not."""
        if self._last is not None and self._last[0] == output:
            return self._last[1]
        return _estimate(self._system + text), _estimate(output)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> OpenAICompatiblePlanner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- HTTP ------------------------------------------------------------------------------

    def _response_format(self) -> dict[str, Any]:
        if not self._json_schema:
            return {"type": "json_object"}
        # Not strict: strict mode demands every property be required and no free-form objects,
        # which a tool's `input` is. The validator enforces the contract either way.
        return {"type": "json_schema", "json_schema": {
            "name": "AgentPlan", "schema": AgentPlan.model_json_schema(), "strict": False}}

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _post(self, body: dict[str, Any]) -> Mapping[str, Any]:
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
                if status == 400 and self._json_schema and _about_response_format(response):
                    # Older vLLM/Ollama builds lack json_schema; JSON mode still keeps the model
                    # to JSON. Remembered, so later calls do not pay for the refusal again.
                    self._json_schema = False
                    body = {**body, "response_format": self._response_format()}
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
        base = min(self._backoff_s * 2**attempt, self._max_backoff_s)
        # Jitter spreads the retries of many planners that failed together.
        return min(base + self._rng.uniform(0, base / 2), self._max_backoff_s)


def render_tools(registry: ToolRegistry) -> str:
    """The tools section of a planner prompt: name, what it does, cost, input schema."""
    parts = []
    for tool in sorted(registry, key=lambda t: t.name):
        schema = json.dumps(tool.input_schema, sort_keys=True, ensure_ascii=False)
        effects = "yes (takes an idempotency key)" if tool.side_effects else "no"
        parts.append(f"### {tool.name}\n\n{tool.description}\n\n"
                     f"- cost per call: ${tool.cost_usd:g}\n- side effects: {effects}\n"
                     f"- input schema: `{schema}`")
    return "\n\n".join(parts)


def user_message(*, run_id: str, text: str, route: str) -> str:
    """What the user turn of a planning call says."""
    return f"Run id: {run_id}\nRoute: {route}\nRequest:\n{text}"


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
    counts = []
    for key, text in zip(("prompt_tokens", "completion_tokens"), texts, strict=True):
        value = usage.get(key) if isinstance(usage, dict) else None
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        counts.append(value if ok else _estimate(text))
    return counts[0], counts[1]


def _estimate(text: str) -> int:
    return max(1, math.ceil(len(text) / _CHARS_PER_TOKEN))


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
