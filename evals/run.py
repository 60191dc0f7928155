"""Play simulated prospects through the turn and measure the SDR's judgment.

    sdr eval                                  # the shipped suite (evals/personas.yaml + conversations.yaml)
    sdr eval my_suite.yaml --k 3 --json out.json --html report.html --baseline evals/baseline.json

Each persona (evals/suite.py) is played by a prospect (evals/simulator.py): scripted messages, the
deterministic simulator answering from its truths, or a model playing it (SDR_SIM_MODEL). The runner
sends each line through `SDR.handle` exactly as a channel would, keeps the transcript with what the
simulator judged was asked, the stage and score after every reply, latency and the model's usage,
and checks the persona's `expect`. The metrics are in evals/metrics.py.

Form and email personas (issue 12) go through the core's intake as production's webhooks hand them
over: a form fill by `SDR.receive_form` (the generic source), an email by `SDR.receive_email`; an
outbox worker (`Mailroom`) runs their turns and keeps the emails it would send the prospect (after
the send-time gate). The prospect reads each email's text part (mail_render, without the quoted
history and the footer) and answers it by email, in the thread (In-Reply-To, References and the
reply token of the last email). An address used by an earlier run on the same SDR gets a `+runN`
tag, so runs never continue each other's leads.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from .metrics import same_value, summarize
from .simulator import detect_asked_field, form_text, make_prospect
from .suite import SuiteError, email_parts, form_email, load_suite, skip_reason

CaseError = SuiteError          # the name the CLI used before personas
CHANNELS_BUILT = {"chat", "form", "email"}   # a channel not listed here is skipped with a reason
BEYOND = {"sql": {"meeting_booked"}}   # reaching further than expected still passes (a booked SQL)


def load_cases(path: Any = None, playbook: Any = None) -> list[dict[str, Any]]:
    """The personas in PATH (one file or a list; default: the shipped suite), validated."""
    from bot.playbook import load_playbook

    paths = None if path is None else ([path] if not isinstance(path, (list, tuple)) else list(path))
    return load_suite(paths, playbook or load_playbook(None))


def ticking_clock(start: str) -> Any:
    """A clock for `SDR.clock` (naive UTC) that starts at `start` (ISO 8601; Z or an offset) and
    runs with real time from there. Raises ValueError for an unreadable instant."""
    at = datetime.fromisoformat(start.replace("Z", "+00:00"))
    at = at.astimezone(timezone.utc).replace(tzinfo=None) if at.tzinfo else at
    began = time.monotonic()
    return lambda: at + timedelta(seconds=time.monotonic() - began)


def _evidence(sdr: Any) -> str:
    """What the SDR may state as fact: the content store and the playbook, and the words of its own
    reply templates (German nouns are capitalised, not names) — cached per SDR."""
    cached = getattr(sdr, "_eval_evidence", None)
    if cached is None:
        chunks = sdr.kb.corpus() if sdr.kb is not None else []
        parts = [t + " " + " ".join(str(v) for v in (m or {}).values()) for t, m in chunks]
        templates = "\n".join(getattr(sdr.rules, "_evidence", []))   # the reply templates' own words, every language
        cached = sdr._eval_evidence = "\n".join(parts) + "\n" + sdr.playbook.grounding_text() + "\n" + templates
    return cached


def _stop(result: Any, offered: bool) -> bool:
    """A booked meeting, a close, or a handoff with no meeting times left to answer ends the run."""
    acts = result.actions
    if any(a["type"] == "meeting" and a.get("status") == "booked" for a in acts):
        return True
    if result.lead["stage"] == "disqualified":
        return True
    return any(a["type"] == "handoff" for a in acts) and not offered


def _sdr_turn(sdr: Any, result: Any, reply: str, latency_ms: float, said: list[str]) -> dict[str, Any]:
    """The SDR's side of the transcript for one reply (what the prospect read: the chat reply or the
    email's text). Grounded are the content store, the playbook, what the prospect said and the
    turn's own actions (the times offered)."""
    from bot.guard import ungrounded_claims

    asked = detect_asked_field(reply, sdr.playbook)
    known = {k for k, v in (result.lead.get("fields") or {}).items() if v not in (None, "")}
    return {"role": "sdr", "text": reply, "asked": asked, "stage": result.lead["stage"],
            "score": result.lead["score"], "latency_ms": round(latency_ms, 2),
            "reasked": bool(asked and asked in known),
            "ungrounded": ungrounded_claims(reply, "\n".join([_evidence(sdr), *said,
                                                              json.dumps(result.actions, default=str)]))}


def _turn(sdr: Any, text: str, sid: str | None, said: list[str]) -> tuple[Any, dict[str, Any]]:
    """One chat message through the SDR; the SDR's side of the transcript."""
    from bot.turn import Inbound

    t0 = time.perf_counter()
    result = sdr.handle(Inbound(text=text, session_id=sid, channel="cli"))
    return result, _sdr_turn(sdr, result, result.reply, (time.perf_counter() - t0) * 1000, said)


@contextmanager
def _recording(sdr: Any, into: list[tuple[Any, float]]) -> Any:
    """Every turn `sdr.handle` runs meanwhile (the outbox handlers call it), with its latency in ms."""
    handle, own = sdr.handle, sdr.__dict__.get("handle")

    def recorded(inbound: Any) -> Any:
        t0 = time.perf_counter()
        result = handle(inbound)
        into.append((result, (time.perf_counter() - t0) * 1000))
        return result

    sdr.handle = recorded
    try:
        yield
    finally:
        if own is None:
            del sdr.handle   # the class's method again
        else:
            sdr.handle = own


class Mailroom:
    """One form or email persona's side of the wire. `submit(fields)` and `write(subject, text)` go
    in through the core's intake (`receive_form`, `receive_email`); an outbox worker on the SDR's clock
    runs the turns (`form_fill`, `email_in`) and "sends" the emails (the send-time gate, then kept in
    `sent` instead of SMTP). Each returns (the turn's result, its latency in ms, the email the prospect
    got or None, why none was sent or None) — or None when no turn ran."""

    def __init__(self, sdr: Any, address: str, name: str | None):
        from bot.outbox import OutboxWorker

        self.sdr, self.address, self.name = sdr, address.strip().lower(), name or ""
        self.sent: list[dict[str, Any]] = []
        self.withheld: list[str] = []
        self.tag, self.n = uuid.uuid4().hex[:12], 0
        self.worker = OutboxWorker(sdr.store, {"form_fill": sdr.work_form_fill, "email_in": sdr.work_email_in,
                                               "email": self._deliver}, clock=sdr.clock)

    def _deliver(self, d: Any) -> dict[str, Any]:
        p, mine = d.payload, str(d.payload.get("to") or "").lower() == self.address
        reason = self.sdr.email_gate(d.lead_id, p.get("to"), p.get("enrollment_id"))
        if reason is not None:
            self.withheld += [reason] if mine else []
            return {"skipped": reason}
        self.sent += [p] if mine else []
        return {"message_id": p.get("message_id")}

    def submit(self, fields: dict[str, str]) -> tuple[Any, float, dict[str, Any] | None, str | None] | None:
        from integrations.forms.form_fill import FormFill

        fill = FormFill(source="generic", event_id=f"eval-{self.tag}", fields=dict(fields), form_name=None)
        return self._run(lambda: self.sdr.receive_form(fill), "form fill")

    def write(self, subject: str, text: str) -> tuple[Any, float, dict[str, Any] | None, str | None] | None:
        """An email from the prospect: a reply in the thread of the last email it got, else a new one.
        The core gets its new part as a provider's parser hands it over (signature cut, reply_strip)."""
        from bot.reply_tokens import token_from_addresses
        from integrations.email.inbound_parse import InboundEmail
        from integrations.email.reply_strip import strip_reply

        last, st = (self.sent[-1] if self.sent else None), self.sdr.settings
        template = st.email_reply_to or st.email_from
        to = last["reply_to"] if last and last.get("reply_to") else re.sub(r".*<|>.*", "", template)
        if last:
            subject = last["subject"] if str(last["subject"]).lower().startswith("re:") else f"Re: {last['subject']}"
        self.n += 1
        domain = self.address.rpartition("@")[2] or "prospect.example"
        msg = InboundEmail(provider="eval", message_id=f"<eval.{self.tag}.{self.n}@{domain}>", from_addr=self.address,
                           from_name=self.name, to=[to], subject=subject, text=strip_reply(text) or text, full_text=text,
                           in_reply_to=last["message_id"] if last else None,
                           references=[*(last.get("references") or []), last["message_id"]] if last else [],
                           reply_token=token_from_addresses([to], template) if last else None,
                           auto_reply=False, bounce=False)
        return self._run(lambda: self.sdr.receive_email(msg), "email")

    def _run(self, receive: Any, what: str) -> tuple[Any, float, dict[str, Any] | None, str | None] | None:
        turns: list[tuple[Any, float]] = []
        sent, withheld = len(self.sent), len(self.withheld)
        with _recording(self.sdr, turns):
            if receive().get("duplicate"):
                raise RuntimeError(f"the {what} from {self.address} was taken for a repeated delivery")
            for _ in range(50):
                if not self.worker.run_once():
                    break
        self._raise_failed(what)
        if not turns:
            return None
        result, latency = turns[-1]
        mail = self.sent[-1] if len(self.sent) > sent else None
        return result, latency, mail, (self.withheld[-1] if len(self.withheld) > withheld else None)

    def _raise_failed(self, what: str) -> None:
        from bot.outbox import list_entries

        failed = [e for e in list_entries(self.sdr.store, ("pending", "dead"))
                  if e.kind in ("form_fill", "email_in", "email") and e.last_error]
        if failed:
            raise RuntimeError(f"the {what} from {self.address}: outbox entry {failed[0].id} ({failed[0].kind}) "
                               f"failed: {failed[0].last_error}")

    def text(self, payload: dict[str, Any]) -> str:
        """What the prospect reads: the email's text part, without the quoted history and the footer."""
        from integrations.email.mail_render import render

        pb = self.sdr.playbook
        plain, _ = render({**payload, "quote": None}, footer_address=pb.company.postal_address, company=pb.company.name)
        return plain.split("\n\n-- \n")[0].strip()


def _address(sdr: Any, persona: dict[str, Any]) -> dict[str, Any]:
    """PERSONA with the address it writes from (truths.email, its form's, or one made from its
    name) — tagged `+runN` when an earlier run on this SDR used it, in the truths, the form and the
    expected fields alike."""
    truths = dict(persona.get("truths") or {})
    address = str(truths.get("email") or form_email(persona.get("form"), sdr.playbook) or "").strip().lower()
    if not address:
        address = re.sub(r"[^a-z0-9]+", ".", persona["name"].lower()).strip(".")[:40] + "@prospect.example"
    used = sdr.__dict__.setdefault("_eval_addresses", set())
    tagged = address
    if address in used:
        local, _, domain = address.rpartition("@")
        tagged = f"{local}+run{len(used)}@{domain}"
    used.add(tagged)
    exp = dict(persona.get("expect") or {})
    if "email" in (exp.get("fields") or {}):
        exp["fields"] = {**exp["fields"], "email": tagged}
    form = {k: (tagged if str(v).strip().lower() == address else v) for k, v in (persona.get("form") or {}).items()}
    return {**persona, "truths": {**truths, "email": tagged}, "expect": exp, "form": form or None}


def _mail_first(mail: Mailroom, persona: dict[str, Any], text: str, company: str) -> tuple[str, Any]:
    """The prospect's first words on the form or email channel: what the transcript shows, and the
    turn. A form persona submits its form; a persona without one fills the email and message fields
    (its name too) with what it would have said in chat. An email without a subject line gets one."""
    if persona["channel"] == "form":
        fields = persona.get("form") or {k: v for k, v in (("name", persona["truths"].get("name")),
                                                           ("email", mail.address), ("message", text)) if v}
        return form_text(fields), mail.submit(fields)
    subject, body = email_parts(text) or (f"Question about {company}", text)
    return f"Subject: {subject}\n\n{body}", mail.write(subject, body)


def play(sdr: Any, persona: dict[str, Any], seed: int = 0, model: bool | None = None) -> dict[str, Any]:
    """One conversation: the transcript, the last result, and what happened along the way."""
    channel = persona.get("channel") or "chat"
    mail = Mailroom(sdr, persona["truths"]["email"], persona["truths"].get("name")) if channel != "chat" else None
    prospect = make_prospect(persona, sdr.playbook, seed=seed, model=model)
    text: str | None = prospect.opening()
    sid, said, transcript = None, [], []
    run: dict[str, Any] = {"recommended": [], "handoff": False, "meeting_booked": False, "turns_to_sql": None}
    result = None
    for n in range(1, int(persona.get("max_turns") or 10) + 1):
        if text is None:
            break
        if mail is None:
            said.append(text)
            transcript.append({"role": "prospect", "text": text})
            result, sdr_turn = _turn(sdr, text, sid, said)
            sid, reply = result.session_id, result.reply
        else:
            shown, got = _mail_first(mail, persona, text, sdr.playbook.company.name) if n == 1 else \
                (text, mail.write("", text))
            said.append(shown)
            transcript.append({"role": "prospect", "text": shown, "channel": channel if n == 1 else "email"})
            if got is None:
                break
            result, latency, email, withheld = got
            reply = mail.text(email) if email else ""
            sdr_turn = {**_sdr_turn(sdr, result, reply, latency, said), "channel": "email",
                        "email": {k: email.get(k) for k in ("kind", "subject", "message_id", "in_reply_to")} if email
                        else None, **({"withheld": withheld} if withheld else {})}
        transcript.append(sdr_turn)
        acts = result.actions
        run["recommended"] += [a["url"] for a in acts if a["type"] == "recommend"]
        run["handoff"] = run["handoff"] or any(a["type"] == "handoff" for a in acts)
        run["meeting_booked"] = run["meeting_booked"] or any(a["type"] == "meeting" and a.get("status") == "booked"
                                                             for a in acts)
        if run["turns_to_sql"] is None and result.lead["stage"] in ("sql", "meeting_booked"):
            run["turns_to_sql"] = n
        offered = any(a["type"] == "offer_slots" for a in acts)
        if not persona.get("messages") and _stop(result, offered):   # a script is played to its end
            break
        if mail is not None and not reply:   # no email reached the prospect: nothing to answer
            break
        text = prospect.respond(reply, acts)
    return {**run, "transcript": transcript, "result": result}


def _usage(sdr: Any, lead_id: str, transcript: list[dict[str, Any]]) -> None:
    """Each SDR turn's model calls and tokens, from the stored replies (in order)."""
    agent = [m for m in sdr.lead_detail(lead_id)["messages"] if m["role"] == "agent"]
    sdr_turns = [t for t in transcript if t["role"] == "sdr"]
    for t, m in zip(reversed(sdr_turns), reversed(agent)):   # the lead's last replies are this run's
        for key in ("model_calls", "prompt_tokens", "completion_tokens"):
            t[key] = int(m.get(key) or 0)


def check(persona: dict[str, Any], ran: dict[str, Any]) -> tuple[list[str], dict[str, bool]]:
    """The persona's `expect` against what happened: failures as sentences, and per-field rights."""
    exp, lead = persona.get("expect") or {}, ran["result"].lead
    fields, failures = lead.get("fields") or {}, []
    stage = exp.get("stage")
    if stage and lead["stage"] != stage and lead["stage"] not in BEYOND.get(stage, ()):
        failures.append(f"stage {lead['stage']} (expected {stage})")
    if exp.get("handoff") is not None and ran["handoff"] != exp["handoff"]:
        failures.append(f"handoff {ran['handoff']} (expected {exp['handoff']})")
    checks = {k: same_value(fields.get(k), v) for k, v in (exp.get("fields") or {}).items()}
    failures += [f"{k}={fields.get(k)!r} (expected {exp['fields'][k]!r})" for k, ok in checks.items() if not ok]
    wanted = list(exp.get("recommended_any") or []) + ([exp["recommended"]] if exp.get("recommended") else [])
    if wanted and not set(wanted) & set(ran["recommended"]):
        failures.append(f"recommended none of {wanted} (sent {ran['recommended'] or 'nothing'})")
    replies = [t["text"] for t in ran["transcript"] if t["role"] == "sdr"]
    low = " ".join(replies).lower()
    failures += [f"a reply says {p!r}" for p in exp.get("never_says") or [] if p.lower() in low]
    failures += [f"replies lack {p!r}" for p in exp.get("reply_contains") or [] if p.lower() not in low]
    failures += [f"replies contain {p!r}" for p in exp.get("reply_not_contains") or [] if p in " ".join(replies)]
    return failures, checks


def run_persona(sdr: Any, persona: dict[str, Any], seed: int = 0, model: bool | None = None) -> dict[str, Any]:
    """One persona played once: the record the metrics and the report read (see evals/report.py)."""
    exp = persona.get("expect") or {}
    base = {"name": persona["name"], "seed": seed, "tags": list(persona.get("tags") or []),
            "expected_stage": exp.get("stage"), "expected_handoff": exp.get("handoff"),
            "truths": dict(persona.get("truths") or {}), "recommended_any": list(exp.get("recommended_any") or [])}
    skip = skip_reason(persona, CHANNELS_BUILT)
    if skip:
        return {**base, "skipped": skip, "passed": None, "failures": [], "transcript": [], "stage": None,
                "handoff": False, "turns": 0}
    if (persona.get("channel") or "chat") != "chat":
        persona = _address(sdr, persona)
        base["truths"] = dict(persona["truths"])
    ran = play(sdr, persona, seed, model)
    if ran["result"] is None:
        raise RuntimeError(f"{persona['name']}: no turn ran (the first {persona['channel']} message was not answered)")
    lead = ran["result"].lead
    _usage(sdr, lead["id"], ran["transcript"])
    failures, checks = check(persona, ran)
    sdr_turns = [t for t in ran["transcript"] if t["role"] == "sdr"]
    return {**base, "skipped": None, "passed": not failures, "failures": failures, "field_checks": checks,
            "stage": lead["stage"], "score": lead["score"], "fields": dict(lead.get("fields") or {}),
            "handoff": ran["handoff"], "meeting_booked": ran["meeting_booked"], "recommended": ran["recommended"],
            "turns_to_sql": ran["turns_to_sql"], "turns": len(sdr_turns),
            "reasked": sum(t["reasked"] for t in sdr_turns), "transcript": ran["transcript"]}


def run_suite(sdr: Any, personas: list[dict[str, Any]], *, k: int = 1, seed: int = 0, model: bool | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Every persona `k` times (seeds seed..seed+k-1): the report `sdr eval --json` writes —
    {"summary", "metrics", "meta", "fields", "stages", "turns_to_sql", "personas", "runs"}. A
    persona passes when all its k runs pass (pass^k)."""
    from tqdm import tqdm

    started = sdr.clock().isoformat(timespec="seconds") + "Z"
    if sdr.kb is not None:
        sdr.kb.search("warm up")   # the embedding model loads once, before the first timed reply
    sdr.warm()                     # and the place data, the language detector, the intent examples
    runs = [run_persona(sdr, p, seed + i, model)
            for p in tqdm(personas, desc="eval", unit="persona", disable=not progress) for i in range(k)]
    personas_out = []
    for p in personas:
        mine = [r for r in runs if r["name"] == p["name"]]
        first = dict(mine[0])
        first["passed"] = None if first["skipped"] else all(r["passed"] for r in mine)
        first["failures"] = [f"seed {r['seed']}: {f}" if k > 1 else f for r in mine for f in r["failures"]]
        personas_out.append(first)
    ran = [p for p in personas_out if not p["skipped"]]
    report = summarize(runs)
    report["meta"] = {"brain": sdr.brain.name, "seed": seed, "k": k, "started_at": started,
                      "personas": len(personas), "passed": sum(1 for p in ran if p["passed"]),
                      "skipped": len(personas) - len(ran), "playbook": sdr.playbook.company.name,
                      "suite": sorted({str(p.get("source", "")) for p in personas}),
                      "pass_hat_k": round(sum(1 for p in ran if p["passed"]) / len(ran), 4) if ran else None}
    report["personas"] = personas_out
    return report


def run(sdr: Any, path: Any = None, progress: bool = True, cases: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every persona once; the per-persona records (the shape `sdr eval` prints)."""
    return run_suite(sdr, load_cases(path, sdr.playbook) if cases is None else cases, progress=progress)["personas"]


run_case = run_persona   # the name tests used for one scripted case
