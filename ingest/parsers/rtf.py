"""Rich Text Format (.rtf: WordPad, older Word exports, legal and medical systems).

Read as RTF 1.9 describes it, group by group: the text of the body with its paragraphs, line breaks and
tabs; headings from a paragraph's outline level or a heading style of the stylesheet; tables (``\\intbl``
paragraphs, ``\\cell``, ``\\row``) as "Header: value" rows; footnotes at the end; the title from the
``\\info`` group. Bytes written as ``\\'hh`` (or raw) decode in the code page of their font's character set,
else of ``\\ansicpg``, so double-byte Chinese, Japanese and Korean text reads; ``\\uN`` characters replace
their fallback. Not text: font, colour, style and list tables, pictures and objects (their hex or
``\\bin`` data), field instructions (a hyperlink's result is read), page headers and footers, comments,
hidden and deleted text.
"""

from __future__ import annotations

import re

from .base import ParsedDocument, ParseError, TextBuilder, metadata_title, rows_as_text

# a control word and its parameter (with the one space that delimits it), a hex byte, a control symbol, a
# group brace, a run of text
_TOKEN = re.compile(
    rb"\\([a-zA-Z]{1,32})(-?\d{1,10})? ?|\\'([0-9a-fA-F]{2})|\\([^a-zA-Z])|([{}])|([^\\{}\r\n]+)|[\r\n]+"
)
# groups whose text is not the document's
_SKIP = frozenset(
    b"colortbl pict object objdata header headerl headerr headerf footer footerl footerr footerf fldinst "
    b"annotation atnid atnauthor atnref atndate atnparent nonshppict shp shpinst xmlnstbl listtable "
    b"listoverridetable rsidtbl revtbl generator themedata colorschememapping datastore latentstyles "
    b"pgdsctbl template docvar bkmkstart bkmkend txe xe tc mmath nonesttables".split()
)
# control words that are characters
_CHARS = {
    b"par": "\n",
    b"sect": "\n",
    b"page": "\n",
    b"line": "\v",  # a line break inside the paragraph (kept apart from \par until the paragraph ends)
    b"tab": "\t",
    b"emdash": "\u2014",
    b"endash": "\u2013",
    b"emspace": " ",
    b"enspace": " ",
    b"qmspace": " ",
    b"bullet": "\u2022",
    b"lquote": "\u2018",
    b"rquote": "\u2019",
    b"ldblquote": "\u201c",
    b"rdblquote": "\u201d",
}
_SYMBOLS = {
    b"~": "\u00a0",
    b"_": "\u2011",
    b"-": "",
    b"{": "{",
    b"}": "}",
    b"\\": "\\",
    b"\n": "\n",
    b"\r": "\n",
}
# \fcharsetN -> code page
_CHARSETS = {77: "mac_roman", 128: "cp932", 129: "cp949", 130: "johab", 134: "gbk", 136: "big5", 161: "cp1253",
             162: "cp1254", 163: "cp1258", 177: "cp1255", 178: "cp1256", 186: "cp1257", 204: "cp1251",
             222: "cp874", 238: "cp1250"}  # fmt: skip
_HEADING_STYLE = re.compile(
    r"(?:heading|berschrift|titre|t[ií]tulo|titolo|kop|rubrik|标题|見出し|제목)\s*(\d)", re.I
)
MAX_DEPTH = 10_000


class _Group:
    __slots__ = ("dest", "font", "uc", "hidden")

    def __init__(self, dest: str, font: int | None, uc: int, hidden: bool) -> None:
        self.dest, self.font, self.uc, self.hidden = dest, font, uc, hidden

    def copy(self) -> _Group:
        return _Group(self.dest, self.font, self.uc, self.hidden)


def parse_rtf(data: bytes) -> ParsedDocument:
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"{\\rtf"):
        raise ParseError("The RTF file could not be read: it does not start with {\\rtf.")
    return _Reader().read(head)


class _Reader:
    def __init__(self) -> None:
        self.b = TextBuilder()
        self.codepage = "cp1252"
        self.default_font: int | None = None
        self.fonts: dict[int, str] = {}  # font number -> code page
        self.styles: dict[int, int] | None = None  # paragraph style -> heading level, once the body starts
        self.style_names: dict[int | None, list[str]] = {}
        self.style_levels: dict[int, int] = {}
        self.title: list[str] = []
        self.footnotes: list[str] = []
        self.note: list[str] = []
        self.pending = bytearray()  # text bytes not yet decoded (a double-byte character may span tokens)
        self.para: list[str] = []
        self.level: int | None = None  # the paragraph's heading level
        self.intbl = False
        self.cell: list[str] = []
        self.row: list[str] = []
        self.rows: list[list[str]] = []
        self.skip = 0  # fallback characters of a \uN still to skip
        self.cur_font: int | None = None  # in the font table: the entry being read
        self.cur_style: int | None = None  # in the stylesheet: the entry being read

    # text ------------------------------------------------------------------------------------------------
    def _target(self, g: _Group) -> list[str] | None:
        if g.hidden:
            return None
        if g.dest == "stylesheet":
            return self.style_names.setdefault(self.cur_style, [])
        return {"body": self.para, "footnote": self.note, "title": self.title}.get(g.dest)

    def _flush(self, g: _Group) -> None:
        if not self.pending:
            return
        raw, self.pending = bytes(self.pending), bytearray()
        out = self._target(g)
        if out is None:
            return
        codepage = self.fonts.get(g.font if g.font is not None else self.default_font, self.codepage)
        try:
            out.append(raw.decode(codepage, "replace"))
        except LookupError:
            out.append(raw.decode("cp1252", "replace"))

    def _text(self, raw: bytes) -> None:
        if self.skip:  # a \uN's fallback: bytes or characters count alike
            n = min(self.skip, len(raw))
            self.skip -= n
            raw = raw[n:]
        self.pending += raw

    def _char(self, g: _Group, ch: str) -> None:
        self._flush(g)
        out = self._target(g)
        if out is None:
            return
        if ch == "\n" and g.dest == "body":
            self._end_paragraph()
        elif ch in "\n\v" and g.dest != "body":
            out.append(" ")
        else:
            out.append(ch)

    # paragraphs and tables ---------------------------------------------------------------------------
    def _take_para(self) -> str:
        text = "".join(self.para).replace("\v", "\n")
        self.para.clear()
        return text

    def _end_paragraph(self) -> None:
        text = self._take_para()
        if self.intbl:
            self.cell.append(text)
            return
        self._end_table()
        if self.level is not None and text.strip():
            self.b.heading(self.level, text)
        else:
            self.b.block(text)

    def _end_cell(self) -> None:
        self.cell.append(self._take_para())
        self.row.append("\n".join(t for t in self.cell if t.strip()))
        self.cell.clear()

    def _end_row(self) -> None:
        if self.para or self.cell:
            self._end_cell()
        self.rows.append(self.row)
        self.row = []

    def _end_table(self) -> None:
        if self.row:
            self._end_row()
        if self.rows:
            self.b.block("\n".join(rows_as_text(self.rows)))
            self.rows = []

    # the group walk --------------------------------------------------------------------------------------
    def read(self, data: bytes) -> ParsedDocument:
        stack: list[_Group] = []
        g = _Group("body", None, 1, False)
        note_depth = -1
        pos, end = 0, len(data)
        while pos < end:
            m = _TOKEN.match(data, pos)
            if m is None:  # a lone backslash at the very end
                break
            pos = m.end()
            word, param, hexbyte, symbol, brace, text = m.groups()
            if text is not None:
                if g.dest != "skip":
                    self._text(text)
            elif hexbyte is not None:
                if g.dest != "skip":
                    self._text(bytes([int(hexbyte, 16)]))
            elif brace == b"{":
                self._flush(g)
                if len(stack) >= MAX_DEPTH:
                    raise ParseError(
                        f"The RTF file nests groups more than {MAX_DEPTH:,} deep; it was not read."
                    )
                stack.append(g)
                g = g.copy()
                if g.dest == "stylesheet":  # a style's entry: its name is its text
                    self.cur_style = None
            elif brace == b"}":
                self._flush(g)
                if g.dest == "footnote" and len(stack) == note_depth:
                    self.footnotes.append(" ".join("".join(self.note).split()))
                    self.note.clear()
                    note_depth = -1
                if not stack:
                    break  # the document's closing brace
                g = stack.pop()
            elif symbol is not None:
                if symbol == b"*":  # an ignorable destination (in the stylesheet: a character style)
                    g.dest = "skip"
                elif symbol in _SYMBOLS and g.dest != "skip":
                    self._char(g, _SYMBOLS[symbol])
            else:
                if word == b"bin" and param:  # raw binary data follows
                    pos += max(int(param), 0)
                    continue
                if g.dest == "skip":
                    if word == b"nestrow" and self.intbl:  # a nested row ends in {\*\nesttableprops ...}
                        self._end_row()
                    continue
                self._flush(g)
                n = int(param) if param is not None else None
                if self._control(g, word, n):
                    note_depth = len(stack)
        self._flush(g)
        if self.para:
            self._end_paragraph()
        self._end_table()
        self.b.notes("Footnotes", [t for t in self.footnotes if t])
        title = metadata_title("".join(self.title))
        return self.b.build("rtf", None, title)

    def _control(self, g: _Group, word: bytes, n: int | None) -> bool:
        """Apply one control word; True when it opens a footnote (its group is the current one)."""
        if word in _CHARS:
            self._char(g, _CHARS[word])
        elif word == b"u" and n is not None:
            out = self._target(g)
            if out is not None:
                out.append(chr(n + 65536 if n < 0 else n) if -32768 <= n < 65536 else "\ufffd")
            self.skip = g.uc
        elif word == b"uc" and n is not None:
            g.uc = max(n, 0)
        elif word in _SKIP:
            g.dest = "skip"
        elif word == b"fonttbl":
            g.dest = "fonttbl"
        elif word == b"stylesheet":
            g.dest = "stylesheet"
        elif word == b"info":
            g.dest = "info"
        elif word == b"title" and g.dest == "info":
            g.dest = "title"
        elif g.dest == "info":
            g.dest = "skip" if word in (b"author", b"operator", b"subject", b"keywords", b"comment",
                                        b"doccomm", b"company", b"manager", b"category") else g.dest  # fmt: skip
        elif word == b"footnote" and g.dest == "body":
            g.dest = "footnote"
            return True
        elif word == b"ansicpg" and n:
            self.codepage = f"cp{n}"
        elif word == b"deff" and n is not None:
            self.default_font = n
        elif word == b"f" and n is not None:
            if g.dest == "fonttbl":
                self.cur_font = n
            else:
                g.font = n
        elif word == b"fcharset" and n is not None and g.dest == "fonttbl" and self.cur_font is not None:
            if n in _CHARSETS:
                self.fonts[self.cur_font] = _CHARSETS[n]
        elif word == b"s" and n is not None:
            if g.dest == "stylesheet":
                self.cur_style = n
            elif g.dest == "body":
                if self.styles is None:  # the stylesheet precedes the body
                    self.styles = _heading_levels(self.style_names, self.style_levels)
                self.level = self.styles.get(n)
        elif word == b"outlinelevel" and n is not None and 0 <= n < 9:
            if g.dest == "stylesheet" and self.cur_style is not None:
                self.style_levels[self.cur_style] = n + 1
            elif g.dest == "body":
                self.level = n + 1
        elif word == b"pard" and g.dest == "body":
            self.level = None
            self.intbl = False
        elif word == b"intbl":
            self.intbl = True
        elif word in (b"cell", b"nestcell") and g.dest == "body":
            self._end_cell()
        elif word in (b"row", b"nestrow") and g.dest == "body":
            self._end_row()
        elif word in (b"v", b"deleted"):  # hidden text, a tracked deletion
            g.hidden = n != 0
        elif word == b"plain":
            g.hidden = False
            g.font = None
        elif word in (b"listtext", b"pntext"):
            g.dest = "skip"  # a list item's bullet or number as drawn (often a symbol font's glyph)
        return False


def _heading_levels(names: dict[int | None, list[str]], levels: dict[int, int]) -> dict[int, int]:
    """Paragraph style -> heading level: its outline level, else "heading N" in its name (several languages)."""
    out = dict(levels)
    for s, parts in names.items():
        if s is None or s in out:
            continue
        m = _HEADING_STYLE.search("".join(parts).split(";")[0])
        if m and 1 <= int(m.group(1)) <= 9:
            out[s] = int(m.group(1))
    return out
