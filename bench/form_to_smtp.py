"""Speed-to-lead: a signed form fill → its first touch accepted by a local SMTP server.

    .venv/bin/python bench/form_to_smtp.py [--n 200] [--rate 5]

Real parts end to end: the Flask app (the generic form webhook, signed as a site's backend signs
it), the store, the outbox worker in a thread (woken when a fill is stored), the deterministic
brain, and an aiosmtpd server on a free loopback port. Each fill is a different prospect (name,
company, size, industry, question). Prints, from one run:

- the webhook's answer time (the provider waits for this; goal p95 ≤ 100 ms),
- webhook → SMTP server accepted the first touch (goal p95 ≤ 2 s),
- beside them, the chat turn's latency on the same SDR (POST /api/chat, same questions).

Percentiles over the whole run; timings on a shared 2-core machine are noisy, so compare the
figures of one run with each other rather than across runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-form-secret-0123456789"
INDUSTRIES = ["healthcare", "logistics", "manufacturing", "saas", "retail", "financial services"]
TITLES = ["VP of Sales", "Head of RevOps", "Sales Director", "CRO", "Sales Ops Manager", "Account Executive"]
QUESTIONS = ["Do you integrate with Salesforce?", "How much does it cost?", "Is it SOC 2 compliant?",
             "How long does onboarding take?", "Our forecasts are always off, can you help?", "Do you support HubSpot?"]


def pct(values: list[float], p: float) -> float:
    from evals.metrics import percentile
    return percentile(values, p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="form fills to send (default 200)")
    ap.add_argument("--rate", type=float, default=5.0, help="fills per second (default 5)")
    args = ap.parse_args()

    from aiosmtpd.controller import Controller
    from tqdm import tqdm

    from bot.settings import Settings
    from integrations.forms.generic_form import sign_generic
    from integrations.wiring import build_outbox_worker, build_sdr, build_web_app

    arrived: dict[str, float] = {}
    lock = threading.Lock()

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
            with lock:
                for rcpt in envelope.rcpt_tos:
                    arrived.setdefault(rcpt.lower(), time.perf_counter())
            return "250 OK"

    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    smtp.start()
    data_dir = Path(tempfile.mkdtemp(prefix="sdr-bench-form-"))
    settings = Settings.from_env(data_dir=str(data_dir))
    settings.form_secret = SECRET  # type: ignore[assignment]
    settings.smtp_url = f"smtp://127.0.0.1:{port}"
    sdr = build_sdr(settings)
    print(f"loading the sample content into {data_dir} ...", flush=True)
    sdr.kb.ingest([ROOT / "knowledge" / "sample"], progress=True)
    sdr.warm()
    app = build_web_app(sdr, settings)
    worker, _ = build_outbox_worker(sdr, settings)
    worker.start(poll_s=0.5)
    client = app.test_client()

    ack_ms: list[float] = []
    sent_at: dict[str, float] = {}
    gap = 1.0 / args.rate
    for i in tqdm(range(args.n), desc="form fills", unit="fill"):
        email = f"prospect{i}@company{i}.example"
        body = json.dumps({"email": email, "name": f"Alex Example{i}", "company": f"Company {i}",
                           "job_title": TITLES[i % len(TITLES)], "company_size": str(20 + 37 * i % 900),
                           "industry": INDUSTRIES[i % len(INDUSTRIES)], "message": QUESTIONS[i % len(QUESTIONS)],
                           "event_id": f"bench-{i}"}).encode()
        t0 = time.perf_counter()
        r = client.post("/webhooks/forms/generic", data=body, content_type="application/json",
                        headers={"X-SDR-Signature": sign_generic(SECRET, body, int(sdr.clock().timestamp()))})
        ack_ms.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 202, r.get_json()
        sent_at[email] = t0
        time.sleep(max(0.0, gap - (time.perf_counter() - t0)))
    deadline = time.perf_counter() + 120
    while len(arrived) < args.n and time.perf_counter() < deadline:
        time.sleep(0.05)
    worker.stop()
    smtp.stop()
    lead_s = [arrived[e] - t for e, t in sent_at.items() if e in arrived]

    chat_ms: list[float] = []
    for i in range(min(args.n, 100)):
        t0 = time.perf_counter()
        r = client.post("/api/chat", json={"message": QUESTIONS[i % len(QUESTIONS)] + f" We are {30 + i} people."})
        chat_ms.append((time.perf_counter() - t0) * 1000)

    print(f"\n{args.n} form fills at {args.rate:g}/s; {len(lead_s)} first touches arrived "
          f"({args.n - len(lead_s)} missing)")
    print(f"  webhook answer (ms)          p50 {pct(ack_ms, 50):7.1f}   p95 {pct(ack_ms, 95):7.1f}   "
          f"p99 {pct(ack_ms, 99):7.1f}   (goal p95 ≤ 100 ms)")
    if lead_s:
        print(f"  webhook → SMTP accepted (s)  p50 {pct(lead_s, 50):7.2f}   p95 {pct(lead_s, 95):7.2f}   "
              f"p99 {pct(lead_s, 99):7.2f}   max {max(lead_s):.2f}   (goal p95 ≤ 2 s)")
    print(f"  chat turn, same SDR (ms)     p50 {pct(chat_ms, 50):7.1f}   p95 {pct(chat_ms, 95):7.1f}   "
          f"mean {statistics.mean(chat_ms):.1f}")
    print(f"  speed-to-lead p50 / chat turn p50: {pct(lead_s, 50) * 1000 / max(pct(chat_ms, 50), 1e-9):.1f}x")
    return 0 if len(lead_s) == args.n else 1


if __name__ == "__main__":
    raise SystemExit(main())
