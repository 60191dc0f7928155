"""Scoring rules, daily caps, decay, the sum invariant, thresholds and the one handoff."""
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.playbook import PlaybookError, load_playbook
from bot.scoring import decayed_engagement, engagement_change, fit_changes, stage_for
from bot.store import OutboxEntry, ScoreEvent

PB = load_playbook()
T0 = datetime(2026, 11, 2, 9, 0, 0)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "playbook.yaml"
    p.write_text(text)
    return p


def test_issue_schema_is_accepted(tmp_path):
    pb = load_playbook(write(tmp_path, """
thresholds: {mql: 25, sql: 50}
engagement: {pricing_page_view: 5, webinar_attended: 10, roi_calculator_used: 15, demo_requested: 30, email_open: 1, email_click: 3}
fit:
  - {field: seniority, in: [c_level, vp], points: 20}
  - {field: company_size, gte: 200, points: 15}
"""))
    assert pb.thresholds.sql == 50 and pb.engagement["email_click"].points == 3 and len(pb.fit) == 2


@pytest.mark.parametrize("yaml_text,key", [
    ("thresholds: {mql: 25, sql: fifty}", "thresholds.sql"),
    ("thresholds: {mql: 60, sql: 50}", "thresholds"),
    ("fit:\n  - {field: seniority, inn: [vp], points: 20}", "fit.0.inn"),
    ("fit:\n  - {field: shoe_size, gte: 10, points: 5}", "fit.0.field"),
    ("fit:\n  - {field: seniority, points: 5}", "fit.0"),
    ("engagement: {webinar_attended: lots}", "engagement.webinar_attended"),
    ("engagement: {email_open: {points: 1, daily_cap: -3}}", "engagement.email_open.daily_cap"),
    ("decay: {half_life_days: 0}", "decay.half_life_days"),
    ("treshold: {sql: 10}", "treshold"),
])
def test_invalid_playbook_names_the_key_and_the_file(tmp_path, yaml_text, key):
    path = write(tmp_path, yaml_text)
    with pytest.raises(PlaybookError) as e:
        load_playbook(path)
    assert str(path) in str(e.value) and key in str(e.value)


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(PlaybookError, match="not valid YAML"):
        load_playbook(write(tmp_path, "fit: [\n"))
    with pytest.raises(PlaybookError, match="not found"):
        load_playbook(tmp_path / "nope.yaml")


def test_fit_rules_give_points_with_reasons_and_take_them_back():
    changes, applied = fit_changes(PB, {"seniority": "vp", "company_size": 450}, {})
    pts = {c.rule: c.points for c in changes}
    assert sum(pts.values()) == 35
    assert any("seniority is vp" in c.reason for c in changes)
    assert any("company size is 450" in c.reason for c in changes)
    # The visitor corrects themselves: the vp points go, the manager points come.
    changes2, applied2 = fit_changes(PB, {"seniority": "manager", "company_size": 450}, applied)
    assert sorted(c.points for c in changes2) == [-20, 6]
    assert any("no longer applies" in c.reason for c in changes2)
    assert fit_changes(PB, {"seniority": "manager", "company_size": 450}, applied2)[0] == []


def test_student_is_minus_fifty():
    changes, _ = fit_changes(PB, {"seniority": "student"}, {})
    assert [c.points for c in changes] == [-50]


def test_daily_cap():
    assert engagement_change(PB, "email_open", 0).points == 1
    assert engagement_change(PB, "email_open", 3) is None
    partial = engagement_change(PB, "pricing_page_view", 7)
    assert partial.points == 3 and "daily cap" in partial.reason
    assert engagement_change(PB, "unsubscribe", 0).points == -25   # negative events are never capped


def test_decay_halves_positive_engagement_only():
    events = [(10.0, T0), (-10.0, T0)]
    assert decayed_engagement(PB, events, T0) == 0
    assert decayed_engagement(PB, events, T0 + timedelta(days=30)) == pytest.approx(5 - 10)


def test_stage_moves_forward_only():
    assert stage_for(PB, 10, "new", engaged=True, disqualified=False, human=False) == "engaged"
    assert stage_for(PB, 30, "engaged", engaged=True, disqualified=False, human=False) == "mql"
    assert stage_for(PB, 55, "mql", engaged=True, disqualified=False, human=False) == "sql"
    assert stage_for(PB, 20, "sql", engaged=True, disqualified=False, human=False) == "sql"
    assert stage_for(PB, 90, "sql", engaged=True, disqualified=True, human=False) == "disqualified"
    assert stage_for(PB, 10, "engaged", engaged=True, disqualified=False, human=True) == "human"


def _sum_events(sdr, lead_id):
    with sdr.store.session() as s:
        return s.scalar(select(func.coalesce(func.sum(ScoreEvent.points), 0.0)).where(ScoreEvent.lead_id == lead_id))


def _handoffs(sdr, lead_id):
    with sdr.store.session() as s:
        return s.scalar(select(func.count()).select_from(OutboxEntry).where(
            OutboxEntry.lead_id == lead_id, OutboxEntry.kind == "handoff"))


def test_events_add_up_to_the_score_including_after_decay(make_sdr):
    sdr = make_sdr(load_knowledge=False)
    r = sdr.record_event("webinar_attended", email="pat@northwind.example", at=T0)
    lead_id = r["lead"]["id"]
    for day in range(5):
        sdr.record_event("email_open", lead_id=lead_id, at=T0 + timedelta(days=day, hours=1))
        sdr.record_event("email_open", lead_id=lead_id, at=T0 + timedelta(days=day, hours=2))
    sdr.record_event("email_bounced", lead_id=lead_id, at=T0 + timedelta(days=6))
    for when in (T0 + timedelta(days=10), T0 + timedelta(days=45), T0 + timedelta(days=400)):
        r = sdr.rescore(lead_id, at=when)
        assert _sum_events(sdr, lead_id) == pytest.approx(r["lead"]["score"], abs=0.051)
        detail = sdr.lead_detail(lead_id)
        assert sum(e["points"] for e in detail["score_events"]) == pytest.approx(detail["score"], abs=0.1)
    # After 400 days the positive engagement is almost gone, the bounce stays.
    assert r["lead"]["engagement_score"] == pytest.approx(-10, abs=0.2)
    assert any(e["kind"] == "decay" for e in sdr.lead_detail(lead_id)["score_events"])


def test_same_day_cap_through_events(make_sdr):
    sdr = make_sdr(load_knowledge=False)
    lead = sdr.record_event("email_open", email="cap@northwind.example", at=T0)["lead"]
    for i in range(5):
        r = sdr.record_event("email_open", lead_id=lead["id"], at=T0 + timedelta(minutes=i + 1))
    assert r["lead"]["engagement_score"] == 3            # capped at 3 a day
    r = sdr.record_event("email_open", lead_id=lead["id"], at=T0 + timedelta(days=1))
    assert r["score_changes"][0]["points"] == 1           # a new day, a new cap


def test_crossing_sql_hands_off_once_and_a_dip_does_not_repeat_it(make_sdr):
    sdr = make_sdr(load_knowledge=False)
    lead = sdr.record_event("demo_requested", email="vp@bigco.example", at=T0)["lead"]
    r = sdr.record_event("roi_calculator_used", lead_id=lead["id"], at=T0)
    assert r["lead"]["score"] == 45 and r["lead"]["stage"] == "mql" and _handoffs(sdr, lead["id"]) == 0
    r = sdr.record_event("webinar_attended", lead_id=lead["id"], at=T0)
    assert r["lead"]["stage"] == "sql" and [a["type"] for a in r["actions"]] == ["handoff"]
    assert _handoffs(sdr, lead["id"]) == 1
    r = sdr.record_event("unsubscribe", lead_id=lead["id"], at=T0 + timedelta(hours=1))
    assert r["lead"]["score"] < 50
    r = sdr.record_event("webinar_attended", lead_id=lead["id"], at=T0 + timedelta(hours=2))
    r = sdr.record_event("pricing_page_view", lead_id=lead["id"], at=T0 + timedelta(hours=3))
    r = sdr.record_event("roi_calculator_used", lead_id=lead["id"], at=T0 + timedelta(hours=3))
    assert r["lead"]["score"] >= 50 and r["actions"] == []
    assert _handoffs(sdr, lead["id"]) == 1


def test_unknown_event_type_is_refused(make_sdr):
    from bot.turn import InputError
    sdr = make_sdr(load_knowledge=False)
    with pytest.raises(InputError, match="not in the playbook"):
        sdr.record_event("tiktok_like", email="x@y.example")
