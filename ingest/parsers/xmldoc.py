"""XML: DocBook manuals as headings and paragraphs, any other well-formed XML as its text, one element a line.

Read without tags: DocBook's sections (book, chapter, section, sect1, refentry...) become headings from their
titles, its block elements (para, programlisting, lists, tables...) paragraphs; any other XML (devhelp indexes,
W3C specs, configuration) its text, each element that is not inside running text on a line of its own, and its
attributes only where the file holds no text at all. Entities: the file's own declarations and HTML's names
expanded here, bounded (``_MAX_ENTITY``); the parser itself expands none, loads no DTD and reaches no network
(``base.xml_parser``). XML that is not well formed is read as plain text, as before.
"""

from __future__ import annotations

import html
import re

from lxml import etree

from .base import ParsedDocument, ParseError, TextBuilder, clean_inline, rows_as_text, xml_parser
from .text import decode_text, parse_text

_XML_EXT = (".xml", ".docbook", ".dbk", ".devhelp", ".devhelp2", ".page", ".xsd", ".xsl", ".xslt", ".rss",
            ".atom", ".plist")  # fmt: skip
_MAX_ENTITY = 10_000  # characters one entity may expand to
_MAX_ENTITY_DEPTH = 8
# characters all entity references of a file may expand to together: 4 x the file's size, at least this (many
# references to one 10,000-character entity would otherwise turn a small file into gigabytes of text)
_MIN_EXPANSION = 1 << 20
_ENTITY_REF = re.compile(r"&([A-Za-z_][\w.-]*);")
_TAG = re.compile(r"<[^<>]*>")
_SPACES = re.compile(r"\s+")

DOCBOOK_NS = "http://docbook.org/ns/docbook"
_SECTIONS = {
    "set", "book", "part", "chapter", "appendix", "preface", "article", "section", "sect1", "sect2", "sect3",
    "sect4", "sect5", "simplesect", "refentry", "refsect1", "refsect2", "refsect3", "refsection",
    "refsynopsisdiv", "reference", "glossary", "bibliography", "index", "colophon", "dedication",
    "acknowledgements",
}  # fmt: skip
_BLOCKS = {
    "para", "simpara", "formalpara", "blockquote", "listitem", "itemizedlist", "orderedlist", "variablelist",
    "simplelist", "member", "procedure", "step", "substeps", "example", "informalexample", "figure",
    "informalfigure", "sidebar", "abstract", "legalnotice", "refnamediv", "funcsynopsis", "cmdsynopsis",
    "funcprototype", "glosslist", "glossentry", "glossdef", "qandaset", "qandaentry", "question", "answer",
    "bridgehead", "epigraph", "caption", "calloutlist", "callout", "msgset", "segmentedlist", "seglistitem",
    "equation", "informalequation", "mediaobject", "textobject", "partintro", "address", "attribution",
    "tbody", "thead",
}  # fmt: skip
_ADMONITIONS = {
    "note": "Note",
    "warning": "Warning",
    "tip": "Tip",
    "important": "Important",
    "caution": "Caution",
}
_VERBATIM = {"programlisting", "screen", "literallayout", "synopsis", "funcsynopsisinfo", "classsynopsisinfo"}
_SKIP = {
    "title", "subtitle", "titleabbrev", "indexterm", "remark", "refmeta", "imageobject", "videoobject",
    "audioobject", "anchor", "colspec", "spanspec", "tocentry", "toc", "lot",
}  # fmt: skip
_INFO = re.compile(r"(info|bookinfo|articleinfo|\w+info)$")


def looks_like_xml(text: str, filename: str | None) -> bool:
    """An XML declaration or a DOCTYPE, or a file named as XML (``_XML_EXT``) that opens with a tag; not when
    the root element is <html> (XHTML is read as HTML)."""
    head = text[:8192].lstrip("\ufeff \t\r\n")
    if not head.startswith("<"):
        return False
    root = _root_name(head).lower()
    if root == "html" or root.endswith(":html"):
        return False
    return head.startswith(("<?xml", "<!DOCTYPE")) or (filename or "").lower().endswith(_XML_EXT)


_DOCTYPE = re.compile(r"<!DOCTYPE\s+([^\s\[>]+)")
_PROLOG = re.compile(r"<\?.*?\?>|<!--.*?-->", re.S)
_FIRST_TAG = re.compile(r"<([A-Za-z_][\w:.-]*)")


def _root_name(head: str) -> str:
    """The root element's name, from the DOCTYPE or the first tag after the prolog ("" if none is seen)."""
    head = _PROLOG.sub("", head)
    m = _DOCTYPE.match(head.lstrip()) or _FIRST_TAG.search(head)
    return m.group(1) if m else ""


def parse_xml(data: bytes) -> ParsedDocument:
    """DocBook as headings and paragraphs, other XML as its text (see the module docstring); XML that is not
    well formed as plain text."""
    try:
        root = etree.fromstring(data, xml_parser())
    except (etree.XMLSyntaxError, ValueError):
        return parse_text(decode_text(data))
    if root is None:
        return parse_text(decode_text(data))
    entities = _Entities(root, budget=max(_MIN_EXPANSION, 4 * len(data)))
    b = TextBuilder()
    if _is_docbook(root):
        w = _DocBook(b, entities)
        w.element(root, 0)
        w.flush()
    else:
        _generic(root, b, entities)
    return b.build("xml", None, None)


def _local(el) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _is_docbook(root) -> bool:
    ns = etree.QName(root).namespace
    if ns == DOCBOOK_NS:
        return True
    if ns or _local(root) not in _SECTIONS:
        return False
    if "docbook" in (root.getroottree().docinfo.public_id or "").lower():
        return True
    return next(root.iter("para", "simpara", "title"), None) is not None


class _Entities:
    """Entity references the parser left unexpanded: the file's internal declarations, expanded here recursively
    with bounds (depth, length; a "billion laughs" file is refused by the parser before this); HTML's named
    entities (DocBook's ISO sets: &mdash;, &nbsp;); others kept as written. External (SYSTEM) entities are never
    read."""

    def __init__(self, root, budget: int) -> None:
        self.budget = budget
        dtd = root.getroottree().docinfo.internalDTD
        self.decls: dict[str, str] = {}
        for decl in dtd.iterentities() if dtd is not None else ():
            if decl.system_url is None and decl.content is not None:
                self.decls[decl.name] = decl.content
        self.done: dict[str, str] = {}

    def text(self, name: str, depth: int = 0) -> str:
        value = self._expand(name, depth)
        self.budget -= len(value)
        if self.budget < 0:
            raise ParseError(
                "The XML file's entity references expand to far more text than the file holds (an entity "
                "expansion attack or a broken file); it was not read."
            )
        return value

    def _expand(self, name: str, depth: int) -> str:
        if name in self.done:
            return self.done[name]
        if name in self.decls and depth < _MAX_ENTITY_DEPTH:
            self.done[name] = ""  # a reference to itself expands to nothing
            value = _ENTITY_REF.sub(
                lambda m: self.text(m.group(1), depth + 1), self.decls[name][:_MAX_ENTITY]
            )
            value = html.unescape(_TAG.sub("", value))[:_MAX_ENTITY]
        else:
            value = html.unescape(f"&{name};")
        self.done[name] = value
        return value


def _generic(root, b: TextBuilder, entities: _Entities) -> None:
    """Any XML: its text, a line per element that is not inside running text; attributes where there is no
    text. Each child of the root is a paragraph."""
    has_text = any(t.strip() for t in root.itertext())
    if not has_text and root.attrib:
        b.block(_attributes(root))
    for part in [root] if _mixed(root) else root:
        lines: list[str] = []
        _lines(part, lines, entities, has_text)
        b.block("\n".join(line for line in (clean_inline(x) for x in lines) if line))


def _attributes(el) -> str:
    return "; ".join(f"{etree.QName(k).localname}: {v}" for k, v in el.attrib.items() if v.strip())


def _lines(el, lines: list[str], entities: _Entities, has_text: bool) -> None:
    if not isinstance(el.tag, str):
        return
    if not has_text:
        if el.attrib:
            lines.append(_attributes(el))
        for child in el:
            _lines(child, lines, entities, has_text)
    elif _mixed(el):  # running text: the element is one line, its inline children words in it
        lines.append(_inline(el, entities))
    else:  # only elements inside (whitespace between them): each on its own lines
        for child in el:
            _lines(child, lines, entities, has_text)


def _mixed(el) -> bool:
    """Whether ``el`` holds running text around its children (or has none), so they are words in a line."""
    if len(el) == 0:
        return True
    return bool((el.text or "").strip()) or any((c.tail or "").strip() or c.tag is etree.Entity for c in el)


def _inline(el, entities: _Entities) -> str:
    parts = [el.text or ""]
    for child in el:
        if child.tag is etree.Entity:
            parts.append(entities.text(child.name))
        elif isinstance(child.tag, str):
            parts.append(_inline(child, entities))
        parts.append(child.tail or "")
    return "".join(parts)


class _DocBook:
    """Depth-first walk of a DocBook document: sections to headings by nesting depth, blocks to paragraphs."""

    def __init__(self, b: TextBuilder, entities: _Entities) -> None:
        self.b = b
        self.entities = entities
        self.buf: list[str] = []

    def flush(self) -> None:
        text = "".join(self.buf)
        self.buf = []
        self.b.block("\n".join(line for line in (clean_inline(x) for x in text.split("\n")) if line))

    def element(self, el, depth: int) -> None:
        """``el`` and its content; ``depth`` is the number of sections around it."""
        name = _local(el)
        if name in _SECTIONS:
            self.flush()
            depth += 1
            self.b.heading(depth, _section_title(el, self.entities) or "")
            self.children(el, depth)
            self.flush()
        elif name in _SKIP or (_INFO.search(name) and name not in _BLOCKS):
            if _INFO.search(
                name
            ):  # a title page's abstract and legal notice are text; its names and dates not
                for part in el.iter("{*}abstract", "{*}legalnotice", "abstract", "legalnotice"):
                    self.element(part, depth)
        elif name in _VERBATIM:
            self.flush()
            self.b.block(_inline(el, self.entities))
        elif name in ("table", "informaltable"):
            self.flush()
            title = _child(el, "title")
            if title is not None:
                self.b.block(clean_inline(_inline(title, self.entities)))
            self.b.block("\n".join(rows_as_text(_rows(el, self.entities))))
        elif name in _ADMONITIONS:
            self.flush()
            self.buf.append(f"{_ADMONITIONS[name]}: ")
            title = _child(el, "title")
            if title is not None:
                self.buf.append(_inline(title, self.entities) + ". ")
            self.children(el, depth, block=False)
            self.flush()
        elif name == "varlistentry":
            self.flush()
            terms = [clean_inline(_inline(t, self.entities)) for t in el if _local(t) == "term"]
            self.buf.append(", ".join(t for t in terms if t) + ": ")
            for item in el:
                if _local(item) == "listitem":
                    self.children(item, depth, block=False)
            self.flush()
        elif name in _BLOCKS or name in ("row", "tr"):
            self.flush()
            if name == "listitem":
                self.buf.append("- ")
            if name == "formalpara":
                title = _child(el, "title")
                if title is not None:
                    self.buf.append(_inline(title, self.entities) + ". ")
            self.children(el, depth, block=name not in ("listitem", "formalpara", "callout", "step"))
            self.flush()
        else:
            self.text(el.text)
            self.children(el, depth, block=False, own_text=False)

    def children(self, el, depth: int, block: bool = True, own_text: bool = True) -> None:
        """The content of ``el``; with ``block`` False, paragraphs inside run together (a list item's text on
        its line)."""
        if own_text and _local(el) not in _SECTIONS:
            self.text(el.text)
        for child in el:
            if child.tag is etree.Entity:
                self.buf.append(self.entities.text(child.name))
            elif isinstance(child.tag, str):
                if not block and _local(child) in ("para", "simpara"):
                    self.text(_inline(child, self.entities) + " ")
                else:
                    self.element(child, depth)
            self.text(child.tail)

    def text(self, s: str | None) -> None:
        if s:
            self.buf.append(_SPACES.sub(" ", s))


def _child(el, name: str):
    return next((c for c in el if _local(c) == name), None)


def _section_title(el, entities: _Entities) -> str | None:
    """A section's title: its <title>, its info block's, or a reference page's name."""
    title = _child(el, "title")
    if title is None:
        info = next((c for c in el if _INFO.search(_local(c)) and _local(c) not in _BLOCKS), None)
        title = _child(info, "title") if info is not None else None
    if title is None and _local(el) == "refentry":
        meta = _child(el, "refmeta")
        title = _child(meta, "refentrytitle") if meta is not None else None
        if title is None:
            div = _child(el, "refnamediv")
            title = _child(div, "refname") if div is not None else None
    if title is None and _local(el) == "refsynopsisdiv":
        return "Synopsis"
    return clean_inline(_inline(title, entities)) if title is not None else None


def _rows(table, entities: _Entities) -> list[list[str]]:
    return [
        [_inline(cell, entities) for cell in row if _local(cell) in ("entry", "td", "th")]
        for row in table.iter()
        if _local(row) in ("row", "tr")
    ]
