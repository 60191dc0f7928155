"""Nurture sequences: the right content at the right pace until the lead is ready, and not one
email more.

A sequence (playbook `sequences:`) enrols leads on a trigger (a form fill, a chat that ended below
SQL) and sends its steps by email: time-based steps in order (`after: 3d` from the previous one),
action-based steps when the lead does something (`when: {event: pricing_page_view}`) or goes quiet
(`when: {quiet_for: 14d}`). Everything is rows in the store — the enrolment (`Enrollment`) and each
step with its due time (`SequenceStepRun`) — so due steps survive restarts. A worker claims due
steps with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL, a conditional UPDATE everywhere), and a
step is done at most once: its row is unique per enrolment and step, its email is an outbox entry
with the idempotency key `sequence:<enrolment>:<step>`, and the row is marked sent in the same
transaction that queues the email, only while the worker still holds the lease.

Before a step is sent, in this order:
1. exits — a reply by chat or email, SQL, a booked meeting, unsubscribe, bounce, a request for a
   person, a handoff to a rep or a disqualification ends every sequence of the lead at once (`end_sequences` is also
   called eagerly by the turn, events, unsubscribes and bounces); a paused lead waits;
2. quiet — a `quiet_for` step waits until the lead has really been quiet that long;
3. courtesy — never in quiet hours or on a weekend in the lead's time zone, never more than
   `limits.emails_per_lead_per_week` in any 7 days across all sequences and channels (first
   touches and replies to the lead's own emails are exempt): the step moves to the next allowed
   time, with the reason kept on the row;
4. content — the recommender's piece for the lead's industry and persona at the step's stage,
   never one the lead already received by any channel; nothing fits → the step is skipped with the
   reason (no filler mail);
5. over-nurturing — after `exit.unengaged_after` emails with no open, click or reply, the
   sequence ends with that reason instead of sending another.

The words come from the model brain when one is configured (`write_follow_up`, checked by the
grounding guard) and from prompts/follow_up.yaml otherwise; every email asks at most one question
and carries the unsubscribe headers and footer (bot/emails.queue_email).
"""
from __future__ import annotations

import logging
import os
import re
import socket
import threading
import zlib
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Any, Callable
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from .brain import BrainUnavailable, load_prompt
from .emails import EMAIL_EXEMPT_FROM_CAPS, email_words, lead_token, queue_email
from .guard import evidence_text, ungrounded_claims
from .playbook import Limits, Playbook, Sequence, SequenceStep
from .outbox import claim_rows
from .policy import lead_context
from .store import (Activity, ContentSent, Conversation, EmailStatus, Enrollment, Lead, Meeting, Message, NurturePause,
                    OutboxEntry, SequenceStepRun, Store)

log = logging.getLogger("sdr.sequences")
UTC = timezone.utc
WEEK = timedelta(days=7)
ENGAGED_EVENTS = ("email_open", "email_click", "email_reply")   # a lead who does one of these is not over-nurtured


# ---------------------------------------------------------------------------------------------
# courtesy: quiet hours, weekends, the weekly cap


def _hhmm(text: str) -> time:
    h, m = text.split(":")
    return time(int(h), int(m))


def lead_zone(s: Session, lead: Lead, limits: Limits) -> ZoneInfo:
    """The lead's time zone: the one a form or the chat widget gave, else `limits.timezone`."""
    candidates = [(lead.fields or {}).get("timezone")]
    state = s.scalars(select(Conversation.state).where(Conversation.lead_id == lead.id)
                      .order_by(Conversation.updated_at.desc()).limit(1)).first()
    if isinstance(state, dict) and state.get("visitor_tz") not in (None, "", "UTC"):
        candidates.append(state.get("visitor_tz"))
    for name in candidates:
        if name:
            try:
                return ZoneInfo(str(name))
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo(limits.timezone)


def next_allowed(at: datetime, zone: ZoneInfo, limits: Limits) -> tuple[datetime, str | None]:
    """The first instant at or after `at` (naive UTC) outside quiet hours and weekends in `zone`,
    as naive UTC, and why it moved (None when `at` itself is allowed). Local times are built in the
    zone's own rules, so 08:00 stays 08:00 across a daylight-saving change."""
    t = at.replace(tzinfo=UTC)
    quiet = (_hhmm(limits.quiet_hours.split("-")[0]), _hhmm(limits.quiet_hours.split("-")[1])) \
        if limits.quiet_hours else None
    why: str | None = None
    for _ in range(20):
        local = t.astimezone(zone)
        if limits.skip_weekends and local.weekday() >= 5:
            day = local.date() + timedelta(days=7 - local.weekday())
            t = datetime.combine(day, quiet[1] if quiet else time(0), tzinfo=zone).astimezone(UTC)
            why = why or f"weekend in {zone.key} ({local:%a %H:%M} local)"
            continue
        if quiet is not None:
            start, end = quiet
            now_t = local.time()
            inside = (start <= now_t or now_t < end) if start > end else (start <= now_t < end)
            if inside:
                day = local.date() + timedelta(days=1) if (start > end and now_t >= start) else local.date()
                t = datetime.combine(day, end, tzinfo=zone).astimezone(UTC)
                why = why or f"quiet hours {limits.quiet_hours} in {zone.key} ({local:%a %H:%M} local)"
                continue
        break
    return t.replace(tzinfo=None), why


def capped_emails(s: Session, lead_id: str, now: datetime) -> list[datetime]:
    """When the emails that count against the weekly cap were queued for this lead in the 7 days
    before `now` (every email but first touches and replies to the lead's own emails; skipped and
    dead-lettered ones were never sent and do not count), oldest first."""
    rows = s.execute(select(OutboxEntry.created_at, OutboxEntry.payload, OutboxEntry.status)
                     .where(OutboxEntry.lead_id == lead_id, OutboxEntry.kind == "email",
                            OutboxEntry.created_at > now - WEEK)).all()
    return sorted(at for at, payload, status in rows
                  if status not in ("skipped", "dead") and (payload or {}).get("kind") not in EMAIL_EXEMPT_FROM_CAPS)


def allowed_at(s: Session, lead: Lead, limits: Limits, now: datetime) -> tuple[datetime, str | None]:
    """When the next capped email may go to `lead` (naive UTC, >= now) and why it must wait (None:
    now). The weekly cap first (the oldest email of the window must leave it), then quiet hours and
    weekends; repeated until both hold."""
    zone, when, why = lead_zone(s, lead, limits), now, None
    for _ in range(10):
        sent = [at for at in capped_emails(s, lead.id, when) if at > when - WEEK]
        if limits.emails_per_lead_per_week == 0:
            return datetime.max, "the playbook allows no nurture emails (emails_per_lead_per_week: 0)"
        if len(sent) >= limits.emails_per_lead_per_week:
            when = sent[len(sent) - limits.emails_per_lead_per_week] + WEEK + timedelta(seconds=1)
            why = why or f"weekly cap of {limits.emails_per_lead_per_week} emails reached"
            continue
        if sent and when < sent[-1] + limits.min_gap:
            when = sent[-1] + limits.min_gap
            why = why or f"at most one nurture email every {_fmt_td(limits.min_gap)}"
            continue
        moved, quiet_why = next_allowed(when, zone, limits)
        if moved == when:
            return when, why
        when, why = moved, why or quiet_why
    return when, why


# ---------------------------------------------------------------------------------------------
# enrolment, action triggers, exits, pauses


def _time_steps(seq: Sequence) -> list[SequenceStep]:
    return [st for st in seq.steps if st.after is not None]


def _schedule(s: Session, enr: Enrollment, step: SequenceStep, due: datetime, paused: bool) -> SequenceStepRun | None:
    """A step row due at `due` (once per enrolment and step; None when it exists)."""
    if s.scalars(select(SequenceStepRun.id).where(SequenceStepRun.enrollment_id == enr.id,
                                                  SequenceStepRun.step_id == step.id)).first() is not None:
        return None
    row = SequenceStepRun(enrollment_id=enr.id, lead_id=enr.lead_id, step_id=step.id or "",
                          status="paused" if paused else "scheduled", scheduled_for=due, due_at=due)
    s.add(row)
    s.flush()
    return row


def enroll(s: Session, playbook: Playbook, lead: Lead, trigger: str, now: datetime) -> list[Enrollment]:
    """Enrol `lead` in every sequence whose `enroll.on` has `trigger` and whose `stage_in` has the
    lead's stage, once per sequence ever, when the lead has an email address and no exit condition
    holds. Schedules the first time-based step and every `quiet_for` step. In the caller's
    transaction; returns the new enrolments."""
    out = []
    if not lead.email:
        return out
    for seq in playbook.sequences:
        if trigger in seq.enroll.on and lead.stage in seq.enroll.stage_in:
            enr = enroll_in(s, playbook, lead, seq, trigger, now)
            if enr is not None:
                out.append(enr)
    return out


def why_not_enrolled(lead: Lead) -> str | None:
    """Why this lead's address may not be nurtured, or None. Only an address a channel vouches for
    (a signed form fill, an email the lead sent, a verified widget identity) is emailed: an address
    anyone typed into the chat could be someone else's, and nurture must never mail a stranger."""
    from .leads import email_verified

    if not lead.email:
        return "the lead has no email address"
    if not email_verified(lead):
        return "the lead's email address is unverified (typed in the chat): not nurtured"
    return None


def enroll_in(s: Session, playbook: Playbook, lead: Lead, seq: Sequence, trigger: str, now: datetime) -> Enrollment | None:
    """Enrol `lead` in `seq` now whatever the trigger (None when enrolled before, when the lead has
    no verified address — see `why_not_enrolled` — or when an exit condition holds)."""
    if s.scalars(select(Enrollment.id).where(Enrollment.lead_id == lead.id,
                                             Enrollment.sequence_id == seq.id)).first() is not None:
        return None
    if why_not_enrolled(lead) is not None:
        return None
    if exit_condition(s, playbook, lead, seq, since=None) is not None:
        return None
    paused = s.get(NurturePause, lead.id) is not None
    enr = Enrollment(lead_id=lead.id, sequence_id=seq.id, status="active", trigger=trigger, enrolled_at=now)
    s.add(enr)
    s.flush()
    first = next(iter(_time_steps(seq)), None)
    if first is not None:
        _schedule(s, enr, first, now + first.after, paused)   # type: ignore[operator]
    for st in seq.steps:
        if st.when is not None and st.when.quiet_for is not None:
            _schedule(s, enr, st, now + st.when.quiet_for, paused)
    log.info("lead %s enrolled in sequence %s (%s)", lead.id, seq.id, trigger)
    return enr


def on_event(s: Session, playbook: Playbook, lead: Lead, event_type: str, now: datetime) -> int:
    """The lead did `event_type`: every active enrolment with a step `when: {event: event_type}`
    not done yet gets it due now (once). Returns how many steps were scheduled."""
    n = 0
    paused = s.get(NurturePause, lead.id) is not None
    for enr in s.scalars(select(Enrollment).where(Enrollment.lead_id == lead.id, Enrollment.status == "active")):
        seq = playbook.sequence(enr.sequence_id)
        for st in (seq.steps if seq else []):
            if st.when is not None and st.when.event == event_type and _schedule(s, enr, st, now, paused) is not None:
                n += 1
    return n


def _replied_since(s: Session, lead_id: str, since: datetime) -> bool:
    rows = s.scalars(select(Message.meta).where(Message.lead_id == lead_id, Message.role == "visitor",
                                                Message.at > since)).all()
    return any((m or {}).get("channel") in ("web", "email") and not (m or {}).get("auto_reply") for m in rows)


def exit_condition(s: Session, playbook: Playbook, lead: Lead, seq: Sequence, since: datetime | None,
                   replied: bool = False) -> str | None:
    """The first of the sequence's `exit.on` conditions that holds for `lead` (`since`: the
    enrolment, for "replied"), as a reason a person can read; None when the sequence may go on."""
    conditions = seq.exit.on
    status = s.get(EmailStatus, lead.id)   # the email channel's own record (bot/emails.may_email reads it too)
    checks: list[tuple[str, Callable[[], bool], str]] = [
        ("unsubscribed", lambda: bool(lead.unsubscribed) or (status is not None and status.unsubscribed_at is not None),
         "unsubscribed"),
        ("bounced", lambda: status is not None and status.bounced_at is not None, "the address bounced"),
        ("replied", lambda: replied or (since is not None and _replied_since(s, lead.id, since)), "the lead replied"),
        ("meeting_booked", lambda: lead.stage == "meeting_booked" or s.scalars(select(Meeting.id).where(
            Meeting.lead_id == lead.id, Meeting.status == "booked")).first() is not None,
         "a meeting is booked"),
        ("sql", lambda: lead.stage == "sql" or lead.score >= playbook.thresholds.sql, "the lead reached SQL"),
        ("human", lambda: lead.human_requested_at is not None or lead.stage == "human", "the lead asked for a person"),
        ("handed_off", lambda: lead.handed_off_at is not None, "a rep has the lead (handed off)"),
        ("disqualified", lambda: lead.stage == "disqualified",
         f"the lead is disqualified ({lead.disqualified_reason or 'not a fit'})"),
    ]
    for name, holds, reason in checks:
        if name in conditions and holds():
            return reason
    return None


def end_sequences(s: Session, playbook: Playbook, lead: Lead, now: datetime, *, replied: bool = False) -> list[str]:
    """End every active sequence of `lead` whose exit condition holds now (in the caller's
    transaction): the enrolment is `exited` with the reason and its scheduled steps cancelled, so
    nothing else is sent. Called by the turn (`replied=True` for a chat or email message), by
    events, unsubscribes and bounces, and by the worker before each step. Returns the reasons."""
    reasons = []
    for enr in s.scalars(select(Enrollment).where(Enrollment.lead_id == lead.id, Enrollment.status == "active")).all():
        seq = playbook.sequence(enr.sequence_id)
        reason = "the sequence is no longer in the playbook" if seq is None else \
            exit_condition(s, playbook, lead, seq, enr.enrolled_at, replied=replied)
        if reason is not None:
            _finish(s, enr, "exited", reason, now)
            reasons.append(reason)
    return reasons


def _finish(s: Session, enr: Enrollment, status: str, reason: str, now: datetime) -> None:
    enr.status, enr.end_reason, enr.ended_at = status, reason[:300], now
    s.execute(update(SequenceStepRun).where(SequenceStepRun.enrollment_id == enr.id,
                                            SequenceStepRun.status.in_(("scheduled", "paused")))
              .values(status="cancelled", reason=f"the sequence ended: {reason}"[:300], done_at=now,
                      locked_by=None, locked_until=None))
    log.info("sequence %s of lead %s %s: %s", enr.sequence_id, enr.lead_id, status, reason)


def sequence_gate(s: Session, playbook: Playbook, lead: Lead, enrollment_id: Any, now: datetime) -> str | None:
    """At send time, for a nurture email already queued: None when it may still go; else why not
    (its sequence ended — checked again now, so a reply that came in meanwhile stops it — or the
    lead is paused)."""
    end_sequences(s, playbook, lead, now)
    enr = s.get(Enrollment, enrollment_id) if isinstance(enrollment_id, int) else None
    if enr is None or enr.lead_id != lead.id:
        return "the nurture sequence is gone"
    if enr.status == "exited":   # completed: its last email is this one, still due
        return f"the sequence ended: {enr.end_reason}"
    if s.get(NurturePause, lead.id) is not None:
        return "the lead's sequences are paused"
    return None


def pause(store: Store, lead_id: str, now: datetime, by: str | None = None) -> bool:
    """Stop the lead's sequences until `resume` (scheduled steps wait, new ones are made paused).
    False when there is no such lead."""
    with store.session() as s:
        if s.get(Lead, lead_id) is None:
            return False
        if s.get(NurturePause, lead_id) is None:
            s.add(NurturePause(lead_id=lead_id, paused_at=now, by=(by or "")[:200] or None))
        s.execute(update(SequenceStepRun).where(SequenceStepRun.lead_id == lead_id,
                                                SequenceStepRun.status == "scheduled")
                  .values(status="paused", locked_by=None, locked_until=None))
        _take_back_unsent(s, lead_id)
        return True


def _take_back_unsent(s: Session, lead_id: str) -> None:
    """Nurture emails queued but not sent yet go back with their steps (paused), and their piece is
    no longer counted as sent: after `resume` the step runs again, with nothing lost."""
    for entry in s.scalars(select(OutboxEntry).where(OutboxEntry.lead_id == lead_id, OutboxEntry.kind == "email",
                                                     OutboxEntry.status == "pending")):
        row = s.scalars(select(SequenceStepRun).where(SequenceStepRun.outbox_id == entry.id)).first()
        if row is None or not (entry.payload or {}).get("enrollment_id"):
            continue
        entry.status, entry.last_error = "skipped", "the lead's sequences were paused before it was sent"
        if row.url:
            s.execute(delete(ContentSent).where(ContentSent.lead_id == lead_id, ContentSent.url == row.url,
                                                ContentSent.at == row.done_at))
        enr = s.get(Enrollment, row.enrollment_id)
        if enr is not None and enr.sends > 0:
            enr.sends -= 1
        row.status, row.done_at, row.url, row.outbox_id = "paused", None, None, None
        row.reason = "taken back: paused before its email was sent"


def resume(store: Store, lead_id: str, now: datetime) -> bool:
    """Undo `pause`: paused steps are scheduled again (one already overdue is due now, then subject
    to the usual courtesy). False when there is no such lead."""
    with store.session() as s:
        if s.get(Lead, lead_id) is None:
            return False
        row = s.get(NurturePause, lead_id)
        if row is not None:
            s.delete(row)
        for st in s.scalars(select(SequenceStepRun).where(SequenceStepRun.lead_id == lead_id,
                                                          SequenceStepRun.status == "paused")):
            st.status, st.due_at = "scheduled", max(st.due_at, now)
        return True


def enrol_ended_chats(store: Store, playbook: Playbook, now: datetime, limit: int = 200) -> int:
    """`chat_ended_unqualified`: leads with an email whose chat has been silent for the sequence's
    `enroll.chat_idle` (and ended at most a week ago), below SQL, not enrolled yet. Returns how many
    were enrolled."""
    seqs = [q for q in playbook.sequences if "chat_ended_unqualified" in q.enroll.on]
    if not seqs:
        return 0
    idle = min(q.enroll.chat_idle for q in seqs)
    n = 0
    with store.session() as s:
        enrolled = select(Enrollment.lead_id).where(Enrollment.sequence_id.in_([q.id for q in seqs]))
        quiet = (select(Conversation.lead_id).where(Conversation.channel == "web")
                 .group_by(Conversation.lead_id)
                 .having(and_(func.max(Conversation.updated_at) <= now - idle,
                              func.max(Conversation.updated_at) > now - idle - WEEK)))
        verified = Lead.field_sources["email"]["verified"].as_boolean().is_(True)   # only those are nurtured
        leads = s.scalars(select(Lead).where(Lead.email.is_not(None), verified, Lead.id.in_(quiet),
                                             Lead.id.not_in(enrolled)).limit(limit)).all()
        for lead in leads:
            n += len(enroll(s, playbook, lead, "chat_ended_unqualified", now))
    return n


# ---------------------------------------------------------------------------------------------
# the words of one step


@dataclass
class StepEmail:
    """What one step sends: the email's subject and words (bot/emails.queue_email's `content`)
    and the piece, if any."""
    subject: str
    content: dict[str, Any]
    piece: Any = None
    writer: str = "template"


def _pick(options: Any, key: str) -> Any:
    """One phrasing of a template value, stable per key (a retry writes the same words)."""
    if not isinstance(options, list):
        return options
    return options[zlib.crc32(key.encode()) % len(options)] if options else None


def _need_words(playbook: Playbook, fields: dict[str, Any], default: str) -> str:
    """What the lead needs, in a word or two for a sentence: the playbook's need word as the lead
    wrote it ("our forecasts are off" → "forecasts", "CRM hygiene is a mess" → "crm hygiene"), else
    `default` — never their sentence pasted in, never a word of another language in an English
    email."""
    need = " ".join(str(fields.get("need") or "").split())
    pattern = playbook.lexicon().needs
    m = pattern.search(need) if pattern is not None and need else None
    if m is None or str(fields.get("language") or "en") != "en" or not need[m.start():m.end()].isascii():
        return default
    return need[m.start():m.end()].lower()


_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")


def _snippet(piece: Any) -> str:
    """One or two plain sentences of the piece for an email: no question (the email asks at most
    one), no list markers or table rows, no sentence cut in the middle; "" when none is clean."""
    text = " ".join(str(getattr(piece, "snippet", "") or "").split())
    out = []
    for sentence in _SENTENCE_RE.split(text):
        s = sentence.strip()
        if len(s) < 20 or "?" in s or "|" in s or "=" in s or s[-1] not in ".!" or s[:1] in "-*#" or len(s) > 220:
            continue
        out.append(s)
        if len(" ".join(out)) > 160:
            break
    return " ".join(out)[:300]


def template_words(playbook: Playbook, step: SequenceStep, fields: dict[str, Any], piece: Any, key: str,
                   industry: str | None) -> tuple[str, list[str], str | None]:
    """(subject, paragraphs, question) from prompts/follow_up.yaml `templates:` for this step."""
    prompt = load_prompt("follow_up")
    tpl = prompt["templates"]
    t = tpl["content"].get(step.stage or getattr(piece, "stage", "") or "consideration") or tpl["content"]["consideration"] \
        if step.send == "content" else tpl[step.template]
    snippet = _snippet(piece) if piece is not None else ""
    values = {"need": _need_words(playbook, fields, str(prompt.get("default_need") or "this")),
              "title": getattr(piece, "title", "") if piece is not None else "",
              "snippet": snippet, "company": playbook.company.name,
              "industry_phrase": f" in {industry.replace('_', ' ')}" if industry else "",
              "meeting_minutes": playbook.meeting.length_minutes}
    paragraphs = [str(_pick(p, f"{key}:{i}")).format(**values) for i, p in enumerate(t.get("paragraphs") or [])]
    question = _pick(t.get("question"), f"{key}:q")
    return (str(t.get("subject") or "").format(**values), [p for p in paragraphs if p.strip()],
            str(question).format(**values) if question else None)


# ---------------------------------------------------------------------------------------------
# the runner: claim due steps, run them once


@dataclass
class StepResult:
    status: str          # sent | skipped | moved | waiting | exited | cancelled | lost
    reason: str | None = None
    url: str | None = None
    at: datetime | None = None


@dataclass
class SequenceRunner:
    """Runs due steps for an SDR (its store, playbook, content store, brain, settings and clock).
    Any number of runners, in any number of processes, may run at once: each step is claimed with
    a lease and done once. `run_once(now)` does what is due as of `now` and returns counts by
    outcome; the outbox worker calls it on every loop (integrations/wiring.py)."""
    sdr: Any
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 10000}")
    lease_s: float = 120.0
    on_step: Callable[[SequenceStepRun, StepResult], None] | None = None   # after each step (simulation, tests)
    chat_scan_every: timedelta = timedelta(minutes=1)   # how often ended chats are looked for
    _last_scan: datetime | None = field(default=None, repr=False)

    @property
    def playbook(self) -> Playbook:
        return self.sdr.playbook

    def claim(self, now: datetime, limit: int = 20) -> list[int]:
        """Claim up to `limit` due steps for this runner (a lease of `lease_s`); their ids."""
        due = and_(SequenceStepRun.status == "scheduled", SequenceStepRun.due_at <= now,
                   or_(SequenceStepRun.locked_until.is_(None), SequenceStepRun.locked_until < now))
        until = now + timedelta(seconds=self.lease_s)
        return claim_rows(self.sdr.store, SequenceStepRun, due, (SequenceStepRun.due_at, SequenceStepRun.id), limit,
                          self.worker_id, until)

    def run_once(self, now: datetime | None = None, limit: int = 20) -> dict[str, int]:
        """Enrol chats that ended, then claim and run the steps due as of `now` (default: the
        SDR's clock). Returns {outcome: count}."""
        now = now or self.sdr.clock()
        counts: dict[str, int] = {}
        if self._last_scan is None or not (self._last_scan <= now < self._last_scan + self.chat_scan_every):
            self._last_scan = now
            enrolled = enrol_ended_chats(self.sdr.store, self.playbook, now)
            if enrolled:
                counts["enrolled"] = enrolled
        for step_id in self.claim(now, limit):
            try:
                res = self.run_step(step_id, now)
            except Exception:  # noqa: BLE001 - one bad step never stops the others; the lease ends, it is retried
                log.exception("sequence step %s failed; it is retried when its lease ends", step_id)
                res = StepResult("failed")
            counts[res.status] = counts.get(res.status, 0) + 1
        return counts

    def run_until_idle(self, now: datetime, limit: int = 200) -> dict[str, int]:
        """`run_once` until no step is due as of `now` (`sdr worker --once`): a step moved to a
        later time or waiting is not due any more, so this ends."""
        total: dict[str, int] = {}
        for _ in range(10_000):
            counts = self.run_once(now, limit)
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
            if not any(k != "enrolled" for k in counts):
                break
        return total

    # -- one step ---------------------------------------------------------------------------------

    def _release(self, s: Session, row: SequenceStepRun, **values: Any) -> None:
        for k, v in values.items():
            setattr(row, k, v)
        row.locked_by, row.locked_until = None, None

    def run_step(self, step_row_id: int, now: datetime) -> StepResult:
        """Run one claimed step (see the module docstring for the order of checks)."""
        pb = self.playbook
        with self.sdr.store.session() as s:
            row = s.get(SequenceStepRun, step_row_id)
            if row is not None and row.status == "cancelled":   # an exit or the last word, a moment ago
                return StepResult("cancelled", row.reason)
            if row is None or row.locked_by != self.worker_id or row.status != "scheduled":
                return StepResult("lost", "another worker has it")
            enr, lead = s.get(Enrollment, row.enrollment_id), s.get(Lead, row.lead_id)
            seq = pb.sequence(enr.sequence_id) if enr is not None else None
            step = seq.step(row.step_id) if seq is not None else None
            if enr is None or lead is None or enr.status != "active" or step is None:
                why = "the sequence ended" if enr is not None and enr.status != "active" else "the step is no longer in the playbook"
                self._release(s, row, status="cancelled", reason=why, done_at=now)
                return self._done(row, StepResult("cancelled", why))
            if s.get(NurturePause, lead.id) is not None:
                self._release(s, row, status="paused")
                return self._done(row, StepResult("waiting", "the lead is paused"))
            reasons = end_sequences(s, pb, lead, now)
            if reasons:
                return self._done(row, StepResult("exited", reasons[0]))
            held = self._not_now(s, row, enr, lead, seq, step, now)
            if held is not None:
                return self._done(row, held)
            sent = set(s.scalars(select(ContentSent.url).where(ContentSent.lead_id == lead.id)))
            fields, stage, lead_id, key = dict(lead.fields or {}), lead.stage, lead.id, f"{enr.id}:{step.id}"
            history = [m.payload.get("subject", "") for m in s.scalars(
                select(OutboxEntry).where(OutboxEntry.lead_id == lead.id, OutboxEntry.kind == "email")
                .order_by(OutboxEntry.id.desc()).limit(3))]
        piece = None
        if step.send == "content":
            piece = self._piece(step, fields, stage, sent)
            if piece is None:
                why = (f"no unsent {step.stage or 'any-stage'} {step.type or 'content'} piece fits this lead "
                       f"({len(sent)} piece(s) already sent)")
                log.info("sequence step %s of lead %s skipped: %s", key, lead_id, why)
                return self._commit(step_row_id, seq, step, now, None, skip=why)
        words = self._words(step, fields, stage, piece, key, history)
        return self._commit(step_row_id, seq, step, now, words)

    def _not_now(self, s: Session, row: SequenceStepRun, enr: Enrollment, lead: Lead, seq: Sequence,
                 step: SequenceStep, now: datetime) -> StepResult | None:
        """Why this step does not go now — it waits (the last word after the time-based steps, a lead
        not quiet long enough), moves (quiet hours, weekends, the cap, the gap) or ends the sequence
        (over-nurturing) — with its row updated; None when it goes now."""
        last_word = step.when is not None and step.when.quiet_for is not None   # the polite close
        if last_word:
            timed = s.scalars(select(func.max(SequenceStepRun.due_at)).where(
                SequenceStepRun.enrollment_id == enr.id, SequenceStepRun.status.in_(("scheduled", "paused")),
                SequenceStepRun.step_id.in_([st.id for st in _time_steps(seq)]))).first()
            if timed is not None:   # the last word comes last: after every time-based step
                self._release(s, row, due_at=max(timed, now) + timedelta(minutes=1),
                              reason="waiting: the time-based steps go first")
                return StepResult("waiting", row.reason)
            last = max([enr.enrolled_at] + [t for t in (
                s.scalars(select(func.max(Message.at)).where(Message.lead_id == lead.id, Message.role == "visitor")).first(),
                s.scalars(select(func.max(Activity.at)).where(Activity.lead_id == lead.id)).first()) if t])
            if now < last + step.when.quiet_for:   # type: ignore[union-attr,operator]
                self._release(s, row, due_at=last + step.when.quiet_for,   # type: ignore[union-attr,operator]
                              reason=f"waiting: the lead was active at {last:%Y-%m-%d %H:%M} UTC")
                return StepResult("waiting", row.reason)
        when, why = allowed_at(s, lead, self.playbook.limits, now)
        if when > now:
            self._release(s, row, due_at=when, reason=f"moved: {why}"[:300])
            return StepResult("moved", row.reason, at=when)
        engaged = s.scalars(select(Activity.id).where(Activity.lead_id == lead.id, Activity.at > enr.enrolled_at,
                                                      Activity.type.in_(ENGAGED_EVENTS))).first() is not None
        limit = seq.exit.unengaged_after
        if limit is not None and enr.sends >= limit and not engaged and not last_word:   # the polite close still goes
            reason = f"over-nurturing: {enr.sends} emails with no open, click or reply"
            _finish(s, enr, "exited", reason, now)
            return StepResult("exited", reason)
        return None

    def _piece(self, step: SequenceStep, fields: dict[str, Any], stage: str, sent: set[str]) -> Any:
        kb = self.sdr.kb
        if kb is None:
            return None
        ctx = lead_context(self.playbook, fields, stage)
        types = [step.type] if step.type else None
        return kb.recommend(ctx, str(fields.get("need") or ""), exclude_urls=sent, stage=step.stage, types=types)

    def _words(self, step: SequenceStep, fields: dict[str, Any], stage: str, piece: Any, key: str,
               history: list[str]) -> StepEmail:
        pb = self.playbook
        industry = fields.get("industry") if fields.get("industry") in pb.industries else None
        subject, paragraphs, question = template_words(pb, step, fields, piece, key, industry)
        writer = "template"
        write = getattr(self.sdr.brain, "write_follow_up", None)
        if write is not None:
            goal = (f"send the piece “{piece.title}” and say in one sentence why it fits them" if piece is not None
                    else {"check_in": "check in briefly and offer a short call with the team or an answer by email",
                          "breakup": "say you will stop emailing about this for now and that a reply reopens it"}
                    .get(step.template or "", "follow up briefly"))
            try:
                text = write(goal=goal, fields=fields, piece=piece, history=history, stage=stage)
                evidence = evidence_text(pb, "", fields, [piece] if piece is not None else [])
                problems = ungrounded_claims(text, evidence)
                if problems or text.count("?") > 1 or not text.strip():
                    raise BrainUnavailable("grounding", "; ".join(problems) or "more than one question")
                paragraphs, question, writer = [p.strip() for p in text.split("\n\n") if p.strip()], None, "model"
            except BrainUnavailable as e:
                log.info("sequence step %s: the model's follow-up was not used (%s); template sent", key, e.cause)
        links = [{"title": piece.title, "url": piece.url}] if piece is not None and piece.url else []
        return StepEmail(subject=subject, piece=piece, writer=writer,
                         content={"paragraphs": paragraphs, "links": links, "question": question})

    def _commit(self, step_row_id: int, seq: Sequence, step: SequenceStep, now: datetime, words: StepEmail | None,
                skip: str | None = None) -> StepResult:
        """Mark the step sent (its email queued) or skipped and schedule the next one — one
        transaction, and only while this runner still holds the lease."""
        with self.sdr.store.session() as s:
            # take the row's write lock first and only while the lease is still ours: what follows reads
            # the row as it is now, and another runner that took the step over is never overwritten
            held = s.execute(update(SequenceStepRun).where(SequenceStepRun.id == step_row_id,
                                                           SequenceStepRun.locked_by == self.worker_id,
                                                           SequenceStepRun.status == "scheduled")
                             .values(locked_until=now + timedelta(seconds=self.lease_s)))
            row = s.get(SequenceStepRun, step_row_id) if held.rowcount == 1 else None
            if row is None:
                return StepResult("lost", "the lease ended before the step was done")
            enr, lead = s.get(Enrollment, row.enrollment_id), s.get(Lead, row.lead_id)
            if enr is None or lead is None or enr.status != "active":
                self._release(s, row, status="cancelled", reason="the sequence ended", done_at=now)
                return self._done(row, StepResult("cancelled", "the sequence ended"))
            result = StepResult("skipped", skip) if skip else StepResult("sent", url=words.piece.url if words and words.piece else None)
            if words is not None and not skip:
                settings, pb = self.sdr.settings, self.playbook
                public = (settings.public_url or "http://127.0.0.1:8000").rstrip("/")
                track = lead_token(s, lead.id, now, "track")
                content = email_words(pb, lead, words.content["paragraphs"], links=[
                    {**li, "url": f"{public}/t/c/{track}?u={quote(li['url'], safe='')}"} for li in words.content["links"]],
                    question=words.content["question"])
                # the step row's conditional update is the exactly-once guard; the key also names the claim so a
                # step taken back by a pause (its email never sent) can be sent after `resume`
                entry = queue_email(s, lead, key=f"sequence:{enr.id}:{step.id}:{row.attempts}", subject=words.subject,
                                    now=now,
                                    content={**content, "open_pixel_url": f"{public}/t/o/{track}.gif",
                                             "enrollment_id": enr.id, "sequence": enr.sequence_id, "step": step.id,
                                             "writer": words.writer},
                                    sender=settings.email_from, reply_to_template=settings.email_reply_to,
                                    public_url=public, kind="sequence")
                if words.piece is not None and s.scalars(select(ContentSent.id).where(
                        ContentSent.lead_id == lead.id, ContentSent.url == words.piece.url)).first() is None:
                    s.add(ContentSent(lead_id=lead.id, url=words.piece.url, title=words.piece.title[:500],
                                      type=words.piece.type, at=now))
                enr.sends += 1
                self._release(s, row, status="sent", done_at=now, url=result.url,   # a "moved: …" reason stays
                              outbox_id=entry.id if entry is not None else None)
            else:
                self._release(s, row, status="skipped", done_at=now, reason=(skip or "")[:300])
            self._advance(s, seq, step, enr, now, sent=not skip)
        if not skip and getattr(self.sdr, "on_queued", None) is not None:
            self.sdr.on_queued()
        return self._done(row, result)

    def _advance(self, s: Session, seq: Sequence, step: SequenceStep, enr: Enrollment, now: datetime, sent: bool) -> None:
        """After a step: the next time-based step is scheduled; a `quiet_for` step that was sent is
        the last word (the sequence completes); with nothing left scheduled it completes too."""
        paused = s.get(NurturePause, enr.lead_id) is not None
        if step.when is not None and step.when.quiet_for is not None and sent:
            _finish(s, enr, "completed", f"{step.id} ({step.template or step.send}) was the last word", now)
            return
        timed = _time_steps(seq)
        if step in timed and timed.index(step) + 1 < len(timed):
            nxt = timed[timed.index(step) + 1]
            _schedule(s, enr, nxt, now + nxt.after, paused)   # type: ignore[operator]
            return
        s.flush()
        left = s.scalars(select(SequenceStepRun.id).where(SequenceStepRun.enrollment_id == enr.id,
                                                          SequenceStepRun.status.in_(("scheduled", "paused")))).first()
        if left is None:
            _finish(s, enr, "completed", "every step is done", now)

    def _done(self, row: SequenceStepRun, res: StepResult) -> StepResult:
        if self.on_step is not None:
            self.on_step(row, res)
        return res


# ---------------------------------------------------------------------------------------------
# views


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() + "Z" if dt else None


def enrolments_view(s: Session, playbook: Playbook, lead_id: str) -> dict[str, Any]:
    """The lead's nurture state for the team: paused or not, and each enrolment with its status,
    why it ended, its next step and due time, and every step with what it sent or why it was
    skipped or moved."""
    out = []
    for enr in s.scalars(select(Enrollment).where(Enrollment.lead_id == lead_id).order_by(Enrollment.id)):
        steps = sorted(s.scalars(select(SequenceStepRun).where(SequenceStepRun.enrollment_id == enr.id)).all(),
                       key=lambda st: (st.done_at or st.due_at, st.id))
        nxt = min((st for st in steps if st.status in ("scheduled", "paused")), key=lambda st: st.due_at, default=None)
        out.append({"sequence": enr.sequence_id, "status": enr.status, "trigger": enr.trigger,
                    "enrolled_at": _iso(enr.enrolled_at), "ended_at": _iso(enr.ended_at), "end_reason": enr.end_reason,
                    "emails_sent": enr.sends,
                    "next_step": nxt.step_id if nxt else None, "next_due_at": _iso(nxt.due_at) if nxt else None,
                    "steps": [{"step": st.step_id, "status": st.status, "due_at": _iso(st.due_at),
                               "scheduled_for": _iso(st.scheduled_for), "done_at": _iso(st.done_at), "url": st.url,
                               "reason": st.reason, "outbox_id": st.outbox_id} for st in steps]})
    pause_row = s.get(NurturePause, lead_id)
    return {"paused": pause_row is not None, "paused_at": _iso(pause_row.paused_at) if pause_row else None,
            "enrolments": out}


def sequence_summary(playbook: Playbook, seq: Sequence) -> list[str]:
    """Plain lines describing a sequence's steps (sdr sequences show)."""
    lines = []
    for st in seq.steps:
        if st.after is not None:
            trigger = f"after {_fmt_td(st.after)}"
        elif st.when is not None and st.when.event:
            trigger = f"when the lead does {st.when.event}"
        else:
            trigger = f"when quiet for {_fmt_td(st.when.quiet_for)}"   # type: ignore[union-attr,arg-type]
        what = (f"the best unsent piece ({st.type or 'any type'}, {st.stage or 'any'} stage)" if st.send == "content"
                else f"the {st.template} email")
        lines.append(f"{st.id}: {trigger} → {what}")
    return lines


def _fmt_td(td: timedelta) -> str:
    minutes = int(td.total_seconds() // 60)
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


# ---------------------------------------------------------------------------------------------
# simulation: what a lead would receive, without sending


_LEAD_TABLES = (Lead, Conversation, Message, Activity, ContentSent, OutboxEntry, Meeting, EmailStatus, NurturePause, Enrollment,
                SequenceStepRun)


def _copy_lead(store: Store, copy: Store, lead_id: str) -> None:
    """The lead's rows of every table the scheduler reads, into `copy`. Raises LookupError."""
    with store.session() as src, copy.session() as dst:
        if src.get(Lead, lead_id) is None:
            raise LookupError(lead_id)
        for model in _LEAD_TABLES:
            cols = [c.key for c in model.__mapper__.column_attrs]
            for row in src.scalars(select(model).where(getattr(model, "id" if model is Lead else "lead_id") == lead_id)):
                dst.add(model(**{c: getattr(row, c) for c in cols}))
            dst.flush()


def _dry_enrol(copy: Store, playbook: Playbook, seq: Sequence, lead_id: str, start: datetime) -> tuple[bool, str | None]:
    """In the copy: (was the lead enrolled already, why nothing will be sent — or None)."""
    with copy.session() as s:
        lead = s.get(Lead, lead_id)
        enr = s.scalars(select(Enrollment).where(Enrollment.lead_id == lead_id, Enrollment.sequence_id == seq.id)).first()
        enrolled = enr is not None
        if enr is None:
            enr = enroll_in(s, playbook, lead, seq, "simulation", start)
        if enr is None:
            return enrolled, (why_not_enrolled(lead) or exit_condition(s, playbook, lead, seq, since=None)
                              or "the lead cannot be enrolled")
        if enr.status != "active":
            return enrolled, f"the sequence already ended for this lead: {enr.end_reason}"
        if s.get(NurturePause, lead_id) is not None:
            return enrolled, "the lead's sequences are paused (sdr lead resume ID): nothing is sent until then"
        return enrolled, None


def simulate(sdr: Any, sequence_id: str, lead_id: str, days: float, start: datetime) -> dict[str, Any]:
    """What `lead_id` would receive from sequence `sequence_id` over `days` days from `start`
    (naive UTC) if they stay quiet: the real runner on a copy of the lead's rows in a throwaway
    SQLite database (nothing is sent, nothing changes in the store), the clock jumping from one
    due step to the next. A lead not enrolled yet is enrolled at `start` in the copy. Words come
    from the templates (no model calls). Returns {"lead_id", "sequence", "enrolled", "events":
    [{"at", "step", "url", "skipped"}], "not_simulated": [action steps that wait for an event]}.
    Raises KeyError for an unknown sequence, LookupError for an unknown lead."""
    import shutil
    import tempfile
    from types import SimpleNamespace

    seq = sdr.playbook.sequence(sequence_id)
    if seq is None:
        raise KeyError(sequence_id)
    tmp = tempfile.mkdtemp(prefix="sdr-simulate-")
    copy = Store(f"sqlite:///{tmp}/simulate.db")
    try:
        _copy_lead(sdr.store, copy, lead_id)
        enrolled, note = _dry_enrol(copy, sdr.playbook, seq, lead_id, start)
        events: list[dict[str, Any]] = []
        if note:
            events.append({"at": start.isoformat() + "Z", "step": None, "url": None, "skipped": note})
        shadow = SimpleNamespace(store=copy, playbook=sdr.playbook, kb=sdr.kb, brain=None, settings=sdr.settings,
                                 clock=lambda: start, on_queued=None)
        clock = [start]

        def record(row: SequenceStepRun, res: StepResult) -> None:
            if res.status in ("sent", "skipped", "exited"):
                events.append({"at": clock[0].isoformat() + "Z", "step": row.step_id, "url": res.url,
                               "skipped": None if res.status == "sent" else res.reason})

        runner = SequenceRunner(shadow, worker_id="simulation", on_step=record, chat_scan_every=timedelta(days=3650))
        runner._last_scan = start   # no chat scan in a simulation
        end = start + timedelta(days=days)
        for _ in range(500):
            with copy.session() as s:
                due = s.scalars(select(func.min(SequenceStepRun.due_at)).where(
                    SequenceStepRun.lead_id == lead_id, SequenceStepRun.status == "scheduled")).first()
            if due is None or due > end:
                break
            clock[0] = max(due, start)
            runner.run_once(clock[0])
        waiting = [st.id for st in seq.steps if st.when is not None and st.when.event]
        return {"lead_id": lead_id, "sequence": sequence_id, "enrolled": enrolled, "events": events,
                "not_simulated": [f"{sid}: only if the lead does {seq.step(sid).when.event}" for sid in waiting]}  # type: ignore[union-attr]
    finally:
        copy.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
