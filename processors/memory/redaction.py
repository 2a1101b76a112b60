"""PII redaction with Microsoft Presidio, offline: the one redactor of memories, of what
`MemoryRetrieved` carries and of `agentlog memory redact`.

Presidio's analyzer wants a spaCy pipeline; a named model would be downloaded on first use, so a
blank English pipeline (tokenizer only, shipped inside spaCy itself) is written to a temporary
folder and loaded by path. The pattern recognizers need nothing more; PERSON and LOCATION need a
NER model, which is not bundled (see the README), so they are found only by a model given as
`ner_model` (a path or an installed package name, never fetched).

The tuning (`tuned=True`, the default) over Presidio's defaults, each measured by
`tests/benchmarks/bench_redaction.py`:
- phone numbers are matched for 30 regions instead of 8, and numbers written with a leading `+`
  or `00` are accepted in any region (phonenumbers validates them, so this adds no noise);
- credit cards of 12 to 19 digits (Maestro, Visa 19, UnionPay) are matched, grouped or not,
  and still checked with Luhn;
- recognizers whose hits are mostly noise on free text (US bank numbers, driver licences,
  passports, ITIN: any 6–17 digits) are left out, and results under `min_score` are dropped.
"""

from __future__ import annotations

import functools
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Entity", "Redaction", "PresidioRedactor", "ENTITIES", "redactor"]

ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS",
            "PERSON", "LOCATION", "URL", "CRYPTO", "MEDICAL_LICENSE", "UK_NHS")
"""The entity types redacted, in Presidio's names."""

_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR", "ES", "IT", "NL", "BE", "CH", "AT", "SE",
            "NO", "DK", "FI", "PL", "PT", "IE", "AU", "NZ", "JP", "CN", "KR", "MX", "AR", "ZA", "SG")
_PHONE_CONTEXT = ["phone", "number", "telephone", "tel", "cell", "cellphone", "mobile", "call", "fax",
                  "reach", "ring", "whatsapp", "contact"]
_NOISY = ("UsBankRecognizer", "UsLicenseRecognizer", "UsPassportRecognizer", "UsItinRecognizer",
          "DateRecognizer")
_PHONE_INTERNATIONAL = (r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}[ .\-]?(?:\(0\)[ ]?)?\(?\d{1,5}\)?"
                        r"(?:[ .\-]?\d{2,5}){1,4}"
                        r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,6})?(?!\w)")
"""A number written with its country code (`+` or `00`), any grouping, an optional `(0)` and extension:
numbers look like this nowhere else."""
_DATE = re.compile(r"(?:19|20)\d\d-?(?:0[1-9]|1[0-2])-?(?:0[1-9]|[12]\d|3[01])")
"""A date (2026-11-03, 20261103) is valid as a number in some region's plan; it is not a phone."""
_CARD_ANY = r"\b[2-6]\d{3}(?:[ -]?\d{1,4}){2,4}\b"
"""12 to 19 digits from an issuer's first digit, grouped by spaces or dashes or not: the length and
the Luhn check are what decide."""


@dataclass(frozen=True)
class Entity:
    type: str
    """Presidio's entity type, e.g. `EMAIL_ADDRESS`."""
    start: int
    """Offset of the first character in the original text."""
    end: int
    """Offset after the last character in the original text."""


@dataclass(frozen=True)
class Redaction:
    text: str
    """The text with every entity replaced by `<TYPE>`."""
    entities: tuple[Entity, ...]
    """What was replaced, in order, offsets into the original text."""


def _blank_pipeline() -> str:
    import spacy

    path = Path(tempfile.mkdtemp(prefix="agentlog-spacy-blank-"))
    spacy.blank("en").to_disk(path)
    return str(path)


def _offline_tldextract() -> None:
    # The e-mail recognizer asks tldextract for the domain's suffix; its default extractor fetches
    # the public suffix list. The snapshot bundled with the package is what it falls back to anyway.
    import tldextract
    import tldextract.tldextract as module

    module.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None,
                                                 fallback_to_snapshot=True)


class PresidioRedactor:
    """Finds PII with Presidio's analyzer and replaces it with `<TYPE>` placeholders."""

    def __init__(self, *, tuned: bool = True, ner_model: str | None = None, min_score: float = 0.3,
                 entities: Sequence[str] = ENTITIES) -> None:
        """tuned: the recognizers of this module's docstring (False: Presidio's defaults, for measuring).
        ner_model: a spaCy model path or installed package with NER (PERSON, LOCATION); None: blank.
        min_score: results below it are not redacted (Presidio's own scores, 0–1).
        entities: the entity types to redact."""
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_anonymizer import AnonymizerEngine

        _offline_tldextract()
        model = ner_model or _blank_pipeline()
        provider = NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]})
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"])
        if tuned:
            _tune(registry)
        self._analyzer = AnalyzerEngine(registry=registry, nlp_engine=provider.create_engine(),
                                        supported_languages=["en"])
        self._anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]
        self._min_score = min_score if tuned else 0.0
        self._entities = list(entities)
        self.tuned = tuned
        self.version = f"presidio-{'tuned' if tuned else 'default'}-1"
        """Names the recognizers' configuration, recorded beside what it redacted."""

    def _analyze(self, text: str) -> list[Any]:
        if not text:
            return []
        results = [r for r in self._analyzer.analyze(text, language="en", entities=self._entities)
                   if r.score >= self._min_score
                   and not (self.tuned and r.entity_type == "PHONE_NUMBER"
                            and _DATE.fullmatch(text[r.start:r.end]))]
        results.sort(key=lambda r: (-(r.end - r.start), -r.score, r.start))
        kept: list[Any] = []
        for r in results:
            if all(r.end <= k.start or r.start >= k.end for k in kept):
                kept.append(r)
        return sorted(kept, key=lambda r: r.start)

    def find(self, text: str) -> tuple[Entity, ...]:
        """The entities in `text`, overlaps resolved (the longer span, then the higher score, wins)."""
        return tuple(Entity(r.entity_type, r.start, r.end) for r in self._analyze(text))

    def redact(self, text: str) -> Redaction:
        """`text` with every entity replaced by its type in angle brackets (Presidio's anonymizer,
        its default `replace` operator)."""
        results = self._analyze(text)
        if not results:
            return Redaction(text, ())
        done = self._anonymizer.anonymize(text=text, analyzer_results=results)
        return Redaction(done.text, tuple(Entity(r.entity_type, r.start, r.end) for r in results))

    def redact_all(self, texts: Iterable[str]) -> list[Redaction]:
        return [self.redact(t) for t in texts]


def _tune(registry: Any) -> None:
    import phonenumbers
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, PhoneRecognizer

    class InternationalPhone(PhoneRecognizer):
        """Also numbers written with their country code (`+44 …`), from any region."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            results = list(super().analyze(text, entities, nlp_artifacts))
            seen = {(r.start, r.end) for r in results}
            # Region "ZZ" (unknown) matches only numbers that carry their country code: those may be
            # merely possible, not valid, in their country's plan (a number typed wrong is still PII).
            possible = phonenumbers.Leniency.POSSIBLE
            results.extend(
                self._get_recognizer_result(match, text, "ZZ", nlp_artifacts)  # type: ignore[no-untyped-call]
                for match in phonenumbers.PhoneNumberMatcher(text, "ZZ", leniency=possible)
                if (match.start, match.end) not in seen)
            return results

    for name in _NOISY:
        registry.remove_recognizer(name)
    registry.remove_recognizer("PhoneRecognizer")
    registry.remove_recognizer("CreditCardRecognizer")
    registry.add_recognizer(InternationalPhone(context=_PHONE_CONTEXT, supported_regions=_REGIONS,
                                               leniency=1))
    registry.add_recognizer(PatternRecognizer(
        supported_entity="PHONE_NUMBER", name="InternationalPhonePattern", context=_PHONE_CONTEXT,
        patterns=[Pattern("+CC number", _PHONE_INTERNATIONAL, 0.5)]))
    class AnyLengthCard(CreditCardRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            digits = sum(c.isdigit() for c in pattern_text)
            return 12 <= digits <= 19 and bool(super().validate_result(pattern_text))

    registry.add_recognizer(AnyLengthCard(patterns=[
        *CreditCardRecognizer.PATTERNS, Pattern("Card (12-19 digits)", _CARD_ANY, 0.3)]))


@functools.cache
def redactor(*, tuned: bool = True) -> PresidioRedactor:
    """The process's redactor (building one loads Presidio: about a second)."""
    return PresidioRedactor(tuned=tuned)
