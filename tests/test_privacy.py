"""Export and forget a person (GDPR/CCPA): everything held about them, then nothing — not in any
table, not in any file of the data dir — and a suppression entry that does not reveal the address."""
from __future__ import annotations

import json

from click.testing import CliRunner

from bot.privacy import is_suppressed
from bot.turn import Inbound
from integrations.cli import main

EMAIL = "dana.forget@acmehealth.example"


def known_lead(sdr):
    r = sdr.handle(Inbound(text="Hi, I'm Dana, VP of Sales at Acme Health, a 450 person hospital network. "
                                "We need better forecasting this quarter. How much does it cost?"))
    sdr.handle(Inbound(text=f"reach me at {EMAIL}", session_id=r.session_id))
    import logging
    logging.getLogger("sdr.test").warning("a log line that names %s", EMAIL)   # logs hold it too
    return r.lead["id"]


def files_holding(data_dir, needle: str) -> list[str]:
    return [str(p) for p in data_dir.rglob("*") if p.is_file() and needle.encode() in p.read_bytes().lower()]


def test_export_then_forget_leaves_no_trace_in_the_data_dir(sdr, data_dir):
    from bot.logs import setup_logging
    setup_logging(sdr.settings)
    lead_id = known_lead(sdr)
    r = CliRunner().invoke(main, ["lead", "export", EMAIL])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["lead"]["id"] == lead_id and data["messages"] and data["score_events"] and data["outbox"]
    assert files_holding(data_dir, EMAIL)                                  # it is there before
    r = CliRunner().invoke(main, ["lead", "forget", EMAIL, "--yes"])
    assert r.exit_code == 0 and "rows deleted" in r.output, r.output
    assert files_holding(data_dir, EMAIL) == []                            # and nowhere after: db, WAL, logs
    assert is_suppressed(sdr.store, EMAIL, data_dir) and not is_suppressed(sdr.store, "other@x.example", data_dir)
    assert CliRunner().invoke(main, ["lead", "export", EMAIL]).exit_code == 1   # nothing held any more
    assert CliRunner().invoke(main, ["lead", lead_id]).exit_code == 1


def test_the_privacy_api_needs_the_api_token(sdr):
    from integrations.web.app import create_app
    known_lead(sdr)
    c = create_app(sdr).test_client()
    assert c.get(f"/api/privacy/export?email={EMAIL}").status_code == 403      # no token configured: never open
    sdr.settings.admin_token = "t0ken-for-tests"
    assert c.get(f"/api/privacy/export?email={EMAIL}").status_code == 401
    auth = {"Authorization": "Bearer t0ken-for-tests"}
    r = c.get(f"/api/privacy/export?email={EMAIL}", headers=auth)
    assert r.status_code == 200 and r.get_json()["email"] == EMAIL
    assert c.post("/api/privacy/forget", json={"email": "nope"}, headers=auth).status_code == 400
    r = c.post("/api/privacy/forget", json={"email": EMAIL}, headers=auth)
    assert r.status_code == 200 and r.get_json()["found"] is True and r.get_json()["deleted"]["leads"] == 1
    assert c.get(f"/api/privacy/export?email={EMAIL}", headers=auth).status_code == 404
