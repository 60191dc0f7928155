"""The model brain: a LangChain chat model understands and words replies; the rules still decide.

- understand: one structured (tool-calling) call returning a validated `Extraction`; invalid output
  gets one repair attempt, then the rule-based extraction. Rules that are certain (an email regex, an
  explicit number) win; the model fills what they missed; each field records its extractor.
- compose: one call with the decision as a plan, the lead's fields and the retrieved snippets;
  a reply that fails the grounding check is regenerated once, then the deterministic reply is used.
- Every call runs inside the turn's deadline, with tenacity retries (exponential backoff with jitter,
  Retry-After honoured on 429). Timeout, rate limit, 5xx, malformed output or failed grounding end in
  the deterministic brain's answer, never an error; each fallback is counted with its cause.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any, Callable, Iterator, Literal

import openai
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel, Field, field_validator
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from bot.brain import LeadView, Reply, RuleBrain, load_prompt, summarize
from bot.extract import EMAIL_RE, Fact, Understanding
from bot.guard import evidence_text, ungrounded_claims
from bot.playbook import SENIORITIES, TIMELINES, Playbook
from bot.policy import Decision

log = logging.getLogger("sdr.llm")
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sdr-llm")
RESERVE_S = 0.3          # kept back from the deadline for the rest of the turn
MAX_ATTEMPTS = 3


class Extraction(BaseModel):
    """Facts about the visitor stated in this message, and what they want."""
    name: str | None = None
    email: str | None = None
    company: str | None = None
    role: str | None = None
    seniority: Literal["c_level", "vp", "director", "manager", "individual", "student"] | None = None
    company_size: int | None = Field(default=None, ge=1, le=5_000_000)
    industry: str | None = None
    need: str | None = None
    timeline: Literal["now", "this_quarter", "next_quarter", "this_year", "later"] | None = None
    budget: float | str | None = None
    intent: Literal["question", "answer", "objection", "small_talk", "human", "unsubscribe", "booking"] = "answer"
    questions: list[str] = Field(default_factory=list)
    requested_action: Literal["continue", "handoff", "book", "human", "unsubscribe"] = "continue"

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is None:
            return None
        m = EMAIL_RE.search(v)
        return m.group(0).lower() if m else None


class Fallback(Exception):
    """The model could not help this turn; `cause` says why (timeout, rate_limit, server_error...)."""

    def __init__(self, cause: str, detail: str = ""):
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause


def _retry_after(exc: BaseException | None) -> float | None:
    resp = getattr(exc, "response", None)
    if resp is None:
        return None
    raw = resp.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, (openai.RateLimitError, openai.APIConnectionError, openai.APITimeoutError)):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def _cause(exc: BaseException) -> str:
    if isinstance(exc, FuturesTimeout) or isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit"
    if isinstance(exc, openai.APIStatusError):
        return "server_error" if exc.status_code >= 500 else "client_error"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    return "error"


class ModelBrain:
    """understand + compose through a LangChain chat model, the rule brain as the fallback."""

    def __init__(self, playbook: Playbook, model: Any, model_name: str = "model"):
        self.playbook = playbook
        self.model = model
        self.name = f"model:{model_name}"
        self.model_name = model_name
        self.rules = RuleBrain(playbook)
        self.extract_prompt = load_prompt("extract")
        self.reply_prompt = load_prompt("reply")
        self._extract_tmpl = ChatPromptTemplate.from_messages(
            [("system", self.extract_prompt["system"]), ("human", self.extract_prompt["human"])])
        self._reply_tmpl = ChatPromptTemplate.from_messages(
            [("system", self.reply_prompt["system"]), ("human", self.reply_prompt["human"])])
        self._structured = model.with_structured_output(Extraction, method="function_calling", include_raw=True)

    # -- calling the model inside the deadline -------------------------------------------------

    def _call(self, fn: Callable[[], Any], view: LeadView) -> Any:
        """Run one model call with retries, never past the turn's deadline."""
        deadline = view.deadline or (time.monotonic() + 8.0)

        def remaining() -> float:
            return deadline - time.monotonic() - RESERVE_S

        def stop(rs: RetryCallState) -> bool:
            if stop_after_attempt(MAX_ATTEMPTS)(rs):
                return True
            exc = rs.outcome.exception() if rs.outcome else None
            ra = _retry_after(exc)
            return remaining() <= 0.1 or (ra is not None and ra >= remaining())

        backoff = wait_exponential_jitter(initial=0.2, max=2.0, jitter=0.3)

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            ra = _retry_after(exc)
            return max(0.0, min(ra if ra is not None else backoff(rs), remaining() - 0.1))

        def attempt() -> Any:
            left = remaining()
            if left <= 0.05:
                raise FuturesTimeout()
            started = time.monotonic()
            view.usage["model_calls"] = view.usage.get("model_calls", 0) + 1
            future = _POOL.submit(fn)
            try:
                return future.result(timeout=left)
            finally:
                view.usage["model_ms"] = view.usage.get("model_ms", 0.0) + (time.monotonic() - started) * 1000

        try:
            for try_ in Retrying(stop=stop, wait=wait, retry=retry_if_exception(_retryable), reraise=True):
                with try_:
                    return attempt()
        except FuturesTimeout:
            raise Fallback("timeout", "the model did not answer inside the turn's deadline") from None
        except openai.OpenAIError as e:
            raise Fallback(_cause(e), type(e).__name__) from None
        raise Fallback("error")  # pragma: no cover

    @staticmethod
    def _count_tokens(view: LeadView, message: Any) -> None:
        meta = getattr(message, "usage_metadata", None) or {}
        view.usage["prompt_tokens"] = view.usage.get("prompt_tokens", 0) + int(meta.get("input_tokens", 0) or 0)
        view.usage["completion_tokens"] = view.usage.get("completion_tokens", 0) + int(meta.get("output_tokens", 0) or 0)

    def _fallback(self, view: LeadView, cause: str) -> None:
        view.usage.setdefault("fallbacks", []).append(cause)
        log.warning("model brain fell back to rules (%s)", cause)

    # -- understand ----------------------------------------------------------------------------

    def understand(self, message: str, lead: LeadView, history: list[dict[str, str]]) -> Understanding:
        rules = self.rules.understand(message, lead, history)
        if "injection" in rules.intents:
            return rules   # never hand an injection to the model; the refusal is the rules' job
        msgs = self._extract_tmpl.format_messages(
            company=self.playbook.company.name, industries=", ".join(self.playbook.industries) or "any",
            today=(lead.today.isoformat() if lead.today else "today"), asking=lead.asking or "nothing yet",
            known=json.dumps(lead.fields, default=str), message=message)
        try:
            ext = self._extract(msgs, lead)
        except Fallback as f:
            self._fallback(lead, f.cause)
            return rules
        return self._merge(rules, ext)

    def _extract(self, msgs: list[BaseMessage], view: LeadView) -> Extraction:
        out = self._call(lambda: self._structured.invoke(msgs), view)
        self._count_tokens(view, out.get("raw"))
        if out.get("parsed") is not None:
            return out["parsed"]
        error = out.get("parsing_error") or "no valid tool call"
        raw = out.get("raw")
        repair = list(msgs) + ([raw] if isinstance(raw, AIMessage) else []) + [
            HumanMessage(self.extract_prompt["repair"].format(error=str(error)[:300]))]
        out = self._call(lambda: self._structured.invoke(repair), view)
        self._count_tokens(view, out.get("raw"))
        if out.get("parsed") is not None:
            return out["parsed"]
        raise Fallback("malformed", str(out.get("parsing_error") or "no valid tool call")[:200])

    def _merge(self, rules: Understanding, ext: Extraction) -> Understanding:
        """Rules that are certain win; the model fills the gaps. Each fact keeps who found it."""
        u = rules
        for name in ("name", "email", "company", "role", "seniority", "company_size", "industry", "need",
                     "timeline", "budget"):
            value = getattr(ext, name)
            if value in (None, "", []):
                continue
            if name == "industry":
                value = str(value).strip().lower().replace(" ", "_")
                if self.playbook.industries and value not in self.playbook.industries:
                    continue
            if name == "budget" and isinstance(value, float) and value.is_integer():
                value = int(value)
            if name == "seniority" and value not in SENIORITIES or name == "timeline" and value not in TIMELINES:
                continue
            have = u.fields.get(name)
            if have is not None and have.certain:
                continue
            u.fields[name] = Fact(value, extractor="model", certain=False, evidence="model")
        intent_map = {"human": "human", "unsubscribe": "unsubscribe", "booking": "book", "question": "question",
                      "objection": "objection"}
        if ext.intent in intent_map:
            u.intents.add(intent_map[ext.intent])
        action_map = {"human": "human", "handoff": "human", "book": "book", "unsubscribe": "unsubscribe"}
        if ext.requested_action in action_map:
            u.intents.add(action_map[ext.requested_action])
            if u.requested_action == "continue":
                u.requested_action = ext.requested_action
        for q in ext.questions:
            if q and q not in u.questions and len(u.questions) < 3:
                u.questions.append(q)
        if u.questions:
            u.intents.add("question")
        if u.fields and "question" not in u.intents:
            u.intents.add("answer")
        return u

    # -- compose ---------------------------------------------------------------------------------

    def _plan(self, d: Decision, lead: LeadView, sources: list[Any]) -> str:
        pb = self.playbook
        ids = {h.url: i + 1 for i, h in enumerate(sources)}
        lines: list[str] = []
        if d.greet:
            lines.append(f"Greet them briefly as {pb.company.assistant_name}.")
        if d.learned:
            summary = summarize(d.learned, lead.fields)
            if summary:
                lines.append(f"Acknowledge in a few words what they told you: {summary}.")
        for a in d.answers:
            if a.hit is not None:
                lines.append(f"Answer \"{a.question}\" from source [S{ids.get(a.hit.url, 1)}] only.")
            elif a.integration:
                lines.append(f"For \"{a.question}\": {a.integration} is not in our sources. Say \"not that I know of\" "
                             "and offer to connect them with someone who can confirm. Do not say yes.")
            else:
                lines.append(f"For \"{a.question}\": the sources don't answer it. Say you don't know rather than "
                             "guess, and offer to connect them with someone on the team.")
        if d.objection:
            lines.append("Acknowledge their concern in one short clause without arguing.")
        if d.human:
            lines.append("Tell them you've asked someone from the team to pick this up"
                         + (f"; they'll reach them at {lead.fields['email']}." if lead.fields.get("email") else "."))
        if d.meeting_accepted:
            lines.append("Tell them you've passed it to the sales team, who will reach out to find a time.")
        elif d.book:
            lines.append(f"Tell them the team will set up a {pb.meeting.length_minutes}-minute call"
                         + (f"; give this link: {pb.meeting.url}" if pb.meeting.url else "; the sales team will reach out.")
                         )
        elif d.offer_meeting:
            lines.append(f"Tell them they sound like a strong fit, that you've let the sales team know, and offer a "
                         f"{pb.meeting.length_minutes}-minute call" + (f" via {pb.meeting.url}." if pb.meeting.url else "."))
        if d.recommend is not None:
            lines.append(f"Recommend \"{d.recommend.title}\" ({d.recommend.url}) in one sentence.")
        if d.ask_question:
            lines.append(f"End with this one question (you may rephrase it lightly): {d.ask_question}")
        else:
            lines.append("Do not ask any question.")
        return "\n".join(f"- {line}" for line in lines)

    def _reply_messages(self, d: Decision, lead: LeadView, sources: list[Any], history: list[dict[str, str]]) -> list[BaseMessage]:
        pb = self.playbook
        src = "\n".join(f"[S{i + 1}] {h.title} ({h.url}): {h.snippet or h.text[:600]}" for i, h in enumerate(sources)) or "(none)"
        hist = "\n".join(f"{m['role'].upper()}: {m['text']}" for m in history[-6:]) or "(first message)"
        return self._reply_tmpl.format_messages(
            assistant=pb.company.assistant_name, company=pb.company.name, product=pb.company.product,
            tone=pb.company.tone, plan=self._plan(d, lead, sources), known=json.dumps(lead.fields, default=str),
            sources=src, history=hist, message=lead.message)

    def _uses_rules(self, d: Decision) -> bool:
        # Refusals, polite closes and "no thanks" are fixed words; a model adds risk and cost, nothing else.
        return (d.mode in ("refuse", "close", "unsubscribe") or d.not_interested
                or bool(d.slots_text or d.booked_text or d.calendar_down))   # times and invites are exact words


    def compose(self, decision: Decision, lead: LeadView, sources: list[Any], history: list[dict[str, str]]) -> Reply:
        if self._uses_rules(decision):
            return self.rules.compose(decision, lead, sources, history)
        msgs = self._reply_messages(decision, lead, sources, history)
        evidence = evidence_text(self.playbook, lead.message, lead.fields, sources)
        try:
            out = self._call(lambda: self.model.invoke(msgs), lead)
            self._count_tokens(lead, out)
            text = str(out.content or "").strip()
            problems = ungrounded_claims(text, evidence) if text else ["an empty reply"]
            if problems:
                retry = list(msgs) + [AIMessage(text), HumanMessage(self.reply_prompt["retry"].format(problems="; ".join(problems)))]
                out = self._call(lambda: self.model.invoke(retry), lead)
                self._count_tokens(lead, out)
                text = str(out.content or "").strip()
                if not text or ungrounded_claims(text, evidence):
                    raise Fallback("grounding", "; ".join(problems))
        except Fallback as f:
            self._fallback(lead, f.cause)
            return self.rules.compose(decision, lead, sources, history)
        return Reply(text=text, prompt="reply", prompt_version=self.reply_prompt.get("version"), model=self.model_name)

    def compose_stream(self, decision: Decision, lead: LeadView, sources: list[Any],
                       history: list[dict[str, str]]) -> Iterator[str | Reply]:
        """Yield text deltas as the model writes, then the final Reply. Past the deadline or on an
        error the deterministic reply is the final Reply (the turn shows it instead)."""
        if self._uses_rules(decision):
            yield self.rules.compose(decision, lead, sources, history)
            return
        msgs = self._reply_messages(decision, lead, sources, history)
        deadline = (lead.deadline or time.monotonic() + 8.0) - RESERVE_S
        q: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()

        def produce() -> None:
            try:
                for chunk in self.model.stream(msgs):
                    if stop.is_set():
                        return
                    q.put(chunk)
                q.put(None)
            except Exception as e:  # noqa: BLE001 - handed to the consumer
                q.put(e)

        lead.usage["model_calls"] = lead.usage.get("model_calls", 0) + 1
        started = time.monotonic()
        _POOL.submit(produce)
        parts: list[str] = []
        cause = None
        last = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                cause = "timeout"
                break
            try:
                item = q.get(timeout=left)
            except queue.Empty:
                cause = "timeout"
                break
            if item is None:
                break
            if isinstance(item, Exception):
                cause = _cause(item)
                break
            last = item if last is None else last + item
            delta = str(item.content or "")
            if delta:
                parts.append(delta)
                yield delta
        stop.set()
        lead.usage["model_ms"] = lead.usage.get("model_ms", 0.0) + (time.monotonic() - started) * 1000
        if last is not None:
            self._count_tokens(lead, last)
        text = "".join(parts).strip()
        if cause or not text:
            self._fallback(lead, cause or "empty")
            yield self.rules.compose(decision, lead, sources, history)
            return
        yield Reply(text=text, prompt="reply", prompt_version=self.reply_prompt.get("version"), model=self.model_name)
