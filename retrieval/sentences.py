"""Sentence boundaries shared by chunking (ingest) and extractive answers (retrieval): one rule, so a
quoted sentence is exactly a sentence the chunker kept whole. English .!? before whitespace (with closing
quotes/brackets), Chinese 。！？ anywhere, and line breaks, except a line break inside a hard-wrapped
paragraph: one that ends a non-empty line and is followed by a line starting in lower case (text files,
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


def _soft_wrap(text: str, i: int, start: int, end: int) -> bool:
    """Whether the line break at text[i] wraps a paragraph: text before it on its line, and the next line
    starts (after spaces) with a lower-case letter."""
    j = i + 1
    while j < end and text[j] in " \t":
        j += 1
    if j >= end or not text[j].islower():
        return False
    k = i - 1
    while k >= start and text[k] in " \t\r":
        k -= 1
    return k >= start and text[k] != "\n"
