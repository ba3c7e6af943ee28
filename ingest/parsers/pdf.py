"""PDF with pypdf: one section per page (1-based page numbers kept), title from the metadata, else from the first
page's largest type (``font_title``). Headings come from the bookmarks, or, in a PDF without any, from font sizes
(``font_headings``)."""

from __future__ import annotations

import codecs
import io
import logging
import math
import re
import zlib
from collections import Counter

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError
from pypdf.filters import ASCII85Decode, ASCIIHexDecode

from retrieval.sentences import SECTION_NUMBER, continues_line, split_sentences

from .base import (
    MAX_PDF_PAGES,
    ParsedDocument,
    ParseError,
    TextBuilder,
    clean_inline,
    metadata_title,
    page_ranges,
)
from .plausible import strip_unusable, why_unreadable

logger = logging.getLogger(__name__)


def _jis_row_cell(data: bytes, errors: str = "strict") -> tuple[str, int]:
    """JIS X 0208 codes as the Adobe CMap "H" shows them (two 7-bit bytes a character) -> text: the same codes
    with the high bit set are EUC-JP."""
    return bytes(b | 0x80 for b in data).decode("euc_jp", errors), len(data)


def _to_jis_row_cell(text: str, errors: str = "strict") -> tuple[bytes, int]:
    """The inverse of ``_jis_row_cell``: EUC-JP's two-byte codes without their high bits."""
    return bytes(b & 0x7F for b in text.encode("euc_jp", errors)), len(text)


def _find_codec(name: str) -> codecs.CodecInfo | None:
    if name != "x_autoglm_jis_h":
        return None
    return codecs.CodecInfo(name=name, encode=_to_jis_row_cell, decode=_jis_row_cell)


# Predefined CJK CMaps whose character codes are some Python codec's bytes. pypdf decodes the text of a font
# shown with such a CMap (fonts not embedded: older Chinese, Japanese and Korean PDFs) through its own table of
# them; a name missing there it decodes as UTF-16, which turns the text into unrelated Hangul and ideographs that
# would then be indexed as the document's words (pdf.js's test files: "我们都是黑体字" read as "컒쏇뚼쫇뫚쳥ퟖ").
_CJK_CMAPS = {
    "GBKp-EUC": "gbk",
    "EUC": "euc_jp",
    "83pv-RKSJ": "cp932",
    "90pv-RKSJ": "cp932",
    "90msp-RKSJ": "cp932",
    "KSC-EUC": "euc_kr",
    "KSCpc-EUC": "cp949",
    "KSCms-UHC": "cp949",
    "KSCms-UHC-HW": "cp949",
    "B5pc": "big5",
    "HKscs-B5": "big5hkscs",
    "UniKS-UTF16": "utf-16-be",
    "UniJIS2004-UTF16": "utf-16-be",
    "UniGB-UTF8": "utf-8",
    "UniCNS-UTF8": "utf-8",
    "UniJIS-UTF8": "utf-8",
    "UniKS-UTF8": "utf-8",
}  # fmt: skip (each as "-H" and "-V"; "H" and "V" alone are JIS X 0208 codes)


def _add_cjk_cmaps() -> None:
    """Teach pypdf the CMaps of ``_CJK_CMAPS`` it lacks (its table is private: ``pypdf._cmap._predefined_cmap``
    in pypdf 5-7; left alone, with the old behaviour, where a pypdf has no such table)."""
    try:
        from pypdf import _cmap
    except ImportError:
        return
    table = getattr(_cmap, "_predefined_cmap", None)
    if not isinstance(table, dict):
        return
    codecs.register(_find_codec)
    for base, codec in _CJK_CMAPS.items():
        table.setdefault(f"/{base}-H", codec)
        table.setdefault(f"/{base}-V", codec)
    table.setdefault("/H", "x_autoglm_jis_h")
    table.setdefault("/V", "x_autoglm_jis_h")


_add_cjk_cmaps()

_ENCRYPTED = (
    "The PDF is password-protected (encrypted with a password); remove the password and upload it again."
)
# AES (Acrobat's default since version 7) needs the cryptography package; without it pypdf cannot open even a
# PDF whose user password is empty, which every viewer opens without asking (it was refused as protected).
_NO_AES = (
    "The PDF is encrypted with AES, which this installation cannot decrypt (the Python package 'cryptography' "
    "is missing); install it, or save the PDF without encryption and upload it again."
)
_DAMAGED = "The PDF could not be read: the file is damaged or is not a valid PDF."
# A PDF ends in %%EOF (an incremental update appends another): one that holds objects but no %%EOF near its
# end stops short, a download or copy cut off, which "damaged" did not tell the admin how to mend.
_CUT_OFF = (
    "The PDF could not be read: the file ends early (no end-of-file marker), as a download or copy that was "
    "cut off does; upload the complete file again."
)


def _damaged(data: bytes) -> str:
    return _CUT_OFF if b"endobj" in data and b"%%EOF" not in data[-2048:] else _DAMAGED


_UNDECODABLE = (
    "The PDF has no extractable text: its characters could not be decoded (damaged or unmapped fonts); the file "
    "may be damaged."
)
_UNREADABLE = (
    "The PDF has no readable text: its text layer does not decode to readable text (fonts without a Unicode "
    "mapping?); its content cannot be searched."
)
_MAX_OUTLINE_ENTRIES = 20_000


def parse_pdf(data: bytes) -> ParsedDocument:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password (only editing is restricted).
            try:
                if not reader.decrypt(""):
                    raise ParseError(_ENCRYPTED)
            except DependencyError as e:
                raise ParseError(_NO_AES) from e
            except (FileNotDecryptedError, NotImplementedError) as e:
                raise ParseError(_ENCRYPTED) from e
        n_pages = len(reader.pages)
    except ParseError:
        raise
    except Exception as e:  # pypdf raises many types on hostile input; all mean "damaged"
        raise ParseError(_damaged(data)) from e
    if n_pages == 0:
        raise ParseError("The PDF has no pages.")
    if n_pages > MAX_PDF_PAGES:
        raise ParseError(f"The PDF has {n_pages:,} pages; at most {MAX_PDF_PAGES:,} are supported.")

    outline = _outline(reader)
    texts: list[str | None] = []
    sized: list[list[tuple[str, float]] | None] = []
    first_lines: list[tuple[str, float]] | None = None  # the first page's, for its title (bookmarks or not)
    garbled: set[int] = set()  # pages whose text was only characters that could not be decoded
    unreadable: set[int] = set()  # pages whose text decoded to characters that are no text (``plausible``)
    for i in range(n_pages):
        # every page's type sizes, bookmarks or not: headings from the type, or those below the bookmarks
        # (``font_headings``, ``sub_headings``), and the first page's for the title
        chunks: list[tuple[str, float]] = []
        try:
            text = reader.pages[i].extract_text(visitor_text=_SizeVisitor(chunks)) or ""
        except FileNotDecryptedError as e:
            raise ParseError(_ENCRYPTED) from e
        except Exception as e:  # one bad page must not lose the others
            logger.warning("PDF page %d could not be read: %s", i + 1, e)
            texts.append(None)
            sized.append(None)
            continue
        if "\ufffd" in text:
            # Glyphs pypdf could not map to characters (a damaged font dictionary, a font without a character
            # map): nothing a person could search for. A page of nothing else became a ready document of
            # replacement characters.
            text = text.replace("\ufffd", "")
            if not text.strip():
                garbled.add(i)
        why = why_unreadable(text)
        if why is not None:
            # a font without a Unicode mapping: its glyph codes read through a default encoding, as punctuation,
            # control characters or shifted letters that would be indexed while the page's words are missing
            logger.info("PDF page %d: its text does not read as text (%s); dropped", i + 1, why)
            unreadable.add(i)
            text, chunks = "", []
        else:
            # a symbol font's bullets or ticks (private use) in readable text: only they go
            text, chunks = strip_unusable(text), [(strip_unusable(t), size) for t, size in chunks]
        if not text.strip() and i not in garbled | unreadable and _content_damaged(reader.pages[i]):
            # pypdf reads what it can of a content stream that does not inflate and only logs it: the page
            # read as blank, and the loss went unnoticed
            logger.warning("PDF page %d could not be read: its content stream is damaged", i + 1)
            texts.append(None)
            sized.append(None)
            continue
        texts.append(text)
        lines = _sized_lines(text, chunks)
        if i == 0:
            first_lines = lines
        sized.append(lines)
    failed = texts.count(None)
    texts = strip_running_lines(texts)
    # read before join_page_breaks, which may carry a page's only sentence over to the page before
    blank = [
        i for i, t in enumerate(texts) if t is not None and not t.strip() and i not in garbled | unreadable
    ]
    texts = join_page_breaks([None if t is None else reflow(t) for t in texts])
    by_font = {} if outline else font_headings(sized)
    below = sub_headings(sized, outline) if outline else {}
    meta_title = None
    try:
        meta = reader.metadata
        meta_title = metadata_title(meta.title) if meta else None
    except Exception:  # metadata is optional; a broken info dictionary is not worth failing for
        meta_title = None
    b = TextBuilder()
    for i, page_text in enumerate(texts):
        if page_text is None:
            continue
        b.page(i + 1)
        if i in by_font:
            _emit_font_headings(b, page_text, by_font[i], meta_title if i == 0 else None)
            continue
        rest = page_text
        for level, title in outline.get(i, ()):
            span = _find_title(rest, title)
            if span is None:
                b.heading(level, title, emit=False)
                continue
            _emit_font_headings(b, rest[: span[0]], below.get(i, {}))
            b.heading(level, title)
            rest = rest[span[1] :]
        _emit_font_headings(b, rest, below.get(i, {}))
    if failed == n_pages:
        raise ParseError(_damaged(data))
    title = meta_title or font_title(first_lines)
    _page_notices(b, reader, n_pages, texts, blank, garbled, unreadable)
    try:
        return b.build("pdf", n_pages, title)
    except ParseError as e:
        if unreadable:
            raise ParseError(_UNREADABLE) from e
        if garbled:
            raise ParseError(_UNDECODABLE) from e
        raise ParseError(
            "The PDF has no extractable text: it seems to contain only images (scanned pages?); text "
            "recognition (OCR) is not supported."
        ) from e


def _page_notices(
    b: TextBuilder,
    reader: PdfReader,
    n_pages: int,
    texts: list,
    blank: list[int],
    garbled: set[int],
    unreadable: set[int],
) -> None:
    """Notices for the pages whose content is not in the text, where other pages have text (a PDF with none at
    all fails instead): pages that show images but hold no text (scanned into a PDF of typed pages), pages
    that could not be read, whose characters could not be decoded or decoded to no readable text. A blank page
    (no images) lost nothing."""
    scanned = [i + 1 for i in blank if _draws_images(reader.pages[i])]
    unread = [i + 1 for i, t in enumerate(texts) if t is None]
    for pages, one, many in (
        (scanned, "has no text layer (a scanned image?); its content is not searchable",
         "have no text layer (scanned images?); their content is not searchable"),
        (sorted(p + 1 for p in garbled), "holds only characters that could not be decoded (damaged or unmapped "
         "fonts); its text is missing", "hold only characters that could not be decoded (damaged or unmapped "
         "fonts); their text is missing"),
        (sorted(p + 1 for p in unreadable), "has a text layer that does not decode to readable text (a font "
         "without a Unicode mapping?); its content is missing", "have a text layer that does not decode to "
         "readable text (fonts without a Unicode mapping?); their content is missing"),
        (unread, "could not be read (damaged); its content is missing",
         "could not be read (damaged); their content is missing"),
    ):  # fmt: skip
        if pages:
            word = "Page" if len(pages) == 1 else "Pages"
            b.notice(f"{word} {page_ranges(pages)} of {n_pages} {one if len(pages) == 1 else many}.")


_FLATE = ("/FlateDecode", "/Fl")
_ASCII = {"/ASCII85Decode": ASCII85Decode, "/A85": ASCII85Decode, "/ASCIIHexDecode": ASCIIHexDecode,
          "/AHx": ASCIIHexDecode}  # fmt: skip
_MAX_INFLATE_CHECK = 64 << 20  # a stream still inflating after this much is not damaged as far as it was read


def _content_damaged(page) -> bool:
    """Whether one of a page's content streams (what it draws) is compressed (Flate, nearly all PDFs; after
    ASCII85 or hex encoding) and does not inflate to its end: damaged or cut off. pypdf then reads what it can and
    only logs a warning, so the page reads as blank. Other filters are not checked; an empty stream is no loss."""
    try:
        contents = page.get("/Contents")
        contents = contents.get_object() if contents is not None else None
        for ref in contents if isinstance(contents, list) else [contents]:
            stream = ref.get_object() if ref is not None else None
            data = getattr(stream, "_data", None)  # the stream's bytes as stored (pypdf keeps no public name)
            if not isinstance(data, bytes) or not data.strip():
                continue
            filters = stream.get("/Filter")
            filters = filters.get_object() if filters is not None else []
            for name in [filters] if isinstance(filters, str) else list(filters):
                if name in _FLATE:
                    if not _inflates(data):
                        return True
                    break
                if name not in _ASCII:
                    break
                data = _ASCII[name].decode(data)
    except Exception:  # noqa: BLE001  (a content dictionary too broken to check: pypdf's reading stands)
        logger.debug("PDF page contents uncheckable", exc_info=True)
    return False


def _inflates(data: bytes) -> bool:
    """Whether zlib ``data`` inflates to its end mark (bytes after it are ignored, as pypdf does); read a piece
    at a time, the output dropped."""
    d = zlib.decompressobj()
    out = 0
    try:
        while not d.eof and out < _MAX_INFLATE_CHECK:
            piece = d.decompress(data, 1 << 20)
            data = d.unconsumed_tail
            if not piece and not data:
                return False  # all read, no end mark: cut off
            out += len(piece)
    except zlib.error:
        return False
    return True


_INLINE_IMAGE = re.compile(rb"(?:^|\s)BI\s")


def _draws_images(page, depth: int = 0) -> bool:
    """Whether a page shows an image: an image XObject in its resources (or in a form it draws, a few levels
    deep), or an inline image in its content. What a scanner or a "print to PDF" of a scan leaves."""
    try:
        resources = page.get("/Resources")
        resources = resources.get_object() if resources is not None else None
        xobjects = resources.get("/XObject") if resources is not None else None
        for ref in (xobjects.get_object() if xobjects is not None else {}).values():
            x = ref.get_object()
            if x.get("/Subtype") == "/Image":
                return True
            if x.get("/Subtype") == "/Form" and depth < 3 and _draws_images(x, depth + 1):
                return True
        if depth == 0:
            contents = page.get_contents()
            return contents is not None and _INLINE_IMAGE.search(contents.get_data()) is not None
    except Exception:  # noqa: BLE001  (a damaged resource dictionary: no notice, not a failed document)
        logger.debug("PDF page resources unreadable", exc_info=True)
    return False


MARGIN_LINES = 2  # lines at the top and at the bottom of a page where running headers and footers sit
_DIGITS = re.compile(r"\d+")


def _margin_key(line: str) -> str:
    """A margin line with its numbers blanked out: "Page 3 of 12" and "Page 4 of 12" are one footer."""
    return _DIGITS.sub("#", clean_inline(line).casefold())


def strip_running_lines(pages: list[str | None]) -> list[str | None]:
    """Pages without their running headers and footers: a line among the first or last MARGIN_LINES
    non-empty lines of at least half of the readable pages (and at least 3), numbers aside ("ACME
    Confidential", "Page 3 of 12", a bare page number). They repeat on every page, so they add nothing to
    a passage but noise in its embedding, its BM25 terms and the quotes of an answer. Documents of fewer
    than 3 readable pages, lines in the body of a page, and pages that would all be left empty (the same
    short text on every page: a label printed four times, a one-line form repeated) are left as they are."""
    readable = [p for p in pages if p is not None]
    if len(readable) < 3:
        return pages
    counts: dict[str, int] = {}
    for text in readable:
        lines = [line for line in text.splitlines() if line.strip()]
        margin = lines[:MARGIN_LINES] + lines[-MARGIN_LINES:]
        for key in {_margin_key(line) for line in margin}:
            counts[key] = counts.get(key, 0) + 1
    need = max(3, -(-len(readable) // 2))
    running = {key for key, n in counts.items() if n >= need and key}
    folios = _folio_lines(pages, need)
    if not running and not folios:
        return pages
    out: list[str | None] = []
    for p, text in enumerate(pages):
        if text is None:
            out.append(None)
            continue
        lines = text.splitlines()
        body = [i for i, line in enumerate(lines) if line.strip()]
        drop = {
            i
            for i in body[:MARGIN_LINES] + body[-MARGIN_LINES:]
            if _margin_key(lines[i]) in running or (p, i) in folios
        }
        out.append("\n".join(line for i, line in enumerate(lines) if i not in drop))
    if not any(text and text.strip() for text in out):
        return pages  # every line "repeats": the pages say the same few lines, which are then the document
    return out


_FOLIO = re.compile(r"^(\d{1,4})\s+(?=\D)|(?<=\D)\s+(\d{1,4})$|^(\d{1,4})$")


def _folio_lines(pages: list[str | None], need: int) -> set[tuple[int, int]]:
    """(page index, line index) of the margin lines that carry the page's printed number, the folio: books
    (LaTeX, Texinfo, DocBook) head their pages with the chapter's name and the number ("Chapter 4: Function
    reference 10"), which changes with every chapter, so no one line repeats on half of the pages. The folio
    is a number at a margin line's start or end that runs with the pages (printed number = page index +
    one offset, on at least ``need`` pages); the line goes when it is the number alone, or when the rest of
    it heads another page too (the chapter's running title). A chapter's heading set in the margin ("2
    Setup" on printed page 2) is said once, so it stays."""
    found: list[tuple[int, int, int, str]] = []  # (page, line, offset, the line without its number)
    for p, text in enumerate(pages):
        if text is None:
            continue
        lines = text.splitlines()
        body = [i for i, line in enumerate(lines) if line.strip()]
        for i in dict.fromkeys(body[:MARGIN_LINES] + body[-MARGIN_LINES:]):
            line = clean_inline(lines[i])
            m = _FOLIO.search(line)
            if m:
                number = int(next(g for g in m.groups() if g))
                found.append((p, i, number - p, _margin_key(line[: m.start()] + line[m.end() :])))
    offsets = Counter(offset for _, offset in {(p, offset) for p, _, offset, _ in found})
    if not offsets:
        return set()
    offset, n = max(offsets.items(), key=lambda kv: kv[1])
    if n < need:
        return set()
    titles = Counter(rest for _, rest in {(p, rest) for p, _, o, rest in found if o == offset})
    return {(p, i) for p, i, o, rest in found if o == offset and (not rest or titles[rest] >= 2)}


_SENTENCE_END = re.compile(r"[.!?。！？:：;；][\"'”’)\]」』）]*$")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
WRAPPED = 0.6  # a line at least this share of the page's long lines wide may wrap on to the next
MIN_WRAPPED = 40  # ... and at least this many characters (CJK: half), which short table rows are not


def _continues(prev: str, nxt: str, width: int, last: int) -> bool:
    """Whether ``nxt`` carries on the sentence that ``prev`` wrapped (see ``reflow``); ``last``: the length of
    ``prev``'s last line on the page (``prev`` may hold lines joined already)."""
    cjk = bool(_CJK.match(prev[-1]) and _CJK.match(nxt[0]))
    if _SENTENCE_END.search(prev) or last < max(WRAPPED * width, MIN_WRAPPED // 2 if cjk else MIN_WRAPPED):
        return False
    return cjk or continues_line(prev, nxt)


def reflow(text: str) -> str:
    """A page's text with paragraphs unwrapped: a PDF stores lines, so every paragraph comes out broken at
    the width of the page, and a line break ends a sentence for the chunker and the quoted answers (half
    sentences, half highlights). A line joins the next when it is near the page's width (``WRAPPED`` of
    its longest lines, and ``MIN_WRAPPED`` characters; the line as the page set it, not the lines joined so
    far: a function's signature wrapped on to a short line ends there), does not end a sentence, and the next
    one starts in lower case or with a bracket (``retrieval.sentences.continues_line``, which also keeps the
    entries of a definition list apart), or both sides are CJK characters (joined without a space); a hyphen
    between two lower-case letters there was a word break and goes. Headings, list items, table rows and
    short last lines stay where they are."""
    lines = text.split("\n")
    lengths = sorted(len(line.strip()) for line in lines if line.strip())
    if len(lengths) < 2:
        return text
    width = lengths[int(0.9 * (len(lengths) - 1))]
    out: list[str] = []
    last = 0  # the length of the line before, as the page set it: a short one ended its paragraph
    for line in lines:
        prev = out[-1].rstrip() if out else ""
        nxt = line.strip()
        joined = prev and nxt and _continues(prev, nxt, width, last)
        last = len(nxt)
        if joined:
            if prev.endswith("-") and len(prev) > 1 and prev[-2].islower() and nxt[0].islower():
                out[-1] = prev[:-1] + nxt
            elif _CJK.match(prev[-1]) and _CJK.match(nxt[0]):
                out[-1] = prev + nxt
            else:
                out[-1] = prev + " " + nxt
        else:
            out.append(line)
    return "\n".join(out)


def join_page_breaks(pages: list[str | None]) -> list[str | None]:
    """Pages (reflowed) with the sentences that a page break cut in two made whole on the page where they
    start: a page's last line that is long, ends without a stop and is carried on by the next page's first
    line (in lower case, and ``continues_line``: no definition list's entry; a figure or a bracket there may
    be a heading's number, "4 Function reference") takes that line's text up to its first sentence end
    ("... Information found in a" + "directory is added to ..."), which would otherwise be two half sentences
    in two passages. Word breaks ("manip-" + "ulation") are joined as ``reflow`` joins them."""
    out = list(pages)
    for i in range(len(out) - 1):
        a, b = out[i], out[i + 1]
        if not a or not a.strip() or not b or not b.strip():
            continue
        last = a.rstrip().rsplit("\n", 1)[-1].strip()
        body = b.lstrip()
        first, _, below = body.partition("\n")
        first = first.strip()
        if _SENTENCE_END.search(last) or len(last) < MIN_WRAPPED or not first[:1].islower():
            continue
        if not continues_line(last, first):
            continue
        end = split_sentences(first)[0][1]
        piece, rest = first[:end], first[end:].strip()
        if last.endswith("-") and len(last) > 1 and last[-2].islower() and piece[0].islower():
            out[i] = a.rstrip()[:-1] + piece
        else:
            out[i] = a.rstrip() + " " + piece
        out[i + 1] = "\n".join(x for x in (rest, below) if x)
    return out


def _outline(reader: PdfReader) -> dict[int, list[tuple[int, str]]]:
    """Bookmarks as {page index: [(level, title), ...]} in document order; {} when absent or broken."""
    out: dict[int, list[tuple[int, str]]] = {}
    seen = 0

    def walk(items, depth: int) -> None:
        nonlocal seen
        for item in items:
            if isinstance(item, list):  # the children of the entry before it
                walk(item, depth + 1)
                continue
            seen += 1
            if seen > _MAX_OUTLINE_ENTRIES:
                return
            page = reader.get_destination_page_number(item)
            title = clean_inline(str(item.title or ""))
            if page is not None and page >= 0 and title:
                out.setdefault(page, []).append((depth, title))

    try:
        walk(reader.outline, 1)
    except Exception as e:  # bookmarks are a bonus: a broken outline must not fail the document
        logger.warning("PDF outline ignored: %s", e)
        return {}
    return out


def _find_title(text: str, title: str) -> tuple[int, int] | None:
    """Span of a bookmark title in the page text (whitespace-insensitive), or None."""
    words = title.split()
    if not words:
        return None
    m = re.search(r"\s+".join(re.escape(w) for w in words), text)
    return (m.start(), m.end()) if m else None


# Headings from font sizes, for PDFs without bookmarks (most of them: a report saved from a word processor
# without "create bookmarks", a scanned-then-OCRed file, a generated statement). pypdf hands every run of
# text it extracts to a visitor with its font size and matrices, and the page text is exactly those runs in
# order, so each line gets the size most of its characters are set in. The body size is the one most of the
# document's characters have; a line at least HEADING_RATIO larger that reads like a heading (short, letters,
# not a sentence) is one, its level the rank of its size among the headings' sizes (largest = 1).
HEADING_RATIO = 1.15
MIN_HEADING_STEP = 1.0  # points above the body size, whatever the ratio (tiny fonts)
MAX_HEADING_CHARS = 120
MAX_HEADING_WORDS = 16
MAX_HEADING_LEVELS = 4
MAX_HEADING_RUN = 3  # more consecutive large lines than this are a paragraph in large type, not a heading
# headings holding more of the characters than this: the sizes say nothing (forms of big labels)
MAX_HEADING_SHARE = 0.3
MIN_SIZED_CHARS = 200  # too little text to tell a body size
# the first page's largest type is the document's title (``font_title``) when it is this much larger than the
# page's body type, set on at most this many lines
TITLE_RATIO = 1.3
MAX_TITLE_LINES = 3
# ... unless it is a numbered section ("1 Introduction", "2.1 Scope") or a part every document has: a first page
# that opens with its contents or abstract (pdf.js's and py-pdf's test files: "Contents" over "Foo")
_NOT_TITLE = re.compile(
    r"(table of )?contents|index|abstract|summary|introduction|preface|foreword|agenda|overview"
    r"|inhalt|inhaltsverzeichnis|sommaire|table des mati[èe]res|[íi]ndice|contenido|目\s*录|目\s*次|摘\s*要|前\s*言|引\s*言",
    re.IGNORECASE,
)
_HEADING_END = re.compile(r"[,;，；、]$")
_SENTENCE_STOP = re.compile(r"[.!?。！？]$")
# leaders and blanks: a table of contents' dotted line or a form's field to fill in ("Fait à ..........")
_LEADERS = re.compile(r"\.{4,}|…{2,}|_{4,}|(?:\. ){4,}")


class _SizeVisitor:
    """pypdf's ``visitor_text``: each extracted run of text with its font size in points on the page (the
    font size scaled by the text and graphics matrices' vertical axis)."""

    def __init__(self, chunks: list[tuple[str, float]]) -> None:
        self.chunks = chunks

    def __call__(self, text, cm, tm, font_dict, font_size) -> None:
        if not text:
            return
        try:
            c = tm[2] * cm[0] + tm[3] * cm[2]
            d = tm[2] * cm[1] + tm[3] * cm[3]
            size = abs(float(font_size)) * math.hypot(c, d)
        except Exception:  # noqa: BLE001  (a size is a bonus: an odd matrix must not lose the page's text)
            size = 0.0
        self.chunks.append((text, size if math.isfinite(size) else 0.0))


def _sized_lines(text: str, chunks: list[tuple[str, float]]) -> list[tuple[str, float]] | None:
    """The page's non-empty lines, each with the size most of its characters have (rounded to half a point);
    None when the runs do not spell the page text (nothing to go by)."""
    if "".join(t for t, _ in chunks) != text:
        return None
    lines: list[tuple[str, float]] = []
    parts: list[str] = []
    counts: Counter = Counter()

    def end_line() -> None:
        line = clean_inline("".join(parts))
        if line and counts:
            lines.append((line, counts.most_common(1)[0][0]))
        parts.clear()
        counts.clear()

    for t, size in chunks:
        for j, piece in enumerate(t.split("\n")):
            if j:
                end_line()
            parts.append(piece)
            n = sum(not ch.isspace() for ch in piece)
            if n:
                counts[round(size * 2) / 2] += n
    end_line()
    return lines


def _heading_like(line: str) -> bool:
    """Short, with letters, not a sentence or a list's middle, and not starting in lower case (a word set larger
    inside a line of text, which pypdf breaks out on a line of its own); not an author list (two or more
    commas) or an address (an @), which papers set larger than their text under the title, nor a line with
    leaders or blanks (a contents entry, a form's field)."""
    words = line.split()
    first = next((ch for ch in line if ch.isalpha()), "")
    return (
        not first.islower()
        and line.count(",") < 2
        and "@" not in line
        and not _LEADERS.search(line)
        and 2 <= len(line) <= MAX_HEADING_CHARS
        and len(words) <= MAX_HEADING_WORDS
        and sum(ch.isalpha() for ch in line) >= 2
        and not _HEADING_END.search(line)
        and not (_SENTENCE_STOP.search(line) and len(words) > 6)
    )


def font_title(lines: list[tuple[str, float]] | None) -> str | None:
    """A title from the first page's type (``_sized_lines``), for a PDF whose metadata has none: its first run
    of lines (at most MAX_TITLE_LINES) in the page's largest type, when that type is at least TITLE_RATIO x the
    page's body type (the size most of its characters have) and each line reads as a heading. Without it a
    bookmarked manual was titled by its first bookmark ("1 Introduction"), where its cover says "Libtasn1"."""
    if not lines:
        return None
    chars: Counter = Counter()
    for line, size in lines:
        chars[size] += sum(not ch.isspace() for ch in line)
    body = chars.most_common(1)[0][0]
    top = max(size for _, size in lines)
    if top < max(body * TITLE_RATIO, body + MIN_HEADING_STEP):
        return None
    run: list[str] = []
    for line, size in lines:
        if size == top and not (run and SECTION_NUMBER.match(line)):
            run.append(line)
        elif run:  # a numbered line in the title's type is the first section's heading ("1. Scope")
            break
    if len(run) > MAX_TITLE_LINES or not all(_heading_like(line) for line in run):
        return None
    title = " ".join(run)
    if SECTION_NUMBER.match(title) or _NOT_TITLE.fullmatch(title):
        return None
    return title


def font_headings(pages: list[list[tuple[str, float]] | None]) -> dict[int, dict[str, int]]:
    """{page index: {line (``clean_inline``): heading level}} from the pages' sized lines (``_sized_lines``);
    {} when the sizes do not single out headings."""
    chars: Counter = Counter()
    for lines in pages:
        for line, size in lines or ():
            chars[size] += sum(not ch.isspace() for ch in line)
    if sum(chars.values()) < MIN_SIZED_CHARS:
        return {}
    body = chars.most_common(1)[0][0]
    floor = max(body * HEADING_RATIO, body + MIN_HEADING_STEP)
    found: dict[int, dict[str, float]] = {}
    plain: dict[int, set[str]] = {}
    for i, lines in enumerate(pages):
        run: list[tuple[str, float]] = []
        for line, size in [*(lines or ()), ("", 0.0)]:  # a sentinel ends the last run
            if size >= floor and _heading_like(line) and (not run or run[-1][1] == size):
                run.append((line, size))
                continue
            if len(run) <= MAX_HEADING_RUN:
                found.setdefault(i, {}).update(run)
            else:
                plain.setdefault(i, set()).update(t for t, _ in run)
            run = [(line, size)] if size >= floor and _heading_like(line) else []
            if line and not run:
                plain.setdefault(i, set()).add(line)
    # a text also set in body type on the same page (a table cell repeating a heading) stays body text
    found = {i: {t: s for t, s in d.items() if t not in plain.get(i, ())} for i, d in found.items()}
    found = {i: d for i, d in found.items() if d}
    n = sum(sum(not ch.isspace() for ch in t) for d in found.values() for t in d)
    if not n or n > MAX_HEADING_SHARE * sum(chars.values()):
        return {}
    ranks = sorted({s for d in found.values() for s in d.values()}, reverse=True)
    level = {s: min(r + 1, MAX_HEADING_LEVELS) for r, s in enumerate(ranks)}
    return {i: {t: level[s] for t, s in d.items()} for i, d in found.items()}


MIN_SUB_HEADINGS = 3  # a type below the bookmarks' set on fewer lines is a one-off (a big word), not a style
MAX_SUB_HEADING_CHARS = 60
MAX_SUB_HEADING_WORDS = 8


def sub_headings(
    pages: list[list[tuple[str, float]] | None], outline: dict[int, list[tuple[int, str]]]
) -> dict:
    """{page index: {line: level}} of the headings a bookmarked PDF sets below its bookmarks: manuals bookmark
    chapters and sections, and set each function's, option's or entry's title in a type of its own between
    the sections' and the body's (Texinfo: "asn1 delete structure" at 13 pt, sections 14.5, body 11), so
    without them a passage that starts inside a function's description does not say which function it is.
    Such a line is larger than the body (``HEADING_RATIO``), smaller than every bookmarked title found in the
    text, short, no sentence, no contents entry, and its size is that of at least ``MIN_SUB_HEADINGS`` such
    lines; it may start in lower case (an identifier). Its level is one below the deepest bookmark."""
    titles = {" ".join(t.split()).casefold() for items in outline.values() for _, t in items}
    chars: Counter = Counter()
    marked: list[float] = []
    for lines in pages:
        for line, size in lines or ():
            chars[size] += sum(not ch.isspace() for ch in line)
            if " ".join(SECTION_NUMBER.sub("", line).split()).casefold() in titles:
                marked.append(size)
    if sum(chars.values()) < MIN_SIZED_CHARS or not marked:
        return {}
    body = chars.most_common(1)[0][0]
    floor, ceiling = max(body * HEADING_RATIO, body + MIN_HEADING_STEP), min(marked)
    found: dict[float, list[tuple[int, str]]] = {}
    for i, lines in enumerate(pages):
        for line, size in lines or ():
            text = clean_inline(line)
            if not floor <= size < ceiling or " ".join(text.split()).casefold() in titles:
                continue
            words = text.split()
            if (
                2 <= len(text) <= MAX_SUB_HEADING_CHARS
                and len(words) <= MAX_SUB_HEADING_WORDS
                and sum(ch.isalpha() for ch in text) >= 2
                and not _HEADING_END.search(text)
                and not _SENTENCE_STOP.search(text)
                and not _LEADERS.search(text)
            ):
                found.setdefault(size, []).append((i, text))
    depth = max(level for items in outline.values() for level, _ in items)
    out: dict[int, dict[str, int]] = {}
    for lines in found.values():
        if len(lines) >= MIN_SUB_HEADINGS:
            for i, text in lines:
                out.setdefault(i, {})[text] = depth + 1
    return out


def _same_words(a: str, b: str) -> bool:
    return a.casefold().split() == b.casefold().split()


def _emit_font_headings(
    b: TextBuilder, page_text: str, headings: dict[str, int], title: str | None = None
) -> None:
    """The page's text with its font-size headings: consecutive heading lines of one level are one heading
    wrapped over lines, unless a line starts with a section number: a title set in the type of the sections
    (reportlab's and many templates' Title and Heading 1 are both 18 pt) is followed by "1. Scope", a heading of
    its own, where both read as one ("Leave Policy 1. Scope"), or the lines so far spell the document's title
    (``title``, from its metadata: "Code of Conduct", then "Gifts and hospitality" in the same type)."""
    body: list[str] = []
    pending: tuple[int, list[str]] | None = None

    def flush_heading() -> None:
        nonlocal pending
        if pending is not None:
            b.heading(pending[0], " ".join(pending[1]))
            pending = None

    for raw in page_text.split("\n"):
        level = headings.get(clean_inline(raw))
        if level is None:
            flush_heading()
            body.append(raw)
            continue
        if body:
            b.block("\n".join(body))
            body.clear()
        if (
            pending is not None
            and pending[0] == level
            and not SECTION_NUMBER.match(clean_inline(raw))
            and not (title and _same_words(" ".join(pending[1]), title))
        ):
            pending[1].append(clean_inline(raw))
        else:
            flush_heading()
            pending = (level, [clean_inline(raw)])
    flush_heading()
    b.block("\n".join(body))
