"""Token-aware chunking of a ParsedDocument with the embedding model's tokenizer.

Rules, per section (a chunk never spans two sections, so heading path and page are exact):
- The section is cut into sentences: after . ! ? followed by whitespace, after 。！？ (closing quotes
  and brackets stay with their sentence), and at line breaks (list items, table rows, paragraphs).
- Whole sentences are packed greedily up to `max_tokens`; the next chunk starts with the trailing
  sentences of the previous one whose size is nearest `overlap_tokens` (at most 1.5x it; whole
  sentences only, so the overlap is "about" overlap_tokens, and 0 when the last sentence is longer).
- A sentence longer than `max_tokens` on its own is split by tokens (windows that start on word
  boundaries, overlapping by `overlap_tokens`).
- Every chunk is an exact slice: chunk.text == doc.text[char_start:char_end], without surrounding
  whitespace; token_count is the tokenizer's count of chunk.text without special tokens.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass

from ingest.parsers import ParsedDocument
from retrieval.sentences import split_sentences

logger = logging.getLogger(__name__)


@dataclass
class ChunkSpec:
    """One chunk: its text, where it comes from, and its size in model tokens."""

    ordinal: int
    text: str
    heading_path: list[str]
    page: int | None
    char_start: int
    char_end: int
    token_count: int


class _Tokens:
    """Token offsets of one section, to count tokens of any span without re-tokenizing."""

    def __init__(self, tokenizer, text: str, base: int):
        enc = tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        self.starts = [base + s for s, _ in enc["offset_mapping"]]
        self.ends = [base + e for _, e in enc["offset_mapping"]]
        words = enc.word_ids()
        # A token may begin a window only if it begins a word (never mid-word "##piece").
        self.word_start = [i == 0 or words[i] != words[i - 1] for i in range(len(words))]

    def span(self, s: int, e: int) -> tuple[int, int]:
        """Token index range [a, b) of the tokens inside chars [s, e)."""
        return bisect.bisect_left(self.starts, s), bisect.bisect_left(self.starts, e)


def chunk_document(
    doc: ParsedDocument, tokenizer, max_tokens: int = 256, overlap_tokens: int = 32
) -> list[ChunkSpec]:
    """Chunks of `doc` of at most `max_tokens` tokens (see the module docstring for the rules)."""
    if max_tokens < 8:
        raise ValueError(f"max_tokens must be at least 8, got {max_tokens}")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError(
            f"overlap_tokens must be in [0, max_tokens) = [0, {max_tokens}), got {overlap_tokens}"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("chunk_document needs a fast (Rust) Hugging Face tokenizer, which reports offsets")
    spans: list[tuple[int, int, list[str], int | None]] = []
    text = doc.text
    for sec in doc.sections:
        body = text[sec.start : sec.end].strip()
        if not body or (sec.heading_path and body == sec.heading_path[-1]):
            continue  # empty, or a heading alone (its children carry it in their heading paths)
        toks = _Tokens(tokenizer, text[sec.start : sec.end], sec.start)
        units = [(s, e, _count(toks, s, e)) for s, e in split_sentences(text, sec.start, sec.end)]
        for s, e in _pack(units, toks, max_tokens, overlap_tokens):
            spans.append((s, e, sec.heading_path, sec.page))
    counts = _real_counts(tokenizer, [text[s:e] for s, e, _, _ in spans])
    chunks = []
    for (s, e, path, page), n in zip(spans, counts, strict=True):
        if n > max_tokens:  # tokenization of the slice differs from the section's; trim to fit
            e, n = _trim(tokenizer, text, s, e, max_tokens)
            logger.warning("chunk at %d trimmed to %d tokens", s, n)
        chunks.append(ChunkSpec(len(chunks), text[s:e], list(path), page, s, e, n))
    return chunks


def _count(toks: _Tokens, s: int, e: int) -> int:
    a, b = toks.span(s, e)
    return b - a


def _pack(
    units: list[tuple[int, int, int]], toks: _Tokens, max_tokens: int, overlap: int
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        if units[i][2] > max_tokens:
            out += _split_long(units[i], toks, max_tokens, overlap)
            i += 1
            continue
        j, total = i, 0
        while j < len(units) and total + units[j][2] <= max_tokens:
            total += units[j][2]
            j += 1
        out.append((units[i][0], units[j - 1][1]))
        if j == len(units):
            break
        if units[j][2] > max_tokens:
            i = j  # an oversized sentence is split on its own; overlapping into it is not possible
            continue
        # Back up over trailing sentences that fit in the overlap, then make room for the next one.
        k, ov = j, 0
        while k - 1 > i and ov + units[k - 1][2] <= overlap:
            k -= 1
            ov += units[k][2]
        # One more sentence if that lands nearer the target (so long sentences still overlap).
        if k - 1 > i and overlap and abs(ov + units[k - 1][2] - overlap) < overlap - ov:
            if ov + units[k - 1][2] <= overlap * 3 // 2:
                k -= 1
                ov += units[k][2]
        while k < j and ov + units[j][2] > max_tokens:
            ov -= units[k][2]
            k += 1
        i = k
    return out


def _split_long(
    unit: tuple[int, int, int], toks: _Tokens, max_tokens: int, overlap: int
) -> list[tuple[int, int]]:
    """Token windows over one sentence longer than max_tokens; windows start at word starts."""
    a, b = toks.span(unit[0], unit[1])
    out, start = [], a
    while True:
        end = min(b, start + max_tokens)
        if end < b:
            # End the window before a word that would be cut (unless the word alone fills it).
            cut = end
            while cut > start + 1 and not toks.word_start[cut]:
                cut -= 1
            end = cut if cut > start + 1 else end
        out.append((toks.starts[start], toks.ends[end - 1]))
        if end >= b:
            return out
        nxt = max(start + 1, end - overlap)
        while nxt < end and not toks.word_start[nxt]:
            nxt += 1
        start = nxt if nxt < end else end


def _real_counts(tokenizer, texts: list[str]) -> list[int]:
    if not texts:
        return []
    enc = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)
    return [len(ids) for ids in enc["input_ids"]]


def _trim(tokenizer, text: str, s: int, e: int, max_tokens: int) -> tuple[int, int]:
    n, budget = max_tokens + 1, max_tokens
    while n > max_tokens:
        enc = tokenizer(
            text[s:e], add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        e = s + enc["offset_mapping"][min(budget, len(enc["offset_mapping"])) - 1][1]
        n = _real_counts(tokenizer, [text[s:e]])[0]
        budget -= 1  # if the cut re-tokenizes longer, cut one token earlier next time
    return e, n
