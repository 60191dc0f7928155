"""The new part of a reply: quoted history and signature cut off, and HTML turned into text.

Quoted history is found by mail-parser-reply (https://github.com/alfonsrv/mail-parser-reply), which
knows the attribution lines and header blocks of Gmail ("On <date> <name> wrote:"), Outlook
("From: ... Sent: ... To: ... Subject:" and "-----Original Message-----"), Apple Mail ("On <date>, at
<time>, <name> wrote:") in English, German, French, Spanish, Italian, Dutch, Danish, Swedish, Polish,
Czech and more. What it misses (its Spanish Gmail line, any language's "wrote:" we don't list) is caught
by a language-free rule: a trailing block of `>`-quoted lines goes, with the line ending in `:` just
above it.

The library's own signature rule cuts everything after a line starting "Thanks," — which loses
"Thanks, that helps. We are 40 reps." — so signatures are cut here, conservatively:
- from the RFC 3676 4.3 separator `-- ` on;
- mobile footers ("Sent from my iPhone", "Get Outlook for iOS", "Von meinem iPhone gesendet", ...);
- a closing line ("Best,", "Kind regards", "Viele Grüße", "Cordialement,", "Saludos,", "Thanks, Ana")
  that is not the first line and is followed by at most 6 short lines without a question.
If cutting leaves nothing, the uncut text is kept: a reply is never emptied by stripping.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

from mailparser_reply import EmailReplyParser

MAX_CHARS = 50_000           # longer bodies are cut first (the new part is on top): stripping stays fast
LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "da", "sv", "pl", "cs"]
_parser = EmailReplyParser(languages=LANGUAGES)

_MOBILE = re.compile(
    r"^\s*(?:sent from my \S+(?: \S+){0,3}|sent from (?:mail|outlook|yahoo mail|gmail)(?: for \S+)?|"
    r"get outlook for \S+|sent via \S+(?: \S+)?|envoy[ée] de mon \S+(?: \S+)?|von meinem \S+(?: \S+)? gesendet|"
    r"enviado desde mi \S+(?: \S+)?|inviato da \S+(?: \S+)?|verzonden (?:vanaf|met) mijn \S+(?: \S+)?)\s*\.?\s*$",
    re.IGNORECASE)
_CLOSING = re.compile(
    r"^\s*(?:best(?: regards| wishes)?|kind regards|warm regards|regards|many thanks|thanks(?: again| so much)?|"
    r"thank you|thx|cheers|sincerely|yours(?: truly| sincerely)?|all the best|talk soon|"
    r"viele grüße|beste grüße|liebe grüße|mit freundlichen grüßen|freundliche grüße|grüße|gruß|lg|vg|"
    r"cordialement|bien cordialement|bien à vous|bonne journée|merci(?: beaucoup)?|"
    r"saludos(?: cordiales)?|un saludo|atentamente|muchas gracias|gracias|"
    r"cordiali saluti|distinti saluti|saluti|grazie|met vriendelijke groet(?:en)?|groeten|hartelijke groet)"
    r"\s*[,.!]*(?:\s*[A-Z][\w.'’-]*){0,2}\s*[,.!]*\s*$", re.IGNORECASE)


def _cut_quoted_tail(text: str) -> str:
    """Drop a trailing block of `>`-quoted (or blank) lines and the attribution line ending in ':' above it."""
    lines = text.split("\n")
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    if end == len(lines) or not any(x.lstrip().startswith(">") for x in lines[end:]):
        return text
    if end and lines[end - 1].rstrip().endswith(":") and len(lines[end - 1]) < 400:
        end -= 1
        if end and lines[end - 1].strip() and ("@" in lines[end - 1] or lines[end].lstrip()[:1] in "<("):
            end -= 1            # an attribution line wrapped in two ("On ..., Ava <\nava@...> wrote:")
    return "\n".join(lines[:end])


def _cut_signature(text: str) -> str:
    lines = [x for x in text.split("\n") if not _MOBILE.match(x)]
    content = [i for i, x in enumerate(lines) if x.strip()]
    if not content:
        return ""
    for i in content[1:]:
        if lines[i].rstrip() == "--":            # RFC 3676 "-- " (trailing space already gone)
            lines = lines[:i]
            break
    content = [i for i, x in enumerate(lines) if x.strip()]
    for i in reversed(content[1:]):
        after = [lines[j].strip() for j in content if j > i]
        if len(after) > 6:
            break
        if _CLOSING.match(lines[i]) and all(len(x) <= 80 and not x.endswith("?") for x in after):
            lines = lines[:i]
            break
    return "\n".join(lines)


def strip_reply(text: str | None) -> str:
    """The newest part of a plain-text reply (see the module docstring); "" for no text."""
    if not text:
        return ""
    text = text[:MAX_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    # Runs of blank lines make the library's patterns quadratic (4,000 took 8 s): one blank line is enough.
    text = re.sub(r"\n(?:[^\S\n]*\n)+", "\n\n", text)
    try:
        replies = _parser.read(text).replies
        latest = replies[0].full_body if replies else text
    except Exception:   # the library is a heuristic: never let it fail a delivery
        latest = text
    latest = _cut_quoted_tail(latest.strip() or text)
    stripped = _cut_signature(latest).strip()
    return stripped or latest.strip() or text.strip()


class _HtmlText(HTMLParser):
    BLOCK = {"p", "div", "br", "li", "tr", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre"}
    SKIP = {"script", "style", "head", "title", "template"}
    VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "wbr"}

    def __init__(self, drop_quotes: bool):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.drop_quotes = drop_quotes
        self.hidden: list[str] = []   # the open elements whose content is left out

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            self.handle_startendtag(tag, attrs)
            return
        classes = " ".join(v or "" for k, v in attrs if k in ("class", "id")).lower()
        quoted = self.drop_quotes and (tag == "blockquote" or "gmail_quote" in classes or "divrplyfwdmsg" in classes)
        if self.hidden or tag in self.SKIP or quoted:
            self.hidden.append(tag)
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.hidden and tag in ("br", "hr"):
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self.hidden:
            if tag in self.hidden:
                while self.hidden and self.hidden.pop() != tag:
                    pass
            return
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.out.append(re.sub(r"[ \t\r\n\f]+", " ", data))


def html_to_text(html: str | None, *, drop_quotes: bool = False) -> str:
    """Readable text from an HTML body (tags dropped, blocks on their own lines, entities decoded);
    with `drop_quotes`, <blockquote> and Gmail/Outlook quote containers are left out."""
    if not html:
        return ""
    p = _HtmlText(drop_quotes)
    try:
        p.feed(html[: MAX_CHARS * 5])
        p.close()
    except Exception:
        pass
    lines = [x.strip() for x in "".join(p.out).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
