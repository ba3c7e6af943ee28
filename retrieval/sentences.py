"""Sentence boundaries shared by chunking (ingest) and extractive answers (retrieval): one rule, so a
quoted sentence is exactly a sentence the chunker kept whole. English .!? before whitespace (with closing
quotes/brackets; a period not before lower case, nor after an initial or an abbreviation: ``_no_full_stop``), Chinese 。！？ anywhere, and line breaks, except a line break inside a hard-wrapped
paragraph: one that ends a non-empty line and is followed by a line starting in lower case (or a bracket, or
a figure after a long line: ``continues_line``) (text files,
Markdown and e-mail wrapped at ~72-80 columns: "...so that their dependencies are\nsatisfied, but ..." is
one sentence, not two quotes that each say half of it)."""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)|[。！？]+[”’」』）)\]]*|\n")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans (absolute offsets into text, whitespace trimmed) of text[start:end]."""
    end = len(text) if end is None else end
    spans, pos = [], start
    for m in _BOUNDARY.finditer(text, start, end):
        if m.group() == "\n" and _soft_wrap(text, m.start(), start, end):
            continue
        if m.group()[0] == "." and _no_full_stop(text, m.start(), m.end(), start, end):
            continue
        spans.append((pos, m.end()))
        pos = m.end()
    spans.append((pos, end))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


# abbreviations whose full stop ends no sentence, though a capital may follow ("e.g. GNU", "Dr. Smith"), and
# those that do so before a number only ("Fig. 3", "No. 5"; "He said no. Then" ends one)
_ABBREVIATIONS = frozenset(
    "e.g i.e cf vs viz approx incl resp esp ca mr mrs ms dr prof al z.b d.h u.a bzw ggf evtl inkl vgl".split()
)
_NUMBERED = frozenset("no nr fig figs eq sec ch vol pp p art abs".split())
_INITIAL = re.compile(r"[A-Z]\.(?=\s|$)")


def _no_full_stop(text: str, i: int, j: int, start: int, end: int) -> bool:
    """Whether the period(s) at text[i:j] end no sentence: the next word starts in lower case ("e.g. the",
    "approx. five"), or the word before is an abbreviation (``_ABBREVIATIONS``; ``_NUMBERED`` before a
    digit), or it is an initial (one capital letter after a capitalized word, or before another initial,
    followed by a capital: "Philip A. Nelson", "J. R. R. Tolkien"; "Appendix A. The" is joined too, the
    lesser harm)."""
    k = j
    while k < end and text[k].isspace():
        k += 1
    if k >= end:
        return False
    if text[k].islower():
        return True
    if j - i != 1:
        return False
    b = i
    while b > start and (text[b - 1].isalpha() or text[b - 1] == "."):
        b -= 1
    word = text[b:i].casefold()
    if word in _ABBREVIATIONS or (word in _NUMBERED and text[k].isdigit()):
        return True
    if len(word) == 1 and text[b].isupper() and text[k].isupper():
        before = text[max(start, b - 40) : b].split()
        after_initial = (
            bool(before) and before[-1][0].isupper() and (before[-1][-1].isalpha() or before[-1][-1] == ".")
        )
        return after_initial or bool(_INITIAL.match(text, k, end))
    return False


# a heading's section number: "2.", "2.10.", "IV.", "A." (one or two digits first: "2024 Annual Report" has none)
SECTION_NUMBER = re.compile(r"^\s*(\d{1,2}(\.\d+)*\.?|[IVX]+\.|[A-Z]\.)\s+")
_OPENING = "([“‘\"'"
_ENUMERATOR = re.compile(r"[(\[](\d{1,3}|[a-zA-Z]|[ivxIVX]{1,4})[)\]]")
_LIST_NUMBER = re.compile(r"\d{1,3}(\.\d{1,3})*[.)](\s|$)")
# a line this long that ends mid-sentence was wrapped (text wrapped at 72-80 columns; a short line ending in a
# lower-case word is a heading, a label or a table row more often)
WRAPPED_CHARS = 40


def continues_line(prev: str, nxt: str) -> bool:
    """Whether the line ``nxt`` may carry on a sentence that the line ``prev`` wrapped (both stripped; the
    caller has seen no sentence end): ``nxt`` starts in lower case; or with an opening bracket or quote that
    is no enumerator ("(a)", "[3]") after a line ending in a lower-case letter or a comma ("...Notation
    One\n(ASN.1, as specified by ..."); or with a figure that is no list number ("1.", "2)") after a line of
    at least ``WRAPPED_CHARS`` ending in a lower-case letter ("...allocated in the static range\n60000-64999.
    They are ..."). Both of the last two need lower case in ``nxt``'s first 40 characters (not a running
    header such as "“PIRACY” 49", a page number or a row of figures)."""
    if not nxt or not prev:
        return False
    if nxt[0].islower():
        return True
    if not any(ch.islower() for ch in nxt[:40]):
        return False
    if nxt[0] in _OPENING:
        return not _ENUMERATOR.match(nxt) and (prev[-1].islower() or prev[-1] == ",")
    return (
        nxt[0].isdigit() and prev[-1].islower() and len(prev) >= WRAPPED_CHARS and not _LIST_NUMBER.match(nxt)
    )


def _soft_wrap(text: str, i: int, start: int, end: int) -> bool:
    """Whether the line break at text[i] wraps a paragraph (``continues_line`` of the lines around it)."""
    j = i + 1
    while j < end and text[j] in " \t":
        j += 1
    k = i - 1
    while k >= start and text[k] in " \t\r":
        k -= 1
    if j >= end or k < start or text[k] == "\n":
        return False
    line_start = max(start, text.rfind("\n", start, k) + 1)
    return continues_line(text[line_start : k + 1].strip(), text[j : min(j + 40, end)].split("\n", 1)[0])
