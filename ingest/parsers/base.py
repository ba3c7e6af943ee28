"""Types shared by the parsers, their limits, and the builder that lays out text and sections."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal


def xml_parser():
    """lxml's parser for a document's own XML: no entity expansion, no network, no huge trees (a hostile file
    must not expand or fetch anything)."""
    from lxml import etree

    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True)


SUPPORTED_TYPES = (
    "pdf",
    "docx",
    "doc",
    "odt",
    "ods",
    "odp",
    "rtf",
    "epub",
    "pptx",
    "ppt",
    "xlsx",
    "xls",
    "html",
    "mhtml",
    "xml",
    "markdown",
    "rst",
    "csv",
    "email",
    "msg",
    "man",
    "text",
)
# what a refusal names as readable
SUPPORTED_NAMES = (
    "supported: PDF, Word .docx/.doc, PowerPoint .pptx/.ppt, Excel .xlsx/.xls, OpenDocument .odt/.ods/.odp, RTF, EPUB, "
    "HTML, MHTML, XML (DocBook), Markdown, reStructuredText, CSV, e-mail .eml/.msg, manual pages (troff), plain text; and ZIP or tar archives of these, or one of them "
    "compressed by gzip, bzip2 or xz"
)

# Bounds that keep a hostile file from exhausting the worker (sizes are of decompressed content).
MAX_ZIP_MEMBERS = 10_000
MAX_ZIP_UNCOMPRESSED = 256 * 1024 * 1024
MAX_ZIP_RATIO = 200  # uncompressed / compressed for one member; real Office XML stays under ~30
MAX_PDF_PAGES = 10_000
MAX_TEXT_CHARS = 50_000_000
MAX_SHEET_CELLS = 5_000_000


class ParseError(Exception):
    """A file that cannot be turned into text; `reason` is a sentence a person can read. `retryable`: whether
    reading the same bytes again may succeed (it ran out of memory); most reasons are the file's own (damaged,
    cut short, encrypted, of an unsupported type), and only another file helps."""

    def __init__(self, reason: str, retryable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class UnsupportedFileType(ParseError):
    """The content is not one of SUPPORTED_TYPES (the API answers 415)."""


class PlainArchive(UnsupportedFileType):
    """A ZIP archive that is not an Office, OpenDocument or EPUB document: not a document itself, but uploads
    unpack it into its files (``app.uploads.unpack``)."""


# What a section's page number counts (how a citation names it: "p. 3", "slide 3"). A passage stored before the
# kind was recorded has none, and reads as a page.
PAGE_KINDS = ("page", "slide")


@dataclass
class Section:
    """One block of text with its location: text[start:end], under heading_path, on page (a page_kind: a printed
    page, or a presentation's slide; None where page is None)."""

    start: int
    end: int
    heading_path: list[str]
    page: int | None
    page_kind: str | None = None


@dataclass
class ParsedDocument:
    """The plain text of a document and the sections that cover it in order; ``notices`` say, in a sentence each,
    what of the file could not be read (scanned pages, formulas without values), so a document that is only partly
    searchable does not look whole."""

    text: str
    sections: list[Section]
    detected_type: str
    pages: int | None
    title: str | None
    notices: list[str] = field(default_factory=list)


# Notices are read beside a document's status: a few short sentences, not a log.
MAX_NOTICES = 8
MAX_NOTICE_CHARS = 300


def cap_notices(notices: list[str]) -> list[str]:
    """``notices`` as stored and shown: each on one line and at most MAX_NOTICE_CHARS (cut at a word with "…"),
    repeats dropped, at most MAX_NOTICES (the last saying how many more there were)."""
    out: list[str] = []
    for n in notices:
        n = short_title(clean_inline(n), MAX_NOTICE_CHARS)
        if n and n not in out:
            out.append(n)
    if len(out) > MAX_NOTICES:
        more = len(out) - MAX_NOTICES + 1
        out = out[: MAX_NOTICES - 1] + [f"{more} more notices are not shown."]
    return out


def page_ranges(pages: list[int], limit: int = 12) -> str:
    """1-based page numbers as a reader writes them: "3, 7-9" (at most ``limit`` runs, then "and N more")."""
    runs: list[list[int]] = []
    for p in sorted(set(pages)):
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    rest = sum(b - a + 1 for a, b in runs[limit:])
    return ", ".join(parts) + (f" and {rest} more" if rest else "")


_WS = re.compile(r"[ \t\u00a0\u3000]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Typographic ligatures (PDF text of typeset documents: "Auﬂage", "misﬁts") become their letters, so the words
# match what people type, for BM25 and for the embedding model's vocabulary; soft hyphens (optional break
# points in Word, HTML's &shy;) and zero-width spaces / word joiners / stray BOMs are invisible and would split
# a word in two for search. (Zero-width joiners and non-joiners stay: they shape Persian, Indic scripts, emoji.)
_INVISIBLE = str.maketrans(
    {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st",
     "\u00ad": None, "\u200b": None, "\u2060": None, "\ufeff": None,
     # C1 control characters (U+0080-U+009F) are never meant in text: they are Windows-1252 bytes read as
     # Latin-1 (a PDF's or an old HTML page's curly quotes, dashes, euro sign: "\x93quoted\x94" is “quoted”);
     # the five bytes cp1252 leaves undefined are dropped
     **{chr(b): bytes([b]).decode("cp1252", errors="ignore") or None for b in range(0x80, 0xA0)}}
)  # fmt: skip


def clean_inline(s: str) -> str:
    """One line of text: control characters, soft hyphens and zero-width spaces dropped, ligatures spelled out,
    runs of spaces collapsed, ends stripped."""
    return _WS.sub(
        " ", _CONTROL.sub("", s.replace("\r", " ").replace("\n", " ").translate(_INVISIBLE))
    ).strip()


_WEB_URL = re.compile(r"(?i)(https?|ftp)://[^\s<>]+$")
_URL_FORM = re.compile(r"(?i)^(https?://|ftp://|mailto:)?(www\.)?")


def link_target(href: str | None, text: str) -> str | None:
    """What a link adds to its text in the indexed text, shown as "text (target)": a web address, or the address
    of a mailto: link, so that "where do I download the installer?" finds the address; None when the text
    already says it (an autolink, "example.com" for https://example.com/), for a link without text, and for
    one that means nothing outside its site or page (a relative path, an #anchor, javascript:)."""
    href = (href or "").strip()
    if not text.strip():
        return None  # a link with nothing to read (an icon): nothing to follow the address
    if href[:7].lower() == "mailto:":
        address = href[7:].split("?", 1)[0]
        return address if address and address.lower() not in text.lower() else None
    if not _WEB_URL.match(href):
        return None

    def bare(s: str) -> str:
        return _URL_FORM.sub("", s.strip()).rstrip("/").lower()

    return None if bare(text) == bare(href) else href


# Titles that authoring tools write into a file's metadata when nobody typed one: reportlab's "untitled",
# Word's "Document1", PowerPoint's "PowerPoint Presentation", printing to PDF's "Microsoft Word - x.docx", a
# bare file name. A citation titled "untitled" helps no one; the document's own heading or its file name
# (what callers fall back to for None) says more.
_PLACEHOLDER_TITLE = re.compile(
    r"(untitled|untitled[- ]?\d+|untitled document|no title|title|none|null|n/a|anonymous|\(anonymous\)"
    r"|document\d*|new document|presentation\d*|powerpoint presentation|slide ?\d*|book\d*|workbook\d*"
    r"|sheet\d*|[^/\\]{1,200}\.(docx?|pptx?|xlsx?|pdf|rtf|txt|odt|odp|ods|tex|dvi|ps|html?|indd|qxd|pages|key))",
    re.IGNORECASE,
)
_TOOL_PREFIX = re.compile(r"^microsoft (office )?(word|powerpoint|excel) - ", re.IGNORECASE)


def metadata_title(raw: object) -> str | None:
    """A title from a file's metadata, or None where it is missing or a placeholder (``_PLACEHOLDER_TITLE``)."""
    if not isinstance(raw, str):
        return None
    title = _TOOL_PREFIX.sub("", clean_inline(raw), count=1)
    if not title or _PLACEHOLDER_TITLE.fullmatch(title):
        return None
    return title


# An inline file (RFC 2397) written out as text: a web page's or a Markdown file's image as base64, a pasted
# image in an e-mail's text. Megabytes of base64 to index, and in chunks that say nothing; a short one (an
# example in documentation) stays.
_DATA_URI = re.compile(r"data:[\w.+-]+/[\w.+-]+(?:;[\w.+-]+=[^;,\s]*)*;base64,[A-Za-z0-9+/=_-]{100,}")

# Terminal colours and cursor moves (ANSI / ECMA-48 CSI sequences) in a log or a CI run's output: only the escape
# byte was dropped, so "\x1b[31mERROR\x1b[0m" read as "[31mERROR[0m".
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def clean_block(s: str) -> str:
    """A block of text: NFC, newlines normalized, control characters, soft hyphens and zero-width spaces dropped,
    ligatures spelled out (``_INVISIBLE``), line ends stripped, base64 data: URIs (``_DATA_URI``) and terminal
    colour codes (``_ANSI``) dropped."""
    if "base64," in s:
        s = _DATA_URI.sub("", s)
    if "\x1b" in s:
        s = _ANSI.sub("", s)
    s = unicodedata.normalize("NFC", s.replace("\r\n", "\n").replace("\r", "\n").translate(_INVISIBLE))
    s = _CONTROL.sub("", s)
    lines = [line.rstrip() for line in s.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n").strip()


MAX_TITLE_CHARS = 150
_TITLE_TAIL = " \t,;:.-\u2013\u2014("


def short_title(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    """A title or heading short enough to name a passage: cut at a word boundary near ``limit`` characters with an
    ellipsis. A Setext underline below a whole paragraph (bc's README) made a 773-character heading, which every
    passage under it repeated as its heading path and a citation showed as its title."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    head = text[: cut if cut >= limit * 2 // 3 else limit]  # one very long word (a URL) is cut inside
    return head.rstrip(_TITLE_TAIL) + "\u2026"


class TextBuilder:
    """Appends blocks of text separated by blank lines and records sections as headings/pages change.

    A heading opens a section that starts with the heading's own text, so sections are contiguous
    and cover the whole text: sections[0].start == 0 and sections[-1].end == len(text). A heading's text is kept
    whole in the text; in heading paths and as the document's title it is cut short (``short_title``). Its
    numbered locations are of ``page_kind`` (one of PAGE_KINDS): a presentation's builder numbers slides.
    """

    def __init__(self, page_kind: str = "page") -> None:
        if page_kind not in PAGE_KINDS:
            raise ValueError(f"page_kind must be one of {PAGE_KINDS}, got {page_kind!r}")
        self._page_kind = page_kind
        self._parts: list[str] = []
        self._len = 0
        self._path: list[str] = []
        self._levels: list[int] = []
        self._page: int | None = None
        self._sections: list[Section] = []
        self._open: Section | None = None
        self._notices: list[str] = []
        self.first_heading: str | None = None

    def _append(self, text: str) -> None:
        if self._len:
            self._parts.append("\n\n")
            self._len += 2
        if self._open is None:
            kind = self._page_kind if self._page is not None else None
            self._open = Section(self._len, self._len, list(self._path), self._page, kind)
            self._sections.append(self._open)
        self._parts.append(text)
        self._len += len(text)
        self._open.end = self._len
        if self._len > MAX_TEXT_CHARS:
            raise ParseError(f"The document has more than {MAX_TEXT_CHARS:,} characters of text; split it.")

    def _close(self) -> None:
        self._open = None

    def heading(self, level: int, text: str, emit: bool = True) -> None:
        """A heading of `level` (1 = top): pops deeper headings, opens a section starting with it.

        With emit=False the heading path changes but the heading's text is not added (it is not in
        the text, e.g. a PDF bookmark whose title could not be found on its page).
        """
        text = clean_inline(text)
        if not text:
            return
        while self._levels and self._levels[-1] >= level:
            self._levels.pop()
            self._path.pop()
        self._levels.append(level)
        self._path.append(short_title(text))
        if self.first_heading is None:
            self.first_heading = self._path[-1]
        self._close()
        if emit:
            self._append(text)

    @property
    def level(self) -> int:
        """The level of the innermost open heading, 0 outside any."""
        return self._levels[-1] if self._levels else 0

    def leave(self, level: int) -> None:
        """End the headings of `level` and deeper: what follows belongs to the enclosing heading again (the text
        after a set of tabs, each of which was a heading of its own)."""
        while self._levels and self._levels[-1] >= level:
            self._levels.pop()
            self._path.pop()
        self._close()

    def set_path(self, path: list[str], page: int | None = None) -> None:
        """Start a new location (a slide, a sheet, a page) with an explicit heading path."""
        self._path = [short_title(p) for p in (clean_inline(x) for x in path) if p]
        self._levels = list(range(1, len(self._path) + 1))
        self._page = page
        self._close()

    def page(self, page: int | None) -> None:
        if page != self._page:
            self._page = page
            self._close()

    def notes(self, title: str, texts: list[str], numbered: bool = True) -> None:
        """A document's footnotes or endnotes (or page headers, footers: ``numbered=False``) at its end: a
        top-level heading ``title`` and the notes, numbered in order (nothing when there are none)."""
        if texts:
            first = self.first_heading
            self.heading(1, title)
            self.first_heading = first  # "Footnotes" is no title for the document
            self.block("\n".join(f"{n}. {t}" if numbered else t for n, t in enumerate(texts, 1)))

    def block(self, text: str) -> None:
        text = clean_block(text)
        if text:
            self._append(text)

    def notice(self, text: str) -> None:
        """Say that part of the file was not read (``ParsedDocument.notices``): one plain sentence."""
        self._notices.append(text)

    def build(
        self, detected_type: str, pages: int | None, title: str | None, heading_title: bool = True
    ) -> ParsedDocument:
        """The document; its title ``title``, else (``heading_title``) its first heading, else None (the file
        name stands in). A workbook passes False: its first heading is a sheet's name ("Sheet1", or one sheet
        of several), no title for the whole file."""
        text = "".join(self._parts)
        if not text.strip():
            raise ParseError("The document contains no text that could be extracted.")
        # Extend each section over the separator that follows it so the sections tile the text.
        for a, b in zip(self._sections, self._sections[1:], strict=False):
            a.end = b.start
        self._sections[-1].end = len(text)
        title = short_title(clean_inline(title)) if title else None
        return ParsedDocument(
            text=text,
            sections=self._sections,
            detected_type=detected_type,
            pages=pages,
            title=title or (self.first_heading if heading_title else None),
            notices=cap_notices(self._notices),
        )


MAX_TITLE_ROWS = 5


def number_text(x: float, fmt: str | None = None) -> str:
    """A spreadsheet or chart number as it is shown: under its number format (``fmt``, Excel's format codes:
    "#,##0.00" -> "1,234.50", "$#,##0;($#,##0)" -> "($1,235)", "0.0%" -> "23.5%", '"€"#,##0' -> "€1,235",
    "0.00E+00", "00000" for codes; ``format_number``), otherwise at most 15 significant digits (what Excel
    displays; files cache 0.30000000000000004), whole numbers without ".0". Formats this cannot render (dates,
    fractions, conditions, text) give the plain number."""
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    shown = format_number(x, fmt) if fmt else None
    if shown is not None:
        return shown
    text = f"{x:.15g}"
    return text[:-2] if text.endswith(".0") else text


_WIDE = Context(prec=400)
_FORMAT_TOKEN = re.compile(r'"[^"]*"|\\.|\[[^\]]*\]|_.|\*.|.', re.S)
_DATE_CODES = set("yYmMdDhHsSeEgGbB")
_NUMBER_CODES = set("0#?.,")


def format_number(x: float, fmt: str) -> str | None:
    """``x`` under an Excel number format code, or None where the code is not a plain number format."""
    sections = _sections(fmt)
    if sections is None:
        return None
    sign = ""
    sec = sections[0]
    if x < 0 and len(sections) > 1 and sections[1] is not _BLANK:
        sec, x = sections[1], -x  # the negative section writes its own sign: "(#,##0)", "-#,##0"
    elif x == 0 and len(sections) > 2 and sections[2] is not _BLANK:
        sec = sections[2]
    elif x < 0:
        sign, x = "-", -x
    if sec is None:
        return None
    parts, core, percent = sec
    if percent:
        x *= 100
    if not core:
        return sign + "".join(parts)
    number = _render_core(x, core)
    if number is None:
        return None
    return sign + "".join(number if p == "\0" else p for p in parts)


_BLANK: tuple[tuple[str, ...], str, bool] = ((), "", False)


@functools.lru_cache(maxsize=256)
def _sections(fmt: str) -> tuple | None:
    """A format code's sections, each (literal parts with "\0" where the number goes, the numeric code) or None
    when it is not rendered here (an empty section: ``_BLANK``); None for General, text and conditional codes.
    Parsed once per code (a sheet repeats a few codes over many cells)."""
    texts, cur = [], ""
    for tok in _FORMAT_TOKEN.findall(fmt):
        if tok == ";":
            texts.append(cur)
            cur = ""
        else:
            cur += tok
    texts.append(cur)
    if texts[0].strip().lower() in ("general", "@", "") or any(re.search(r"\[[<>=]", t) for t in texts):
        return None  # General, text, or conditions (which section applies is the format's own logic)
    return tuple(_BLANK if not t.strip() else _section(t) for t in texts)


def _section(sec: str) -> tuple[tuple[str, ...], str, bool] | None:
    parts: list[str] = []
    core = ""
    percent = False
    for tok in _FORMAT_TOKEN.findall(sec):
        if tok.startswith('"'):
            parts.append(tok[1:-1])
        elif tok.startswith("\\"):
            parts.append(tok[1:])
        elif tok.startswith("["):
            if tok.startswith("[$"):
                parts.append(tok[2:-1].split("-")[0])  # a currency: [$€-407] -> "€"; a colour shows nothing
        elif tok[0] in "_*":
            continue  # padding and fill characters only align columns
        elif tok in _NUMBER_CODES or (tok in "Ee" and core) or (tok in "+-" and core[-1:] in ("E", "e")):
            if core and parts and parts[-1] != "\0":
                return None  # digits in two places (fractions, phone-like codes): not rendered here
            core += tok
            if not parts or parts[-1] != "\0":
                parts.append("\0")
        elif tok in _DATE_CODES or tok in "@/":
            return None  # a date, time, text or fraction format
        else:
            percent = percent or tok == "%"  # a percent sign that is code, not quoted text, scales by 100
            parts.append(tok)  # "%", "$", "(", spaces and other characters shown as they are
    return tuple(parts), core, percent


def _render_core(x: float, core: str) -> str | None:
    """The digits of a number format's numeric part ("#,##0.00", "0.0E+00", "000") for x >= 0."""
    mantissa, _, exponent = core.upper().partition("E")
    while mantissa.endswith(","):  # trailing commas scale by a thousand each ("#,##0," shows thousands)
        mantissa, x = mantissa[:-1], x / 1000
    whole, _, frac = mantissa.partition(".")
    if "." in frac:
        return None
    min_frac, max_frac = frac.count("0"), sum(ch in "0#?" for ch in frac)
    min_whole = whole.count("0")
    if exponent:
        digits = sum(ch == "0" for ch in exponent)
        if max_frac > 30:
            return None
        text = f"{x:.{max_frac}E}"
        base, _, exp = text.partition("E")
        n = int(exp)
        base = _trim(base, min_frac)
        return f"{base}E{'-' if n < 0 else '+'}{abs(n):0{max(digits, 1)}d}"
    if max_frac > 30:
        return None  # past anything a sheet shows (15 digits)
    # Excel rounds half up; a context wide enough for any double's digits plus the decimals
    value = Decimal(repr(x)).quantize(Decimal(1).scaleb(-max_frac), rounding=ROUND_HALF_UP, context=_WIDE)
    text = f"{value:.{max_frac}f}"
    int_part, _, frac_part = text.partition(".")
    int_part = int_part.lstrip("0").rjust(min_whole, "0")  # "#" shows no zero, "000" pads
    if "," in whole and int_part:
        int_part = f"{int(int_part):,}"
    if not frac_part:
        return int_part  # "" for 0 under "#" or "??", as the sheet shows it
    return _trim(f"{int_part or '0'}.{frac_part}", min_frac)


def _trim(text: str, min_frac: int) -> str:
    """Optional decimals ("#") dropped where they are zeros; the point too when none are left."""
    if "." not in text:
        return text
    head, frac = text.split(".")
    keep = frac[:min_frac] + frac[min_frac:].rstrip("0")
    return f"{head}.{keep}" if keep else head


def rows_as_text(rows: list[list[str]]) -> list[str]:
    """Table rows as lines: the first non-empty row is the header, the others "Header: value; ...".

    Empty cells are skipped; a column without a header is named by its number ("Column 3"). Rows of one
    filled cell above a row of several (a sheet's title and notes over its table) are lines of their own,
    not the header. A two-column table of fields ("Version | 4.2") is "Name: value" lines (``_fields``). A
    header of two rows, group titles over the columns' own names, names each column by both ("Q2 Cost":
    ``_two_row_header``).
    """
    rows = [[clean_inline(c) for c in r] for r in rows]
    rows = [r for r in rows if any(r)]
    if not rows:
        return []
    filled = [sum(1 for c in r if c) for r in rows]
    h = next((i for i, n in enumerate(filled[: MAX_TITLE_ROWS + 1]) if n != 1), 0)
    if h and filled[h] > 1 and len(rows) > h + 1:
        return [next(c for c in r if c) for r in rows[:h]] + rows_as_text(rows[h:])
    if len(rows) == 1:
        return ["; ".join(c for c in rows[0] if c)]
    if (fields := _fields(rows)) is not None:
        return fields
    header, body = rows[0], rows[1:]
    if (names := _two_row_header(rows)) is not None:
        header, body = names, rows[2:]
    out = []
    for r in body:
        cells = []
        for j, v in enumerate(r):
            if not v:
                continue
            h = header[j] if j < len(header) and header[j] else f"Column {j + 1}"
            cells.append(f"{h}: {v}")
        if cells:
            out.append("; ".join(cells))
    return out


# a cell that holds a value, not a column's name: a figure, a mail or web address, a list, or a phrase
_VALUE_LIKE = re.compile(r"\d|@|://|, |(\S+\s+){5}")
_NUMERIC = re.compile(r"[-+(]?[$€£¥]?\s?\d[\d\s.,:/%-]*\)?\s?[%$€£¥A-Za-z]{0,3}")


def _fields(rows: list[list[str]]) -> list[str] | None:
    """A two-column table of fields, each row a name and its value (a policy's document control: "Document owner |
    Jane Smith, Head of Finance", "Version | 4.2"), as "Name: value" lines; None for a table under a header row.
    Fields when most names end in a colon, or when the first row's second cell holds a value (a figure, an
    address, a list, a phrase) and the cells below it are not all figures (a header "Sales 2025" over figures)."""
    cols = sorted({j for r in rows for j, c in enumerate(r) if c})
    if len(cols) != 2:
        return None
    k, v = cols
    pairs = [(r[k] if k < len(r) else "", r[v] if v < len(r) else "") for r in rows]
    names = [a for a, _ in pairs if a]
    colons = 2 * sum(a.endswith(":") for a in names) > len(names)
    below = [b for _, b in pairs[1:] if b]
    value_first = bool(_VALUE_LIKE.search(pairs[0][1])) and not all(_NUMERIC.fullmatch(b) for b in below)
    if not (colons or value_first):
        return None
    return [f"{a.removesuffix(':').rstrip()}: {b}" if a and b else a or b for a, b in pairs]


# a label of a header row: no figure in it, but a short word with a number may be one ("Q1", "H2", "Wk 3")
_NUMBERED_LABEL = re.compile(r"[^\W\d_]{1,3} ?\d{1,2}")


def _header_label(cell: str) -> bool:
    return not _DIGIT.search(cell) or bool(_NUMBERED_LABEL.fullmatch(cell))


def _two_row_header(rows: list[list[str]]) -> list[str] | None:
    """Column names of a table whose header is two rows, group titles over the columns' names ("Q1 | | Q2 |"
    or "Q1 | Q1 | Q2 | Q2" over "Revenue | Cost | Revenue | Cost": "Q1 Revenue", ..., "Q2 Cost"); None for a
    one-row header. Until now the second row was read as the first row of data.

    Conservative, so that a one-row header over text stays one: a group title spans two or more columns (the
    cells after it empty, as a merged cell leaves them, or repeating it), and the second row names each column
    under it, with distinct names; the second row's cells are labels (no figures; "Q1" may be one); a column
    outside the groups is named in one row only (or the same in both: a cell merged down), where a data row
    would fill it; and the rows below hold a figure under a group."""
    if len(rows) < 3:
        return None
    width = max(len(rows[0]), len(rows[1]))
    top, sub = (r + [""] * (width - len(r)) for r in rows[:2])
    if sum(1 for c in sub if c) < 2 or not all(_header_label(c) for c in sub if c):
        return None
    spans: list[tuple[str, list[int]]] = []  # (group title, its columns)
    for j in range(width):
        prev = spans[-1] if spans else None
        if prev and prev[0] and (top[j] == prev[0] or (not top[j] and sub[j])):
            prev[1].append(j)
        else:
            spans.append((top[j], [j]))
    groups = [(title, cols) for title, cols in spans if title and len(cols) > 1]
    if not groups:
        return None
    grouped = {j for _, cols in groups for j in cols}
    for _, cols in groups:
        under = [sub[j] for j in cols]
        if not all(under) or len(set(under)) < len(under):
            return None
    if any(top[j] and sub[j] and top[j] != sub[j] for j in range(width) if j not in grouped):
        return None
    if not any(j < len(r) and _DIGIT.search(r[j]) for r in rows[2:] for j in grouped):
        return None
    names = [top[j] if top[j] == sub[j] else " ".join(c for c in (top[j], sub[j]) if c) for j in range(width)]
    for title, cols in groups:
        for j in cols:
            names[j] = f"{title} {sub[j]}"
    return names


def sheet_rows_as_text(rows: list[list[str]]) -> list[str]:
    """A sheet's (or CSV export's) rows as lines (``rows_as_text``), each table stacked on the sheet under its own
    header: after an empty row, a row of labels (two or more cells, none with a digit; one-cell title rows may
    come first) with a figure below one of its labels before the next empty row begins a new table. Other empty
    rows (spacers inside one table) change nothing. Until now a second table's rows were named by the first
    table's columns ("Team: Dell; Phone: Maria Lopez; Hours: 2027-03-31")."""
    rows = [[clean_inline(c) for c in r] for r in rows]
    tables: list[list[list[str]]] = [[]]
    for i, r in enumerate(rows):
        if not any(r):
            continue
        if tables[-1] and i and not any(rows[i - 1]) and _starts_table(rows, i):
            tables.append([])
        tables[-1].append(r)
    return [line for t in tables for line in rows_as_text(t)]


def fill_merged_down(rows: list[list[str]], merges: list[tuple[int, int, int]]) -> None:
    """Repeat a vertically merged cell's text in each row it spans (its first column), as Word tables are read:
    a price list's "Hardware" merged over three products names the category of all three, not of the first only.
    The rows are a sheet's from row 1; at most MAX_SHEET_CELLS cells are filled (a hostile file's merges)."""
    budget = MAX_SHEET_CELLS
    for col, first, last in merges:
        if first >= len(rows) or col >= len(rows[first]) or not rows[first][col]:
            continue
        for r in range(first + 1, min(last, len(rows) - 1) + 1):
            budget -= 1
            if budget < 0:
                return
            row = rows[r]
            if col >= len(row):
                row.extend([""] * (col + 1 - len(row)))
            if not row[col]:
                row[col] = rows[first][col]


def _starts_table(rows: list[list[str]], i: int) -> bool:
    """Whether rows[i:] open with a table's header: past at most MAX_TITLE_ROWS one-cell rows, a row of 2+ cells
    without digits, over rows (up to the next empty one) with a digit in a column the header names; or a header
    of two rows (``_two_row_header``)."""
    j = i
    while j < len(rows) and j - i < MAX_TITLE_ROWS and sum(1 for c in rows[j] if c) == 1:
        j += 1
    if j >= len(rows) or not any(rows[j]):
        return False
    end = next((k for k in range(j, len(rows)) if not any(rows[k])), len(rows))
    if _two_row_header(rows[j:end]) is not None:
        return True
    labels = {k for k, c in enumerate(rows[j]) if c}
    if len(labels) < 2 or any(_DIGIT.search(rows[j][k]) for k in labels):
        return False
    for r in rows[j + 1 :]:
        if not any(r):
            return False
        if any(k < len(r) and _DIGIT.search(r[k]) for k in labels):
            return True
    return False


_DIGIT = re.compile(r"\d")


def reading_order(items: list, place, line: float) -> list:
    """``items`` (slide shapes, frames) in reading order: top to bottom, and left to right among those whose
    tops lie within ``line`` of the first of their line. ``place(item)`` -> (top, left), in ``line``'s unit."""
    rest = sorted(items, key=place)
    out: list = []
    while rest:
        top = place(rest[0])[0]
        row = [it for it in rest if place(it)[0] - top <= line]
        rest = [it for it in rest if place(it)[0] - top > line]
        out += sorted(row, key=lambda it: place(it)[1])
    return out
