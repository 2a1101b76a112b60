"""What the final-response step needs from a model, as a Protocol.

Pure (no HTTP client), so `final_response` and its tests run with a fake writer; the
OpenAI-compatible adapter lives in `processors/models/writer.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["ResponseWriter", "WrittenResponse"]


@dataclass(frozen=True)
class WrittenResponse:
    """The final answer a writer wrote, and what the call took."""

    text: str
    """The answer for the user."""
    input_tokens: int
    """Prompt tokens of the call."""
    output_tokens: int
    """Completion tokens of the call."""
    latency_ms: int
    """How long the call took, retries included."""


class ResponseWriter(Protocol):
    """Turns the response builder's draft into the answer the user reads.

    Raises `ModelError` when it has no answer to give; the caller then sends the draft.
    """

    provider: str
    model: str
    prompt_version: str

    def write(self, *, request_text: str, draft: str) -> WrittenResponse: ...
