"""The tests that touch slots, working hours, rep assignment, decay and dates pass whatever the wall
clock says (issue 8, item 9).

They run on injected clocks (conftest: `clock`, `make_sdr`; fixed instants in the tests). This
proves it: the time-sensitive files run again in a subprocess with the wall clock moved (with
time-machine, SDR_TEST_FAKE_NOW) to two instants chosen to be awkward:

- Tue 1 Dec 2026 03:30 UTC: a weekday night, neither rep (New York 09-17, London 09-17:30) at work;
- Sun 28 Mar 2027 01:30 UTC: a weekend, and the hour Europe/London springs forward to summer time.

Both run in one process (each test once per instant), and that process starts from the vectors this
one embedded (the sample content, the intent examples; conftest: save_embeddings), so the same texts
are not embedded again by the same model.
By hand, any instant or several: `SDR_TEST_FAKE_NOW=2026-12-01T14:00:00Z pytest tests/`.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import EMBEDDINGS_ENV, FAKE_NOW_ENV, ROOT, save_embeddings

TIME_SENSITIVE = ["tests/test_meeting_flow.py", "tests/test_booking.py", "tests/test_scoring.py",
                  "tests/test_slack_handoff.py"]
AWKWARD_INSTANTS = ["2026-12-01T03:30:00Z", "2026-12-01T10:00:00Z", "2027-03-28T01:30:00Z"]   # nobody, only Tom, London DST


@pytest.fixture
def embeddings(make_sdr, tmp_path):
    """This process's embeddings of the sample content and the intent examples (embedded here once
    for the whole suite), saved for the subprocess."""
    sdr = make_sdr()
    sdr.intent_model.get()
    path = tmp_path / "embeddings.npz"
    save_embeddings(sdr.kb.embedder, path)
    return path


@pytest.mark.any_hour
def test_time_sensitive_tests_pass_with_the_wall_clock_moved(embeddings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env[FAKE_NOW_ENV] = ",".join(AWKWARD_INSTANTS)
    env[EMBEDDINGS_ENV] = str(embeddings)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TIME_SENSITIVE],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"with the wall clock at {env[FAKE_NOW_ENV]}:\n{tail}"
    assert "passed" in tail and "failed" not in tail, tail
