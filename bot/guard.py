"""Guardrails: prompt injection in, ungrounded claims out, secrets never.

`ungrounded_claims` is the check every reply passes before it leaves, whoever wrote it (template
or model): each price, number, integration and proper name in the reply must appear in the
evidence — the retrieved content, the playbook, or what the visitor said themselves.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from .extract import INJECTION_RE
from .settings import secret_values
from .text import EMAIL_RE

# Capitalised words that are not claims: sentence starts, days, our own UI words.
_COMMON = set("""I I'm I'll I've I'd A An The And Or But If So We You Your Our It It's Its This That These Those There
Here Hi Hello Hey Thanks Thank Sure Great Good Happy Glad Yes No Not Of For From With About What Which Who Whom How
Why When Where Can Could Would Should Will Do Does Did Is Are Was Were Be Been Also Just Please Sorry Got Noted
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August September
October November December Q1 Q2 Q3 Q4 Let Want Would Here's That's What's Who's You're We're They're Here’s
Done Of Okay OK Ok Perfect Welcome Teams Companies Customers Pricing Integrations FAQ From Based""".split())

_NUMBER_RE = re.compile(r"(?<![\w.])[$€£]?\d[\d,]*(?:\.\d+)?\s*(?:%|k\b|m\b|x\b)?")
_PROPER_RE = re.compile(r"(?<![\w'’])([A-Z][a-zA-Z0-9&'’.-]*[a-zA-Z0-9](?:\s+[A-Z][a-zA-Z0-9&'’.-]*[a-zA-Z0-9])*)")
_INTEGRATES_RE = re.compile(r"\b(?:integrates?|integration|connects?|syncs?|works)\s+(?:natively\s+)?(?:with|to|into)\s+([A-Za-z0-9][\w.&+' -]{1,40}?)(?=[.,;!?)]|\s+(?:and|or|too|as well)\b|$)", re.I)


_INTERNAL_RE = re.compile(r"\b(?:(?:your|lead|the)\s+score|scored|SQL|MQL|sales[- ]qualified|marketing[- ]qualified|"
                          r"system prompt|my instructions)\b", re.I)


def evidence_text(playbook: Any, visitor_text: str, fields: dict[str, Any], sources: list[Any],
                  extra: list[str] | None = None) -> str:
    """What a reply may state as fact: the playbook, what the visitor said, what we know about them,
    and the retrieved content (title, heading, text, the quoted snippet, link)."""
    return "\n".join([playbook.grounding_text(), visitor_text, json.dumps(fields, default=str)]
                     + [f"{h.title}\n{h.heading}\n{h.text}\n{h.snippet}\n{h.url}" for h in sources] + list(extra or []))


def is_injection(text: str) -> bool:
    return INJECTION_RE.search(text) is not None


def _norm_number(raw: str) -> str:
    s = raw.strip().lower().replace(",", "").replace(" ", "")
    s = s.lstrip("$€£")
    if s.endswith("k") and s[:-1].replace(".", "").isdigit():
        s = str(int(float(s[:-1]) * 1000))
    return s.rstrip("%x")


@lru_cache(maxsize=256)
def _evidence_numbers(evidence: str) -> frozenset[str]:
    """The numbers the evidence holds, normalised. Kept for the last 256 evidences: most of a turn's
    evidence is the playbook and the same few pages (reading them was ~1 ms of every turn)."""
    return frozenset(_norm_number(m.group(0)) for m in _NUMBER_RE.finditer(evidence))


def ungrounded_claims(reply: str, evidence: str) -> list[str]:
    """Numbers, prices, names and integrations in `reply` that the evidence does not contain."""
    problems: list[str] = []
    ev_low = evidence.lower()
    ev_numbers = _evidence_numbers(evidence)
    # Links are quoted from content metadata; don't read numbers or names inside them.
    body = re.sub(r"https?://\S+", " ", reply)
    for m in _NUMBER_RE.finditer(body):
        n = _norm_number(m.group(0))
        if not n or n in ("1", "0"):
            continue
        if n not in ev_numbers:
            problems.append(f"number {m.group(0).strip()}")
    for m in _PROPER_RE.finditer(body):
        phrase = re.sub(r"['’]s\b", "", m.group(1)).strip(".'’-")
        words = [w for w in phrase.split() if w not in _COMMON]
        if not words:
            continue
        candidate = " ".join(words)
        if candidate.lower() in ev_low or all(w.lower().strip(".'’") in ev_low for w in words):
            continue
        # a capitalised word at the start of a sentence is usually not a name
        start = m.start(1)
        before = body[:start].rstrip()
        if (not before or before[-1] in ".!?:—–-\n\"“") and len(words) == 1 and words[0] == phrase.split()[0]:
            continue
        problems.append(f"name {candidate}")
    for m in _INTEGRATES_RE.finditer(body):
        target = m.group(1).strip().rstrip(".")
        if target.lower() in ("you", "it", "them", "us", "your team", "your crm", "the team", "someone"):
            continue
        if target.lower() not in ev_low:
            problems.append(f"integration {target}")
    for m in EMAIL_RE.finditer(body):
        if m.group(0).lower() not in ev_low:
            problems.append(f"email {m.group(0)}")   # never someone else's address
    for m in _INTERNAL_RE.finditer(body):
        problems.append(f"internal {m.group(0)}")     # scores and stages are for the sales team, not the visitor
    seen: set[str] = set()
    return [p for p in problems if not (p in seen or seen.add(p))]


def redact_secrets(text: str, settings: Any = None) -> str:
    """Secrets from the settings (bot.settings.secret_values: the environment's, plus `settings`'
    own) and anything shaped like an API or Slack token never appear in a reply or a log line."""
    for value in secret_values(settings):
        text = text.replace(value, "[redacted]")
    text = re.sub(r"\b(?:sk|xox[abpr])-[A-Za-z0-9-]{10,}\b", "[redacted]", text)
    return text
