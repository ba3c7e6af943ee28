"""OpenDocument text (.odt: LibreOffice, OpenOffice, many public administrations): headings from their
outline level, paragraphs, lists, tables as "Header: value" rows, text boxes after their paragraph, notes
(footnotes, endnotes) at the end; tracked deletions, comments and a table of contents are not text."""

from __future__ import annotations

from lxml import etree

from .base import ParsedDocument, ParseError, TextBuilder, metadata_title, rows_as_text, xml_parser
from .office import open_zip

_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "dc": "http://purl.org/dc/elements/1.1/",
}
ODT_MIME = "application/vnd.oasis.opendocument.text"
# a table row may claim thousands of repeated empty cells (a spreadsheet-like layout): read at most these
MAX_REPEAT = 64


def _q(name: str) -> str:
    prefix, local = name.split(":")
    return f"{{{_NS[prefix]}}}{local}"


# not text of the flow: deleted text (kept in tracked changes), comments, a generated table of contents,
# declarations; notes and frames are read apart (``_Reader``)
_SKIP = {_q(n) for n in ("text:tracked-changes", "office:annotation", "office:annotation-end", "text:table-of-content",
                         "text:sequence-decls", "office:forms", "text:soft-page-break", "text:bookmark-ref")}  # fmt: skip


def parse_odt(data: bytes) -> ParsedDocument:
    zf = open_zip(data, "OpenDocument")
    try:
        content = etree.fromstring(zf.read("content.xml"), xml_parser())
        meta = etree.fromstring(zf.read("meta.xml"), xml_parser()) if "meta.xml" in zf.namelist() else None
    except (KeyError, etree.XMLSyntaxError) as e:
        raise ParseError("The OpenDocument file could not be read: the file is damaged.") from e
    body = content.find(f"{_q('office:body')}/{_q('office:text')}")
    if body is None:
        raise ParseError("The OpenDocument file has no text body.")
    r = _Reader()
    r.blocks(body)
    r.b.notes("Footnotes", r.footnotes)
    r.b.notes("Endnotes", r.endnotes)
    title = meta.findtext(f".//{_q('dc:title')}") if meta is not None else None
    return r.b.build("odt", None, metadata_title(title) or r.b.first_heading)


class _Reader:
    def __init__(self) -> None:
        self.b = TextBuilder()
        self.footnotes: list[str] = []
        self.endnotes: list[str] = []

    def blocks(self, container) -> None:
        for el in container.iterchildren():
            tag = el.tag
            if tag in _SKIP or not isinstance(tag, str):
                continue
            if tag == _q("text:h"):
                level = el.get(_q("text:outline-level"))
                text, frames = self.inline(el)
                self.b.heading(int(level) if level and level.isdigit() else 1, text)
                self.frames(frames)
            elif tag == _q("text:p"):
                text, frames = self.inline(el)
                self.b.block(text)
                self.frames(frames)
            elif tag == _q("table:table"):
                self.b.block("\n".join(rows_as_text(self.rows(el))))
            else:  # lists, list items, sections, headers of lists, ...: their blocks in order
                self.blocks(el)

    def inline(self, p) -> tuple[str, list]:
        """A paragraph's text (spaces, tabs, line breaks as written), and its frames (text boxes) to read
        after it; its notes go to the note lists."""
        out: list[str] = []
        frames: list = []

        def walk(el) -> None:
            if el.text:
                out.append(el.text)
            for ch in el.iterchildren():
                tag = ch.tag
                if tag == _q("text:s"):
                    out.append(" " * min(int(ch.get(_q("text:c"), "1") or 1), 100))
                elif tag == _q("text:tab"):
                    out.append("\t")
                elif tag == _q("text:line-break"):
                    out.append("\n")
                elif tag == _q("text:note"):
                    body = ch.find(_q("text:note-body"))
                    if body is not None:
                        notes = (
                            self.endnotes if ch.get(_q("text:note-class")) == "endnote" else self.footnotes
                        )
                        notes.append(
                            " ".join(
                                t for t in (self.inline(q)[0].strip() for q in body.iter(_q("text:p"))) if t
                            )
                        )
                elif tag == _q("draw:frame"):
                    frames.append(ch)
                elif tag not in _SKIP and isinstance(tag, str):
                    walk(ch)
                if ch.tail:
                    out.append(ch.tail)

        walk(p)
        return "".join(out), frames

    def frames(self, frames) -> None:
        for f in frames:
            for box in f.iter(_q("draw:text-box")):
                self.blocks(box)

    def rows(self, table) -> list[list[str]]:
        rows = []
        for row in table.iter(_q("table:table-row")):
            if next(row.iterancestors(_q("table:table")), None) is not table:
                continue  # a nested table's rows belong to its own cell
            cells = []
            for cell in row.iterchildren(_q("table:table-cell"), _q("table:covered-table-cell")):
                if cell.tag == _q("table:covered-table-cell"):
                    continue  # the merged cell's text is in the cell that covers it
                text = "\n".join(self.inline(q)[0] for q in cell.iter(_q("text:p"), _q("text:h")))
                repeat = cell.get(_q("table:number-columns-repeated"))
                n = min(int(repeat), MAX_REPEAT) if repeat and repeat.isdigit() else 1
                cells += [text] * n
            rows.append(cells)
        return rows
