"""Simulated prospects: they read the SDR's reply and answer what it asks, from their `truths`.

    p = make_prospect(persona, playbook, seed=0)     # persona: a dict from evals.suite.load_suite
    text = p.opening()
    while text is not None:
        result = sdr.handle(Inbound(text=text, session_id=sid, channel="cli"))
        text = p.respond(result.reply, result.actions)
    p.asked_log      # per SDR reply: the playbook field it asked for (None: no question)

On the form and email channels (evals/run.py plays them through the core's intake) the opening is
the persona's own document: a form persona's `form` rendered as text (`form_text`), an email
persona's first email ("Subject: …" and the body) — its `volunteers` are already in it, nothing is
added. After that every prospect answers what the SDR's email asks, as in chat.

Three players share the `Prospect` protocol:

- `ScriptedProspect` — the legacy `messages:` personas, replayed whatever the SDR says.
- `RuleProspect` — deterministic: detects the field the reply asks for (`detect_asked_field`: the
  playbook's questions by similarity, then a small keyword classifier; never the bot's state) and
  answers from `truths` in varied human phrasings chosen by the seed, following the persona's
  `style`, `volunteers`, `asks` and `later`.
- `ModelProspect` — a model plays the persona (τ-bench style) through any OpenAI-compatible
  endpoint: `SDR_SIM_MODEL`, `SDR_SIM_BASE_URL` (default OPENAI_BASE_URL), `SDR_SIM_API_KEY`
  (default OPENAI_API_KEY, else "none"), `SDR_SIM_TEMPERATURE` (0.7), `SDR_SIM_TIMEOUT_S` (30).
"""
from __future__ import annotations

import difflib
import random
import re
from typing import Any, Callable, Protocol, runtime_checkable

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.extract import is_question, split_sentences
from bot.playbook import Playbook

__all__ = ["Prospect", "ScriptedProspect", "RuleProspect", "ModelProspect", "SimSettings", "make_prospect",
           "detect_asked_field", "phrasings", "is_qualified", "form_text", "own_opening"]


@runtime_checkable
class Prospect(Protocol):
    """One simulated prospect, for one conversation."""
    asked_log: list[str | None]   # per SDR reply seen: the playbook field it asked (None: no question)

    def opening(self) -> str: ...

    def respond(self, sdr_reply: str, actions: list[dict[str, Any]]) -> str | None:
        """The next message, or None when the prospect has nothing more to say."""
        ...


# ---------------------------------------------------------------------------------------------
# Which field does a reply ask for?

# A paraphrase classifier: (field, pattern) checked in order on one question sentence.
_CLASSIFIER: list[tuple[str, re.Pattern[str]]] = [(f, re.compile(p, re.I)) for f, p in [
    ("email", r"\be-?mail\b|\baddress (?:to|where|for)\b|where can (?:we|they|i|someone) reach you"),
    ("name", r"who am i (?:talking|speaking|chatting) (?:to|with)|\byour name\b|what should i call you|"
             r"who(?:'s| is) this\b|who do i have the pleasure|may i ask who"),
    ("company_size", r"how many (?:people|employees|staff|folks|reps|sellers|team members|ftes?|of you)|"
                     r"how (?:big|large) is (?:your|the) (?:company|team|org|organi[sz]ation|business)|"
                     r"company(?:'s)? size|size of (?:your|the) (?:company|team|org)|headcount|\bhow big are you"),
    ("budget", r"\bbudget|set aside|how much (?:are|were|would|could) you (?:\w+ )?(?:to )?(?:spend|invest)|"
               r"spend on (?:this|a tool|something like)|price range|funding for this"),
    ("timeline", r"\btime ?line|\btime ?frame|\bby when\b|\bhow soon\b|\bdeadline\b|"
                 r"when (?:are|do|would|will) you (?:\w+ )?(?:hoping|looking|planning|want|need|aim|like|expect)|"
                 r"when (?:would|do|will) (?:this|it|you) need|up and running|go live|this quarter, next quarter"),
    ("company", r"which (?:company|organi[sz]ation|org|business|firm)|what(?:'s| is)? (?:the name of )?your company|"
                r"what company|company are you (?:with|from|at)|where do you work|who do you work (?:for|with)|"
                r"name of your (?:company|organi[sz]ation|business)"),
    ("industry", r"\bindustry\b|\bsector\b|\bvertical\b|line of business|what (?:does|do) your (?:company|business|team) do|"
                 r"what space are you in|what market"),
    ("role", r"\byour role\b|\bjob title\b|\byour title\b|\byour position\b|what do you do (?:there|at|for)|"
             r"what(?:'s| is) your (?:function|job)|\bseniority\b|role (?:on|in) the team|what team are you (?:on|in)"),
    ("need", r"help(?:s)? (?:you )?with|what brings you|what are you (?:trying|hoping|looking) to (?:solve|fix|improve|do|achieve|get)|"
             r"what problem|main (?:challenge|problem|pain)|pain point|what would you (?:like|want) to (?:fix|improve|solve)|"
             r"looking to (?:solve|fix|improve)|hoping (?:\w+ ){0,3}(?:helps?|solves?|fix(?:es)?|does)"),
]]
_QUESTION_START = re.compile(r"^(?:and |also |so |then |oh,? )?(?:do|does|can|could|would|will|is|are|how|what|"
                             r"what's|which|who|where|when|may|might|mind)\b", re.I)
SIMILARITY = 0.72      # a paraphrase of a playbook question, when no keyword decides
SAME_QUESTION = 0.85   # the playbook's question itself (maybe reworded a little)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _questions(reply: str) -> list[str]:
    """The question sentences of a reply, last first (the SDR asks at the end)."""
    out = []
    for s in split_sentences(reply.replace("—", ". ").replace(" – ", ". ")):
        if s.endswith("?") or _QUESTION_START.match(s) or (is_question(s) and len(s) < 120):
            out.append(s)
    return out[::-1]


def _by_similarity(sentence: str, playbook: Playbook, threshold: float) -> str | None:
    best, best_field = 0.0, None
    s = _norm(sentence)
    for f in playbook.fields:
        if not f.question:
            continue
        q = _norm(f.question.split("—")[0])
        r = max(difflib.SequenceMatcher(None, s, q).ratio(), difflib.SequenceMatcher(None, s, _norm(f.question)).ratio())
        if r > best:
            best, best_field = r, f.name
    return best_field if best >= threshold else None


def _canonical(field: str | None, playbook: Playbook) -> str | None:
    """A field asked together with another (seniority with role) counts as that other one."""
    f = playbook.field(field) if field else None
    return f.asked_with if f is not None and f.asked_with else field


def detect_asked_field(reply: str, playbook: Playbook) -> str | None:
    """The playbook field an SDR reply asks the prospect for, or None when it asks none: each
    question sentence, the last first, is compared with the playbook's questions (similarity ≥
    0.85), then a keyword classifier of paraphrases, then the questions again (≥ 0.72). A field that is `asked_with` another
    (seniority with role) is reported as that other field."""
    if not reply or "?" not in reply and not _QUESTION_START.search(reply):
        return None
    for sentence in _questions(reply):
        field = _by_similarity(sentence, playbook, SAME_QUESTION) \
            or next((f for f, rx in _CLASSIFIER if rx.search(sentence)), None) \
            or _by_similarity(sentence, playbook, SIMILARITY)
        if field is not None:
            return _canonical(field, playbook)
    return None


# ---------------------------------------------------------------------------------------------
# How a prospect says a truth. Each bank: "standalone" (understood without the question it
# answers), "bare" (a reply that needs the question: "1200"), "hard" (human but harder to read;
# only the chatty and typos styles use them).

Bank = dict[str, list[str]]

_INDUSTRY_WORDS = {
    "healthcare": ("we run a hospital network", "hospitals and clinics", "patient care, basically"),
    "saas": ("we sell B2B software", "b2b software", "we build apps people pay for monthly"),
    "financial_services": ("we're in banking", "fintech", "we move money for people"),
    "manufacturing": ("we're a manufacturer", "manufacturing", "we make industrial parts"),
    "logistics": ("we do freight and trucking", "freight", "we move stuff around the country"),
    "retail": ("we're a retailer", "ecommerce", "we sell stuff online and in malls"),
    "education": ("we sell to schools", "edtech", "we help teachers"),
}
_TIMELINES: dict[str, Bank] = {
    "now": {"standalone": ["asap, we need it now", "we need something right away", "as soon as possible"],
            "bare": ["asap", "right away"], "hard": ["the sooner the better honestly"]},
    "this_quarter": {"standalone": ["hoping before the end of the quarter", "we want something live this quarter",
                                    "this quarter"], "bare": ["this quarter", "end of quarter"],
                     "hard": ["before the quarter closes"]},
    "next_quarter": {"standalone": ["probably next quarter", "next quarter most likely", "early next quarter"],
                     "bare": ["next quarter", "next qtr"], "hard": ["sometime after the current quarter"]},
    "this_year": {"standalone": ["later this year", "by the end of the year"], "bare": ["this year"],
                  "hard": ["before the holidays"]},
    "later": {"standalone": ["no rush, probably next year", "just exploring for now"],
              "bare": ["next year", "no rush"], "hard": ["not for a while"]},
}
_UNKNOWN = ["not sure, to be honest", "I'd rather not say", "don't know yet"]
_SMALL_TALK = ["It's been a hectic week here.", "Appreciate the quick replies, by the way.",
               "We've looked at a few tools already."]
_EVASIONS = ["not sure yet, what does it cost?", "hmm, let me come back to that. Do you have customers like us?"]


def _size_bank(n: int) -> Bank:
    if n <= 1:
        return {"standalone": ["it's just me", "just me for now"], "bare": ["just me"], "hard": ["solo"]}
    c = f"{n:,}"
    hard = [f"{c}-ish people", f"headcount's around {c}"]
    if n >= 1000 and n % 100 == 0:
        hard.insert(0, f"we're ~{n / 1000:g}k people")
    return {"standalone": [f"about {c} employees", f"we're around {n} people", f"a team of about {n}",
                           f"roughly {c} people"], "bare": [str(n), c, f"~{n}"], "hard": hard}


def _title_parts(role: str) -> tuple[str, str] | None:
    m = re.match(r"(?i)^\s*(vp|svp|evp|vice president|director)\s+of\s+(.+)$", role)
    return (m.group(1), m.group(2).strip()) if m else None


_SENIORITY_TITLES = {"c_level": "CEO", "vp": "VP", "director": "director", "manager": "manager",
                     "individual": "analyst", "student": "student"}


def _role_bank(role: str | None, seniority: str | None) -> Bank:
    if not role:
        t = _SENIORITY_TITLES.get(seniority or "", "on the team")
        art = "an" if t[0] in "aeiou" else "a"
        return {"standalone": [f"I'm {art} {t}", f"I'm {art} {t} here"], "bare": [t], "hard": [f"{t}, more or less"]}
    bank: Bank = {"standalone": [f"I'm the {role}", f"{role} here"], "bare": [role], "hard": []}
    parts = _title_parts(role)
    if parts:
        title, area = parts
        bank["bare"].append(f"{title}, {area.lower()}")
        bank["bare"].append(f"{title} {area.lower()}")
        bank["hard"].append(f"I run {area.lower()}, {title} level")
    else:
        bank["hard"].append(f"{role.lower()}, for my sins")
    return bank


def _money(n: float) -> str:
    n = int(n) if float(n).is_integer() else n
    return f"{int(n) // 1000}k" if isinstance(n, int) and n >= 1000 and n % 1000 == 0 else f"{n:,}"


def _budget_bank(value: Any) -> Bank:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        m = _money(value)
        return {"standalone": [f"our budget is around ${m}", f"we've set aside {m} in the budget", f"about ${m} a year"],
                "bare": [f"around ${m}", m, f"${value:,}"], "hard": ["we could stretch to a few tens of thousands"]}
    if value == "approved":
        return {"standalone": ["budget's approved", "yes, the budget is approved"], "bare": ["it's funded"],
                "hard": ["signed off already"]}
    if value in ("none yet", "none", 0, None):
        return {"standalone": ["no budget yet", "we don't have a budget yet"], "bare": ["not yet"],
                "hard": ["that's still being figured out"]}
    return {"standalone": [f"budget: {value}"], "bare": [str(value)], "hard": [str(value)]}


def _industry_bank(industry: str) -> Bank:
    label = industry.replace("_", " ")
    story, short, hard = _INDUSTRY_WORDS.get(industry, (f"we're in {label}", label, f"{label}, roughly"))
    return {"standalone": [f"we're in {label}", story], "bare": [label, short], "hard": [hard]}


def _need_bank(need: str) -> Bank:
    n = need.strip().rstrip(".")
    return {"standalone": [f"we need help with {n}", f"we're trying to fix {n}"], "bare": [n, f"mostly {n}"],
            "hard": [f"honestly? {n}, it's a mess"]}


def _plain_bank(value: Any, templates: tuple[str, ...]) -> Bank:
    v = str(value)
    return {"standalone": [t.format(v=v) for t in templates], "bare": [v], "hard": [v]}


def phrasings(field: str, truths: dict[str, Any]) -> Bank:
    """Every way this persona may say FIELD: {"standalone": [...], "bare": [...], "hard": [...]}."""
    v = truths.get(field)
    if field in ("role", "seniority"):
        return _role_bank(truths.get("role"), truths.get("seniority"))
    makers: dict[str, Callable[[], Bank]] = {
        "company_size": lambda: _size_bank(int(v)),
        "timeline": lambda: _TIMELINES.get(str(v)) or _plain_bank(v, ("{v}",)),
        "budget": lambda: _budget_bank(v),
        "industry": lambda: _industry_bank(str(v)),
        "need": lambda: _need_bank(str(v)),
        "email": lambda: _plain_bank(v, ("it's {v}", "you can reach me at {v}", "{v}")),
        "name": lambda: _plain_bank(v, ("I'm {v}", "my name is {v}", "this is {v}")),
        "company": lambda: _plain_bank(v, ("I work at {v}", "I'm here from {v}")),
    }
    return makers[field]() if field in makers else _plain_bank(v, ("{v}",))


def is_qualified(truths: dict[str, Any], playbook: Playbook) -> bool:
    """Whether the truths make a buyer worth a meeting: no disqualifier, and the playbook's fit
    rules over the truths reach the MQL threshold."""
    if truths.get("seniority") in playbook.disqualify.seniority:
        return False
    company = str(truths.get("company") or "").lower()
    if company and any(c.lower() == company for c in playbook.disqualify.competitors):
        return False
    fit = sum(r.points for r in playbook.fit if r.field in truths and r.matches(truths[r.field]))
    return fit >= playbook.thresholds.mql


def typo(text: str, rng: random.Random, keep: set[str]) -> str:
    """One deterministic typo: two inner letters of a word (≥ 4 letters, not in KEEP) swapped."""
    words = text.split(" ")
    spots = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha() and w.lower() not in keep]
    if not spots:
        return text
    i = rng.choice(spots)
    w = words[i]
    j = rng.randrange(1, len(w) - 2)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _sentence(s: str) -> str:
    s = s.strip()
    return s if s[-1:] in ".!?" else s + "."


def form_text(form: dict[str, Any]) -> str:
    """A submitted form as the transcript shows it: "Name: Ana | Job title: VP of Sales | …"."""
    return " | ".join(f"{_cap(str(k).replace('_', ' '))}: {v}" for k, v in form.items())


def _form_message(form: dict[str, Any] | None) -> str | None:
    return next((str(v) for k, v in (form or {}).items() if str(k).lower() in ("message", "comments", "question")), None)


def own_opening(persona: dict[str, Any]) -> tuple[str, bool]:
    """(the persona's first words, whether they are already whole on its channel): a form persona's
    form on the form channel, an email persona's first email on the email channel — both complete,
    volunteers in them. Otherwise the words a chat opening is built from (an email's body without
    its subject, a form's message)."""
    from .suite import email_parts

    channel, opening, form = persona.get("channel") or "chat", persona.get("opening"), persona.get("form")
    if channel == "form" and form:
        return form_text(form), True
    parts = email_parts(opening)
    if channel == "email" and parts:
        return str(opening).strip(), True
    if parts:
        return parts[1], False
    return opening or _form_message(form) or "Hi", False


# ---------------------------------------------------------------------------------------------
# The players


class ScriptedProspect:
    """A legacy `messages:` persona: the first message opens, then the next one each turn
    whatever the SDR said; None when the script is exhausted."""

    def __init__(self, persona: dict[str, Any], playbook: Playbook):
        self.messages = list(persona.get("messages") or [])
        self.playbook = playbook
        self.asked_log: list[str | None] = []
        self._next = 0

    def opening(self) -> str:
        self._next = 1
        return self.messages[0]

    def respond(self, sdr_reply: str, actions: list[dict[str, Any]]) -> str | None:
        self.asked_log.append(detect_asked_field(sdr_reply, self.playbook))
        if self._next >= len(self.messages):
            return None
        self._next += 1
        return self.messages[self._next - 1]


class RuleProspect:
    """A deterministic simulated prospect: answers what the SDR asks from `truths`, in phrasings
    chosen by `seed`; volunteers, asks, later and style as the persona says (evals/suite.py).

    Ends (respond returns None) after a booked meeting or a close, at `max_turns`, or when it has
    nothing left (asks asked, later said) and the SDR asked nothing it can answer twice running."""

    def __init__(self, persona: dict[str, Any], playbook: Playbook, seed: int = 0):
        self.persona, self.playbook, self.seed = persona, playbook, seed
        self.truths: dict[str, Any] = dict(persona.get("truths") or {})
        self.style: str = persona.get("style") or "plain"
        self.rng = random.Random(f"{seed}:{persona.get('name', '')}")
        self.asked_log: list[str | None] = []
        self.told: list[str] = []          # truths said, in order
        self.later = list(persona.get("later") or [])
        self.asks = list(persona.get("asks") or [])
        self.ask_from = self.rng.choice((2, 3))   # the prospect's message number of its first ask
        self.max_turns = int(persona.get("max_turns") or 10)
        expect = persona.get("expect") or {}
        self.qualified = expect.get("stage") == "meeting_booked" or is_qualified(self.truths, playbook)
        self.turn = 0      # messages sent
        self.idle = 0      # SDR replies in a row asking nothing this prospect can answer
        self.evaded = False
        self.done = False
        self._keep = {w.lower() for v in self.truths.values() for w in re.findall(r"[A-Za-z]+", str(v))}

    def opening(self) -> str:
        """The persona's opening, then the volunteered truths (the company last: a name in
        capitals must not run into the next sentence) — or the form or first email, whole."""
        self.turn = 1
        keys = sorted(self.persona.get("volunteers") or [], key=lambda k: k == "company")
        text, whole = own_opening(self.persona)
        self.told += keys
        if whole:
            return text
        said = [_cap(_sentence(self.rng.choice(phrasings(k, self.truths)["standalone"]))) for k in keys]
        return " ".join([_sentence(text)] + said) if said else text

    def respond(self, sdr_reply: str, actions: list[dict[str, Any]]) -> str | None:
        field = detect_asked_field(sdr_reply, self.playbook)
        self.asked_log.append(field)
        kinds = {a.get("type") for a in actions}
        if self.done or kinds & {"meeting", "close"} or self.turn >= self.max_turns:
            self.done = True
            return None
        self.turn += 1
        offer = next((a for a in actions if a.get("type") == "offer_slots" and a.get("slots")), None)
        if offer:
            text: str | None = self._pick(offer)
        elif field is None and "offer_meeting" in kinds and not self.later:
            text = self._meet()
        else:
            text = self._next(field)
        if text is None:
            self.done = True
        return text

    def _pick(self, offer: dict[str, Any]) -> str:
        self.idle = 0
        if not self.qualified:
            return "none of those work for me, thanks"
        if len(offer["slots"]) >= 2:
            return self.rng.choice(["the second one works", "the first one works for me", "2 works for me"])
        return "that one works"

    def _meet(self) -> str:
        """A call offered without times: a qualified prospect accepts, another one declines."""
        self.idle = 0
        if self.qualified:
            return self.rng.choice(["sure, that works", "yes, that works for me"])
        return "not yet, thanks"

    def _next(self, field: str | None) -> str | None:
        if self.later:
            self.idle = 0
            return self.later.pop(0)
        if self.style == "evasive" and not self.evaded and field is not None:
            self.evaded = True
            self.idle = 0
            return self.rng.choice(_EVASIONS)
        answerable = field is not None and (field in self.truths or field == "role" and "seniority" in self.truths)
        ask = self.asks.pop(0) if self.asks and (self.turn >= self.ask_from or not answerable) else None
        self.idle = 0 if answerable or ask else self.idle + 1
        if not answerable and ask is None and self.idle >= 2 and not self.asks:
            return None
        if field is None:
            return ask or self.rng.choice(["good to know.", "makes sense.", "interesting."])
        text = self._say(field, standalone=ask is not None) if answerable else self.rng.choice(_UNKNOWN)
        return f"{_cap(_sentence(text))} {ask}" if ask else text

    def _say(self, field: str, standalone: bool) -> str:
        """FIELD's truth in one of this persona's phrasings, styled."""
        bank = phrasings(field, self.truths)
        tier = "standalone" if standalone or self.style == "chatty" else "bare" if self.style == "terse" \
            else self.rng.choice(("standalone", "bare"))
        options = bank[tier]
        if self.style in ("chatty", "typos") and bank["hard"] and self.rng.random() < 0.25:
            options = bank["hard"]
        text = self.rng.choice(options)
        if field not in self.told:
            self.told.append(field)
        if self.style == "chatty":
            text = f"{_cap(_sentence(text))} {self.rng.choice(_SMALL_TALK)}"
        if self.style == "typos":
            text = typo(text, self.rng, self._keep)
        return text


# ---------------------------------------------------------------------------------------------
# A model plays the persona


class SimSettings(BaseSettings):
    """The simulator's model, from the environment (never the SDR's own settings)."""
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    model: str | None = Field(default=None, validation_alias=AliasChoices("SDR_SIM_MODEL"))
    base_url: str | None = Field(default=None, validation_alias=AliasChoices("SDR_SIM_BASE_URL", "OPENAI_BASE_URL"))
    api_key: str = Field(default="none", validation_alias=AliasChoices("SDR_SIM_API_KEY", "OPENAI_API_KEY"))
    temperature: float = Field(default=0.7, ge=0, le=2, validation_alias=AliasChoices("SDR_SIM_TEMPERATURE"))
    timeout_s: float = Field(default=30, gt=0, validation_alias=AliasChoices("SDR_SIM_TIMEOUT_S"))
    attempts: int = Field(default=4, ge=1, le=10, validation_alias=AliasChoices("SDR_SIM_ATTEMPTS"))


_DONE = re.compile(r"\s*\bDONE\b[.!]?\s*$")


def persona_prompt(persona: dict[str, Any]) -> str:
    """The system prompt that makes a model play PERSONA (τ-bench style user simulation)."""
    truths = "\n".join(f"- {k}: {v}" for k, v in (persona.get("truths") or {}).items()) or "- (nothing)"
    first, _ = own_opening(persona)
    lines = {
        "chat": ["You are role-playing a prospect chatting with a company's sales assistant on its website.",
                 "You are the visitor, not the assistant. Write only your next chat message, short and natural.",
                 f"You opened with: {first!r}"],
        "form": ["You are role-playing a prospect who filled in a form on a company's website; its sales "
                 "assistant answers by email. You are the prospect, not the assistant. Write only the body of "
                 "your next email reply, short and natural.", f"You submitted: {first!r}"],
        "email": ["You are role-playing a prospect emailing a company's sales team; its sales assistant answers "
                  "by email. You are the prospect, not the assistant. Write only the body of your next email "
                  "reply, short and natural.", f"Your first email: {first!r}"],
    }[persona.get("channel") or "chat"]
    lines += [
        "What you know (your truths):", truths,
        "Rules: answer only what is asked; never invent facts beyond your truths; if asked something not in "
        "your truths, say you don't know or would rather not say. Give one answer per message.",
    ]
    if persona.get("volunteers"):
        lines.append(f"Mention these unasked early on: {', '.join(persona['volunteers'])}.")
    if persona.get("asks"):
        lines.append("Along the way, ask these questions, one per message, each once: "
                     + " | ".join(persona["asks"]))
    if persona.get("later"):
        lines.append("In your next messages after the opening, say these, one per message, in order: "
                     + " | ".join(persona["later"]))
    lines.append(f"Your writing style: {persona.get('style') or 'plain'}"
                 " (terse: bare values; chatty: add a little small talk; typos: a few typing mistakes; "
                 "evasive: dodge the first question you are asked).")
    lines.append("When meeting times are offered and you are a good fit, pick one. When you have nothing left "
                 "to say or the assistant closes the conversation, reply with the single word DONE.")
    return "\n".join(lines)


class ModelProspect:
    """A model plays the persona through an OpenAI-compatible chat endpoint. Roles are flipped:
    the SDR's replies are the model's "user" turns, the prospect's messages its "assistant" turns.
    `usage` counts calls and tokens; `asked_log` is filled by the rule detector."""

    def __init__(self, persona: dict[str, Any], playbook: Playbook, seed: int = 0,
                 settings: SimSettings | None = None, client: Any = None):
        from openai import OpenAI

        self.persona, self.playbook, self.seed = persona, playbook, seed
        self.settings = settings or SimSettings()
        if not self.settings.model:
            raise ValueError("ModelProspect needs a model: set SDR_SIM_MODEL")
        self.client = client or OpenAI(base_url=self.settings.base_url, api_key=self.settings.api_key,
                                       timeout=self.settings.timeout_s, max_retries=0)
        self.asked_log: list[str | None] = []
        self.messages: list[dict[str, str]] = [{"role": "system", "content": persona_prompt(persona)}]
        self.usage = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self.max_turns = int(persona.get("max_turns") or 10)
        self.turn = 0
        self.done = False

    def opening(self) -> str:
        self.turn = 1
        text = own_opening(self.persona)[0]
        self.messages.append({"role": "assistant", "content": text})
        return text

    def respond(self, sdr_reply: str, actions: list[dict[str, Any]]) -> str | None:
        self.asked_log.append(detect_asked_field(sdr_reply, self.playbook))
        if self.done or any(a.get("type") in ("meeting", "close") for a in actions) or self.turn >= self.max_turns:
            self.done = True
            return None
        self.turn += 1
        self.messages.append({"role": "user", "content": sdr_reply})
        text = self._complete()
        if _DONE.search(text):
            self.done = True
            text = _DONE.sub("", text).strip()
        if not text:
            self.done = True
            return None
        self.messages.append({"role": "assistant", "content": text})
        return text

    def _complete(self) -> str:
        from openai import APIConnectionError, APITimeoutError, InternalServerError, RateLimitError
        from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

        @retry(retry=retry_if_exception_type((APIConnectionError, APITimeoutError, InternalServerError, RateLimitError)),
               stop=stop_after_attempt(self.settings.attempts), wait=wait_exponential(multiplier=0.2, max=4),
               reraise=True)
        def call() -> Any:
            return self.client.chat.completions.create(
                model=self.settings.model, messages=self.messages, temperature=self.settings.temperature,
                seed=self.seed, max_tokens=200)

        resp = call()
        self.usage["calls"] += 1
        if resp.usage is not None:
            self.usage["prompt_tokens"] += resp.usage.prompt_tokens or 0
            self.usage["completion_tokens"] += resp.usage.completion_tokens or 0
        return (resp.choices[0].message.content or "").strip()


def make_prospect(persona: dict[str, Any], playbook: Playbook, seed: int = 0, model: bool | None = None) -> Prospect:
    """The player for PERSONA: scripted for `messages` personas; a model when MODEL is True, or
    None and SDR_SIM_MODEL is set; otherwise the deterministic rule prospect."""
    if persona.get("messages"):
        return ScriptedProspect(persona, playbook)
    if model is None:
        model = bool(SimSettings().model)
    if model:
        return ModelProspect(persona, playbook, seed=seed)
    return RuleProspect(persona, playbook, seed=seed)
