"""The brain seam: `understand` a message, `compose` a reply for a plan (and, if it can, stream it
or revise it). The turn only ever talks to a brain through these.

Brains: `RuleBrain` (bot/rule_brain.py) is the deterministic, offline default; the model brain
(integrations/llm/model_brain.py) words replies with any OpenAI-compatible model. A brain that
cannot help this turn raises `BrainUnavailable(cause)`; `FallbackBrain` wraps any brain with
another (as pydantic-ai's FallbackModel does), so no brain re-codes its own fallback.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

from .extract import Understanding
from .text import load_yaml

if TYPE_CHECKING:
    from .compose import ReplyPlan

log = logging.getLogger("sdr.brain")
PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@lru_cache(maxsize=None)
def load_prompt(name: str) -> dict[str, Any]:
    """A prompt file from prompts/ (YAML with `name` and `version`), read once per process."""
    path = PROMPTS_DIR / f"{name}.yaml"
    data = load_yaml(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "version" not in data:
        raise ValueError(f"{path}: a prompt file needs 'name' and 'version' keys")
    return data


@dataclass
class LeadView:
    """What a brain may know about the lead this turn, and where it reports its costs."""
    id: str
    fields: dict[str, Any]
    stage: str
    score: float
    asking: str | None = None       # understand: the field the last reply asked for
    today: date | None = None
    message: str = ""               # the visitor's message this turn
    deadline: float | None = None   # time.monotonic() by which the reply must be ready
    usage: dict[str, Any] = field(default_factory=dict)   # model calls, tokens, latency, fallbacks this turn
    offered_slots: list[Any] = field(default_factory=list)   # understand: meeting times offered lately (Slot)
    timezone: str = "UTC"           # the visitor's time zone (IANA)
    now: datetime | None = None     # aware UTC, for reading "tomorrow at 3"
    language: str = "en"            # ISO 639-1 code of the language to answer in (bot/language.py)
    pending_facts: dict[str, Any] = field(default_factory=dict)   # what the last reply call read (Reply.facts)


@dataclass
class Reply:
    text: str
    prompt: str
    prompt_version: Any
    model: str
    evidence: list[str] = field(default_factory=list)   # template text the reply was built from
    facts: dict[str, Any] = field(default_factory=dict)  # facts the reply call read, validated: stored with the
    #                                                    turn, understood with the lead's next message


class BrainUnavailable(Exception):
    """The brain could not help this turn; `cause` says why (timeout, rate_limit, server_error,
    connection, malformed, grounding, empty...). The caller falls back, it never fails the turn."""

    def __init__(self, cause: str, detail: str = "", partial: Any = None):
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause
        self.partial = partial   # what the brain already has that the fallback would redo (the rules' reading)


class Brain(Protocol):
    """understand + compose; a brain may also offer `compose_stream(plan, view, history)`
    yielding text deltas then the final Reply, and `revise(plan, view, history, draft, problems)`
    returning a corrected Reply (or None) when the guard rejected its draft."""
    name: str

    def understand(self, message: str, lead: LeadView, history: list[dict[str, str]]) -> Understanding: ...

    def compose(self, plan: "ReplyPlan", lead: LeadView, history: list[dict[str, str]]) -> Reply: ...


def note_fallback(view: LeadView, cause: str) -> None:
    view.usage.setdefault("fallbacks", []).append(cause)
    log.warning("brain fell back to the deterministic brain (%s)", cause)


class FallbackBrain:
    """`primary`, and `fallback` whenever it raises BrainUnavailable (the cause is recorded in the
    turn's usage). Replies whose words are fixed (refusals, goodbyes, exact meeting times) go to
    the fallback directly: a model adds risk and cost there, nothing else."""

    def __init__(self, primary: Any, fallback: Any):
        self.primary, self.fallback = primary, fallback
        self.name = primary.name

    def understand(self, message: str, lead: LeadView, history: list[dict[str, str]]) -> Understanding:
        try:
            return self.primary.understand(message, lead, history)
        except BrainUnavailable as e:
            note_fallback(lead, e.cause)
            return e.partial if e.partial is not None else self.fallback.understand(message, lead, history)

    def compose(self, plan: "ReplyPlan", lead: LeadView, history: list[dict[str, str]]) -> Reply:
        if plan.fixed_words:
            return self.fallback.compose(plan, lead, history)
        try:
            return self.primary.compose(plan, lead, history)
        except BrainUnavailable as e:
            note_fallback(lead, e.cause)
            return self.fallback.compose(plan, lead, history)

    def revise(self, plan: "ReplyPlan", lead: LeadView, history: list[dict[str, str]], draft: Reply,
               problems: list[str]) -> Reply | None:
        revise = getattr(self.primary, "revise", None)
        if revise is None:
            return None
        try:
            return revise(plan, lead, history, draft, problems)
        except BrainUnavailable as e:
            note_fallback(lead, e.cause)
            return None

    def write_follow_up(self, **kwargs: Any) -> str:
        """A nurture email's words by the primary brain (bot/sequences.py falls back to the
        template on BrainUnavailable, as for a reply)."""
        write = getattr(self.primary, "write_follow_up", None)
        if write is None:
            raise BrainUnavailable("unsupported", f"{self.primary.name} does not write follow-ups")
        return write(**kwargs)

    def compose_stream(self, plan: "ReplyPlan", lead: LeadView, history: list[dict[str, str]]) -> Iterator[str | Reply]:
        stream = getattr(self.primary, "compose_stream", None)
        if plan.fixed_words or stream is None:
            yield self.compose(plan, lead, history)
            return
        try:
            yield from stream(plan, lead, history)
        except BrainUnavailable as e:
            note_fallback(lead, e.cause)
            yield self.fallback.compose(plan, lead, history)
