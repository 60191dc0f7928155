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

`load_suite(paths, playbook) -> list[dict]`: every persona as a plain dict with every key above
present (defaults filled; `messages` None for simulated personas, `opening` None and `truths`
{} for scripted ones; `max_turns` default 10, or the number of messages if more) plus `"source"`: the file it came from. Any mistake raises `SuiteError` naming the file,
the persona (name or #position) and every bad key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.playbook import SENIORITIES, STAGES, TIMELINES, Playbook

HERE = Path(__file__).parent
PERSONAS = HERE / "personas.yaml"
CONVERSATIONS = HERE / "conversations.yaml"
CHANNELS = ("chat", "form", "email")
STYLES = ("plain", "terse", "chatty", "typos", "evasive")
EXTRA_TRUTHS = ("email", "name", "company", "seniority", "role")
# A channel not built yet: the issue that builds it (the reason a persona is skipped).
CHANNEL_ISSUES = {"form": 12, "email": 12}

__all__ = ["SuiteError", "Expect", "Persona", "load_suite", "validate_persona", "skip_reason", "known_truths"]


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
    notes: str | None = None
    tags: list[str] = Field(default_factory=list)
    language: str | None = None


def known_truths(playbook: Playbook) -> list[str]:
    """The keys a persona's `truths` (and `expect.fields`) may use: the playbook's fields plus a
    few every lead has."""
    names = [f.name for f in playbook.fields]
    return names + [n for n in EXTRA_TRUTHS if n not in names]


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
    elif p.opening is None:
        out.append("missing key 'opening' (or 'messages' for a scripted persona)")
    truths = p.truths or {}
    out += [f"unknown key 'truths.{k}' (known: {', '.join(known)})" for k in truths if k not in known]
    out += _truth_value_problems(truths)
    out += [f"volunteers: {k!r} is not in truths (truths: {', '.join(truths) or 'none'})"
            for k in p.volunteers if k not in truths]
    out += [f"unknown key 'expect.fields.{k}' (neither in truths nor a playbook field; known: {', '.join(known)})"
            for k in p.expect.fields if k not in truths and k not in known]
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

