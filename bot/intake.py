"""What reaches the SDR besides a chat turn: tracked events, rescoring, lead reads — and (issue 12)
form fills and email replies, which arrive here and run the same turn.

`Intake` is a part of the `SDR` class (bot/turn.py), kept apart so the turn file stays the turn.
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .emails import (email_conversation, email_words, email_status, lead_for_thread, lead_for_token, may_email, queue_email,
                     record_inbound)
from .events import record_event, rescore_lead
from .form_fills import EVENT_WORDS, SUBJECTS, FormLead, first_message, map_fill, read_form
from .extract import extract_email
from .inbound import Inbound, InputError, new_session_id
from .leads import lead_detail
from .outbox import enqueue
from .privacy import is_suppressed
from .scoring import engage, rescore, restage
from .sequences import end_sequences, enroll, pause, resume, sequence_gate
from .store import Conversation, EmailMessage, InboundReceipt, Lead, Message


class Intake:
    """The SDR's entry points other than `handle` (uses its store, playbook and clock)."""

    store: Any
    playbook: Any
    clock: Any
    settings: Any
    handle: Any
    on_queued: Callable[[], None] | None = None   # wakes the outbox worker (set by the composition root)

    def record_event(self, event_type: str, *, lead_id: str | None = None, email: str | None = None,
                     session_id: str | None = None, properties: dict[str, Any] | None = None,
                     at: datetime | None = None) -> dict[str, Any]:
        """Score a tracked event (see bot.events.record_event)."""
        return record_event(self.store, self.playbook, event_type, lead_id=lead_id, email=email,
                            session_id=session_id, properties=properties, now=at or self.clock())

    def rescore(self, lead_id: str, at: datetime | None = None) -> dict[str, Any]:
        """Apply decay (and playbook changes) to one lead now."""
        return rescore_lead(self.store, self.playbook, lead_id, at or self.clock())

    def lead_detail(self, lead_id: str) -> dict[str, Any]:
        return lead_detail(self.store, self.playbook, lead_id)

    def pause_nurture(self, lead_id: str, by: str | None = None) -> bool:
        """Stop the lead's nurture sequences until `resume_nurture` (False: no such lead)."""
        return pause(self.store, lead_id, self.clock(), by)

    def resume_nurture(self, lead_id: str) -> bool:
        """Let the lead's paused sequences go on (False: no such lead)."""
        return resume(self.store, lead_id, self.clock())


    # -- form fills (issue 12): stored at once, worked on after commit ----------------------------

    def receive_form(self, fill: Any) -> dict[str, Any]:
        """Store one verified form fill (`integrations.forms.FormFill`: source, event_id, fields,
        form_name, submitted_at) and queue its turn in the outbox, in one short transaction — the
        webhook answers within milliseconds and the work runs after commit. A repeated delivery (the
        same provider event id, or the same source, email and fields within 24 h) creates nothing
        and sends nothing. Returns {"accepted": True, "duplicate": bool}."""
        lead = map_fill(fill.source, dict(fill.fields), fill.form_name, self.playbook)
        given = (lead.fields.get("email") or "").strip()
        found = extract_email(given) if given else None
        if given and (found is None or found.evidence != given):   # "a@b.example, victim@c.example", "Eve <a@b>"
            raise InputError("bad_form_field", f"email: {lead.fields['email'][:80]!r} is not one email address "
                             "(fix the form's email field; nothing was stored)")
        key = f"form:{fill.source}:{fill.event_id}" if fill.event_id else f"form:{fill.source}:h:{lead.content_hash()}"
        payload = {"fields": dict(fill.fields), "form_name": fill.form_name, "event_id": fill.event_id,
                   "submitted_at": fill.submitted_at.isoformat() if fill.submitted_at else None,
                   "session_id": new_session_id()}   # unguessable: a browser can never continue it
        return self._receive("form", fill.source, key, lead.content_hash(), payload, "form_fill", by_content=True)

    def _receive(self, channel: str, source: str, key: str, content_hash: str, payload: dict[str, Any],
                 kind: str, by_content: bool) -> dict[str, Any]:
        now = self.clock()
        window = now - timedelta(hours=24)
        try:
            with self.store.session() as s:
                old = s.scalars(select(InboundReceipt).where(InboundReceipt.key == key)).first()
                if old is not None and (":h:" not in key or old.at > window):
                    return {"accepted": True, "duplicate": True}
                if by_content and s.scalars(select(InboundReceipt.id).where(
                        InboundReceipt.content_hash == content_hash, InboundReceipt.at > window)).first() is not None:
                    return {"accepted": True, "duplicate": True}   # the same form, same person, twice in a day
                if old is not None:   # the same content again after 24 h: a new submission
                    old.key = f"{key}:{old.id}"
                    s.flush()
                receipt = InboundReceipt(key=key, content_hash=content_hash, channel=channel, source=source,
                                         payload=payload, at=now)
                s.add(receipt)
                s.flush()
                enqueue(s, kind=kind, key=f"{kind}:{receipt.id}", lead_id=None, payload={"receipt_id": receipt.id},
                        now=now)
        except IntegrityError:   # the same delivery, at the same moment, in another request
            return {"accepted": True, "duplicate": True}
        if self.on_queued is not None:
            self.on_queued()
        return {"accepted": True, "duplicate": False}

    def work_form_fill(self, d: Any) -> dict[str, Any]:
        """Outbox handler for "form_fill": the submission's turn (channel `form`: fields merged with
        source `form`, the event scored, a handoff queued over the SQL threshold), then the first
        touch email queued. Safe to run again after a crash (the turn answers a retry once; the
        email is queued once per receipt)."""
        with self.store.session() as s:
            receipt = s.get(InboundReceipt, d.payload["receipt_id"])
            if receipt is None:
                return {"skipped": "the receipt is gone (forgotten)"}
            p, source, rid, at = dict(receipt.payload), receipt.source, receipt.id, receipt.at
        lead = map_fill(source, p.get("fields") or {}, p.get("form_name"), self.playbook)
        facts, intents = read_form(lead, self.playbook, at.date())
        visitor = {k: lead.fields[k] for k in ("email", "name", "company") if lead.fields.get(k)}
        if lead.attribution.get("page_url"):
            visitor["page_url"] = lead.attribution["page_url"]
        inbound = Inbound(text=first_message(lead), channel="form", session_id=p["session_id"],
                          visitor=visitor, message_id=f"form:{rid}", verified=True, at=at, facts=facts,
                          intents=intents, events=(lead.event,), note=not lead.message)
        result = self.handle(inbound)
        lead_id = result.lead["id"]
        with self.store.session() as s:
            row, receipt = s.get(Lead, lead_id), s.get(InboundReceipt, rid)
            if receipt is not None:
                receipt.lead_id, receipt.status = lead_id, "done"
            if row is not None and lead.attribution:
                row.fields = {**(row.fields or {}), "attribution": {**(row.fields or {}).get("attribution", {}),
                                                                    **lead.attribution}}
            if row is not None and lead.fields.get("consent"):
                email_status(s, lead_id).consent = lead.fields["consent"][:60]
            if row is not None:   # a lead not ready yet is nurtured (playbook `sequences:`, enroll.on form_fill)
                enroll(s, self.playbook, row, "form_fill", self.clock())
            if row is not None and row.email:
                queue_email(s, row, key=f"first_touch:{rid}", subject=self._subject(lead), now=self.clock(),
                            content=self._first_touch(lead, row, result.reply), sender=self.settings.email_from,
                            reply_to_template=self.settings.email_reply_to, public_url=self._public_url(),
                            conversation_id=result.session_id)
        if self.on_queued is not None:
            self.on_queued()
        return {"lead_id": lead_id, "session_id": result.session_id}

    def _subject(self, lead: FormLead) -> str:
        return f"{SUBJECTS.get(lead.event, 'Your request')} — {self.playbook.company.name}"

    def _first_touch(self, lead: FormLead, row: Lead, reply: str) -> dict[str, Any]:
        """The first touch's words: greeting by first name, what they asked for, then the turn's
        reply (their question answered from the content, one fitting piece, one question — or
        meeting times for an SQL), signed by the automated assistant."""
        pb = self.playbook
        what = EVENT_WORDS.get(lead.event, "information")
        form = f" through “{lead.form_name}”" if lead.form_name else ""
        return email_words(self.playbook, row, [f"Thanks for asking for {what}{form} — I'm {pb.company.assistant_name}, "
                                       f"{pb.company.name}'s automated assistant, and I'll get you started.", reply])

    def _public_url(self) -> str:
        return self.settings.public_url or "http://127.0.0.1:8000"

    # -- email: the gate at send time, bounces, unsubscribes -----------------------------------------

    def email_gate(self, lead_id: str | None, address: str | None, enrollment_id: int | None = None) -> str | None:
        """Checked by the email handler just before sending: None when this lead may be emailed at
        `address`; else the reason nothing is sent (opted out, unsubscribed, bounced, forgotten —
        and for a nurture email, `enrollment_id`'s sequence ended or the lead is paused)."""
        with self.store.session() as s:
            lead = s.get(Lead, lead_id) if lead_id else None
            reason = may_email(s, lead, address)
            if reason is None and enrollment_id is not None and lead is not None:
                reason = sequence_gate(s, self.playbook, lead, enrollment_id, self.clock())
        if reason is None and address and is_suppressed(self.store, address, self.settings.data_dir):
            return "the address was forgotten (privacy request)"
        return reason

    def mark_bounced(self, lead_id: str, address: str, reason: str) -> None:
        """A 5xx for the lead's address (or a bounce notice): never email it again; the
        `email_bounced` engagement event (negative) with its reason."""
        now = self.clock()
        with self.store.session() as s:
            lead = s.get(Lead, lead_id)
            if lead is None:
                return
            st = email_status(s, lead_id)
            if st.bounced_at is None:
                st.bounced_at, st.bounce_reason = now, reason[:500]
                if "email_bounced" in self.playbook.engagement:
                    engage(s, self.playbook, lead, "email_bounced", {"reason": f"{address}: {reason}"[:200]}, now)
                    rescore(s, self.playbook, lead, now)
                    restage(self.playbook, lead, engaged=True)
            end_sequences(s, self.playbook, lead, now)

    def unsubscribe(self, token: str, source: str = "link") -> bool:
        """One click: the lead of `token` gets no email again from anything, with an `unsubscribe`
        score event. False for an unknown token (nothing changes). Unsubscribing twice is one event."""
        now = self.clock()
        with self.store.session() as s:
            lead = lead_for_token(s, token, "unsubscribe")
            if lead is None:
                return False
            st = email_status(s, lead.id)
            if st.unsubscribed_at is None:
                st.unsubscribed_at, st.unsubscribe_source = now, source
                if "unsubscribe" in self.playbook.engagement:
                    engage(s, self.playbook, lead, "unsubscribe", {"reason": f"unsubscribed by {source}"}, now)
                    rescore(s, self.playbook, lead, now)
                    restage(self.playbook, lead, engaged=True)
            end_sequences(s, self.playbook, lead, now)
            return True

    # -- email replies (issue 12): the same turn, answered in the thread -------------------------------

    def receive_email(self, msg: Any) -> dict[str, Any]:
        """Store one authenticated inbound email (`integrations.email` InboundEmail: message_id,
        from_addr, from_name, subject, text (the new part), in_reply_to, references, reply_token,
        auto_reply, bounce, bounced_addresses) and queue its turn; a repeated delivery (same
        Message-ID) creates nothing. Returns {"accepted": True, "duplicate": bool}."""
        fields = ("provider", "message_id", "from_addr", "from_name", "subject", "text", "in_reply_to", "references",
                  "reply_token", "auto_reply", "bounce", "bounced_addresses", "headers")
        payload = {k: getattr(msg, k, None) for k in fields}
        payload["text"] = str(payload.get("text") or "")[:self.settings.max_message_chars]
        blob = f"{payload['from_addr']}\0{payload['subject']}\0{payload['text']}"
        h = hashlib.sha256(blob.encode("utf-8", "replace")).hexdigest()
        key = f"email:{payload['message_id']}" if payload.get("message_id") else f"email:h:{h}"
        return self._receive("email", str(payload.get("provider") or "email"), key[:400], h, payload, "email_in",
                             by_content=not payload.get("message_id"))   # two real replies may say the same

    def work_email_in(self, d: Any) -> dict[str, Any]:
        """Outbox handler for "email_in": a bounce notice marks its addresses bounced; an auto-reply is
        stored, not answered; a reply finds its lead (reply token, then the thread's Message-IDs, then
        the sender's address unless the receiving server's DMARC/SPF check failed), runs the turn on
        channel `email` (event `email_reply`) and queues the answer in the same thread."""
        with self.store.session() as s:
            receipt = s.get(InboundReceipt, d.payload["receipt_id"])
            if receipt is None:
                return {"skipped": "the receipt is gone (forgotten)"}
            m, rid, at = dict(receipt.payload), receipt.id, receipt.at
        if m.get("bounce"):
            return self._bounce_notice(m, rid)
        lead_id, session_id = self._thread_for(m, rid, at)
        if m.get("auto_reply") or _spoofed(m):
            return {"ignored": "auto-reply" if m.get("auto_reply") else "sender failed DMARC/SPF"}
        sender = str(m.get("from_addr") or "").lower()
        text = str(m.get("text") or "").strip() or "(an empty reply)"
        result = self.handle(Inbound(text=text, channel="email", session_id=session_id, message_id=f"email:{rid}",
                                     visitor={"email": sender, "name": m.get("from_name") or ""} if sender else {},
                                     verified=lead_id is None and not _spoofed(m), at=at, events=("email_reply",)))
        self._answer_by_email(m, rid, at, text, result)
        if self.on_queued is not None:
            self.on_queued()
        return {"lead_id": result.lead["id"], "session_id": result.session_id}

    def _bounce_notice(self, m: dict[str, Any], rid: int) -> dict[str, Any]:
        """A delivery status notification: every lead at a failed address is marked bounced."""
        addresses = [str(a).lower() for a in (m.get("bounced_addresses") or [])]
        with self.store.session() as s:
            hit = [ld.id for a in addresses for ld in s.scalars(select(Lead).where(Lead.email == a))]
            receipt = s.get(InboundReceipt, rid)
            receipt.status, receipt.note = "done", "bounce notice"
        for lead_id in hit:
            self.mark_bounced(lead_id, ",".join(addresses), "bounce notice received")
        return {"bounced": hit}

    def _thread_for(self, m: dict[str, Any], rid: int, at: datetime) -> tuple[str | None, str]:
        """The lead this email belongs to (None: a new sender) and its email conversation's id (made
        when new); an auto-reply is stored in it, marked, and not answered."""
        with self.store.session() as s:
            lead = lead_for_token(s, m.get("reply_token")) or lead_for_thread(
                s, [m.get("in_reply_to")] + list(reversed(m.get("references") or [])))
            sender = str(m.get("from_addr") or "").lower()
            if lead is None and sender and not _spoofed(m):
                lead = s.scalars(select(Lead).where(Lead.email == sender)).first()
            # the conversation of the email this one answers (a form's first touch: its offered times live
            # there), else the lead's email conversation, else a new one
            replied = s.get(EmailMessage, m["in_reply_to"]) if m.get("in_reply_to") else None
            session_id = ((replied.conversation_id if replied is not None and lead is not None
                           and replied.lead_id == lead.id and replied.conversation_id else None)
                          or (email_conversation(s, lead.id) if lead is not None else None) or new_session_id())
            if lead is not None and s.get(Conversation, session_id) is None:
                s.add(Conversation(id=session_id, lead_id=lead.id, channel="email", state={}, created_at=at,
                                   updated_at=at))
            if lead is not None:
                record_inbound(s, lead.id, m.get("message_id"), str(m.get("subject") or ""), session_id, at)
            if m.get("auto_reply") or _spoofed(m):   # never answer a machine, nor a forged sender (no reflection)
                receipt = s.get(InboundReceipt, rid)
                receipt.status, receipt.note = "ignored", ("auto-reply (RFC 3834 / out of office): stored, not answered"
                                                           if m.get("auto_reply") else
                                                           "the receiving server says the sender failed DMARC/SPF: "
                                                           "stored, not answered")
                if lead is not None:
                    s.add(Message(conversation_id=session_id, lead_id=lead.id, role="visitor", at=at,
                                  text=str(m.get("text") or "")[:4000] or "(auto-reply)",
                                  meta={"channel": "email", "auto_reply": True}))
                    receipt.lead_id = lead.id
            return (lead.id if lead is not None else None), session_id

    def _answer_by_email(self, m: dict[str, Any], rid: int, at: datetime, text: str, result: Any) -> None:
        """The turn's reply, queued as an email in the lead's thread (In-Reply-To the reply)."""
        lead_id, pb = result.lead["id"], self.playbook
        with self.store.session() as s:
            row, receipt = s.get(Lead, lead_id), s.get(InboundReceipt, rid)
            receipt.lead_id, receipt.status = lead_id, "done"
            if row is None:
                return
            record_inbound(s, lead_id, m.get("message_id"), str(m.get("subject") or ""), result.session_id, at)
            if row.unsubscribed:   # "stop emailing me" in the reply: no email again, from anything
                st = email_status(s, lead_id)
                st.unsubscribed_at, st.unsubscribe_source = st.unsubscribed_at or at, st.unsubscribe_source or "email_reply"
            sender = str(m.get("from_addr") or "")
            queue_email(s, row, key=f"email_reply:{rid}", subject=str(m.get("subject") or pb.company.name),
                        now=self.clock(), kind="reply",
                        content=email_words(self.playbook, row, [result.reply], quote={
                            "from": m.get("from_name") or sender, "at": at.isoformat() + "Z", "text": text[:2000]}),
                        sender=self.settings.email_from, reply_to_template=self.settings.email_reply_to,
                        public_url=self._public_url(), conversation_id=result.session_id)


def _spoofed(m: dict[str, Any]) -> bool:
    """The receiving server says the sender's address failed DMARC or SPF (Authentication-Results,
    RFC 8601; Received-SPF, RFC 7208): never match a lead by that From alone."""
    h = {str(k).lower(): str(v).lower() for k, v in (m.get("headers") or {}).items()}
    return bool(re.search(r"\bdmarc=fail\b", h.get("authentication-results", "")) or
                h.get("received-spf", "").startswith("fail"))
