"""OpenDocument (LibreOffice, OpenOffice, many public administrations).

- text (.odt): headings from their outline level, paragraphs, lists, tables as "Header: value" rows, text
  boxes after their paragraph, notes (footnotes, endnotes) at the end; a link's web or mail address after its
  text (``link_target``, as for Markdown and HTML); tracked deletions, comments and a table of contents are not
  text;
- spreadsheet (.ods): a sheet is a heading, its rows "Header: value" lines, as for Excel;
- presentation (.odp): a slide is a page (cited as a slide), its title frame the heading, its frames in reading order, then its
  speaker notes, as for PowerPoint.
"""

from __future__ import annotations

from lxml import etree

from . import base
from .base import (
    ParsedDocument,
    ParseError,
    TextBuilder,
    link_target,
    metadata_title,
    reading_order,
    rows_as_text,
    sheet_rows_as_text,
    xml_parser,
)
from .office import open_zip

_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "dc": "http://purl.org/dc/elements/1.1/",
    "presentation": "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0",
    "svg": "urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0",
    "xlink": "http://www.w3.org/1999/xlink",
}
_MIME = "application/vnd.oasis.opendocument."
# the OpenDocument kinds read here, by the mimetype member LibreOffice writes first: detected type, body element
ODF_KINDS = {_MIME + "text": "odt", _MIME + "spreadsheet": "ods", _MIME + "presentation": "odp"}
# a table row may claim thousands of repeated empty cells (a spreadsheet-like layout): read at most these
MAX_REPEAT = 64


def _q(name: str) -> str:
    prefix, local = name.split(":")
    return f"{{{_NS[prefix]}}}{local}"


# not text of the flow: deleted text (kept in tracked changes), comments, a generated table of contents,
# declarations; notes and frames are read apart (``_Reader``)
_SKIP = {_q(n) for n in ("text:tracked-changes", "office:annotation", "office:annotation-end", "text:table-of-content",
                         "text:sequence-decls", "office:forms", "text:soft-page-break", "text:bookmark-ref")}  # fmt: skip


def _open(data: bytes, body_tag: str):
    """(office:<body_tag> element, metadata title) of an OpenDocument file."""
    zf = open_zip(data, "OpenDocument")
    try:
        content = etree.fromstring(zf.read("content.xml"), xml_parser())
        meta = etree.fromstring(zf.read("meta.xml"), xml_parser()) if "meta.xml" in zf.namelist() else None
    except (KeyError, etree.XMLSyntaxError) as e:
        raise ParseError("The OpenDocument file could not be read: the file is damaged.") from e
    body = content.find(f"{_q('office:body')}/{_q('office:' + body_tag)}")
    if body is None:
        raise ParseError(f"The OpenDocument file has no {body_tag} body.")
    title = meta.findtext(f".//{_q('dc:title')}") if meta is not None else None
    return body, metadata_title(title)


def parse_odt(data: bytes) -> ParsedDocument:
    body, title = _open(data, "text")
    r = _Reader()
    r.blocks(body)
    r.b.notes("Footnotes", r.footnotes)
    r.b.notes("Endnotes", r.endnotes)
    return r.b.build("odt", None, title or r.b.first_heading)


def parse_ods(data: bytes) -> ParsedDocument:
    """One section per sheet (its name the heading); rows as "Header: value; ..." lines."""
    body, title = _open(data, "spreadsheet")
    r = _Reader()
    cells = 0
    for sheet in body.iterchildren(_q("table:table")):
        rows = r.rows(sheet, sheet=True)
        cells += sum(len(row) for row in rows)
        if cells > base.MAX_SHEET_CELLS:
            raise ParseError(f"The spreadsheet has more than {base.MAX_SHEET_CELLS:,} cells; split it.")
        lines = sheet_rows_as_text(rows)
        if lines:
            r.b.set_path([])
            r.b.heading(1, sheet.get(_q("table:name"), ""))
            r.b.block("\n".join(lines))
    return r.b.build("ods", None, title, heading_title=False)


def parse_odp(data: bytes) -> ParsedDocument:
    """One section per slide (page = slide number, cited as a slide), its title frame the heading; frames in
    reading order, tables as rows, then the speaker notes."""
    body, title = _open(data, "presentation")
    r = _Reader(page_kind="slide")
    first_title = None
    slides = list(body.iterchildren(_q("draw:page")))
    for n, slide in enumerate(slides, start=1):
        frames = [f for f in slide.iterchildren() if f.tag in (_q("draw:frame"), _q("draw:custom-shape"),
                                                                 _q("draw:g"))]  # fmt: skip
        titles = [f for f in frames if f.get(_q("presentation:class")) == "title"]
        slide_title = " ".join(r.text_of(f) for f in titles).strip()
        r.b.set_path([], page=n)
        r.b.heading(1, slide_title)
        first_title = first_title or slide_title or None
        for f in reading_order([f for f in frames if f not in titles], _place, _LINE_CM):
            r.shape(f)
        notes = slide.find(_q("presentation:notes"))
        if notes is not None:  # the notes page also holds a thumbnail of the slide (a draw:page-thumbnail)
            for f in notes.iterchildren(_q("draw:frame")):
                if f.get(_q("presentation:class")) in (None, "notes"):
                    r.shape(f)
    return r.b.build("odp", len(slides), title or first_title)


def _length_cm(value: str | None) -> float:
    """An ODF length ("2.5cm", "1in", "72pt", "10mm") in centimetres; 0 when absent or odd."""
    if not value:
        return 0.0
    for unit, cm in (("cm", 1.0), ("mm", 0.1), ("in", 2.54), ("pt", 2.54 / 72), ("pc", 2.54 / 6)):
        if value.endswith(unit):
            try:
                return float(value[: -len(unit)]) * cm
            except ValueError:
                return 0.0
    return 0.0


# frames whose tops are this close (cm; a quarter inch) read as one line, left to right
_LINE_CM = 0.635


def _place(el) -> tuple[float, float]:
    """(top, left) of a frame in cm; of a group, its first member's."""
    if el.tag == _q("draw:g"):
        members = [_place(ch) for ch in el.iterchildren() if isinstance(ch.tag, str)]
        return min(members) if members else (0.0, 0.0)
    return (_length_cm(el.get(_q("svg:y"))), _length_cm(el.get(_q("svg:x"))))


class _Reader:
    def __init__(self, page_kind: str = "page") -> None:
        self.b = TextBuilder(page_kind)
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
        """A paragraph's text (spaces, tabs, line breaks as written; a link's web or mail address after its text),
        and its frames (text boxes) to read after it; its notes go to the note lists."""
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
                elif tag == _q("text:a"):
                    start = len(out)
                    walk(ch)
                    if target := link_target(ch.get(_q("xlink:href")), "".join(out[start:])):
                        out.append(f" ({target})")
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

    def text_of(self, el) -> str:
        """All paragraphs under ``el`` (a frame, a shape), a line each."""
        return "\n".join(self.inline(p)[0] for p in el.iter(_q("text:p"), _q("text:h")))

    def shape(self, el) -> None:
        """A slide's frame, shape or group: its table as rows, else its text."""
        if el.tag == _q("draw:g"):
            for ch in reading_order(
                [c for c in el.iterchildren() if isinstance(c.tag, str)], _place, _LINE_CM
            ):
                self.shape(ch)
            return
        table = el.find(_q("table:table"))
        if table is not None:
            self.b.block("\n".join(rows_as_text(self.rows(table))))
        elif el.tag in (_q("draw:frame"), _q("draw:custom-shape")):
            self.b.block(self.text_of(el))

    def rows(self, table, sheet: bool = False) -> list[list[str]]:
        """A table's rows of cell texts. Repeated cells and rows are read at most MAX_REPEAT times (a sheet's
        trailing empty ones claim thousands); in a sheet, empty trailing cells of a row are dropped."""
        rows = []
        down: dict[int, tuple[str, int]] = {}  # column -> (text, rows it spans) of a cell merged down it
        for row in table.iter(_q("table:table-row")):
            if next(row.iterancestors(_q("table:table")), None) is not table:
                continue  # a nested table's rows belong to its own cell
            cells = []
            for cell in row.iterchildren(_q("table:table-cell"), _q("table:covered-table-cell")):
                repeat = cell.get(_q("table:number-columns-repeated"))
                n = min(int(repeat), MAX_REPEAT) if repeat and repeat.isdigit() else 1
                if cell.tag == _q("table:covered-table-cell"):
                    # a place a merged cell covers: the columns after it stay under their own headers, and a
                    # cell merged down one column repeats its text there (as Word tables are read)
                    for _ in range(n):
                        text, left = down.get(len(cells), ("", 0))
                        cells.append(text if left > 0 else "")
                    continue
                text = "\n".join(self.inline(q)[0] for q in cell.iter(_q("text:p"), _q("text:h")))
                spans = cell.get(_q("table:number-rows-spanned")) or "1"
                if (
                    spans.isdigit()
                    and int(spans) > 1
                    and cell.get(_q("table:number-columns-spanned")) in (None, "1")
                ):
                    down[len(cells)] = (text, int(spans))
                cells += [text] * n
            down = {c: (t, left - 1) for c, (t, left) in down.items() if left > 1}
            if sheet:
                while cells and not cells[-1].strip():
                    cells.pop()
            repeat = row.get(_q("table:number-rows-repeated"))
            n = min(int(repeat), MAX_REPEAT) if repeat and repeat.isdigit() else 1
            rows += [cells] * (n if cells else 1)
        return rows
