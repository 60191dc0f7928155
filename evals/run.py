"""Play simulated prospects through the turn and measure the SDR's judgment.

    sdr eval                                  # the shipped suite (evals/personas.yaml + conversations.yaml)
    sdr eval my_suite.yaml --k 3 --json out.json --html report.html --baseline evals/baseline.json

Each persona (evals/suite.py) is played by a prospect (evals/simulator.py): scripted messages, the
deterministic simulator answering from its truths, or a model playing it (SDR_SIM_MODEL). The runner
sends each line through `SDR.handle` exactly as a channel would, keeps the transcript with what the
simulator judged was asked, the stage and score after every reply, latency and the model's usage,
and checks the persona's `expect`. The metrics are in evals/metrics.py.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from .metrics import same_value, summarize
from .simulator import detect_asked_field, make_prospect
from .suite import SuiteError, load_suite, skip_reason

CaseError = SuiteError          # the name the CLI used before personas
CHANNELS_BUILT = {"chat"}       # form and email personas are skipped with a reason until they exist
BEYOND = {"sql": {"meeting_booked"}}   # reaching further than expected still passes (a booked SQL)


def load_cases(path: Any = None, playbook: Any = None) -> list[dict[str, Any]]:
    """The personas in PATH (one file or a list; default: the shipped suite), validated."""
    from bot.playbook import load_playbook

    paths = None if path is None else ([path] if not isinstance(path, (list, tuple)) else list(path))
    return load_suite(paths, playbook or load_playbook(None))


def ticking_clock(start: str) -> Any:
    """A clock for `SDR.clock` (naive UTC) that starts at `start` (ISO 8601; Z or an offset) and
    runs with real time from there. Raises ValueError for an unreadable instant."""
    at = datetime.fromisoformat(start.replace("Z", "+00:00"))
    at = at.astimezone(timezone.utc).replace(tzinfo=None) if at.tzinfo else at
    began = time.monotonic()
    return lambda: at + timedelta(seconds=time.monotonic() - began)


def _evidence(sdr: Any) -> str:
    """What the SDR may state as fact: the content store and the playbook, and the words of its own
    reply templates (German nouns are capitalised, not names) — cached per SDR."""
    cached = getattr(sdr, "_eval_evidence", None)
    if cached is None:
        chunks = sdr.kb.corpus() if sdr.kb is not None else []
        parts = [t + " " + " ".join(str(v) for v in (m or {}).values()) for t, m in chunks]
        templates = "\n".join(getattr(sdr.rules, "_evidence", []))   # the reply templates' own words, every language
        cached = sdr._eval_evidence = "\n".join(parts) + "\n" + sdr.playbook.grounding_text() + "\n" + templates
    return cached


def _stop(result: Any, offered: bool) -> bool:
    """A booked meeting, a close, or a handoff with no meeting times left to answer ends the run."""
    acts = result.actions
    if any(a["type"] == "meeting" and a.get("status") == "booked" for a in acts):
        return True
    if result.lead["stage"] == "disqualified":
        return True
    return any(a["type"] == "handoff" for a in acts) and not offered


def _turn(sdr: Any, text: str, sid: str | None, said: list[str]) -> tuple[Any, dict[str, Any]]:
    """One message through the SDR; the SDR's side of the transcript. Grounded are the content
    store, the playbook, what the prospect said and the turn's own actions (the times offered)."""
    from bot.guard import ungrounded_claims
    from bot.turn import Inbound

    t0 = time.perf_counter()
    result = sdr.handle(Inbound(text=text, session_id=sid, channel="cli"))
    latency = (time.perf_counter() - t0) * 1000
    asked = detect_asked_field(result.reply, sdr.playbook)
    known = {k for k, v in (result.lead.get("fields") or {}).items() if v not in (None, "")}
    return result, {"role": "sdr", "text": result.reply, "asked": asked, "stage": result.lead["stage"],
                    "score": result.lead["score"], "latency_ms": round(latency, 2),
                    "reasked": bool(asked and asked in known),
                    "ungrounded": ungrounded_claims(result.reply, "\n".join([_evidence(sdr), *said,
                                                                            json.dumps(result.actions, default=str)]))}


def play(sdr: Any, persona: dict[str, Any], seed: int = 0, model: bool | None = None) -> dict[str, Any]:
    """One conversation: the transcript, the last result, and what happened along the way."""
    prospect = make_prospect(persona, sdr.playbook, seed=seed, model=model)
    text: str | None = prospect.opening()
    sid, said, transcript = None, [], []
    run: dict[str, Any] = {"recommended": [], "handoff": False, "meeting_booked": False, "turns_to_sql": None}
    result = None
    for n in range(1, int(persona.get("max_turns") or 10) + 1):
        if text is None:
            break
        said.append(text)
        transcript.append({"role": "prospect", "text": text})
        result, sdr_turn = _turn(sdr, text, sid, said)
        sid = result.session_id
        transcript.append(sdr_turn)
        acts = result.actions
        run["recommended"] += [a["url"] for a in acts if a["type"] == "recommend"]
        run["handoff"] = run["handoff"] or any(a["type"] == "handoff" for a in acts)
        run["meeting_booked"] = run["meeting_booked"] or any(a["type"] == "meeting" and a.get("status") == "booked"
                                                             for a in acts)
        if run["turns_to_sql"] is None and result.lead["stage"] in ("sql", "meeting_booked"):
            run["turns_to_sql"] = n
        offered = any(a["type"] == "offer_slots" for a in acts)
        if not persona.get("messages") and _stop(result, offered):   # a script is played to its end
            break
        text = prospect.respond(result.reply, acts)
    return {**run, "transcript": transcript, "result": result}


def _usage(sdr: Any, lead_id: str, transcript: list[dict[str, Any]]) -> None:
    """Each SDR turn's model calls and tokens, from the stored replies (in order)."""
    agent = [m for m in sdr.lead_detail(lead_id)["messages"] if m["role"] == "agent"]
    sdr_turns = [t for t in transcript if t["role"] == "sdr"]
    for t, m in zip(reversed(sdr_turns), reversed(agent)):   # the lead's last replies are this run's
        for key in ("model_calls", "prompt_tokens", "completion_tokens"):
            t[key] = int(m.get(key) or 0)


def check(persona: dict[str, Any], ran: dict[str, Any]) -> tuple[list[str], dict[str, bool]]:
    """The persona's `expect` against what happened: failures as sentences, and per-field rights."""
    exp, lead = persona.get("expect") or {}, ran["result"].lead
    fields, failures = lead.get("fields") or {}, []
    stage = exp.get("stage")
    if stage and lead["stage"] != stage and lead["stage"] not in BEYOND.get(stage, ()):
        failures.append(f"stage {lead['stage']} (expected {stage})")
    if exp.get("handoff") is not None and ran["handoff"] != exp["handoff"]:
        failures.append(f"handoff {ran['handoff']} (expected {exp['handoff']})")
    checks = {k: same_value(fields.get(k), v) for k, v in (exp.get("fields") or {}).items()}
    failures += [f"{k}={fields.get(k)!r} (expected {exp['fields'][k]!r})" for k, ok in checks.items() if not ok]
    wanted = list(exp.get("recommended_any") or []) + ([exp["recommended"]] if exp.get("recommended") else [])
    if wanted and not set(wanted) & set(ran["recommended"]):
        failures.append(f"recommended none of {wanted} (sent {ran['recommended'] or 'nothing'})")
    replies = [t["text"] for t in ran["transcript"] if t["role"] == "sdr"]
    low = " ".join(replies).lower()
    failures += [f"a reply says {p!r}" for p in exp.get("never_says") or [] if p.lower() in low]
    failures += [f"replies lack {p!r}" for p in exp.get("reply_contains") or [] if p.lower() not in low]
    failures += [f"replies contain {p!r}" for p in exp.get("reply_not_contains") or [] if p in " ".join(replies)]
    return failures, checks


def run_persona(sdr: Any, persona: dict[str, Any], seed: int = 0, model: bool | None = None) -> dict[str, Any]:
    """One persona played once: the record the metrics and the report read (see evals/report.py)."""
    exp = persona.get("expect") or {}
    base = {"name": persona["name"], "seed": seed, "tags": list(persona.get("tags") or []),
            "expected_stage": exp.get("stage"), "expected_handoff": exp.get("handoff"),
            "truths": dict(persona.get("truths") or {}), "recommended_any": list(exp.get("recommended_any") or [])}
    skip = skip_reason(persona, CHANNELS_BUILT)
    if skip:
        return {**base, "skipped": skip, "passed": None, "failures": [], "transcript": [], "stage": None,
                "handoff": False, "turns": 0}
    ran = play(sdr, persona, seed, model)
    lead = ran["result"].lead
    _usage(sdr, lead["id"], ran["transcript"])
    failures, checks = check(persona, ran)
    sdr_turns = [t for t in ran["transcript"] if t["role"] == "sdr"]
    return {**base, "skipped": None, "passed": not failures, "failures": failures, "field_checks": checks,
            "stage": lead["stage"], "score": lead["score"], "fields": dict(lead.get("fields") or {}),
            "handoff": ran["handoff"], "meeting_booked": ran["meeting_booked"], "recommended": ran["recommended"],
            "turns_to_sql": ran["turns_to_sql"], "turns": len(sdr_turns),
            "reasked": sum(t["reasked"] for t in sdr_turns), "transcript": ran["transcript"]}


def run_suite(sdr: Any, personas: list[dict[str, Any]], *, k: int = 1, seed: int = 0, model: bool | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Every persona `k` times (seeds seed..seed+k-1): the report `sdr eval --json` writes —
    {"summary", "metrics", "meta", "fields", "stages", "turns_to_sql", "personas", "runs"}. A
    persona passes when all its k runs pass (pass^k)."""
    from tqdm import tqdm

    started = sdr.clock().isoformat(timespec="seconds") + "Z"
    if sdr.kb is not None:
        sdr.kb.search("warm up")   # the embedding model loads once, before the first timed reply
    sdr.warm()                     # and the place data, the language detector, the intent examples
    runs = [run_persona(sdr, p, seed + i, model)
            for p in tqdm(personas, desc="eval", unit="persona", disable=not progress) for i in range(k)]
    personas_out = []
    for p in personas:
        mine = [r for r in runs if r["name"] == p["name"]]
        first = dict(mine[0])
        first["passed"] = None if first["skipped"] else all(r["passed"] for r in mine)
        first["failures"] = [f"seed {r['seed']}: {f}" if k > 1 else f for r in mine for f in r["failures"]]
        personas_out.append(first)
    ran = [p for p in personas_out if not p["skipped"]]
    report = summarize(runs)
    report["meta"] = {"brain": sdr.brain.name, "seed": seed, "k": k, "started_at": started,
                      "personas": len(personas), "passed": sum(1 for p in ran if p["passed"]),
                      "skipped": len(personas) - len(ran), "playbook": sdr.playbook.company.name,
                      "suite": sorted({str(p.get("source", "")) for p in personas}),
                      "pass_hat_k": round(sum(1 for p in ran if p["passed"]) / len(ran), 4) if ran else None}
    report["personas"] = personas_out
    return report


def run(sdr: Any, path: Any = None, progress: bool = True, cases: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every persona once; the per-persona records (the shape `sdr eval` prints)."""
    return run_suite(sdr, load_cases(path, sdr.playbook) if cases is None else cases, progress=progress)["personas"]


run_case = run_persona   # the name tests used for one scripted case
