"""Small text helpers every part shares: one email pattern, one word-boundary match, clean text.

Kept here once so the web layer, the understanding step, the guard and the model brain agree on
what an email address and a whole word are.
"""
from __future__ import annotations

import re
from functools import lru_cache

# An email address inside free text ("reach me at ana@acme.example."). Validation of a form or
# widget field is stricter and done with `email-validator` at the edge (integrations/web).
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


@lru_cache(maxsize=4096)
def _word_re(phrase: str, flags: int) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(phrase) + r"(?![\w-])", flags)


def word_pattern(phrase: str, ignore_case: bool = False) -> re.Pattern[str]:
    """A compiled pattern matching `phrase` as whole words: not inside a longer word or a
    hyphenated one ('ops' is not in 'devops' nor in 'ops-heavy'). Cached per phrase."""
    return _word_re(phrase, re.I if ignore_case else 0)


def has_word(text: str, phrase: str, ignore_case: bool = False) -> bool:
    """True when `phrase` occurs in `text` as whole words (see `word_pattern`)."""
    return word_pattern(phrase, ignore_case).search(text) is not None


def clean_text(text: str) -> str:
    """Text a database can store: no NUL bytes, no lone surrogates (valid in JSON, not in UTF-8)."""
    text = text.replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8") if any("\ud800" <= ch <= "\udfff" for ch in text) else text
