"""A labelled PII set: sentences from templates filled with Faker values of several locales, each
value's span and Presidio type known. Deterministic for a seed."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from faker import Faker

__all__ = ["Sample", "labelled_set", "LOCALES"]

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "en_IN", "en_AU",
           "sv_SE", "pl_PL", "ja_JP")

_CARDS = ("visa13", "visa16", "visa19", "mastercard", "amex", "discover", "diners", "jcb15", "jcb16",
          "maestro")

TEMPLATES: dict[str, list[str]] = {
    "EMAIL_ADDRESS": ["Send the invoice to {} before Friday.", "My address is {}", "cc {} on the ticket",
                      "Contact: {}.", "the reviewer ({}) approved it"],
    "PHONE_NUMBER": ["Call me at {} tomorrow.", "My mobile is {}", "phone: {}",
                     "You can reach the office on {} until six.", "Her number {} is on the form",
                     "{} is the hotline", "ring {} if the deploy fails"],
    "CREDIT_CARD": ["Charge it to card {} please.", "card number {}", "I paid with {} last week",
                    "the customer's Visa is {}", "refund {} for order 42"],
    "IBAN_CODE": ["Wire the money to {}.", "IBAN: {}", "our account {} at the bank", "pay {} by Monday"],
    "US_SSN": ["My SSN is {}.", "social security number {}", "ssn: {} on file", "the employee's SSN {}"],
    "IP_ADDRESS": ["The server at {} is down.", "blocked ip {}", "login from {} failed",
                   "route traffic to {}"],
    "PERSON": ["Ask {} about the release.", "{} owns the billing service", "meeting with {} at 3"],
    "LOCATION": ["Ship it to {}.", "The office is at {}", "her address: {}"],
}


NEGATIVES = [
    "Order 12345 shipped on 2026-11-03 in 2 boxes.", "We run Python 3.11.4 on build 20261103.4.",
    "The laptop costs 1,299.00 EUR including VAT.", "Ticket INC-20481 was closed at 10:30.",
    "The service listens on port 8080 and 18123.", "Quarterly revenue grew 12.5% to 4.2 million.",
    "Release v2.14.0 fixes 37 bugs in the billing module.", "Batch 884213 of 1500000 rows took 93 s.",
    "Our project code is ORION-7 and the budget id is 2026-Q4-118.", "Room 4.12 on floor 4, seats 1 to 48.",
    "The SKU 400-2231-17 is out of stock until week 49.", "ISO 8601 dates like 2026-12-01T15:27:10Z are UTC.",
    "Latency p99 was 247 ms, then 70 ms after the change.", "Invoice INV-000123 totals 88.10 USD.",
    "Use the 1234 5678 sample only in docs, it is no card.",
    "Run 550e8400-e29b-41d4-a716-446655440000 ended.",
]
"""Sentences with numbers and codes but no PII: what a redactor must leave alone."""


@dataclass(frozen=True)
class Sample:
    text: str
    type: str
    """Presidio's name of the labelled entity."""
    start: int
    end: int
    locale: str


def _value(fake: Faker, kind: str, rng: random.Random) -> str:
    makers: dict[str, Callable[[], str]] = {
        "EMAIL_ADDRESS": fake.email,
        "PHONE_NUMBER": fake.phone_number,
        "CREDIT_CARD": lambda: _grouped(fake.credit_card_number(card_type=rng.choice(_CARDS)), rng),
        "IBAN_CODE": lambda: _iban(fake),
        "US_SSN": lambda: Faker("en_US").ssn(),
        "IP_ADDRESS": lambda: fake.ipv4() if rng.random() < 0.7 else fake.ipv6(),
        "PERSON": fake.name,
        "LOCATION": lambda: fake.address().replace("\n", ", "),
    }
    return makers[kind]()


_IBAN_LENGTH = {"GB": 22, "DE": 22, "FR": 27, "ES": 24, "IT": 27, "NL": 18, "BR": 29, "PL": 28, "SE": 24}


def _iban(fake: Faker) -> str:
    # Faker's en_IN provider makes GB numbers one character short, which no bank would accept:
    # they are not IBANs, so they are made again (each locale's own otherwise).
    for _ in range(20):
        value = fake.iban()
        if _IBAN_LENGTH.get(value[:2], len(value)) == len(value):
            return value
    return Faker("en_GB").iban()


def _grouped(number: str, rng: random.Random) -> str:
    # People write cards in groups of four as often as in one block.
    if rng.random() < 0.5:
        return number
    sep = rng.choice([" ", "-"])
    return sep.join(number[i:i + 4] for i in range(0, len(number), 4))


def labelled_set(*, per_type: int = 200, seed: int = 7) -> list[Sample]:
    """`per_type` sentences for each entity type, locales in turn."""
    rng = random.Random(seed)
    fakers = {loc: Faker(loc) for loc in LOCALES}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(seed + i)
    samples: list[Sample] = []
    for kind, templates in TEMPLATES.items():
        for i in range(per_type):
            locale = LOCALES[i % len(LOCALES)]
            value = _value(fakers[locale], kind, rng)
            template = rng.choice(templates)
            start = template.index("{}")
            samples.append(Sample(template.format(value), kind, start, start + len(value), locale))
    return samples
