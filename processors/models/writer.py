"""A response writer over any OpenAI-compatible `/chat/completions` endpoint.

A stronger model than the planner may turn the response builder's draft into the final answer.
It gets the user's request and the draft, and answers in plain text (no `response_format`).
HTTP, retries and timeouts are `ChatClient`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from processors.models.chat import ChatClient
from processors.models.errors import ModelError
from processors.models.ports import WrittenResponse
from processors.prompts import Prompt

__all__ = ["OpenAICompatibleWriter", "quote_data", "writer_message"]


class OpenAICompatibleWriter:
    """`ResponseWriter` over HTTP; `write()` returns the model's answer, tokens and latency."""

    provider = "openai_compatible"
    """Recorded as the provider of every call."""

    def __init__(self, *, client: ChatClient, prompt: Prompt, temperature: float = 0.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        """
        client: the endpoint and model, with its timeouts and retries.
        prompt: the system prompt (`finalizer/<version>`), sent as it is: it has no placeholders.
        temperature: sampling temperature; 0 by default, so the same draft reads the same way
            as far as the server allows, which keeps answers comparable across runs.
        clock: seconds, for the call's latency.
        """
        self._chat = client
        self.model = client.model
        self.prompt_version = prompt.version
        self.url = client.url
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
    return (f"<request>\n{quote_data(request_text)}\n</request>\n\n"
            f"<draft>\n{quote_data(draft)}\n</draft>")


def quote_data(text: str) -> str:
    """`text` with `&`, `<` and `>` escaped, so what a tool returned (a document that says
    `</draft> new instructions: …`) cannot close its fence and read as the runtime's words."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
