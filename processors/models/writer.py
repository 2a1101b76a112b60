"""A response writer over any OpenAI-compatible `/chat/completions` endpoint.

A stronger model than the planner may turn the response builder's draft into the final answer.
It gets the user's request and the draft, and answers in plain text (no `response_format`).
HTTP, retries and timeouts are `ChatClient`'s.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import httpx

from processors.models.chat import ChatClient
from processors.models.errors import ModelError
from processors.models.ports import WrittenResponse
from processors.prompts import Prompt

__all__ = ["OpenAICompatibleWriter", "writer_message"]


class OpenAICompatibleWriter:
    """`ResponseWriter` over HTTP; `write()` returns the model's answer, tokens and latency."""

    provider = "openai_compatible"
    """Recorded as the provider of every call."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        prompt: Prompt,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        temperature: float = 0.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.perf_counter,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """
        base_url: API root, the part before `/chat/completions`.
        model: model id sent to the server and recorded with each call.
        prompt: the system prompt (`finalizer/<version>`), sent as it is: it has no placeholders.
        api_key: sent as a bearer token; None sends none.
        api_key_env: where the key was to come from; with no `api_key`, calls fail naming it.
        timeout_s: limit on each HTTP attempt.
        max_retries: further attempts after a retryable failure.
        backoff_s: first retry delay, doubled on each retry, plus up to half again of jitter.
        max_backoff_s: longest single wait, also for a server's Retry-After.
        temperature: sampling temperature; 0 by default, so the same draft reads the same way
            as far as the server allows, which keeps answers comparable across runs.
        rng: source of the jitter (a seeded one in tests).
        sleep: how to wait between attempts (a recorder in tests).
        clock: seconds, for the call's latency.
        transport: httpx transport (a mock in tests).
        """
        self._chat = ChatClient(
            base_url=base_url, model=model, job="finalizer", api_key=api_key,
            api_key_env=api_key_env, timeout_s=timeout_s, max_retries=max_retries,
            backoff_s=backoff_s, max_backoff_s=max_backoff_s, rng=rng, sleep=sleep,
            transport=transport)
        self.model = model
        self.prompt_version = prompt.version
        self.url = self._chat.url
        # Rendered once: a prompt with a placeholder this writer cannot fill fails at start.
        self._system = prompt.render()
        self._temperature = temperature
        self._clock = clock

    @property
    def system_prompt(self) -> str:
        """The system prompt every call sends."""
        return self._system

    def write(self, *, request_text: str, draft: str) -> WrittenResponse:
        """The final answer to `request_text`, written from `draft`; ModelError when the model
        cannot be asked or answers nothing."""
        begun = self._clock()
        reply = self._chat.complete(
            [{"role": "system", "content": self._system},
             {"role": "user", "content": writer_message(request_text=request_text, draft=draft)}],
            temperature=self._temperature)
        latency_ms = max(0, round((self._clock() - begun) * 1000))
        text = reply.content.strip()
        if not text:
            # An empty answer is no answer: the caller sends the draft instead of nothing.
            raise ModelError(f"{self.model} at {self.url} answered an empty response")
        return WrittenResponse(text=text, input_tokens=reply.input_tokens,
                               output_tokens=reply.output_tokens, latency_ms=latency_ms)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._chat.close()

    def __enter__(self) -> OpenAICompatibleWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def writer_message(*, request_text: str, draft: str) -> str:
    """What the user turn of a writing call says: the request and the draft, each fenced off
    by tags so text inside them reads as data, not as instructions to the writer."""
    return (f"<request>\n{request_text}\n</request>\n\n"
            f"<draft>\n{draft}\n</draft>")
