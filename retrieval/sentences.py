"""Sentence boundaries shared by chunking (ingest) and extractive answers (retrieval): one rule, so a
quoted sentence is exactly a sentence the chunker kept whole. English .!? before whitespace (with closing
quotes/brackets; a period not before lower case, nor after a space, an initial or an abbreviation:
``_no_full_stop``), Chinese and Japanese 。！？ anywhere (and ｡, and ． after kana or kanji), and line breaks, except a line break inside a hard-wrapped paragraph: one that ends a non-empty line and is followed by a line starting in lower case (or a bracket, or
a figure after a long line: ``continues_line``), or one after a long line or a dangling word with no stop
(``_wrapped``: "...isn't packaged in\nDebian, we ...") (text files,
Markdown and e-mail wrapped at ~72-80 columns: "...so that their dependencies are\nsatisfied, but ..." is
one sentence, not two quotes that each say half of it)."""

from __future__ import annotations

import re

# NOTE: Japanese text also ends sentences with the full-width period ． (the style of many technical and academic
# texts) and the half-width ｡; a ． after a digit or a Latin letter is a decimal point or a list number (３．５, 1．)
_BOUNDARY = re.compile(
    r"[.!?]+[\"'”’)\]]*(?=\s)|([。！？｡]|(?<=[\u3041-\u30ff\u3400-\u9fff])．)+[”’」』）)\]]*|\n"
)


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
# a list item's or section's number ("1", "2.10"), and the markers that start a list item ("- ", "1. ", "(a) ")
_NUMBER = r"\d{1,3}(\.\d{1,3})*"
_LIST_NUMBER_AT = re.compile(r"[ \t]*" + _NUMBER)  # a line's text before the period of "1." or "2.10."
_LIST_ITEM = re.compile(r"([-*•+]|" + _NUMBER + r"[.)]|[a-zA-Z][.)]|[(\[]\w{1,4}[)\]])\s")


def _no_full_stop(text: str, i: int, j: int, start: int, end: int) -> bool:
    """Whether the period(s) at text[i:j] end no sentence: the next word starts in lower case ("e.g. the",
    "approx. five") and is no heading on a line of its own (``_title_line``: an API manual's function names,
    "asn1 delete element"), or a space comes before them (a period named in code or prose: "the last `.` (period)
    character", "no `.` characters"), or the word before is an abbreviation (``_ABBREVIATIONS``;
    ``_NUMBERED`` before a digit), or it is an initial (one capital letter after a capitalized word, or before another initial,
    followed by a capital: "Philip A. Nelson", "J. R. R. Tolkien"; "Appendix A. The" is joined too, the
    lesser harm), or the number of a list item or section at the start of its line ("1. Install it.",
    "2.10. Storing ...")."""
    k = j
    while k < end and text[k].isspace():
        k += 1
    if k >= end:
        return False
    if (
        text[k].islower()
        and "\n" in text[j:k]
        and _title_line(text, k, end)
        and not _abbreviation(text, i, start)
    ):
        return False  # "...is set to NULL.\nasn1 delete element\n": a title in lower case (a function's)
    if text[k] == ".":
        return True  # dot leaders ("asn1_get_length_ber. . . . 18"): no sentence starts with a period
    if text[k].islower() or (i > start and text[i - 1] in " \t"):
        return True  # "e.g. the"; a period after a space is a symbol ("the last . (period) character")
    if j - i != 1:
        return False
    if "\n" not in text[j:k] and _LIST_NUMBER_AT.fullmatch(
        text, max(start, text.rfind("\n", start, i) + 1), i
    ):
        return True  # "1. Install it.", "2.10. Storing ...": the number of a list item or a section
    b = _word_start(text, i, start)
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


def _word_start(text: str, i: int, start: int) -> int:
    b = i
    while b > start and (text[b - 1].isalpha() or text[b - 1] == "."):
        b -= 1
    return b


def _abbreviation(text: str, i: int, start: int) -> bool:
    return text[_word_start(text, i, start) : i].casefold() in _ABBREVIATIONS


TITLE_CHARS = 40  # a line this short with no punctuation at its end, after a full stop, is a title of its own


def _title_line(text: str, k: int, end: int) -> bool:
    """Whether the line starting at text[k] reads like a heading: short, words only at its end (no stop, comma,
    colon or bracket), and followed by another line."""
    e = text.find("\n", k, end)
    line = text[k:e].strip() if e >= 0 else ""
    return 0 < len(line) <= TITLE_CHARS and (line[-1].isalnum() or line[-1] == "_")


# a heading's section number: "2.", "2.10.", "IV.", "A." (one or two digits first: "2024 Annual Report" has none)
SECTION_NUMBER = re.compile(r"^\s*(\d{1,2}(\.\d+)*\.?|[IVX]+\.|[A-Z]\.)\s+")
_OPENING = "([“‘\"'"
_ENUMERATOR = re.compile(r"[(\[](\d{1,3}|[a-zA-Z]|[ivxIVX]{1,4})[)\]]")
# a line this long that ends mid-sentence was wrapped (text wrapped at 72-80 columns; a short line ending in a
# lower-case word is a heading, a label or a table row more often)
WRAPPED_CHARS = 40


def continues_line(prev: str, nxt: str) -> bool:
    """Whether the line ``nxt`` may carry on a sentence that the line ``prev`` wrapped (both stripped; the
    caller has seen no sentence end): ``nxt`` starts in lower case; or with an opening bracket or quote that
    is no enumerator ("(a)", "[3]") after a line ending in a lower-case letter or a comma ("...Notation
    One\n(ASN.1, as specified by ..."), a line of at least ``WRAPPED_CHARS`` unless it ends in a comma or a
    dangling word (a short title such as "asn1 delete element" is no sentence going on into "[Function]..."); or with a figure that is no list number ("1.", "2)") after a line of
    at least ``WRAPPED_CHARS`` ending in a lower-case letter ("...allocated in the static range\n60000-64999.
    They are ..."). Both of the last two need lower case in ``nxt``'s first 40 characters (not a running
    header such as "“PIRACY” 49", a page number or a row of figures). A contents or index entry
    (``CONTENTS_ENTRY``) or the entries of a definition list (``definition_after``) are never carried on."""
    if not nxt or not prev:
        return False
    if definition_after(prev, nxt) or CONTENTS_ENTRY.search(prev):
        return False
    if nxt[0].islower():
        return True
    if not any(ch.islower() for ch in nxt[:40]):
        return False
    if nxt[0] in _OPENING:
        return (
            not _ENUMERATOR.match(nxt)
            and (prev[-1].islower() or prev[-1] == ",")
            and (len(prev) >= WRAPPED_CHARS or ends_dangling(prev) or prev[-1] == ",")
        )
    return (
        nxt[0].isdigit() and prev[-1].islower() and len(prev) >= WRAPPED_CHARS and not _LIST_ITEM.match(nxt)
    )


# a table of contents' or an index's entry: dot leaders, then the page number ("asn1_bit_der . . . . . 17")
CONTENTS_ENTRY = re.compile(r"(?:\.\s?){4,}\s*\w+$")
# a definition list's line: a name (a parameter, an option, a field; one or two words) and a colon
_DEFINITION = re.compile(r"[A-Za-z_][\w.\-]*( [A-Za-z_][\w.\-]*)?:\s+\S")


def definition_after(prev: str, nxt: str) -> bool:
    """Whether ``nxt`` (stripped) is the next entry of a definition list, not the rest of ``prev``: it reads
    "name: description" after a line that was such an entry too, or a signature ending in ")" (an API
    manual's "int f (char * file, int len)\nfile: the path ...\nlen: its length" says three things, where a
    wrapped sentence would quote the signature with half a parameter's description). A prose line that
    happens to start "modes: fast and safe" after "...supports two" still carries it on."""
    return bool(_DEFINITION.match(nxt)) and (
        prev.rstrip().endswith(")") or bool(_DEFINITION.match(prev.strip()))
    )


# words that end no sentence: a line ending in one was wrapped ("...are installed into\n/usr/share/...")
DANGLING_WORDS = frozenset(
    "a an the and or nor but to of in into on onto at by for from with via as than".split()
)
WRAP_LONG = 60  # a line this long that ends without a stop was wrapped, whatever the next line starts with
_UNDERLINE = re.compile(r"[=\-~^*_#+]{3,}\s*$")
_COLUMNS = re.compile(r"\S(\t| {3,})\S")  # a table row or aligned fields, not prose
_NO_WRAP_END = ".!?:;。！？｡．：；\\{[(=|<>"
_LAST_WORD = re.compile(r"(\w+)$")


def _indent(line: str) -> int:
    return len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())


def _wrapped(prev: str, nxt: str) -> bool:
    """Whether ``nxt`` carries on the line ``prev`` of plain text (both raw, indentation kept) whatever its
    first character, as "...that isn't packaged in\nDebian, we recommend ..." does: ``prev`` ends without
    a stop, in a word no sentence ends in (``DANGLING_WORDS``) or after ``WRAP_LONG`` characters, and
    neither line is a list item, a heading's underline, a table row or a code block (``nxt`` indented at most
    3 more than ``prev``, and has lower case)."""
    p, n = prev.strip(), nxt.strip()
    if not p or not n or p[-1] in _NO_WRAP_END or n.startswith(("#", ">", "|", "```")):
        return False
    if _LIST_ITEM.match(n) or _UNDERLINE.match(n) or _UNDERLINE.match(p) or definition_after(p, n):
        return False
    if _COLUMNS.search(p) or _COLUMNS.search(n) or _indent(nxt) > _indent(prev) + 3:
        return False
    if not any(ch.islower() for ch in n):  # a row of figures, a page number, a heading in capitals
        return False
    return len(p) >= WRAP_LONG or ends_dangling(p)


def ends_dangling(text: str) -> bool:
    """Whether text ends in a word no sentence ends in (``DANGLING_WORDS``): "... should be sent to"."""
    last = _LAST_WORD.search(text)
    return last is not None and last.group(1).casefold() in DANGLING_WORDS


def _soft_wrap(text: str, i: int, start: int, end: int) -> bool:
    """Whether the line break at text[i] wraps a paragraph (``continues_line`` or ``_wrapped`` of the
    lines around it)."""
    j = i + 1
    while j < end and text[j] in " \t":
        j += 1
    k = i - 1
    while k >= start and text[k] in " \t\r":
        k -= 1
    if j >= end or k < start or text[k] == "\n":
        return False
    line_start = max(start, text.rfind("\n", start, k) + 1)
    nxt_end = text.find("\n", j, min(j + 200, end))
    nxt = text[i + 1 : nxt_end if nxt_end >= 0 else min(j + 200, end)]
    prev = text[line_start : k + 1]
    return continues_line(prev.strip(), nxt.strip()[:40]) or _wrapped(prev, nxt)
