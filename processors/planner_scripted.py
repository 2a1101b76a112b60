"""The deterministic default planner: plain-language requests become plans by rules, not a model.

It plays the part of a small model in demos, tests and replays: the same text always gives the
same plan, byte for byte. It is naive on purpose where safety is concerned ("drop the orders
table" becomes `DROP TABLE orders`), because stopping that is the policy guard's job and the
demos must show it doing so. Its SQL rules live in `processors/planner_sql.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from processors.planner_sql import DOCS_CUE, EMAIL, read_sql, rx, write_sql
from schemas.events import RetrievedMemory

__all__ = ["SAMPLE_REQUESTS", "ScriptedPlanner"]

SAMPLE_REQUESTS: dict[str, str] = {
    "docs": "What is our refund policy for annual plans?",
    "sql": "How many customers do we have in Germany?",
    "destructive_sql": "Drop the orders table.",
    "external_email": "Send an email to jane.doe@gmail.com about the delayed shipment.",
    "ticket": "Open an urgent ticket: the checkout page returns 500 errors.",
}
"""One demo sentence per behaviour a demo has to show."""

_MAX_STEPS = 20
_BUDGET_USD = 0.5
_STOP_CONDITIONS = ["all steps done", "a step is denied by policy", "a step fails"]


# ---- request vocabulary -------------------------------------------------------------------------

_RECIPIENT = rx(rf"\b(?P<kw>to|cc|bcc)\b|(?P<addr>{EMAIL.pattern})")
EMAIL_VERB = rx(r"\b(e-?mail|mail|send|forward|write|notify|reply|message|tell|inform|ping|"
                  r"let \S+ know|b?cc|share)\b")
_SEND_PREFIX = rx(r"^(?:send|e-?mail|mail|forward|write|share|message|notify|tell|inform|ping|"
                   r"reply)\b(?:\s+(?:an?\s+)?(?:e-?mail|mail|message|note)\b)?")
_DEICTIC = rx(r"^(?:it|this|that|them|these|those|something|an?\s+(?:e-?mail|note|message|mail|"
               r"reminder|update|reply|line)|)$")
_CONTENT = rx(r"\b(?:saying|that says|with the (?:message|text)|to say|and say)\s+(?P<c>.+)$|"
               r"\b(?:tell|inform|notify|let)\b.*?\bthat\s+(?P<t>.+)$|:\s*(?P<k>.+)$")
_SUBJECT = rx(r"\b(?:about|regarding|concerning|re:|subject:?|titled|on the topic of)\s+"
               r"(?P<s>.+)$")
_TICKET = rx(r"\b(?:open|create|file|raise|log|submit|make|start|add|report|lodge|cut)\s+"
              r"(?:[\w-]+\s+){0,4}?(?:ticket|issue|bug|incident|case)s?\b|\bnew ticket\b")
_TICKET_TOPIC = rx(r"\b(?:ticket|issue|bug|incident|case)s?\b[\s,]*(?:about|for|regarding|re:?|on|"
                    r"saying|that says|because|titled|called|named|to|that|:|-)\s*(?P<topic>.+)")
_HIGH = rx(r"\b(urgent(ly)?|critical|asap|high[- ]priority|p[01]|sev ?1|emergency|immediately|"
            r"blocker|outage)\b")
_LOW = rx(r"\b(low[- ]priority|minor|whenever|no rush|not urgent|p[34]|nice to have)\b")
_PRIORITY_WORDS = rx(r"\b(?:an?\s+)?(?:not urgent|no rush|urgent(?:ly)?|critical|asap|"
                      r"(?:high|low)[- ]priority|minor|p[0-4]|whenever)\b[:,]?")
_POLITE_WORDS = rx(r"\b(?:please|pls|kindly|can you|could you)\b")
_POLITE = rx(r"^(?:(?:hey|hi|hello)\b[^,]*,\s*)?(?:(?:please|pls|kindly|can you|could you|"
              r"would you|i need you to|i want you to|i'd like you to|i want to|i'd like to|"
              r"we need to|go ahead and|let's|and|then|also)\s+)*")
_VERBS = (r"e-?mail|mail|send|forward|write|notify|open|create|file|raise|log|submit|report|"
          r"look\s+up|lookup|search|find|check|show|list|count|give|fetch|tell|summari[sz]e|"
          r"drop|delete|truncate|alter|remove|wipe|purge|update|mark")
_SPLIT = rx(rf"(?<=[.!?;])\s+|(?:,\s*|\s+)(?:and\s+then|and\s+also|and|then|also)\s+"
             rf"(?=(?:please\s+)?(?:{_VERBS})\b)|,\s*(?=(?:please\s+)?(?:{_VERBS})\b)")
_QUESTION = rx(r"\?|^(how|what|what's|whats|where|when|why|who|which|can|could|is|are|do|does|"
                r"did|should|may|explain|describe|tell me|look up|lookup|search|find|check|"
                r"summari[sz]e|show me|give me|i need|help)\b")
_TOPIC_PREFIX = rx(r"^(?:look up|lookup|search(?: the docs)? for|search|find(?: out)?|check|get|"
                    r"show me|tell me|give me|list|fetch|what is|what's|what are)\s+")
_LITERAL_SQL = re.compile(
    r"`(?P<tick>(?i:select|with|insert|update|delete|drop|alter|create|pragma)\b[^`]+)`"
    r"|^(?i:run|execute|exec)(?i:\s+(?:this|the following|the))?(?i:\s+(?:sql|query|statement))?"
    r"\s*:?\s*(?P<run>(?i:select|with|insert|update|delete|drop|alter|create|pragma)\b.+)$"
    r"|^(?P<upper>(?:SELECT|WITH|INSERT|UPDATE|DELETE|DROP|ALTER|CREATE|PRAGMA)\b.+)$")


@dataclass(frozen=True)
class _Step:
    tool: str
    input: dict[str, Any]
    objective: str
    success: str


class ScriptedPlanner:
    """Turns a request into plan JSON by deterministic rules; the default planner."""

    provider = "scripted"
    """Recorded as the provider of every model call."""
    model = "scripted-v1"
    """Recorded as the model of every plan it writes."""
    prompt_version = "scripted/1"
    """Recorded as the prompt version; bump it when the rules change what plans come out."""

    def plan(self, *, run_id: str, text: str, route: str = "default",
             memories: Sequence[RetrievedMemory] = ()) -> str:
        """The plan for `text`, as the JSON text a model would return. A question a remembered
        fact of `memories` answers is planned as an answer from that fact (the docs are still
        searched, for anything newer); without a matching fact, the plan is what it always was."""
        del route  # one rule set for every route; model planners pick a prompt by it
        request = " ".join(text.split())
        steps = [_from_memory(s, memories) for s in _steps_for(request)][:_MAX_STEPS]
        plan = {
            "runId": run_id,
            "maxSteps": min(_MAX_STEPS, len(steps) + 2),
            "budgetUsd": _BUDGET_USD,
            "steps": [
                {"id": f"s{i}", "objective": s.objective, "tool": s.tool, "input": s.input,
                 "successCriteria": s.success}
                for i, s in enumerate(steps, start=1)
            ],
            "stopConditions": list(_STOP_CONDITIONS),
        }
        return json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def usage(self, text: str, output: str) -> tuple[int, int]:
        """Pseudo (input, output) token counts: words times 1.3, so cost figures are stable."""
        return _tokens(text), _tokens(output)


def _tokens(text: str) -> int:
    return max(1, round(len(re.findall(r"\w+", text)) * 1.3))


def _steps_for(request: str) -> list[_Step]:
    steps: list[_Step] = []
    previous = ""
    for clause in (c.strip() for c in _SPLIT.split(request)):
        if clause:
            steps.extend(_clause_steps(clause, request=request, previous=previous))
            previous = clause
    return steps or [_docs_step(request or "help")]  # an empty query would break the contract


def _clause_steps(clause: str, *, request: str, previous: str) -> list[_Step]:
    core = _POLITE.sub("", clause).strip(" ,;.!")
    if literal := _LITERAL_SQL.search(clause):
        sql = next(g for g in literal.groups() if g).strip().rstrip(";")
        return [_sql_step(sql, core, writes=not sql.lower().startswith(("select", "with")))]
    if _TICKET.search(core):
        return [_ticket_step(core, request)]
    # An address with no verb is still mail, unless it only names a customer in a data request.
    if EMAIL.search(core) and (EMAIL_VERB.search(core)
                                or not (write_sql(core) or read_sql(core))):
        return _email_steps(core, request=request, previous=previous)
    if sql := write_sql(core):
        return [_sql_step(sql, core, writes=True)]
    if sql := read_sql(core):
        return [_sql_step(sql, core, writes=False)]
    if _QUESTION.search(core) or DOCS_CUE.search(core):
        return [_docs_step(clause)]
    return []  # small talk or context ("Hi.", "The VPN keeps dropping") is no step of its own


_WORD = re.compile(r"[a-z0-9][a-z0-9-]+")
_NOT_CONTENT = frozenset({
    "the", "and", "are", "was", "were", "for", "with", "what", "whats", "who", "whom", "which", "where",
    "when", "why", "how", "our", "your", "their", "its", "this", "that", "these", "those", "does",
    "did", "can", "could", "should", "would", "will", "about", "from", "into", "have", "has", "had",
    "any", "all", "there", "here", "tell", "give", "show", "find", "look", "please", "know", "is", "do"})
_EXCHANGE = "Asked: "
"""How a memory of a past exchange begins (processors/memory/remember.py): a record, not a fact."""


def _content_words(text: str) -> set[str]:
    return {w.removesuffix("s") for w in _WORD.findall(text.lower()) if w not in _NOT_CONTENT}


def _fact_for(question: str, memories: Sequence[RetrievedMemory]) -> RetrievedMemory | None:
    """The best-ranked remembered fact that shares the question's content words (two of them, or
    the only one it has)."""
    wanted = _content_words(question)
    for memory in memories:
        if memory.text.startswith(_EXCHANGE):
            continue
        if wanted and len(wanted & _content_words(memory.text)) >= min(2, len(wanted)):
            return memory
    return None


def _from_memory(step: _Step, memories: Sequence[RetrievedMemory]) -> _Step:
    if step.tool != "search_docs" or not memories:
        return step
    query = str(step.input["query"])
    fact = _fact_for(query, memories)
    if fact is None:
        return step
    return _Step(step.tool, step.input,
                 f"Answer from the remembered fact {fact.memory_id} (“{_shorten(fact.text, 120)}”) and check "
                 f"the documentation for anything newer: {query}",
                 "The answer gives the remembered fact, or a newer passage that replaces it")


def _docs_step(query: str) -> _Step:
    return _Step("search_docs", {"query": query, "top_k": 3},
                 f"Find what the documentation says about: {query}",
                 "At least one relevant passage is found and quoted")


def _sql_step(sql: str, asked: str, *, writes: bool) -> _Step:
    if writes:
        return _Step("query_sql", {"sql": sql}, f"Change the shop database as asked: {asked}",
                     "The statement runs without error")
    return _Step("query_sql", {"sql": sql}, f"Answer from the shop database: {asked}",
                 "The query runs and returns the rows that answer the question")


def _ticket_step(core: str, request: str) -> _Step:
    topic = _TICKET_TOPIC.search(core)
    title = _PRIORITY_WORDS.sub("", topic.group("topic")) if topic else ""
    for context in (core, request):  # "…, open a ticket": the rest says what it is about
        if len(_clean(title)) < 3:
            title = _PRIORITY_WORDS.sub("", _POLITE_WORDS.sub("", _TICKET.sub("", context)))
    title = _shorten(_sentence(title) or "Ticket from an agent request", 80)
    priority = ("low" if _LOW.search(request) else "high" if _HIGH.search(request)
                else "normal")
    return _Step("create_ticket", {"title": title, "description": request, "priority": priority},
                 f"Open a {priority}-priority ticket: {title}",
                 "The ticket store returns the new ticket's id")


def _email_steps(core: str, *, request: str, previous: str) -> list[_Step]:
    to, cc, bcc = _recipients(core)
    rest, content = _cut(core, _CONTENT)
    rest, subject = _cut(rest, _SUBJECT)
    subject = "" if _DEICTIC.match(subject) else subject
    thing = _email_object(rest)
    steps: list[_Step] = []
    if thing and (sql := read_sql(thing)):
        steps.append(_sql_step(sql, thing, writes=False))
    elif thing and DOCS_CUE.search(thing):
        steps.append(_docs_step(thing))
    topic = _topic(subject or thing or content or previous or request)
    subject = _shorten(_sentence(subject) if subject else f"Re: {topic}", 78)
    text = f"{_sentence(content)}." if content else f"This message is about {topic}."
    email: dict[str, Any] = {"to": to[0] if len(to) == 1 else to, "subject": subject,
                             "body": f"Hello,\n\n{text}\n\nBest regards"}
    email.update({k: v for k, v in (("cc", cc), ("bcc", bcc)) if v})
    shown = ", ".join(to)
    steps.append(_Step("send_email", email, f"E-mail {shown}: {subject}",
                       "The relay accepts the message for every recipient"))
    return steps


def _recipients(text: str) -> tuple[list[str], list[str], list[str]]:
    found: dict[str, list[str]] = {"to": [], "cc": [], "bcc": []}
    mode = "to"
    for m in _RECIPIENT.finditer(text):
        if m.group("kw"):
            mode = m.group("kw").lower()
        elif m.group("addr") not in found[mode]:
            found[mode].append(m.group("addr"))
    if not found["to"]:
        found["to"], found["cc"] = found["cc"] or found["bcc"], []
    return found["to"], found["cc"], found["bcc"]


def _email_object(rest: str) -> str:
    """What is being sent: "email [the refund policy] to a@b.c" or "email a@b.c [the report]"."""
    body = _SEND_PREFIX.sub("", rest.strip()).strip()
    first = EMAIL.search(body)
    if first is None:
        return ""
    before = re.sub(r"\s*\b(?:to|cc|bcc|for|at)\s*$", "", body[: first.start()].strip(), flags=re.IGNORECASE)
    after = body[[m.end() for m in EMAIL.finditer(body)][-1]:]
    after = re.sub(r"^[\s,]*(?:(?:and|b?cc|to)\b[\s,]*)*", "", after, flags=re.IGNORECASE)
    for candidate in (before.strip(" ,"), after.strip(" ,")):
        if not _DEICTIC.match(candidate) and not EMAIL.search(candidate):
            return candidate
    return ""


def _cut(text: str, pattern: re.Pattern[str]) -> tuple[str, str]:
    m = pattern.search(text)
    if m is None:
        return text, ""
    return text[: m.start()].strip(), _clean(next(g for g in m.groups() if g))


def _topic(text: str) -> str:
    """A few words saying what `text` is about, for subjects: no verbs, addresses or courtesy."""
    if ticket := _TICKET_TOPIC.search(text):
        text = ticket.group("topic")
    text = _SEND_PREFIX.sub("", _TOPIC_PREFIX.sub("", _POLITE.sub("", _clean(text))))
    text = re.sub(r"(?:\s+\b(?:to|for|at|b?cc|and)\b)+\s*$", "", text, flags=re.IGNORECASE)
    return _shorten(_clean(text), 60) or "your request"


def _clean(text: str) -> str:
    return " ".join(EMAIL.sub("", text).split()).strip(" ,;:.!?-—")


def _sentence(text: str) -> str:
    text = _clean(text)
    return text[:1].upper() + text[1:]


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"
