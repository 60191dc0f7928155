"""Play scripted prospects through the turn and report how the SDR did.

    sdr eval                     # the bundled conversations (evals/conversations.yaml)
    sdr eval my_cases.yaml       # your own, same format

Each case checks outcomes, not wording: the stage, whether it was handed off, the facts learned,
content recommended, and phrases the reply must or must not contain.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CASES = Path(__file__).with_name("conversations.yaml")
Stage = Literal["new", "engaged", "mql", "sql", "meeting_booked", "human", "disqualified"]


class CaseError(ValueError):
    """A case file the runner cannot use; the message names the file, the case and the key."""


class Expect(BaseModel):
    """What a case checks at its end. Every key is optional; an unknown one is a mistake."""
    model_config = ConfigDict(extra="forbid")

    stage: Stage | None = None
    handoff: bool | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    recommended: str | None = None
    reply_contains: list[str] = Field(default_factory=list)
    reply_not_contains: list[str] = Field(default_factory=list)


class Case(BaseModel):
    """One scripted prospect: what they say, in order, and what should be true afterwards."""
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    messages: list[str] = Field(min_length=1)
    expect: Expect = Field(default_factory=Expect)


def _problem(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(the case)"
    if err["type"] == "extra_forbidden":
        model = Expect if err["loc"][:1] == ("expect",) else Case
        return f"unknown key {key!r} (known: {', '.join(model.model_fields)})"
    if err["type"] == "missing":
        return f"missing key {key!r}"
    return f"{key}: {err['msg']} (got {err.get('input')!r})"


def validate_case(case: Any, index: int, source: str = "cases") -> dict[str, Any]:
    """The case, checked; raises CaseError naming the case (or its position) and every bad key."""
    label = f"case #{index + 1}"
    if isinstance(case, dict) and isinstance(case.get("name"), str):
        label += f" {case['name']!r}"
    if not isinstance(case, dict):
        raise CaseError(f"{source}: {label} is not a mapping with 'name', 'messages' and 'expect'")
    try:
        Case.model_validate(case)
    except ValidationError as e:
        raise CaseError(f"{source}: {label}: " + "; ".join(_problem(err) for err in e.errors())) from None
    return case


def load_cases(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The cases in PATH (default: the bundled conversations), each validated; CaseError otherwise."""
    source = str(path or CASES)
    try:
        data = yaml.safe_load(Path(path or CASES).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise CaseError(f"{source}: not valid YAML: {e}") from None
    except OSError as e:
        raise CaseError(f"{source}: cannot read it: {e.strerror}") from None
    if not isinstance(data, list):
        raise CaseError(f"{source}: expected a list of cases with 'name', 'messages' and 'expect'")
    return [validate_case(c, i, source) for i, c in enumerate(data)]


def run_case(sdr: Any, case: dict[str, Any]) -> dict[str, Any]:
    from bot.turn import Inbound

    sid = None
    replies: list[str] = []
    recommended: list[str] = []
    handoff = False
    result = None
    for msg in case["messages"]:
        result = sdr.handle(Inbound(text=msg, session_id=sid, channel="cli"))
        sid = result.session_id
        replies.append(result.reply)
        recommended += [a["url"] for a in result.actions if a["type"] == "recommend"]
        handoff = handoff or any(a["type"] == "handoff" for a in result.actions)
    assert result is not None
    exp = case.get("expect", {})
    failures: list[str] = []
    lead = result.lead
    if "stage" in exp and lead["stage"] != exp["stage"]:
        failures.append(f"stage {lead['stage']} (expected {exp['stage']})")
    if "handoff" in exp and handoff != exp["handoff"]:
        failures.append(f"handoff {handoff} (expected {exp['handoff']})")
    for k, v in (exp.get("fields") or {}).items():
        if lead["fields"].get(k) != v:
            failures.append(f"{k}={lead['fields'].get(k)!r} (expected {v!r})")
    if exp.get("recommended") and exp["recommended"] not in recommended:
        failures.append(f"did not recommend {exp['recommended']} (sent {recommended or 'nothing'})")
    text = " ".join(replies)
    for phrase in exp.get("reply_contains", []):
        if phrase.lower() not in text.lower():
            failures.append(f"replies lack {phrase!r}")
    for phrase in exp.get("reply_not_contains", []):
        if phrase in text:
            failures.append(f"replies contain {phrase!r}")
    return {"name": case["name"], "passed": not failures, "failures": failures, "score": lead["score"],
            "stage": lead["stage"], "turns": len(case["messages"])}


def run(sdr: Any, path: str | Path | None = None, progress: bool = True,
        cases: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    from tqdm import tqdm

    cases = load_cases(path) if cases is None else cases
    return [run_case(sdr, c) for c in tqdm(cases, desc="eval", unit="conversation", disable=not progress)]
