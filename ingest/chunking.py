"""Token-aware chunking of a ParsedDocument with the embedding model's tokenizer.

Rules, per section (a chunk never spans two sections, so heading path and page are exact):
- The section is cut into sentences: after . ! ? followed by whitespace, after 。！？｡ and a Japanese ．
  (closing quotes and brackets stay with their sentence), and at line breaks (list items, table rows,
  paragraphs): retrieval.sentences.
- Whole sentences are packed greedily up to `max_tokens`; the next chunk starts with the trailing
  sentences of the previous one whose size is nearest `overlap_tokens` (at most 1.5x it; whole
  sentences only, so the overlap is "about" overlap_tokens, and 0 when the last sentence is longer).
- A sentence longer than `max_tokens` on its own is split by tokens (windows that start on word
  boundaries, overlapping by `overlap_tokens`).
- Every chunk is an exact slice: chunk.text == doc.text[char_start:char_end], without surrounding
  whitespace; token_count is the tokenizer's count of chunk.text without special tokens.

Speed (the tokenizer is most of the cost, ~0.5-1 s per MB of text on one core): a sentence is measured
as the pieces it is made of, each distinct piece tokenized once for the whole document, in batches. With
a tokenizer that splits words at whitespace before anything else and normalizes character by character
(BERT's: MiniLM, BGE), a piece is a whitespace-separated word and counts add up exactly, so a chunk's
count is its sentences' sum and is not tokenized again; with any other tokenizer a piece is a whole
sentence, and every chunk is tokenized once more to check its count.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import logging
import re
import weakref
from dataclasses import dataclass

import numpy as np

from ingest.parsers import ParsedDocument, Section
from retrieval.sentences import split_sentences

logger = logging.getLogger(__name__)

_BATCH = 2048  # texts per tokenizer call: enough for every thread, little memory held at once
_BLOCK = 16384  # sentences whose words are held at once (~1 MB of text)
_LINE_WORDS, _BATCH_LINES = 256, 64  # words joined into one text; texts per call (~256 KB)
_WORD = re.compile(r"\S+")
# Python whitespace that BERT's normalizer deletes (controls) or keeps inside a word: "a\x1cb" is one word
# to BERT, two to str.split(), so a sentence holding one is measured whole.
_ODD_SPACE = re.compile("[\x0b\x0c\x1c-\x1f\x85]")


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
    page_kind: str | None = None  # what page counts: "page", "slide" (ingest.parsers.base.PAGE_KINDS)


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
    backend = _backend(tokenizer)
    pieces = _Pieces(backend, doc.text, max_tokens)
    text = doc.text
    plan = []
    for sec in doc.sections:
        body = text[sec.start : sec.end].strip()
        if not body or (sec.heading_path and body == sec.heading_path[-1]):
            continue  # empty, or a heading alone (its children carry it in their heading paths)
        plan.append((sec, split_sentences(text, sec.start, sec.end)))
    counts = pieces.count([span for _, spans in plan for span in spans])
    spans: list[tuple[int, int, Section]] = []
    sizes: list[int | None] = []  # a chunk's count where it is exact, else None (tokenized below)
    at = 0
    for sec, sents in plan:
        units = [(s, e, n) for (s, e), n in zip(sents, counts[at : at + len(sents)], strict=True)]
        at += len(sents)
        for s, e, n in _pack(units, pieces, max_tokens, overlap_tokens):
            spans.append((s, e, sec))
            sizes.append(n if pieces.additive else None)
    todo = [i for i, n in enumerate(sizes) if n is None]
    for i, n in zip(
        todo, _real_counts(backend, [text[spans[i][0] : spans[i][1]] for i in todo]), strict=True
    ):
        sizes[i] = n
    chunks = []
    max_chars = max_tokens * MAX_CHARS_PER_TOKEN
    for (s, e, sec), n in zip(spans, sizes, strict=True):
        if e - s > max_chars:
            windows = _char_windows(backend, text, s, e, max_chars, max_tokens)
        elif n > max_tokens:  # tokenization of the slice differs from its sentences'; trim to fit
            e, n = _trim(backend, text, s, e, max_tokens)
            logger.warning("chunk at %d trimmed to %d tokens", s, n)
            windows = [(s, e, n)]
        else:
            windows = [(s, e, n)]
        for s, e, n in windows:
            chunks.append(
                ChunkSpec(len(chunks), text[s:e], list(sec.heading_path), sec.page, s, e, n, sec.page_kind)
            )
    return chunks


# NOTE: a chunk's size is bounded in characters too. A "word" longer than the tokenizer's limit (BERT's: 100
# characters) is one [UNK] token, so a 5 MB line without spaces (a minified file, a base64 blob, a run of one
# character) was one chunk of 5 MB counted as 1 token. Text has 3-6 characters a token; 16 leaves room for
# spaced-out tables and long identifiers.
MAX_CHARS_PER_TOKEN = 16


def _char_windows(
    backend, text: str, s: int, e: int, max_chars: int, max_tokens: int
) -> list[tuple[int, int, int]]:
    """text[s:e] as consecutive (start, end, tokens) of at most max_chars characters and max_tokens tokens, cut
    at whitespace in a window's second half where there is some, else inside the word; no overlap."""
    out = []
    while True:
        while s < e and text[s].isspace():
            s += 1
        if s >= e:
            return out
        end = min(e, s + max_chars)
        if end < e and not text[end].isspace():
            cut = max(text.rfind(c, s + max_chars // 2, end) for c in " \n\t")
            end = cut if cut > s else end
        stop = end
        while stop > s and text[stop - 1].isspace():
            stop -= 1
        n = _real_counts(backend, [text[s:stop]])[0]
        if n > max_tokens:
            stop, n = _trim(backend, text, s, stop, max_tokens)
            end = stop
        out.append((s, stop, n))
        s = end


_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _backend(tokenizer):
    """A private copy of the tokenizer's Rust backend with truncation and padding off. The shared one
    carries tokenizer.json's settings (MiniLM's pads and truncates to 128) or whatever the embedder last
    set, possibly from another thread, and calling it directly skips transformers' per-text conversions."""
    backend = _BACKENDS.get(tokenizer)
    if backend is None:
        backend = copy.deepcopy(tokenizer.backend_tokenizer)
        backend.no_truncation()
        backend.no_padding()
        _BACKENDS[tokenizer] = backend
    return backend


def _additive(backend) -> bool:
    """Whether a text's token count is the sum of its whitespace-separated words' counts: the normalizer
    works character by character (BERT's), the pre-tokenizer splits at whitespace and isolates punctuation
    (BERT's), and no added token holds whitespace. The model then sees the same words either way."""
    from tokenizers import normalizers, pre_tokenizers

    return (
        isinstance(backend.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
        and (backend.normalizer is None or isinstance(backend.normalizer, normalizers.BertNormalizer))
        and not any(_WORD.fullmatch(t.content) is None for t in backend.get_added_tokens_decoder().values())
    )


class _Pieces:
    """Token counts of sentences from their pieces' (words', or whole sentences' for a tokenizer that is not
    `_additive`), each distinct piece tokenized once; token offsets inside a piece on demand."""

    def __init__(self, backend, text: str, keep: int):
        self.backend, self.text, self.keep = backend, text, keep
        self.additive = _additive(backend)
        self.odd = self.additive and _ODD_SPACE.search(text) is not None
        self.counts: dict[str, int] = {}
        self._offsets: dict[str, tuple[list[tuple[int, int]], list[bool]]] = {}

    def split(self, s: int, e: int) -> list[str]:
        u = self.text[s:e]
        return u.split() if self.additive and not (self.odd and _ODD_SPACE.search(u)) else [u]

    def spans(self, s: int, e: int) -> list[tuple[int, int]]:
        """Absolute character spans of the pieces of text[s:e], as split() cuts them."""
        if len(self.split(s, e)) == 1:
            return [(s, e)]
        return [m.span() for m in _WORD.finditer(self.text, s, e)]

    def count(self, units: list[tuple[int, int]]) -> list[int]:
        """Token counts of the sentences text[s:e]."""
        out: list[int] = []
        get = self.counts.__getitem__
        for i in range(0, len(units), _BLOCK):  # a block's words at once: one split, bounded memory
            block, text = units[i : i + _BLOCK], self.text
            if self.additive and not self.odd:
                parts = [text[s:e].split() for s, e in block]
            else:
                parts = [self.split(s, e) for s, e in block]
            todo = self._new(itertools.chain.from_iterable(parts))
            if self.additive:
                self._count_words(todo)
            else:
                self._count_pieces(todo)
            out += [sum(map(get, p)) for p in parts]
        return out

    def _new(self, pieces) -> list[str]:
        """The pieces not counted yet, each once, in order of first use (so batches are deterministic)."""
        return [p for p in dict.fromkeys(pieces) if p not in self.counts]

    def _count_pieces(self, todo: list[str]) -> None:
        for i in range(0, len(todo), _BATCH):
            batch = todo[i : i + _BATCH]
            for p, enc in zip(batch, self.backend.encode_batch(batch, add_special_tokens=False), strict=True):
                self.counts[p] = len(enc)
                if len(enc) > self.keep:  # a sentence to split by tokens: keep its offsets
                    self._offsets[p] = _offsets(enc)

    def _count_words(self, words: list[str]) -> None:
        """Counts of words, tokenized as lines of _LINE_WORDS words: the tokenizer spends more per text
        than per character on short texts, and a word's tokens are those that start inside it (`_additive`)."""
        lines = [words[i : i + _LINE_WORDS] for i in range(0, len(words), _LINE_WORDS)]
        for i in range(0, len(lines), _BATCH_LINES):
            group = lines[i : i + _BATCH_LINES]
            encs = self.backend.encode_batch([" ".join(line) for line in group], add_special_tokens=False)
            for line, enc in zip(group, encs, strict=True):
                # word k is line[k], at [ends[k - 1], ends[k] - 1) of the joined line
                ends = np.fromiter(itertools.accumulate(len(w) + 1 for w in line), np.int64, len(line))
                starts = np.fromiter((s for s, _ in enc.offsets), np.int64, len(enc))
                n = np.bincount(np.searchsorted(ends, starts, side="right"), minlength=len(line))
                self.counts.update(zip(line, n.tolist(), strict=True))

    def tokens(self, piece: str) -> tuple[list[tuple[int, int]], list[bool]]:
        """Offsets (relative to the piece) of its tokens, and whether each begins a word (never mid-word
        "##piece"), so a window may start there."""
        got = self._offsets.get(piece)
        if got is None:
            got = self._offsets[piece] = _offsets(self.backend.encode(piece, add_special_tokens=False))
        return got


def _offsets(enc) -> tuple[list[tuple[int, int]], list[bool]]:
    words = enc.word_ids
    return enc.offsets, [i == 0 or words[i] != words[i - 1] for i in range(len(words))]


class _Sentence:
    """The tokens of one sentence, as the concatenation of its pieces' tokens (exact for an `_additive`
    tokenizer: a piece starts a word). Index i is the sentence's i-th token."""

    def __init__(self, pieces: _Pieces, s: int, e: int):
        self.pieces = pieces
        self.spans = pieces.spans(s, e)
        texts = [pieces.text[a:b] for a, b in self.spans]
        self.texts = texts
        self.cum = [0, *itertools.accumulate(pieces.counts[t] for t in texts)]
        self.n = self.cum[-1]

    def _at(self, i: int) -> tuple[int, int, list[tuple[int, int]], list[bool]]:
        k = bisect.bisect_right(self.cum, i) - 1
        offsets, starts = self.pieces.tokens(self.texts[k])
        return self.spans[k][0], i - self.cum[k], offsets, starts

    def start(self, i: int) -> int:
        base, j, offsets, _ = self._at(i)
        return base + offsets[j][0]

    def end(self, i: int) -> int:
        base, j, offsets, _ = self._at(i)
        return base + offsets[j][1]

    def word_start(self, i: int) -> bool:
        _, j, _, starts = self._at(i)
        return starts[j]


def _pack(
    units: list[tuple[int, int, int]], pieces: _Pieces, max_tokens: int, overlap: int
) -> list[tuple[int, int, int | None]]:
    """(start, end, token count or None where it may be inexact) of the chunks of one section."""
    out: list[tuple[int, int, int | None]] = []
    i = 0
    while i < len(units):
        if units[i][2] > max_tokens:
            out += _split_long(_Sentence(pieces, units[i][0], units[i][1]), max_tokens, overlap)
            i += 1
            continue
        j, total = i, 0
        while j < len(units) and total + units[j][2] <= max_tokens:
            total += units[j][2]
            j += 1
        out.append((units[i][0], units[j - 1][1], total))
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


def _split_long(toks: _Sentence, max_tokens: int, overlap: int) -> list[tuple[int, int, int | None]]:
    """Token windows over one sentence longer than max_tokens; windows start at word starts. A window
    cut inside a word (one word filling a window) gets None for its count: its slice may tokenize otherwise."""
    b = toks.n
    out, start = [], 0
    while True:
        end = min(b, start + max_tokens)
        if end < b:
            # End the window before a word that would be cut (unless the word alone fills it).
            cut = end
            while cut > start + 1 and not toks.word_start(cut):
                cut -= 1
            end = cut if cut > start + 1 else end
        whole = toks.word_start(start) and (end >= b or toks.word_start(end))
        out.append((toks.start(start), toks.end(end - 1), end - start if whole else None))
        if end >= b:
            return out
        nxt = max(start + 1, end - overlap)
        while nxt < end and not toks.word_start(nxt):
            nxt += 1
        start = nxt if nxt < end else end


def _real_counts(backend, texts: list[str]) -> list[int]:
    out = []
    for i in range(0, len(texts), _BATCH):
        out += [len(enc) for enc in backend.encode_batch(texts[i : i + _BATCH], add_special_tokens=False)]
    return out


def _trim(backend, text: str, s: int, e: int, max_tokens: int) -> tuple[int, int]:
    n, budget = max_tokens + 1, max_tokens
    while n > max_tokens:
        offsets = backend.encode(text[s:e], add_special_tokens=False).offsets
        e = s + offsets[min(budget, len(offsets)) - 1][1]
        n = len(backend.encode(text[s:e], add_special_tokens=False))
        budget -= 1  # if the cut re-tokenizes longer, cut one token earlier next time
    return e, n
