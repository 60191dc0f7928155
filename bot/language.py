"""Which language the visitor writes in: `lingua-language-detector`, loaded once per process.

    language_of("Hola, somos unas 200 personas y ¿cuánto cuesta?")   # -> "es"
    conversation_language(state, text)                                 # sticky per conversation

Low-accuracy mode (trigrams only) over the languages below: ~0.1 s and ~40 MB to load, well under
a millisecond a message, and right on the short messages of a chat where it matters (a sentence or
more). A message too short to tell ("ok", "Salesforce?") never changes the conversation's language,
and a message with English function words stays English even when its names look foreign
("I am Jürgen from Bäckström & Co" — lingua's rules read umlauts as German).
"""
from __future__ import annotations

import re
import threading
from typing import Any

DEFAULT = "en"
# ISO 639-1 code -> the language's name in English and in itself (for "a colleague can continue in …").
NAMES: dict[str, tuple[str, str]] = {
    "en": ("English", "English"), "es": ("Spanish", "español"), "de": ("German", "Deutsch"),
    "fr": ("French", "français"), "pt": ("Portuguese", "português"), "it": ("Italian", "italiano"),
    "nl": ("Dutch", "Nederlands"), "pl": ("Polish", "polski"), "sv": ("Swedish", "svenska"),
    "da": ("Danish", "dansk"), "nb": ("Norwegian", "norsk"), "fi": ("Finnish", "suomi"),
    "cs": ("Czech", "čeština"), "tr": ("Turkish", "Türkçe"), "ru": ("Russian", "русский"),
    "uk": ("Ukrainian", "українська"), "ar": ("Arabic", "العربية"), "he": ("Hebrew", "עברית"),
    "hi": ("Hindi", "हिन्दी"), "zh": ("Chinese", "中文"), "ja": ("Japanese", "日本語"), "ko": ("Korean", "한국어"),
    "id": ("Indonesian", "Bahasa Indonesia"), "vi": ("Vietnamese", "Tiếng Việt"),
}
MIN_CONFIDENCE = 0.8          # lingua's relative confidence of the top language
_WORD = re.compile(r"[^\W\d_]+")
_WIDE = re.compile(r"[\u0590-\u06ff\u0900-\u097f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u0400-\u04ff]")
# English function words: two of them keep a message English whatever its names look like.
_ENGLISH = {"i", "i'm", "im", "we", "we're", "you", "the", "a", "an", "and", "is", "are", "am", "our", "my", "your",
            "what", "how", "do", "does", "can", "from", "at", "with", "for", "to", "of", "in", "it", "this", "that",
            "about", "need", "want", "looking", "here", "hi", "hello", "thanks", "please"}

_detector: Any = None
_lock = threading.Lock()


def _load() -> Any:
    global _detector
    if _detector is None:
        with _lock:
            if _detector is None:
                from lingua import IsoCode639_1, LanguageDetectorBuilder
                codes = [getattr(IsoCode639_1, c.upper()) for c in NAMES]
                _detector = (LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
                             .with_low_accuracy_mode().with_preloaded_language_models().build())
    return _detector


def warm() -> None:
    """Load the detector now (e.g. in a background thread at start), not in a visitor's turn."""
    _load()


def language_of(text: str) -> str | None:
    """The ISO 639-1 code of the language `text` is written in, or None when it is too short or
    too mixed to tell (fewer than three words, no confident winner). English is "en"."""
    text = _without_names(text)
    words = _WORD.findall(text)
    wide = len(_WIDE.findall(text))
    if len(words) < 3 and wide < 4:
        return None
    short = len(words) < 5 and wide < 4   # "Pipelark se integra con": too few words to tell Spanish from Swedish…
    lowered = [w.lower() for w in re.findall(r"[\w'’]+", text)]
    if wide < 4 and sum(w in _ENGLISH for w in lowered) >= 2:
        return "en"
    values = _load().compute_language_confidence_values(text)
    if not values or values[0].value < MIN_CONFIDENCE:
        return None
    code = values[0].language.iso_code_639_1.name.lower()
    if short and code != DEFAULT:
        return None                       # … but enough to hear English again ("good to know, thanks")
    return code if code in NAMES else None


_NAMEISH = re.compile(r"(?<![.!?¿¡:;]\s)(?<!^)(?<![.!?¿¡:;])\b[A-ZÀ-ÖØ-Þ][\w'’&.-]*")


def _without_names(text: str) -> str:
    """The text without capitalised words inside sentences (names of people, companies, tools:
    "Bäckström", "HubSpot"), which say nothing about the language and fool the detector."""
    return _NAMEISH.sub(" ", text.strip())


def conversation_language(state: dict[str, Any], text: str) -> str:
    """The language to answer in: this message's when it is clear, else the conversation's so far
    (`state["language"]`), else English."""
    return language_of(text) or str(state.get("language") or DEFAULT)


def name_of(code: str, *, native: bool = False) -> str:
    """"Spanish" (or "español" with `native`) for "es"; the code itself when unknown."""
    names = NAMES.get(code)
    return (names[1] if native else names[0]) if names else code
