"""Nurture sequence workers: due steps handled per second by 1 worker and by several at once, and
proof that running them side by side sends every step exactly once.

    .venv/bin/python bench/sequence_workers.py                     # SQLite only, ~1-2 minutes on 2 cores
    .venv/bin/python bench/sequence_workers.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
    SDR_TEST_DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/sequence_workers.py --leads 1000

What it does, once per database (SQLite in a temp data dir; PostgreSQL too when --postgres or
SDR_TEST_DATABASE_URL gives a URL) and once per worker count (1, then --workers):

1. a fresh database (a new SQLite file; on PostgreSQL a new schema `bench_<random>`, selected with
   `?options=-csearch_path=...` and dropped afterwards, so no other data is ever touched);
2. --leads leads with an email, stage "engaged", enrolled at a fixed instant NOW by
   bot.sequences.enroll(..., "form_fill", NOW) in the default playbook's sequences, with `limits:`
   that never move a step (no quiet hours, no weekend rule, a huge weekly cap); each lead then has
   exactly one due step, the first one (`after: 1d`), due at NOW+1d+1m;
3. the workers: separate processes (multiprocessing "spawn"), each with its own SDR and Store on the
   same database and its own worker_id, started together behind a barrier once their content store
   and embedding model are loaded; each calls SequenceRunner.run_once(NOW+1d+1m, limit=--limit) until
   a call claims nothing and no due step is left unleased (a call that claimed nothing while due
   steps were free lost a race for the same rows: counted in the "empty" column, then retried);
4. the check, read from the database afterwards: outbox entries per idempotency key (> 1 is a
   duplicate), `sequence_steps` rows sent vs outbox emails keyed `sequence:` (must be equal), emails
   per lead (> 1 is a duplicate: each lead had one due step), steps left `scheduled`.

Printed: steps/s (every outcome counts as handled: sent, skipped, lost, ...; wall time from the
barrier to the last worker done), per-step latency (run_step alone) and per-claim latency p50/p95,
the empty claims, steps handled by each worker, the ratio N workers / 1 worker, the outcome counts,
and the duplicate check. The sample content is ingested once into the temp data dir.

Timings on a shared 2-core machine are noisy: compare the figures of one run with each other, not
across runs; with 2 cores, 2 workers can at best double the rate and usually do less (SQLite has
one writer at a time). No assertion on time. Exit code 1 only when a duplicate (or an email
missing for a sent step) is found; 2 when a worker process died without reporting.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "knowledge" / "sample"
NOW = datetime(2026, 1, 13, 15, 0)              # a Tuesday, naive UTC, as the store keeps time
RUN_AT = NOW + timedelta(days=1, minutes=1)      # the first step (`after: 1d`) is due
INDUSTRIES = ["healthcare", "logistics", "manufacturing", "saas", "retail", "financial_services", "education"]
TITLES = ["VP of Sales", "Head of RevOps", "Sales Director", "CRO", "Sales Ops Manager", "CFO", "CEO"]


def pct(values: list[float], p: float) -> float:
    from evals.metrics import percentile
    return percentile(values, p)


# ---------------------------------------------------------------------------------------------
# set-up: the playbook, the data dir, one fresh database per run


def write_playbook(data_dir: Path) -> Path:
    """The default playbook with `limits:` that never move a step."""
    import yaml

    from bot.playbook import DEFAULT_PLAYBOOK, load_playbook

    data = yaml.safe_load(DEFAULT_PLAYBOOK.read_text(encoding="utf-8"))
    data["limits"] = {**(data.get("limits") or {}), "quiet_hours": None, "skip_weekends": False,
                      "emails_per_lead_per_week": 1_000_000}
    path = data_dir / "bench-playbook.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    pb = load_playbook(path)   # validates
    if not pb.sequences:
        raise SystemExit("the default playbook has no `sequences:`: nothing to benchmark")
    return path


def settings_for(data_dir: Path, playbook: Path, url: str) -> Any:
    from bot.settings import Settings
    return Settings.from_env(data_dir=str(data_dir), playbook_path=str(playbook), database_url=url)


class Database:
    """One fresh database for one run: a new SQLite file, or a new PostgreSQL schema (dropped by
    `drop`)."""

    def __init__(self, kind: str, data_dir: Path, base_url: str | None, tag: str):
        self.kind, self.schema = kind, None
        if kind == "sqlite":
            self.url = f"sqlite:///{data_dir / f'bench-{tag}.db'}"
            return
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        self.schema = f"bench_{secrets.token_hex(6)}"
        self.base_url = base_url
        eng = create_engine(base_url, future=True)
        with eng.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        eng.dispose()
        u = make_url(base_url)
        self.url = u.update_query_dict({"options": f"-csearch_path={self.schema}"}).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.schema is None:
            return
        from sqlalchemy import create_engine, text
        eng = create_engine(self.base_url, future=True)
        with eng.begin() as c:
            c.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        eng.dispose()


def seed(url: str, playbook_path: Path, n: int) -> int:
    """`n` leads with an email, enrolled at NOW on a form fill. Returns the steps due at RUN_AT."""
    from sqlalchemy import func, select

    from bot.playbook import load_playbook
    from bot.sequences import enroll
    from bot.store import Lead, SequenceStepRun, Store, new_id

    pb = load_playbook(playbook_path)
    store = Store(url)
    try:
        for start in range(0, n, 100):
            with store.session() as s:
                for i in range(start, min(n, start + 100)):
                    email = f"bench{i}@company{i}.example"
                    lead = Lead(id=new_id("lead"), email=email, stage="engaged", score=10.0,
                                fields={"email": email, "name": f"Alex Example{i}", "company": f"Company {i}",
                                        "industry": INDUSTRIES[i % len(INDUSTRIES)],
                                        "job_title": TITLES[i % len(TITLES)]},
                                field_sources={"email": {"extractor": "form", "verified": True}},   # as a form fill's
                                fit_rules={}, created_at=NOW, updated_at=NOW)
                    s.add(lead)
                    s.flush()
                    if not enroll(s, pb, lead, "form_fill", NOW):
                        raise SystemExit(f"lead {i} was not enrolled: does a sequence enrol on form_fill "
                                         "with stage 'engaged'?")
        with store.session() as s:
            return int(s.scalar(select(func.count()).select_from(SequenceStepRun).where(
                SequenceStepRun.status == "scheduled", SequenceStepRun.due_at <= RUN_AT)) or 0)
    finally:
        store.dispose()


def check(url: str) -> dict[str, Any]:
    """What the database says after a run."""
    from sqlalchemy import func, select

    from bot.store import OutboxEntry, SequenceStepRun, Store

    store = Store(url)
    try:
        with store.session() as s:
            dup_keys = s.execute(select(OutboxEntry.idempotency_key, func.count()).group_by(OutboxEntry.idempotency_key)
                                 .having(func.count() > 1)).all()
            seq_email = (OutboxEntry.kind == "email") & OutboxEntry.idempotency_key.like("sequence:%")
            emails = int(s.scalar(select(func.count()).select_from(OutboxEntry).where(seq_email)) or 0)
            per_lead = s.execute(select(OutboxEntry.lead_id, func.count()).where(seq_email)
                                 .group_by(OutboxEntry.lead_id).having(func.count() > 1)).all()
            steps = dict(s.execute(select(SequenceStepRun.status, func.count()).group_by(SequenceStepRun.status)).all())
            left_due = int(s.scalar(select(func.count()).select_from(SequenceStepRun).where(
                SequenceStepRun.status == "scheduled", SequenceStepRun.due_at <= RUN_AT)) or 0)
            by_worker = dict(s.execute(select(SequenceStepRun.locked_by, func.count())
                                       .where(SequenceStepRun.locked_by.is_not(None))
                                       .group_by(SequenceStepRun.locked_by)).all())
        return {"dup_keys": [(k, c) for k, c in dup_keys], "emails": emails, "dup_leads": len(per_lead),
                "steps": steps, "sent": int(steps.get("sent", 0)), "scheduled": int(steps.get("scheduled", 0)),
                "left_due": left_due, "still_locked": by_worker}
    finally:
        store.dispose()


# ---------------------------------------------------------------------------------------------
# one worker process


class _Errors(logging.Handler):
    """Keeps warnings and errors (with their tracebacks) the worker's code logs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        if len(self.records) < 50:
            self.records.append(text)


def free_due(store: Any) -> int:
    """Steps due at RUN_AT that no worker holds a lease on."""
    from sqlalchemy import func, or_, select

    from bot.store import SequenceStepRun
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(SequenceStepRun).where(
            SequenceStepRun.status == "scheduled", SequenceStepRun.due_at <= RUN_AT,
            or_(SequenceStepRun.locked_until.is_(None), SequenceStepRun.locked_until < RUN_AT))) or 0)


def worker(index: int, data_dir: str, playbook_path: str, url: str, limit: int, barrier: Any, out: Any) -> None:
    """One SequenceRunner in its own process: load, wait at the barrier, run_once until idle."""
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    report: dict[str, Any] = {"index": index, "pid": os.getpid(), "steps": [], "claims": [], "errors": errors.records,
                              "raised": [], "empty_with_work": 0}
    try:
        from bot.policy import lead_context
        from bot.sequences import SequenceRunner
        from bot.turn import SDR

        settings = settings_for(Path(data_dir), Path(playbook_path), url)
        sdr = SDR(settings, clock=lambda: RUN_AT)
        steps: list[tuple[float, str]] = report["steps"]
        claims: list[float] = report["claims"]

        class TimedRunner(SequenceRunner):
            def claim(self, now: datetime, limit: int = 20) -> list[int]:
                t0 = time.monotonic()
                got = super().claim(now, limit)
                claims.append((time.monotonic() - t0) * 1000)
                return got

            def run_step(self, step_row_id: int, now: datetime) -> Any:
                t0 = time.monotonic()
                res = None
                try:
                    res = super().run_step(step_row_id, now)
                    return res
                finally:
                    steps.append(((time.monotonic() - t0) * 1000, res.status if res is not None else "failed"))

        runner = TimedRunner(sdr, worker_id=f"bench-w{index}-{os.getpid()}")
        # warm up before the clock starts: the content store, the embedding model, the templates,
        # the connection pool (NOW: nothing is due yet, so this claims nothing)
        pb = sdr.playbook
        if sdr.kb is not None:
            sdr.kb.recommend(lead_context(pb, {"industry": "healthcare", "job_title": "CRO"}, "engaged"), "",
                             stage="awareness")
        runner.run_once(NOW, limit)
        claims.clear()
        barrier.wait(timeout=600)
        report["started"] = time.monotonic()
        while True:
            try:
                counts = runner.run_once(RUN_AT, limit)
            except Exception:  # noqa: BLE001 - a claim that raised (a lock error, ...) is reported, then retried
                report["raised"].append(traceback.format_exc())
                if len(report["raised"]) >= 20:
                    break
                continue
            if any(k != "enrolled" for k in counts):
                continue
            # this call claimed nothing: done, unless due steps nobody holds are left (the claim lost
            # a race for the same rows to another worker, which SQLite's claim can return as "none")
            if free_due(sdr.store) == 0:
                break
            report["empty_with_work"] += 1
            if report["empty_with_work"] >= 10_000:
                break
        report["ended"] = time.monotonic()
        sdr.store.dispose()
    except Exception:  # noqa: BLE001 - the main process prints it
        report["raised"].append(traceback.format_exc())
        barrier.abort()   # the others (and the main process) stop waiting for this one
    out.put(report)


# ---------------------------------------------------------------------------------------------
# one run: a fresh database, n workers


def run(kind: str, n_workers: int, args: argparse.Namespace, data_dir: Path, playbook: Path,
        base_url: str | None) -> dict[str, Any]:
    db = Database(kind, data_dir, base_url, f"{kind}-{n_workers}w-{secrets.token_hex(3)}")
    try:
        t0 = time.monotonic()
        due = seed(db.url, playbook, args.leads)
        seeded_s = time.monotonic() - t0
        ctx = mp.get_context("spawn")
        barrier, out = ctx.Barrier(n_workers + 1), ctx.Queue()
        procs = [ctx.Process(target=worker, args=(i, str(data_dir), str(playbook), db.url, args.limit, barrier, out),
                             daemon=True) for i in range(n_workers)]
        for p in procs:
            p.start()
        try:
            barrier.wait(timeout=600)
        except Exception as e:  # noqa: BLE001 - BrokenBarrierError: a worker failed while loading; its report says why
            print(f"  the workers did not all start ({type(e).__name__}): see the problems below", flush=True)
        reports = []
        for _ in procs:
            try:
                reports.append(out.get(timeout=args.timeout))
            except Exception:  # noqa: BLE001 - queue.Empty: a worker hung or died
                break
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        result = check(db.url)
        result.update(kind=kind, workers=n_workers, due=due, seeded_s=seeded_s, reports=reports,
                      dead=[p.exitcode for p in procs if p.exitcode not in (0, None)] + [None] * (n_workers - len(reports)))
        return result
    finally:
        db.drop()


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    reps = [x for x in r["reports"] if "started" in x and "ended" in x]
    steps = [s for x in r["reports"] for s in x["steps"]]
    wall = (max(x["ended"] for x in reps) - min(x["started"] for x in reps)) if reps else 0.0
    outcomes: dict[str, int] = {}
    for _, status in steps:
        outcomes[status] = outcomes.get(status, 0) + 1
    return {"wall": wall, "handled": len(steps), "rate": len(steps) / wall if wall > 0 else 0.0,
            "step_ms": [ms for ms, _ in steps], "claim_ms": [ms for x in r["reports"] for ms in x["claims"]],
            "outcomes": outcomes, "per_worker": [len(x["steps"]) for x in r["reports"]],
            "empty": sum(x.get("empty_with_work", 0) for x in r["reports"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=400,
                    help="leads enrolled per run, each with one due step (default 400)")
    ap.add_argument("--workers", type=int, default=2,
                    help="worker processes of the parallel run, compared with 1 worker (default 2)")
    ap.add_argument("--limit", type=int, default=20, help="steps claimed per run_once call (default 20)")
    ap.add_argument("--postgres", metavar="URL", default=os.environ.get("SDR_TEST_DATABASE_URL") or None,
                    help="also run on this PostgreSQL database, in a schema of its own that is dropped afterwards "
                         "(default: $SDR_TEST_DATABASE_URL; e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite runs")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for a run's workers (default 600)")
    args = ap.parse_args()
    if args.workers < 1 or args.leads < 1 or args.limit < 1:
        ap.error("--leads, --workers and --limit must be at least 1")
    if args.no_sqlite and not args.postgres:
        ap.error("nothing to run: --no-sqlite and no --postgres URL (nor SDR_TEST_DATABASE_URL)")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

    data_dir = Path(tempfile.mkdtemp(prefix="sdr-bench-seq-"))
    try:
        return bench(args, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def bench(args: argparse.Namespace, data_dir: Path) -> int:
    from bot.turn import SDR

    kinds = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.postgres else [])
    playbook = write_playbook(data_dir)
    print(f"loading the sample content into {data_dir} ...", flush=True)
    sdr = SDR(settings_for(data_dir, playbook, f"sqlite:///{data_dir / 'sdr.db'}"))
    if sdr.kb is not None and sdr.kb.count() == 0:
        sdr.kb.ingest([SAMPLE], progress=False)
    sdr.store.dispose()

    counts = [1] if args.workers == 1 else [1, args.workers]
    results: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for kind in kinds:
        for n in counts:
            print(f"{kind}: {args.leads} leads, {n} worker(s) ...", flush=True)
            r = run(kind, n, args, data_dir, playbook, args.postgres if kind == "postgresql" else None)
            results.append((r, summarize(r)))

    print(f"\n{args.leads} leads enrolled at {NOW:%Y-%m-%d %H:%M} UTC, run at {RUN_AT:%Y-%m-%d %H:%M} UTC, "
          f"run_once(limit={args.limit}) per call")
    print(f"  {'database':<11}{'workers':>8}{'due':>6}{'handled':>9}{'wall s':>8}{'steps/s':>9}"
          f"{'step p50':>10}{'p95 ms':>8}{'claim p50':>11}{'p95 ms':>8}{'empty':>7}   per worker   outcomes")
    for r, m in results:
        print(f"  {r['kind']:<11}{r['workers']:>8}{r['due']:>6}{m['handled']:>9}{m['wall']:>8.2f}{m['rate']:>9.1f}"
              f"{pct(m['step_ms'], 50):>10.1f}{pct(m['step_ms'], 95):>8.1f}"
              f"{pct(m['claim_ms'], 50):>11.1f}{pct(m['claim_ms'], 95):>8.1f}{m['empty']:>7}   "
              f"{'/'.join(map(str, m['per_worker'])):<12} "
              f"{', '.join(f'{k} {v}' for k, v in sorted(m['outcomes'].items()))}")
    for kind in kinds:
        by_n = {r["workers"]: m for r, m in results if r["kind"] == kind}
        if len(by_n) == 2 and by_n[1]["rate"] > 0:
            print(f"  {kind}: {args.workers} workers / 1 worker = {by_n[args.workers]['rate'] / by_n[1]['rate']:.2f}x steps/s")

    print("\n  duplicate check (from the database after each run)")
    print(f"  {'database':<11}{'workers':>8}{'keys >1':>9}{'sent rows':>11}{'emails':>8}{'leads >1 email':>16}"
          f"{'left due':>10}   step rows by status")
    duplicates, dead = False, False
    for r, _ in results:
        bad = bool(r["dup_keys"]) or r["sent"] != r["emails"] or r["dup_leads"] > 0
        duplicates |= bad
        print(f"  {r['kind']:<11}{r['workers']:>8}{len(r['dup_keys']):>9}{r['sent']:>11}{r['emails']:>8}"
              f"{r['dup_leads']:>16}{r['left_due']:>10}   "
              f"{', '.join(f'{k} {v}' for k, v in sorted(r['steps'].items()))}{'   <-- DUPLICATES' if bad else ''}")
        for key, c in r["dup_keys"][:5]:
            print(f"      {key}: {c} outbox entries")
        if r["still_locked"]:
            print(f"      rows still leased (locked_by set): {r['still_locked']}")
    problems = []
    for r, _ in results:
        if r["dead"]:
            dead = True
            problems.append(f"{r['kind']} {r['workers']}w: worker process(es) died or hung (exit codes {r['dead']})")
        for x in r["reports"]:
            for tb in x["raised"]:
                problems.append(f"{r['kind']} {r['workers']}w worker {x['index']}: raised\n{tb}")
            for rec in x["errors"]:
                problems.append(f"{r['kind']} {r['workers']}w worker {x['index']}: logged {rec}")
    if problems:
        print(f"\n  {len(problems)} problem(s) (first 10):")
        for p in problems[:10]:
            print("  " + p.rstrip().replace("\n", "\n    "))
    else:
        print("\n  no worker raised or logged a warning or error")
    return 1 if duplicates else 2 if dead else 0


if __name__ == "__main__":
    raise SystemExit(main())
