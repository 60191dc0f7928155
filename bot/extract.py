"""Understand a visitor message without a model: facts, intents and questions by patterns.

This is the deterministic brain's `understand` step and the rule half of the model brain's merge:
what it is certain of (an email, an explicit number) wins over a model's guess.

The patterns here are language (how people give a size, a title, a date; greetings, "a person
please", unsubscribing). The words of what is sold — needs, question topics, product words for
asking to meet, competitors, industries — come from the playbook (`vocabulary:`, compiled once per
playbook by `Playbook.lexicon()`), so another company's playbook changes what is recognised.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from nameparser import HumanName
from text_to_num import alpha2digit

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from .playbook import Playbook
from .text import EMAIL_RE, has_word

__all__ = ["EMAIL_RE", "INJECTION_RE", "Fact", "Understanding", "integrations_asked", "is_question",
           "split_sentences", "understand"]

# ---------------------------------------------------------------------------------------------
# Result types


@dataclass
class Fact:
    value: Any
    extractor: str = "rules"
    certain: bool = True
    evidence: str = ""
    source: str = "said"     # said | form | guessed_from_email | corrected (kept in field_sources)


@dataclass
class Understanding:
    fields: dict[str, Fact] = field(default_factory=dict)
    intents: set[str] = field(default_factory=set)
    questions: list[str] = field(default_factory=list)
    topics: set[str] = field(default_factory=set)
    integrations_asked: list[str] = field(default_factory=list)
    requested_action: str = "continue"  # continue | handoff | book | human | unsubscribe
    skipped: str | None = None          # the field the visitor declined to answer
    pick: Any = None                    # the offered meeting slot (bot.booking.Slot) the visitor chose, if any

    def values(self) -> dict[str, Any]:
        return {k: f.value for k, f in self.fields.items()}


# ---------------------------------------------------------------------------------------------
# Small helpers

FREE_MAIL = {"gmail", "yahoo", "hotmail", "outlook", "icloud", "aol", "proton", "protonmail", "gmx",
             "live", "msn", "me", "mail", "yandex", "zoho", "fastmail", "hey"}
QUESTION_START = re.compile(
    r"^(?:do|does|did|can|could|would|will|is|are|(?:was|were)(?=\s+(?:you|u|they|there|those|these|the|any|we|it)\b)|how|what|what's|whats|which|who|why|when|"
    r"where|should|have|has|any|tell me|explain)\b", re.I)
WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "fifty": 50,
                "a hundred": 100, "hundred": 100, "a dozen": 12, "a couple": 2, "a few": 3}


def _num(raw: str, suffix: str | None = None) -> float | None:
    raw = raw.strip()
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+", raw):   # "1.500" — a thousands separator in de/es/fr/pt/it/nl
        raw = raw.replace(".", "")
    raw = raw.replace(",", "")
    try:
        n = float(raw)
    except ValueError:
        return None
    s = (suffix or "").lower()
    if s in ("k", "thousand", "grand"):
        n *= 1_000
    elif s in ("m", "mm", "million"):
        n *= 1_000_000
    return n


# A question asked after a statement in one sentence: "we're 200 people, how much is it?",
# "somos 200 personas y ¿cuánto cuesta?", "nous sommes 80, quel est le prix ?".
_CLAUSE_QUESTION = re.compile(
    r"，|(?:[,;:]|\s+(?:and|but|so|y|pero|und|aber|et|mais|e|mas))\s+(?=(?:what|what's|whats|how|which|who|can|could|do|does|"
    r"is|are|any|qu[ée]|cu[áa]nt[oa]s?|cu[áa]l(?:es)?|c[óo]mo|tienen|hay|was|wie|welche[rsnm]?|gibt es|haben sie|habt ihr|"
    r"quel(?:le)?s?|combien|comment|est-ce|avez-vous|quanto|quanta|qual|quais|como|voc[êe]s? t[êe]m|tem|"
    r"wat|hoeveel|hoe|welke|quale|cosa|come)\b)", re.I)


def split_sentences(text: str) -> list[str]:
    """Sentences, and within a sentence that ends in a question mark, the statement before the
    question ("we are 80 people, what's the price?" → two), so facts stated beside a question count.
    Understands ¿…? and the full-width punctuation of Chinese and Japanese."""
    parts = re.split(r"(?<=[.!?])\s+|(?<=[。！？])\s*|\n+|\s*(?=¿)", text.strip())
    out: list[str] = []
    for p in (p.strip() for p in parts):
        if not p:
            continue
        if p.endswith(("?", "？")):
            pieces = _CLAUSE_QUESTION.split(p, maxsplit=1)
            if len(pieces) == 2 and pieces[0].strip() and not is_question(pieces[0]):
                out += [pieces[0].strip(), pieces[1].strip()]
                continue
        out.append(p)
    return out


def is_question(sentence: str) -> bool:
    s = sentence.strip()
    return s.endswith(("?", "？")) or bool(QUESTION_START.match(s))


# ---------------------------------------------------------------------------------------------
# Field extractors. Each takes the text (and sometimes context) and returns a Fact or None.

SIZE_NOUNS = (r"(?:people|persons|ppl|peeps|heads(?! of)|employees|staff(?:ers)?|ftes?|folks|headcount|team members|workers|"
              r"person company|person startup|person team|person org|strong|"
              r"personas|empleados|trabajadores|colaboradores|mitarbeiter(?:innen|n)?|mitarbeitende|besch[äa]ftigte|leute|"
              r"personnes|salari[ée]s|employ[ée]s|collaborateurs|pessoas|funcion[áa]rios|persone|dipendenti|mensen|medewerkers|werknemers|"
              r"anst[äa]llda|ansatte|osób|pracownik[óo]w)\b")
_APPROX = r"(?:about|around|roughly|approximately|approx\.?|abt|~|maybe|like|over|under|nearly|almost|just over|just under|some|unas|unos|etwa|ca\.?|environ|cerca de)"
# Number words become digits first ("two hundred" → 200, "zweihundert" → 200), with text2num
# (en, es, de, fr, pt; loaded once, here); English first, the others only when English found none.
_NUMBER_LANGS = ("en", "es", "de", "fr", "pt")
_PAIR_RE = re.compile(r"\b(?:(?:just |only )?me and (?:one|1|a|another|my) (?:other )?(?:person|colleague|co-?founder|partner|"
                      r"business partner|guy|rep|employee|friend|teammate)|(?:just |only )?(?:the )?(?:two|2) of us)\b")
_ME_PLUS_RE = re.compile(r"\bme and (\d{1,3}) others?\b")
_NEGATED_RE = re.compile(r"\bnot\s+" + _APPROX + r"?\s*\d[\d,.]*\s*(?:k\b)?\s*\+?(?:\s*" + SIZE_NOUNS + r")?")


def _digits(text: str, lang: str = "en") -> str:
    """The text with number words written as digits, in `lang`."""
    try:
        return alpha2digit(text, lang)
    except Exception:   # noqa: BLE001 - a library hiccup must never cost the message
        return text


def _size_in(t: str) -> Fact | None:
    """A headcount in lower-case text whose numbers are digits."""
    n = r"(\d[\d,]*(?:\.\d+)?)\s*(k)?"
    m = re.search(r"(\d[\d,]*)\s*(?:-|to|–)\s*(\d[\d,]*)\s*(k)?\s*\+?\s*" + SIZE_NOUNS, t)
    if m:
        lo, hi = _num(m.group(1), m.group(3)), _num(m.group(2), m.group(3))
        if lo is not None and hi is not None:
            return Fact(int(round((lo + hi) / 2)), evidence=m.group(0))
    for pat in (n + r"(?:\s*-?\s*ish)?\s*\+?\s*[- ]?" + SIZE_NOUNS,
                r"\b(?:team|company|org|organi[sz]ation|staff|business|startup|shop) of " + _APPROX + r"?\s*" + n + r"\b",
                r"\bheadcount(?:'s|’s| is| of|:)?\s*(?:is\s*)?" + _APPROX + r"?\s*" + n + r"\b",
                r"\b" + n + r"[- ](?:person|people|employee|staff)\b",
                n + r"\s*(?:名|位)?\s*(?:员工|員工|社員|従業員|직원|人|명)"):   # 200人, 200名员工, 従業員 (Chinese, Japanese, Korean)
        m = re.search(pat, t)
        if m and _num(m.group(1), m.group(2)):
            return Fact(int(_num(m.group(1), m.group(2)) or 0), evidence=m.group(0))
    m = re.search(r"\b(?:team|company|org) of (" + "|".join(WORD_NUMBERS) + r")\b", t)
    if m:
        return Fact(WORD_NUMBERS[m.group(1)], evidence=m.group(0))
    m = _ME_PLUS_RE.search(t)
    if m:
        return Fact(int(m.group(1)) + 1, evidence=m.group(0))
    if _PAIR_RE.search(t) or re.search(r"\b(?:it's |its )?me and my (?:co-?founder|partner|business partner)\b", t):
        return Fact(2, evidence="two of us")
    if re.search(r"\b(?:just me|only me|just myself|solo founder|one[- ]person|one[- ]man band|i'm a freelancer|i work alone|solopreneur)\b", t):
        return Fact(1, evidence="just me")
    return None


def extract_company_size(text: str, asked: bool = False, correcting: bool = False) -> Fact | None:
    """A headcount however written: "abt 400 ppl", "30-ish people", "two hundred people",
    "zweihundert Mitarbeiter", "just me and one other person" (2). A negated number ("not 400")
    is never the size; `correcting` (a correction of a known size) also takes a bare number."""
    t = _NEGATED_RE.sub(" ", text.lower().replace("w/", "with"))
    for lang in _NUMBER_LANGS:
        fact = _size_in(_digits(t, lang))
        if fact is not None:
            return fact
    t = _digits(t)
    if asked:
        m = re.fullmatch(r"\s*" + _APPROX + r"?\s*(\d[\d,]*)\s*(k)?\s*\+?\s*[.!]?\s*", t)
        if m and _num(m.group(1), m.group(2)):
            return Fact(int(_num(m.group(1), m.group(2)) or 0), evidence=m.group(0).strip())
    if correcting:
        m = re.search(r"(?:^|[\s,:;—–-])(?:it's |its |is |but |meant |more like |closer to |rather )?" + _APPROX + r"?\s*"
                      r"(\d[\d,]*)\s*(k)?\s*\+?\s*(?:[.!,]|$)", t)
        if m and _num(m.group(1), m.group(2)):
            return Fact(int(_num(m.group(1), m.group(2)) or 0), evidence=m.group(0).strip())
    return None


# Seniority words in English, Spanish, German, French and Portuguese; the first level that
# matches wins, so "director general" is c_level before "director" is director.
SENIORITY_PATTERNS: list[tuple[str, str]] = [
    ("student", r"\b(?:student|intern|internship|studying|my thesis|class project|school project|homework|undergrad|phd candidate|grad student|"
                r"estudiante|alumn[oa]|becari[oa]|tesis|studentin|praktikant(?:in)?|masterarbeit|bachelorarbeit|[ée]tudiante?|stagiaire|th[èe]se|"
                r"estudante|estagi[áa]ri[oa])\b"),
    ("c_level", r"\b(?:ceo|cto|cfo|coo|cro|cmo|cio|ciso|chief [a-z]+ officer|founder|co-?founder|owner|(?<!vice )(?<!vice-)president|"
                r"managing director|general partner|gerente general|directora? general|directeur g[ée]n[ée]ral|directrice g[ée]n[ée]rale|"
                r"diretora? geral|gesch[äa]ftsf[üu]hrer(?:in)?|gr[üu]nder(?:in)?|inhaber(?:in)?|fundador(?:a)?|cofundador(?:a)?|"
                r"fondat(?:eur|rice)|cofondat(?:eur|rice)|(?<!vice )(?<!vice-)pr[ée]sidente?|propietari[oa]|due[ñn][oa]|s[óo]ci[oa][- ]fundador(?:a)?)\b"),
    ("vp", r"\b(?:vp|svp|evp|avp|vice[- ]?president|vice[- ]?presidente?|vice[- ]pr[ée]sidente?|vizepr[äa]sident(?:in)?)\b"),
    ("director", r"\b(?:director|head of|department head|sr\.? director|senior director|directora|directeur|directrice|diretora?|"
                 r"direktor(?:in)?|\w*(?<!team)(?<!gruppen)(?<!projekt)leiter(?:in)?)\b"),
    ("manager", r"\b(?:manager|team lead|lead of|supervisor|gerente|jef[ea]|gestor(?:a)?|encargad[oa]|responsable|chef d(?:e|es|u)|"
                r"teamleiter(?:in)?|gruppenleiter(?:in)?|projektleiter(?:in)?|managerin)\b"),
    ("individual", r"\b(?:engineer|analyst|developer|account executive|\bae\b|sdr|bdr|specialist|coordinator|associate|consultant|sales rep|"
                   r"representative|administrator|admin|ingenier[oa]|ing[ée]nieure?|ingenieur(?:in)?|engenheir[oa]|analista|analyste|"
                   r"desarrollador(?:a)?|d[ée]veloppeu(?:r|se)|entwickler(?:in)?|desenvolvedor(?:a)?|vendedor(?:a)?|representante|"
                   r"berater(?:in)?|consultor(?:a)?|consultante|coordinador(?:a)?|coordenador(?:a)?|coordinat(?:eur|rice)|sachbearbeiter(?:in)?)\b"),
]
_NOT_ME = (r"\b(?:our|my|the company's|their|his|her|your|nuestr[oa]|mi|unser(?:e|er|em)?|mein(?:e|er|em)?|notre|mon|ma|"
           r"nosso|nossa|meu|minha)\s+(?:\w+\s+){0,2}$")
# A title in es/de/fr/pt, for the role as written ("directora comercial", "Vertriebsleiter").
_FOREIGN_TITLE_RE = re.compile(
    r"\b((?:vice[- ]?presidente?|vice[- ]pr[ée]sidente?|directora?|directeur|directrice|diretora?|direktor(?:in)?|gerente|jef[ea]|"
    r"responsable|chef|gestor(?:a)?)(?:\s+(?:general|geral|g[ée]n[ée]ral[e]?|comercial|commercial[e]?|financier[e]?|financier[oa]|"
    r"(?:de|des|du|da|do|del|de la)\s+\w+))?|\w*leiter(?:in)?|gesch[äa]ftsf[üu]hrer(?:in)?)\b", re.I)
_LOWER_IN_TITLE = {"de", "des", "du", "da", "do", "del", "la"}


def _foreign_title(text: str) -> str | None:
    m = _FOREIGN_TITLE_RE.search(text)
    if not m or re.search(_NOT_ME, text[: m.start()].lower()):
        return None
    words = m.group(1).split()
    return " ".join(w.lower() if w.lower() in _LOWER_IN_TITLE else w[:1].upper() + w[1:] for w in words)


def classify_seniority(role_text: str) -> str | None:
    t = role_text.lower()
    for level, pat in SENIORITY_PATTERNS:
        for m in re.finditer(pat, t):
            if re.search(_NOT_ME, t[: m.start()]):
                continue  # "our VP asked me to look" is not the visitor's own title
            return level
    return None


def extract_role(text: str, asked: bool = False) -> tuple[Fact | None, Fact | None]:
    """Returns (role, seniority)."""
    t = text.strip()
    low = t.lower()
    # "I run RevOps", "I manage the IT team", "I lead sales", "I head up marketing"
    m = re.search(r"\bi\s+(run|lead|head(?: up)?|own|oversee|manage)\s+(?:the\s+|our\s+|a\s+|all of\s+)?"
                  r"([a-z][a-z&/+ -]{0,30}?)(?:\s+(?:team|org|organi[sz]ation|department|function|group|side))?"
                  r"(?=\s+(?:at|for|here|in|over)\b|[,.;!?]|\s+and\b|$)", low)
    if m:
        verb, area = m.group(1), m.group(2).strip()
        orig = t[m.start(2): m.start(2) + len(area)]
        area_disp = orig if any(c.isupper() for c in orig) else area.title() if len(area) > 3 else area.upper()
        level = "manager" if verb == "manage" else "director"
        if area in ("it", "hr", "bd", "ops"):
            area_disp = area.upper() if area != "ops" else "Ops"
        return Fact(area_disp, evidence=m.group(0)), Fact(level, evidence=m.group(0))
    # Titles: "VP of Sales", "I'm the head of RevOps", "CEO here", "sales manager at Acme"
    title = re.search(
        r"\b((?:senior |sr\.? |junior |jr\.? )?"
        r"(?:(?:[a-z]+ ){0,2}(?:manager|director|engineer|analyst|developer|specialist|coordinator|consultant|associate|administrator|lead)"
        r"|(?:vp|svp|evp|vice president|head|director|chief [a-z]+ officer)(?: of)? [a-z&/ -]{2,25}?"
        r"|ceo|cto|cfo|coo|cro|cmo|cio|ciso|founder|co-?founder|owner|president|account executive|sdr|bdr|student|intern))"
        r"(?=\s+(?:at|for|here|in|with|of a|and|at a)\b|[,.;!?)]|$)", low)
    if title and not re.search(_NOT_ME, low[: title.start()]):
        raw = re.sub(r"^(?:a|an|the)\s+", "", t[title.start(1): title.end(1)], flags=re.I)
        level = classify_seniority(raw)
        if level:
            disp = raw if any(c.isupper() for c in raw) else raw.title().replace("Vp", "VP").replace("Of", "of")
            return Fact(disp, evidence=raw), Fact(level, evidence=raw)
    foreign = _foreign_title(t)
    level = classify_seniority(low)
    if foreign and level:
        return Fact(foreign, evidence=foreign), Fact(level, evidence=foreign)
    if level:
        return None, Fact(level, evidence=low[:60])
    if asked and len(t) <= 60 and not is_question(t) and not _REQUEST_RE.search(t):
        bare = re.sub(r"^(?:i'm|i’m|i am|im)\s+(?:a |an |the )?|\s+here$", "", t.rstrip(".!"), flags=re.I)
        return Fact(bare, certain=False, evidence=t), None
    return None, None


# A request or a deferral ("send me a case study", "let me think") answers no question about the role.
_REQUEST_RE = re.compile(
    r"^\s*(?:please\s+|pls\s+|just\s+|first,?\s+)?(?:send|show|give|email|e-mail|share|tell|let me|can|could|would|will|i'd like|"
    r"i would like|i want|i need|i'll|what|how|why|where|when|before|first)\b|\b(?:send|show|give|email|tell) (?:me|us)\b", re.I)


def extract_email(text: str) -> Fact | None:
    """The first valid email address in `text`, internationalised local parts and domains included,
    as email-validator normalises it (RFC 5321 / RFC 6531 SMTPUTF8; the domain IDNA-normalised),
    lower-cased. Deliverability is not checked (no DNS)."""
    for m in EMAIL_RE.finditer(text):
        candidate = m.group(0).rstrip(".'")
        try:
            valid = validate_email(candidate, check_deliverability=False)
        except EmailNotValidError:
            continue
        return Fact(valid.normalized.lower(), evidence=candidate)
    return None


def extract_phone(text: str, region: str | None = None) -> Fact | None:
    """A phone number in `text` (international "+44 20 7946 0958", or national in `region`, ISO
    3166 alpha-2, default US), in E.164 ("+442079460958"), via `phonenumbers` (libphonenumber's data)."""
    for match in phonenumbers.PhoneNumberMatcher(text, (region or "US").upper()):
        if phonenumbers.is_valid_number(match.number):
            return Fact(phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164),
                        evidence=match.raw_string)
    return None


def company_from_email(email: str) -> Fact | None:
    domain = email.split("@", 1)[1].lower()
    label = domain.split(".")[0]
    if label in FREE_MAIL or len(label) < 2:
        return None
    return Fact(label.replace("-", " ").title(), certain=False, evidence=domain, source="guessed_from_email")


_NAME_STOP = {"looking", "interested", "just", "here", "curious", "trying", "from", "with", "working", "the",
              "a", "an", "not", "in", "on", "at", "currently", "evaluating", "new", "sure", "fine", "good",
              "great", "ok", "okay", "sorry", "glad", "happy", "thinking", "wondering", "hoping", "going",
              "vp", "ceo", "cto", "cfo", "coo", "head", "director", "manager", "student", "founder", "also",
              "still", "part", "responsible", "in charge", "building", "running", "leading", "based", "hiring",
              "reaching", "considering", "comparing", "using", "on", "over", "about", "ready", "back"}


_COMPANY_STOP = {"the", "a", "an", "home", "work", "a startup", "Q1", "Q2", "Q3", "Q4", "Monday", "Tuesday",
                 "Wednesday", "Thursday", "Friday", "January", "February", "March", "April", "May", "June",
                 "July", "August", "September", "October", "November", "December", "I", "We"}


# Names: any script. An introduction ("my name is", "me llamo", "меня зовут", "我叫", "اسمي") takes
# the name whole; a weak one ("I'm", "this is", "soy", "ich bin") only a capitalised word that is not
# a title or role ("I'm CFO" is a title, never a name). nameparser (loaded once, here) splits and
# capitalises what was found and drops honorifics (Dr., Mr.).
_LETTER = r"[^\W\d_]"
_NAME_WORD_RE = re.compile(_LETTER + r"(?:" + _LETTER + r"|['’.-])*")
_NAME_BREAK = {"and", "from", "at", "with", "i", "we", "y", "und", "et", "e", "и", "the", "a", "an", "of", "in"}
_STRONG_INTRO = re.compile(
    r"(?:\b(?:my name is|my name's|name is|name's|call me|me llamo|mi nombre es|ich hei(?:ß|ss)e|mein name ist|"
    r"je m'appelle|je m’appelle|mon nom est|meu nome é|me chamo|меня зовут|моё имя|мое имя|зовут меня|"
    r"το όνομά μου είναι|με λένε|με λενε)|我叫|我的名字是|我的名字叫|اسمي|إسمي)\s*[:,]?\s*", re.I)
_WEAK_INTRO = re.compile(r"\b(?:i'm|i’m|i am|im|this is|it's|it’s|soy|ich bin|je suis|moi c'est|eu sou|sou)\s+", re.I)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_PARTICLES = {"de", "da", "del", "della", "di", "van", "von", "der", "den", "la", "le", "du", "dos", "das", "bin",
              "ibn", "al", "el", "ter", "ten", "af"}
_TITLE_WORDS = {"head", "chief", "officer", "vp", "svp", "evp", "avp", "director", "manager", "lead", "founder",
                "cofounder", "co-founder", "owner", "president", "partner", "principal", "sales", "ops", "revops",
                "marketing", "finance", "operations", "engineering", "team", "department", "staff", "analyst",
                "engineer", "developer", "consultant", "coordinator", "specialist", "intern", "student", "rep",
                "representative", "admin", "administrator", "executive", "exec", "associate", "supervisor",
                "controller", "cro", "cmo", "cio", "ciso", "ceo", "cfo", "coo", "cto", "gm", "md", "sdr", "bdr",
                "ae", "it", "hr", "here", "there"}


def is_title(words: str, playbook: Playbook | None = None) -> bool:
    """True when `words` name a role or title (the seniority words, the playbook's persona words,
    common title nouns) rather than a person: "CFO", "Head of Sales", "RevOps"."""
    low = words.lower().strip(" .,")
    if classify_seniority(low):
        return True
    if any(w.strip(".,'’") in _TITLE_WORDS for w in low.split()):
        return True
    personas = playbook.personas if playbook is not None else {}
    return any(has_word(low, p.lower()) for words_ in personas.values() for p in words_)


def _name_words(rest: str, strong: bool) -> list[str]:
    """The name's words at the start of `rest`: up to three (more with particles like "van"),
    stopping at punctuation, a stop word, or (after a weak introduction) a lower-case word."""
    head = re.split(r"[,;:!?()\n—–]|\.(?:\s|$)", rest, maxsplit=1)[0]
    if _CJK.match(head):
        run = re.match(_LETTER + "+", head)
        return [run.group(0)] if run and len(run.group(0)) <= 4 else []
    out: list[str] = []
    for word in head.split():
        low = word.lower()
        if not _NAME_WORD_RE.fullmatch(word) or low in _NAME_STOP or low in _NAME_BREAK:
            break
        if out and low in _PARTICLES:
            out.append(word)
            continue
        if word[0].islower() and (not strong or len(out) >= 2):
            break
        out.append(word)
        if sum(w.lower() not in _PARTICLES for w in out) >= 3:
            break
    while out and out[-1].lower() in _PARTICLES:
        out.pop()
    return out


def _as_name(words: list[str], playbook: Playbook | None) -> str | None:
    """The words as a person's name, or None when they are a title or nameparser finds no name in
    them. All lower case is capitalised ("zoë o'neill" → "Zoë O'Neill"); honorifics are dropped."""
    if not words:
        return None
    raw = " ".join(words)
    if is_title(raw, playbook) or raw.lower() in _NAME_STOP or words[0] in _COMPANY_STOP:
        return None
    if _CJK.search(raw) or not any(c.isupper() or c.islower() for c in raw):
        return raw          # a script without case (CJK, Arabic): taken whole
    parsed = HumanName(raw)
    if not (parsed.first or parsed.last):
        return None         # only a title ("Dr.")
    if raw.islower():
        parsed.capitalize(force=True)
    parts = [parsed.first, parsed.middle, parsed.last, parsed.suffix]
    return " ".join(p for p in parts if p) or None


_GERMAN_RE = re.compile(r"\b(?:ich|wir|bin|sind|und|der|die|das|ein|eine|arbeite)\b", re.I)


def extract_name(text: str, asked: bool = False, playbook: Playbook | None = None) -> Fact | None:
    """The visitor's own name, in any script; never a title or a role."""
    for intro, strong in ((_STRONG_INTRO, True), (_WEAK_INTRO, False)):
        for m in intro.finditer(text):
            rest = text[m.end():]
            if not strong and not rest[:1].isupper():
                continue
            if not strong and m.group(0).strip().lower() == "im" and _GERMAN_RE.search(text[: m.start()]):
                continue    # German "im Vertrieb" is "in the", not "I'm"
            name = _as_name(_name_words(rest, strong), playbook)
            if name:
                return Fact(name, evidence=(m.group(0) + rest[:40]).strip())
    if asked:
        t = re.sub(r"^(?:it's|its|i'm|im|i am|this is|name's|call me)\s+", "", text.strip().rstrip(".!"), flags=re.I)
        words = _name_words(t, strong=True)
        if words and len(t.split()) <= 3 and " ".join(words) == " ".join(t.split()):
            name = _as_name(words, playbook)
            if name:
                return Fact(name, certain=False, evidence=text)
    return None


def extract_company(text: str, asked: bool = False) -> Fact | None:
    m = re.search(r"\b(?i:i work (?:at|for)|i'm (?:with|from|at)|i’m (?:with|from|at)|i am (?:with|from|at)|we're|we’re|"
                  r"we are|here from|company is|company's|company is called|company called|work at|work for|join(?:ed)?|"
                  r"(?i:manager|director|head|vp|engineer|analyst|lead)(?: of(?: [A-Za-z&]+){1,3})? at|"   # "Director of Sales Operations at X"
                  r"(?i:ceo|cto|cfo|coo|cro|founder|co-founder|owner|president) (?:at|of))\s+"
                  r"((?:[A-Z][\w&.'-]*|[0-9][\w&.'-]*)(?:\s+(?:[A-Z][\w&.'-]*|&|of|and)){0,3})", text)
    if m and not re.fullmatch(r"[\d.,]+\s*k?\+?", m.group(1).strip(" .,'")):   # "we're 40 people" is a size
        name = m.group(1).strip(" .,'")
        name = re.sub(r"\s+(?:and|of|&)$", "", name)
        if name and name not in _COMPANY_STOP and not name.isupper() or (name.isupper() and 2 <= len(name) <= 6 and name not in _COMPANY_STOP):
            if name.lower() not in ("i", "we", "our", "my") and not re.fullmatch(r"Q[1-4]", name):
                return Fact(name, evidence=m.group(0))
    m = re.search(r"\b(?:at|from)\s+(" + _LETTER + r"[\w&.'-]+(?:\s+(?:&\s+)?(?:Inc|LLC|Ltd|GmbH|Corp|Co|Labs|Health|Systems|Group|Bank|AB|AG|SA|Sons))?\.?)(?=[\s,.!?]|$)", text)
    if m and m.group(1)[0].isupper() and m.group(1).strip(".") not in _COMPANY_STOP:
        return Fact(m.group(1).strip("."), certain=False, evidence=m.group(0))
    if asked:   # the answer is the first sentence: "Willow & Wick. Appreciate the quick replies."
        t = (split_sentences(text) or [text])[0].strip().rstrip(".!")
        t = re.sub(r"^(?:i'm with|i am with|i work at|i work for|we're|we are|it's|its|at)\s+", "", t, flags=re.I)
        if 1 <= len(t.split()) <= 5 and not is_question(t):
            return Fact(t, certain=False, evidence=text)
    return None


def extract_industry(text: str, playbook: Playbook, asked: bool = False) -> Fact | None:
    low = text.lower()
    best: tuple[int, str, str] | None = None
    for industry, words in playbook.industries.items():
        for w in [industry.replace("_", " ")] + list(words):
            if has_word(low, w.lower()):
                hit = (len(w), industry, w)
                if best is None or hit[0] > best[0]:
                    best = hit
    if best:
        return Fact(best[1], certain=not is_question(text), evidence=best[2])
    if asked and len(text.split()) <= 5 and not is_question(text):
        return Fact(text.strip().rstrip(".!").lower(), certain=False, evidence=text)
    return None


_NEED_TRIGGER_RE = re.compile(
    r"\b(?:we need|we want|we're looking (?:for|to)|we are looking (?:for|to)|looking for|looking to|"
    r"we're trying to|trying to|we struggle with|struggling with|our problem is|the problem is|"
    r"our biggest (?:problem|challenge|issue) is|need help with|need to|hoping to|we'd like to|"
    r"want to|interested in|evaluating|replace|replacing|fix|fixing|improve|improving)\s+(.{3,240})")
_WE_RE = re.compile(r"\b(?:we|our|i|my|nuestr[oa]s?|nosotros|mi|mis|wir|unser(?:e|er|en|em)?|nous|notre|nos|"
                    r"n[óo]s|nosso|nossa|nossos|nossas|meu|minha)\b")   # "we/our" in en, es, de, fr, pt


def extract_need(text: str, playbook: Playbook, asked: bool = False) -> Fact | None:
    """A statement naming one of the playbook's needs (`vocabulary.needs`)."""
    lex = playbook.lexicon()
    for sentence in split_sentences(text):
        if is_question(sentence):
            continue
        low = sentence.lower()
        if not lex.is_need(low):
            continue
        m = _NEED_TRIGGER_RE.search(low)
        if m:
            return Fact(sentence.strip().rstrip("."), evidence=m.group(0))
        if _WE_RE.search(low):
            return Fact(sentence.strip().rstrip("."), certain=False, evidence=sentence)
    if asked:
        t = text.strip()
        if 2 <= len(t) <= 400 and not all(is_question(s) for s in split_sentences(t)):
            return Fact(t.rstrip("."), certain=False, evidence=t)
    return None


_QUARTER_RE = re.compile(r"\b(before|by|in|during|for|end of|start of|early|late)?\s*(?:the\s+)?(?:(this|next)\s+)?q([1-4])(?:\s*(?:'|20)?(\d{2}))?\b")
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]


def _bucket_for_deadline(today: date, deadline: date) -> str:
    """now | this_quarter | next_quarter | this_year | later, from a target date."""
    days = (deadline - today).days
    q_now = (today.month - 1) // 3
    end_this_q = date(today.year + (1 if q_now == 3 else 0), 1 if q_now == 3 else 3 * (q_now + 1) + 1, 1)
    nq = (q_now + 1) % 4
    end_next_q = date(end_this_q.year + (1 if nq == 3 else 0), 1 if nq == 3 else 3 * (nq + 1) + 1, 1)
    if days <= 14:
        return "now"
    if deadline <= end_this_q:
        return "this_quarter"
    if deadline <= end_next_q:
        return "next_quarter"
    if days <= 366:
        return "this_year"
    return "later"


_PROBLEM_RE = re.compile(
    r"\b(?:broke|broken|breaks|stopped|stops working|isn'?t working|not working|doesn'?t work|won'?t (?:load|sync|work)|"
    r"(?:is|are|was|were|been|went|goes) down|outage|errors?|bug|buggy|crash\w*|fail\w*|glitch\w*|"
    r"can'?t (?:log|sign|access|export|see|connect)|(?:issue|problem|trouble) with)\b")
_FIXED_RE = re.compile(r"\b(?:fixed|resolved|sorted out|working again|back up|repaired|looked at)\b")   # "need it fixed asap"
_BUYING_RE = re.compile(r"\b(?:need|want|buy|purchas|switch|start|decid|roll|implement|go live|sign|looking|evaluat|"
                        r"replac|launch|budget|plan(?:ning)? to|hoping|move|migrat)\w*")


def _buying_part(text: str) -> str:
    """The sentences that may state a buying timeline: a report of something broken ("the sync
    broke yesterday", "login is down right now") tells when it broke, not when they buy."""
    keep = [s for s in split_sentences(text) if not _PROBLEM_RE.search(s.lower())
            or (_BUYING_RE.search(s.lower()) and not _FIXED_RE.search(s.lower()))]
    return " ".join(keep)


# "next month" as a date: "before/by … next month" is its first day, "end of next month" its last days, else its middle.
_NEXT_MONTH_RE = re.compile(r"\b(?:(before|by|until|start of|beginning of|early)\b[^.?!]{0,40}?|(end of|late)\s+|)(?:the\s+)?next month\b")
_SPAN_WORDS = {"a month or two": "1-2 months", "a month": "1 month", "one month": "1 month", "a couple of": "2",
               "a couple": "2", "couple of": "2", "a few": "3", "few": "3", "one": "1", "two": "2", "three": "3",
               "four": "4", "five": "5", "six": "6", "eight": "8", "nine": "9", "twelve": "12"}
_SPAN_WORDS_RE = re.compile(r"\b(?:a month or two|a month|one month|(?:a couple of|a couple|couple of|a few|few|one|two|three|four|"
                            r"five|six|eight|nine|twelve)(?=\s+(?:(?:-|to|or)\s*\w+\s+)?(?:weeks?|months?)\b))\b")
_SPAN_RE = re.compile(r"\b(?:in|within|next|over)\s+(?:the\s+)?(?:next\s+)?(\d{1,2})(?:\s*(?:-|to|–|or)\s*(\d{1,2}))?\s+(weeks?|months?)\b")


def extract_timeline(text: str, today: date | None = None, asked: bool = False) -> Fact | None:
    today = today or date.today()
    low = _buying_part(text).lower()

    def fact(v: str, ev: str, certain: bool = True) -> Fact:
        return Fact(v, certain=certain, evidence=ev)

    simple = [
        ("now", r"\b(?:(?:need|want|start|buy)\w*\b[^.?!]{0,40}\bnow|asap|a\.s\.a\.p|right away|immediately|urgent(?:ly)?|this week|this month|next week|"
                r"(?:in|within) (?:the next )?(?:a |two |2 |few |couple(?: of)? )weeks?|right now|as soon as possible|"
                r"(?:need|want)\w*\b[^.?!]{0,40}\byesterday)\b"),
        ("this_quarter", r"\b(?:this quarter|end of (?:the |this )?quarter|this qtr)\b"),
        ("next_quarter", r"\b(?:next quarter|next qtr)\b"),
        ("this_year", r"\b(?:this year|by (?:the )?end of (?:the )?year|later this year|within (?:the next )?(?:6|six|9|nine|12|twelve) months|"
                      r"in (?:6|six|9|nine) months|this fiscal year|this fy|h2)\b"),
        ("later", r"\b(?:next year|no rush|just (?:looking|browsing|exploring|researching)|not (?:any )?time soon|someday|"
                  r"down the road|long[- ]term|no timeline|no timeframe|in a year|(?:in|within) (?:a year|12 months) or (?:more|two))\b"),
    ]
    m = _QUARTER_RE.search(low)
    if m:
        prep, which, qn, yy = m.group(1), m.group(2), int(m.group(3)), m.group(4)
        q_now = (today.month - 1) // 3 + 1
        year = today.year
        if yy:
            year = 2000 + int(yy)
        elif which == "next" or qn < q_now or (qn == q_now and prep == "before"):
            year += 1 if which != "this" else 0
        start = date(year, 3 * (qn - 1) + 1, 1)
        end = date(year + (1 if qn == 4 else 0), 1 if qn == 4 else 3 * qn + 1, 1)
        deadline = start if prep in ("before", "start of", "early") else end
        return fact(_bucket_for_deadline(today, deadline), m.group(0).strip())
    for bucket, pat in simple:
        mm = re.search(pat, low)
        if mm:
            return fact(bucket, mm.group(0))
    mm = _NEXT_MONTH_RE.search(low)      # "next month" on the visitor's calendar: from 1 Dec, that is January
    if mm:
        first = date(today.year + (today.month == 12), today.month % 12 + 1, 1)
        late = re.search(r"\b(?:end of|late)\s+(?:the\s+)?next month", mm.group(0))
        deadline = first + timedelta(days=27) if late else first if mm.group(1) else first + timedelta(days=14)
        return fact(_bucket_for_deadline(today, deadline), mm.group(0))
    mm = re.search(r"\b(?:by|before|in|until|end of)\s+(" + "|".join(_MONTHS) + r")\b", low)
    if mm:
        month = _MONTHS.index(mm.group(1)) + 1
        year = today.year if month >= today.month else today.year + 1
        deadline = date(year, month, 28)
        return fact(_bucket_for_deadline(today, deadline), mm.group(0))
    mm = _SPAN_RE.search(_digits(_SPAN_WORDS_RE.sub(lambda w: _SPAN_WORDS[w.group(0)], low)))   # "in 6 weeks", "next 2-3 months", "in a month or two"
    if mm:
        n = (int(mm.group(1)) + int(mm.group(2) or mm.group(1))) / 2
        days = int(n * (7 if mm.group(3).startswith("week") else 30))
        return fact(_bucket_for_deadline(today, today + timedelta(days=days)), mm.group(0))
    if asked and re.search(r"\b(?:not sure|no idea|don't know|tbd|undecided)\b", low):
        return None
    return None


_MONEY_RE = re.compile(r"(?:(?:\$|usd\s?|us\$|€|eur\s?|£|gbp\s?)\s*(\d[\d,]*(?:\.\d+)?)\s*(k|m|mm|thousand|million|grand)?\b"
                       r"|\b(\d[\d,]*(?:\.\d+)?)\s*(k|m|mm|thousand|million|grand)\b(?:\s*(?:dollars|usd|eur|euros|€|\$))?"
                       r"|\b(\d[\d,]*(?:\.\d+)?)\s*(?:dollars|usd|eur|euros))", re.I)


_APPROVED_RE = re.compile(
    r"\b(?:budget(?:'s|’s| is| has| was)?\s+(?:already |been |now |fully |officially )*(?:approved|signed off|allocated|set aside|"
    r"secured|in place|there|sorted|locked in)|(?:have|has|got|received|secured|with) (?:the |a |an |our )?(?:approved )?budget|"
    r"approved budget|got budget|funded|(?:got|have|has|received|secured|with|got the) (?:the |a |an |our |final )?"
    r"(?:sign[- ]?off|approval|green light|go-ahead|go ahead)|(?:finance|cfo|leadership|the board|management|procurement)\s+"
    r"(?:has |have |already |just )*(?:approved|signed off|okayed|ok'd))")


def extract_budget(text: str, asked: bool = False) -> Fact | None:
    low = text.lower()
    budgety = asked or re.search(r"\b(?:budget|budgeted|spend|afford|allocated|per year|a year|annually|/yr|/year|per month|/mo|"
                                 r"a month|ballpark|set aside|earmarked|grand)\b", low)
    if budgety:
        m = _MONEY_RE.search(text)
        if m:
            raw, suf = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4)) if m.group(3) else (m.group(5), None)
            n = _num(raw, suf)
            if n:
                tail = low[m.end(): m.end() + 16]
                if re.match(r"\s*(?:/\s*mo\b|/\s*month|per month|a month|monthly)", tail):
                    n *= 12
                return Fact(int(n) if float(n).is_integer() else n, evidence=m.group(0))
    if _APPROVED_RE.search(low) \
            and not re.search(r"\b(?:don't|do not|no|not yet)\b[^.]*budget", low):
        return Fact("approved", evidence="budget approved")
    if re.search(r"\b(?:no budget|don't have (?:a |any )?budget|haven't (?:got|set) (?:a )?budget|budget (?:is )?(?:tbd|not set)|not yet)\b", low) \
            and (asked or "budget" in low):
        return Fact("none yet", evidence="no budget yet")
    return None


# ---------------------------------------------------------------------------------------------
# Intents

INJECTION_RE = re.compile(
    r"(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|the\s+|your\s+|my\s+|previous\s+|prior\s+|above\s+|earlier\s+)*"
    r"(?:instructions?|prompts?|rules?|guidelines?|directions?|system)"
    r"|(?:print|show|reveal|repeat|output|display|tell me|give me|what(?:'s| is| are))\s+(?:me\s+)?(?:your|the)\s+(?:system\s+|initial\s+|hidden\s+|original\s+)?(?:prompt|instructions|system message|rules)"
    r"|system prompt|developer mode|jailbreak|\bDAN\b|you are now|act as (?:an? )?(?:unrestricted|different|new)|pretend (?:you are|to be)"
    r"|(?:list|show|give|dump|export|tell)\s+(?:me\s+)?(?:all\s+|the\s+|your\s+)?(?:other\s+)?(?:leads|customers'? (?:emails|data|contacts)|visitors|users|prospects|contacts|emails)\b"
    r"|(?:other|another)\s+(?:leads?|visitors?|prospects?|customers?)'?s?\s+(?:emails?|data|details|info|conversations?|names?)"
    r"|\b(?:set|change|update|give)\s+(?:my|the|this)\s+(?:lead\s+)?score\b|\bmark me as (?:an? )?(?:sql|qualified|hot)"
    r"|<\s*/?\s*(?:system|im_start|im_end)\s*>|\[\s*system\s*\]|###\s*(?:system|instruction)",
    re.I)

HUMAN_RE = re.compile(r"\b(?:(?:talk|speak|chat)\s+(?:to|with)\s+(?:a |an |the |your |some )?(?:real |actual )?(?:person|human|someone|somebody|people|rep|representative|sales(?:person| rep| team)?|agent|team|account exec)"
                      r"|real person|human being|a human\b|live agent|connect me (?:with|to)|put me in touch|can someone (?:call|email|contact) me|have someone (?:call|email|contact|reach))", re.I)
# Asking for a meeting in any product's words; the product's own ("demo", "see it in action")
# are `vocabulary.intents.book` in the playbook.
BOOK_RE = re.compile(r"\b(?:book (?:a |an )?(?:call|meeting|time|slot|session)|schedule (?:a |an )?(?:call|meeting|time)|"
                     r"set up (?:a |an )?(?:call|meeting)|get on a call|hop on a call|jump on a call|"
                     r"meet (?:with )?(?:your|the) team)\b", re.I)
# Opting out, in several languages: "stop", "unsubscribe", "leave me alone", "basta", "keine
# Nachrichten mehr", "arrêtez", "pare de me mandar mensagens". "Stop" counts only as a request
# ("please stop", "stop.", "stop messaging me"), never inside a need ("stop manual data entry").
UNSUB_RE = re.compile(
    r"\b(?:unsubscribe|opt[- ]out|remove me|take me off|leave me alone|"
    r"stop (?:emailing|contacting|messaging|texting|writing|bothering|spamming|asking|sending|calling)|"
    r"(?:don'?t|do not|never) (?:contact|email|e-mail|message|text|call|write to|bother) (?:me|us)|no more (?:emails|messages)|"
    r"basta|no me (?:escribas|escriba|escriban|contactes|contacte|mandes|env[ií]es)|deja(?:d|n)? de (?:escribir|enviar|mandar|contactar)|"
    r"d[ée]jame en paz|dar(?:me)? de baja|no me interesa|"
    r"keine (?:nachrichten|e-?mails|mails|werbung) mehr|lass(?:t)? mich in ruhe|lassen sie mich in ruhe|h[öo]r(?:en sie|t)? auf|"
    r"kein interesse|abmelden|"
    r"arr[êe]t(?:ez|e|es)|laisse[zs]?[- ]moi tranquille|ne (?:me )?(?:contactez|contacte|[ée]crivez|[ée]cris) plus|"
    r"pas int[ée]ress[ée]e?|d[ée]sabonne|d[ée]sinscri|"
    r"pare de (?:me )?(?:mandar|enviar|escrever|contatar)|para de me|n[ãa]o tenho interesse|me deix(?:e|a) em paz|"
    r"descadastr|n[ãa]o me (?:contate|mande|envie|escreva))\b"
    r"|(?:^|[\s,.;!])(?:please\s+|pls\s+|just\s+)?stop\b(?=\s*(?:[.!,;]|please\b|now\b|it\b|that\b|$))", re.I)
FAREWELL_RE = re.compile(r"\b(?:bye|goodbye|good bye|ciao|adi[oó]s|tsch[üu]ss|au revoir|tchau)\b", re.I)
# "Am I talking to a bot?" in several languages: answered truthfully (an automated assistant).
_BOTLIKE = (r"(?:real |actual |live |a real |an actual )?(?:bot|robot|chat ?bot|ai|a\.i\.|human|human being|person|"
            r"machine|computer|program|automated|automatic|real|chatgpt|gpt|llm|language model)")
_END = r"(?=\s*(?:[?!.,]|or\b|$))"
IDENTITY_RE = re.compile(
    r"\b(?:are|r)\s+(?:you|u|ya)\s+(?:a |an )?" + _BOTLIKE + r"\b"
    r"|\b(?:am i|are we)\s+(?:talking|chatting|speaking|writing)\s+(?:to|with)\s+(?:a |an )?" + _BOTLIKE + r"\b"
    r"|\bis (?:this|it|that)\s+(?:a |an )?" + _BOTLIKE + _END +
    r"|\bis (?:anyone|anybody|someone|somebody) (?:real|human)\b"
    r"|\b(?:eres|es usted|sos)\s+(?:un |una )?(?:bot|robot|chatbot|ia|humano|humana|persona|m[áa]quina|programa)\b"
    r"|\b(?:estoy hablando|hablo) con (?:un |una )?(?:bot|robot|chatbot|persona|humano|m[áa]quina|ia)\b"
    r"|\b(?:bist du|sind sie|ist das|ist dies)\s+(?:ein |eine )?(?:bot|roboter|chatbot|ki|mensch|echter mensch|echte person|maschine)\b"
    r"|\b(?:spreche|schreibe|chatte) ich mit (?:einem |einer )?(?:bot|roboter|chatbot|menschen|mensch|person|maschine|ki)\b"
    r"|\b(?:es-tu|es tu|êtes-vous|etes-vous|êtes vous|tu es|t'es|vous êtes)\s+(?:un |une )?(?:bot|robot|chatbot|ia|humain|humaine|personne|vraie personne|machine)\b"
    r"|\bje (?:parle|discute|chatte) (?:à|a|avec) (?:un |une )?(?:bot|robot|chatbot|humain|personne|vraie personne|machine|ia)\b"
    r"|\b(?:voc[êe]|vc|tu)\s+(?:é|e|és)\s+(?:um |uma )?(?:bot|rob[ôo]|chatbot|ia|humano|humana|pessoa|m[áa]quina)\b"
    r"|\b(?:estou|t[ôo]|to) (?:falando|conversando) com (?:um |uma )?(?:bot|rob[ôo]|chatbot|pessoa|humano|m[áa]quina|ia)\b",
    re.I)
JOB_RE = re.compile(r"\b(?:are you hiring|you hiring|looking for (?:a |an )?(?:job|role|position|internship)|job (?:opening|application|offer)s?|open (?:positions?|roles)|"
                    r"apply (?:for|to) (?:a |the )?(?:job|role|position)|my (?:resume|cv)\b|career opportunit|job seeker|work for you|join your team)", re.I)
SKIP_RE = re.compile(r"^\s*(?:skip|pass|next|n/?a|rather not(?: say)?|i'?d rather not(?: say)?|prefer not(?: to)?(?: say)?|not sure|no idea|"
                     r"don'?t know|dunno|can'?t say|can'?t share|not telling|none of your business|no comment|later|not now|idk|not yet sure)\b", re.I)
GREETING_RE = re.compile(r"^\s*(?:hi|hello|hey|hiya|good (?:morning|afternoon|evening)|howdy|yo|greetings)\b", re.I)
AFFIRM_RE = re.compile(r"^\s*(?:yes|yeah|yep|yup|sure|ok(?:ay)?|sounds good|that works|works for me|let'?s (?:do it|talk|chat)|please do|go ahead|absolutely|definitely|great|perfect)\b", re.I)
NOT_INTERESTED_RE = re.compile(r"\b(?:not interested|no thanks|no thank you|leave me alone|stop asking)\b", re.I)
PRICE_OBJECTION_RE = re.compile(r"\b(?:too expensive|pricey|costs? too much|can'?t afford|out of (?:our|my) budget)\b", re.I)
OBJECTION_RE = re.compile(r"\b(?:too expensive|pricey|costs? too much|can'?t afford|already (?:use|have)|happy with (?:our|what)|not interested|"
                          r"no need|doesn'?t fit|we built our own|not a priority)\b", re.I)
INTEGRATION_ASK_RE = re.compile(
    r"(?:integrat\w*|connect\w*|sync\w*|work|works|plug(?:\s+in)?|hook\s+up|"
    r"integra\w*|int[èe]gr\w*|conecta\w*|connecte\w*|verbind\w*|funciona|funktioniert|fonctionne)\s+"   # es/pt/fr/de
    r"(?:with|to|into|in|con|com|avec|mit|a)\s+(?:the\s+|your\s+|our\s+|el\s+|la\s+|o\s+|le\s+|nuestro\s+|unserem\s+)?"
    r"([\w][\w.&+'-]*(?:\s+(?!and\b|or\b|too\b|as\b|please\b|yet\b)[\w][\w.&+'-]*){0,3})"
    r"|(?:support|have)\s+(?:an?\s+)?([A-Z][\w.&+'-]*(?:\s+[A-Z0-9][\w.&+'-]*){0,2})\s+(?:integration|connector|sync)"
    r"|(?:is there|do you have)\s+(?:an?\s+)?([\w][\w.&+'-]*(?:\s+[\w][\w.&+'-]*){0,2})\s+(?:integration|connector|plugin)", re.I)
_GENERIC_TARGETS = {"it", "that", "this", "them", "our crm", "crm", "us", "you", "other tools", "our stack", "our tools",
                    "our data", "existing tools", "everything", "my", "our", "tools", "apps", "a crm"}


def opts_out(text: str, questions: list[str]) -> bool:
    """The visitor asks us to stop: an explicit opt-out in any of the languages above, or "not
    interested" / "no thanks" said as a goodbye (short, or with a farewell, and no question)."""
    if UNSUB_RE.search(text):
        return True
    return bool(NOT_INTERESTED_RE.search(text)) and not questions and (
        bool(FAREWELL_RE.search(text)) or (len(text) <= 40 and "not interested" in text.lower()))


# A list of tools: "Salesforce, Slack or Zoom", "hubspot + outreach", "Pipedrive & Gmail".
_LIST_SEP_RE = re.compile(r"\s*(?:,|\+|&|/|\band\b|\bor\b|\bplus\b|\bas well as\b)\s*", re.I)
_CLAUSE_END_RE = re.compile(r"[?!;:()]|\.(?=\s|$)|\s[-–—]\s")
def _tool_re(name: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])", re.I)


# Words that end a tool's name in a list ("Salesforce and Trello because we use both").
_LIST_STOP = {"because", "since", "so", "we", "i", "do", "does", "did", "is", "are", "if", "when", "that", "which",
              "for", "in", "at", "yet", "too", "please", "as", "already", "natively", "out", "of", "the", "our",
              "your", "my", "it", "also", "both", "either", "then", "what", "how", "about", "with", "to", "can",
              "will", "would", "could", "you", "they", "there", "a", "an", "any", "other", "else", "etc", "use",
              "using", "work", "works", "integrate", "integration", "integrations", "support", "supported"}


def integrations_asked(text: str, known: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The tools a question asks about, each once, in the order named: what follows "integrate
    with" / "work with" / "support an X integration", every member of that list ("Salesforce and
    Trello" is two tools), and — given the `known` tool names (the content's integrations) — every
    member of a list that names one of them ("what about hubspot and gong", "Salesforce, Slack or
    Zoom?", "hubspot + outreach"), in any casing."""
    out: list[str] = []

    def add(name: str) -> None:
        name = re.sub(r"^[\W_]+|[?.!,:;'\"\W]+$", "", name).strip()
        if len(name) >= 2 and name.lower() not in _GENERIC_TARGETS and name.lower() not in (o.lower() for o in out):
            out.append(name)

    for m in INTEGRATION_ASK_RE.finditer(text):
        g = next(i for i, v in enumerate(m.groups(), 1) if v)
        if g != 1:
            add(m.group(g))
            continue
        clause = _CLAUSE_END_RE.split(text[m.start(1):], 1)[0]
        for i, piece in enumerate(_LIST_SEP_RE.split(clause)):
            words = []
            for w in piece.split():
                if w.lower() in _LIST_STOP:
                    break
                words.append(w)
            if not words:
                break
            add(" ".join(words[:4]) if i else m.group(1))
    names = [n for n in known if n and n.strip()]
    if names:
        for clause in _CLAUSE_END_RE.split(text):
            pieces = [p.strip() for p in _LIST_SEP_RE.split(clause) if p.strip()]
            hits = [sorted((m.start(), n) for n in names if (m := _tool_re(n).search(p))) for p in pieces]
            if not any(hits):
                continue
            for p, found in zip(pieces, hits):
                if found:
                    for _, n in found:
                        add(n)
                elif len(pieces) > 1 and 1 <= len(p.split()) <= 2 and not any(w.lower() in _LIST_STOP for w in p.split()):
                    add(p)   # an unknown tool in a list of known ones ("hubspot + outreach")
    return out


# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _competitor_re(competitors: tuple[str, ...]) -> re.Pattern[str] | None:
    """'I work at <competitor>' for the playbook's competitors (compiled once per list)."""
    if not competitors:
        return None
    names = "|".join(re.escape(c.lower()) for c in competitors)
    return re.compile(r"\b(?:i work (?:at|for)|i'm (?:with|from|at)|i am (?:with|from|at)|we're|we are|here from|"
                      r"work at)\s+(?:" + names + ")")


_REQUESTS = {"objection", "not_interested", "price_objection", "human", "book", "unsubscribe", "job_seeker",
             "competitor", "greeting", "affirm"}


def understand(text: str, playbook: Playbook, asked_field: str | None = None, today: date | None = None,
               known: dict[str, Any] | None = None) -> Understanding:
    """Facts, intents and questions in one visitor message, by rules only."""
    u = Understanding()
    if INJECTION_RE.search(text):
        u.intents.add("injection")
        return u
    sentences = split_sentences(text)
    u.questions = [s for s in sentences if is_question(s)]
    _read_intents(u, text, playbook)
    statement = " ".join(s for s in sentences if not is_question(s)) if u.questions else text
    skipping = bool(SKIP_RE.search(text)) and not u.questions
    if asked_field and skipping:
        u.skipped = asked_field
        u.intents.add("skip")
    _read_fields(u, text, statement, playbook, today, known or {})
    # The answer to the question we just asked: read the message as that field, but only when it
    # said nothing else we recognise ("Acme Corp" after "Which company?"; not "2 people" after "need?").
    if asked_field is not None and not u.questions and not skipping and not u.intents & _REQUESTS:
        _read_asked_answer(u, asked_field, text, statement, playbook, today)
    # An answer that filled nothing the bot asked for is still an answer, not a skip.
    if u.fields and "question" not in u.intents:
        u.intents.add("answer")
    if not u.intents:
        u.intents.add("small_talk")
    return u


def _read_intents(u: Understanding, text: str, playbook: Playbook) -> None:
    """What the message asks or does (intents, requested action), its topics and the tools asked about."""
    lex = playbook.lexicon()
    if u.questions:
        u.intents.add("question")
    if GREETING_RE.search(text) and len(text) < 40:
        u.intents.add("greeting")
    if opts_out(text, u.questions):
        u.intents.add("unsubscribe")
        u.requested_action = "unsubscribe"
    if IDENTITY_RE.search(text):
        u.intents.add("identity_question")
    if JOB_RE.search(text):
        u.intents.add("job_seeker")
    if HUMAN_RE.search(IDENTITY_RE.sub(" ", text)):   # "are you a real person?" asks what we are, not for one
        u.intents.add("human")
        u.requested_action = "human"
    if BOOK_RE.search(text) or lex.asks_to_book(text):
        u.intents.add("book")
        if u.requested_action == "continue":
            u.requested_action = "book"
    for intent, rx in ((("objection", OBJECTION_RE), ("not_interested", NOT_INTERESTED_RE),
                        ("price_objection", PRICE_OBJECTION_RE))):
        if rx.search(text):
            u.intents.add(intent)
    if AFFIRM_RE.search(text) and len(text) < 60:
        u.intents.add("affirm")
    u.topics = lex.topics_in(" ".join(u.questions) or text, question=bool(u.questions))
    u.integrations_asked = integrations_asked(" ".join(u.questions)) if u.questions else []
    competitor = _competitor_re(tuple(playbook.disqualify.competitors))
    if competitor is not None and competitor.search(text.lower()):
        u.intents.add("competitor")


def _put(u: Understanding, name: str, f: Fact | None) -> None:
    if f is not None and f.value not in (None, ""):
        u.fields[name] = f


# A correction: "actually", "sorry, I meant", "not 800 but 80", "80 not 800", "my bad".
_CORRECTION_RE = re.compile(
    r"\b(?:actually|sorry|i meant|i mean|correction|to correct|scratch that|my bad|my mistake|oops|typo|no wait|"
    r"perd[óo]n|quise decir|en realidad|eigentlich|korrektur|ich meinte|en fait|pardon|je voulais dire|na verdade|quis dizer)\b"
    r"|\bnot\s+\S+(?:\s+\S+)?\s+but\b|\d[\d,.]*\s*k?\s*(?:\w+\s+)?,?\s*not\s+" + _APPROX + r"?\s*\d", re.I)


def _read_fields(u: Understanding, text: str, statement: str, playbook: Playbook, today: date | None,
                 known: dict[str, Any]) -> None:
    """Every fact the message states, whatever was asked (questions are not read as facts). A
    correction of a field we know replaces it: certain, with the source `corrected`."""
    correcting = bool(_CORRECTION_RE.search(statement))
    _put(u, "email", extract_email(text))
    if re.search(r"\d[\d\s().-]{6,}\d", text):   # seven digits or more, however grouped
        _put(u, "phone", extract_phone(EMAIL_RE.sub(" ", text)))
    if "email" in u.fields and not known.get("company"):
        _put(u, "company", company_from_email(u.fields["email"].value))
    _put(u, "company_size", extract_company_size(statement, correcting=correcting and bool(known.get("company_size"))))
    role, seniority = extract_role(statement)
    _put(u, "role", role)
    _put(u, "seniority", seniority)
    _put(u, "timeline", extract_timeline(statement, today))
    _put(u, "budget", extract_budget(statement))
    _put(u, "name", extract_name(statement, playbook=playbook))
    company = extract_company(statement)
    guessed = "company" not in u.fields or u.fields["company"].source == "guessed_from_email"
    if company and (company.certain or guessed):
        _put(u, "company", company)    # what they wrote beats what the email domain suggests
    _put(u, "industry", extract_industry(text, playbook))
    _put(u, "need", extract_need(text, playbook))
    if correcting:
        for name, fact in u.fields.items():
            if name != "email" and known.get(name) not in (None, "") and fact.value != known.get(name):
                fact.certain, fact.source = True, "corrected"


def _read_asked_answer(u: Understanding, asked_field: str, text: str, statement: str, playbook: Playbook,
                       today: date | None) -> None:
    """A bare reply to the question just asked ("450" after "how many people?") as that field."""
    others = set(u.fields) - {"company"} if "email" in u.fields else u.fields
    if asked_field in u.fields or others:
        if asked_field == "budget" and "budget" not in u.fields:
            _put(u, "budget", extract_budget(statement, asked=True))
        return
    if asked_field in ("role", "seniority"):
        role, seniority = extract_role(statement, asked=True)
        _put(u, "role", role)
        _put(u, "seniority", seniority)
        return
    readers = {
        "company_size": lambda: extract_company_size(statement, asked=True),
        "timeline": lambda: extract_timeline(statement, today, asked=True),
        "budget": lambda: extract_budget(statement, asked=True),
        "name": lambda: extract_name(statement, asked=True, playbook=playbook),
        "company": lambda: extract_company(statement, asked=True),
        "industry": lambda: extract_industry(text, playbook, asked=True),
        "need": lambda: extract_need(text, playbook, asked=True),
    }
    if asked_field in readers:
        _put(u, asked_field, readers[asked_field]())
