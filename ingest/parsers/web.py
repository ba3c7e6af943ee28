"""HTML: the main text and its headings, without navigation, page chrome, forms or scripts."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Comment, NavigableString, Tag

from .base import ParsedDocument, ParseError, TextBuilder, clean_inline, rows_as_text
from .text import decode_text

_DROP_TAGS = (
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form",
    "button", "select", "input", "textarea", "iframe", "svg", "canvas", "object", "embed", "dialog",
)  # fmt: skip
_DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar"}
# Common page-chrome containers that are not marked up semantically (Sphinx, many CMS themes).
_DROP_CLASSES = {
    "sphinxsidebar",
    "related",
    "headerlink",
    "breadcrumb",
    "breadcrumbs",
    "skip-link",
    "cookie-banner",
    "footer",
    "navbar",
    "sidebar",
}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "blockquote", "pre",
    "figure", "figcaption", "address", "details", "summary", "tr", "hr", "body", "center",
}  # fmt: skip
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


def parse_html(data: bytes) -> ParsedDocument:
    m = _META_CHARSET.search(data[:4096])
    text = decode_text(data, declared=m.group(1).decode("ascii") if m else None)
    try:
        soup = BeautifulSoup(text, "lxml")
    except Exception as e:
        raise ParseError("The HTML file could not be read.") from e
    title_tag = soup.find("title")
    title = clean_inline(title_tag.get_text(" ")) if title_tag else None
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for tag in soup.find_all(True):
        if tag.decomposed or tag.attrs is None:
            continue
        role = (tag.get("role") or "").lower()
        classes = set(tag.get("class") or [])
        if role in _DROP_ROLES or classes & _DROP_CLASSES or tag.get("aria-hidden") == "true":
            tag.decompose()
    root = soup.find("main") or soup.find(attrs={"role": "main"}) or soup.body or soup
    w = _Walker()
    w.walk(root)
    w.flush()
    return w.b.build("html", None, title or None)


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

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                self.buf.append(re.sub(r"\s+", " ", str(child)))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name in _HEADINGS:
                self.flush()
                self.b.heading(_HEADINGS[name], child.get_text(" "))
            elif name == "br":
                self.buf.append("\n")
            elif name == "table":
                self.flush()
                self.b.block("\n".join(rows_as_text(_table_rows(child))))
            elif name == "pre":
                self.flush()
                self.b.block(child.get_text())
            elif name in _BLOCKS:
                self.flush()
                self.walk(child)
                self.flush()
            else:
                self.walk(child)


def _table_rows(table: Tag) -> list[list[str]]:
    rows = []
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue  # a nested table's rows belong to its own cell
        rows.append([c.get_text(" ") for c in tr.find_all(["th", "td"], recursive=False)])
    return rows
