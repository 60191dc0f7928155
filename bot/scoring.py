"""Lead scoring: fit from what we know, engagement from what they do, decay over time.

The rules are pure functions of the playbook and the lead's state returning the score changes;
`engage`, `rescore`, `restage` and `score_message` record them in the caller's session. Every change is a ScoreChange with a rule and a reason; the stored events of a lead always add up
to its score (fit events + engagement events + decay events).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import func, select

from .playbook import FitRule, Playbook
from .store import Activity, ScoreEvent


@dataclass
class ScoreChange:
    kind: str       # fit | engagement | decay
    rule: str
    points: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": self.rule, "points": round(self.points, 2), "reason": self.reason}


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value >= 10000:
        return f"{value:,}"
    return str(value)


def _fit_reason(rule: FitRule, value: Any) -> str:
    what = f"{rule.field.replace('_', ' ')} is {_show(value)}"
    return f"{rule.reason}: {what}" if rule.reason else f"{what} ({rule.describe()})"


def fit_changes(playbook: Playbook, fields: dict[str, Any], applied: dict[str, float]) -> tuple[list[ScoreChange], dict[str, float]]:
    """Compare the fit rules that match now with those applied before; return deltas and the new set."""
    changes: list[ScoreChange] = []
    now_applied: dict[str, float] = {}
    rules = {r.id: r for r in playbook.fit}
    for rule_id, rule in rules.items():
        value = fields.get(rule.field)
        matches = rule.matches(value)
        before = applied.get(rule_id)
        if matches:
            now_applied[rule_id] = rule.points
            if before is None:
                changes.append(ScoreChange("fit", rule_id, rule.points, _fit_reason(rule, value)))
            elif before != rule.points:
                changes.append(ScoreChange("fit", rule_id, rule.points - before,
                                           f"playbook changed the points for '{rule.describe()}' from {before:g} to {rule.points:g}"))
        elif before is not None:
            shown = _show(value) if value not in (None, "") else "unknown"
            changes.append(ScoreChange("fit", rule_id, -before,
                                       f"no longer applies ({rule.describe()}): {rule.field.replace('_', ' ')} is now {shown}"))
    for rule_id, before in applied.items():
        if rule_id not in rules:
            changes.append(ScoreChange("fit", rule_id, -before, "rule removed from the playbook"))
    return changes, now_applied


def engagement_change(playbook: Playbook, event_type: str, awarded_today: float, properties: dict | None = None) -> ScoreChange | None:
    """Points for one engagement event, respecting the per-type daily cap. None when capped to zero."""
    rule = playbook.engagement[event_type]
    points = rule.points
    label = event_type.replace("_", " ")
    detail = ""
    if properties:
        for key in ("reason", "title", "url", "page", "name"):
            if properties.get(key):
                detail = f" ({str(properties[key])[:80]})"
                break
    if rule.daily_cap is not None and points > 0:
        room = rule.daily_cap - awarded_today
        if room <= 0:
            return None
        if points > room:
            return ScoreChange("engagement", f"engagement.{event_type}", room,
                               f"{label}{detail}: {room:g} of {points:g} points, daily cap of {rule.daily_cap:g} reached")
    sign = "+" if points >= 0 else ""
    return ScoreChange("engagement", f"engagement.{event_type}", points, f"{label}{detail} ({sign}{points:g})")


def decayed_engagement(playbook: Playbook, events: Iterable[tuple[float, datetime]], now: datetime) -> float:
    """What the engagement is worth now: positive points halve every half-life; negative ones stay."""
    hl = playbook.decay.half_life_days
    total = 0.0
    for points, at in events:
        if points > 0 and hl:
            age_days = max(0.0, (now - at).total_seconds() / 86400.0)
            total += points * 0.5 ** (age_days / hl)
        else:
            total += points
    return total


def decay_change(playbook: Playbook, engagement_events: list[tuple[float, datetime]], current_total: float,
                 now: datetime, min_step: float = 0.05) -> ScoreChange | None:
    """The decay event that brings the recorded engagement total to its decayed value, if it moved."""
    if not playbook.decay.half_life_days or not engagement_events:
        return None
    target = decayed_engagement(playbook, engagement_events, now)
    delta = target - current_total
    if abs(delta) < min_step:
        return None
    return ScoreChange("decay", "decay.half_life", delta,
                       f"engagement fades by half every {playbook.decay.half_life_days:g} days")


def stage_for(playbook: Playbook, score: float, previous: str, *, engaged: bool, disqualified: bool,
              human: bool) -> str:
    """The lifecycle stage. It only moves forward (new → engaged → mql → sql → meeting_booked);
    disqualified overrides; a visitor who asked for a person is `human` until they qualify."""
    if disqualified:
        return "disqualified"
    order = ["new", "engaged", "mql", "sql", "meeting_booked"]
    level = "new"
    if engaged:
        level = "engaged"
    if score >= playbook.thresholds.mql:
        level = "mql"
    if score >= playbook.thresholds.sql:
        level = "sql"
    prev = previous if previous in order else ("engaged" if previous in ("human", "disqualified") else "new")
    best = max(level, prev, key=order.index)
    if human and order.index(best) < order.index("sql"):
        return "human"
    return best


# ---------------------------------------------------------------------------------------------
# Recording score changes on a lead (inside the caller's transaction)


def engage(s: Any, playbook: Playbook, lead: Any, event_type: str, properties: dict[str, Any],
           now: datetime) -> ScoreChange | None:
    """Record one engagement event on `lead`: an Activity row always, a ScoreEvent when it earns
    points (the per-type daily cap counts what was awarded on `now`'s UTC day). `s` is an open
    SQLAlchemy session; nothing is committed here."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    awarded = float(s.scalar(select(func.coalesce(func.sum(ScoreEvent.points), 0.0)).where(
        ScoreEvent.lead_id == lead.id, ScoreEvent.rule == f"engagement.{event_type}",
        ScoreEvent.at >= day_start, ScoreEvent.at < day_start + timedelta(days=1))) or 0.0)
    change = engagement_change(playbook, event_type, awarded, properties)
    s.add(Activity(lead_id=lead.id, type=event_type, properties=properties,
                   points_awarded=change.points if change else 0.0, at=now))
    if change:
        s.add(ScoreEvent(lead_id=lead.id, kind=change.kind, rule=change.rule, points=change.points,
                         reason=change.reason, at=now))
        s.flush()
    return change


def rescore(s: Any, playbook: Playbook, lead: Any, now: datetime) -> list[ScoreChange]:
    """Record fit deltas and decay as score events, then set the lead's fit, engagement and total
    score to the sums of its events (so the events always add up to the score)."""
    changes, applied = fit_changes(playbook, dict(lead.fields or {}), dict(lead.fit_rules or {}))
    lead.fit_rules = applied
    for c in changes:
        s.add(ScoreEvent(lead_id=lead.id, kind=c.kind, rule=c.rule, points=c.points, reason=c.reason, at=now))
    s.flush()
    rows = s.execute(select(ScoreEvent.kind, ScoreEvent.points, ScoreEvent.at).where(ScoreEvent.lead_id == lead.id)).all()
    eng = [(p, at) for kind, p, at in rows if kind == "engagement"]
    current = sum(p for kind, p, _ in rows if kind in ("engagement", "decay"))
    d = decay_change(playbook, eng, current, now)
    if d:
        s.add(ScoreEvent(lead_id=lead.id, kind=d.kind, rule=d.rule, points=d.points, reason=d.reason, at=now))
        changes.append(d)
        current += d.points
    lead.fit_score = sum(p for kind, p, _ in rows if kind == "fit")
    lead.engagement_score = current
    other = sum(p for kind, p, _ in rows if kind not in ("fit", "engagement", "decay"))   # e.g. a rep's verdict
    lead.score = lead.fit_score + lead.engagement_score + other
    return changes


def restage(playbook: Playbook, lead: Any, engaged: bool) -> None:
    """Set the lead's stage (and settle its disqualification reason) from its score and flags."""
    disq = None
    seniority = (lead.fields or {}).get("seniority")
    if seniority in playbook.disqualify.seniority:
        disq = "student"
    elif lead.disqualified_reason == "not_a_fit":
        disq = "not_a_fit"
    elif lead.disqualified_reason in ("job_seeker", "competitor"):
        disq = lead.disqualified_reason if (lead.disqualified_reason != "job_seeker" or playbook.disqualify.job_seekers) else None
    lead.disqualified_reason = disq
    lead.stage = stage_for(playbook, lead.score, lead.stage, engaged=engaged, disqualified=disq is not None,
                           human=lead.human_requested_at is not None)


_REOPENING = {"book", "human"}   # a new explicit request reopens a conversation the visitor closed


def _earns_nothing(playbook: Playbook, lead: Any, intents: set[str]) -> bool:
    """A lead that said stop (now, or before without asking anew) or is disqualified — a student,
    a job seeker, a competitor — earns no engagement points from chat."""
    reopened = bool(intents & _REOPENING) and "unsubscribe" not in intents
    if "unsubscribe" in intents or (lead.unsubscribed and not reopened):
        return True
    seniority = (lead.fields or {}).get("seniority")
    return (seniority in playbook.disqualify.seniority or "competitor" in intents
            or ("job_seeker" in intents and playbook.disqualify.job_seekers)
            or lead.disqualified_reason in ("job_seeker", "competitor", "not_a_fit"))


def score_message(s: Any, playbook: Playbook, lead: Any, intents: set[str], topics: set[str], now: datetime,
                  injection: bool = False, channel: str = "web", channel_events: tuple[str, ...] = ()) -> list[ScoreChange]:
    """The score step of a turn: engagement for the message (a chat message — or, on another
    channel, the events it carries: `contact_sales` for a form, `email_reply` — a pricing question,
    the first demo request), an opt-out once (`opted_out`), then fit and decay. An injection earns
    nothing; neither does a lead that opted out or is disqualified."""
    changes: list[ScoreChange] = []
    source = "chat" if channel == "web" else channel
    if not injection:
        events: list[tuple[str, dict[str, Any]]] = []
        if not _earns_nothing(playbook, lead, intents):
            if channel == "web" or not channel_events:
                events.append(("chat_message", {"source": source}))
            events += [(ev, {"source": source}) for ev in channel_events if ev != "demo_requested"]
            if "pricing" in topics:
                events.append(("pricing_question", {"source": source}))
            if ("book" in intents or "demo_requested" in channel_events) and not s.scalar(
                    select(func.count()).select_from(Activity).where(
                    Activity.lead_id == lead.id, Activity.type == "demo_requested")):
                events.append(("demo_requested", {"source": source}))
        if "unsubscribe" in intents and not lead.unsubscribed:   # once per opt-out, however often they repeat it
            rule = "opted_out" if "opted_out" in playbook.engagement else "unsubscribe"
            where = {"chat": "in chat", "email": "by email", "form": "on a form"}.get(source, f"on {source}")
            events.append((rule, {"source": source, "reason": f"asked {where} to stop: no more questions or follow-ups"}))
        for ev, props in events:
            if ev in playbook.engagement:
                change = engage(s, playbook, lead, ev, props, now)
                if change:
                    changes.append(change)
    return changes + rescore(s, playbook, lead, now)
