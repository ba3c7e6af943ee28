"""Office Open XML: Word (.docx), PowerPoint (.pptx), Excel (.xlsx).

All three are ZIP archives; `open_zip` checks the declared sizes before anything is decompressed.
Python's zipfile never inflates a member past its declared size (and checks its CRC), so the check
bounds memory even when the declared sizes lie.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import zipfile

from . import base
from .base import (
    ParsedDocument,
    ParseError,
    TextBuilder,
    fill_merged_down,
    link_target,
    metadata_title,
    reading_order,
    rows_as_text,
    sheet_rows_as_text,
)

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
    """Paragraphs and tables in body order (content controls opened, a table of contents skipped); headings
    from paragraph styles, the styles they are based on, or outline levels; tables as header rows; text
    boxes, SmartArt diagrams and charts after their paragraph; footnotes and endnotes at the end, then the page
    headers' and footers' text (once each, page numbers dropped). Paragraph text is every ``w:t`` of the
    paragraph (hyperlinks, tracked insertions, inline content controls, field results), not deleted text
    or field codes; a hyperlink's web or mail address follows its text (``link_target``), as in Markdown."""
    from docx import Document

    open_zip(data, "Word")
    try:
        doc = Document(io.BytesIO(data))
        body = doc.element.body
        meta_title = doc.core_properties.title
        notes = [(kind, _notes(doc, kind)) for kind in ("footnotes", "endnotes")]
        margins = _headers_footers(doc)
    except ParseError:
        raise
    except Exception as e:
        raise ParseError("The Word document could not be read: the file is damaged.") from e
    b = TextBuilder()
    titles: list[str] = []
    _docx_blocks(body, doc, b, titles, {}, _links(doc.part))
    for kind, texts in notes:
        b.notes(kind.capitalize(), texts)
    for kind, texts in margins:
        b.notes(kind, texts, numbered=False)
    if notice := _embedded_notice(_embedded_kinds(body)):
        b.notice(notice)
    return b.build("docx", None, metadata_title(meta_title) or (titles[0] if titles else None))


def _w(tag: str) -> str:
    return "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}" + tag


_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
# not the paragraph's own text: deleted / moved-away text, field codes, text boxes (their own blocks), and
# the fallback copy of alternate content (a text box is stored twice, as DrawingML and as VML)
_NOT_TEXT = {_w("del"), _w("moveFrom"), _w("delText"), _w("instrText"), _w("txbxContent"), _w("pPr"), _w("rPr"),
             _MC_FALLBACK}  # fmt: skip
_BREAKS = {_w("br"): "\n", _w("cr"): "\n", _w("tab"): "\t", _w("noBreakHyphen"): "-"}


def _docx_blocks(
    container, doc, b: TextBuilder, titles: list[str], styles: dict, links: dict[str, str]
) -> None:
    for el in container.iterchildren():
        if el.tag == _w("p"):
            text = _para_text(el, links)
            level, style = _heading_level(el, doc, styles)
            if style == "Title":
                # The document title names the whole document, so it is not part of heading paths.
                if text.strip():
                    titles.append(text.strip())
                b.block(text)
            elif level:
                b.heading(level, text)
            else:
                b.block(text)
            for box in el.iter(_w("txbxContent")):
                if not any(a.tag == _MC_FALLBACK for a in box.iterancestors()):
                    _docx_blocks(box, doc, b, titles, styles, links)
            for text in _diagrams(el, doc.part) + _charts(el, doc.part):
                b.block(text)
        elif el.tag == _w("tbl"):
            b.block("\n".join(rows_as_text(_table_rows(el, links))))
        elif el.tag in (_w("sdt"), _w("customXml")) and not _placeholder(el):  # content controls, custom XML
            gallery = el.find(f"{_w('sdtPr')}/{_w('docPartObj')}/{_w('docPartGallery')}")
            if gallery is not None and "Table of Contents" in (gallery.get(_w("val")) or ""):
                continue
            content = el.find(_w("sdtContent")) if el.tag == _w("sdt") else el
            if content is not None:
                _docx_blocks(content, doc, b, titles, styles, links)


_OLE_OBJECTS = (
    "{urn:schemas-microsoft-com:office:office}OLEObject",  # Word: w:object > o:OLEObject
    "{http://schemas.openxmlformats.org/presentationml/2006/main}oleObj",  # PowerPoint: a graphic frame's
)
# what an embedded object's ProgID names, as a person calls it
_PROG_KINDS = (("excel.", "Excel"), ("word.", "Word"), ("powerpoint.", "PowerPoint"), ("acroexch.", "PDF"),
               ("acrobat.", "PDF"), ("package", "file"), ("visio.", "Visio"))  # fmt: skip


def _embedded_kinds(root) -> list[str]:
    """The kind ("Excel", "PDF", "file", "other") of each object embedded (OLE) in ``root``: a worksheet or a
    file placed in a document or on a slide, which shows as a picture and whose content is not read."""
    kinds = []
    for el in root.iter(*_OLE_OBJECTS):
        if any(a.tag == _MC_FALLBACK for a in el.iterancestors()):  # the second copy of alternate content
            continue
        prog = (el.get("ProgID") or el.get("progId") or "").lower()
        kinds.append(next((kind for p, kind in _PROG_KINDS if prog.startswith(p)), "other"))
    return kinds


def _embedded_notice(kinds: list[str], where: str = "") -> str | None:
    """The notice for embedded objects of ``kinds`` (None for none): "2 embedded objects (Excel, PDF) are not
    read; their content is not searchable.", after ``where`` ("Slides 2, 4: ")."""
    if not kinds:
        return None
    what = ", ".join(dict.fromkeys(kinds))
    if len(kinds) == 1:
        return f"{where}1 embedded object ({what}) is not read; its content is not searchable."
    return f"{where}{len(kinds)} embedded objects ({what}) are not read; their content is not searchable."


def _placeholder(el) -> bool:
    """A content control still showing its prompt ("Click or tap here to enter text."), not content."""
    return el.tag == _w("sdt") and el.find(f"{_w('sdtPr')}/{_w('showingPlcHdr')}") is not None


def _links(part) -> dict[str, str]:
    """rId -> address of each external relationship of ``part`` (the document, a header, the footnotes): where
    its hyperlinks lead. A part without relationships has none."""
    try:
        return {rid: rel.target_ref for rid, rel in part.rels.items() if rel.is_external}
    except Exception:  # noqa: BLE001  (broken relationships lose the addresses, not the text)
        return {}


# a HYPERLINK field's address: its first argument, unless a switch comes first (``\l "bookmark"``: in the file)
_HYPERLINK_FIELD = re.compile(r'\s*HYPERLINK\s+(?!\\)(?:"([^"]*)"|(\S+))', re.IGNORECASE)


def _field_href(instr: str) -> str | None:
    m = _HYPERLINK_FIELD.match(instr)
    return (m.group(1) if m.group(1) is not None else m.group(2)) if m else None


def _para_text(p, links: dict[str, str] | None = None) -> str:
    """A paragraph's text; each hyperlink's address after its text where it says more (``link_target``): a
    ``w:hyperlink`` to an external relationship of ``links``, or a HYPERLINK field (simple or complex)."""
    out: list[str] = []
    fields: list[list] = []  # open complex fields: [instruction pieces, where their result starts in out]

    def linked(href: str | None, start: int) -> None:
        if target := link_target(href, "".join(out[start:])):
            out.append(f" ({target})")

    def walk(el) -> None:
        for ch in el.iterchildren():
            if ch.tag == _w("instrText") and fields and fields[-1][1] is None:
                fields[-1][0].append(ch.text or "")
            if ch.tag in _NOT_TEXT or _placeholder(ch):
                continue
            if ch.tag == _w("t"):
                out.append(ch.text or "")
            elif ch.tag in _BREAKS:
                out.append(_BREAKS[ch.tag])
            elif ch.tag == _w("fldChar"):
                kind = ch.get(_w("fldCharType"))
                if kind == "begin":
                    fields.append([[], None])
                elif kind == "separate" and fields:
                    fields[-1][1] = len(out)
                elif kind == "end" and fields:
                    instr, start = fields.pop()
                    if start is not None:
                        linked(_field_href("".join(instr)), start)
            elif ch.tag == _w("hyperlink"):
                start = len(out)
                walk(ch)
                linked((links or {}).get(ch.get(_R_ID) or ""), start)
            elif ch.tag == _w("fldSimple"):
                start = len(out)
                walk(ch)
                linked(_field_href(ch.get(_w("instr")) or ""), start)
            else:
                walk(ch)

    walk(p)
    return "".join(out)


def _heading_level(p, doc, styles: dict) -> tuple[int, str]:
    """(heading level or 0, style name) of a paragraph: a "Heading N" style or a style based on one, or an
    outline level (0-8) set on the paragraph or its style chain (level 9 is body text)."""
    lvl = p.find(f"{_w('pPr')}/{_w('outlineLvl')}")
    ref = p.find(f"{_w('pPr')}/{_w('pStyle')}")
    style_id = ref.get(_w("val")) if ref is not None else None
    if style_id not in styles:
        try:
            styles[style_id] = doc.styles.get_by_id(style_id, 1)  # 1: WD_STYLE_TYPE.PARAGRAPH
        except Exception:  # noqa: BLE001  (a broken style reference is body text)
            styles[style_id] = None
    style = styles[style_id]
    name = (style.name if style is not None else "") or ""
    if lvl is not None:
        v = lvl.get(_w("val"))
        return (int(v) + 1 if v is not None and v.isdigit() and int(v) < 9 else 0), name
    for _ in range(10):  # a style chain; bounded against a cyclic one
        if style is None:
            break
        if (style.name or "").startswith("Heading "):
            tail = style.name.removeprefix("Heading ").strip()
            if tail.isdigit():
                return max(1, min(9, int(tail))), name
        slvl = style.element.find(f"{_w('pPr')}/{_w('outlineLvl')}")
        if slvl is not None and (v := slvl.get(_w("val"))) is not None and v.isdigit():
            return (int(v) + 1 if int(v) < 9 else 0), name
        style = style.base_style
    return 0, name


def _notes(doc, kind: str) -> list[str]:
    """The texts of word/footnotes.xml or endnotes.xml (separators skipped), in document order."""
    from lxml import etree

    part = next((p for p in doc.part.package.iter_parts() if p.partname == f"/word/{kind}.xml"), None)
    if part is None:
        return []
    root = etree.fromstring(part.blob, base.xml_parser())
    links = _links(part)
    texts = []
    for note in root.iterchildren(_w(kind[:-1])):
        if note.get(_w("type")) in ("separator", "continuationSeparator", "continuationNotice"):
            continue
        text = " ".join(t for t in (_para_text(p, links).strip() for p in note.iter(_w("p"))) if t)
        if text:
            texts.append(text)
    return texts


# a header or footer line that only numbers the page ("3", "Page 3 of 12", "- 3 -", "3/12")
_PAGE_NUMBER = re.compile(r"[-\s]*(page\s*)?\d+(\s*(of|/)\s*\d+)?[-\s]*", re.IGNORECASE)


def _headers_footers(doc) -> list[tuple[str, list[str]]]:
    """[("Page header", lines), ("Page footer", lines)]: the text of every section's page headers and footers
    (first-page, odd and even), each distinct line once and in order; page numbers and watermark text boxes left
    out. Word prints them on every page, so a policy's owner, number or contact desk often stands only there."""
    out = []
    for kind, names in (("Page header", ("first_page_header", "header", "even_page_header")),
                        ("Page footer", ("first_page_footer", "footer", "even_page_footer"))):  # fmt: skip
        lines: list[str] = []
        for section in doc.sections:
            for name in names:
                try:
                    part = getattr(section, name)
                    if part.is_linked_to_previous:  # no part of its own: the previous section's
                        continue
                    got = _margin_lines(part._element, _links(part.part))
                except Exception:  # noqa: BLE001  (a broken reference loses the header, not the document)
                    logger.warning("unreadable %s skipped", kind.lower())
                    continue
                for line in got:
                    if line not in lines and not _PAGE_NUMBER.fullmatch(line):
                        lines.append(line)
        out.append((kind, lines))
    return out


def _margin_lines(container, links: dict[str, str]) -> list[str]:
    """A header's or footer's paragraphs and table rows as lines (content controls opened)."""
    lines: list[str] = []
    for el in container.iterchildren():
        if el.tag == _w("p"):
            lines += [t.strip() for t in _para_text(el, links).split("\n")]
        elif el.tag == _w("tbl"):
            rows = [[c.strip() for c in r] for r in _table_rows(el, links)]
            lines += [" ".join(c for c in r if c) for r in rows]  # a layout grid, not a table with headers
        elif el.tag == _w("sdt") and not _placeholder(el):
            content = el.find(_w("sdtContent"))
            lines += _margin_lines(content, links) if content is not None else []
    return [" ".join(t.split()) for t in lines if t.strip()]


_DGM = "{http://schemas.openxmlformats.org/drawingml/2006/diagram}"
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_A_R = f"{_A}r"  # a text run
_R_DM = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}dm"
_MAX_DIAGRAM_POINTS = 5_000


def _diagrams(el, part) -> list[str]:
    """The text of each SmartArt diagram (process steps, org charts, lists) drawn in ``el``: its data part, found
    through ``part``'s relationships, one line a node in the diagram's own order (parent before children,
    siblings by position; indented two spaces a level). Word and PowerPoint keep a diagram's text only there."""
    return _related_texts(el.iter(f"{_DGM}relIds"), _R_DM, part, _diagram_text, "a SmartArt diagram")


def _related_texts(refs, rid_attr: str, part, read, what: str) -> list[str]:
    """``read(blob)`` of the part each reference in ``refs`` names (``rid_attr``, through ``part``'s
    relationships), skipping fallback copies; a missing or damaged part costs that drawing, not the document."""
    texts = []
    for ref in refs:
        rid = ref.get(rid_attr)
        if rid is None or any(a.tag == _MC_FALLBACK for a in ref.iterancestors()):
            continue
        try:
            text = read(part.rels[rid].target_part.blob)
        except Exception as e:
            logger.warning("%s could not be read: %s", what, e)
            continue
        if text:
            texts.append(text)
    return texts


def _diagram_text(blob: bytes) -> str:
    from lxml import etree

    root = etree.fromstring(blob, base.xml_parser())
    nodes: dict[str, str] = {}
    order: list[str] = []
    doc_ids = []
    for pt in root.iter(f"{_DGM}pt"):
        kind = pt.get("type", "node")
        if kind == "doc":
            doc_ids.append(pt.get("modelId"))
        if kind not in ("node", "asst") or len(order) >= _MAX_DIAGRAM_POINTS:
            continue
        body = pt.find(f"{_DGM}t")
        lines = (
            []
            if body is None
            else ["".join(t.text or "" for t in para.iter(f"{_A}t")) for para in body.iter(f"{_A}p")]
        )
        nodes[pt.get("modelId")] = " ".join(line.strip() for line in lines if line.strip())
        order.append(pt.get("modelId"))
    children: dict[str, list[tuple[int, str]]] = {}
    for cxn in root.iter(f"{_DGM}cxn"):
        if cxn.get("type", "parOf") == "parOf":
            try:
                pos = int(cxn.get("srcOrd", "0"))
            except ValueError:
                pos = 0
            children.setdefault(cxn.get("srcId"), []).append((pos, cxn.get("destId")))
    out: list[str] = []
    seen: set[str] = set()

    def visit(node_id: str, depth: int) -> None:
        for _, child in sorted(children.get(node_id, ())):
            if child in seen or len(seen) > _MAX_DIAGRAM_POINTS:
                continue
            seen.add(child)
            if nodes.get(child):
                out.append("  " * depth + nodes[child])
            visit(child, depth + 1 if child in nodes else depth)

    for doc_id in doc_ids:
        visit(doc_id, 0)
    out += [nodes[n] for n in order if n not in seen and nodes[n]]  # not connected to the root: file order
    return "\n".join(out)


_C = "{http://schemas.openxmlformats.org/drawingml/2006/chart}"
_R_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_MAX_CHART_POINTS = 2_000


def _charts(el, part) -> list[str]:
    """The text of each chart drawn in ``el`` (its chart part, found through ``part``'s relationships): the
    title, then its data as a table, a row per category and a column per series ("Quarter: Q3; Revenue: 12.5;
    Cost: 9"), from the values the file caches for display. Word and PowerPoint keep a chart's numbers there,
    not in the text."""
    return _related_texts(el.iter(f"{_C}chart"), _R_ID, part, _chart_text, "a chart")


def _cached(el) -> dict[int, str]:
    """idx -> value of a chart reference's cached points (c:strCache / c:numCache / c:multiLvlStrCache, whose
    first level is the innermost category), or of a literal (c:strLit / c:numLit)."""
    out: dict[int, str] = {}
    if el is None:
        return out
    fmt = next((f.text for f in el.iter(f"{_C}formatCode") if f.text), None)
    for pt in el.iter(f"{_C}pt"):
        if len(out) >= _MAX_CHART_POINTS:
            break
        try:
            idx = int(pt.get("idx", ""))
        except ValueError:
            continue
        v = pt.find(f"{_C}v")
        if v is None or v.text is None or idx in out:
            continue
        if pt.getparent().tag in (f"{_C}numCache", f"{_C}numLit"):
            out[idx] = _chart_number(v.text.strip(), pt.get("formatCode") or fmt)
        else:
            out[idx] = v.text.strip()
    return out


def _chart_number(v: str, fmt: str | None) -> str:
    """A cached chart value as the chart shows it under its format code (``base.number_text``); text as it is."""
    try:
        x = float(v)
    except ValueError:
        return v
    return base.number_text(x, fmt)


def _chart_text(blob: bytes) -> str:
    from lxml import etree

    root = etree.fromstring(blob, base.xml_parser())
    chart = root.find(f"{_C}chart")
    if chart is None:
        return ""
    lines = []
    title = chart.find(f"{_C}title")
    if title is not None:
        words = "".join(t.text or "" for t in title.iter(f"{_A}t")) or " ".join(_cached(title).values())
        if words.strip():
            lines.append(words.strip())
    series = []
    for ser in chart.iter(f"{_C}ser"):
        name = " ".join(_cached(ser.find(f"{_C}tx")).values()) or (ser.findtext(f"{_C}tx/{_C}v") or "")
        cats = _cached(ser.find(f"{_C}cat")) or _cached(ser.find(f"{_C}xVal"))
        vals = _cached(ser.find(f"{_C}val")) or _cached(ser.find(f"{_C}yVal"))
        if vals:
            series.append((name.strip() or f"Series {len(series) + 1}", cats, vals))
    if series:
        idxs = sorted({i for _, cats, vals in series for i in (*cats, *vals)})[:_MAX_CHART_POINTS]
        rows = [["Category"] + [name for name, _, _ in series]]
        for i in idxs:
            cat = next((cats[i] for _, cats, _ in series if i in cats), str(i + 1))
            rows.append([cat] + [vals.get(i, "") for _, _, vals in series])
        lines += rows_as_text(rows)
    return "\n".join(lines)


def _table_rows(tbl, links: dict[str, str]) -> list[list[str]]:
    """A table's rows of cell texts, read from its XML: rows and cells may sit in content controls or custom
    XML (a cover page's cells), which python-docx's rows and cells do not see. A horizontally merged cell counts
    once and the cells after it stay under their own column's header; a vertically merged one repeats its first
    cell's text in each row it spans."""
    rows: list[list[str]] = []
    above: dict[int, str] = {}  # grid column -> text of the cell a vertical merge started with
    for tr in _wrapped(tbl, _w("tr")):
        cells, col = [], 0
        for tc in _wrapped(tr, _w("tc")):
            pr = tc.find(_w("tcPr"))
            span = pr.find(_w("gridSpan")) if pr is not None else None
            merge = pr.find(_w("vMerge")) if pr is not None else None
            if merge is not None and merge.get(_w("val")) in (None, "continue"):
                text = above.get(col, "")
            else:
                text = "\n".join(_para_text(p, links) for p in tc.iter(_w("p")))
                if merge is not None:
                    above[col] = text
                else:
                    above.pop(col, None)
            value = span.get(_w("val")) if span is not None else None
            width = min(int(value), 64) if value and value.isdigit() and int(value) > 0 else 1
            cells += [text] + [""] * (width - 1)  # later cells stay under their own headers
            col += width
        rows.append(cells)
    return rows


def _wrapped(parent, tag: str):
    """``parent``'s children of ``tag``, also those inside content controls and custom XML wrappers."""
    for el in parent.iterchildren():
        if el.tag == tag:
            yield el
        elif el.tag == _w("sdt"):
            content = el.find(_w("sdtContent"))
            if content is not None:
                yield from _wrapped(content, tag)
        elif el.tag == _w("customXml"):
            yield from _wrapped(el, tag)


def parse_pptx(data: bytes) -> ParsedDocument:
    """One section per slide (page = slide number, cited as a slide), the slide title as its heading; SmartArt
    diagrams' text; charts' titles and data; notes included."""
    from pptx import Presentation

    open_zip(data, "PowerPoint")
    try:
        prs = Presentation(io.BytesIO(data))
        slides = list(prs.slides)
        meta_title = prs.core_properties.title
    except Exception as e:
        raise ParseError("The PowerPoint file could not be read: the file is damaged.") from e
    b = TextBuilder(page_kind="slide")
    first_title = None
    embedded: dict[int, list[str]] = {}
    for n, slide in enumerate(slides, start=1):
        if kinds := _embedded_kinds(slide._element):
            embedded[n] = kinds
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text if title_shape is not None and title_shape.has_text_frame else ""
        b.set_path([], page=n)
        b.heading(1, title)
        first_title = first_title or title.strip() or None
        for shape in _shapes(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            if getattr(shape, "has_table", False) and shape.has_table:
                rows = [[_frame_text(c.text_frame) for c in r.cells] for r in shape.table.rows]
                b.block("\n".join(rows_as_text(rows)))
            elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
                b.block(_frame_text(shape.text_frame))
            else:
                for text in _diagrams(shape._element, slide.part) + _charts(shape._element, slide.part):
                    b.block(text)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            b.block(_frame_text(slide.notes_slide.notes_text_frame))
    if embedded:
        where = f"{'Slide' if len(embedded) == 1 else 'Slides'} {base.page_ranges(list(embedded))}: "
        b.notice(_embedded_notice([k for kinds in embedded.values() for k in kinds], where))
    return b.build("pptx", len(slides), metadata_title(meta_title) or first_title)


def _frame_text(frame) -> str:
    """A text frame's text as python-pptx's ``text`` reads it (a line per paragraph, "\\v" for a line break), each
    hyperlink's address after its text where it says more (``link_target``), as in Word documents. Runs that
    lead to the same address one after another are one link ("the *new* installer" in three runs)."""
    from pptx.text.text import _Run

    lines = []
    for p in frame.paragraphs:
        out: list[str] = []
        href, start = None, 0
        for el in p._element.content_children:  # runs, line breaks and fields, in order
            address = _run_address(_Run(el, p)) if el.tag == _A_R else None
            if address != href:
                if target := link_target(href, "".join(out[start:])):
                    out.append(f" ({target})")
                href, start = address, len(out)
            out.append(el.text)
        if target := link_target(href, "".join(out[start:])):
            out.append(f" ({target})")
        lines.append("".join(out))
    return "\n".join(lines)


def _run_address(run) -> str | None:
    """Where a slide run's hyperlink leads (``run.hyperlink.address``); None without one, or where its
    relationship is missing (the address is lost, not the text)."""
    try:
        return run.hyperlink.address
    except Exception:  # noqa: BLE001
        return None


# shapes whose tops are this close (EMU; a quarter inch) read as one line, left to right
_LINE_EMU = 228_600


def _shapes(shapes):
    """A slide's shapes in reading order (top to bottom, then left to right; a group's shapes within it), not
    in the order they were drawn (z-order), which is the file's."""

    def place(shape) -> tuple[int, int]:
        return (shape.top or 0, shape.left or 0)

    for shape in reading_order(list(shapes), place, _LINE_EMU):
        if hasattr(shape, "shapes"):  # a group
            yield from _shapes(shape.shapes)
        else:
            yield shape


def parse_xlsx(data: bytes) -> ParsedDocument:
    """One section per sheet (the sheet name as heading); rows as "Header: value; ..." lines."""
    from openpyxl import load_workbook

    zf = open_zip(data, "Excel")
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as e:
        raise ParseError("The Excel file could not be read: the file is damaged.") from e
    b = TextBuilder()
    cells = 0
    stale: dict[str, int] = {}  # sheet -> formula cells with saved values that opening would recalculate
    try:
        recalc = _recalculates_on_open(zf)
        for ws in wb.worksheets:
            rows = []
            for r in ws.iter_rows():
                cells += len(r)
                if cells > base.MAX_SHEET_CELLS:
                    raise ParseError(
                        f"The Excel file has more than {base.MAX_SHEET_CELLS:,} cells; split it."
                    )
                rows.append([_cell(c.value, getattr(c, "number_format", None)) for c in r])
            path = getattr(ws, "_worksheet_path", None)
            fill_merged_down(rows, _merged_down(zf, path))
            lines = sheet_rows_as_text(rows)
            if lines:
                b.set_path([])
                b.heading(1, ws.title)
                b.block("\n".join(lines))
            unsaved, saved = _formula_cells(zf, path)
            if unsaved:
                b.notice(
                    f"Sheet '{ws.title}': "
                    + (
                        "1 formula cell has no saved value (the file was not recalculated before saving); it "
                        "reads as empty."
                        if unsaved == 1
                        else f"{unsaved:,} formula cells have no saved value (the file was not recalculated "
                        "before saving); they read as empty."
                    )
                )
            if saved and recalc:
                stale[ws.title] = saved
        if stale:
            b.notice(_recalc_notice(stale))
        title = wb.properties.title if wb.properties is not None else None
    except ParseError:
        raise
    except Exception as e:
        raise ParseError("The Excel file could not be read: the file is damaged.") from e
    finally:
        wb.close()
    return b.build("xlsx", None, metadata_title(title), heading_title=False)


# a merged range in a sheet's XML (after its rows): <mergeCell ref="A2:A4"/>, any namespace prefix
_MERGE = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([A-Z]{1,3})(\d{1,7}):([A-Z]{1,3})(\d{1,7})"')


def _merged_down(zf: zipfile.ZipFile, path: str | None) -> list[tuple[int, int, int]]:
    """(column, first row, last row), 0-based, of each merged range of the sheet at ``path`` that spans several
    rows of one column (openpyxl's read-only sheets do not know their merged cells). The sheet's XML is scanned in pieces,
    never held whole."""
    from openpyxl.utils import column_index_from_string

    if not path:
        return []
    found: set[tuple[bytes, ...]] = set()
    tail = b""
    try:
        with zf.open(path.lstrip("/")) as f:
            while chunk := f.read(1 << 20):
                window = tail + chunk
                found.update(_MERGE.findall(window))
                tail = window[-200:]  # a tag cut between two pieces is whole in the next window
    except KeyError:  # a sheet part the container does not hold: no merges to read
        return []
    return sorted(
        (column_index_from_string(c1.decode()) - 1, int(r1) - 1, int(r2) - 1)
        for c1, r1, c2, r2 in found
        if int(r2) > int(r1) and c1 == c2  # not a banner over several columns and rows: its text once
    )


_FORMULA = re.compile(rb"<(?:\w+:)?f[\s>/]")
# a sheet's cell with content (not <c .../>): its attributes, then what it holds up to its end tag
_CELL = re.compile(rb"<(?:\w+:)?c\b([^>]*?)(?<!/)>(.*?)</(?:\w+:)?c>", re.S)
_CELL_VALUE = re.compile(rb"<(?:\w+:)?v(?:\s[^>]*)?>([^<]*)<")
_CELL_TYPE = re.compile(rb'\st="([^"]*)"')
_MAX_CELL_BYTES = 8 << 20  # a "cell" still open after this much XML is no cell to count


def _formula_cells(zf: zipfile.ZipFile, path: str | None) -> tuple[int, int]:
    """(formula cells without a saved result, formula cells with one) of the sheet at ``path``. The value Excel
    shows is stored beside each formula, but a file written by a program (openpyxl, many exporters) and never
    opened and saved in Excel or LibreOffice has none, so the cell reads as empty (openpyxl's ``data_only``). A
    saved empty text result (``t="str"``) is a result. The XML is scanned in pieces, as by ``_merged_down``, and
    cell by cell only in a sheet that holds a formula at all."""
    if not path:
        return 0, 0
    name = path.lstrip("/")
    try:
        tail = b""
        with zf.open(name) as f:
            while chunk := f.read(1 << 20):
                if _FORMULA.search(tail + chunk):
                    break
                tail = chunk[-16:]
            else:
                return 0, 0
        unsaved = saved = 0
        tail = b""
        with zf.open(name) as f:
            while chunk := f.read(1 << 20):
                window, end = tail + chunk, 0
                for m in _CELL.finditer(window):
                    end = m.end()
                    if not _FORMULA.search(m.group(2)):
                        continue
                    kind = _CELL_TYPE.search(m.group(1))
                    value = _CELL_VALUE.search(m.group(2))
                    text_result = kind is not None and kind.group(1) in (b"str", b"inlineStr")
                    if text_result or (value is not None and value.group(1).strip()):
                        saved += 1
                    else:
                        unsaved += 1
                tail = window[end:]  # a cell cut between two pieces is whole in the next window
                if len(tail) > _MAX_CELL_BYTES:
                    tail = b""
        return unsaved, saved
    except KeyError:  # a sheet part the container does not hold: no formulas to count
        return 0, 0


# the workbook part's entry in [Content_Types].xml (.xlsx, .xlsm, .xltx, .xltm), and its calculation settings
_OVERRIDE = re.compile(rb"<(?:\w+:)?Override\b[^>]*>")
_PART_NAME = re.compile(rb'\sPartName="/?([^"]+)"')
_WORKBOOK_TYPE = re.compile(
    rb'\sContentType="application/vnd\.(?:openxmlformats-officedocument\.spreadsheetml\.(?:sheet|template)'
    rb'|ms-excel\.(?:sheet|template)\.macroEnabled)\.main\+xml"'
)
_CALC_PR = re.compile(rb"<(?:\w+:)?calcPr\b[^>]*>")
_FULL_CALC = re.compile(rb'\sfullCalcOnLoad="(?:1|true)"')


def _recalculates_on_open(zf: zipfile.ZipFile) -> bool:
    """Whether the workbook asks to be recalculated when it is opened (``<calcPr fullCalcOnLoad="1"/>``), as
    programs that write formulas but do not compute them do (xlsxwriter, openpyxl): the values saved with its
    formulas are then placeholders (xlsxwriter saves 0) or out of date. Excel drops the flag when it saves the
    file. openpyxl cannot tell: its ``calculation.fullCalcOnLoad`` is True also where the flag is absent.
    The workbook's XML is scanned in pieces, as the sheets are."""
    name = "xl/workbook.xml"
    try:
        for tag in _OVERRIDE.findall(zf.read("[Content_Types].xml")):
            if _WORKBOOK_TYPE.search(tag) and (part := _PART_NAME.search(tag)):
                name = part.group(1).decode("utf-8", "replace")
                break
        tail = b""
        with zf.open(name) as f:
            while chunk := f.read(1 << 20):
                window = tail + chunk
                if m := _CALC_PR.search(window):
                    return _FULL_CALC.search(m.group(0)) is not None
                tail = window[-1000:]  # a tag cut between two pieces is whole in the next window
    except KeyError:  # no workbook part where the manifest says: openpyxl read it anyway, no flag to read
        pass
    return False


def _recalc_notice(stale: dict[str, int]) -> str:
    """The notice for formula cells with saved values in a workbook that asks to be recalculated when opened
    (``stale``: sheet -> cells), naming as many sheets as fit in a notice."""
    n = sum(stale.values())
    cells = "its 1 formula cell" if n == 1 else f"its {n:,} formula cells"
    read = (
        "reads as the value saved with it, which may be 0 or out of date."
        if n == 1
        else "read as the values saved with them, which may be 0 or out of date."
    )
    names = [f"'{title}'" for title in stale]
    for shown in range(len(names), 0, -1):
        rest = len(names) - shown
        where = ", ".join(names[:shown]) + (f" and {rest} more" if rest else "")
        text = (
            "The workbook asks to be recalculated when opened (it was saved by a program that does not compute "
            f"formulas): {cells} on {'sheet' if len(names) == 1 else 'sheets'} {where} {read}"
        )
        if len(text) <= base.MAX_NOTICE_CHARS:
            break
    return text


def _cell(v, fmt: str | None = None) -> str:
    """A cell's value as the sheet shows it: numbers through ``base.number_text`` (the cell's number format:
    separators, currency, percent, decimals; else 15 significant digits), dates as ISO dates."""
    if v is None:
        return ""
    if isinstance(v, float | int) and not isinstance(v, bool):
        if isinstance(v, int) and (not fmt or fmt == "General" or abs(v) >= 10**15):
            return str(v)  # every digit of a whole number (an id, an account number), as General shows it
        return base.number_text(float(v), fmt)
    if isinstance(v, dt.datetime) and v.time() == dt.time(0):
        return v.date().isoformat()
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    return str(v)
