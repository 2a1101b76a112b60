"""The model configuration as data: providers, model prices, and each route's models.

A route has a planner model, and may have a finalizer: a (usually stronger) model that turns
the response builder's draft into the final answer.

Pure and checked as a whole (a route naming an undeclared provider or model is refused), so a
bad file stops the planner at start, not at its first request. Reading the YAML file and the
API keys from the environment is `streams/models_config.py`'s job.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from processors.planner_scripted import ScriptedPlanner

__all__ = [
    "DEFAULT_ROUTE",
    "ModelChoice",
    "ModelPrice",
    "ModelsConfig",
    "OpenAICompatibleProvider",
    "Provider",
    "RouteModels",
    "ScriptedProvider",
]

DEFAULT_ROUTE = "default"
"""The route every other route falls back to; the configuration must declare it."""

_FROZEN = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ScriptedProvider(BaseModel):
    """The deterministic rule-based planner; needs nothing."""

    model_config = _FROZEN

    kind: Literal["scripted"]
    """Discriminator."""


class OpenAICompatibleProvider(BaseModel):
    """Any server speaking OpenAI's `/chat/completions` (OpenAI, vLLM, Ollama, LiteLLM …)."""

    model_config = _FROZEN

    kind: Literal["openai_compatible"]
    """Discriminator."""
    base_url: str
    """API root, the part before `/chat/completions` (e.g. `https://api.openai.com/v1`)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key; unset: no key is sent."""
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    """Limit on each HTTP attempt (connect, write, read)."""
    max_retries: int = Field(default=2, ge=0, le=10)
    """Further attempts after a 429, a 5xx, a timeout or a connection error."""
    backoff_s: float = Field(default=0.5, ge=0, le=60)
    """First retry delay; doubled on each retry, plus jitter."""
    max_backoff_s: float = Field(default=20.0, ge=0, le=600)
    """Longest single wait, also for a server's Retry-After."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name (the key itself "
                             "never goes in this file)")
        return value


Provider = Annotated[ScriptedProvider | OpenAICompatibleProvider, Field(discriminator="kind")]


class ModelPrice(BaseModel):
    """What a model costs, for the cost recorded with each call."""

    model_config = _FROZEN

    input_usd_per_1k: float = Field(ge=0)
    """USD per 1000 prompt tokens."""
    output_usd_per_1k: float = Field(ge=0)
    """USD per 1000 completion tokens."""


class ModelChoice(BaseModel):
    """Which model does a job on a route."""

    model_config = _FROZEN

    provider: str
    """A name under `providers`."""
    model: str = Field(min_length=1)
    """A name under `models` (sent to the provider as the model id)."""
    prompt: str = "v1"
    """Prompt file version (`processors/prompts/<job>/<prompt>.md`); model providers only."""

    @field_validator("prompt")
    @classmethod
    def _prompt_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a prompt version (letters, digits, . _ -)")
        return value


class RouteModels(BaseModel):
    """The models of one route."""

    model_config = _FROZEN

    planner: ModelChoice
    """The model that writes the plan."""
    finalizer: ModelChoice | None = None
    """The model that writes the final answer from the response builder's draft; unset: the
    default route's, and with none there either, the draft is the final answer."""


class ModelsConfig(BaseModel):
    """The whole `models.yaml`."""

    model_config = _FROZEN

    version: Literal[1] = 1
    """Format version of the file."""
    providers: dict[str, Provider]
    """Providers by name."""
    models: dict[str, ModelPrice]
    """Prices by model name."""
    routes: dict[str, RouteModels]
    """Models per route; `default` is required and serves every undeclared route."""

    @model_validator(mode="after")
    def _references(self) -> ModelsConfig:
        if DEFAULT_ROUTE not in self.routes:
            raise ValueError(f"routes.{DEFAULT_ROUTE}: required (it serves every other route)")
        for route, jobs in self.routes.items():
            self._check(route, "planner", jobs.planner)
            if jobs.finalizer is not None:
                self._check(route, "finalizer", jobs.finalizer)
        return self

    def _check(self, route: str, job: str, choice: ModelChoice) -> None:
        where = f"routes.{route}.{job}"
        provider = self.providers.get(choice.provider)
        if provider is None:
            raise ValueError(f"{where}.provider: {choice.provider!r} is not declared under "
                             f"providers (declared: {', '.join(sorted(self.providers)) or 'none'})")
        if isinstance(provider, ScriptedProvider) and job == "finalizer":
            # The scripted provider has planning rules and nothing else; a finalizer that
            # cannot write would only echo the draft, which leaving it out already does.
            raise ValueError(f"{where}.provider: {choice.provider!r} is the scripted provider, "
                             "which cannot be a finalizer (it only plans); name an "
                             "openai_compatible provider, or leave finalizer out to send the "
                             "draft as the final answer")
        if choice.model not in self.models:
            raise ValueError(f"{where}.model: {choice.model!r} has no price under models "
                             f"(declared: {', '.join(sorted(self.models)) or 'none'})")
        if isinstance(provider, ScriptedProvider) and choice.model != ScriptedPlanner.model:
            raise ValueError(f"{where}.model: the scripted provider only has "
                             f"{ScriptedPlanner.model!r}, not {choice.model!r}")

    def planner(self, route: str) -> ModelChoice:
        """The planner model of `route`, or of the default route when it has none of its own."""
        return (self.routes.get(route) or self.routes[DEFAULT_ROUTE]).planner

    def finalizer(self, route: str) -> ModelChoice | None:
        """The finalizer of `route`, else the default route's, else None (the draft is final).

        A route without a finalizer of its own takes the default's, like an undeclared route.
        """
        own = self.routes.get(route)
        if own is not None and own.finalizer is not None:
            return own.finalizer
        return self.routes[DEFAULT_ROUTE].finalizer

    def provider(self, name: str) -> ScriptedProvider | OpenAICompatibleProvider:
        """The provider called `name`; KeyError when it is not declared."""
        return self.providers[name]

    def price(self, model: str) -> ModelPrice:
        """The price of `model`; ValueError naming the declared ones when it has none."""
        try:
            return self.models[model]
        except KeyError:
            raise ValueError(f"model {model!r} has no price in the model configuration "
                             f"(declared: {', '.join(sorted(self.models))})") from None
