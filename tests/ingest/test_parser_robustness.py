"""Defects found by running the parsers over the documentation files of a Linux system (Debian's
/usr/share/doc and info manuals, packages' READMEs and licenses); each input here is built by the test."""

from __future__ import annotations

import random
import time

import pytest

from ingest.parsers import ParseError, UnsupportedFileType, detect_type, parse
from tests.ingest.test_parsers import RST_GUIDE

# --- PostScript and DVI are named, not read as text --------------------------------------------------------
POSTSCRIPT = (
    b"%!PS-Adobe-3.0\n%%Creator: DocBook XSL Stylesheets with Apache FOP\n%%Pages: 397\n%%EndComments\n"
    + b"/sCol { pdfLastStroke not { pdfStrokeCS setcolorspace } if } def\n" * 200
)


@pytest.mark.parametrize(
    "data",
    [
        POSTSCRIPT,
        b"\x04" + POSTSCRIPT,  # a Windows printer driver's ^D first
        b"\xc5\xd0\xd3\xc6" + bytes(26) + POSTSCRIPT,  # encapsulated PostScript with its DOS header
    ],
)
def test_postscript_is_refused_by_name(data):
    with pytest.raises(UnsupportedFileType, match=r"^The file is a PostScript document, .*convert it to PDF"):
        parse(data, "manual.ps")


def test_dvi_is_refused_by_name():
    dvi = b"\xf7\x02\x01\x83\x92\xc0\x1c;\x00\x00\x00\x00\x03\xe8\x1b TeX output 2022.01.01:1200" + bytes(300)
    with pytest.raises(UnsupportedFileType, match=r"^The file is a TeX DVI file, which is not supported"):
        parse(dvi, "refcard.dvi")


def test_text_that_mentions_postscript_is_text():
    doc = parse(b"Printing\n\nThe driver writes %!PS at the start of each job.\n", "notes.txt")
    assert doc.detected_type == "text"


# --- a Latin-1 file with lines in UTF-8 ---------------------------------------------------------------------
def test_lines_in_utf8_inside_a_latin1_file_are_read_as_utf8():
    data = (
        "Contributors\n\nThey were rewritten by Björn Gustavsson and Claes Wikström.\n".encode("latin-1")
        + "Manuel Durán Aguete\nHåkan Mattsson - tftp\n".encode()
        + "Peter Högfeldt - first version of ftp\n".encode("latin-1")
    )
    doc = parse(data, "AUTHORS")
    assert doc.text == (
        "Contributors\n\nThey were rewritten by Björn Gustavsson and Claes Wikström.\n"
        "Manuel Durán Aguete\nHåkan Mattsson - tftp\nPeter Högfeldt - first version of ftp"
    )


def test_a_latin1_file_without_utf8_lines_is_unchanged():
    text = "Größe der Straße: naïve café, ½ Preis. Señor Muñoz zahlt 20 €.\n" * 3
    assert parse(text.encode("cp1252"), "notes.txt").text == text.strip()


def test_gbk_text_is_not_split_into_utf8_lines():
    text = "这是一个测试文档，用于检查编码检测。\n我们需要足够长的中文文本来进行判断。\n" * 5
    assert parse(text.encode("gbk"), "notes.txt").text == text.strip()


# --- GNU Info files ------------------------------------------------------------------------------------------
def test_a_small_info_file_is_text_not_binary_data():
    # The top file of a split Info manual: its parts and the tag table, with Info's \x1f and \x7f marks.
    nodes = [f"Node: Section {i}\x7f{1000 + 731 * i}\n" for i in range(40)]
    data = (
        b"This is gnupg.info, produced by makeinfo version 6.8 from gnupg.texi.\n\n"
        b"This is the 'The GNU Privacy Guard Manual' (version 2.2.40).\n\n"
        b"\x1f\nIndirect:\ngnupg.info-1: 1206\ngnupg.info-2: 301754\n\x1f\nTag Table:\n(Indirect)\n"
        + "".join(nodes).encode()
        + b"\x1f\nEnd Tag Table\n"
    )
    assert detect_type(data, "gnupg.info") in ("text", "markdown")
    doc = parse(data, "gnupg.info")
    assert "The GNU Privacy Guard Manual" in doc.text
    assert "\x1f" not in doc.text and "\x7f" not in doc.text


def test_utf8_text_with_a_few_stray_control_characters_is_read():
    # a short handbook page whose editor left backspaces in two headings (5 of 327 characters): real UTF-8 text,
    # read without them; ASCII text with as many, or UTF-8 that is mostly control characters, stays binary data
    page = "# 故障分级\n\n## \b\b\b处理方式\n\n### \x1cP4 - P6\n\n记录到运维日志。\n\n### P1 - P3\n\n\b部门研讨解决方案。\n"
    doc = parse((page + "发生故障时，值班人员需要在十分钟内响应并通知负责人。\n" * 6).encode(), "guide.md")
    assert "处理方式" in [s.heading_path[-1] for s in doc.sections if s.heading_path]
    assert "部门研讨解决方案" in doc.text and "\b" not in doc.text and "\x1c" not in doc.text
    with pytest.raises(UnsupportedFileType, match="binary data"):
        parse(b"# Notes\n\n\b\b\bHandling\n\x1cP4\n\bTeam.\n", "notes.md")
    with pytest.raises(UnsupportedFileType, match="binary data"):
        parse("\x01\x02\x03\x04\x05中".encode() * 500, "data.txt")


def test_separator_bytes_inside_lines_are_still_binary_data():
    with pytest.raises(UnsupportedFileType, match="binary data"):
        parse(b"record\x1fvalue\x7fnext " * 500, "notes.txt")


# --- reStructuredText: hostile or damaged markup stays bounded --------------------------------------------
RST_HOSTILE = {
    "nested lists": "".join(" " * (2 * k) + f"- item {k}\n\n" for k in range(1500)),
    "nested quotes": "".join(" " * k + f"quote {k}\n\n" for k in range(2000)),
    "unclosed stars": "*a " * 50_000,
    "unclosed roles": ":a:`" * 30_000,
    "unclosed substitutions": "|x " * 50_000,
    "footnote references": "[#]_ " * 50_000,
    "borders without a table": "===  ===\nx\n" * 10_000,
    "a grid without its end": "+---+---+\n" + "| a | b |\n" * 20_000,
    "definitions": "term\n   definition\n" * 20_000,
}


@pytest.mark.parametrize("name", list(RST_HOSTILE))
def test_hostile_rst_is_read_in_bounded_time(name):
    t = time.perf_counter()
    doc = parse(RST_HOSTILE[name].encode(), "hostile.rst")
    assert time.perf_counter() - t < 5
    assert doc.detected_type == "rst" and doc.sections[-1].end == len(doc.text)


def test_damaged_rst_is_a_document_or_a_reason():
    """Lines cut, dropped, swapped and re-indented at random: a document whose sections tile its text, or a
    ParseError, never another exception."""
    lines = RST_GUIDE.splitlines()
    rng = random.Random(7)
    for _ in range(200):
        damaged = list(lines)
        for _ in range(6):
            k = rng.randrange(len(damaged))
            edit = rng.randrange(4)
            if edit == 0:
                damaged[k] = damaged[k][: rng.randrange(len(damaged[k]) + 1)]
            elif edit == 1:
                del damaged[k]
            elif edit == 2:
                damaged.insert(rng.randrange(len(damaged)), damaged[k])
            else:
                damaged[k] = " " * rng.randrange(6) + damaged[k]
            if not damaged:
                damaged = ["x"]
        try:
            doc = parse("\n".join(damaged).encode(), "damaged.rst")
        except ParseError as e:
            assert e.reason
            continue
        assert doc.sections[0].start == 0 and doc.sections[-1].end == len(doc.text)
        assert all(a.end == b.start for a, b in zip(doc.sections, doc.sections[1:], strict=False))
