"""Office 97-2003 files and Outlook messages: OLE2 compound files ([MS-CFB]), read with ``olefile``.

- Word 97-2003 ``.doc`` ([MS-DOC] 2.4.1, "Retrieving Text"): the piece table in the table stream maps the
  text's characters to 8-bit (cp1252) or UTF-16 runs of the WordDocument stream. The main text is read by
  paragraph, headings from the paragraph properties (a built-in heading style, or an outline level), tables
  (cell marks) as "Header: value" rows, field results without their codes, text boxes, then footnotes and
  endnotes; page headers and comments are not.
- Excel 97-2003 ``.xls`` (``xlrd``): a sheet is a heading, its rows "Header: value" lines, as for ``.xlsx``.
- PowerPoint 97-2003 ``.ppt`` ([MS-PPT]): a slide is a page, its title placeholder the heading, then the
  text of its placeholders (the document's slide list), text boxes (the slide's drawing) and speaker notes;
  each slide in its live version (the persist directory of the last edit).
- Outlook ``.msg`` ([MS-OXMSG]): the header block, body (plain text, else HTML), attachments and attached
  messages, as for ``.eml``.
Password-protected files are refused with the reason.
"""

from __future__ import annotations

import bisect
import datetime as dt
import io
import re
import struct
from collections import Counter

from . import base
from .base import (
    ParsedDocument,
    ParseError,
    TextBuilder,
    UnsupportedFileType,
    fill_merged_down,
    metadata_title,
    number_text,
    rows_as_text,
    sheet_rows_as_text,
)
from .mail import Mail, html_text, write_mail

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SAVE_AS = "open it in Office or LibreOffice and save it as {} to ingest it"


def _open(data: bytes):
    import olefile

    try:
        return olefile.OleFileIO(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001  (olefile raises OSError, struct errors, IndexError on damage)
        raise ParseError("The Office 97-2003 / Outlook file could not be read: it is damaged.") from e


def _read(ole, path: str) -> bytes:
    """A stream's bytes; a stream cut short (a truncated file: olefile returns what it finds) is damage."""
    data = ole.openstream(path).read()
    if len(data) < ole.get_size(path):
        raise ParseError("The file could not be read: it is damaged (cut short).")
    return data


def ole_type(data: bytes) -> str:
    """'doc', 'xls' or 'msg'; raises UnsupportedFileType / ParseError naming what the file is otherwise."""
    ole = _open(data)
    try:
        if ole.exists("EncryptedPackage"):
            raise ParseError(
                "The Office document is password-protected; remove the password and upload it again."
            )
        if ole.exists("WordDocument"):
            return "doc"
        if ole.exists("Workbook") or ole.exists("Book"):
            return "xls"
        if ole.exists("__properties_version1.0") or any(
            e[0].startswith("__substg1.0_") for e in ole.listdir()
        ):
            return "msg"
        if ole.exists("PowerPoint Document"):
            return "ppt"
        raise UnsupportedFileType(
            f"The file is an OLE compound file that is not a Word, Excel or Outlook file ({base.SUPPORTED_NAMES})."
        )
    except ParseError:
        raise
    except Exception as e:  # noqa: BLE001  (a directory olefile cannot walk)
        raise ParseError("The Office 97-2003 / Outlook file could not be read: it is damaged.") from e
    finally:
        ole.close()


# --- Word 97-2003 -------------------------------------------------------------------------------------------

# FIB offsets ([MS-DOC] 2.5.1): flags in FibBase; character counts in FibRgLw97; fcClx/lcbClx in FibRgFcLcb97
_FIB_FLAGS, _CCP_TEXT, _FC_CLX = 0x0A, 0x4C, 0x1A2
_F_ENCRYPTED, _F_WHICH_TABLE = 0x0100, 0x0200
_DROP = dict.fromkeys(map(ord, "\x01\x02\x05\x08\x1f\x00"))  # pictures, note/comment marks, soft hyphens
_DROP |= {0x1E: "-", 0x0B: "\n", 0x0C: "\n", 0x0D: "\r"}


def parse_doc(data: bytes) -> ParsedDocument:
    ole = _open(data)
    try:
        wd = _read(ole, "WordDocument")
        if len(wd) < _FC_CLX + 8 or struct.unpack_from("<H", wd, 0)[0] != 0xA5EC:
            raise ParseError(
                f"The Word file is not a Word 97-2003 document (Word 6/95 files are not read); {_SAVE_AS.format('.docx')}."
            )
        flags = struct.unpack_from("<H", wd, _FIB_FLAGS)[0]
        if flags & _F_ENCRYPTED:
            raise ParseError(
                "The Word document is password-protected; remove the password and upload it again."
            )
        table_name = "1Table" if flags & _F_WHICH_TABLE else "0Table"
        if not ole.exists(table_name):
            raise ParseError("The Word file could not be read: it is damaged (no table stream).")
        table = _read(ole, table_name)
        title = _ole_title(ole)
    except OSError as e:
        raise ParseError("The Word file could not be read: it is damaged.") from e
    finally:
        ole.close()
    text, pieces = _doc_text(wd, table)
    # sub-documents follow the main text in character positions: footnotes, headers, (macros), comments,
    # endnotes, text boxes ([MS-DOC] 2.4.1)
    ccp = struct.unpack_from("<8i", wd, _CCP_TEXT)  # text, ftn, hdd, mcr, atn, edn, txbx, hdrtxbx
    main_end = max(ccp[0], 0)
    ftn = text[main_end : main_end + max(ccp[1], 0)]
    edn_start = main_end + sum(max(c, 0) for c in ccp[1:5])
    edn = text[edn_start : edn_start + max(ccp[5], 0)]
    txbx_start = edn_start + max(ccp[5], 0)
    txbx = text[txbx_start : txbx_start + max(ccp[6], 0)]
    b = TextBuilder()
    body = _fields(_heading_marks(wd, table, pieces, text[:main_end]))
    _doc_body(b, body)
    _doc_body(b, _fields(txbx))  # text boxes (their anchors in the body are drawn-object marks)
    b.notes("Footnotes", _notes(_fields(ftn)))
    b.notes("Endnotes", _notes(_fields(edn)))
    if not title and not b.first_heading:  # no metadata title, no heading: a short first paragraph
        first = next((p.strip() for p in body.translate(_DROP).split("\r") if p.strip()), "")
        title = metadata_title(first) if len(first) <= 100 and "\x07" not in first else None
    return b.build("doc", None, title)


def _doc_text(wd: bytes, table: bytes) -> tuple[str, list[tuple[int, int, int]]]:
    """The whole character stream, pieces in order ([MS-DOC] 2.4.1: Clx -> PlcPcd -> Pcd.fc), and the
    pieces as (first character position, byte offset in the WordDocument stream, bytes a character)."""
    fc_clx, lcb_clx = struct.unpack_from("<II", wd, _FC_CLX)
    clx = table[fc_clx : fc_clx + lcb_clx]
    pos = 0
    while pos < len(clx) and clx[pos] == 0x01:  # Prc: property modifiers, skipped
        pos += 3 + struct.unpack_from("<H", clx, pos + 1)[0]
    if pos + 5 > len(clx) or clx[pos] != 0x02:
        raise ParseError("The Word file could not be read: its piece table is damaged.")
    lcb = struct.unpack_from("<I", clx, pos + 1)[0]
    plc = clx[pos + 5 : pos + 5 + lcb]
    n = (len(plc) - 4) // 12
    if n <= 0:
        raise ParseError("The Word file could not be read: its piece table is damaged.")
    cps = struct.unpack_from(f"<{n + 1}I", plc, 0)
    out = []
    pieces = []
    cp = 0
    for i in range(n):
        count = cps[i + 1] - cps[i]
        if count <= 0 or count > base.MAX_TEXT_CHARS:
            continue
        fc = struct.unpack_from("<I", plc, 4 * (n + 1) + 8 * i + 2)[0]
        if fc & 0x40000000:  # compressed: 8-bit characters at fc / 2
            start = (fc & 0x3FFFFFFF) // 2
            out.append(wd[start : start + count].decode("cp1252", "replace"))
            pieces.append((cp, start, 1))
        else:
            out.append(wd[fc : fc + 2 * count].decode("utf-16-le", "replace"))
            pieces.append((cp, fc, 2))
        cp += len(out[-1])
    return "".join(out), pieces


# a private-use character after a paragraph mark carries that paragraph's heading level (1-9) through field
# removal to _doc_body
_MARK = 0xE000
_NO_MARKS = dict.fromkeys(range(_MARK + 1, _MARK + 10))
# FibRgFcLcb97: fcStshf/lcbStshf (the stylesheet), fcPlcfBtePapx/lcbPlcfBtePapx (paragraph property pages)
_FC_STSH, _FC_BTE_PAPX = 0xA2, 0x102
_SPRM_OUTLINE, _SPRM_TABLE_DEF = 0x2640, 0xD608


def _heading_marks(wd: bytes, table: bytes, pieces: list[tuple[int, int, int]], text: str) -> str:
    """``text`` with a level mark after each paragraph mark that ends a heading: a paragraph whose style is a
    built-in heading (sti 1-9, whatever its localized name) or that has an outline level of its own
    ([MS-DOC] 2.4.6.1: character position -> file position -> PAPX run -> style). Unchanged where the
    property tables cannot be read."""
    try:
        runs = _heading_runs(wd, table)
    except (struct.error, IndexError):
        return text
    if not runs or not pieces:
        return text
    starts = [r[0] for r in runs]
    piece_cps = [p[0] for p in pieces]
    out, prev = [], 0
    for m in re.finditer("\r", text):
        cp = m.start()
        first, offset, width = pieces[bisect.bisect_right(piece_cps, cp) - 1]
        fc = offset + (cp - first) * width
        i = bisect.bisect_right(starts, fc) - 1
        if i >= 0 and fc < runs[i][1] and runs[i][2] > 0:
            out += [text[prev : cp + 1], chr(_MARK + runs[i][2])]
            prev = cp + 1
    out.append(text[prev:])
    return "".join(out)


def _heading_runs(wd: bytes, table: bytes) -> list[tuple[int, int, int]]:
    """(first file position, end, heading level or 0) of the paragraph property runs, sorted."""
    fc_stsh, lcb_stsh = struct.unpack_from("<II", wd, _FC_STSH)
    fc_bte, lcb_bte = struct.unpack_from("<II", wd, _FC_BTE_PAPX)
    stis = _style_stis(table[fc_stsh : fc_stsh + lcb_stsh])
    bte = table[fc_bte : fc_bte + lcb_bte]
    n = (len(bte) - 4) // 8
    runs = []
    for k in range(max(n, 0)):
        page_at = (struct.unpack_from("<I", bte, 4 * (n + 1) + 4 * k)[0] & 0x3FFFFF) * 512
        page = wd[page_at : page_at + 512]
        if len(page) < 512:
            continue
        crun = page[511]
        if 4 * (crun + 1) + 13 * crun > 511:
            continue
        fcs = struct.unpack_from(f"<{crun + 1}I", page, 0)
        for i in range(crun):
            at = page[4 * (crun + 1) + 13 * i] * 2
            level = 0
            if at:
                cb = page[at]
                grp = page[at + 2 : at + 2 + 2 * page[at + 1]] if cb == 0 else page[at + 1 : at + 2 * cb]
                if len(grp) >= 2:
                    istd = struct.unpack_from("<H", grp, 0)[0]
                    level = _outline_level(grp[2:])
                    if level is None:
                        level = stis[istd] if istd < len(stis) and 1 <= stis[istd] <= 9 else 0
            runs.append((fcs[i], fcs[i + 1], level))
    runs.sort()
    return runs


def _style_stis(stsh: bytes) -> list[int]:
    """Each style's built-in style identifier (sti; 1-9 are Heading 1-9), by style index."""
    if len(stsh) < 6:
        return []
    cb_stshi, cstd = struct.unpack_from("<HH", stsh, 0)
    pos, out = 2 + cb_stshi, []
    for _ in range(cstd):
        if pos + 2 > len(stsh):
            break
        cb = struct.unpack_from("<H", stsh, pos)[0]
        pos += 2
        out.append(struct.unpack_from("<H", stsh, pos)[0] & 0x0FFF if cb >= 2 and pos + 2 <= len(stsh) else 0)
        pos += cb
    return out


def _outline_level(grpprl: bytes) -> int | None:
    """The paragraph's own outline level from its property modifiers: 1-9, 0 for body text, None if unset."""
    pos = 0
    while pos + 2 <= len(grpprl):
        op = struct.unpack_from("<H", grpprl, pos)[0]
        pos += 2
        if op == _SPRM_OUTLINE and pos < len(grpprl):
            return grpprl[pos] + 1 if grpprl[pos] < 9 else 0
        spra = op >> 13
        if op == _SPRM_TABLE_DEF or (spra == 6 and pos >= len(grpprl)):
            return None  # a table definition's operand is sized differently: stop reading
        pos += 1 + grpprl[pos] if spra == 6 else (1, 1, 2, 4, 2, 2, 0, 3)[spra]
    return None


def _fields(text: str) -> str:
    """Field codes (0x13 code 0x14 result 0x15, nested) replaced by their results."""
    if "\x13" not in text:
        return text
    out = []
    stack: list[bool] = []  # per open field: still in its code part
    for ch in text:
        if ch == "\x13":
            stack.append(True)
        elif ch == "\x14" and stack:
            stack[-1] = False
        elif ch == "\x15" and stack:
            stack.pop()
        elif not any(stack):
            out.append(ch)
    return "".join(out)


def _doc_body(b: TextBuilder, text: str) -> None:
    """Paragraphs (\\r) as blocks, or headings where a level mark follows (``_heading_marks``); runs of
    table cells (\\x07) as rows."""
    text = text.translate(_DROP)
    cells: list[str] = []
    start = 0
    for i, ch in enumerate(text):
        if ch not in "\r\x07":
            continue
        piece = text[start:i].translate(_NO_MARKS)
        start = i + 1
        if ch == "\x07":
            cells.append(piece)
            continue
        if cells:
            _table(b, cells)
            cells = []
        level = ord(text[i + 1]) - _MARK if i + 1 < len(text) and _MARK < ord(text[i + 1]) <= _MARK + 9 else 0
        if level and piece.strip():
            b.heading(level, piece)
        else:
            b.block(piece)
    if cells:
        _table(b, cells)
    b.block(text[start:].translate(_NO_MARKS))


def _table(b: TextBuilder, cells: list[str]) -> None:
    """Cell texts of a table, each row followed by its (empty) row-end mark. An empty cell reads the same as
    the row end, so the column count is the most common run of cells between empty marks."""
    runs, n = [], 0
    for c in cells:
        if c.strip():
            n += 1
        elif n:
            runs.append(n)
            n = 0
    cols = Counter(runs).most_common(1)[0][0] if runs else 1
    rows, i = [], 0
    while i < len(cells):
        rows.append(cells[i : i + cols])
        i += cols
        if i < len(cells) and not cells[i].strip():
            i += 1  # the row-end mark
    b.block("\n".join(rows_as_text(rows)))


def _notes(text: str) -> list[str]:
    return [t for t in (" ".join(p.split()) for p in text.translate(_DROP).split("\r")) if t]


def _ole_title(ole) -> str | None:
    try:
        raw = ole.get_metadata().title
    except Exception:  # noqa: BLE001  (a damaged property set only loses the title)
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("cp1252", "replace")
    return metadata_title(raw.rstrip("\0") if isinstance(raw, str) else None)


# --- Excel 97-2003 ------------------------------------------------------------------------------------------


def parse_xls(data: bytes) -> ParsedDocument:
    """One section per sheet (the sheet name as heading); rows as "Header: value; ..." lines."""
    import xlrd

    try:  # xlrd writes its warnings to a log file, stdout by default: not into the worker's log
        try:  # with the cell formats (percentages); a file whose format records xlrd cannot read opens without
            wb = xlrd.open_workbook(
                file_contents=data, on_demand=True, logfile=_Discard(), formatting_info=True
            )
        except Exception as e:  # noqa: BLE001
            if "encrypt" in str(e).lower():
                raise
            wb = xlrd.open_workbook(file_contents=data, on_demand=True, logfile=_Discard())
    except xlrd.XLRDError as e:
        if "encrypt" in str(e).lower():
            raise ParseError(
                "The Excel workbook is password-protected; remove the password and upload it again."
            ) from e
        raise ParseError(f"The Excel 97-2003 file could not be read: {e}.") from e
    except Exception as e:  # noqa: BLE001  (xlrd raises struct errors and others on damage)
        raise ParseError("The Excel 97-2003 file could not be read: it is damaged.") from e
    b = TextBuilder()
    cells = 0
    try:
        skipped = 0
        for i in range(wb.nsheets):
            try:
                sh = wb.sheet_by_index(i)
            except Exception:  # noqa: BLE001  (xlrd asserts on odd records: that sheet is lost, not the rest)
                skipped += 1
                b.notice(
                    f"Sheet '{wb.sheet_names()[i]}' could not be read (damaged); its content is missing."
                )
                continue
            cells += sh.nrows * sh.ncols
            if cells > base.MAX_SHEET_CELLS:
                raise ParseError(f"The Excel file has more than {base.MAX_SHEET_CELLS:,} cells; split it.")
            rows = [[_xls_cell(c, wb) for c in sh.row(r)] for r in range(sh.nrows)]
            fill_merged_down(rows, _xls_merged_down(sh))
            lines = sheet_rows_as_text(rows)
            if lines:
                b.set_path([])
                b.heading(1, sh.name)
                b.block("\n".join(lines))
            wb.unload_sheet(i)
        if skipped == wb.nsheets:
            raise ParseError("The Excel 97-2003 file could not be read: its sheets are damaged.")
    finally:
        wb.release_resources()
    return b.build("xls", None, None, heading_title=False)


def _xls_merged_down(sh) -> list[tuple[int, int, int]]:
    """(column, first row, last row), 0-based, of each merged range of ``sh`` that spans several rows of one column,
    as ``office._merged_down`` reads them from an .xlsx sheet. xlrd lists a sheet's merged ranges (half-open:
    rows rlo..rhi-1, columns clo..chi-1) only for a workbook opened with its formats; without them, none."""
    return sorted(
        (clo, rlo, rhi - 1)
        for rlo, rhi, clo, chi in getattr(sh, "merged_cells", None) or ()
        if rhi - rlo > 1 and chi - clo == 1  # not a banner over several columns and rows: its text once
    )


class _Discard:
    """A log file that keeps nothing."""

    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def _xls_cell(c, wb) -> str:
    import xlrd

    if c.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
        return ""
    if c.ctype == xlrd.XL_CELL_NUMBER:
        return number_text(float(c.value), _xls_format(c, wb))
    if c.ctype == xlrd.XL_CELL_DATE:
        try:
            d = xlrd.xldate.xldate_as_datetime(c.value, wb.datemode)
        except (ValueError, OverflowError, xlrd.xldate.XLDateError):
            return str(c.value)
        return d.date().isoformat() if d.time() == dt.time(0) else d.isoformat()
    if c.ctype == xlrd.XL_CELL_BOOLEAN:
        return "TRUE" if c.value else "FALSE"
    return str(c.value)


def _xls_format(c, wb) -> str | None:
    """The number format of a cell ("0.0%"), where the workbook was opened with its formats."""
    try:
        return wb.format_map[wb.xf_list[c.xf_index].format_key].format_str
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


# --- Outlook messages -----------------------------------------------------------------------------------------

# property ids ([MS-OXPROPS]); string streams are __substg1.0_<id><type>, 001F UTF-16LE, 001E 8-bit
_SUBJECT, _SENDER_NAME, _SENDER_EMAIL, _SENDER_SMTP = 0x0037, 0x0C1A, 0x0C1F, 0x5D01
_DISPLAY_TO, _DISPLAY_CC, _BODY, _HTML, _CODEPAGE = 0x0E04, 0x0E03, 0x1000, 0x1013, 0x3FFD
_SUBMIT_TIME, _DELIVERY_TIME = 0x0039, 0x0E06
_ATTACH_LONG_NAME, _ATTACH_NAME, _ATTACH_DATA = 0x3707, 0x3704, 0x3701
MAX_ATTACHMENTS = 500
_SMTP = re.compile(r"[^@\s/<>]+@[^@\s/<>]+\.[^@\s/<>]+")


def parse_msg(data: bytes) -> ParsedDocument:
    ole = _open(data)
    try:
        mail, subject = _msg(ole, "", depth=0)
    except OSError as e:
        raise ParseError("The Outlook message could not be read: it is damaged.") from e
    finally:
        ole.close()
    b = TextBuilder()
    write_mail(b, mail)
    return b.build("msg", None, metadata_title(subject))


def _msg(ole, root: str, depth: int) -> tuple[Mail, str]:
    props = _props(ole, root, 32 if not root else 24)
    codepage = props.get(_CODEPAGE)
    codepage = f"cp{codepage}" if isinstance(codepage, int) and codepage not in (1200, 65001) else "utf-8"

    def text(pid: int, where: str = root) -> str:
        for kind, enc in (("001F", "utf-16-le"), ("001E", codepage)):
            path = f"{where}__substg1.0_{pid:04X}{kind}"
            if ole.exists(path):
                raw = _read(ole, path)
                try:
                    return raw.decode(enc, "replace").rstrip("\0")
                except LookupError:
                    return raw.decode("cp1252", "replace").rstrip("\0")
        return ""

    def binary(pid: int, where: str = root) -> bytes:
        path = f"{where}__substg1.0_{pid:04X}0102"
        return _read(ole, path) if ole.exists(path) else b""

    subject = text(_SUBJECT)
    sender = text(_SENDER_NAME)
    address = next((a for a in (text(_SENDER_SMTP), text(_SENDER_EMAIL)) if _SMTP.fullmatch(a.strip())), "")
    if address and address not in sender:  # not an Exchange X.500 path ("/O=ORG/OU=.../CN=NAME")
        sender = f"{sender} <{address}>" if sender else address
    when = props.get(_SUBMIT_TIME) or props.get(_DELIVERY_TIME)
    headers = [("From", sender), ("To", text(_DISPLAY_TO)), ("Cc", text(_DISPLAY_CC))]
    if isinstance(when, dt.datetime):
        headers.append(("Date", when.strftime("%a, %d %b %Y %H:%M:%S +0000")))
    headers.append(("Subject", subject))
    mail = Mail(headers)
    mail.body = text(_BODY)
    if not mail.body.strip():
        html = binary(_HTML) or text(_HTML).encode("utf-8")
        mail.body = html_text(html) if html else ""
    prefix = [p for p in root.split("/") if p]
    below = {e[len(prefix)] for e in ole.listdir(streams=True, storages=True)
             if len(e) > len(prefix) and e[: len(prefix)] == prefix}  # fmt: skip
    attachments = sorted(n for n in below if n.startswith("__attach_version1.0_#"))
    if len(attachments) > MAX_ATTACHMENTS:
        raise ParseError(f"The Outlook message has more than {MAX_ATTACHMENTS} attachments; it was not read.")
    for name in attachments:
        where = f"{root}{name}/"
        inner = f"{where}__substg1.0_{_ATTACH_DATA:04X}000D/"
        if ole.exists(inner.rstrip("/")):  # an attached Outlook item (a forward)
            if depth < 3:
                mail.forwarded.append(_msg(ole, inner, depth + 1)[0])
            continue
        label = text(_ATTACH_LONG_NAME, where) or text(_ATTACH_NAME, where) or "attachment"
        mail.names.append(label)
        mail.files.append((label, binary(_ATTACH_DATA, where)))
    return mail, subject


def _props(ole, root: str, header: int) -> dict[int, object]:
    """Fixed-size properties of the __properties_version1.0 stream: 32-bit integers and times."""
    path = f"{root}__properties_version1.0"
    if not ole.exists(path):
        return {}
    raw = _read(ole, path)
    out: dict[int, object] = {}
    for off in range(header, len(raw) - 15, 16):
        tag, _flags, value = struct.unpack_from("<IIQ", raw, off)
        pid, ptype = tag >> 16, tag & 0xFFFF
        if ptype == 0x0003:
            out[pid] = value & 0xFFFFFFFF
        elif ptype == 0x0040 and value:
            try:
                out[pid] = dt.datetime(1601, 1, 1) + dt.timedelta(microseconds=value // 10)
            except OverflowError:
                pass
    return out


# --- PowerPoint 97-2003 ---------------------------------------------------------------------------------------

# record types ([MS-PPT] 2.13.24)
_DOCUMENT, _SLIDE, _SLIDE_ATOM, _NOTES, _SLIDE_LIST, _SLIDE_PERSIST = (
    0x03E8,
    0x03EE,
    0x03EF,
    0x03F0,
    0x0FF0,
    0x03F3,
)
_TEXT_HEADER, _TEXT_CHARS, _TEXT_BYTES, _USER_EDIT, _PERSIST_DIR = 0x0F9F, 0x0FA0, 0x0FA8, 0x0FF5, 0x1772
_TITLE_TYPES = (0, 6)  # TextHeaderAtom: title, centred title


def _records(buf: bytes, start: int, end: int):
    """(type, instance, data start, data end, is container) of the records in buf[start:end]."""
    pos = start
    while pos + 8 <= end:
        ver_inst, rtype, length = struct.unpack_from("<HHI", buf, pos)
        data = pos + 8
        stop = min(data + length, end)
        yield rtype, ver_inst >> 4, data, stop, (ver_inst & 0xF) == 0xF
        pos = data + length


def _texts(buf: bytes, start: int, end: int, depth: int = 0) -> list[tuple[int, str]]:
    """(text type, text) of the text atoms under a record, in order; placeholder references skipped (their text
    is in the slide list)."""
    out: list[tuple[int, str]] = []
    kind = 4  # "other" until a TextHeaderAtom says
    for rtype, _inst, a, b, container in _records(buf, start, end):
        if container and depth < 32:
            out += _texts(buf, a, b, depth + 1)
        elif rtype == _TEXT_HEADER and b - a >= 4:
            kind = struct.unpack_from("<I", buf, a)[0]
        elif rtype == _TEXT_CHARS:
            out.append((kind, buf[a:b].decode("utf-16-le", "replace")))
        elif rtype == _TEXT_BYTES:
            out.append((kind, buf[a:b].decode("latin-1")))
    return out


def _persist_offsets(ole, doc: bytes) -> tuple[dict[int, int], int | None]:
    """persist id -> stream offset of the live objects (the newest edit's directory first, older edits fill in),
    and the document container's persist id; ({}, None) when the file has no readable edit chain."""
    if not ole.exists("Current User"):
        return {}, None
    cur = _read(ole, "Current User")
    if len(cur) < 20:
        return {}, None
    edit = struct.unpack_from("<I", cur, 16)[0]
    offsets: dict[int, int] = {}
    doc_ref = None
    seen = set()
    while edit not in seen and edit + 36 <= len(doc) and len(seen) < 1000:
        seen.add(edit)
        if struct.unpack_from("<H", doc, edit + 2)[0] != _USER_EDIT:
            break
        last, pdir, ref = struct.unpack_from("<III", doc, edit + 16)
        doc_ref = ref if doc_ref is None else doc_ref
        if pdir + 8 <= len(doc) and struct.unpack_from("<H", doc, pdir + 2)[0] == _PERSIST_DIR:
            end = min(pdir + 8 + struct.unpack_from("<I", doc, pdir + 4)[0], len(doc))
            pos = pdir + 8
            while pos + 4 <= end:
                head = struct.unpack_from("<I", doc, pos)[0]
                first, count = head & 0xFFFFF, head >> 20
                for k in range(count):
                    if pos + 8 + 4 * k <= end:
                        offsets.setdefault(first + k, struct.unpack_from("<I", doc, pos + 4 + 4 * k)[0])
                pos += 4 + 4 * count
        if last == 0:
            break
        edit = last
    return offsets, doc_ref


def _slide_list(doc: bytes, top: tuple[int, int], instance: int) -> dict[int, list[tuple[int, str]]]:
    """A slide list of the document (0: slides, 2: notes): persist id -> its placeholders' texts, in order."""
    out: dict[int, list[tuple[int, str]]] = {}
    for t, inst, a, b, _c in _records(doc, *top):
        if t != _SLIDE_LIST or inst != instance:
            continue
        current: list[tuple[int, str]] | None = None
        kind = 4
        for rt, _ri, ra, rb, _rc in _records(doc, a, b):
            if rt == _SLIDE_PERSIST and rb - ra >= 4:
                current = out.setdefault(struct.unpack_from("<I", doc, ra)[0], [])
            elif rt == _TEXT_HEADER and rb - ra >= 4:
                kind = struct.unpack_from("<I", doc, ra)[0]
            elif current is not None and rt in (_TEXT_CHARS, _TEXT_BYTES):
                current.append(
                    (kind, doc[ra:rb].decode("utf-16-le" if rt == _TEXT_CHARS else "latin-1", "replace"))
                )
    return out


def parse_ppt(data: bytes) -> ParsedDocument:
    """One section per slide (page = slide number, cited as a slide), its title the heading, then its other text and its speaker
    notes. Slides come in the order of the document's slide list, each in its live version (the persist
    directory of the last edit, older edits filling in); a file without a readable edit chain is read in
    stream order (slide containers, then the first document container's slide list), without notes."""
    ole = _open(data)
    try:
        if ole.exists("EncryptedSummary"):
            raise ParseError(
                "The PowerPoint file is password-protected; remove the password and upload it again."
            )
        doc = _read(ole, "PowerPoint Document")
        offsets, doc_ref = _persist_offsets(ole, doc)
        title = _ole_title(ole)
    except OSError as e:
        raise ParseError("The PowerPoint file could not be read: it is damaged.") from e
    finally:
        ole.close()

    def record(offset: int | None, rtype: int) -> tuple[int, int] | None:
        if offset is None or offset + 8 > len(doc) or struct.unpack_from("<H", doc, offset + 2)[0] != rtype:
            return None
        return offset + 8, min(offset + 8 + struct.unpack_from("<I", doc, offset + 4)[0], len(doc))

    top = record(offsets.get(doc_ref), _DOCUMENT) if doc_ref is not None else None
    stream_order = top is None
    if top is None:
        top = next(((a, b) for t, _i, a, b, _c in _records(doc, 0, len(doc)) if t == _DOCUMENT), None)
    if top is None:
        raise ParseError("The PowerPoint file could not be read: it has no document record.")
    listed = _slide_list(doc, top, 0)
    notes_listed = _slide_list(doc, top, 2)
    if stream_order:
        found = [(a, b) for t, _i, a, b, _c in _records(doc, 0, len(doc)) if t == _SLIDE]
        placeholders = list(listed.values())
        count = max(len(found), len(placeholders))
        slides = [(placeholders[i] if i < len(placeholders) else [], found[i] if i < len(found) else None, None)
                  for i in range(count)]  # fmt: skip
    else:
        slides = [(texts, record(offsets.get(ref), _SLIDE), ref) for ref, texts in listed.items()]
    b = TextBuilder(page_kind="slide")
    first_title = None
    for n, (placeholders, body, ref) in enumerate(slides, start=1):
        texts = list(placeholders) + (_texts(doc, *body) if body else [])
        notes: list[tuple[int, str]] = []
        atom = (
            next(((a, e) for t, _i, a, e, _c in _records(doc, *body) if t == _SLIDE_ATOM), None)
            if body
            else None
        )
        if ref is not None and atom and atom[1] - atom[0] >= 20:
            notes_ref = struct.unpack_from("<I", doc, atom[0] + 16)[0]
            box = record(offsets.get(notes_ref), _NOTES)
            notes = notes_listed.get(notes_ref, []) + (_texts(doc, *box) if box else [])
        heading = " ".join(" ".join(t.split()) for k, t in texts if k in _TITLE_TYPES and t.strip())
        b.set_path([], page=n)
        b.heading(1, heading)
        first_title = first_title or heading or None
        for k, t in texts + notes:
            if k not in _TITLE_TYPES:
                b.block(t.replace("\r", "\n").replace("\x0b", "\n"))
    return b.build("ppt", len(slides), title or metadata_title(first_title))
