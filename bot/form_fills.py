"""Form fills: from a provider's fields to lead fields, the visitor's first message and the
engagement event — by the playbook's field map (`forms:`), read with the same extractors as chat.

    lead = map_fill("typeform", {"email": "ana@acme.example", "job_title": "VP Sales", ...}, form_name, playbook)
    facts, intents = read_form(lead, playbook, today)      # Facts with source "form" for the turn

The mapping is data (the playbook's `forms.<source>.fields`, over the usual names of a generic
form); what a value means is read by bot/extract.py ("201-500" → 350 people, "VP of Sales" → vp).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .extract import (Fact, extract_budget, extract_company_size, extract_email, extract_industry, extract_need,
                      extract_phone, extract_role, extract_timeline)
from .playbook import Playbook

# The usual names of a generic form's fields → lead fields (a playbook's map adds to and overrides these).
DEFAULT_FIELD_MAP: dict[str, str] = {
    "email": "email", "email_address": "email", "work_email": "email", "e-mail": "email",
    "name": "name", "full_name": "name", "fullname": "name", "your_name": "name",
    "first_name": "first_name", "firstname": "first_name", "last_name": "last_name", "lastname": "last_name",
    "company": "company", "company_name": "company", "organization": "company", "organisation": "company",
    "job_title": "role", "jobtitle": "role", "title": "role", "role": "role", "position": "role",
    "phone": "phone", "phone_number": "phone", "mobilephone": "phone", "telephone": "phone",
    "company_size": "company_size", "employees": "company_size", "numemployees": "company_size",
    "number_of_employees": "company_size", "team_size": "company_size", "headcount": "company_size",
    "industry": "industry", "timeline": "timeline", "budget": "budget",
    "message": "message", "comments": "message", "comment": "message", "question": "message",
    "how_can_we_help": "message", "details": "message", "notes": "message",
    "page_url": "page_url", "page": "page_url", "url": "page_url", "referrer": "referrer", "hs_analytics_source": "referrer",
    "country": "country", "timezone": "timezone", "consent": "consent", "gdpr_consent": "consent",
    "marketing_consent": "consent",
}
HIDDEN = ("page_url", "referrer")           # stored on the lead as attribution, with every utm_* field
LEAD_FIELDS = ("email", "name", "first_name", "last_name", "company", "role", "phone", "company_size", "industry",
               "timeline", "budget", "message", "page_url", "referrer", "country", "timezone", "consent")
# What each kind of submission asks for, for the turn (a demo request asks to meet; contact sales asks for a person).
EVENT_INTENTS = {"demo_requested": "book", "contact_sales": "human"}
SUBJECTS = {"demo_requested": "Your demo request", "contact_sales": "Your message to our team",
            "content_download": "The content you asked for", "webinar_registered": "Your webinar registration",
            "trial_signup": "Your trial"}
EVENT_WORDS = {"demo_requested": "a demo", "contact_sales": "a conversation with our team",
               "content_download": "our content", "webinar_registered": "the webinar", "trial_signup": "a trial"}


@dataclass
class FormLead:
    """A form fill in lead terms. `fields`: lead field → text; `message`: the free-text field, if any;
    `attribution`: utm_* and page/referrer; `event`: the engagement event the submission is."""
    source: str
    fields: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    attribution: dict[str, str] = field(default_factory=dict)
    event: str = "contact_sales"
    form_name: str | None = None

    @property
    def email(self) -> str | None:
        return (self.fields.get("email") or "").strip().lower() or None

    def content_hash(self) -> str:
        """sha256 of source, email and every field: the same form sent twice has the same hash
        (whatever the case of the address)."""
        fields = {**self.fields, "email": self.email or ""}
        blob = json.dumps([self.source, self.email, sorted(fields.items()), self.message], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def _norm(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def map_fill(source: str, fields: dict[str, str], form_name: str | None, playbook: Playbook) -> FormLead:
    """The provider's `fields` (name → text) as lead fields by the playbook's map for `source`
    (`forms.<source>.fields`, then DEFAULT_FIELD_MAP), and the engagement event it is
    (`forms.<source>.by_form[form_name]`, else `forms.<source>.event`); utm_* and page fields go to attribution;
    names not mapped are kept in attribution under `form.<name>` so nothing is lost."""
    cfg = playbook.forms.get(source) or playbook.forms.get("default")
    mapping = {**DEFAULT_FIELD_MAP, **{_norm(k): v for k, v in (cfg.fields if cfg else {}).items()}}
    name = " ".join(str(form_name).split()) if form_name else ""
    event = (cfg.by_form.get(name) or cfg.event) if cfg else "contact_sales"   # a guide download is not a demo request
    out = FormLead(source=source, event=event,
                   form_name=" ".join(str(form_name).split())[:120] if form_name else None)   # one line, quoted to them
    for raw_name, value in fields.items():
        name, text = _norm(raw_name), str(value).strip()
        if not text:
            continue
        target = mapping.get(name)
        if name.startswith("utm_"):
            out.attribution[name] = text[:300]
        elif target in HIDDEN:
            out.attribution[target] = text[:1000]
        elif target == "message":
            out.message = (out.message + "\n" if out.message else "") + text[:4000]
        elif target in LEAD_FIELDS:
            out.fields[target] = text[:500]
        else:
            out.attribution[f"form.{name}"[:80]] = text[:300]
    first, last = out.fields.pop("first_name", ""), out.fields.pop("last_name", "")
    if not out.fields.get("name") and (first or last):
        out.fields["name"] = f"{first} {last}".strip()
    return out


def read_form(lead: FormLead, playbook: Playbook, today: date | None) -> tuple[dict[str, Fact], set[str]]:
    """The form's fields as facts (source `form`, read by the chat extractors so "201-500" or "VP of
    Sales" mean what they mean in chat) and the intents the submission carries (a demo request asks
    to meet). A value an extractor cannot read is kept as written only for free-text fields."""
    f, facts = lead.fields, {}

    def put(name: str, fact: Fact | None) -> None:
        if fact is not None and fact.value not in (None, ""):
            fact.source, fact.extractor, fact.certain = "form", "form", True
            facts[name] = fact

    if lead.email:
        put("email", extract_email(lead.email))
    for name in ("name", "company", "country", "timezone"):
        if f.get(name):
            put(name, Fact(f[name], evidence=f"form field {name}"))
    if f.get("phone"):   # E.164 when libphonenumber can read it (national numbers in the form's country)
        country = f.get("country", "") if len(f.get("country", "")) == 2 else None
        put("phone", extract_phone(f["phone"], country) or Fact(f["phone"], evidence="form field phone"))
    if f.get("role"):
        role, seniority = extract_role(f["role"], asked=True)
        put("role", role or Fact(f["role"], evidence="form field role"))
        put("seniority", seniority)
    if f.get("company_size"):   # "250", "201-500", "1,000+", "11 to 50 employees"
        put("company_size", extract_company_size(f["company_size"], asked=True)
            or extract_company_size(f"{f['company_size'].rstrip('+ ')} people"))
    if f.get("industry"):
        put("industry", extract_industry(f["industry"], playbook, asked=True))
    if f.get("timeline"):
        put("timeline", extract_timeline(f["timeline"], today, asked=True))
    if f.get("budget"):   # "50000", "$30k", "approved", "none yet"
        v = f["budget"].strip()
        v = f"${v}" if re.fullmatch(r"\d[\d,.]*", v) else "no budget yet" if v.lower() in ("none", "none yet", "no") else v
        put("budget", extract_budget(v, asked=True) or extract_budget(f"our budget is {v}"))
    if lead.message and "need" not in facts:
        put("need", extract_need(lead.message, playbook))
    intent = EVENT_INTENTS.get(lead.event)
    return facts, {intent} if intent else set()


def first_message(lead: FormLead) -> str:
    """What the turn reads as the visitor's message: their free text, else a note of what they
    submitted (stored as such, never as words they wrote)."""
    if lead.message:
        return lead.message
    what = lead.form_name or f"{lead.source} form"
    return f"[Submitted the form “{what[:120]}”: asked for {EVENT_WORDS.get(lead.event, 'information')}]"


def with_channel(u: Any, inbound: Any) -> Any:
    """The turn's understanding with what the channel itself stated: a form's fields (they fill
    what the message did not say) and the intents of the submission (a demo request asks to meet)."""
    if inbound.channel == "email":   # the sender's address is the lead's; one written in the body never replaces it
        u.fields.pop("email", None)
    if inbound.facts:
        u.fields = {**u.fields, **inbound.facts}   # what the form's own fields say wins over its free text
        u.intents.add("answer")
        u.intents.discard("small_talk")
    for intent in inbound.intents:
        u.intents.add(intent)
        u.intents.discard("small_talk")
        if intent in ("book", "human") and u.requested_action == "continue":
            u.requested_action = intent
    return u
