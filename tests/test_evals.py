"""The bundled scripted prospects (evals/conversations.yaml) all end as a good SDR would end them."""
import pytest

from evals.run import load_cases, run_case

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_scripted_prospect(sdr, case):
    result = run_case(sdr, case)
    assert result["passed"], result["failures"]


def test_eval_command_reports(monkeypatch):
    from click.testing import CliRunner

    from integrations.cli import main
    r = CliRunner().invoke(main, ["eval"])
    assert r.exit_code == 0, r.output
    assert f"{len(CASES)}/{len(CASES)} conversations as expected" in r.output
    r = CliRunner().invoke(main, ["leads"])                   # simulated prospects never reach the real database
    assert r.exit_code == 0 and "No leads yet" in r.output, r.output
