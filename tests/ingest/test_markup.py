"""Markup read as a reader sees it: HTML inside Markdown, XML and DocBook, long headings, code that is not
Markdown."""

from __future__ import annotations

import pytest

from ingest.parsers import detect_type, parse
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


# --- code is not Markdown ---------------------------------------------------------------------------------
AWK = "# Print the second field of each line\n# Usage: awk -f fields.awk file\n\n{ print $2 }\n"
PYTHON = '# Configuration file for the Sphinx documentation builder.\n#\n# -- Project\n\nproject = "demo"\n'


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (AWK, "fields.awk"),
        (PYTHON, "conf.py"),
        ("# Utility functions\npackage Foo::Util;\n1;\n", "Util.pm"),
        ("# Build the docs\nall:\n\tsphinx-build . _build\n", "Makefile"),
        ("# Build the docs\nall:\n\tsphinx-build . _build\n", "GNUmakefile"),
        ("#!/bin/sh\n# Install the tool\n\nmake install\n", None),  # an interpreter line says it is a script
        ("#!/usr/bin/env python3\n# Tool\n\nprint(1)\n", "tool"),
    ],
)
def test_a_code_file_is_text_and_its_comments_are_no_headings(data, name):
    assert detect_type(data.encode(), name) == "text"
    doc = parse(data.encode(), name)
    assert all(not s.heading_path for s in doc.sections)
    assert doc.title is None
    assert data.strip().splitlines()[-1] in doc.text


def test_markdown_with_a_markdown_name_or_none_stays_markdown():
    md = b"# Tools\n\nSome notes on `awk`.\n"
    assert detect_type(md, "notes.md") == detect_type(md, None) == detect_type(md, "README") == "markdown"
    assert detect_type(b"# Tool\n\n- a\n", "tool.mdown") == "markdown"


# --- HTML inside Markdown ---------------------------------------------------------------------------------
README = """<p align="center">
  <a href="https://example.org"><img src="logo.png" alt="Logo" width="200"></a>
</p>
<h1 align="center">Widgetry</h1>

Press <kbd>Ctrl</kbd>+<kbd>C</kbd> to stop.<br>
Area is r<sup>2</sup> times pi, see <a href="https://example.org/docs">the manual</a>.<!-- TODO: link -->
Write `<br>` for a break; `List<T>` and Vec<T> stay.

<details>
<summary>Supported platforms</summary>

Linux and **macOS**.

</details>

<table>
  <tr><th>Option</th><th>Default</th></tr>
  <tr><td>--fast</td><td>off</td></tr>
</table>

<!-- badges: start -->
<style>.x { color: red }</style>

```html
<div class="banner">Hello</div>
```

- An item with <b>bold</b> text
  <div>and a block in it</div>

## Usage <sup>beta</sup>

Run it.
"""


def test_html_in_markdown_is_the_text_a_reader_sees():
    doc = parse(README.encode(), "README.md")
    assert_tiles(doc)
    text = doc.text
    for markup in ("<p", "<img", "<a ", "</a>", "<kbd>", "<sup>", "<details>", "<summary>", "<table", "<td>",
                   "<!--", "TODO", "badges", "<style", "color: red", "<b>", "<div>", "<h1", "align="):  # fmt: skip
        assert markup not in text, markup
    assert doc.title == "Widgetry"
    assert "Press Ctrl+C to stop.\nArea is r2 times pi, see the manual." in text
    assert "Logo" not in text  # an image shows no text, as on an HTML page
    assert "Supported platforms\n\nLinux and **macOS**." in text
    assert "Option: --fast; Default: off" in text  # a table reads as rows naming their columns
    assert "- An item with bold text\n  and a block in it" in text
    assert section_of(doc, "Run it").heading_path == ["Widgetry", "Usage beta"]
    assert section_of(doc, "Linux and").heading_path == ["Widgetry"]


def test_code_that_shows_html_keeps_it():
    doc = parse(README.encode(), "README.md")
    assert '```html\n<div class="banner">Hello</div>\n```' in doc.text
    assert "Write `<br>` for a break; `List<T>` and Vec<T> stay." in doc.text
    indented = parse(b"# Tags\n\nAn example:\n\n    <p>Hello <b>you</b></p>\n", "README.md")
    assert "<p>Hello <b>you</b></p>" in indented.text


def test_markdown_without_html_is_unchanged_by_the_html_reading():
    md = "# Guide\n\nSome *text* with [a link](http://x) and a < b > c.\n\n- one\n- two\n"
    doc = parse(md.encode(), "guide.md")
    assert doc.text == "Guide\n\nSome *text* with [a link](http://x) and a < b > c.\n\n- one\n- two"
