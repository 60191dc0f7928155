"""The evals as CI runs them: the scripted prospects all end as a good SDR would end them, the
shipped persona suite holds the committed baseline, and a broken playbook fails the gate with the
metric named."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evals.metrics import SUMMARY_KEYS, compare
from evals.run import load_cases, run_persona, run_suite, ticking_clock
from evals.suite import CONVERSATIONS

ROOT = Path(__file__).resolve().parents[1]
BASELINE = json.loads((ROOT / "evals" / "baseline.json").read_text())
SCRIPTED = load_cases(CONVERSATIONS)
EVAL_NOW = "2026-12-01T15:00:00Z"   # the instant `sdr eval` starts its conversations by default


@pytest.mark.parametrize("case", SCRIPTED, ids=[c["name"] for c in SCRIPTED])
def test_scripted_prospect(sdr, case):
    result = run_persona(sdr, case)
    assert result["passed"], result["failures"]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The shipped suite, once, through an SDR on the bundled playbook at the eval's fixed instant."""
    from bot.settings import Settings
    from bot.turn import SDR
    from conftest import SAMPLE

    settings = Settings.from_env(data_dir=str(tmp_path_factory.mktemp("evals")))
    sdr = SDR(settings, clock=ticking_clock(EVAL_NOW))
    sdr.kb.ingest([SAMPLE], progress=False)
    yield sdr, run_suite(sdr, load_cases(None, sdr.playbook), progress=False)
    sdr.store.dispose()


def test_the_shipped_suite_holds_the_baseline(shipped):
    _, report = shipped
    assert set(report["summary"]) == set(SUMMARY_KEYS)
    assert report["meta"]["personas"] >= 40 + len(SCRIPTED)
    assert compare(report["summary"], BASELINE["summary"], max_drop=0.02) == []


def test_a_broken_playbook_fails_the_gate_naming_the_metric(shipped):
    """SQL at 500 points: nobody qualifies, so recall (and the turns to SQL) fall, and the gate says which."""
    sdr, _ = shipped
    broken = sdr.playbook.model_copy(deep=True)
    broken.thresholds.sql = 500
    sdr.playbook, kept = broken, sdr.playbook
    try:
        hot = [p for p in load_cases(None, kept) if (p["expect"] or {}).get("handoff")][:6]
        report = run_suite(sdr, hot, progress=False)
    finally:
        sdr.playbook = kept
    worse = compare(report["summary"], BASELINE["summary"], max_drop=0.02)
    assert any(w.startswith("handoff_recall fell") for w in worse), worse
    assert any(w.startswith("turns_to_sql_median") for w in worse), worse


def test_compare_names_every_worse_metric_and_nothing_else():
    base = {"field_accuracy": 0.9, "handoff_recall": 1.0, "grounding_violations": 0, "latency_ms_p95": 10,
            "turns_to_sql_median": 4}
    now = {"field_accuracy": 0.89, "handoff_recall": 0.9, "grounding_violations": 1, "latency_ms_p95": 99,
           "turns_to_sql_median": 4}
    worse = compare(now, base, max_drop=0.02)
    assert [w.split()[0] for w in worse] == ["handoff_recall", "grounding_violations"]   # latency is not gated
    assert [w.split()[0] for w in compare(now, base, 0.02, gate_latency=True)][-1] == "latency_ms_p95"


def test_eval_command_writes_the_reports_and_gates(tmp_path, monkeypatch):
    from integrations.cli import main

    suite = tmp_path / "suite.yaml"
    suite.write_text((ROOT / "evals" / "conversations.yaml").read_text())
    out, page = tmp_path / "out.json", tmp_path / "report.html"
    r = CliRunner().invoke(main, ["eval", str(suite), "--json", str(out), "--html", str(page)])
    assert r.exit_code == 0, r.output
    assert f"{len(SCRIPTED)}/{len(SCRIPTED)} personas as expected" in r.output
    report = json.loads(out.read_text())
    assert set(report["summary"]) == set(SUMMARY_KEYS) and report["personas"][0]["transcript"]
    assert "<svg" in page.read_text() and "field_accuracy" in r.output
    better = tmp_path / "better.json"
    better.write_text(json.dumps({"summary": {**report["summary"], "field_accuracy": 1.5}}))
    r = CliRunner().invoke(main, ["eval", str(suite), "--baseline", str(better)])
    assert r.exit_code == 3 and "field_accuracy fell" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: x\n  opening: hi\n  truths: {company_sise: 5}\n")
    r = CliRunner().invoke(main, ["eval", str(bad)])
    assert r.exit_code == 2 and "company_sise" in r.output and "'x'" in r.output
    r = CliRunner().invoke(main, ["leads"])                   # simulated prospects never reach the real database
    assert r.exit_code == 0 and "No leads yet" in r.output, r.output
