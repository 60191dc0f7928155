"""The persona suite: simulated prospects in YAML, validated against the playbook.

A persona is either *simulated* (an `opening` and the `truths` it answers from) or *scripted*
(the older `messages:` list, replayed whatever the SDR says). The issue-10 form::

    - name: hot healthcare VP              # unique in the suite
      channel: chat                        # chat | form | email
      opening: "Hi, we're looking at tools to fix our forecasting"
      truths: {role: VP of Sales, seniority: vp, company_size: 1200, timeline: this_quarter, ...}
      volunteers: [company, role]          # truths said unasked in the opening turns
      asks: ["what does it cost?"]         # the prospect's own questions, one a turn
      later: ["sorry, I meant 120 people"] # said on the turns right after the opening
      style: plain                         # plain | terse | chatty | typos | evasive
      max_turns: 10
      expect: {stage: sql, handoff: true, fields: {...}, recommended_any: [url], never_says: [phrase]}

Optional extras: `notes` (str), `tags` (list), `language` (str). The scripted form keeps the
legacy expect keys `recommended` (one URL), `reply_contains`, `reply_not_contains`.

Channels (issue 12): a `chat` persona's opening is a chat line. An `email` persona writes from
`truths.email`, and its opening (or first scripted message) is the email — a `Subject: …` line, a
blank line, then the body. A `form` persona has no opening: it submits `form`, the site's form as
posted (field name -> value; names a generic form understands, bot/form_fills.py, e.g. name, email,
company, job_title, employees, timeline, budget, message, utm_*), which must carry an email. After
the first touch, email and form personas answer by email, as chat personas answer in chat.

`load_suite(paths, playbook) -> list[dict]`: every persona as a plain dict with every key above
present (defaults filled; `messages` None for simulated personas, `opening` None and `truths`
{} for scripted ones; `max_turns` default 10, or the number of messages if more) plus `"source"`: the file it came from. Any mistake raises `SuiteError` naming the file,
the persona (name or #position) and every bad key.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.form_fills import DEFAULT_FIELD_MAP
from bot.playbook import SENIORITIES, STAGES, TIMELINES, Playbook

HERE = Path(__file__).parent
PERSONAS = HERE / "personas.yaml"
CONVERSATIONS = HERE / "conversations.yaml"
CHANNELS = ("chat", "form", "email")
STYLES = ("plain", "terse", "chatty", "typos", "evasive")
EXTRA_TRUTHS = ("email", "name", "company", "seniority", "role")
# A channel not built yet: the issue that builds it (the reason a persona is skipped).
CHANNEL_ISSUES = {"form": 12, "email": 12}

_SUBJECT = re.compile(r"\ASubject:[ \t]*(\S[^\n]*)\n[ \t]*\n(.*\S.*)\Z", re.DOTALL)

__all__ = ["SuiteError", "Expect", "Persona", "load_suite", "validate_persona", "skip_reason", "known_truths",
           "email_parts", "form_email", "form_names"]


class SuiteError(ValueError):
    """A suite the runner cannot use; the message names the file, the persona and every bad key."""


class Expect(BaseModel):
    """What must be true at the end of the conversation. Every key optional."""
    model_config = ConfigDict(extra="forbid")

    stage: Literal[STAGES] | None = None  # type: ignore[valid-type]
    handoff: bool | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    recommended_any: list[str] = Field(default_factory=list)
    never_says: list[str] = Field(default_factory=list)
    # the scripted (legacy) form's keys
    recommended: str | None = None
    reply_contains: list[str] = Field(default_factory=list)
    reply_not_contains: list[str] = Field(default_factory=list)


class Persona(BaseModel):
    """One prospect: simulated (opening + truths) or scripted (messages)."""
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    channel: Literal[CHANNELS] = "chat"  # type: ignore[valid-type]
    opening: str | None = Field(default=None, min_length=1)
    truths: dict[str, Any] | None = None
    volunteers: list[str] = Field(default_factory=list)
    asks: list[str] = Field(default_factory=list)
    later: list[str] = Field(default_factory=list)
    style: Literal[STYLES] = "plain"  # type: ignore[valid-type]
    max_turns: int | None = Field(default=None, ge=1, le=40)
    expect: Expect = Field(default_factory=Expect)
    messages: list[str] | None = Field(default=None, min_length=1)
    form: dict[str, str | int] | None = Field(default=None, min_length=1)
    notes: str | None = None
    tags: list[str] = Field(default_factory=list)
    language: str | None = None


def known_truths(playbook: Playbook) -> list[str]:
    """The keys a persona's `truths` (and `expect.fields`) may use: the playbook's fields plus a
    few every lead has."""
    names = [f.name for f in playbook.fields]
    return names + [n for n in EXTRA_TRUTHS if n not in names]


def email_parts(text: str | None) -> tuple[str, str] | None:
    """(subject, body) of an email persona's opening ("Subject: …", a blank line, the body), or None
    when TEXT is not written so."""
    m = _SUBJECT.match((text or "").strip().replace("\r\n", "\n"))
    return (m.group(1).strip(), m.group(2).strip()) if m else None


def _form_name(name: str) -> str:
    return re.sub(r"[\s-]+", "_", str(name).strip().lower())   # as bot/form_fills.py reads a field's name


def _form_map(playbook: Playbook, source: str) -> dict[str, str]:
    cfg = playbook.forms.get(source) or playbook.forms.get("default")
    return {**DEFAULT_FIELD_MAP, **{_form_name(k): v for k, v in ((cfg.fields if cfg else {}) or {}).items()}}


def form_names(playbook: Playbook, source: str = "generic") -> list[str]:
    """The form field names the runner's form source (`generic`) understands: the usual names and
    the playbook's map for it (case, spaces and hyphens aside); `utm_*` is always accepted."""
    return list(_form_map(playbook, source))


def form_email(form: dict[str, Any] | None, playbook: Playbook, source: str = "generic") -> str | None:
    """The address a form carries (the field that maps to `email`), or None."""
    mapping = _form_map(playbook, source)
    return next((str(v).strip() for k, v in (form or {}).items() if mapping.get(_form_name(k)) == "email"
                 and str(v).strip()), None)


def _problem(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(the persona)"
    if err["type"] == "extra_forbidden":
        model = Expect if err["loc"][:1] == ("expect",) else Persona
        return f"unknown key {key!r} (known: {', '.join(model.model_fields)})"
    if err["type"] == "missing":
        return f"missing key {key!r}"
    return f"{key}: {err['msg']} (got {err.get('input')!r})"


def _truth_value_problems(truths: dict[str, Any]) -> list[str]:
    out = []
    if "seniority" in truths and truths["seniority"] not in SENIORITIES:
        out.append(f"truths.seniority: {truths['seniority']!r} is not one of {', '.join(SENIORITIES)}")
    if "timeline" in truths and truths["timeline"] not in TIMELINES:
        out.append(f"truths.timeline: {truths['timeline']!r} is not one of {', '.join(TIMELINES)}")
    size = truths.get("company_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        out.append(f"truths.company_size: {size!r} should be a whole number of people")
    return out


def _semantic_problems(p: Persona, playbook: Playbook) -> list[str]:
    """What the schema alone cannot check: the form, the keys against the playbook, references."""
    known = known_truths(playbook)
    out: list[str] = []
    if p.messages is not None:
        extra = [k for k in ("opening", "truths", "volunteers", "asks", "later") if getattr(p, k)]
        if extra:
            out.append(f"has both 'messages' and {', '.join(repr(k) for k in extra)}: "
                       "a persona is scripted (messages) or simulated (opening + truths), not both")
    elif p.opening is None and p.channel != "form":
        out.append("missing key 'opening' (or 'messages' for a scripted persona)")
    out += _email_problems(p)
    truths = p.truths or {}
    out += [f"unknown key 'truths.{k}' (known: {', '.join(known)})" for k in truths if k not in known]
    out += _truth_value_problems(truths)
    out += [f"volunteers: {k!r} is not in truths (truths: {', '.join(truths) or 'none'})"
            for k in p.volunteers if k not in truths]
    out += [f"unknown key 'expect.fields.{k}' (neither in truths nor a playbook field; known: {', '.join(known)})"
            for k in p.expect.fields if k not in truths and k not in known]
    return out + _channel_problems(p, playbook)


def _channel_problems(p: Persona, playbook: Playbook) -> list[str]:
    """What a form or email persona needs: a form (known field names, an email) instead of an
    opening; an address to write from and an opening written as an email."""
    out: list[str] = []
    if p.channel != "form":
        return [f"'form' is only for channel form (this persona's channel is {p.channel!r})"] if p.form else []
    if p.form is None:
        out.append("missing key 'form' (a form persona submits `form`: field name -> value, with an email)")
    elif p.opening is not None or p.messages is not None:
        out.append("has 'form' and " + ("'opening'" if p.opening is not None else "'messages'") +
                   ": a form persona's first words are the form (put them in its message field)")
    known = form_names(playbook)
    out += [f"unknown key 'form.{k}' (known: {', '.join(known)}, utm_*)" for k in p.form or {}
            if _form_name(k) not in known and not _form_name(k).startswith("utm_")]
    address = form_email(p.form, playbook)
    if p.form is not None and not address:
        out.append("form: no email field (the first touch is an email; add e.g. email: ana@acme.example)")
    said = (p.truths or {}).get("email")
    if address and said and str(said).strip().lower() != address.lower():
        out.append(f"form.email {address!r} is not truths.email {said!r}")
    return out


def _email_problems(p: Persona) -> list[str]:
    if p.channel != "email":
        return []
    out = [] if (p.truths or {}).get("email") else ["missing key 'truths.email' (the address an email persona writes from)"]
    first = p.opening if p.opening is not None else (p.messages or [None])[0]
    if first is not None and email_parts(first) is None:
        key = "opening" if p.opening is not None else "messages.0"
        out.append(f"{key}: an email persona's first email is 'Subject: …', a blank line, then the body (got {first[:60]!r})")
    return out


def validate_persona(raw: Any, index: int, source: str, playbook: Playbook) -> dict[str, Any]:
    """One persona checked and completed (a plain dict, every key present, plus `source`);
    SuiteError naming the file, the persona and every bad key otherwise."""
    label = f"persona #{index + 1}"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        label += f" {raw['name']!r}"
    if not isinstance(raw, dict):
        raise SuiteError(f"{source}: {label} is not a mapping (name, opening, truths, expect… or name, messages, expect)")
    try:
        p = Persona.model_validate(raw)
    except ValidationError as e:
        raise SuiteError(f"{source}: {label}: " + "; ".join(_problem(err) for err in e.errors())) from None
    problems = _semantic_problems(p, playbook)
    if problems:
        raise SuiteError(f"{source}: {label}: " + "; ".join(problems))
    out = p.model_dump()
    out["truths"] = out["truths"] or {}
    out["form"] = {k: str(v) for k, v in out["form"].items()} if out["form"] else None
    if out["max_turns"] is None:
        out["max_turns"] = max(10, len(out["messages"] or []))
    out["source"] = source
    return out


def _read(path: Path) -> list[Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: not valid YAML: {e}") from None
    except OSError as e:
        raise SuiteError(f"{path}: cannot read it: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise SuiteError(f"{path}: not UTF-8 text: {e}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise SuiteError(f"{path}: expected a list of personas (each a mapping with a name)")
    return data


def default_paths() -> list[Path]:
    """evals/personas.yaml when it exists, and evals/conversations.yaml."""
    return [p for p in (PERSONAS, CONVERSATIONS) if p == CONVERSATIONS or p.is_file()]


def load_suite(paths: list[str | Path] | None, playbook: Playbook) -> list[dict[str, Any]]:
    """Every persona of PATHS (default: `default_paths()`), validated, in file order; SuiteError
    for a bad file or persona, or a name used twice (naming both files)."""
    seen: dict[str, str] = {}
    personas: list[dict[str, Any]] = []
    for path in [Path(p) for p in (paths or default_paths())]:
        for i, raw in enumerate(_read(path)):
            p = validate_persona(raw, i, str(path), playbook)
            if p["name"] in seen:
                where = "earlier in the same file" if seen[p["name"]] == str(path) else f"also in {seen[p['name']]}"
                raise SuiteError(f"{path}: persona #{i + 1} {p['name']!r}: the name is used twice ({where}); "
                                 "names must be unique in the suite")
            seen[p["name"]] = str(path)
            personas.append(p)
    return personas


def skip_reason(persona: dict[str, Any], channels_available: set[str]) -> str | None:
    """Why this persona cannot run here (its channel is not built yet), or None."""
    ch = persona.get("channel") or "chat"
    if ch in channels_available:
        return None
    issue = CHANNEL_ISSUES.get(ch)
    return f"channel {ch!r} is not built yet" + (f" (issue {issue})" if issue else "")

