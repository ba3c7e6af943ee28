"""Chunker properties with the embedding model's own tokenizer."""

from __future__ import annotations

import copy
import re

import pytest
from tokenizers import pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from ingest import chunking
from ingest.chunking import chunk_document, split_sentences
from ingest.parsers import ParsedDocument, Section, parse
from retrieval.embeddings import DEFAULT_EMBEDDING_MODEL
from tests.ingest import parser_fixtures as F

ENGLISH = " ".join(
    f"Sentence number {i} talks about {'leave policy' if i % 3 else 'travel rules'} and little else."
    for i in range(60)
)
CHINESE = "".join(
    f"第{i}条：员工每年享有带薪年假{i}天。" if i % 2 else f"请问第{i}个问题怎么办？" for i in range(80)
)
LONG_SENTENCE = " ".join(f"item{i} internationalization" for i in range(400))  # ~1200 tokens, no full stop


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(DEFAULT_EMBEDDING_MODEL)


def n_tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def make_doc() -> ParsedDocument:
    parts = [
        ("Intro", [], 1, ENGLISH),
        ("中文", ["政策", "年假"], 2, CHINESE),
        ("Long", ["Appendix"], 3, LONG_SENTENCE),
    ]
    text, sections = "", []
    for _, path, page, body in parts:
        if text:
            text += "\n\n"
        start = len(text)
        text += body
        sections.append(Section(start, len(text), path, page))
    return ParsedDocument(text=text, sections=sections, detected_type="text", pages=3, title=None)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(256, 32), (64, 16), (40, 0), (128, 64)])
def test_chunks_are_exact_slices_within_the_token_budget(tok, max_tokens, overlap):
    doc = make_doc()
    chunks = chunk_document(doc, tok, max_tokens, overlap)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text == doc.text[c.char_start : c.char_end]
        assert c.text == c.text.strip() and c.text
        assert c.token_count == n_tokens(tok, c.text) <= max_tokens
    # Every non-space character of the document is in some chunk: nothing is lost.
    covered = set()
    for c in chunks:
        covered.update(range(c.char_start, c.char_end))
    assert {i for i, ch in enumerate(doc.text) if not ch.isspace()} <= covered


def test_chunks_carry_heading_path_and_page_and_never_span_sections(tok):
    doc = make_doc()
    for c in chunk_document(doc, tok, 64, 16):
        sec = next(s for s in doc.sections if s.start <= c.char_start < s.end)
        assert c.char_end <= sec.end
        assert (c.heading_path, c.page) == (sec.heading_path, sec.page)


def test_chunks_carry_what_their_page_number_counts(tok):
    # a slide's passages are cited as slides: the kind goes from the section to the chunk (and so to its row)
    deck = parse(F.make_pptx(), "deck.pptx")
    assert {(c.page, c.page_kind) for c in chunk_document(deck, tok, 64, 16)} == {(1, "slide"), (2, "slide")}
    doc = make_doc()  # sections made without a kind, as before it existed: none
    assert {c.page_kind for c in chunk_document(doc, tok, 64, 16)} == {None}


def test_chunks_start_and_end_on_sentence_boundaries(tok):
    doc = make_doc()
    chunks = chunk_document(doc, tok, 64, 16)
    for sec in doc.sections[:2]:  # English and Chinese; the third is one oversized sentence
        sents = split_sentences(doc.text, sec.start, sec.end)
        starts, ends = {s for s, _ in sents}, {e for _, e in sents}
        mine = [c for c in chunks if sec.start <= c.char_start < sec.end]
        assert len(mine) > 3
        for c in mine:
            assert c.char_start in starts and c.char_end in ends, c.text


def test_chinese_is_split_at_full_width_punctuation(tok):
    doc = make_doc()
    sec = doc.sections[1]
    sents = split_sentences(doc.text, sec.start, sec.end)
    assert len(sents) == 80
    assert all(doc.text[e - 1] in "。？" for _, e in sents)
    zh_chunks = [c for c in chunk_document(doc, tok, 48, 8) if c.heading_path == ["政策", "年假"]]
    assert len(zh_chunks) > 5 and all(c.text[-1] in "。！？" for c in zh_chunks)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(64, 16), (256, 32), (100, 40)])
def test_consecutive_chunks_overlap_by_about_overlap_tokens(tok, max_tokens, overlap):
    doc = make_doc()
    chunks = [c for c in chunk_document(doc, tok, max_tokens, overlap) if c.page in (1, 2)]
    pairs = [(a, b) for a, b in zip(chunks, chunks[1:], strict=False) if a.page == b.page]
    assert pairs
    for a, b in pairs:
        assert b.char_start < a.char_end, "no overlap"
        assert b.char_start > a.char_start, "no progress"
        shared = n_tokens(tok, doc.text[b.char_start : a.char_end])
        assert 0.5 * overlap <= shared <= 1.5 * overlap, (shared, overlap)


def test_zero_overlap_means_adjacent_chunks(tok):
    doc = make_doc()
    chunks = [c for c in chunk_document(doc, tok, 64, 0) if c.page == 1]
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.char_start >= a.char_end


def test_oversized_sentence_is_split_by_tokens(tok):
    doc = make_doc()
    sec = doc.sections[2]
    pieces = [c for c in chunk_document(doc, tok, 100, 20) if c.page == 3]
    assert len(pieces) >= 12  # ~1200 tokens / (100 - 20)
    assert pieces[0].char_start == sec.start and pieces[-1].char_end == sec.end
    for a, b in zip(pieces, pieces[1:], strict=False):
        assert a.char_start < b.char_start < a.char_end  # overlapping windows, moving forward
        assert doc.text[b.char_start - 1] == " "  # windows start on a word, never inside one
    assert all(90 <= p.token_count <= 100 for p in pieces[:-1])


def test_chunking_is_deterministic_on_a_parsed_document(tok):
    doc = parse(F.make_docx(), "handbook.docx")
    a = chunk_document(doc, tok, 32, 8)
    b = chunk_document(doc, tok, 32, 8)
    assert a == b
    by_path = {tuple(c.heading_path) for c in a}
    assert {(), ("Leave",), ("Leave", "Sick leave"), ("Travel",)} <= by_path
    # A heading alone is not a chunk; its text travels in the heading path of the chunks below it.
    assert all(c.text != "Leave" for c in a)
    assert next(c for c in a if "Report sickness" in c.text).heading_path == ["Leave", "Sick leave"]


def test_pdf_chunks_keep_their_page(tok):
    doc = parse(F.make_pdf(["First page talks about budgets.", "Second page talks about hiring."]))
    chunks = chunk_document(doc, tok)
    assert [(c.text, c.page) for c in chunks] == [
        ("First page talks about budgets.", 1),
        ("Second page talks about hiring.", 2),
    ]


def test_bad_parameters_are_rejected(tok):
    doc = make_doc()
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_document(doc, tok, 4, 0)
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_document(doc, tok, 64, 64)


def test_overlap_close_to_max_still_makes_progress(tok):
    doc = make_doc()
    chunks = chunk_document(doc, tok, 64, 60)
    assert all(c.token_count <= 64 for c in chunks)
    same = [(a, b) for a, b in zip(chunks, chunks[1:], strict=False) if a.page == b.page]
    assert all(b.char_start > a.char_start and b.char_end > a.char_end for a, b in same)


class _CountingBackend:
    """The chunker's tokenizer backend, counting the calls and characters it is given."""

    def __init__(self, inner):
        self.inner, self.calls, self.chars = inner, 0, 0

    def encode_batch(self, texts, **kw):
        self.calls, self.chars = self.calls + 1, self.chars + sum(map(len, texts))
        return self.inner.encode_batch(texts, **kw)

    def encode(self, text, **kw):
        self.calls, self.chars = self.calls + 1, self.chars + len(text)
        return self.inner.encode(text, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def one_section(text: str) -> ParsedDocument:
    return ParsedDocument(
        text=text, sections=[Section(0, len(text), [], None)], detected_type="text", pages=None, title=None
    )


def test_a_large_section_is_tokenized_once_in_few_calls_and_every_chunk_fits(tok, monkeypatch):
    # ~2 MB in one section, no headings: prose, Chinese, lines with no sentence end, numbered words, so that
    # thousands of distinct words and oversized sentences occur. Once, chunking tokenized the whole section
    # as one text and then every chunk again (> 2x the text, ~4 s per MB); now each distinct word once.
    parts, i = [], 0
    while sum(map(len, parts)) < 2_000_000:
        parts += [ENGLISH.replace("number", f"n{i}"), CHINESE, " ".join(f"w{i}x{j} and" for j in range(150))]
        i += 1
    doc = one_section("\n\n".join(parts))
    real = chunking._backend
    seen: list[_CountingBackend] = []
    monkeypatch.setattr(chunking, "_backend", lambda t: seen.append(_CountingBackend(real(t))) or seen[-1])
    chunks = chunk_document(doc, tok, 128, 16)
    (backend,) = seen
    assert backend.chars < len(doc.text)  # the old way: > 2 * len(doc.text)
    # Batched: not a call per sentence, word or chunk; but for a sentence split by tokens, the offsets of the
    # few words at each window's ends (w<i>x<j>: the lines with no sentence end).
    windows = sum(re.fullmatch(r"[\w ]+", c.text) is not None for c in chunks)
    assert windows > 1000 and len(chunks) > 5000
    assert backend.calls < len(doc.text) / 20_000 + 4 * windows
    real_counts = tok([c.text for c in chunks], add_special_tokens=False)["input_ids"]
    for c, ids in zip(chunks, real_counts, strict=True):
        assert c.text == doc.text[c.char_start : c.char_end]
        assert c.token_count == len(ids) <= 128


def assert_exact_and_counted(doc, chunks, tok, limit: int) -> None:
    """Every chunk is the exact slice of the document its offsets name, and its token count is what the
    tokenizer counts for that text, within the limit."""
    for c in chunks:
        assert c.text == doc.text[c.char_start : c.char_end]
        assert c.token_count == n_tokens(tok, c.text) <= limit


def test_odd_whitespace_and_a_word_longer_than_a_chunk_are_counted_exactly(tok):
    # BERT deletes \x1c and \x0b (to Python they are spaces: "a\x1cb" is one word to the model), and a word
    # of 60 tokens split by 8-token windows is cut inside itself: both counted by tokenizing the slice.
    word = "".join(f"{chr(97 + i % 26)}{i % 7}" for i in range(45))
    text = f"Alpha\x1cbeta gamma\x0bdelta, and zero\u200bwidth. {word} tail words here.\nNext\x85line ends."
    doc = one_section(text)
    chunks = chunk_document(doc, tok, 8, 2)
    assert len(chunks) > 5
    assert_exact_and_counted(doc, chunks, tok, 8)


def test_a_tokenizer_that_does_not_split_at_whitespace_first_has_its_chunks_checked(tok):
    # Not BERT's pre-tokenizer: counts of words need not add up, so sentences are measured whole and each
    # chunk tokenized again; the limits hold all the same.
    backend = copy.deepcopy(tok.backend_tokenizer)
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    other = PreTrainedTokenizerFast(tokenizer_object=backend)
    assert not chunking._additive(chunking._backend(other)) and chunking._additive(chunking._backend(tok))
    doc = make_doc()
    chunks = chunk_document(doc, other, 64, 16)
    assert len(chunks) > 10
    assert_exact_and_counted(doc, chunks, other, 64)


def test_rst_chunks_are_exact_slices_under_their_section_titles(tok):
    from tests.ingest.test_parsers import RST_GUIDE

    doc = parse(RST_GUIDE.encode(), "guide.rst")
    chunks = chunk_document(doc, tok, 32, 8)
    assert all(c.text == doc.text[c.char_start : c.char_end] for c in chunks)
    install = next(c for c in chunks if "pip install widgetry" in c.text)
    assert install.heading_path == ["Widget Guide", "Installation"]
    assert not any(".. " in c.text or ":ref:" in c.text or "`_" in c.text for c in chunks)
