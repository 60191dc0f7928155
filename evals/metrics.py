"""What a sales leader asks of an SDR, computed from the runs of a suite.

`summarize(runs)` turns the per-persona runs of `evals.run.run_persona` into the report's
`summary` (the gate's metrics, these keys exactly), `metrics` (the rest), per-field accuracy, the
expected-vs-reached stages and the turns to SQL. `compare(summary, baseline, max_drop)` names
every metric that got worse than the baseline by more than `max_drop`.

Definitions (per persona that was run, not skipped):
- field_accuracy: expected fields the lead ended with, right / expected, over all personas.
- handoff_precision / recall: handed off vs `expect.handoff`, over personas that say.
- disqualify_accuracy: personas expected *or* reached `disqualified` that were both, over those.
- grounding_violations: prices, numbers, names, integrations in replies that neither the content
  store, the playbook nor the prospect's own words hold (bot.guard.ungrounded_claims).
- reasked_fields: a reply asking for a field the lead already had (the simulator's detector).
- questions_per_reply_max: the most question marks in one reply.
- turns_to_sql_median: turns until the lead first reached SQL, over personas that did.
- latency_ms_p95: reply latency in the runner's process (not gated by default: wall time is noisy).
- model_calls_per_turn / prompt_tokens_per_turn: from each reply's stored usage.
"""
from __future__ import annotations

import re
import statistics
from typing import Any

GATED_UP = ("field_accuracy", "handoff_precision", "handoff_recall", "disqualify_accuracy")
GATED_DOWN = ("grounding_violations", "reasked_fields", "questions_per_reply_max", "turns_to_sql_median",
              "model_calls_per_turn", "prompt_tokens_per_turn")
NOT_GATED = ("latency_ms_p95",)   # wall time: reported, compared only with --gate-latency
SUMMARY_KEYS = ("field_accuracy", "handoff_precision", "handoff_recall", "disqualify_accuracy", "grounding_violations",
                "reasked_fields", "questions_per_reply_max", "turns_to_sql_median", "latency_ms_p95",
                "model_calls_per_turn", "prompt_tokens_per_turn")
BANT = {"budget": ("budget",), "authority": ("seniority", "role"), "need": ("need",), "timeline": ("timeline",)}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def questions(reply: str) -> int:
    """Question marks in a reply, not counting those inside links (a URL's query string)."""
    return re.sub(r"https?://\S+", " ", reply).count("?")


def _ratio(right: int, total: int) -> float | None:
    return round(right / total, 4) if total else None


def same_value(got: Any, want: Any) -> bool:
    """Field values compared as a sales person would: numbers by value, text case-insensitively."""
    if isinstance(want, bool) or isinstance(got, bool):
        return got == want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return abs(float(got) - float(want)) < 1e-9
    return str(got).strip().lower() == str(want).strip().lower() if got is not None else want is None


def bant_gaps_right(truths: dict[str, Any], fields: dict[str, Any]) -> tuple[int, int]:
    """(right, 4): for each of budget, authority, need, timeline, the SDR knows it when the prospect
    has it (and told it when asked) and claims nothing when the prospect has none."""
    right = 0
    for keys in BANT.values():
        truth = any(truths.get(k) not in (None, "") for k in keys)
        known = any(fields.get(k) not in (None, "") for k in keys)
        right += truth == known
    return right, len(BANT)


def _stage_rows(ran: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"expected": r["expected_stage"], "reached": r["stage"]} for r in ran if r.get("expected_stage")]


def _handoff(ran: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    said = [r for r in ran if r.get("expected_handoff") is not None]
    tp = sum(1 for r in said if r["handoff"] and r["expected_handoff"])
    predicted = sum(1 for r in said if r["handoff"])
    actual = sum(1 for r in said if r["expected_handoff"])
    return _ratio(tp, predicted), _ratio(tp, actual)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """{"summary", "metrics", "fields", "stages", "turns_to_sql"} from the runs (skipped ones ignored)."""
    ran = [r for r in runs if not r.get("skipped")]
    fields: dict[str, dict[str, int]] = {}
    for r in ran:
        for name, ok in r["field_checks"].items():
            f = fields.setdefault(name, {"right": 0, "total": 0})
            f["right"] += ok
            f["total"] += 1
    turns = [t for r in ran for t in r["transcript"] if t["role"] == "sdr"]
    dq = [r for r in ran if "disqualified" in (r.get("expected_stage"), r["stage"])]
    to_sql = [r["turns_to_sql"] for r in ran if r.get("turns_to_sql")]
    precision, recall = _handoff(ran)
    n_turns = max(len(turns), 1)
    summary = {
        "field_accuracy": _ratio(sum(f["right"] for f in fields.values()), sum(f["total"] for f in fields.values())),
        "handoff_precision": precision, "handoff_recall": recall,
        "disqualify_accuracy": _ratio(sum(1 for r in dq if r["stage"] == r.get("expected_stage")), len(dq)),
        "grounding_violations": sum(len(t.get("ungrounded") or []) for t in turns),
        "reasked_fields": sum(r["reasked"] for r in ran),
        "questions_per_reply_max": max((questions(t["text"]) for t in turns), default=0),
        "turns_to_sql_median": statistics.median(to_sql) if to_sql else None,
        "latency_ms_p95": round(percentile([t["latency_ms"] for t in turns], 95), 1),
        "model_calls_per_turn": round(sum(t.get("model_calls", 0) for t in turns) / n_turns, 3),
        "prompt_tokens_per_turn": round(sum(t.get("prompt_tokens", 0) for t in turns) / n_turns, 1),
    }
    return {"summary": summary, "metrics": _more(ran, turns), "fields": fields, "stages": _stage_rows(ran),
            "turns_to_sql": to_sql}


def _more(ran: list[dict[str, Any]], turns: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics outside the gate: BANT gaps, meetings for qualified personas, content fit,
    latency p50, completion tokens, questions per reply on average."""
    bant = [bant_gaps_right(r["truths"], r["fields"]) for r in ran if r.get("truths")]
    qualified = [r for r in ran if r.get("expected_stage") in ("sql", "meeting_booked")]
    fit = [r for r in ran if r.get("recommended_any")]
    n_turns = max(len(turns), 1)
    return {
        "bant_gaps_right": _ratio(sum(b[0] for b in bant), sum(b[1] for b in bant)),
        "meetings_booked_for_qualified": _ratio(sum(1 for r in qualified if r["meeting_booked"]), len(qualified)),
        "content_fit": _ratio(sum(1 for r in fit if set(r["recommended"]) & set(r["recommended_any"])), len(fit)),
        "latency_ms_p50": round(percentile([t["latency_ms"] for t in turns], 50), 1),
        "completion_tokens_per_turn": round(sum(t.get("completion_tokens", 0) for t in turns) / n_turns, 1),
        "questions_per_reply_mean": round(sum(questions(t["text"]) for t in turns) / n_turns, 3),
        "personas_run": len(ran), "turns": len(turns),
    }


def compare(summary: dict[str, Any], baseline: dict[str, Any], max_drop: float,
            gate_latency: bool = False) -> list[str]:
    """Every summary metric worse than `baseline` by more than `max_drop` (an absolute drop for
    rates 0..1; a relative rise for counts, turns, tokens, latency — any rise from 0), as
    sentences naming the metric, its value and the baseline's. Empty: the gate passes."""
    worse = []
    for key in GATED_UP:
        new, old = summary.get(key), baseline.get(key)
        if old is not None and (new is None or old - new > max_drop + 1e-12):
            worse.append(f"{key} fell from {old} to {new} (allowed drop {max_drop})")
    for key in GATED_DOWN + (NOT_GATED if gate_latency else ()):
        new, old = summary.get(key), baseline.get(key)
        if old is None or new is None:
            if new is None and old is not None and key == "turns_to_sql_median":
                worse.append(f"{key}: no persona reached SQL (baseline {old})")
            continue
        if new > old * (1 + max_drop) + 1e-12:
            worse.append(f"{key} rose from {old} to {new} (allowed rise {max_drop:.0%})")
    return worse
