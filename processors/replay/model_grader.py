"""A model-graded quality scorer over any OpenAI-compatible `/chat/completions` endpoint.

The adapter behind `scoring.Grader`; imported only when `agentlog score --grader` asks for it,
so scoring without a model needs no HTTP client. The grade is a number from 0 to 1 in a JSON
answer; anything else is a failed grading and leaves the run unscored by this scorer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import httpx

from processors.models.chat import ChatClient, ChatReply
from processors.models.errors import ModelError

__all__ = ["OpenAICompatibleGrader", "GRADER_PROMPT"]

GRADER_PROMPT = """You grade the answers of an agent runtime. You are given the user's request,
the agent's final answer, the success criteria of the steps it planned and, when there is one,
a reference answer. Judge whether the answer does what was asked, is supported by what the
steps found, and (if given) agrees with the reference. Refusing something unsafe, and saying
so, is a good answer.

Answer with one JSON object and nothing else: {"score": <a number from 0 to 1>, "reason": "<one
sentence>"}."""

_SCHEMA = {"name": "Grade", "strict": True, "schema": {
    "type": "object", "additionalProperties": False, "required": ["score", "reason"],
    "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1},
                   "reason": {"type": "string"}}}}


class OpenAICompatibleGrader:
    """`Grader` asking one model on one OpenAI-compatible server."""

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None,
                 api_key_env: str | None = None, timeout_s: float = 30.0,
                 max_retries: int = 2, transport: httpx.BaseTransport | None = None) -> None:
        """
        base_url: API root, the part before `/chat/completions`.
        model: model id sent to the server.
        api_key: sent as a bearer token; None sends none.
        api_key_env: where the key was to come from; with no `api_key`, calls fail naming it.
        timeout_s: limit on each HTTP attempt.
        max_retries: further attempts after a 429, a 5xx, a timeout or a refused connection.
        transport: httpx transport (a mock in tests).
        """
        self._chat = ChatClient(base_url=base_url, model=model, job="grader", api_key=api_key,
                                api_key_env=api_key_env, timeout_s=timeout_s,
                                max_retries=max_retries, transport=transport)
        self.model = model
        self.last_reply: ChatReply | None = None
        """The last call's reply (its tokens, for the call's span), None until one answers."""

    def grade(self, *, request: str, answer: str, reference: str | None,
              criteria: Sequence[str]) -> float:
        """The model's grade of `answer`, from 0 to 1; ModelError when it gives none."""
        parts = [f"Request:\n{request}", f"Answer:\n{answer}",
                 "Success criteria:\n" + ("\n".join(f"- {c}" for c in criteria) or "(none)")]
        if reference:
            parts.append(f"Reference answer:\n{reference}")
        reply = self._chat.complete([{"role": "system", "content": GRADER_PROMPT},
                                     {"role": "user", "content": "\n\n".join(parts)}],
                                    temperature=0, json_schema=_SCHEMA)
        self.last_reply = reply
        try:
            score = json.loads(reply.content)["score"]
            value = float(score)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{self.model} gave no grade: {reply.content[:200]!r}") from exc
        if not 0 <= value <= 1:
            raise ModelError(f"{self.model} graded {value}, outside 0–1")
        return value

    def close(self) -> None:
        self._chat.close()
