"""Markup read as a reader sees it: HTML inside Markdown, XML and DocBook, long headings, code that is not
Markdown."""

from __future__ import annotations

from ingest.parsers import parse
from tests.ingest.test_parsers import assert_tiles, section_of

# --- a heading made of a whole paragraph ----------------------------------------------------------------
LONG_PARAGRAPH = " ".join(
    f"This is an implementation of the language number {i} with extensions and a few bugs fixed."
    for i in range(9)
)


def test_a_setext_heading_made_of_a_paragraph_is_a_short_title_and_whole_text():
    md = f"{LONG_PARAGRAPH}\n{'-' * 60}\n\nThe body of the section.\n"
    doc = parse(md.encode(), "README.md")
    assert_tiles(doc)
    assert 100 <= len(doc.title) <= 151 and doc.title.endswith("\u2026")
    assert LONG_PARAGRAPH.startswith(doc.title[:-1])
    assert not doc.title[:-1].endswith((" ", "."))  # cut at a word boundary, no dangling space or stop
    path = section_of(doc, "The body").heading_path
    assert path == [doc.title]
    heading = section_of(doc, "number 8")
    assert LONG_PARAGRAPH in doc.text[heading.start : heading.end]  # the words are all still text


def test_a_short_heading_is_not_cut():
    doc = parse(b"Introduction to the tool\n---\n\nBody.\n", "README.md")
    assert doc.title == "Introduction to the tool"
