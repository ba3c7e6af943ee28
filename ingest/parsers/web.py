"""HTML: the main text and its headings, without navigation, page chrome, forms or scripts.

lxml directly (not BeautifulSoup): ~5x faster on the Python documentation pages, same output.
"""

from __future__ import annotations

import re

import lxml.html
from lxml import etree

from .base import ParsedDocument, ParseError, TextBuilder, clean_inline, rows_as_text
from .text import decode_text

_DROP_TAGS = {
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form",
    "button", "select", "input", "textarea", "iframe", "svg", "canvas", "object", "embed", "dialog",
    "head",
}  # fmt: skip
_DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar"}
# Common page-chrome containers that are not marked up semantically (Sphinx, many CMS themes).
_DROP_CLASSES = {
    "sphinxsidebar", "related", "headerlink", "breadcrumb", "breadcrumbs", "skip-link", "cookie-banner",
    "footer", "navbar", "sidebar",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "blockquote",
    "figure", "figcaption", "address", "details", "summary", "tr", "hr", "body", "center", "html",
}  # fmt: skip
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)
_SPACES = re.compile(r"\s+")
_PARSER = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)


def parse_html(data: bytes) -> ParsedDocument:
    m = _META_CHARSET.search(data[:4096])
    text = decode_text(data, declared=m.group(1).decode("ascii") if m else None)
    try:
        root = lxml.html.document_fromstring(text.encode("utf-8"), parser=_PARSER)
    except (etree.ParserError, ValueError) as e:
        raise ParseError("The HTML file could not be read: it has no content.") from e
    title_el = root.find(".//title")
    title = clean_inline(title_el.text_content()) if title_el is not None else None
    drop = [el for el in root.iter() if not isinstance(el.tag, str) or _is_chrome(el)]
    for el in drop:
        if el.getparent() is not None:
            el.drop_tree()  # keeps the element's tail text, which belongs to its parent
    main = root.find(".//main")
    if main is None:
        found = root.xpath("//*[@role='main']")
        main = found[0] if found else root
    w = _Walker()
    w.walk(main)
    w.flush()
    return w.b.build("html", None, title or None)


def _is_chrome(el) -> bool:
    if el.tag.lower() in _DROP_TAGS:
        return True
    get = el.get
    if (get("role") or "").lower() in _DROP_ROLES or get("aria-hidden") == "true":
        return True
    cls = get("class")
    return bool(cls) and not _DROP_CLASSES.isdisjoint(cls.split())


class _Walker:
    """Depth-first walk that gathers inline text into blocks and turns h1-h6 into headings."""

    def __init__(self) -> None:
        self.b = TextBuilder()
        self.buf: list[str] = []

    def flush(self) -> None:
        text = "".join(self.buf)
        self.buf = []
        lines = [clean_inline(line) for line in text.split("\n")]
        self.b.block("\n".join(line for line in lines if line))

    def walk(self, el) -> None:
        if el.text:
            self.buf.append(_SPACES.sub(" ", el.text))
        for child in el:
            tag = child.tag.lower() if isinstance(child.tag, str) else ""
            if tag in _HEADINGS:
                self.flush()
                self.b.heading(_HEADINGS[tag], child.text_content())
            elif tag == "br":
                self.buf.append("\n")
            elif tag == "table":
                self.flush()
                self.b.block("\n".join(rows_as_text(_table_rows(child))))
            elif tag == "pre":
                self.flush()
                self.b.block(child.text_content())
            elif tag in _BLOCKS:
                self.flush()
                self.walk(child)
                self.flush()
            else:
                self.walk(child)
            if child.tail:
                self.buf.append(_SPACES.sub(" ", child.tail))


def _table_rows(table) -> list[list[str]]:
    rows = []
    for tr in table.iter("tr"):
        if next(tr.iterancestors("table"), None) is not table:
            continue  # a nested table's rows belong to its own cell
        rows.append(
            [c.text_content() for c in tr if isinstance(c.tag, str) and c.tag.lower() in ("td", "th")]
        )
    return rows
