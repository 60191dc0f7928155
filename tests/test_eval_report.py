"""The `sdr eval --html` page (evals/report.py): self-contained, every report string escaped, the
confusion matrix counts right, missing metrics and empty suites shown rather than crashing."""
from __future__ import annotations

import copy
import fnmatch
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

from evals.report import TEMPLATES, render_html, write_html

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "<script>alert(1)</script>"


def _turn(role, text, **extra):
    return {"role": role, "text": text, "asked": None, "stage": None, "score": None,
            "latency_ms": None, **extra}


def _report() -> dict:
    failing = {
        "name": "hot VP <b>bold</b>", "passed": False, "skipped": None,
        "failures": [f"never_says: reply contained {HOSTILE}"], "stage": "mql",
        "expected_stage": "sql", "handoff": False, "turns": 3, "tags": ["hot", "<i>tag</i>"],
        "transcript": [
            _turn("prospect", f"hi {HOSTILE} and <b>bold</b>"),
            _turn("sdr", "How many people work there?", asked="company_size", stage="engaged",
                  score=22.0, latency_ms=412.5),
            _turn("prospect", "we're ~1.2k people"),
            _turn("sdr", "When do you hope to start?", asked="timeline", stage="mql", score=58.5,
                  latency_ms=390.0),
        ],
    }
    passing = {"name": "student", "passed": True, "skipped": None, "failures": [],
               "stage": "disqualified", "expected_stage": "disqualified", "handoff": False,
               "turns": 2, "tags": [], "transcript": [_turn("prospect", "PASSING-TRANSCRIPT")]}
    skipped = {"name": "email persona", "passed": False, "skipped": "no email channel yet",
               "failures": [], "stage": None, "expected_stage": "sql", "handoff": None, "turns": 0,
               "tags": [], "transcript": []}
    return {
        "summary": {"field_accuracy": 0.8, "handoff_precision": 1.0, "handoff_recall": 0.5,
                    "disqualify_accuracy": 1.0, "grounding_violations": 0, "reasked_fields": 1,
                    "questions_per_reply_max": 1, "turns_to_sql_median": 4.0,
                    "latency_ms_p95": 420.0, "model_calls_per_turn": 0.0,
                    "prompt_tokens_per_turn": 0.0},
        "meta": {"suite": ["evals/personas.yaml"], "brain": "rules", "seed": 7, "k": 1,
                 "started_at": "2026-01-13T15:00:00+00:00", "personas": 3, "passed": 1,
                 "skipped": 1, "playbook": "bot/playbook.yaml", "pass_hat_k": None},
        "fields": {"company_size": {"right": 3, "total": 4}, "industry": {"right": 4, "total": 4}},
        "stages": [{"expected": "sql", "reached": "mql"}, {"expected": "sql", "reached": "mql"},
                   {"expected": "sql", "reached": "sql"},
                   {"expected": "disqualified", "reached": "disqualified"}],
        "turns_to_sql": [3, 4, 4, 6],
        "personas": [failing, passing, skipped],
    }


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text inside <svg class="cm">."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _matrix_counts(html: str) -> dict[tuple[str, str], int]:
    tags, inside = _Page(html).tags, False
    counts = {}
    for tag, attrs in tags:
        if tag == "svg":
            inside = "cm" in (attrs.get("class") or "").split()
        elif inside and tag == "g" and "data-expected" in attrs:
            counts[(attrs["data-expected"], attrs["data-reached"])] = int(attrs["data-count"])
    return counts


def test_report_text_is_escaped():
    html = render_html(_report())
    assert "<script" not in html.lower()                       # nothing from the report runs
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html      # ... and it shows as typed
    assert "<b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<i>" not in html and "&lt;i&gt;tag&lt;/i&gt;" in html
    assert not any(tag in {"script", "b", "i", "iframe", "object", "embed"}
                   for tag, _ in _Page(html).tags)


def test_page_is_self_contained():
    html = render_html(_report())
    for tag, attrs in _Page(html).tags:
        for name in ("src", "href", "srcset", "action", "xlink:href", "data"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
    assert not re.search(r"url\(|@import|https?://", html, re.I)


def test_confusion_matrix_counts():
    html = render_html(_report())
    counts = _matrix_counts(html)
    assert counts[("sql", "mql")] == 2
    assert counts[("sql", "sql")] == 1
    assert counts[("disqualified", "disqualified")] == 1
    assert sum(counts.values()) == 4
    stages = ["new", "engaged", "mql", "sql", "meeting_booked", "human", "disqualified"]
    assert set(counts) == {(e, r) for e in stages for r in stages}
    assert "2 of 4 on the diagonal" in html


def test_unknown_stage_gets_its_own_row_and_column():
    report = _report()
    report["stages"].append({"expected": "nurture", "reached": "mql"})
    assert _matrix_counts(render_html(report))[("nurture", "mql")] == 1


def test_only_failing_transcripts_are_shown_with_turn_details():
    html = render_html(_report())
    assert 'id="persona-0"' in html and 'href="#persona-0"' in html
    assert "PASSING-TRANSCRIPT" not in html
    for note in ("asked: company_size", "stage: engaged", "score: 22", "latency: 412 ms",
                 "asked: timeline", "score: 58.5"):
        assert note in html
    assert "skipped: no email channel yet" in html


def test_none_metrics_show_na_with_a_reason():
    report = _report()
    report["summary"].update(handoff_precision=None, handoff_recall=None,
                             disqualify_accuracy=None, turns_to_sql_median=None)
    report["meta"]["pass_hat_k"] = None
    html = render_html(report)
    assert html.count(">n/a<") >= 4
    assert "no qualified personas" in html
    assert "no persona was handed off" in html
    assert "no persona reached SQL" in html


def test_empty_suite_renders():
    html = render_html({"summary": {"field_accuracy": 0.0}, "meta": {"personas": 0},
                        "fields": {}, "stages": [], "turns_to_sql": [], "personas": []})
    assert "The suite has no personas." in html
    assert "No persona failed." in html
    assert "No persona reached SQL." in html
    assert "No persona has an expected stage." in html
    assert render_html({})                                       # even a bare dict renders


def test_baseline_deltas_red_when_worse():
    report = _report()
    report["baseline"] = {"summary": {**copy.deepcopy(report["summary"]),
                                      "field_accuracy": 0.9,     # now 0.8: worse
                                      "grounding_violations": 2,  # now 0: better
                                      "latency_ms_p95": 300.0}}   # now 420: worse
    html = render_html(report)

    def delta(key):
        row = re.search(rf'<tr data-metric="{key}">.*?</tr>', html, re.S).group(0)
        return re.search(r'<span class="delta (\w*)">([^<]*)</span>', row).groups()

    assert delta("field_accuracy") == ("worse", "−10.0 pp")
    assert delta("grounding_violations") == ("better", "−2")
    assert delta("latency_ms_p95") == ("worse", "+120 ms")
    assert delta("reasked_fields") == ("same", "±0")
    assert "vs baseline" in html
    assert "vs baseline" not in render_html(_report())


def test_write_html_writes_utf8_html(tmp_path):
    path = tmp_path / "out" / "report.html"
    report = _report()
    report["personas"][0]["transcript"][0]["text"] = "Grüße — 你好 " + HOSTILE
    write_html(report, path)
    text = path.read_bytes().decode("utf-8")                   # strict: raises on bad bytes
    assert text.lstrip().lower().startswith("<!doctype html>")
    assert '<meta charset="utf-8">' in text
    assert "Grüße — 你好" in text and text.rstrip().endswith("</html>")
    assert text == render_html(report)


def test_template_ships_in_the_wheel():
    """evals/templates/report.html must match the package-data of `evals` in pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config.get("package-data", {}).get("evals", [])
    template = (TEMPLATES / "report.html").relative_to(ROOT / "evals").as_posix()
    assert any(fnmatch.fnmatch(template, p) for p in patterns), (template, patterns)
