"""Prompts as versioned files: `processors/prompts/<kind>/<version>.md`.

A prompt's version (`planner/v1`) is recorded in every model call it shapes, so a changed
prompt is a new file, never an edit of a recorded one. Placeholders are `{{name}}`, which
leaves the JSON braces in a prompt alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PROMPTS_DIR", "Prompt", "PromptError", "load_prompt", "prompt_versions"]

PROMPTS_DIR = Path(__file__).resolve().parent
"""Where the prompt files live."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class PromptError(LookupError):
    """A prompt that does not exist, or a render that does not fit it."""


@dataclass(frozen=True)
class Prompt:
    """One version of one prompt."""

    version: str
    """`<kind>/<version>`, e.g. `planner/v1`: what model calls record as their prompt version."""
    text: str
    """The file's text, placeholders and all."""

    @property
    def placeholders(self) -> frozenset[str]:
        """The `{{name}}`s the text expects."""
        return frozenset(_PLACEHOLDER.findall(self.text))

    def render(self, **values: str) -> str:
        """The text with every placeholder filled; a missing or unknown value is an error."""
        expected = self.placeholders
        if missing := sorted(expected - values.keys()):
            raise PromptError(f"prompt {self.version} needs values for {missing}")
        if unknown := sorted(values.keys() - expected):
            raise PromptError(f"prompt {self.version} has no placeholders {unknown}")
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)


def load_prompt(kind: str, version: str) -> Prompt:
    """Read `processors/prompts/<kind>/<version>.md`."""
    for what, name in (("kind", kind), ("version", version)):
        # Names become path parts: nothing may climb out of the prompts folder.
        if not _NAME.match(name) or ".." in name:
            raise PromptError(f"prompt {what} {name!r} is not a name (letters, digits, . _ -)")
    path = PROMPTS_DIR / kind / f"{version}.md"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = ", ".join(prompt_versions(kind)) or "none"
        raise PromptError(f"no prompt {kind}/{version} at {path} (versions: {known})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"cannot read prompt {kind}/{version} at {path}: {exc}") from exc
    return Prompt(version=f"{kind}/{version}", text=text)


def prompt_versions(kind: str) -> list[str]:
    """The versions of `kind` that exist, sorted."""
    folder = PROMPTS_DIR / kind
    return sorted(p.stem for p in folder.glob("*.md")) if _NAME.match(kind) else []
