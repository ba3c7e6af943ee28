"""Sentence boundaries shared by chunking (ingest) and extractive answers (retrieval): one rule, so a
quoted sentence is exactly a sentence the chunker kept whole. English .!? before whitespace (with closing
quotes/brackets), Chinese 。！？ anywhere, and line breaks."""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)|[。！？]+[”’」』）)\]]*|\n")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans (absolute offsets into text, whitespace trimmed) of text[start:end]."""
    end = len(text) if end is None else end
    spans, pos = [], start
    for m in _BOUNDARY.finditer(text, start, end):
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
