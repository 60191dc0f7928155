"""What one turn does to the database: transactions, commits, rollbacks, SQL statements and writes
per turn of a six-message conversation, counted on the engine (SQLAlchemy events), in-process.

    .venv/bin/python bench/turn_statements.py            # the deterministic brain
    .venv/bin/python bench/turn_statements.py --model    # a stand-in brain that is not the rule brain:
                                                         # the path a model takes (rehearsal + one commit)
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/turn_statements.py   # another version's code

A read-only session's commit writes nothing; "commits" counts them too. No timing: counts only.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["hi there", "how much does it cost?", "I'm the VP of Sales at Northwind, we're about 450 people",
         "we need better forecasting this quarter", "do you integrate with HubSpot?", "thanks!"]
KINDS = ["transactions", "commits", "rollbacks", "statements", "writes"]


class StandIn:
    """Words and reading by the rule brain, but not the rule brain itself (as a model brain is)."""
    name = "stand-in"

    def __init__(self, rules):  # noqa: ANN001
        self.rules = rules

    def understand(self, *a, **kw):  # noqa: ANN002, ANN003
        return self.rules.understand(*a, **kw)

    def compose(self, *a, **kw):  # noqa: ANN002, ANN003
        return self.rules.compose(*a, **kw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="store_true", help="the model path (a brain that is not the rule brain)")
    args = ap.parse_args()
    from sqlalchemy import event

    from bot.settings import Settings
    from bot.turn import SDR, Inbound

    sdr = SDR(Settings.from_env(data_dir=tempfile.mkdtemp(prefix="sdr-stmts-")))
    sdr.kb.ingest([ROOT / "knowledge" / "sample"], progress=False)
    if args.model:
        sdr.brain = StandIn(sdr.rules)
    log: list[str] = []
    eng = sdr.store.engine
    event.listen(eng, "begin", lambda c: log.append("begin"))
    event.listen(eng, "commit", lambda c: log.append("commit"))
    event.listen(eng, "rollback", lambda c: log.append("rollback"))
    event.listen(eng, "before_cursor_execute", lambda c, cur, st, p, ctx, m: log.append(
        "write" if re.match(r"\s*(INSERT|UPDATE|DELETE)", st, re.I) else "read"))
    sdr.handle(Inbound(text="warm up"))
    sid, rows = None, []
    for text in TEXTS:
        del log[:]
        sid = sdr.handle(Inbound(text=text, session_id=sid)).session_id
        rows.append((log.count("begin"), log.count("commit"), log.count("rollback"),
                     log.count("read") + log.count("write"), log.count("write")))
    print(f"code: {sys.modules['bot'].__file__.rsplit('/bot/', 1)[0]} · brain: {'stand-in (model path)' if args.model else 'rules'}")
    for text, row in zip(TEXTS, rows):
        print(f"{text[:40]:<42} " + " ".join(f"{k} {v}" for k, v in zip(KINDS, row)))
    print("mean per turn: " + " ".join(f"{k} {statistics.fmean(r[i] for r in rows):.1f}" for i, k in enumerate(KINDS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
