"""Play scripted prospects through the turn and report how the SDR did.

    sdr eval                     # the bundled conversations (evals/conversations.yaml)
    sdr eval my_cases.yaml       # your own, same format

Each case checks outcomes, not wording: the stage, whether it was handed off, the facts learned,
content recommended, and phrases the reply must or must not contain.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CASES = Path(__file__).with_name("conversations.yaml")


def load_cases(path: str | Path | None = None) -> list[dict[str, Any]]:
    data = yaml.safe_load(Path(path or CASES).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path or CASES}: expected a list of cases with 'name', 'messages' and 'expect'")
    return data


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


def run(sdr: Any, path: str | Path | None = None, progress: bool = True) -> list[dict[str, Any]]:
    from tqdm import tqdm

    cases = load_cases(path)
    return [run_case(sdr, c) for c in tqdm(cases, desc="eval", unit="conversation", disable=not progress)]
