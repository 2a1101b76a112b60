"""The model configuration file (`AGENTLOG_MODELS_FILE`): loaded, checked, its API keys found.

The configuration's types are pure data in `processors/models/config.py` (the decisions build
planners from them, and must not import `streams/`); this module reads the YAML, names the
file and the field in every error, checks that the prompts it names exist, and reads API keys
from the environment, which nothing in `processors/` may do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from policies.strict_yaml import load_strict
from processors.models.config import ModelsConfig, OpenAICompatibleProvider, ScriptedProvider
from processors.prompts import PromptError, load_prompt

__all__ = [
    "ModelsConfigError",
    "api_keys_from_env",
    "load_models_config",
    "missing_api_keys",
    "models_config_or_exit",
    "parse_models_config",
]


class ModelsConfigError(ValueError):
    """A model configuration that cannot be used; the message names the file and the field."""


def load_models_config(path: str | PathLike[str]) -> ModelsConfig:
    """Read and check the model configuration at `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelsConfigError(f"{path}: cannot read the model configuration ({exc})") from exc
    return parse_models_config(text, source=str(path))


def parse_models_config(text: str, *, source: str = "<string>") -> ModelsConfig:
    """Check a model configuration given as YAML text; `source` names it in errors."""
    try:
        doc = load_strict(text)
    except yaml.YAMLError as exc:
        raise ModelsConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelsConfigError(f"{source}: the model configuration is a mapping with "
                                "'providers', 'models' and 'routes'")
    try:
        config = ModelsConfig.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise ModelsConfigError(f"{source}: {problems}") from None
    for route, jobs in config.routes.items():
        for job, choice in (("planner", jobs.planner), ("finalizer", jobs.finalizer)):
            if choice is None or isinstance(config.providers[choice.provider], ScriptedProvider):
                continue  # the scripted planner has rules, not a prompt
            try:
                load_prompt(job, choice.prompt)
            except PromptError as exc:
                raise ModelsConfigError(f"{source}: routes.{route}.{job}.prompt: {exc}") from None
    return config


def api_keys_from_env(config: ModelsConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The API keys `config`'s providers name, by variable name, from `environ` (default: the
    process environment); unset or empty variables are left out."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in _key_vars(config) if env.get(name)}


def missing_api_keys(config: ModelsConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """Variables `config` names for API keys that are unset or empty, sorted."""
    found = api_keys_from_env(config, environ)
    return sorted(name for name in _key_vars(config) if name not in found)


def _key_vars(config: ModelsConfig) -> set[str]:
    return {p.api_key_env for p in config.providers.values()
            if isinstance(p, OpenAICompatibleProvider) and p.api_key_env}


def _problem(error: Mapping[str, Any]) -> str:
    parts = list(error["loc"])
    # A provider's location includes its kind (`providers.x.openai_compatible.timeout_s`),
    # which the file does not spell there; drop it so the path is the one in the YAML.
    if len(parts) > 2 and parts[0] == "providers" and parts[2] in ("openai_compatible", "scripted"):
        del parts[2]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error.get("type") in ("union_tag_not_found", "union_tag_invalid"):
        loc, message = f"{loc}.kind", "must be scripted or openai_compatible"
    if error.get("type") == "value_error" and not loc:
        return message  # cross-field checks name their field in the message
    return f"{loc or '<file>'}: {message}"




def models_config_or_exit(path: str | PathLike[str], log: logging.Logger) -> ModelsConfig:
    """The models file for a service's start: a service that would call models nobody
    configured would be guessing, so an invalid file stops it with the reason logged."""
    try:
        return load_models_config(path)
    except ModelsConfigError as exc:
        log.error("cannot start without a valid model configuration: %s", exc)
        raise SystemExit(1) from None
