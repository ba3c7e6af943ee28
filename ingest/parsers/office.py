"""Office Open XML: Word (.docx), PowerPoint (.pptx), Excel (.xlsx).

All three are ZIP archives; `open_zip` checks the declared sizes before anything is decompressed.
Python's zipfile never inflates a member past its declared size (and checks its CRC), so the check
bounds memory even when the declared sizes lie.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import zipfile

from . import base
from .base import ParsedDocument, ParseError, TextBuilder, metadata_title, rows_as_text

logger = logging.getLogger(__name__)

# A member this large must also compress plausibly; real Office XML deflates ~5-30x.
_RATIO_CHECK_BYTES = 10 * 1024 * 1024


def open_zip(data: bytes, kind: str) -> zipfile.ZipFile:
    """Open an Office file's ZIP container after checking member count, total size and ratios."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception as e:  # BadZipFile, NotImplementedError (odd versions), struct errors, ...
        raise ParseError(
            f"The {kind} file could not be read: it is damaged (not a valid ZIP container)."
        ) from e
    if len(infos) > base.MAX_ZIP_MEMBERS:
        raise ParseError(
            f"The {kind} file has {len(infos):,} parts, more than a real document has; it was not opened."
        )
    total = sum(i.file_size for i in infos)
    limit_mb = base.MAX_ZIP_UNCOMPRESSED // (1024 * 1024)
    if total > base.MAX_ZIP_UNCOMPRESSED:
        raise ParseError(
            f"The {kind} file would expand to {total / 2**20:,.0f} MB when unpacked (more than {limit_mb} MB); "
            "it looks like a zip bomb and was not opened."
        )
    for i in infos:
        if i.file_size > _RATIO_CHECK_BYTES and i.file_size > base.MAX_ZIP_RATIO * max(i.compress_size, 1):
            raise ParseError(
                f"The {kind} file contains a part compressed {i.file_size // max(i.compress_size, 1):,} to 1 "
                "(far beyond real documents); it looks like a zip bomb and was not opened."
            )
    return zf


def parse_docx(data: bytes) -> ParsedDocument:
    """Paragraphs and tables in body order; headings from paragraph styles; tables as header rows."""
    from docx import Document
    from docx.table import Table

    open_zip(data, "Word")
    try:
        doc = Document(io.BytesIO(data))
        blocks = list(doc.iter_inner_content())
        meta_title = doc.core_properties.title
    except ParseError:
        raise
    except Exception as e:
        raise ParseError("The Word document could not be read: the file is damaged.") from e
    b = TextBuilder()
    style_title = None
    for block in blocks:
        if isinstance(block, Table):
            b.block("\n".join(rows_as_text(_table_rows(block))))
            continue
        text = block.text
        style = (block.style.name if block.style is not None else "") or ""
        level = _heading_level(style)
        if style == "Title":
            # The document title names the whole document, so it is not part of heading paths.
            style_title = style_title or text.strip() or None
            b.block(text)
        elif level:
            b.heading(level, text)
        else:
            b.block(text)
    return b.build("docx", None, metadata_title(meta_title) or style_title)


def _heading_level(style: str) -> int:
    if style.startswith("Heading "):
        tail = style.removeprefix("Heading ").strip()
        if tail.isdigit():
            return max(1, min(9, int(tail)))
    return 0


def _table_rows(table) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            # Merged cells come back once per grid column; keep each cell once.
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(cell.text)
        rows.append(cells)
    return rows


def parse_pptx(data: bytes) -> ParsedDocument:
    """One section per slide (page = slide number), the slide title as its heading; notes included."""
    from pptx import Presentation

    open_zip(data, "PowerPoint")
    try:
        prs = Presentation(io.BytesIO(data))
        slides = list(prs.slides)
        meta_title = prs.core_properties.title
    except Exception as e:
        raise ParseError("The PowerPoint file could not be read: the file is damaged.") from e
    b = TextBuilder()
    first_title = None
    for n, slide in enumerate(slides, start=1):
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text if title_shape is not None and title_shape.has_text_frame else ""
        b.set_path([], page=n)
        b.heading(1, title)
        first_title = first_title or title.strip() or None
        for shape in _shapes(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            if getattr(shape, "has_table", False) and shape.has_table:
                rows = [[c.text for c in r.cells] for r in shape.table.rows]
                b.block("\n".join(rows_as_text(rows)))
            elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
                b.block(shape.text_frame.text)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            b.block(slide.notes_slide.notes_text_frame.text)
    return b.build("pptx", len(slides), metadata_title(meta_title) or first_title)


def _shapes(shapes):
    for shape in shapes:
        if hasattr(shape, "shapes"):  # a group
            yield from _shapes(shape.shapes)
        else:
            yield shape


def parse_xlsx(data: bytes) -> ParsedDocument:
    """One section per sheet (the sheet name as heading); rows as "Header: value; ..." lines."""
    from openpyxl import load_workbook

    open_zip(data, "Excel")
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as e:
        raise ParseError("The Excel file could not be read: the file is damaged.") from e
    b = TextBuilder()
    cells = 0
    try:
        for ws in wb.worksheets:
            rows = []
            for r in ws.iter_rows(values_only=True):
                cells += len(r)
                if cells > base.MAX_SHEET_CELLS:
                    raise ParseError(
                        f"The Excel file has more than {base.MAX_SHEET_CELLS:,} cells; split it."
                    )
                rows.append([_cell(v) for v in r])
            lines = rows_as_text(rows)
            if lines:
                b.set_path([])
                b.heading(1, ws.title)
                b.block("\n".join(lines))
        title = wb.properties.title if wb.properties is not None else None
    except ParseError:
        raise
    except Exception as e:
        raise ParseError("The Excel file could not be read: the file is damaged.") from e
    finally:
        wb.close()
    return b.build("xlsx", None, metadata_title(title))


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dt.datetime) and v.time() == dt.time(0):
        return v.date().isoformat()
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    return str(v)
