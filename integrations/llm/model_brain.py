"""The model brain: a LangChain chat model understands and words replies; the rules still decide.

One model call a turn, as a rule (issue 14):
- understand: the rules' reading first. Only when the rules could not read a statement at all (no
  fact, no question, no intent in a message of some length) does the model extract first — one
  structured (tool-calling) call returning a validated `Extraction` against a compact schema, with
  one repair attempt; rules that are certain win, the model fills what they missed.
- compose: one call with the reply plan (bot/compose.py) as instructions. On a turn whose
  extraction was left to the rules it also asks for the facts the rules missed, as a last line
  `FACTS {json}` after the reply (stripped before anyone sees the reply, streamed or not). Those
  facts are validated, go on the Reply (`Reply.facts`), are stored with the turn (conversation state:
  any worker, any restart) and land on the lead from the next turn (the decision of this turn was made
  on the rules' reading, as every decision is made by code): the next `understand` merges them, each
  recorded with extractor "model". `revise` rewrites a reply the guard rejected, once.
- Every call runs inside the turn's deadline, with tenacity retries (exponential backoff with jitter,
  Retry-After honoured on 429). Timeout, rate limit, 5xx or malformed output raise
  `BrainUnavailable(cause)`; the `FallbackBrain` around this brain then answers with the
  deterministic brain, and the cause is counted.
"""
from __future__ import annotations

import json
import logging
import queue
import re
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

from bot.brain import BrainUnavailable, LeadView, Reply, load_prompt
from bot.language import name_of
from bot.compose import ReplyPlan, Step
from bot.extract import Fact, Understanding
from bot.playbook import SENIORITIES, TIMELINES, Playbook
from bot.rule_brain import RuleBrain
from bot.text import EMAIL_RE
from integrations.http import retry_after_s

log = logging.getLogger("sdr.llm")
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sdr-llm")
RESERVE_S = 0.3          # kept back from the deadline for the rest of the turn
MAX_ATTEMPTS = 3


FACT_FIELDS = ("name", "email", "company", "role", "seniority", "company_size", "industry", "need", "timeline",
               "budget")
INTENTS = ("question", "answer", "objection", "small_talk", "human", "unsubscribe", "booking")
ACTIONS = ("continue", "handoff", "book", "human", "unsubscribe")


class Facts(BaseModel):
    """Facts about the visitor stated in one message (None: not stated)."""
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

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is None:
            return None
        m = EMAIL_RE.search(v)
        return m.group(0).lower() if m else None


class Extraction(Facts):
    """The facts, and what the visitor wants."""
    intent: Literal["question", "answer", "objection", "small_talk", "human", "unsubscribe", "booking"] = "answer"
    questions: list[str] = Field(default_factory=list)
    requested_action: Literal["continue", "handoff", "book", "human", "unsubscribe"] = "continue"


def extraction_tool(industries: list[str]) -> dict[str, Any]:
    """The Extraction tool as sent: short, enums instead of prose, nothing nullable (a field not
    stated is left out). Validated afterwards by `Extraction` (pydantic's own schema is ~1.5k chars)."""
    s, enum = {"type": "string"}, (lambda values: {"enum": list(values)})
    props: dict[str, Any] = {
        "name": s, "email": s, "company": s, "role": s,
        "seniority": enum(("c_level", "vp", "director", "manager", "individual", "student")),
        "company_size": {"type": "integer"}, "industry": enum(industries) if industries else s,
        "need": s, "timeline": enum(("now", "this_quarter", "next_quarter", "this_year", "later")),
        "budget": {"type": ["number", "string"]}, "intent": enum(INTENTS),
        "questions": {"type": "array", "items": s}, "requested_action": enum(ACTIONS)}
    return {"type": "function", "function": {
        "name": "Extraction", "description": "What the visitor stated; omit what they did not say.",
        "parameters": {"type": "object", "properties": props}}}


MARKER = "FACTS"   # the reply's last line when the reply call also reads facts: FACTS {"company_size": 300}


def split_facts(text: str) -> tuple[str, dict[str, Any] | None]:
    """The reply without its trailing FACTS line, and the facts (None: none, or not a JSON object).
    A FACTS line that does not parse is still cut: the visitor never sees it."""
    i = text.rfind(MARKER)
    if i < 0:
        return text.strip(), None
    tail, line_start = text[i + len(MARKER):], not text[:i].strip(" `*") or text[:i].rstrip(" `*").endswith("\n")
    if not (line_start or re.match(r"\s*:?\s*\{", tail)):
        return text.strip(), None   # the word in a sentence, not the line
    m = re.search(r"\{.*\}", tail, re.DOTALL)
    try:
        facts = json.loads(m.group(0)) if m else None
    except ValueError:
        facts = None
    return text[:i].rstrip().rstrip("`*").rstrip(), facts if isinstance(facts, dict) else None


def visible_part(text: str) -> str:
    """What of a reply being streamed may be shown: everything before the FACTS line, holding back a
    tail that might be its beginning."""
    i = text.find(MARKER)
    if i >= 0:
        return text[:i].rstrip()
    for n in range(min(len(MARKER) - 1, len(text)), 0, -1):
        if MARKER.startswith(text[-n:]):
            return text[:-n]
    return text


HISTORY = 4   # messages of the conversation the reply prompt shows (the plan says what to do; this is for tone)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + " …"


def _known(fields: dict[str, Any]) -> str:
    """The lead's fields as compact JSON, without empties and the reply language (the prompt says it)."""
    return json.dumps({k: v for k, v in fields.items() if v not in (None, "", []) and k != "language"},
                      default=str, ensure_ascii=False, separators=(",", ":"))


def _retry_after(exc: BaseException | None) -> float | None:
    resp = getattr(exc, "response", None)
    return retry_after_s(resp.headers.get("retry-after")) if resp is not None else None


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
        self.tool = extraction_tool(list(playbook.industries))
        self._structured = model.with_structured_output(self.tool, method="function_calling", include_raw=True)

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
            raise BrainUnavailable("timeout", "the model did not answer inside the turn's deadline") from None
        except openai.OpenAIError as e:
            raise BrainUnavailable(_cause(e), type(e).__name__) from None
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:   # a body no client could read
            raise BrainUnavailable("malformed", f"{type(e).__name__}: {str(e)[:160]}") from None
        raise BrainUnavailable("error")  # pragma: no cover

    @staticmethod
    def _count_tokens(view: LeadView, message: Any) -> None:
        meta = getattr(message, "usage_metadata", None) or {}
        view.usage["prompt_tokens"] = view.usage.get("prompt_tokens", 0) + int(meta.get("input_tokens", 0) or 0)
        view.usage["completion_tokens"] = view.usage.get("completion_tokens", 0) + int(meta.get("output_tokens", 0) or 0)

    # -- understand ----------------------------------------------------------------------------

    def understand(self, message: str, lead: LeadView, history: list[dict[str, str]]) -> Understanding:
        """The rules' reading, with the facts the last reply call read merged in; the model extracts
        first only when the rules could not read the message at all. Raises BrainUnavailable."""
        rules = self.rules.understand(message, lead, history)
        if "injection" in rules.intents:
            return rules   # never hand an injection to the model; the refusal is the rules' job
        needed = self.needs_extraction(rules, message)   # on the rules' own reading
        self._merge_facts(rules, Facts(**self.read_facts(lead, lead.pending_facts)))   # kept last turn, checked again
        if not needed:
            lead.facts_in_reply = True   # type: ignore[attr-defined]  # compose asks for what the rules missed
            return rules
        msgs = self._extract_tmpl.format_messages(
            today=(lead.today.isoformat() if lead.today else "today"), asking=lead.asking or "nothing",
            known=_known(lead.fields), message=message)
        try:
            ext = self._extract(msgs, lead)
        except BrainUnavailable as e:   # the rules' reading is the fallback: hand it over, don't read twice
            lead.facts_in_reply = True   # type: ignore[attr-defined]
            raise BrainUnavailable(e.cause, str(e), partial=rules) from None
        return self._merge(rules, ext)

    @staticmethod
    def needs_extraction(rules: Understanding, message: str) -> bool:
        """The rules could not read this message at all: no fact, no question, no intent, no pick, in a
        statement of four words or more — the decision needs the model's reading before it is made.
        Every other turn is read by the rules, and the reply call reads what they missed."""
        if rules.fields or rules.questions or rules.pick is not None or rules.skipped:
            return False
        if rules.intents - {"answer", "small_talk", "greeting"}:
            return False
        return len(re.findall(r"\w+", message)) >= 4

    def _extract(self, msgs: list[BaseMessage], view: LeadView) -> Extraction:
        error: Any = None
        raw: Any = None
        for attempt in range(2):   # one repair
            prompt = msgs if attempt == 0 else list(msgs) + ([raw] if isinstance(raw, AIMessage) else []) + [
                HumanMessage(self.extract_prompt["repair"].format(error=str(error)[:300]))]
            out = self._call(lambda p=prompt: self._structured.invoke(p), view)
            raw = out.get("raw")
            self._count_tokens(view, raw)
            parsed, error = out.get("parsed"), out.get("parsing_error") or "no valid tool call"
            if isinstance(parsed, dict):
                try:
                    return Extraction(**parsed)
                except ValueError as e:   # pydantic's ValidationError
                    error = e
        raise BrainUnavailable("malformed", str(error)[:200])

    # -- facts read by the reply call, for the next turn ------------------------------------------

    @staticmethod
    def read_facts(lead: LeadView, facts: dict[str, Any] | None) -> dict[str, Any]:
        """The facts a reply call read that are valid for the schema and that the lead lacks: they go
        on the Reply, are stored with the turn (conversation state) and are merged into the lead's
        next message's understanding — in any worker, after any restart (checked here again then: a
        stored value the schema no longer takes is dropped, never an error)."""
        clean: dict[str, Any] = {}
        for name in FACT_FIELDS:
            if not facts or facts.get(name) in (None, "", []):
                continue
            try:
                value = getattr(Facts(**{name: facts[name]}), name)
            except ValueError:
                continue   # not valid for the schema: dropped, the reply stands
            if value is not None and lead.fields.get(name) in (None, ""):
                clean[name] = value
        return clean

    def _merge(self, rules: Understanding, ext: Extraction) -> Understanding:
        """Rules that are certain win; the model fills the gaps. Each fact keeps who found it."""
        u = self._merge_facts(rules, ext)
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

    def _merge_facts(self, u: Understanding, ext: Facts) -> Understanding:
        for name in FACT_FIELDS:
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
        return u

    # -- compose ---------------------------------------------------------------------------------

    def _instruction(self, step: Step, lead: LeadView, sources: list[Any]) -> str | None:
        """One step of the reply plan as an instruction to the model."""
        pb, k, d = self.playbook, step.kind, step.data
        ids = {h.url: i + 1 for i, h in enumerate(sources)}
        if k == "greeting":
            return f"Greet them briefly as {pb.company.assistant_name}."
        if k == "answer":
            return f"Answer \"{d['question']}\" from source [S{ids.get(d.get('url'), 1)}] only."
        if k == "unknown_integration":
            return (f"For \"{d['question']}\": {d['target']} is not in our sources. Say \"not that I know of\" "
                    "and offer to connect them with someone who can confirm. Do not say yes.")
        if k == "unknown":
            return (f"For \"{d.get('question', 'their question')}\": the sources don't answer it. Say you don't know "
                    "rather than guess, and offer to connect them with someone on the team.")
        if k == "objection":
            return "Acknowledge their concern in one short clause without arguing."
        if k == "human":
            return "Tell them you've asked someone from the team to pick this up" + (
                f"; they'll reach them at {lead.fields['email']}." if lead.fields.get("email") else ".")
        if k == "meeting_accepted":
            return "Tell them you've passed it to the sales team, who will reach out to find a time."
        if k in ("book", "book_link"):
            return (f"Tell them the team will set up a {pb.meeting.length_minutes}-minute call"
                    + (f"; give this link: {pb.meeting.url}" if pb.meeting.url else "; the sales team will reach out."))
        if k in ("offer_meeting", "offer_meeting_link"):
            return (f"Tell them they sound like a strong fit, that you've let the sales team know, and offer a "
                    f"{pb.meeting.length_minutes}-minute call" + (f" via {pb.meeting.url}." if pb.meeting.url else "."))
        if k in ("recommend_case_study", "recommend_other", "objection_price"):
            return f"Recommend \"{d['title']}\" ({d['url']}) in one sentence."
        if k in ("question", "human_email"):
            return f"End with this one question (you may rephrase it lightly): {d['text']}"
        return None   # thanks, noted, fallback: covered by the acknowledgement line

    def _plan(self, plan: ReplyPlan, lead: LeadView, sources: list[Any]) -> str:
        lines = [line for line in (self._instruction(s, lead, sources) for s in plan.steps) if line]
        if plan.summary:
            lines.insert(1 if plan.kinds[:1] == ["greeting"] else 0,
                         f"Acknowledge in a few words what they told you: {plan.summary}.")
        if plan.question is None:
            lines.append("Do not ask any question.")
        return "\n".join(f"- {line}" for line in lines)

    def _reply_messages(self, plan: ReplyPlan, lead: LeadView, history: list[dict[str, str]]) -> list[BaseMessage]:
        pb, sources = self.playbook, plan.sources()
        src = "\n".join(f"[S{i + 1}] {h.title} ({h.url}): {h.snippet or h.text[:600]}" for i, h in enumerate(sources)) or "(none)"
        hist = "\n".join(f"{m['role'].upper()}: {_clip(m['text'], 300)}" for m in history[-HISTORY:]) or "(first message)"
        facts = ""
        if getattr(lead, "facts_in_reply", False):
            facts = self.reply_prompt["facts"].format(industries="|".join(pb.industries) or "any").rstrip()
        return self._reply_tmpl.format_messages(
            assistant=pb.company.assistant_name, company=pb.company.name, product=pb.company.product,
            tone=pb.company.tone, plan=self._plan(plan, lead, sources), known=_known(lead.fields),
            sources=src, history=hist, message=lead.message, language=name_of(lead.language), facts=facts)

    def _reply(self, msgs: list[BaseMessage], lead: LeadView) -> Reply:
        out = self._call(lambda: self.model.invoke(msgs), lead)
        self._count_tokens(lead, out)
        text, facts = split_facts(str(out.content or ""))
        if not text:
            raise BrainUnavailable("empty", "the model returned no text")
        return Reply(text=text, prompt="reply", prompt_version=self.reply_prompt.get("version"), model=self.model_name,
                     facts=self.read_facts(lead, facts))

    def write_follow_up(self, *, goal: str, fields: dict[str, Any], piece: Any, history: list[str], stage: str,
                        deadline_s: float = 20.0) -> str:
        """The words of one nurture email (prompts/follow_up.yaml): plain paragraphs, no greeting or
        signature, at most one question — the caller checks grounding and falls back to the
        template. One call within `deadline_s` seconds (no visitor is waiting). Raises
        BrainUnavailable."""
        pb, prompt = self.playbook, load_prompt("follow_up")
        view = LeadView(id="", fields=fields, stage=stage, score=0.0, deadline=time.monotonic() + deadline_s)
        src = f"{piece.title} ({piece.url}): {piece.snippet or piece.text[:600]}" if piece is not None else "(none)"
        tmpl = ChatPromptTemplate.from_messages([("system", prompt["system"]), ("human", prompt["human"])])
        msgs = tmpl.format_messages(assistant=pb.company.assistant_name, company=pb.company.name, tone=pb.company.tone,
                                    language=name_of(str(fields.get("language") or "en")), goal=goal,
                                    known=json.dumps({k: v for k, v in fields.items() if k != "email"}, default=str),
                                    need=str(fields.get("need") or "(not stated)"),
                                    history="; ".join(h for h in history if h) or "(none)", piece=src)
        out = self._call(lambda: self.model.invoke(msgs), view)
        text = str(out.content or "").strip()
        if not text:
            raise BrainUnavailable("empty", "the model returned no text")
        return text

    def compose(self, plan: ReplyPlan, lead: LeadView, history: list[dict[str, str]]) -> Reply:
        """One model call worded from the plan. Raises BrainUnavailable."""
        return self._reply(self._reply_messages(plan, lead, history), lead)

    def revise(self, plan: ReplyPlan, lead: LeadView, history: list[dict[str, str]], draft: Reply,
               problems: list[str]) -> Reply:
        """Rewrite a reply the guard rejected, naming what it stated without a source (one call)."""
        msgs = self._reply_messages(plan, lead, history) + [
            AIMessage(draft.text), HumanMessage(self.reply_prompt["retry"].format(problems="; ".join(problems)))]
        return self._reply(msgs, lead)

    def compose_stream(self, plan: ReplyPlan, lead: LeadView, history: list[dict[str, str]]) -> Iterator[str | Reply]:
        """Yield text deltas as the model writes, then the final Reply. Past the deadline or on an
        error, raises BrainUnavailable after the deltas already shown (the turn resets to the safe reply)."""
        msgs = self._reply_messages(plan, lead, history)
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
        cause, last, shown = None, None, 0
        while cause is None:
            try:
                item = q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                cause = "timeout"
                break
            if item is None:
                break
            if isinstance(item, Exception):
                cause = _cause(item)
                break
            last = item if last is None else last + item
            parts.append(str(item.content or ""))
            visible = visible_part("".join(parts))   # the FACTS line is never shown
            if len(visible) > shown:
                yield visible[shown:]
                shown = len(visible)
        stop.set()
        lead.usage["model_ms"] = lead.usage.get("model_ms", 0.0) + (time.monotonic() - started) * 1000
        if last is not None:
            self._count_tokens(lead, last)
        text, facts = split_facts("".join(parts))
        if cause or not text:
            raise BrainUnavailable(cause or "empty")
        yield Reply(text=text, prompt="reply", prompt_version=self.reply_prompt.get("version"), model=self.model_name,
                    facts=self.read_facts(lead, facts))
