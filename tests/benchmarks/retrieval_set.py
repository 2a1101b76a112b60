"""A labelled question-to-memory set: facts a team would ask an agent to remember, each with
questions worded the way people ask later (other inflections, compounds split or joined, the
name typed another way), among many facts of the same kinds. Deterministic for a seed.

Each memory names one thing (a service, a customer, a person's role …) and the question names
the same thing, so only that memory answers it; the rest of the words overlap with every other
memory of its family, which is what makes the ranking matter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Question", "retrieval_set"]

_SERVICES = ["billing", "checkout", "search", "payments", "ledger", "inventory", "shipping", "auth",
             "notifications", "reporting", "pricing", "catalog", "gateway", "scheduler", "analytics",
             "onboarding", "invoicing", "refunds", "loyalty", "fraud"]
_SUFFIXES = ["api", "service", "worker", "db", "cache", "queue", "frontend", "backend", "exporter", "sync"]
_CUSTOMERS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Tyrell",
              "Cyberdyne", "Soylent", "Massive", "Vandelay", "Oscorp", "Gringotts", "Monarch", "Aperture",
              "Nakatomi", "Dunder", "Pied"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
_TEAMS = ["platform", "data", "mobile", "security", "growth", "infra", "support", "finance"]
_CURRENCIES = ["euros", "dollars", "pounds", "yen", "francs"]

# (memory template, question templates). {s} a service written "billing-api", {q} the same service
# as a person types it in a question (joined, split, or hyphenated), {c} a customer, {t} a team.
FAMILIES: list[tuple[str, list[str]]] = [
    ("The {t} team deploys {s} every {d} after the standup.",
     ["When do deployments of {q} happen?", "which day is {q} deployed", "deploy day for {q}?"]),
    ("{s} is owned by the {t} team; page them for incidents.",
     ["who owns {q}", "Which team has ownership of {q}?", "who do I page when {q} breaks"]),
    ("Invoices for {c} are issued in {cur} and paid by bank transfer.",
     ["what currency do we invoice {c} in", "How is {c} invoiced?", "{c} invoicing currency"]),
    ("{c} prefers to be contacted by the {t} team, never by sales.",
     ["who should contact {c}?", "contacting {c}: which team", "does sales call {c}"]),
    ("The on-call rotation for {s} changes on {d}s.",
     ["when does the oncall for {q} rotate", "{q} on call rotation day", "rotation of {q} oncall"]),
    ("Backups of {s} are kept for {n} days and restored from the snapshot bucket.",
     ["how long are {q} backups retained?", "retention of backup for {q}", "restore {q} from backup"]),
    ("The {s} rate limit is {n} requests per minute per tenant.",
     ["what is the rate-limit of {q}", "requests per minute allowed by {q}?", "{q} ratelimit"]),
    ("{c}'s contract renews on the first {d} of the quarter; the discount is {n} percent.",
     ["when does {c} renew?", "{c} renewal and discount", "what discount does {c} get"]),
    ("Migrations of {s} must be reviewed by the {t} team before running.",
     ["who reviews a migration on {q}", "can I run {q} migrations without review?",
      "{q} migration approval"]),
    ("Alerts from {s} go to the #{t}-alerts channel.",
     ["where do {q} alerts go", "which channel gets alerting for {q}?", "{q} alert channel"]),
]


_CAPACITY = 1700
"""Distinct (family, name) pairs, less a margin: 7 service families × 200 names + 3 customer
families × 100."""


@dataclass(frozen=True)
class Question:
    id: str
    query: str
    relevant: str
    """Id of the one memory that answers it."""


def _service_forms(rng: random.Random) -> tuple[str, str]:
    name, suffix = rng.choice(_SERVICES), rng.choice(_SUFFIXES)
    stored = f"{name}-{suffix}"
    asked = rng.choice([f"{name}{suffix}", f"{name} {suffix}", f"the {name} {suffix}", stored])
    return stored, asked


def retrieval_set(*, memories: int = 1500, questions: int = 400, seed: int = 11
                  ) -> tuple[dict[str, str], list[Question]]:
    """(memory id → text, questions); each question's memory is among `memories`."""
    rng = random.Random(seed)
    texts: dict[str, str] = {}
    asks: list[tuple[str, str]] = []
    used: set[tuple[int, str]] = set()
    if memories > _CAPACITY:
        raise ValueError(f"the families and names make {_CAPACITY} distinct memories at most")
    while len(texts) < memories:
        f = rng.randrange(len(FAMILIES))
        template, qs = FAMILIES[f]
        stored, asked = _service_forms(rng)
        customer = rng.choice(_CUSTOMERS) + rng.choice(["", " Corp", " Labs", " GmbH", " Ltd"])
        key = (f, stored if "{s}" in template else customer)
        if key in used:
            continue
        used.add(key)
        mid = f"m{len(texts):05d}"
        fill = {"s": stored, "c": customer, "t": rng.choice(_TEAMS), "d": rng.choice(_DAYS),
                "cur": rng.choice(_CURRENCIES), "n": str(rng.choice([7, 14, 30, 90, 100, 250, 600]))}
        texts[mid] = template.format(**fill)
        asks.append((mid, rng.choice(qs).format(q=asked, c=customer.split(" ")[0])))
    picked = rng.sample(asks, questions)
    return texts, [Question(f"q{i:04d}", query, mid) for i, (mid, query) in enumerate(picked)]
