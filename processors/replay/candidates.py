"""The candidates file: named changes to replay recorded runs with.

    version: 1
    candidates:
      loose-policy:
        description: What a careless policy edit would let through
        policy: loose-policy.yaml              # a policy file (relative to this file)
      small-model:
        planner: {provider: openai, model: gpt-4o-mini, prompt: v1}
        providers:                             # added to the models file's providers
          openai: {kind: openai_compatible, base_url: https://api.openai.com/v1,
                   api_key_env: OPENAI_API_KEY}
        prices:                                # added to the models file's prices
          gpt-4o-mini: {input_usd_per_1k: 0.00015, output_usd_per_1k: 0.0006}

Whatever a candidate leaves out is as recorded: without `planner`, each run keeps its recorded
plan; without `finalizer`, its recorded final answer (when the draft is unchanged); without
`policy`, today's policy decides. `models_file` replaces the configured models file as the base
that `providers` and `prices` extend. See `candidates.example.yaml`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies.strict_yaml import load_strict
from processors.models import ModelChoice, ModelsConfig
from processors.models.config import ModelPrice, Provider, RouteModels

__all__ = ["CandidateSpec", "CandidatesFile", "CandidatesError", "parse_candidates", "models_for"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class CandidatesError(ValueError):
    """A candidates file that cannot be used; the message names the file and the field."""


class CandidateSpec(BaseModel):
    """One candidate: what it changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    """What the candidate is, for people reading results."""
    policy: str | None = None
    """Policy file the guard enforces instead of today's (relative to the candidates file)."""
    models_file: str | None = None
    """Models file to start from instead of the configured one (relative to the candidates file)."""
    providers: dict[str, Provider] = Field(default_factory=dict)
    """Providers added to (or replacing, by name) the models file's."""
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Model prices added to (or replacing) the models file's."""
    planner: ModelChoice | None = None
    """The planner of every route; unset: each run's recorded plan."""
    finalizer: ModelChoice | Literal["none"] | None = None
    """The finalizer of every route (`none`: the draft is the final answer); unset: the recorded
    final answer where the draft is unchanged."""


class CandidatesFile(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    candidates: dict[str, CandidateSpec] = Field(min_length=1)


def parse_candidates(text: str, *, source: str = "<string>") -> CandidatesFile:
    """Check a candidates file given as YAML text."""
    try:
        doc = load_strict(text)
    except yaml.YAMLError as exc:
        raise CandidatesError(f"{source}: not valid YAML: {exc}") from None
    try:
        parsed = CandidatesFile.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<file>'}: {e['msg']}"
                             for e in exc.errors())
        raise CandidatesError(f"{source}: {problems}") from None
    for name in parsed.candidates:
        if not re.match(_NAME, name):
            raise CandidatesError(f"{source}: candidate name {name!r} is not a name "
                                  "(letters, digits, . _ -)")
    return parsed


def models_for(spec: CandidateSpec, base: ModelsConfig, *, source: str = "<candidate>") -> ModelsConfig:
    """The model configuration the candidate plans and finalizes with: `base` with the
    candidate's providers and prices added, and its planner and finalizer on every route."""
    routes: dict[str, Any] = {}
    for route, jobs in base.routes.items():
        planner = spec.planner or jobs.planner
        finalizer = (None if spec.finalizer == "none"
                     else spec.finalizer if spec.finalizer is not None else jobs.finalizer)
        routes[route] = RouteModels(planner=planner, finalizer=finalizer)
    try:
        return ModelsConfig.model_validate({
            "version": 1,
            "providers": {**base.providers, **spec.providers},
            "models": {**base.models, **spec.prices},
            "routes": routes,
        })
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        raise CandidatesError(f"{source}: {problems}") from None
