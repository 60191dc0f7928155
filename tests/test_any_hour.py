"""The tests that touch slots, working hours, rep assignment, decay and dates pass whatever the wall
clock says (issue 8, item 9).

They run on injected clocks (conftest: `clock`, `make_sdr`; fixed instants in the tests). This
proves it: the time-sensitive files run again in subprocesses with the wall clock moved (with
time-machine, SDR_TEST_FAKE_NOW) to three instants chosen to be awkward:

- Tue 1 Dec 2026 03:30 UTC: a weekday night, neither rep (New York 09-17, London 09-17:30) at work;
- Tue 1 Dec 2026 10:00 UTC: only Tom (London) at work;
- Sun 28 Mar 2027 01:30 UTC: a weekend, and the hour Europe/London springs forward to summer time.

Every test runs once per instant (SDR_TEST_FAKE_NOW lists all three). The subprocesses run at the
same time, each on a share of the tests (this process only waits): the files but the Slack one in
one, the Slack tests — mostly waiting on leases, retries and a killed worker — split between two.
Each starts from the vectors this process embedded (the sample content, the intent examples;
conftest: save_embeddings), so the same texts are not embedded again by the same model.
By hand, any instant or several: `SDR_TEST_FAKE_NOW=2026-12-01T14:00:00Z pytest tests/`.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from conftest import EMBEDDINGS_ENV, FAKE_NOW_ENV, ROOT, save_embeddings

TIME_SENSITIVE = ["tests/test_meeting_flow.py", "tests/test_booking.py", "tests/test_scoring.py",
                  "tests/test_slack_handoff.py"]
SPLIT = "tests/test_slack_handoff.py"   # its tests alternate between two of the subprocesses
AWKWARD_INSTANTS = ["2026-12-01T03:30:00Z", "2026-12-01T10:00:00Z", "2027-03-28T01:30:00Z"]   # nobody, only Tom, London DST


def names_of_tests(path: str) -> list[str]:
    """The names of a test file's tests (module-level test functions and Test classes), in order."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return [n.name for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test")
            or isinstance(n, ast.ClassDef) and n.name.startswith("Test")]


def runs() -> list[list[str]]:
    """What each subprocess runs: together, every test of every time-sensitive file, each once.
    (Only the first run has test_booking.py: its PostgreSQL tests share one database.)"""
    split = [f"{SPLIT}::{name}" for name in names_of_tests(SPLIT)]
    return [[f for f in TIME_SENSITIVE if f != SPLIT], split[0::2], split[1::2]]


def test_the_runs_cover_every_time_sensitive_test_once() -> None:
    every = [f for f in TIME_SENSITIVE if f != SPLIT] + [f"{SPLIT}::{name}" for name in names_of_tests(SPLIT)]
    assert sorted(t for run in runs() for t in run) == sorted(every) and all(runs())
    assert len(names_of_tests(SPLIT)) >= 20


@pytest.fixture
def embeddings(make_sdr, tmp_path):
    """This process's embeddings of the sample content and the intent examples (embedded here once
    for the whole suite), saved for the subprocesses."""
    sdr = make_sdr()
    sdr.intent_model.get()
    path = tmp_path / "embeddings.npz"
    save_embeddings(sdr.kb.embedder, path)
    return path


@pytest.mark.any_hour
def test_time_sensitive_tests_pass_with_the_wall_clock_moved(embeddings, tmp_path) -> None:
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env[FAKE_NOW_ENV] = ",".join(AWKWARD_INSTANTS)
    env[EMBEDDINGS_ENV] = str(embeddings)
    procs, logs = [], [tmp_path / f"run{i}.log" for i in range(len(runs()))]
    try:
        for run, log in zip(runs(), logs):
            with open(log, "w") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                               f"--basetemp={log.with_suffix('')}", *run],
                                              cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 600
        for p in procs:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for run, p, log in zip(runs(), procs, logs):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        assert p.returncode == 0, f"at {env[FAKE_NOW_ENV]}, {len(run)} test(s) from {run[0]}:\n{tail}"
        assert "passed" in tail and "failed" not in tail, tail
