"""Document parsers: the type is detected from the content (magic bytes), never from the file name.

    doc = parse(data, filename)   # ParsedDocument, or ParseError with a reason a person can read

The file name only breaks the tie between Markdown, reStructuredText, CSV/TSV and plain text.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable

from .base import (
    SUPPORTED_NAMES,
    SUPPORTED_TYPES,
    ParsedDocument,
    ParseError,
    PlainArchive,
    Section,
    UnsupportedFileType,
    cap_notices,
)
from .mail import looks_like_email, looks_like_mhtml, parse_email, parse_mhtml
from .man import looks_like_man, parse_man
from .odf import ODF_KINDS, parse_odp, parse_ods, parse_odt
from .office import parse_docx, parse_pptx, parse_xlsx
from .ole import OLE_MAGIC, ole_type, parse_doc, parse_msg, parse_ppt, parse_xls
from .pdf import parse_pdf
from .rst import looks_like_rst, parse_rst
from .rtf import parse_rtf
from .text import (
    decode_text,
    decode_text_noted,
    looks_like_code,
    looks_like_markdown,
    parse_delimited,
    parse_markdown,
    parse_text,
)
from .web import EPUB_MIME, parse_epub, parse_html
from .xmldoc import looks_like_xml, parse_xml

__all__ = [
    "SUPPORTED_TYPES",
    "ParseError",
    "ParsedDocument",
    "PlainArchive",
    "Section",
    "UnsupportedFileType",
    "detect_type",
    "parse",
]

logger = logging.getLogger(__name__)

_EMPTY = "The file is empty."
_SUPPORTED = SUPPORTED_NAMES
# Formats recognised only to name them in the refusal.
_KNOWN_BINARY = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "an executable program"),
    (b"MZ", "a Windows program"),
    (b"\xf7\x02", "a TeX DVI file"),
)
# PostScript is a program, not text: read as text it was megabytes of drawing operators and font data (a 12 MB
# manual ran over a minute in the chunker alone). Encapsulated PostScript may open with a binary DOS header.
_POSTSCRIPT = (b"%!PS", b"\xc5\xd0\xd3\xc6")
_MARKDOWN_EXT = (".md", ".markdown", ".mdown", ".mkd")
_RST_EXT = (".rst", ".rest", ".rst.txt")  # .rst.txt: the page sources a Sphinx site publishes (_sources/)
_TEXT_EXT = (".txt", ".text", ".log")
# A spreadsheet's name on text: a web application's "Excel export" is often CSV or tab-separated text named .xls
# (and HTML named .xls, which is read as HTML); it was read as plain text, each value apart from its column
_TABLE_EXT = (".csv", ".tsv", ".xls", ".xlsx", ".xlsm", ".ods")


def _zip_type(data: bytes) -> str:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = set(zf.namelist())
        mimetype = zf.read("mimetype")[:100] if "mimetype" in names else b""  # OpenDocument's first member
    except Exception as e:  # BadZipFile, NotImplementedError (odd versions), struct errors, ...
        raise ParseError("The file could not be read: it is a damaged ZIP container.") from e
    if mimetype.strip() == EPUB_MIME:
        return "epub"
    kind = ODF_KINDS.get(mimetype.decode("ascii", "replace").strip())
    if kind:
        return kind
    if mimetype.startswith(b"application/vnd.oasis.opendocument."):
        what = mimetype.decode("ascii", "replace").rsplit(".", 1)[-1]
        raise UnsupportedFileType(
            f"The file is an OpenDocument {what} file; of OpenDocument text, spreadsheets and presentations are "
            f"read ({_SUPPORTED})."
        )
    if "word/document.xml" in names:
        return "docx"
    if "ppt/presentation.xml" in names:
        return "pptx"
    if "xl/workbook.xml" in names:
        return "xlsx"
    if any(n.startswith("Index/") and n.endswith(".iwa") for n in names):
        raise UnsupportedFileType(
            "The file is an Apple Pages, Numbers or Keynote document, which is not read; export it as PDF, Word, "
            f"Excel or PowerPoint to ingest it ({_SUPPORTED})."
        )
    if "visio/document.xml" in names:
        raise UnsupportedFileType(f"The file is a Visio drawing, which is not read ({_SUPPORTED}).")
    if "xl/workbook.bin" in names:
        raise UnsupportedFileType(
            "The file is an Excel binary workbook (.xlsb), which is not read; open it in Excel or LibreOffice and "
            f"save it as .xlsx to ingest it ({_SUPPORTED})."
        )
    raise PlainArchive(
        f"The file is a ZIP archive, not a Word, OpenDocument, PowerPoint or Excel document ({_SUPPORTED})."
    )


def _looks_like_html(text: str) -> bool:
    head = text[:4096].lstrip("\ufeff \t\r\n").lower()
    if head.startswith(("<!doctype html", "<html")):
        return True
    return head.startswith("<") and any(t in head for t in ("<html", "<head", "<body"))


def detect_type(data: bytes, filename: str | None = None) -> str:
    """One of SUPPORTED_TYPES, decided by content; raises UnsupportedFileType (ParseError if empty)."""
    if not data or not data.strip(b" \t\r\n\x00"):
        raise ParseError(_EMPTY)
    if data[:1024].lstrip().startswith(b"%PDF-") or b"%PDF-" in data[:1024]:
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        return _zip_type(data)
    if data.startswith(b"PK\x05\x06"):  # a ZIP's end record alone: an Office file saved as nothing
        raise ParseError("The file is an empty ZIP container: it holds no document.")
    if data.startswith(OLE_MAGIC):
        return ole_type(data)
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:5] == b"{\\rtf":
        return "rtf"
    if data.lstrip(b"\x04 \t\r\n")[:4] in _POSTSCRIPT:  # Windows printer drivers lead with ^D
        raise UnsupportedFileType(
            f"The file is a PostScript document, which is not read; convert it to PDF (ps2pdf, Preview or Acrobat "
            f"Distiller) to ingest it ({_SUPPORTED})."
        )
    for magic, what in _KNOWN_BINARY:
        if data.startswith(magic):
            raise UnsupportedFileType(f"The file is {what}, which is not supported ({_SUPPORTED}).")
    text = decode_text(data[:262_144])
    return _text_type(text, filename)


def _text_type(text: str, filename: str | None) -> str:
    # XML before HTML: a spec's DTD may name <html> or <body> in its first lines
    if looks_like_xml(text, filename):
        return "xml"
    if _looks_like_html(text):
        return "html"
    if looks_like_man(text):  # troff source: read as Markdown, its example lines of dashes were headings
        return "man"
    name = (filename or "").lower()
    if name.endswith(_MARKDOWN_EXT):  # "From: ... / Date: ..." lines atop a Markdown memo keep its headings
        return "markdown"
    if name.endswith(_RST_EXT):
        return "rst"
    if looks_like_mhtml(text):
        return "mhtml"
    if looks_like_email(text):
        return "email"
    if name.endswith(_TEXT_EXT):  # a README.txt written in RST (directives, roles, targets) is RST
        return "rst" if looks_like_rst(text) else "text"
    if name.endswith(_TABLE_EXT):
        return "csv"
    if looks_like_code(text, filename):
        return "text"
    if looks_like_rst(text):  # before Markdown: RST's underlined titles read as Setext headings
        return "rst"
    return "markdown" if looks_like_markdown(text) else "text"


def parse(data: bytes, filename: str | None = None) -> ParsedDocument:
    """Extract text and sections; raises ParseError (UnsupportedFileType for other formats)."""
    kind = detect_type(data, filename)
    parser = _PARSERS[kind]
    if kind == "markdown" and not (filename or "").lower().endswith(_MARKDOWN_EXT):
        parser = _markdown_by_content  # its "# apt install foo" lines are shell, not headings
    try:
        return parser(data)
    except ParseError:
        raise
    except MemoryError as e:
        # the worker's memory, not the file, may be what ran out (other work beside it): worth another try
        raise ParseError("The document is too large to process in memory.", retryable=True) from e
    except Exception as e:
        # A parser library failing on odd input must fail this document, not the worker.
        logger.exception("parser for %s failed on %r", kind, filename)
        raise ParseError(f"The {kind} file could not be read ({type(e).__name__}); it may be damaged.") from e


def _decoded(parser: Callable[[str], ParsedDocument]) -> Callable[[bytes], ParsedDocument]:
    """``parser`` of a text format over the file's bytes, with a notice first where their encoding was a guess."""

    def parse_bytes(data: bytes) -> ParsedDocument:
        text, notice = decode_text_noted(data)
        doc = parser(text)
        if notice:
            doc.notices = cap_notices([notice, *doc.notices])
        return doc

    return parse_bytes


_markdown = _decoded(parse_markdown)
_markdown_by_content = _decoded(lambda text: parse_markdown(text, named=False))
_text = _decoded(parse_text)
_delimited = _decoded(parse_delimited)
_man = _decoded(parse_man)
_rst = _decoded(parse_rst)


_PARSERS = {
    "pdf": parse_pdf,
    "docx": parse_docx,
    "pptx": parse_pptx,
    "xlsx": parse_xlsx,
    "html": parse_html,
    "markdown": _markdown,
    "text": _text,
    "csv": _delimited,
    "email": parse_email,
    "mhtml": parse_mhtml,
    "odt": parse_odt,
    "ods": parse_ods,
    "odp": parse_odp,
    "rtf": parse_rtf,
    "epub": parse_epub,
    "doc": parse_doc,
    "xls": parse_xls,
    "msg": parse_msg,
    "ppt": parse_ppt,
    "xml": parse_xml,
    "man": _man,
    "rst": _rst,
}
