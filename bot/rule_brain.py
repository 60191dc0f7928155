"""The deterministic brain: patterns in (bot/extract.py), templates out (prompts/replies.yaml).

The embedded default and the fallback of every other brain: offline, instant, grounded by
construction (its answers quote the content store).
"""
from __future__ import annotations

from typing import Any

import yaml

from .booking import parse_pick
from .brain import LeadView, Reply, load_prompt
from .compose import ReplyPlan, Step
from .extract import Understanding, understand
from .playbook import Playbook


class RuleBrain:
    """Deterministic and offline: patterns in, templates out."""

    name = "rules"

    def __init__(self, playbook: Playbook):
        self.playbook = playbook
        self.templates = load_prompt("replies")
        self._evidence = [yaml.safe_dump(self.templates)]

    def understand(self, message: str, lead: LeadView, history: list[dict[str, str]]) -> Understanding:
        """Facts, intents and questions — and, when meeting times were just offered, which one the
        visitor picked ("the second one", "Thursday at 2") — from one reading of the message."""
        u = understand(message, self.playbook, asked_field=lead.asking, today=lead.today, known=lead.fields)
        if lead.offered_slots and lead.now is not None and "injection" not in u.intents:
            u.pick = parse_pick(message, lead.offered_slots, lead.timezone, lead.now)
        return u

    def _t(self, key: str, **values: Any) -> str:
        pb = self.playbook
        base = {"assistant": pb.company.assistant_name, "company": pb.company.name, "product": pb.company.product,
                "minutes": pb.meeting.length_minutes, "url": pb.meeting.url or ""}
        base.update(values)
        return str(self.templates[key]).format(**base)

    def render(self, step: Step) -> str:
        """One step of the plan in the words of prompts/replies.yaml."""
        if step.kind == "question":
            return str(step.data.get("text") or "")     # the playbook's own words
        if step.kind == "close":
            key = f"close_{step.data.get('reason')}"
            return self._t(key if key in self.templates else "close_student")
        return self._t(step.kind, **step.data)

    def compose(self, plan: ReplyPlan, lead: LeadView, history: list[dict[str, str]]) -> Reply:
        text = " ".join(p.strip() for p in (self.render(s) for s in plan.steps) if p.strip())
        return Reply(text=text, prompt="replies", prompt_version=self.templates.get("version"), model="rules",
                     evidence=self._evidence + list(plan.facts))
