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
    asking: str | None = None       # the field the previous reply asked for (for compose: this reply asks)
    today: date | None = None
    message: str = ""               # the visitor's message this turn
    deadline: float | None = None   # time.monotonic() by which the reply must be ready
    usage: dict[str, Any] = field(default_factory=dict)   # model calls, tokens, latency, fallbacks this turn


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


TIMELINE_WORDS = {"now": "you need it right away", "this_quarter": "this quarter", "next_quarter": "next quarter",
                  "this_year": "within the year", "later": "no rush"}


def summarize(learned: list[str], fields: dict[str, Any]) -> str:
    """Echo back what was just understood, so the visitor sees it was ("VP of Sales, 450 people")."""
    bits: list[str] = []
    for f in learned:
        v = fields.get(f)
        if v in (None, ""):
            continue
        if f == "role":
            bits.append(str(v))
        elif f == "seniority" and "role" not in learned and v == "c_level":
            bits.append("leading the company")
        elif f == "company_size":
            bits.append("just you" if v == 1 else f"{v:,} people")
        elif f == "timeline":
            bits.append(TIMELINE_WORDS.get(str(v), str(v)))
        elif f == "budget":
            bits.append(f"a budget of ${v:,.0f}" if isinstance(v, (int, float)) else
                        "budget approved" if v == "approved" else "no budget yet")
        elif f == "industry":
            bits.append(str(v).replace("_", " "))
        elif f == "company":
            bits.append(str(v))
        elif f == "email":
            bits.append(f"I'll use {v}")
    return ", ".join(bits)


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
                summary = summarize(d.learned, lead.fields)
                if "name" in d.learned and name:
                    parts.append(self._t("thanks_name", name=name))
                if summary:
                    parts.append(self._t("noted", summary=summary))
                elif not ("name" in d.learned and name):
                    parts.append(self._t("thanks"))
            if d.not_interested:
                parts.append(self._t("not_interested"))
            elif d.objection and d.mode == "converse" and not (d.recommend is not None and d.recommend.type == "roi_calculator"):
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
                if d.booked_text:
                    parts.append(self._t("booked_pending" if d.booked_pending else "booked", rep=d.meeting_rep or "our team",
                                         when=d.booked_text, ics_url=d.ics_url or ""))
                elif d.slots_text:
                    if d.slot_taken:
                        parts.append(self._t("slot_taken"))
                    parts.append(self._t("offer_slots" if d.offer_meeting else "offer_slots_plain",
                                         rep=d.meeting_rep or "our team", slots=d.slots_text))
                elif d.calendar_down:
                    parts.append(self._t("calendar_down", rep=d.meeting_rep or "our team"))
                elif d.meeting_accepted and not self.playbook.meeting.url:
                    parts.append(self._t("meeting_accepted"))
                elif d.book:
                    parts.append(self._t("book_link" if self.playbook.meeting.url else "book"))
                elif d.offer_meeting:
                    parts.append(self._t("offer_meeting_link" if self.playbook.meeting.url else "offer_meeting"))
                if d.recommend is not None:
                    key = ("objection_price" if d.recommend.type == "roi_calculator" and d.objection else
                           "recommend_case_study" if d.recommend.type == "case_study" else "recommend_other")
                    parts.append(self._t(key, title=d.recommend.title, url=d.recommend.url))
                if d.ask_question and not d.slots_text:
                    if d.human and d.ask_field == "email":
                        parts.append(self._t("human_email"))
                    else:
                        parts.append(d.ask_question)
            if not parts:
                parts.append(self._t("fallback"))
        text = " ".join(p.strip() for p in parts if p.strip())
        extra = [t for t in (d.slots_text, d.booked_text, d.ics_url, d.meeting_rep) if t]
        return Reply(text=text, prompt="replies", prompt_version=self.templates.get("version"), model="rules",
                     evidence=self._evidence + extra)
