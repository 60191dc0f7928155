"""Small text helpers every part shares: one email pattern, one word-boundary match, clean text.

Kept here once so the web layer, the understanding step, the guard and the model brain agree on
what an email address and a whole word are.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterable

# An email address inside free text ("reach me at ana@acme.example."), internationalised too
# (müller.jürgen@bäckström.de, 张伟@例子.中国): a candidate only — bot.extract.extract_email checks it
# with `email-validator` (RFC 5321/6531), as the web layer checks a form or widget field.
EMAIL_RE = re.compile(r"[\w.%+'-]+@[\w-]+(?:\.[\w-]+)*\.(?:[^\W\d_]{2,}|xn--[\w-]+)")


# A whole word: not preceded or followed by a letter, digit, underscore or hyphen.
WORD_START, WORD_END = r"(?<![\w-])", r"(?![\w-])"


@lru_cache(maxsize=4096)
def _word_re(phrase: str, flags: int) -> re.Pattern[str]:
    return re.compile(WORD_START + re.escape(phrase) + WORD_END, flags)


def word_pattern(phrase: str, ignore_case: bool = False) -> re.Pattern[str]:
    """A compiled pattern matching `phrase` as whole words: not inside a longer word or a
    hyphenated one ('ops' is not in 'devops' nor in 'ops-heavy'). Cached per phrase."""
    return _word_re(phrase, re.I if ignore_case else 0)


def words_pattern(words: Iterable[str], ignore_case: bool = True) -> re.Pattern[str] | None:
    """One pattern matching any of `words` (plain words or phrases) as whole words; a trailing `*`
    matches any ending ("forecast*" finds "forecasting"). None when there are no words."""
    alts = [re.escape(w[:-1]) + r"[\w-]*" if w.endswith("*") else re.escape(w) for w in words]
    if not alts:
        return None
    return re.compile(WORD_START + "(?:" + "|".join(alts) + ")" + WORD_END, re.I if ignore_case else 0)


def has_word(text: str, phrase: str, ignore_case: bool = False) -> bool:
    """True when `phrase` occurs in `text` as whole words (see `word_pattern`)."""
    return word_pattern(phrase, ignore_case).search(text) is not None


def clean_text(text: str) -> str:
    """Text a database can store: no NUL bytes, no lone surrogates (valid in JSON, not in UTF-8)."""
    text = text.replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8") if any("\ud800" <= ch <= "\udfff" for ch in text) else text


def clean_json(value: Any, keep: tuple[type, ...] = ()) -> Any:
    """Every string (keys too) in a parsed JSON body made storable with `clean_text`, done once as
    the body is read so lengths and patterns are checked on what will be stored. Instances of a
    `keep` type (e.g. numbers kept as written text) are returned as they are."""
    if keep and isinstance(value, keep):
        return value
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): clean_json(v, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v, keep) for v in value]
    return value


def too_deep(value: Any, max_depth: int) -> bool:
    """True when parsed JSON nests objects/arrays more than `max_depth` levels (checked level by
    level, without recursion, so a hostile body cannot exhaust the stack)."""
    level, depth = [value] if isinstance(value, (dict, list)) else [], 0
    while level:
        depth += 1
        if depth > max_depth:
            return True
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x) if isinstance(v, (dict, list))]
    return False


def load_yaml(text: str) -> Any:
    """YAML → Python data, safely (no tags that build objects): PyYAML's safe loader, in its libyaml
    (C) form when PyYAML was built with it — ~10× faster, which a worker's start-up feels (the
    playbook and the prompt files: 0.29 → ~0.03 s). Raises yaml.YAMLError with the line and column."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def dump_yaml(data: Any, **options: Any) -> str:
    """Python data → YAML text with PyYAML's safe dumper, in its libyaml (C) form when available
    (~8× faster: the playbook's grounding text and the reply templates' evidence are dumped on a
    server's first turn). `options` are PyYAML's (sort_keys, allow_unicode, ...)."""
    import yaml

    return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), **options)

