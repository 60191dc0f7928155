"""The brain seam: `understand` a message and `compose` a reply for a decision.

The turn only ever calls these two methods. `RuleBrain` is the deterministic, offline brain:
pattern extraction and replies from the templates in prompts/. A model-backed brain (LangChain
chat model) implements the same two methods and falls back to this one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import yaml

from .extract import Understanding, understand
from .playbook import Playbook
from .policy import Decision

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@lru_cache(maxsize=None)
def load_prompt(name: str) -> dict[str, Any]:
    """A prompt file from prompts/ (YAML with `name` and `version`)."""
    path = PROMPTS_DIR / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "version" not in data:
        raise ValueError(f"{path}: a prompt file needs 'name' and 'version' keys")
    return data


@dataclass
class LeadView:
    """What the brain may know about the lead for this turn."""
    id: str
    fields: dict[str, Any]
    stage: str
    score: float
    asking: str | None = None       # the field the previous reply asked for
    today: date | None = None


@dataclass
class Reply:
    text: str
    prompt: str
    prompt_version: Any
    model: str
    evidence: list[str] = field(default_factory=list)   # template text the reply was built from


class Brain(Protocol):
    name: str

    def understand(self, message: str, lead: LeadView, history: list[dict[str, str]]) -> Understanding: ...

    def compose(self, decision: Decision, lead: LeadView, sources: list[Any], history: list[dict[str, str]]) -> Reply: ...


KIND_NAMES = {"case_study": "case study", "guide": "guide", "ebook": "ebook", "webinar": "webinar",
              "pricing": "pricing page", "faq": "FAQ", "integration": "integrations page",
              "roi_calculator": "ROI calculator"}


class RuleBrain:
    """Deterministic and offline: patterns in, templates out."""

    name = "rules"

    def __init__(self, playbook: Playbook):
        self.playbook = playbook
        self.templates = load_prompt("replies")
        self._evidence = [yaml.safe_dump(self.templates)]

    def understand(self, message: str, lead: LeadView, history: list[dict[str, str]]) -> Understanding:
        return understand(message, self.playbook, asked_field=lead.asking, today=lead.today, known=lead.fields)

    def _t(self, key: str, **values: Any) -> str:
        pb = self.playbook
        base = {"assistant": pb.company.assistant_name, "company": pb.company.name, "product": pb.company.product,
                "minutes": pb.meeting.length_minutes, "url": pb.meeting.url or ""}
        base.update(values)
        return str(self.templates[key]).format(**base)

    def compose(self, decision: Decision, lead: LeadView, sources: list[Any], history: list[dict[str, str]]) -> Reply:
        d = decision
        parts: list[str] = []
        if d.mode == "refuse":
            parts.append(self._t("refusal"))
        else:
            if d.greet:
                parts.append(self._t("greeting"))
            elif d.learned and not d.answers and d.mode == "converse":
                name = lead.fields.get("name")
                parts.append(self._t("thanks_name", name=name) if "name" in d.learned and name else self._t("thanks"))
            if d.objection and d.mode == "converse":
                parts.append(self._t("objection"))
            for a in d.answers:
                if a.hit is not None:
                    parts.append(self._t("answer", kind=KIND_NAMES.get(a.hit.type, "page"), title=a.hit.title,
                                         snippet=a.hit.snippet))
                elif a.integration:
                    parts.append(self._t("unknown_integration", target=a.integration))
                else:
                    parts.append(self._t("unknown"))
            if d.mode == "unsubscribe":
                parts.append(self._t("unsubscribed"))
            elif d.mode == "close":
                parts.append(self._t(f"close_{d.close_reason}" if f"close_{d.close_reason}" in self.templates else "close_student"))
            else:
                if d.human:
                    parts.append(self._t("human"))
                    if lead.fields.get("email"):
                        parts.append(self._t("human_known_email", email=lead.fields["email"]))
                if d.book:
                    parts.append(self._t("book_link" if self.playbook.meeting.url else "book"))
                elif d.offer_meeting:
                    parts.append(self._t("offer_meeting_link" if self.playbook.meeting.url else "offer_meeting"))
                if d.recommend is not None:
                    key = "recommend_case_study" if d.recommend.type == "case_study" else "recommend_other"
                    parts.append(self._t(key, title=d.recommend.title, url=d.recommend.url))
                if d.ask_question:
                    if d.human and d.ask_field == "email":
                        parts.append(self._t("human_email"))
                    else:
                        parts.append(d.ask_question)
            if not parts:
                parts.append(self._t("fallback"))
        text = " ".join(p.strip() for p in parts if p.strip())
        return Reply(text=text, prompt="replies", prompt_version=self.templates.get("version"), model="rules",
                     evidence=self._evidence)
