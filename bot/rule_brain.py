"""The deterministic brain: patterns in (bot/extract.py), templates out (prompts/replies.yaml).

The embedded default and the fallback of every other brain: offline, instant, grounded by
construction (its answers quote the content store).
"""
from __future__ import annotations

import re
from typing import Any

from .booking import parse_pick
from .brain import PROMPTS_DIR, LeadView, Reply, load_prompt
from .language import DEFAULT, NAMES, name_of
from .compose import ReplyPlan, Step
from .extract import Understanding, understand
from .playbook import Playbook
from .text import dump_yaml


class RuleBrain:
    """Deterministic and offline: patterns in, templates out."""

    name = "rules"

    def __init__(self, playbook: Playbook):
        self.playbook = playbook
        self.templates = load_prompt("replies")
        # The same templates in other languages (prompts/replies.<code>.yaml), read once.
        self.translations = {p.stem.split(".", 1)[1]: load_prompt(p.stem)
                             for p in sorted(PROMPTS_DIR.glob("replies.*.yaml"))}
        self._evidence = [dump_yaml(self.templates)] + [dump_yaml(t, allow_unicode=True)
                                                            for t in self.translations.values()] + [
            " ".join(n for names in NAMES.values() for n in names)]   # the languages it may name ("Japanese")

    def understand(self, message: str, lead: LeadView, history: list[dict[str, str]]) -> Understanding:
        """Facts, intents and questions — and, when meeting times were just offered, which one the
        visitor picked ("the second one", "Thursday at 2") — from one reading of the message."""
        u = understand(message, self.playbook, asked_field=lead.asking, today=lead.today, known=lead.fields)
        if lead.offered_slots and lead.now is not None and "injection" not in u.intents:
            u.pick = parse_pick(message, lead.offered_slots, lead.timezone, lead.now)
        return u

    def _t(self, key: str, variant: int = 0, lang: str = DEFAULT, **values: Any) -> str:
        """Template `key` filled, in `lang` when prompts/replies.<lang>.yaml has it (else English);
        a list of phrasings gives phrasing `variant` (mod its length)."""
        pb = self.playbook
        base = {"assistant": pb.company.assistant_name, "company": pb.company.name, "product": pb.company.product,
                "minutes": pb.meeting.length_minutes, "url": pb.meeting.url or ""}
        base.update(values)
        local = self.translations.get(lang, {})
        template = local.get(key, self.templates[key])
        if key == "answer" and key in local:
            base["kind"] = local.get("kinds", {}).get(base.get("kind"), base.get("kind"))
        if isinstance(template, list):
            template = template[variant % len(template)]
        return str(template).format(**base)

    def render(self, step: Step, variant: int = 0, lang: str = DEFAULT, fields: dict[str, Any] | None = None) -> str:
        """One step of the plan in the words of prompts/replies.yaml (or its translation for `lang`),
        phrasing `variant`. In another language the English qualifying question becomes the offer to
        continue in that language by email, or in English (`other_language`)."""
        if lang != DEFAULT and step.kind in ("question", "human_email"):
            email = (fields or {}).get("email")
            key = "other_language_known_email" if email else "other_language"
            if step.kind == "human_email" and lang in self.translations:
                key = "human_email"
            return self._t(key, variant, lang, language=name_of(lang), email=email or "")
        if lang != DEFAULT:
            if step.kind == "close":
                key = f"close_{step.data.get('reason')}"
                return self._t(key if key in self.templates else "close_student", variant, lang)
            return self._t(step.kind, variant, lang, **step.data)
        if step.kind == "question":
            text = str(step.data.get("text") or "")     # the playbook's own words ...
            if not (step.data.get("again") and text):
                return text
            return self._t("ask_again", variant, text=_lower_first(text))   # ... led in when asked again
        if step.kind == "close":
            key = f"close_{step.data.get('reason')}"
            return self._t(key if key in self.templates else "close_student", variant)
        return self._t(step.kind, variant, **step.data)

    def _text(self, plan: ReplyPlan, variant: int, lang: str = DEFAULT, fields: dict[str, Any] | None = None) -> str:
        return " ".join(p.strip() for p in (self.render(s, variant, lang, fields) for s in plan.steps) if p.strip())

    def compose(self, plan: ReplyPlan, lead: LeadView, history: list[dict[str, str]]) -> Reply:
        """The plan in template words. The phrasing rotates with the conversation (`plan.decision.
        variant`); should that still open like the last reply, the next phrasings are tried."""
        last = next((m.get("text", "") for m in reversed(history or []) if m.get("role") == "agent"), "")
        variant = plan.decision.variant
        lang, fields = (getattr(lead, "language", None) or DEFAULT), (getattr(lead, "fields", None) or {})
        text = self._text(plan, variant, lang, fields)
        for shift in range(1, 4):
            if not last or not repeats(text, last):
                break
            text = self._text(plan, variant + shift, lang, fields)
        names = [name_of(lang), name_of(lang, native=True)] if lang != DEFAULT else []
        return Reply(text=text, prompt="replies", prompt_version=self.templates.get("version"), model="rules",
                     evidence=self._evidence + list(plan.facts) + names)


def opening(text: str, words: int = 4) -> tuple[str, ...]:
    """The first `words` words of a reply, lower-cased: what a reader notices repeating."""
    return tuple(re.findall(r"[\w'’]+", text.lower())[:words])


def repeats(text: str, last: str) -> bool:
    """True when `text` is `last` again or opens with the same words."""
    return text == last or opening(text) == opening(last)


def _lower_first(text: str) -> str:
    """"What's your role?" → "what's your role?" after a lead-in (not "I", not an acronym)."""
    first = text.split(" ", 1)[0]
    if first in ("I", "I'm", "I'd", "I've") or len(first) < 2 or not first[1:2].islower():
        return text
    return text[0].lower() + text[1:]
