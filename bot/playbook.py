"""The playbook: the YAML a marketer edits — questions, scoring rules, thresholds, vocabulary.

Loaded and validated once at start. A bad key fails with the file and the key named, so the
person who edited it knows what to fix.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from knowledge.ingest import CONTENT_TYPES

from .text import dump_yaml, load_yaml, words_pattern

DEFAULT_PLAYBOOK = Path(__file__).with_name("default_playbook.yaml")

FIELD_NAMES = (
    "name", "email", "company", "role", "seniority", "company_size",
    "industry", "need", "timeline", "budget",
)
SENIORITIES = ("c_level", "vp", "director", "manager", "individual", "student")
TIMELINES = ("now", "this_quarter", "next_quarter", "this_year", "later")
STAGES = ("new", "engaged", "mql", "sql", "meeting_booked", "disqualified", "human")


class PlaybookError(ValueError):
    """The playbook file is missing, not YAML, or has a bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Company(_Strict):
    name: str = "our company"
    product: str = ""
    assistant_name: str = "the assistant"
    tone: str = "friendly, brief"
    postal_address: str = ""   # in the footer of every email (CAN-SPAM, 15 U.S.C. 7704(a)(5)(A)(iii))
    website: str | None = None


FormLeadField = Literal["email", "name", "first_name", "last_name", "company", "role", "phone", "company_size",
                        "industry", "timeline", "budget", "message", "page_url", "referrer", "country", "timezone",
                        "consent"]


class FormSource(_Strict):
    """How one form source's fields become lead fields (`fields`: form field name or Typeform
    ref → lead field, on top of the usual names) and which engagement event a submission is
    (`event`, or `by_form`: form name → event, for a source that sends several forms — a demo
    request is not a guide download)."""
    fields: dict[str, FormLeadField] = {}
    event: str = "contact_sales"
    by_form: dict[str, str] = {}


def _zone(v: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r}; use an IANA name like Europe/Berlin or America/New_York") from None
    return v


TimeZoneName = Annotated[str, AfterValidator(_zone)]   # an IANA time zone (zoneinfo knows it)


class Thresholds(_Strict):
    mql: float = 25
    sql: float = 50

    @model_validator(mode="after")
    def _ordered(self) -> "Thresholds":
        if self.mql >= self.sql:
            raise ValueError(f"mql ({self.mql}) must be lower than sql ({self.sql})")
        return self


class QualificationField(_Strict):
    name: Literal[FIELD_NAMES]  # type: ignore[valid-type]
    priority: int = 50
    question: str | None = None
    asked_with: str | None = None
    ask: bool = True


class FitRule(_Strict):
    field: Literal[FIELD_NAMES]  # type: ignore[valid-type]
    points: float
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    gte: float | None = None
    lte: float | None = None
    eq: Any = None
    present: bool | None = None
    reason: str | None = None
    id: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _has_condition(self) -> "FitRule":
        if all(v is None for v in (self.in_, self.not_in, self.gte, self.lte, self.eq, self.present)):
            raise ValueError("a fit rule needs a condition: one of in, not_in, gte, lte, eq, present")
        return self

    def matches(self, value: Any) -> bool:
        if value is None or value == "":
            return self.present is False
        if self.present is not None and not self.present:
            return False
        if self.in_ is not None and value not in self.in_:
            return False
        if self.not_in is not None and value in self.not_in:
            return False
        if self.eq is not None and value != self.eq:
            return False
        if self.gte is not None or self.lte is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            if self.gte is not None and value < self.gte:
                return False
            if self.lte is not None and value > self.lte:
                return False
        return True

    def describe(self) -> str:
        parts = []
        if self.in_ is not None:
            parts.append(f"{self.field} in {', '.join(map(str, self.in_))}")
        if self.not_in is not None:
            parts.append(f"{self.field} not in {', '.join(map(str, self.not_in))}")
        if self.gte is not None:
            parts.append(f"{self.field} ≥ {self.gte:g}")
        if self.lte is not None:
            parts.append(f"{self.field} ≤ {self.lte:g}")
        if self.eq is not None:
            parts.append(f"{self.field} = {self.eq}")
        if self.present:
            parts.append(f"{self.field} known")
        if self.present is False:
            parts.append(f"{self.field} unknown")
        return " and ".join(parts)


class EngagementRule(_Strict):
    points: float
    daily_cap: float | None = None   # points a lead may earn from this event type per UTC day
    public: bool = False             # a browser may report it (for its own session); else servers only

    @field_validator("daily_cap")
    @classmethod
    def _positive(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("daily_cap must be positive")
        return v


class Decay(_Strict):
    half_life_days: float | None = 30

    @field_validator("half_life_days")
    @classmethod
    def _positive(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("half_life_days must be positive (or null for no decay)")
        return v


class Disqualify(_Strict):
    seniority: list[Literal[SENIORITIES]] = ["student"]  # type: ignore[valid-type]
    job_seekers: bool = True
    competitors: list[str] = []


class Meeting(_Strict):
    url: str | None = None
    length_minutes: int = 30


class Handoff(_Strict):
    channel: str | None = None


class Rep(_Strict):
    """A sales rep who receives handoffs and takes meetings."""
    id: str
    name: str
    email: str
    slack_user_id: str | None = None
    timezone: TimeZoneName = "UTC"
    working_hours: str = "09:00-17:00"                       # local time, e.g. "09:00-17:30"
    working_days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = ["mon", "tue", "wed", "thu", "fri"]  # type: ignore[valid-type]


    @field_validator("working_hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        import re as _re
        m = _re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)", v.strip())
        if not m or (int(m.group(1)), int(m.group(2))) >= (int(m.group(3)), int(m.group(4))):
            raise ValueError(f"working_hours {v!r} should look like 09:00-17:00 (start before end)")
        return v.strip()


class Calendar(_Strict):
    backend: Literal["local", "caldav", "calcom"] = "local"
    slot_minutes: int = 30
    min_notice_hours: float = 4          # no slot sooner than this
    days_ahead: int = 10                 # how far ahead to offer slots
    caldav_url: str | None = None        # password from SDR_CALDAV_PASSWORD, user from SDR_CALDAV_USERNAME
    calcom_api_url: str = "https://api.cal.com"
    calcom_event_type_id: int | None = None   # key from CALCOM_API_KEY


class LLM(_Strict):
    provider: Literal["openai", "none"] = "none"
    model: str | None = None
    base_url: str | None = None
    temperature: float = 0.2


# ---------------------------------------------------------------------------------------------
# Vocabulary: the words of what is sold (needs, question topics, product-specific intents)


_NOT_PLAIN = re.compile(r"[\\()\[\]{}|?^$]|\*(?!$)|\.\*")


def _plain_word(v: str) -> str:
    """A word or phrase a marketer writes: matched as whole words, case-insensitive; a trailing
    `*` matches any ending (`forecast*`: forecast, forecasts, forecasting). Not a regex."""
    w = " ".join(v.split()).lower()
    if not w or w == "*":
        raise ValueError("empty word")
    if _NOT_PLAIN.search(w):
        raise ValueError(f"{v!r} looks like a regex; write plain words or phrases "
                         "(a trailing * matches any ending, e.g. forecast*)")
    return w


Word = Annotated[str, AfterValidator(_plain_word)]
TopicName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class Topic(_Strict):
    """A kind of question visitors ask (pricing, integration…): the words that signal it and how
    the content answers it."""
    words: list[Word]
    expand: str = ""                 # words added to the retrieval query when this topic is asked
    answer_types: list[Literal[CONTENT_TYPES]] = []  # type: ignore[valid-type]  # content types that answer it
    boost: float = Field(default=0, ge=0, le=0.2)   # ranking bonus for those types (strongest topic wins)
    questions_only: bool = False     # recognised in questions only ("our customers…" is not asking for one)
    price_asks: list[Word] = []      # asking for a figure: answer with the piece's priced headings


IntentName = Literal["opt_out", "human", "meeting", "identity", "pricing", "support", "job_seeker", "student",
                     "competitor", "none"]


class Intents(_Strict):
    """Product words for asking to meet, and labelled examples for recognising intents by meaning
    in any language (bot/intents.py): the nearest example counts when it is `min_similarity` close
    (cosine, multilingual-e5-small) and `margin` closer than the nearest ordinary (`none`) one."""
    book: list[Word] = []            # asking for a meeting in this product's words (demo, site visit…)
    examples: dict[IntentName, list[Annotated[str, Field(min_length=2, max_length=300)]]] = {}  # type: ignore[valid-type]
    min_similarity: float = Field(default=0.9, ge=0.5, le=1.0)
    margin: float = Field(default=0.04, ge=0.0, le=0.5)


class Vocabulary(_Strict):
    """The product's words. A key left out keeps the default playbook's value."""
    needs: list[Word] = []           # a statement with one of these is a need we solve
    topics: dict[TopicName, Topic] = {}
    intents: Intents = Intents()

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        base = _default_vocabulary_data()
        merged = {**{k: v for k, v in base.items() if k not in data}, **data}
        if isinstance(data.get("intents"), dict) and isinstance(base.get("intents"), dict):
            merged["intents"] = {**base["intents"], **data["intents"]}
        return merged


@lru_cache(maxsize=1)
def _default_vocabulary_data() -> dict[str, Any]:
    """The raw `vocabulary:` of the shipped default playbook (the defaults of every other one)."""
    try:
        data = load_yaml(DEFAULT_PLAYBOOK.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    vocab = data.get("vocabulary") if isinstance(data, dict) else None
    return vocab if isinstance(vocab, dict) else {}


@dataclass(frozen=True)
class CompiledTopic:
    name: str
    pattern: re.Pattern[str] | None
    expand: str
    answer_types: tuple[str, ...]
    boost: float
    questions_only: bool
    price_asks: re.Pattern[str] | None


@dataclass(frozen=True)
class Lexicon:
    """The vocabulary compiled once per playbook (see `Playbook.lexicon`)."""
    needs: re.Pattern[str] | None
    topics: tuple[CompiledTopic, ...]
    book: re.Pattern[str] | None

    def topic(self, name: str) -> CompiledTopic | None:
        return next((t for t in self.topics if t.name == name), None)

    def topics_in(self, text: str, *, question: bool) -> set[str]:
        return {t.name for t in self.topics if t.pattern is not None and (question or not t.questions_only)
                and t.pattern.search(text)}

    def is_need(self, text: str) -> bool:
        return self.needs is not None and self.needs.search(text) is not None

    def asks_to_book(self, text: str) -> bool:
        return self.book is not None and self.book.search(text) is not None

    def expansions(self, topics: Iterable[str]) -> list[str]:
        """Words to add to a retrieval query for these topics, in name order."""
        return [t.expand for name in sorted(topics) if (t := self.topic(name)) and t.expand]

    def prefer_types(self, topics: Iterable[str]) -> dict[str, float] | None:
        """The ranking bonus of the strongest boosted topic asked (ties: the playbook's order)."""
        best: CompiledTopic | None = None
        for t in self.topics:
            if t.name in topics and t.boost > 0 and t.answer_types and (best is None or t.boost > best.boost):
                best = t
        return {ty: best.boost for ty in best.answer_types} if best else None

    def answers_topic(self, content_type: str, topics: Iterable[str]) -> bool:
        return any(content_type in t.answer_types for name in topics if (t := self.topic(name)))


def compile_vocabulary(v: Vocabulary) -> Lexicon:
    topics = tuple(CompiledTopic(name, words_pattern(t.words), " ".join(t.expand.split()), tuple(t.answer_types),
                                 t.boost, t.questions_only, words_pattern(t.price_asks))
                   for name, t in v.topics.items())
    return Lexicon(needs=words_pattern(v.needs), topics=topics, book=words_pattern(v.intents.book))


class Pricing(_Strict):
    """The price floor, as the pricing page states it: what `plan` costs at least per `period`. A
    budget stated below it scores the fit rule `budget_below_floor` and is answered with the floor
    and the plans that fit (`fits`, quoted with their prices from the pricing page)."""
    plan: str
    floor: float = Field(gt=0)
    currency: str = "USD"
    period: Literal["year", "month"] = "year"
    fits: list[str] = []


# ---------------------------------------------------------------------------------------------
# Nurture sequences (issue 13): time- and action-based email tracks, with caps and courtesy

_DURATION_RE = re.compile(r"^\s*(\d+)\s*(m|h|d|w)\s*$")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}


def parse_duration(value: Any) -> timedelta:
    """A playbook duration: a whole number and a unit, `30m`, `2h`, `3d` or `2w` (minutes, hours,
    days, weeks). Raises ValueError naming the accepted form."""
    m = _DURATION_RE.match(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if m is None or int(m.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a duration; write a positive whole number and a unit: 30m, 2h, 3d or 2w")
    return timedelta(minutes=int(m.group(1)) * _UNIT_MINUTES[m.group(2)])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
FUNNEL_STAGES = ("awareness", "consideration", "decision")
ENROL_TRIGGERS = ("form_fill", "chat_ended_unqualified")
EXIT_CONDITIONS = ("replied", "sql", "meeting_booked", "unsubscribed", "bounced", "human", "handed_off", "disqualified")


def _on_key(v: Any) -> Any:
    """YAML 1.1 reads an unquoted `on:` key as the boolean true (PyYAML does): take it as "on"."""
    if isinstance(v, dict) and True in v:
        v = {("on" if k is True else k): val for k, val in v.items()}
    return v


class StepWhen(_Strict):
    """An action-based step: due when the lead does `event` (an engagement event type) while
    enrolled, or when the lead has been quiet (no message, no engagement) for `quiet_for`."""
    event: str | None = None
    quiet_for: Duration | None = None

    @model_validator(mode="after")
    def _one(self) -> "StepWhen":
        if (self.event is None) == (self.quiet_for is None):
            raise ValueError("give exactly one of event or quiet_for")
        return self


class SequenceStep(_Strict):
    """One email of a sequence. Time-based steps (`after`: a delay from enrolment for the first,
    from the previous time-based step after that) run in order; action-based steps (`when`) run
    once each when their trigger happens. `send: content` emails the piece the recommender picks
    for the lead's industry and persona at `stage` (and of `type`, when given), never one the lead
    already received; `send: template` emails the named template of prompts/follow_up.yaml."""
    id: str | None = None
    after: Duration | None = None
    when: StepWhen | None = None
    send: Literal["content", "template"]
    stage: Literal[FUNNEL_STAGES] | None = None  # type: ignore[valid-type]
    type: Literal[CONTENT_TYPES] | None = None  # type: ignore[valid-type]
    template: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "SequenceStep":
        if (self.after is None) == (self.when is None):
            raise ValueError("give exactly one of after (a delay, e.g. 3d) or when (an event or quiet_for)")
        if self.send == "template" and not self.template:
            raise ValueError("send: template needs template: <name of a template in prompts/follow_up.yaml>")
        if self.send == "content" and self.template:
            raise ValueError("template is for send: template; a content step picks a piece (stage, type)")
        if self.template and self.template not in follow_up_templates():
            raise ValueError(f"template {self.template!r} is not in prompts/follow_up.yaml; "
                             f"known: {', '.join(sorted(follow_up_templates()))}")
        return self


class Enroll(_Strict):
    """Who enters: leads arriving by one of `on` whose stage is in `stage_in` (and who have an
    email address). A chat has ended when the visitor has been silent for `chat_idle`."""
    on: list[Literal[ENROL_TRIGGERS]]  # type: ignore[valid-type]
    _yaml_on = model_validator(mode="before")(classmethod(lambda cls, v: _on_key(v)))
    stage_in: list[Literal[STAGES]] = ["new", "engaged", "mql"]  # type: ignore[valid-type]
    chat_idle: Duration = timedelta(minutes=30)


class SequenceExit(_Strict):
    """What ends the sequence for a lead at once, before anything else is sent; and the
    over-nurturing stop: `unengaged_after` emails of this sequence with no open, click or reply."""
    on: list[Literal[EXIT_CONDITIONS]] = list(EXIT_CONDITIONS)  # type: ignore[valid-type]
    _yaml_on = model_validator(mode="before")(classmethod(lambda cls, v: _on_key(v)))
    unengaged_after: int | None = Field(default=3, ge=1)


class Sequence(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    name: str | None = None
    enroll: Enroll
    steps: list[SequenceStep] = Field(min_length=1)
    exit: SequenceExit = SequenceExit()

    @model_validator(mode="after")
    def _step_ids(self) -> "Sequence":
        for i, step in enumerate(self.steps):
            if step.id is None:
                step.id = f"step{i + 1}"
        ids = [s.id for s in self.steps]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"two steps share the id {', '.join(map(repr, twice))}")
        return self

    def step(self, step_id: str) -> SequenceStep | None:
        return next((s for s in self.steps if s.id == step_id), None)


class Limits(_Strict):
    """Caps and courtesy for every email that is not a first touch or a reply to the lead's own
    email: at most `emails_per_lead_per_week` in any 7 days, none in `quiet_hours` or on weekends
    in the lead's time zone (`timezone` when the lead's is unknown)."""
    emails_per_lead_per_week: int = Field(default=2, ge=0)
    min_gap: Duration = timedelta(days=1)   # at least this long between two of them
    quiet_hours: str | None = "20:00-08:00"
    skip_weekends: bool = True
    timezone: TimeZoneName = "America/New_York"

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)", v.strip())
        if not m or m.group(1, 2) == m.group(3, 4):
            raise ValueError(f"quiet_hours {v!r} should look like 20:00-08:00 (local time; may cross midnight)")
        return v.strip()



@lru_cache(maxsize=1)
def follow_up_templates() -> frozenset[str]:
    """The template names of prompts/follow_up.yaml (`templates:`)."""
    path = Path(__file__).resolve().parent.parent / "prompts" / "follow_up.yaml"
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return frozenset()
    return frozenset((data.get("templates") or {}) if isinstance(data, dict) else ())


class Playbook(_Strict):
    version: int = 1
    company: Company = Company()
    thresholds: Thresholds = Thresholds()
    fields: list[QualificationField] = []
    fit: list[FitRule] = []
    engagement: dict[str, EngagementRule] = {}
    decay: Decay = Decay()
    disqualify: Disqualify = Disqualify()
    industries: dict[str, list[str]] = {}
    personas: dict[str, list[str]] = {}
    meeting: Meeting = Meeting()
    handoff: Handoff = Handoff()
    llm: LLM = LLM()
    reps: list[Rep] = []
    calendar: Calendar = Calendar()
    pricing: Pricing | None = None
    forms: dict[str, FormSource] = {}     # by source: generic, typeform, webflow, hubspot (or default)
    sequences: list[Sequence] = []
    limits: Limits = Limits()
    vocabulary: Vocabulary = Field(default_factory=Vocabulary)
    source: str = Field(default="<memory>", exclude=True)
    _lexicon: Lexicon | None = PrivateAttr(default=None)

    @field_validator("engagement", mode="before")
    @classmethod
    def _short_form(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: ({"points": p} if isinstance(p, (int, float)) and not isinstance(p, bool) else p)
                    for k, p in v.items()}
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Playbook":
        names = [f.name for f in self.fields]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"fields: {', '.join(sorted(dupes))} listed twice")
        for f in self.fields:
            if f.asked_with and f.asked_with not in names:
                raise ValueError(f"fields: {f.name}.asked_with names {f.asked_with!r}, which is not a field")
            if f.ask and not f.asked_with and not f.question:
                raise ValueError(f"fields: {f.name} needs a question (or ask: false)")
        rep_ids = [r.id for r in self.reps]
        if len(set(rep_ids)) != len(rep_ids):
            raise ValueError("reps: two reps share an id")
        for i, rule in enumerate(self.fit):
            if rule.id is None:
                rule.id = f"fit.{rule.field}.{i + 1}"
        for source, form in self.forms.items():
            for where, event in [("event", form.event)] + [(f"by_form[{k!r}]", v) for k, v in form.by_form.items()]:
                if event not in self.engagement:
                    raise ValueError(f"forms: {source}.{where} {event!r} is not an engagement event; "
                                     f"known: {', '.join(sorted(self.engagement))}")
        ids = [q.id for q in self.sequences]
        if len(set(ids)) != len(ids):
            raise ValueError("sequences: two sequences share an id")
        for q in self.sequences:
            for step in q.steps:
                if step.when is not None and step.when.event and step.when.event not in self.engagement:
                    raise ValueError(f"sequences: {q.id}.{step.id}.when.event {step.when.event!r} is not an engagement "
                                     f"event; known: {', '.join(sorted(self.engagement))}")
        return self

    def sequence(self, sequence_id: str) -> Sequence | None:
        return next((q for q in self.sequences if q.id == sequence_id), None)

    # -- what the rest of the code asks of a playbook ---------------------------------------

    def field(self, name: str) -> QualificationField | None:
        return next((f for f in self.fields if f.name == name), None)

    def rep(self, rep_id: str | None) -> Rep | None:
        return next((r for r in self.reps if r.id == rep_id), None)

    def question_for(self, name: str) -> str | None:
        f = self.field(name)
        if f is None:
            return None
        if f.asked_with:
            return self.question_for(f.asked_with)
        return f.question

    def grounding_text(self) -> str:
        """Everything the playbook lets the agent state as fact (for the grounding guard)."""
        cached = self.__dict__.get("_grounding")
        if cached is None:
            # Not the vocabulary: the words visitors use are not facts we may state ("hipaa" there
            # must not ground a claim of HIPAA compliance); nor the nurture timing.
            cached = dump_yaml(self.model_dump(mode="json", by_alias=True, exclude={"vocabulary", "sequences", "limits"}),
                               sort_keys=False)
            self.__dict__["_grounding"] = cached
        return cached

    def lexicon(self) -> Lexicon:
        """The vocabulary's patterns, compiled on first use and kept for this playbook's life."""
        if self._lexicon is None:
            self._lexicon = compile_vocabulary(self.vocabulary)
        return self._lexicon


def _format_error(path: str, err: ValidationError, data: Any = None) -> str:
    lines = [f"invalid playbook {path}:"]
    for e in err.errors():
        loc = _named_loc([p for p in e["loc"] if p not in ("function-after", "function-before")], data) or "(top level)"
        lines.append(f"  - {loc}: {e['msg']}")
    lines.append("Fix the key(s) above; the documented default is bot/default_playbook.yaml.")
    return "\n".join(lines)


def _named_loc(loc: list[Any], data: Any) -> str:
    """A pydantic error location with list items named by their id where they have one
    (`sequences[1 new_inbound].steps[3 check_in].tempalte`), so the marketer finds the sequence and
    the step, not an index."""
    out, node = [], data
    for part in loc:
        item = node[part] if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node) else None
        if isinstance(item, dict) and ({"id", "send", "template", "steps"} & set(item)):   # a sequence or a step
            ident = item.get("id")
            label = f"{part + 1}" + (f" {ident}" if ident else "")
            if not ident and "template" in item:
                label += f" ({item.get('template')})"
            out[-1:] = [f"{out[-1]}[{label}]"] if out else [f"[{label}]"]
            node = item
            continue
        out.append(str(part))
        if isinstance(part, int):
            node = item
            continue
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(out)


def load_playbook(path: str | Path | None = None) -> Playbook:
    """Load and validate a playbook; the default ships with the package."""
    p = Path(path) if path else DEFAULT_PLAYBOOK
    if not p.is_file():
        raise PlaybookError(f"playbook not found: {p} (set SDR_PLAYBOOK or --playbook to an existing YAML file)")
    try:
        data = load_yaml(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise PlaybookError(f"invalid playbook {p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise PlaybookError(f"invalid playbook {p}: the top level must be a mapping of keys")
    try:
        pb = Playbook.model_validate(data)
    except ValidationError as e:
        raise PlaybookError(_format_error(str(p), e, data)) from None
    pb.source = str(p)
    return pb


@lru_cache(maxsize=1)
def default_playbook() -> Playbook:
    """The shipped default playbook, loaded once (for callers not given one)."""
    return load_playbook(DEFAULT_PLAYBOOK)
