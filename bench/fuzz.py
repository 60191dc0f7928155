"""The long fuzz run (issue 9 item 7): tests/test_web_fuzz.py with more examples per test — every
route of the web app (chat and events API, /slack/*, sign-in and sign-out, team pages) — then the
requests per route and the status histogram. Exit status 1 when any answer was a 5xx or a test
failed, else 0.

    .venv/bin/python bench/fuzz.py                  # 400 examples a test: over 10,000 requests
    .venv/bin/python bench/fuzz.py --examples 1000 --json fuzz.json

The suite runs the same file with SDR_FUZZ_EXAMPLES=150 (its default). Nothing leaves this machine
(tests/conftest.py's network guard; Slack is a local fake).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Exit status: 1 when any response was >= 500 or a test failed, else 0.")
    ap.add_argument("--examples", type=int, default=400, help="hypothesis examples per test (SDR_FUZZ_EXAMPLES; default 400)")
    ap.add_argument("--json", metavar="PATH", help="also write the per-route status counts here (JSON)")
    ap.add_argument("-k", metavar="EXPR", help="only the tests matching this pytest -k expression")
    ap.add_argument("--verbose", action="store_true", help="show pytest's output as it runs")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(args.json).resolve() if args.json else Path(tmp) / "fuzz.json"
        env = {**os.environ, "SDR_FUZZ_EXAMPLES": str(args.examples), "SDR_FUZZ_REPORT": str(report)}
        cmd = [sys.executable, "-m", "pytest", "tests/test_web_fuzz.py", "-q", "-p", "no:cacheprovider"]
        if args.k:
            cmd += ["-k", args.k]
        print(f"fuzzing: {args.examples} examples a test ({' '.join(cmd[2:])})", flush=True)
        started = time.monotonic()
        proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, text=True,
                              stdout=None if args.verbose else subprocess.PIPE, stderr=subprocess.STDOUT)
        took = time.monotonic() - started
        if not report.exists():
            print(proc.stdout or "", end="")
            print("no report was written (did the module's fixture start?)", file=sys.stderr)
            return 1
        seen: dict[str, dict[str, int]] = json.loads(report.read_text())

    statuses: collections.Counter = collections.Counter()
    width = max(len(r) for r in seen) if seen else 10
    print(f"\n{'route':<{width}}  {'requests':>8}  statuses")
    for route in sorted(seen, key=lambda r: (r.split(" ", 1)[1], r)):
        counts = {int(k): v for k, v in seen[route].items()}
        statuses.update(counts)
        hist = " ".join(f"{code}:{n}" for code, n in sorted(counts.items()))
        print(f"{route:<{width}}  {sum(counts.values()):>8}  {hist}")
    total = sum(statuses.values())
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    print(f"\n{total} requests in {took:.0f} s ({args.examples} examples a test)")
    print("status histogram: " + " ".join(f"{code}:{n}" for code, n in sorted(statuses.items())))
    print(f"5xx: {server_errors}")
    if server_errors:
        for route, counts in sorted(seen.items()):
            bad = {k: v for k, v in counts.items() if int(k) >= 500}
            if bad:
                print(f"  {route}: {bad}")
    tail = (proc.stdout or "").strip().splitlines()[-1:] if not args.verbose else []
    print(f"pytest: {'passed' if proc.returncode == 0 else 'FAILED'}{' — ' + tail[0] if tail else ''}")
    if proc.returncode != 0 and not args.verbose:
        print(proc.stdout[-6000:])
    return 1 if server_errors or proc.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
