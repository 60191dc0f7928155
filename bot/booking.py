"""Meeting booking, the pure core: which slots a rep can offer, which three to offer a visitor, what
the visitor picked, and how the offer reads. No I/O, no calendar client: only zoneinfo.

Times: every `Slot` holds aware UTC datetimes. Working hours are the rep's local wall-clock times,
built per day with zoneinfo and converted to UTC, so a slot at 09:00 in London is 08:00 UTC in
summer and 09:00 UTC in winter. Labels and everything a visitor types are read in the visitor's
zone.

The calendar adapters (integrations/calendar) implement `CalendarBackend`, return `Booking` and
raise `SlotTaken` / `CalendarUnavailable`; those types live here so the turn can use them without
importing an integration.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

PREFERRED_START = time(9, 0)     # visitor-local hours we prefer to offer
PREFERRED_END = time(18, 0)


# ---------------------------------------------------------------------------------------------
# Types shared with the calendar adapters


class SlotTaken(RuntimeError):
    """The slot was booked by someone else between the offer and the pick (or the calendar says
    it is busy now). Offer fresh slots."""


class CalendarUnavailable(RuntimeError):
    """The calendar service could not be reached or refused the request (not a taken slot).
    Nothing was booked; apologise and hand the meeting to the rep."""


@dataclass
class Booking:
    status: Literal["booked", "pending"]   # pending: the host still has to confirm (Cal.com)
    external_id: str | None                # the calendar's id for it (event UID, Cal.com booking uid)
    ics: str                               # the iCalendar invitation (METHOD:REQUEST, times in UTC), also in Meeting.ics
    meeting_id: int | None = None          # the `meetings` row


@runtime_checkable
class CalendarBackend(Protocol):
    """What the conversation needs from a calendar. Implementations: integrations/calendar."""
    name: str

    def free_slots(self, rep: Any, now_utc: datetime) -> list["Slot"]:
        """Bookable slots for `rep` from now (notice and horizon from the playbook's calendar)."""
        ...

    def book(self, rep: Any, slot: "Slot", attendee: dict[str, Any], title: str, description: str = "",
             *, lead_id: str) -> Booking:
        """Book `slot` for the attendee ({name, email, timezone}); raises SlotTaken if it is gone."""
        ...


# ---------------------------------------------------------------------------------------------
# Slots


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def as_utc(dt: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken as UTC (the store's convention)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _hour12(t: datetime) -> str:
    h = t.hour % 12 or 12
    return f"{h}:{t.minute:02d} {'am' if t.hour < 12 else 'pm'}"


@dataclass(frozen=True)
class Slot:
    start: datetime      # aware UTC
    end: datetime        # aware UTC
    rep_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start))
        object.__setattr__(self, "end", as_utc(self.end))

    def local(self, tz: str) -> datetime:
        return self.start.astimezone(_zone(tz))

    def label(self, tz: str) -> str:
        """'Thu 27 Nov, 2:00 pm' in the zone `tz` (locale-independent)."""
        t = self.local(tz)
        return f"{_DAY_NAMES[t.weekday()]} {t.day} {_MONTH_NAMES[t.month - 1]}, {_hour12(t)}"

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)

    def to_dict(self) -> dict[str, str]:
        """JSON-safe, for keeping the offered slots in the conversation state."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "rep_id": self.rep_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Slot":
        return cls(datetime.fromisoformat(d["start"]), datetime.fromisoformat(d["end"]), d["rep_id"])


def _parse_hhmm(s: str) -> tuple[int, int]:
    h, m = s.strip().split(":")
    return int(h), int(m)


def _wall(day: date, hm: tuple[int, int], tz: ZoneInfo) -> datetime:
    """The wall-clock time `hm` on `day` in `tz` ("24:00" is the next midnight), as aware UTC."""
    naive = datetime.combine(day, time(0)) + timedelta(hours=hm[0], minutes=hm[1])
    return naive.replace(tzinfo=tz).astimezone(UTC)


def _overlaps(a0: datetime, a1: datetime, b0: datetime, b1: datetime) -> bool:
    return a0 < b1 and b0 < a1


def working_slots(rep: Any, now_utc: datetime, cal: Any,
                  busy: Iterable[tuple[datetime, datetime]] = ()) -> list[Slot]:
    """Every `cal.slot_minutes` slot inside the rep's working hours on working days (rep's zone),
    starting no sooner than now + `min_notice_hours`, on the rep's local dates from today through
    today + `days_ahead`, minus those overlapping a busy interval. Sorted by start."""
    tz = _zone(rep.timezone)
    now = as_utc(now_utc)
    earliest = now + timedelta(hours=float(cal.min_notice_hours))
    step = timedelta(minutes=int(cal.slot_minutes))
    if step <= timedelta(0):
        return []
    start_hm, end_hm = (_parse_hhmm(p) for p in rep.working_hours.split("-"))
    days = {WEEKDAYS.index(d) for d in rep.working_days}
    intervals = sorted((as_utc(b0), as_utc(b1)) for b0, b1 in busy)
    today = now.astimezone(tz).date()
    out: list[Slot] = []
    for offset in range(int(cal.days_ahead) + 1):
        day = today + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        t, day_end = _wall(day, start_hm, tz), _wall(day, end_hm, tz)
        while t + step <= day_end:
            s_end = t + step
            if t >= earliest and not any(_overlaps(t, s_end, b0, b1) for b0, b1 in intervals):
                out.append(Slot(t, s_end, rep.id))
            t = s_end
    return out


def _window_distance(slot: Slot, tz: ZoneInfo) -> int:
    """Minutes outside the visitor's preferred 9:00-18:00 (0 when inside)."""
    s = slot.start.astimezone(tz)
    start_m = s.hour * 60 + s.minute
    end_m = start_m + slot.minutes
    lo = PREFERRED_START.hour * 60 + PREFERRED_START.minute
    hi = PREFERRED_END.hour * 60 + PREFERRED_END.minute
    return max(lo - start_m, end_m - hi, 0)


def choose_offer(slots: Iterable[Slot], visitor_tz: str, n: int = 3) -> list[Slot]:
    """Up to `n` slots on different visitor-local days where possible: per day the first slot inside
    9:00-18:00 visitor time (else the one nearest to it), days with an in-hours slot first, soonest
    first. With fewer days than `n`, more slots from the same days, spread out. Sorted by start."""
    tz = _zone(visitor_tz)
    pool = sorted(set(slots), key=lambda s: (s.start, s.rep_id))
    if n <= 0 or not pool:
        return []
    by_day: dict[date, list[Slot]] = {}
    for s in pool:
        by_day.setdefault(s.start.astimezone(tz).date(), []).append(s)
    best = [min(day_slots, key=lambda s: (_window_distance(s, tz), s.start)) for day_slots in by_day.values()]
    good = [s for s in best if _window_distance(s, tz) == 0]
    other = [s for s in best if _window_distance(s, tz) > 0]
    chosen = (good + other)[:n]
    if len(chosen) < n:   # fewer days than n: more from the same days, at least 2 h from the others
        rest = sorted((s for s in pool if s not in chosen), key=lambda s: (_window_distance(s, tz) > 0, s.start))
        for gap in (timedelta(hours=2), timedelta(0)):
            for s in rest:
                if len(chosen) >= n:
                    break
                if s not in chosen and all(abs(s.start - c.start) >= gap for c in chosen):
                    chosen.append(s)
    return sorted(chosen, key=lambda s: s.start)


def format_offer(slots: list[Slot], visitor_tz: str) -> str:
    """'Here are three times (Europe/Berlin): 1) Thu 27 Nov, 2:00 pm 2) … 3) … — which suits you?'"""
    if not slots:
        return "I couldn't find a free time in the next few days — could you suggest a day that suits you?"
    tz = _zone(visitor_tz).key
    items = " ".join(f"{i}) {s.label(tz)}" for i, s in enumerate(slots, 1))
    if len(slots) == 1:
        return f"Here is a time ({tz}): {items} — does that suit you?"
    count = _NUMBER_WORDS[len(slots)] if len(slots) < len(_NUMBER_WORDS) else str(len(slots))
    return f"Here are {count} times ({tz}): {items} — which suits you?"


# ---------------------------------------------------------------------------------------------
# What the visitor picked

_WEEKDAY_WORDS = {
    "monday": 0, "mon": 0, "tuesday": 1, "tues": 1, "tue": 1, "wednesday": 2, "weds": 2, "wed": 2,
    "thursday": 3, "thurs": 3, "thur": 3, "thu": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5,
    "sunday": 6, "sun": 6,
}
_MONTH_WORDS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}
_ORDINAL_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6}
_CARDINALS = {w: i for i, w in enumerate(_NUMBER_WORDS) if i}

_WD = r"(?P<wd>" + "|".join(sorted(_WEEKDAY_WORDS, key=len, reverse=True)) + r")\b\.?"
_MON = r"(?:" + "|".join(sorted(_MONTH_WORDS, key=len, reverse=True)) + r")\b\.?"
_DAYNUM = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_DATE_DM = re.compile(rf"\b(?P<d>{_DAYNUM})\s+(?:of\s+)?(?P<m>{_MON})")
_DATE_MD = re.compile(rf"\b(?P<m>{_MON})\s+(?:the\s+)?(?P<d>{_DAYNUM})\b")
_DAY_OF_MONTH = re.compile(r"\b(?P<d>[12]\d|3[01]|0?[7-9])(?:st|nd|rd|th)\b")   # "the 27th" (1st-6th read as options)
_DATE_ISO = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b")
_WEEKDAY = re.compile(r"\b" + _WD)
_RELDAY = re.compile(r"\b(?P<rel>day after tomorrow|tomorrow|tmrw|tmr|today|tonight)\b")

_TIME_MERIDIEM = re.compile(r"\b(?P<h>1[0-2]|0?[1-9])(?:[:.](?P<m>[0-5]\d))?\s*(?P<ap>a\.?m\.?|p\.?m\.?)(?![a-z])")
_TIME_24 = re.compile(r"\b(?P<h>[01]?\d|2[0-3])(?::|\.|h)(?P<m>[0-5]\d)\b")
_TIME_H = re.compile(r"\b(?P<h>[01]?\d|2[0-3])h\b")
_TIME_AT = re.compile(r"(?:\bat|@|\baround)\s*(?P<h>[01]?\d|2[0-3])(?![\d:])(?!\.\d)(?:\s*o'?clock)?")
_TIME_WORD = re.compile(r"\b(?P<w>noon|midday)\b")
_PART_OF_DAY = re.compile(r"\b(?P<p>morning|afternoon|evening)\b")

_NEGATIVE = re.compile(
    r"\b(?:none|neither|nope|nothing)\b|\b(?:do|does|did|would|will|can|could)\s*(?:n'?t|not)\b"
    r"|\bcan'?t\b|\bcannot\b|\bwon'?t\b|\bnot\s+(?:good|great|work|possible|available|free)\b"
    r"|\b(?:other|different|another|later|earlier)\s+(?:times?|days?|slots?|options?|week)\b|\bbusy\b")
_AFFIRM = re.compile(r"^\W*(?:yes|yep|yeah|sure|ok|okay|perfect|great|sounds good|works|that works|book it)\b")
_ORD_WORD = re.compile(r"\b(?P<w>first|second|third|fourth|fifth|sixth|last|latter|final)\b")
_ORD_SUFFIX = re.compile(r"\b(?P<n>[1-6])(?:st|nd|rd|th)\b")
_ORD_TAGGED = re.compile(
    r"(?:\b(?:option|number|no\.|choice|slot|num)\s*|#\s*)(?P<n>\d{1,2}|" + "|".join(_CARDINALS) + r")\b")
_FILLER = re.compile(r"\b(?:please|pls|thanks|thank you|works|work|is|fine|good|great|for me|the|ok|okay|"
                     r"i'?ll take|take|let'?s do|lets do|go with|i choose|i pick|pick|sounds|perfect|id like|i'd like|yes)\b")


@dataclass
class _Cues:
    ordinals: set[int]
    weekdays: set[int]
    dates: set[tuple[int, int]]          # (month, day)
    month_days: set[int]                 # a day of the month with no month ("the 27th")
    rel_dates: set[date]
    times: set[tuple[int, int]]          # (hour, minute) candidates
    part_of_day: str | None


def _ordinal_index(word: str, count: int) -> int | None:
    if word in ("last", "latter", "final"):
        return count
    return _ORDINAL_WORDS.get(word)


class _Text:
    """The visitor's words, lower-cased; `take` returns a pattern's matches and blanks them out
    (same length), so a date is not read again as a time or an option number."""

    def __init__(self, text: str):
        self.t = " " + text.lower().replace("’", "'") + " "

    def take(self, rx: re.Pattern[str]) -> list[re.Match[str]]:
        found = list(rx.finditer(self.t))
        for m in found:
            self.t = self.t[:m.start()] + " " * (m.end() - m.start()) + self.t[m.end():]
        return found


def _date_cues(t: _Text, c: _Cues, today: date) -> None:
    for rx in (_DATE_ISO, _DATE_DM, _DATE_MD):
        for m in t.take(rx):
            mon = m.group("m")
            month = int(mon) if mon.isdigit() else _MONTH_WORDS[mon.rstrip(".")]
            day = int(re.sub(r"\D", "", m.group("d")))
            if 1 <= month <= 12 and 1 <= day <= 31:
                c.dates.add((month, day))
    c.month_days.update(int(m.group("d")) for m in t.take(_DAY_OF_MONTH))
    for m in t.take(_RELDAY):
        rel = m.group("rel")
        delta = 2 if rel == "day after tomorrow" else 1 if rel in ("tomorrow", "tmrw", "tmr") else 0
        c.rel_dates.add(today + timedelta(days=delta))
        if rel == "tonight":
            c.part_of_day = "evening"
    c.weekdays.update(_WEEKDAY_WORDS[m.group("wd")] for m in t.take(_WEEKDAY))


def _time_cues(t: _Text, c: _Cues) -> None:
    for m in t.take(_TIME_MERIDIEM):
        h, mi = int(m.group("h")) % 12, int(m.group("m") or 0)
        c.times.add((h + (12 if m.group("ap").startswith("p") else 0), mi))
    for rx in (_TIME_24, _TIME_H):
        for m in t.take(rx):
            h, mi = int(m.group("h")), int(m.groupdict().get("m") or 0)
            c.times.update({(h, mi), (h + 12, mi)} if 1 <= h <= 7 else {(h, mi)})
    for m in t.take(_TIME_AT):
        h = int(m.group("h"))
        c.times.update({(h, 0), (h + 12, 0)} if 1 <= h < 12 else {(h, 0)})
    if t.take(_TIME_WORD):
        c.times.add((12, 0))
    for m in t.take(_PART_OF_DAY):
        c.part_of_day = m.group("p")


def _option_cues(t: _Text, c: _Cues, offered_count: int) -> None:
    for m in t.take(_ORD_TAGGED):
        n = m.group("n")
        c.ordinals.add(int(n) if n.isdigit() else _CARDINALS[n])
    for m in t.take(_ORD_WORD):
        idx = _ordinal_index(m.group("w"), offered_count)
        if idx:
            c.ordinals.add(idx)
    c.ordinals.update(int(m.group("n")) for m in t.take(_ORD_SUFFIX))
    # a bare number ("2", "3 please", "one"), when nothing else says when
    has_when = c.weekdays or c.dates or c.month_days or c.rel_dates or c.times or c.part_of_day
    rest = re.sub(r"[^\w]+", " ", _FILLER.sub(" ", t.t)).split()
    if c.ordinals:
        rest = [w for w in rest if w != "one"]          # "the second one"
    if not c.ordinals and not has_when and len(rest) == 1 and (rest[0].isdigit() or rest[0] in _CARDINALS):
        c.ordinals.add(int(rest[0]) if rest[0].isdigit() else _CARDINALS[rest[0]])


def _cues(text: str, offered_count: int, today: date) -> _Cues:
    """What the visitor's words say about which offered time they mean: dates first, then times,
    then option numbers ("the second one")."""
    t = _Text(text)
    c = _Cues(set(), set(), set(), set(), set(), set(), None)
    _date_cues(t, c, today)
    _time_cues(t, c)
    _option_cues(t, c, offered_count)
    return c


def _part_matches(part: str, local: datetime) -> bool:
    h = local.hour
    return {"morning": h < 12, "afternoon": 12 <= h < 17, "evening": h >= 17}[part]


def parse_pick(text: str, offered: list[Slot], visitor_tz: str, now_utc: datetime) -> Slot | None:
    """The offered slot the visitor picked, read in the visitor's zone: "2", "#3", "option 1", "the
    second one", "the last one", "Thursday 2pm works", "thu at 14:00", "tomorrow at 10",
    "10:30am on Friday", "27 Nov 2pm". None when nothing offered matches, when more than one does,
    when the cues disagree, or when the visitor declines ("none of those work")."""
    if not offered or not text or not text.strip():
        return None
    tz = _zone(visitor_tz)
    today = as_utc(now_utc).astimezone(tz).date()
    if _NEGATIVE.search(text.lower().replace("’", "'")):
        return None
    c = _cues(text, len(offered), today)
    has_when = bool(c.weekdays or c.dates or c.month_days or c.rel_dates or c.times or c.part_of_day)
    if not c.ordinals and not has_when:
        if len(offered) == 1 and _AFFIRM.search(text.lower()):
            return offered[0]
        return None
    candidates = list(offered)
    if c.ordinals:
        if len(c.ordinals) != 1:
            return None
        idx = next(iter(c.ordinals))
        if not 1 <= idx <= len(offered):
            return None
        candidates = [offered[idx - 1]]
    if has_when:
        def fits(s: Slot) -> bool:
            loc = s.start.astimezone(tz)
            if c.weekdays and loc.weekday() not in c.weekdays:
                return False
            if c.dates and (loc.month, loc.day) not in c.dates:
                return False
            if c.month_days and loc.day not in c.month_days:
                return False
            if c.rel_dates and loc.date() not in c.rel_dates:
                return False
            if c.times and (loc.hour, loc.minute) not in c.times:
                return False
            if c.part_of_day and not _part_matches(c.part_of_day, loc):
                return False
            return True
        candidates = [s for s in candidates if fits(s)]
    return candidates[0] if len(candidates) == 1 else None


# ---------------------------------------------------------------------------------------------
# When the visitor wants to meet ("next month", "in 2 weeks", "early January", "after the 15th")

_EARLY_LATE = {"early": (1, 10), "beginning of": (1, 10), "start of": (1, 10), "first half of": (1, 15),
               "mid": (11, 20), "mid-": (11, 20), "middle of": (11, 20), "second half of": (16, 31),
               "late": (21, 31), "end of": (21, 31)}
_MONTH_RX = r"(?P<mon>" + "|".join(sorted(_MONTH_WORDS, key=len, reverse=True)) + r")\b\.?"
_IN_MONTH = re.compile(r"\b(?:(?P<part>early|beginning of|start of|first half of|mid-?|middle of|second half of|late|end of)\s*"
                       r"|(?:in|during|for|sometime in|some time in)\s+)(?:the\s+)?" + _MONTH_RX)
_NEXT_MONTH = re.compile(r"\b(?:(?P<part>early|beginning of|start of|first half of|mid-?|middle of|second half of|late|end of)\s+)?"
                         r"(?:the\s+)?next month\b")
_SPAN = re.compile(r"\b(?:in|within|after)\s+(?:the\s+next\s+)?(?:about\s+|around\s+)?(?P<n>\d{1,2}|a|an|one|two|three|four|five|six|"
                   r"a couple of|a couple|couple of|a few|few)(?:\s*(?:-|to|–|or)\s*(?P<n2>\d{1,2}|two|three|four|five|six))?\s+"
                   r"(?P<unit>days?|weeks?|months?)\b")
_NEXT_WEEK = re.compile(r"\b(?:(?P<part>early|late|end of|beginning of|start of)\s+)?(?:the\s+)?(?P<which>next|following)\s+week\b"
                        r"|\bweek after next\b")
_AFTER_DAY = re.compile(r"\b(?P<rel>after|from|starting|starting from|beginning|not before|no earlier than)\s+(?:the\s+)?"
                        r"(?:(?P<mon1>" + "|".join(sorted(_MONTH_WORDS, key=len, reverse=True)) + r")\.?\s+(?:the\s+)?)?"
                        r"(?P<d>[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?\b(?:\s+(?:of\s+)?(?P<mon2>"
                        + "|".join(sorted(_MONTH_WORDS, key=len, reverse=True)) + r")\b)?")
_WEEK_OF = re.compile(r"\bweek of (?:the\s+)?(?:(?P<mon1>" + "|".join(sorted(_MONTH_WORDS, key=len, reverse=True)) + r")\.?\s+)?"
                      r"(?P<d>[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?\b(?:\s+(?:of\s+)?(?P<mon2>"
                      + "|".join(sorted(_MONTH_WORDS, key=len, reverse=True)) + r")\b)?")
_SMALL = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "a couple of": 2,
          "a couple": 2, "couple of": 2, "a few": 3, "few": 3}
MAX_WINDOW_DAYS = 366


def _month_end(year: int, month: int) -> date:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def _add_months(d: date, n: int) -> tuple[int, int]:
    m = d.month - 1 + n
    return d.year + m // 12, m % 12 + 1


def _part(year: int, month: int, part: str | None) -> tuple[date, date]:
    lo, hi = _EARLY_LATE.get((part or "").strip(), (1, 31))
    end = _month_end(year, month)
    return date(year, month, lo), min(end, date(year, month, min(hi, end.day)))


def _on_or_after(today: date, month: int | None, day: int) -> date | None:
    """The next date on or after `today` with this day of the month (and month, if given)."""
    for k in range(0, 13):
        y, m = _add_months(today.replace(day=1), k)
        if month is not None and m != month:
            continue
        if day <= _month_end(y, m).day and date(y, m, day) >= today:
            return date(y, m, day)
    return None


def meeting_window(text: str, today: date) -> tuple[date, date] | None:
    """The dates (first, last; visitor-local) the visitor asks to meet in, read against `today` on
    their calendar: "next month", "early/mid/late January", "in January", "in 2 weeks", "in 2-3
    weeks", "next week", "after the 15th", "from March 3", "the week of the 12th". None when the
    message names no such time (then the soonest free times are offered)."""
    t = " " + (text or "").lower().replace("’", "'") + " "
    m = _NEXT_MONTH.search(t)
    if m:
        y, mo = _add_months(today, 1)
        return _part(y, mo, m.group("part"))
    m = _IN_MONTH.search(t)
    if m:
        month = _MONTH_WORDS[m.group("mon").rstrip(".")]
        part = m.group("part")
        year = today.year if month > today.month or (month == today.month and part is None) else today.year + 1
        lo, hi = _part(year, month, part)
        if hi < today:
            lo, hi = _part(year + 1, month, part)
        return max(lo, today), hi
    m = _WEEK_OF.search(t)
    if m:
        mon = m.group("mon1") or m.group("mon2")
        day = _on_or_after(today, _MONTH_WORDS[mon.rstrip(".")] if mon else None, int(m.group("d")))
        if day:
            start = day - timedelta(days=day.weekday())
            return max(start, today), start + timedelta(days=6)
    m = _AFTER_DAY.search(t)
    if m:
        mon = m.group("mon1") or m.group("mon2")
        day = _on_or_after(today + timedelta(days=1), _MONTH_WORDS[mon.rstrip(".")] if mon else None, int(m.group("d")))
        if day:
            start = day + timedelta(days=1) if m.group("rel") == "after" else day
            return start, start + timedelta(days=13)
    m = _NEXT_WEEK.search(t)
    if m:
        weeks = 2 if "after next" in m.group(0) else 1
        start = today - timedelta(days=today.weekday()) + timedelta(weeks=weeks)
        part = m.groupdict().get("part") or ""
        if part in ("early", "beginning of", "start of"):
            return start, start + timedelta(days=2)
        if part in ("late", "end of"):
            return start + timedelta(days=3), start + timedelta(days=6)
        return start, start + timedelta(days=6)
    m = _SPAN.search(t)
    if m:
        n = int(m.group("n")) if m.group("n").isdigit() else _SMALL[m.group("n")]
        n2 = m.group("n2")
        hi_n = (int(n2) if n2.isdigit() else _SMALL[n2]) if n2 else n
        unit = m.group("unit")
        if unit.startswith("day"):
            return today + timedelta(days=n), today + timedelta(days=hi_n + 2)
        if unit.startswith("week"):
            start = today + timedelta(weeks=n)
            start -= timedelta(days=start.weekday())          # that week, Monday to Sunday
            return max(start, today + timedelta(days=1)), today + timedelta(weeks=hi_n) + timedelta(days=6 - (today + timedelta(weeks=hi_n)).weekday())
        y, mo = _add_months(today, n)
        lo = date(y, mo, min(today.day, _month_end(y, mo).day))
        y2, mo2 = _add_months(today, hi_n)
        return lo - timedelta(days=7), date(y2, mo2, min(today.day, _month_end(y2, mo2).day)) + timedelta(days=7)
    return None


def in_window(slots: Iterable[Slot], window: tuple[date, date] | None, visitor_tz: str) -> list[Slot]:
    """The slots whose visitor-local date lies in `window` (all of them when there is none)."""
    if window is None:
        return list(slots)
    tz = _zone(visitor_tz)
    return [s for s in slots if window[0] <= s.start.astimezone(tz).date() <= window[1]]


def window_start_utc(window: tuple[date, date], visitor_tz: str, now_utc: datetime) -> datetime:
    """The instant to ask a calendar for free slots from: the window's first visitor-local
    midnight (never before now)."""
    start = datetime.combine(window[0], time(0)).replace(tzinfo=_zone(visitor_tz)).astimezone(UTC)
    return max(start, as_utc(now_utc))
