"""Defects found by running the parsers over the documentation files of a Linux system (Debian's
/usr/share/doc and info manuals, packages' READMEs and licenses); each input here is built by the test."""

from __future__ import annotations

import pytest

from ingest.parsers import UnsupportedFileType, parse

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
