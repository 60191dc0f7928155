"""The `sdr eval --html` report: one self-contained HTML page a marketer can read.

    render_html(report) -> str          the page, from the eval report dict (`sdr eval --json`'s shape)
    write_html(report, path) -> None    the same page written as UTF-8

The page holds everything itself: inline CSS, charts as inline SVG built from numbers computed
here, no scripts, no fonts, no images, no links out. Every string that comes from the report
(persona names, transcripts, failures, suite paths) is text: Jinja2 autoescapes all of it, so a
visitor's `<script>` in a transcript shows as typed.

Shown: the run's meta line; the summary as metric bars (ratios as bars, counts as numbers, a
missing metric as "n/a" with why, the delta against `report["baseline"]["summary"]` when present,
red when worse); per-field accuracy; the confusion matrix of expected vs reached stage; the
turns-to-SQL histogram; the persona table; and each failing persona's transcript.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).with_name("templates")
STAGES = ("new", "engaged", "mql", "sql", "meeting_booked", "human", "disqualified")
EPSILON = 1e-9


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    kind: str            # "ratio" (0..1, drawn as a bar) | "count" | "number" | "ms"
    higher_is_better: bool
    why_none: str        # shown when the value is None


METRICS = (
    Metric("field_accuracy", "Field accuracy", "ratio", True, "no persona expects any field"),
    Metric("handoff_precision", "Handoff precision", "ratio", True, "no persona was handed off"),
    Metric("handoff_recall", "Handoff recall", "ratio", True,
           "no qualified personas (none expects a handoff)"),
    Metric("disqualify_accuracy", "Disqualification accuracy", "ratio", True,
           "no persona expects to be disqualified"),
    Metric("grounding_violations", "Grounding violations", "count", False, "not measured"),
    Metric("reasked_fields", "Re-asked fields", "count", False, "not measured"),
    Metric("questions_per_reply_max", "Most questions in one reply", "count", False, "not measured"),
    Metric("turns_to_sql_median", "Turns to SQL (median)", "number", False, "no persona reached SQL"),
    Metric("latency_ms_p95", "Reply latency p95", "ms", False, "not measured"),
    Metric("model_calls_per_turn", "Model calls per turn", "number", False, "not measured"),
    Metric("prompt_tokens_per_turn", "Prompt tokens per turn", "count", False, "not measured"),
)


def render_html(report: dict) -> str:
    """The whole page for one eval report (see the module docstring)."""
    return _environment().get_template("report.html").render(**_context(report))


def write_html(report: dict, path: str | Path) -> None:
    """Write render_html(report) to path as UTF-8, creating the parent folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    # autoescape=True for every template, whatever its file name: report text is never markup.
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _context(report: dict) -> dict[str, Any]:
    meta = report.get("meta") or {}
    personas = [_persona(i, p) for i, p in enumerate(report.get("personas") or [])]
    baseline = (report.get("baseline") or {}).get("summary")
    return {
        "title": f"Open SDR eval: {meta.get('brain') or 'unknown brain'}",
        "meta": _meta_items(meta),
        "tally": _tally(meta, personas),
        "metrics": _metrics(report.get("summary") or {}, baseline),
        "has_baseline": baseline is not None,
        "fields": _fields(report.get("fields") or {}),
        "matrix": _matrix(report.get("stages") or []),
        "histogram": _histogram(report.get("turns_to_sql") or [],
                                (report.get("summary") or {}).get("turns_to_sql_median")),
        "personas": personas,
        "failing": [p for p in personas if p["status"] == "fail"],
    }


def _meta_items(meta: dict) -> list[tuple[str, str]]:
    suite = meta.get("suite")
    items = [
        ("brain", meta.get("brain")),
        ("suite", ", ".join(map(str, suite)) if isinstance(suite, (list, tuple)) else suite),
        ("playbook", meta.get("playbook")),
        ("seed", meta.get("seed")),
        ("k", meta.get("k")),
        ("pass^k", _percent(meta["pass_hat_k"]) if meta.get("pass_hat_k") is not None else None),
        ("started", meta.get("started_at")),
    ]
    return [(label, str(value)) for label, value in items if value not in (None, "")]


def _tally(meta: dict, personas: list[dict]) -> dict[str, int]:
    total = meta.get("personas", len(personas))
    passed = meta.get("passed", sum(p["status"] == "pass" for p in personas))
    skipped = meta.get("skipped", sum(p["status"] == "skip" for p in personas))
    return {"total": total, "passed": passed, "skipped": skipped,
            "failed": max(0, total - passed - skipped)}


def _metrics(summary: dict, baseline: dict | None) -> list[dict[str, Any]]:
    known = {m.key for m in METRICS}
    extra = [Metric(k, k.replace("_", " ").capitalize(), "number", True, "not measured")
             for k in summary if k not in known and _is_number(summary[k])]
    rows = []
    for metric in (*METRICS, *extra):
        value = _number(summary.get(metric.key))
        row = {"key": metric.key, "label": metric.label, "kind": metric.kind,
               "text": _format(value, metric.kind) if value is not None else "n/a",
               "note": metric.why_none if value is None else "",
               "bar": _clamp(value) if metric.kind == "ratio" and value is not None else None,
               "delta": None, "delta_class": ""}
        if baseline is not None:
            row["delta"], row["delta_class"] = _delta(metric, value, _number(baseline.get(metric.key)))
        rows.append(row)
    return rows


def _delta(metric: Metric, value: float | None, base: float | None) -> tuple[str, str]:
    """The change against the baseline as text, and "worse", "better" or "same"."""
    if value is None and base is None:
        return "n/a both", "same"
    if base is None:
        return "new (baseline n/a)", "same"
    if value is None:
        return f"was {_format(base, metric.kind)}", "worse"
    change = value - base
    if abs(change) <= EPSILON:
        return "±0", "same"
    better = (change > 0) == metric.higher_is_better
    sign = "+" if change > 0 else "−"
    size = f"{abs(change) * 100:.1f} pp" if metric.kind == "ratio" else _format(abs(change), metric.kind)
    return f"{sign}{size}", "better" if better else "worse"


def _fields(fields: dict) -> list[dict[str, Any]]:
    rows = []
    for name, counts in fields.items():
        right, total = int((counts or {}).get("right", 0)), int((counts or {}).get("total", 0))
        ratio = right / total if total else None
        rows.append({"name": str(name), "right": right, "total": total, "bar": ratio,
                     "text": _percent(ratio) if ratio is not None else "n/a"})
    # Worst first: what to fix is at the top; fields without data last.
    return sorted(rows, key=lambda r: (r["bar"] is None, r["bar"] or 0.0, r["name"]))


def _matrix(stages: list[dict]) -> dict[str, Any]:
    """The expected (rows) x reached (columns) counts, with the geometry of the SVG."""
    pairs = [(str(s.get("expected")), str(s.get("reached"))) for s in stages if isinstance(s, dict)]
    names = list(STAGES) + sorted({n for pair in pairs for n in pair} - set(STAGES))
    counts = {(e, r): 0 for e in names for r in names}
    for pair in pairs:
        counts[pair] += 1
    peak = max(counts.values(), default=0) or 1
    cell, left, top = 54, 118, 104
    rows = []
    for i, expected in enumerate(names):
        row = []
        for j, reached in enumerate(names):
            n = counts[(expected, reached)]
            row.append({"expected": expected, "reached": reached, "count": n,
                        "diagonal": i == j, "x": left + j * cell, "y": top + i * cell,
                        "opacity": round(0.12 + 0.88 * n / peak, 3) if n else 0})
        rows.append({"name": expected, "y": top + i * cell, "cells": row})
    return {"stages": names, "rows": rows, "cell": cell, "left": left, "top": top,
            "columns": [{"name": n, "x": left + j * cell + cell / 2} for j, n in enumerate(names)],
            "width": left + len(names) * cell + 84, "height": top + len(names) * cell + 8,
            "total": len(pairs), "correct": sum(1 for e, r in pairs if e == r)}


def _histogram(turns: list, median: Any) -> dict[str, Any]:
    """One bar per number of turns from the fewest to the most, with the SVG geometry."""
    values = [int(t) for t in turns if _is_number(t)]
    if not values:
        return {"bars": [], "count": 0}
    low, high = min(values), max(values)
    peak = max(values.count(t) for t in range(low, high + 1))
    slot, left, top, plot = 40, 36, 30, 150
    bars = []
    for i, t in enumerate(range(low, high + 1)):
        n = values.count(t)
        h = round(plot * n / peak, 1)
        bars.append({"turns": t, "count": n, "x": left + i * slot + 6, "w": slot - 12,
                     "y": top + plot - h, "h": h, "label_x": left + i * slot + slot / 2})
    median = _number(median)
    median_x = left + (median - low) * slot + slot / 2 if median is not None else None
    return {"bars": bars, "count": len(values), "peak": peak, "left": left, "top": top,
            "plot": plot, "width": left + (high - low + 1) * slot + 10, "height": top + plot + 40,
            "median": _format(median, "number") if median is not None else None,
            "median_x": median_x}


def _persona(index: int, persona: dict) -> dict[str, Any]:
    skipped = persona.get("skipped")
    status = "skip" if skipped else ("pass" if persona.get("passed") else "fail")
    expected, reached = persona.get("expected_stage"), persona.get("stage")
    return {
        "id": f"persona-{index}",
        "name": str(persona.get("name") or f"persona {index + 1}"),
        "status": status,
        "skipped": str(skipped) if skipped else "",
        "failures": [str(f) for f in persona.get("failures") or []],
        "expected_stage": str(expected) if expected else "",
        "stage": str(reached) if reached else "",
        "stage_ok": bool(skipped) or not expected or expected == reached,
        "handoff": persona.get("handoff"),
        "turns": persona.get("turns", ""),
        "tags": [str(t) for t in persona.get("tags") or []],
        "transcript": [_turn(t) for t in persona.get("transcript") or [] if isinstance(t, dict)],
    }


def _turn(turn: dict) -> dict[str, Any]:
    sdr = turn.get("role") == "sdr"
    score, latency = _number(turn.get("score")), _number(turn.get("latency_ms"))
    notes = []
    if turn.get("asked"):
        notes.append(("asked", str(turn["asked"])))
    if turn.get("stage"):
        notes.append(("stage", str(turn["stage"])))
    if score is not None:
        notes.append(("score", _format(score, "number")))
    if latency is not None:
        notes.append(("latency", _format(latency, "ms")))
    return {"sdr": sdr, "who": "SDR" if sdr else "Prospect", "text": str(turn.get("text") or ""),
            "notes": notes}


def _format(value: float, kind: str) -> str:
    if kind == "ratio":
        return _percent(value)
    if kind == "ms":
        return f"{value:,.0f} ms"
    if kind == "count" or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> float | None:
    return float(value) if _is_number(value) else None
