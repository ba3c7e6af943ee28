"""reStructuredText (docutils' and Sphinx's markup: Python packages' READMEs and docs, CMake's manual, the AWS
CLI's examples) read as docutils or Sphinx shows it, without docutils.

Read as Markdown, a page was its markup: ".. note::", ":ref:`text <target>`" and "`PEP 8 <https://...>`_" in
passages and quotes, a toctree's entries, comments and raw HTML as text, and no section title a heading (RST
underlines titles with ~ ^ " and more, and overlines them too).

Here:
- section titles, underlined or over- and underlined with any punctuation, are headings, each style's level
  the order in which it first appears (as docutils decides levels);
- paragraphs keep their lines; inline markup is the text shown: roles as Sphinx shows them (``role_text``, as
  for MyST), `text <url>`_ and name_ references as their text, then the web or mail address they lead to
  (``link_target``, as a Markdown link: "PEP 8 (https://peps.python.org/pep-0008/)"; named and anonymous
  references through their targets), substitutions replaced, emphasis without its stars, ``literals`` as `code`;
- bullet and enumerated lists, definition lists ("term: definition"), field lists ("Author: Ana"), option lists
  ("-v, --verbose: Say more.") and line blocks are lines;
- literal blocks ("::"), doctests and code directives are fenced code (as MyST's), admonitions labelled
  ("Note: ..."), version notes ("New in version 2.1: ..."), API objects led by their signature;
- grid and simple tables, list-table and csv-table are rows that name their columns (``rows_as_text``);
- comments, targets, substitution definitions and directives that show no text of their own (toctree,
  include, raw, image, meta, contents, index, ...) are dropped.

The title is a ":title:" field atop the file or a title directive, else the first section title. This is a
reader, not docutils: a project's own directives show their body, its own roles their text.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

from .base import ParsedDocument, ParseError, TextBuilder, link_target, metadata_title, rows_as_text
from .myst import (
    ADMONITIONS,
    ARGUMENT_TEXT,
    CODE,
    CODE_LANG,
    OBJECTS,
    STRUCTURAL,
    TITLED,
    VERSIONS,
    role_text,
)

_MAX_DEPTH = 24  # blocks nested deeper are kept as text (a hostile file cannot exhaust the stack)

# --- detection -------------------------------------------------------------------------------------------------
_SIGNS = (
    re.compile(r"^ *\.\. [A-Za-z][\w:+.-]*::(?: |$)", re.M),  # a directive
    re.compile(r"^ *\.\. _[^\n:`]+:(?: |$)|^ *\.\. _`[^`\n]+`:|^__ \S", re.M),  # a hyperlink target
    re.compile(r"^ *\.\. \|[^|\n]+\| [\w:.+-]+::", re.M),  # a substitution definition
    re.compile(r"(?<![\w`]):[A-Za-z][\w+.-]*(?::[A-Za-z][\w+.-]*)*:`[^`\n]+`"),  # a role
    re.compile(r"`[^`\n]+ <[^<>\n]+>`__?(?!\w)"),  # a hyperlink reference with its target
    re.compile(r"::\n[ \t]*\n(?: {2,}|\t)\S"),  # a literal block after "::"
    re.compile(r"^([=\-~#*+^\"'`:.])\1{2,}\n.+\n\1{3,} *$", re.M),  # an overlined title
    re.compile(
        r"(?<![\w`])``[^`\s][^`\n]*``(?![\w`])"
    ),  # an inline literal (Markdown's are in single backticks)
)
_MARKDOWN = re.compile(r"^ {0,3}(#{1,6} \S|```|~~~)|\]\([^)\s]+\)", re.M)


def looks_like_rst(text: str) -> bool:
    """Whether text is clearly reStructuredText: at least three of its signs (directives, targets, substitution
    definitions, roles, `text <url>`_ references, "::" literal blocks, overlined titles, ``literals``) of two kinds or more,
    and more of them than of Markdown's (# headings, ``` fences, [text](url) links). Underlined titles and
    *emphasis* are not signs: plain text and Markdown have them too."""
    sample = text[:65536]
    counts = [len(sign.findall(sample)) for sign in _SIGNS]
    total = sum(counts)
    return sum(1 for c in counts if c) >= 2 and total >= 3 and len(_MARKDOWN.findall(sample)) < total


# --- block syntax ----------------------------------------------------------------------------------------------
_ADORNMENT = re.compile(r"([!-/:-@\[-`{-~])\1+[ \t]*$")  # one punctuation character repeated
_BULLET = re.compile(r"([-*+\u2022\u2023\u2043])( +|$)")
_ENUM_VALUE = r"(?:\d+|#|[a-zA-Z]|[ivxlcdm]+|[IVXLCDM]+)"
_ENUM = re.compile(rf"(?:({_ENUM_VALUE})([.)])|\(({_ENUM_VALUE})\))( +|$)")
_FIELD = re.compile(r":(?![: ])((?:[^:\\\n]|\\.)*?)(?<![ \\]):(?: +(.*)|$)")
_OPT = r"(?:--?[A-Za-z0-9][\w-]*|/[A-Za-z0-9]\w*)(?:[ =](?:<[^<>]+>|[A-Za-z_][\w.-]*))?"
_OPTION = re.compile(rf"({_OPT}(?:, {_OPT})*)(?:  +(\S.*))?$")
_DIRECTIVE = re.compile(r"([A-Za-z0-9](?:[\w+.-]|:(?!:))*)::(?:[ \t]+(.*))?$")
_SUBSTITUTION_DEF = re.compile(r"\|([^|\n]+)\|[ \t]+([\w:.+-]+)::(?:[ \t]+(.*))?$")
_FOOTNOTE = re.compile(r"\[(#[\w.-]*|\*|\d+|[A-Za-z][\w.-]*)\](?:[ \t]+(.*))?$")
_DIRECTIVE_OPTION = re.compile(r":(?![: ])[^:\n]*(?<! ):(?:[ \t].*)?$")
_GRID_BORDER = re.compile(r"\+(?:-+\+)+[ \t]*$")
_GRID_SEPARATOR = re.compile(r"\+(?:[-=]+\+)+[ \t]*$")
_SIMPLE_BORDER = re.compile(r"=+(?: +=+)+[ \t]*$")
_SIMPLE_RULE = re.compile(r"[-=]+(?: +[-=]+)*[ \t]*$")
_CLASSIFIER = re.compile(r" +: +")
_SPACES = re.compile(r"[ \t]{2,}")
_LIST_START = re.compile(r"(- |\d+\. |\(\w+\) |```|[ \t])")
_FENCE_RUN = re.compile(r"^\s*(`{3,})")
# Fields atop a file that Sphinx reads as the page's metadata, not its text.
_META_FIELDS = {"orphan", "nosearch", "nocomments", "tocdepth", "title", "template"}
_BIBLIOGRAPHIC = {"author", "authors", "organization", "address", "contact", "version", "revision", "status",
                  "date", "copyright", "dedication", "abstract"}  # fmt: skip
# Directives that show nothing besides those MyST's reader drops (``STRUCTURAL``).
_HIDDEN = STRUCTURAL | {
    "role", "program", "target-notes", "inheritance-diagram", "youtube", "vimeo", "video", "iframe",
    "autosummary", "testsetup", "testcleanup", "jinja", "spelling:word-list",
}  # fmt: skip
_OBJECTS = OBJECTS | {"cmdoption", "directive", "event", "setting", "confval", "signature"}
_TABS = {"tab", "tab-item", "group-tab"}
_DIAGRAMS = {"digraph", "graph", "uml", "plantuml", "mermaid", "graphviz"}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _blank(line: str) -> bool:
    return not line.strip()


def _dedent(lines: list[str]) -> list[str]:
    n = min((_indent(x) for x in lines if x.strip()), default=0)
    return [x[n:] if x.strip() else "" for x in lines]


def _block_end(lines: list[str], i: int) -> int:
    """The end of the indented block from ``i``: its lines are indented or blank; trailing blank lines are not
    part of it."""
    j = i
    while j < len(lines) and (not lines[j].strip() or lines[j][0] == " "):
        j += 1
    while j > i and not lines[j - 1].strip():
        j -= 1
    return j


def _next_filled(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _fence(lang: str, body: list[str]) -> list[str]:
    while body and not body[-1].strip():
        body = body[:-1]
    while body and not body[0].strip():
        body = body[1:]
    if not body:
        return []
    runs = [len(m.group(1)) for x in body for m in [_FENCE_RUN.match(x)] if m]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return [fence + lang, *body, fence]


def _labelled(label: str, lines: list[str]) -> list[str]:
    """The body with its label first: "Note: text..." on its first line, or "Note:" alone above a list or a
    code block; a label ending in punctuation ("Why so fast?") stands alone."""
    while lines and not lines[0].strip():
        lines = lines[1:]
    if not label or not lines:
        return lines
    if label[-1] in ".:?!" or _LIST_START.match(lines[0]):
        return [label if label[-1] in ".:?!" else f"{label}:", "", *lines]
    return [f"{label}: {lines[0]}", *lines[1:]]


def _hang(head: str, lines: list[str]) -> list[str]:
    """``lines`` after ``head`` (a list marker, a term): the first on its line, the others indented under it."""
    if not lines:
        return [head.rstrip()]
    pad = " " * len(head)
    return [head + lines[0], *(pad + x if x else "" for x in lines[1:])]


def _term(head: str, lines: list[str]) -> list[str]:
    """A term (a definition list's, a field's, an option's) and its description: "term: description"."""
    head = head if head[-1:] in ".:?!" else f"{head}:"
    if lines and _LIST_START.match(lines[0]):
        return [head, *("  " + x if x else "" for x in lines)]
    if not lines:
        return [head[:-1] if head.endswith(":") else head]
    return [f"{head} {lines[0]}", *("  " + x if x else "" for x in lines[1:])]


# --- inline markup ---------------------------------------------------------------------------------------------
_ROLE = r"[A-Za-z][\w+.-]*(?::[A-Za-z][\w+.-]*)*"
_END = r"(?![\w`*|])"
_INLINE = re.compile(
    r"\\(?P<esc>[\s\S])"
    rf"|(?<![\w\\`])``(?P<literal>[^\s`](?:[^`]|`(?!`))*?)(?<!\s)``{_END}"
    rf"|(?<![\w\\:`]):(?P<role>{_ROLE}):`(?P<role_body>[^`\s](?:[^`]*[^`\s])?)`{_END}"
    rf"|(?<![\w\\])_`(?P<target>[^`\s](?:[^`]*[^`\s])?)`{_END}"
    rf"|(?<![\w\\`])`(?P<body>[^`\s](?:[^`]*[^`\s\\])?)`(?:(?P<ref>__?)|:(?P<suffix>{_ROLE}):)?{_END}"
    rf"|(?<![\w\\|])\|(?P<sub>[^|\s](?:[^|]*[^|\s])?)\|(?P<sub_ref>__?)?(?![\w|])"
    rf"|(?<![\w\\\[])\[(?P<note>#[\w.-]*|\*|\d+|[A-Za-z][\w.-]*)\]_(?!\w)"
    rf"|(?<![\w\\*])\*\*(?P<strong>[^\s*](?:[^*]*[^\s*\\])?)\*\*{_END}"
    rf"|(?<![\w\\*])\*(?P<em>[^\s*](?:[^*]*[^\s*\\])?)\*{_END}"
    r"|(?<![\w\\/@])(?P<word>[A-Za-z0-9](?:[A-Za-z0-9]|[-._+:](?=[A-Za-z0-9]))*)__?(?![\w@/])"
)
_UNFENCED = re.compile(r"(?<!`)(`+) ?([^`](?:.*?[^`])?) ?\1(?!`)")
_TITLED_REF = re.compile(r"^(.*?)\s*<([^<>]*)>$", re.S)
# hyperlink targets: ".. _name: uri", ".. _`a name`: uri" (the uri may go on over indented lines, or be another
# target's name: "other_"); anonymous ones ".. __: uri" and "__ uri", which anonymous references use in order
_ANONYMOUS_TARGET = re.compile(r"^ *(?:\.\. __:|__)(?: +(.*)|$)")
_NAMED_TARGET = re.compile(r"^ *\.\. _(?:`([^`\n]+)`|([^`:\n](?:[^:\n]|\\:)*)):(?: +(.*)|$)")
_REFERENCE_NAME = re.compile(r"^(?:`([^`]+)`|(\S+?))_$")
_UNICODE_CODE = re.compile(r"(?:0x|x|\\x|U\+|u|\\u|&#x)([0-9A-Fa-f]+);?$|&#(\d+);?$|(\d+)$")


def _unicode(arg: str) -> str:
    """The characters of a ``unicode`` substitution: "0xA9", "U+00A9", "&#169;" or text, up to a ".." comment."""
    out = []
    for token in arg.split(" .. ", 1)[0].split():
        m = _UNICODE_CODE.match(token)
        code = None if m is None else int(m.group(1), 16) if m.group(1) else int(m.group(2) or m.group(3))
        out.append(chr(code) if code is not None and 0 < code < 0x110000 else token)
    return "".join(out)


class _Reader:
    """Walks a document's lines into a TextBuilder: section titles as headings, each other block as text."""

    def __init__(self, lines: list[str]) -> None:
        self.b = TextBuilder()
        self.styles: list[tuple[str, bool]] = []  # title styles (character, overlined) in order of appearance
        self.subs = self._substitutions(lines)
        self.title: str | None = None
        self.highlight = ""  # the language a highlight directive gave the literal blocks after it
        self.notes = self.note_refs = 0  # auto-numbered footnotes and references to them, so far
        self.body_seen = False  # a block of text has been read (fields after it are no metadata)
        self.sub_depth = 0
        self.includes: list[str] = []  # the files include directives name
        self.targets, anonymous = _targets(lines)  # where references lead: name -> uri; uris in order
        self.anonymous = iter(anonymous)

    # --- the document ------------------------------------------------------------------------------------------
    def read(self, lines: list[str]) -> None:
        for kind, level, out in self._elements(lines, 0, top=True):
            if kind == "heading":
                self.b.heading(level, out[0])
            elif out:
                self.body_seen = True
                self.b.block("\n".join(out))

    def render(self, lines: list[str], depth: int) -> list[str]:
        """A nested block (a list item, a directive's body, a quote) as lines, blocks apart by a blank line."""
        if depth > _MAX_DEPTH:  # the words as they are, without the markup around them
            return [x.strip() for x in lines if not x.lstrip().startswith(("..", ":"))]
        out: list[str] = []
        for _, _, block in self._elements(lines, depth, top=False):
            if block:
                if out:
                    out.append("")
                out.extend(block)
        return out

    def _substitutions(self, lines: list[str]) -> dict[str, tuple[str, str]]:
        """Substitution definitions, wherever they are in the file: name -> (directive, its argument text)."""
        subs: dict[str, tuple[str, str]] = {}
        for i, line in enumerate(lines):
            if ".. |" not in line:
                continue
            s = line.lstrip()
            m = _SUBSTITUTION_DEF.match(s[3:]) if s.startswith(".. |") else None
            if not m:
                continue
            parts = [m.group(3) or ""]
            j = i + 1
            while j < len(lines) and lines[j].strip() and _indent(lines[j]) > _indent(line):
                if _DIRECTIVE_OPTION.match(lines[j].strip()):
                    break
                parts.append(lines[j].strip())
                j += 1
            subs[" ".join(m.group(1).split())] = (m.group(2).lower(), " ".join(p for p in parts if p))
        return subs

    # --- blocks --------------------------------------------------------------------------------------------------
    def _elements(self, lines: list[str], depth: int, top: bool) -> Iterator[tuple[str, int, list[str]]]:
        """The blocks of one container (lines at its own indentation), in docutils' order of recognition:
        ("heading", level, [text]) for a section title (only at the top), ("text", 0, lines) for any other."""
        i, n = 0, len(lines)
        while i < n:
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            if line[0] == " ":  # a block quote
                j = _block_end(lines, i)
                yield "text", 0, self.render(_dedent(lines[i:j]), depth + 1)
                i = j
                continue
            got = None
            for handler in _MARKED:  # blocks that open with a mark of their own
                got = handler(self, lines, i, depth, top)
                if got is not None:
                    break
            if got is None and (title := self._title(lines, i)):
                text, style, i = title
                shown = _UNFENCED.sub(r"\2", self.inline(text))  # a heading shows no code marks
                if top:
                    if style not in self.styles:
                        self.styles.append(style)
                    yield "heading", self.styles.index(style) + 1, [shown]
                else:
                    yield "text", 0, [shown]
                continue
            got = got or self._transition(lines, i) or self._definitions(lines, i, depth, top)
            out, i = got or self._paragraph(lines, i, depth)
            yield "text", 0, out

    def _title(self, lines: list[str], i: int) -> tuple[str, tuple[str, bool], int] | None:
        """A section title at ``i``: (its text, its style, the line after it), or None."""
        line, n = lines[i], len(lines)
        if _ADORNMENT.match(line) and line.strip() not in ("::", ".."):
            if i + 2 < n and lines[i + 1].strip() and not _ADORNMENT.match(lines[i + 1].strip()):
                under = lines[i + 2].rstrip()
                if under[:1] == line[0] and _ADORNMENT.match(under):
                    return lines[i + 1].strip(), (line[0], True), i + 3
            return None
        if i + 1 < n and _ADORNMENT.match(lines[i + 1]) and lines[i + 1].strip() not in ("::", ".."):
            under, text = lines[i + 1].rstrip(), line.strip()
            if len(under) >= len(text) or len(under) >= 4:
                return text, (under[0], False), i + 2
        return None

    @staticmethod
    def _transition(lines: list[str], i: int) -> tuple[list[str], int] | None:
        line = lines[i]
        if _ADORNMENT.match(line) and len(line.strip()) >= 4:
            return [], i + 1  # a transition (or an overline without its title): nothing to read
        return None

    def _bullets(self, lines, i, depth, top):
        m = _BULLET.match(lines[i])
        if not m:
            return None
        marker, out = m.group(1), []
        while i < len(lines):
            m = _BULLET.match(lines[i])
            if not m or m.group(1) != marker:
                break
            body, i = self._item(lines, i, m.end())
            out += _hang("- ", self.render(body, depth + 1))
            k = _next_filled(lines, i)
            if k < len(lines) and (mm := _BULLET.match(lines[k])) and mm.group(1) == marker:
                i = k
        return out, i

    def _item(self, lines: list[str], i: int, text_at: int) -> tuple[list[str], int]:
        """A list item's or a field's body, its first line's text after the marker first, and where it ends."""
        j = _block_end(lines, i + 1)
        rest = lines[i + 1 : j]
        return [lines[i][text_at:].strip(), *_dedent(rest)], j

    def _enumerated(self, lines, i, depth, top):
        m = _ENUM.match(lines[i])
        if not m or not self._item_shaped(lines, i, _ENUM):
            return None
        out, number, shape = [], 0, _enum_shape(m)
        while i < len(lines):
            m = _ENUM.match(lines[i])
            if not m or not self._item_shaped(lines, i, _ENUM) or _enum_shape(m) != shape:
                break
            number += 1
            value = m.group(1) or m.group(3)
            shown = str(number) if value == "#" else value
            marker = f"({shown})" if m.group(3) else f"{shown}{m.group(2)}"
            body, i = self._item(lines, i, m.end())
            out += _hang(marker + " ", self.render(body, depth + 1))
            k = _next_filled(lines, i)
            if k < len(lines) and (mm := _ENUM.match(lines[k])) and _enum_shape(mm) == shape:
                i = k
        return out, i

    @staticmethod
    def _item_shaped(lines: list[str], i: int, pattern: re.Pattern) -> bool:
        """docutils' rule for an enumerated item: the next line is blank, indented, another item, or none; "A.
        Smith wrote..." over two lines is a paragraph."""
        if i + 1 >= len(lines):
            return True
        nxt = lines[i + 1]
        return not nxt.strip() or nxt[0] == " " or bool(pattern.match(nxt))

    def _fields(self, lines, i, depth, top):
        if not _FIELD.match(lines[i]):
            return None
        out = []
        meta = top and not self.body_seen
        while i < len(lines):
            m = _FIELD.match(lines[i])
            if not m:
                break
            body, i = self._item(lines, i, m.start(2) if m.group(2) is not None else m.end())
            name = self.inline(m.group(1))
            rendered = self.render(body, depth + 1)
            if meta and name.lower() in _META_FIELDS:
                if name.lower() == "title" and rendered:
                    self.title = self.title or metadata_title(" ".join(rendered))
            else:
                if meta and name.lower() in _BIBLIOGRAPHIC:
                    name = name.capitalize()  # docutils labels the document's own fields: "Author: ..."
                out += _term(name, rendered)
            k = _next_filled(lines, i)
            if k < len(lines) and _FIELD.match(lines[k]):
                i = k
        return out, i

    def _options(self, lines, i, depth, top):
        if not self._option_item(lines, i):
            return None
        out = []
        while i < len(lines) and self._option_item(lines, i):
            m = _OPTION.match(lines[i])
            body, i = self._item(lines, i, m.start(2) if m.group(2) else len(lines[i]))
            out += _term(m.group(1), self.render(body, depth + 1))
            k = _next_filled(lines, i)
            if k < len(lines) and self._option_item(lines, k):
                i = k
        return out, i

    @staticmethod
    def _option_item(lines: list[str], i: int) -> bool:
        m = _OPTION.match(lines[i])
        if not m:
            return False
        if m.group(2):
            return True
        return i + 1 < len(lines) and lines[i + 1].strip() != "" and lines[i + 1][0] == " "

    def _line_block(self, lines, i, depth, top):
        if not (lines[i] == "|" or lines[i].startswith("| ")):
            return None
        out: list[str] = []
        while i < len(lines) and (lines[i] == "|" or lines[i].startswith("| ")):
            text = lines[i][2:]
            i += 1
            while i < len(lines) and lines[i].strip() and lines[i][0] == " ":  # a line continued
                text += " " + lines[i].strip()
                i += 1
            shown = self.inline(text)
            out.append(shown[: len(shown) - len(shown.lstrip())] + _SPACES.sub(" ", shown.strip()))
        return out, i

    def _doctest(self, lines, i, depth, top):
        if not lines[i].startswith(">>>"):
            return None
        j = i
        while j < len(lines) and lines[j].strip():
            j += 1
        return _fence("", lines[i:j]), j

    def _explicit(self, lines, i, depth, top):
        line = lines[i]
        if line.startswith("__ ") or line == "__":  # an anonymous target
            return [], _block_end(lines, i + 1)
        if not (line == ".." or line.startswith(".. ")):
            return None
        if line.strip() == ".." and (i + 1 >= len(lines) or not lines[i + 1].strip()):
            return [], i + 1  # an empty comment: the block after it is a quote, not its text
        j = _block_end(lines, i + 1)
        rest, body = line[3:].strip(), _dedent(lines[i + 1 : j])
        if rest.startswith("|") and _SUBSTITUTION_DEF.match(rest):
            return [], j  # read before the document (``_substitutions``)
        if m := _FOOTNOTE.match(rest):
            label = m.group(1)
            if label.startswith("#"):
                self.notes += 1
                label = str(self.notes)
            return _hang(f"[{label}] ", self.render([m.group(2) or "", *body], depth + 1)), j
        if rest.startswith("_"):
            return [], j  # a hyperlink target
        if m := _DIRECTIVE.match(rest):
            return self._directive(m.group(1), m.group(2) or "", body, depth), j
        return [], j  # a comment

    def _tables(self, lines, i, depth, top):
        if _GRID_BORDER.match(lines[i]):
            return self._grid(lines, i, depth)
        if _SIMPLE_BORDER.match(lines[i]):
            return self._simple(lines, i, depth)
        return None

    def _definitions(self, lines, i, depth, top):
        if not self._definition_item(lines, i):
            return None
        out = []
        while i < len(lines) and self._definition_item(lines, i):
            term, *classifiers = _CLASSIFIER.split(lines[i].strip())
            head = self.inline(term)
            if classifiers:
                head += " (" + ", ".join(self.inline(c) for c in classifiers) + ")"
            j = _block_end(lines, i + 1)
            out += _term(head, self.render(_dedent(lines[i + 1 : j]), depth + 1))
            i = j
            k = _next_filled(lines, i)
            if k < len(lines) and self._definition_item(lines, k):
                i = k
        return out, i

    def _definition_item(self, lines: list[str], i: int) -> bool:
        line = lines[i]
        if not line.strip() or line[0] == " " or i + 1 >= len(lines) or line.rstrip().endswith("::"):
            return False
        nxt = lines[i + 1]
        return bool(nxt.strip()) and nxt[0] == " " and not self._starts_other(lines, i)

    def _starts_other(self, lines: list[str], i: int) -> bool:
        """Whether the line at ``i`` starts a block other than a paragraph."""
        line = lines[i]
        return bool(
            _BULLET.match(line)
            or (_ENUM.match(line) and self._item_shaped(lines, i, _ENUM))
            or _FIELD.match(line)
            or self._option_item(lines, i)
            or line.startswith((">>>", "| ", ".. ", "__ "))
            or line in ("|", "..", "__")
            or _GRID_BORDER.match(line)
            or _SIMPLE_BORDER.match(line)
            or _ADORNMENT.match(line)
        )

    def _paragraph(self, lines: list[str], i: int, depth: int) -> tuple[list[str], int]:
        """A paragraph: its lines up to a blank or indented line (or a section title's line); one ending in "::"
        is followed by a literal block, kept as code."""
        j = i + 1
        while j < len(lines) and lines[j].strip() and lines[j][0] != " " and not self._title(lines, j):
            j += 1
        text = "\n".join(x.strip() for x in lines[i:j])
        literal = text.endswith("::")
        if literal:
            text = text[:-2].rstrip() if text == "::" or text[-3] in " \n" else text[:-1]
        out = [x for x in (_SPACES.sub(" ", x).strip() for x in self.inline(text).split("\n")) if x]
        if not literal:
            return out, j
        k = _next_filled(lines, j)
        if k >= len(lines) or k == j:
            return out, j
        if lines[k][0] == " ":
            end = _block_end(lines, k)
            code = _dedent(lines[k:end])
        elif not lines[k][0].isalnum() and not lines[k][0].isspace():  # a quoted literal block
            end = k
            while end < len(lines) and lines[end].strip() and lines[end][0] == lines[k][0]:
                end += 1
            code = lines[k:end]
        else:
            return out, j
        block = _fence(self.highlight, code)
        return ([*out, "", *block] if out else block), end

    # --- directives ------------------------------------------------------------------------------------------
    def _directive(self, name: str, arg: str, body: list[str], depth: int) -> list[str]:
        lname = name.lower()
        base = lname.rsplit(":", 1)[-1]
        if base == "title" and ":" not in lname:
            self.title = self.title or metadata_title(self.inline(arg))
            return []
        if base == "highlight" and ":" not in lname:
            self.highlight = arg.split()[0] if arg.split() else ""
            return []
        if lname in _HIDDEN or base in _HIDDEN:
            if base in ("include", "literalinclude") and arg:
                self.includes.append(arg)
            return []
        content_first = lname in ADMONITIONS or base in ("math", "epigraph", "highlights", "pull-quote")
        code = base in CODE or base in _DIAGRAMS  # an argument of one line at most: code may follow at once
        args, options, content = self._directive_parts(arg, body, content_first, one_line=code)
        if code:
            if base == "math":
                return _fence("", content)
            lang = args[0].split()[0] if args and base in CODE_LANG else ""
            if base == "parsed-literal":
                content = [self.inline(x) for x in content]
            return _fence(lang, content)
        if base == "code-tab":  # sphinx-tabs: "code-tab:: py Python"
            lang, _, label = " ".join(args).partition(" ")
            return _labelled(label or lang, _fence(lang, content))
        arg = " ".join(args)
        if base in ARGUMENT_TEXT:
            return [self.inline(arg)] if arg else []
        if base in ("csv-table", "list-table"):
            rows = (
                self._csv_rows(options, content) if base == "csv-table" else self._list_rows(content, depth)
            )
            shown = rows_as_text(rows)
            return [self.inline(arg), "", *shown] if arg and shown else shown
        if base == "table":
            lines = self.render(content, depth + 1)
            return [self.inline(arg), "", *lines] if arg and lines else lines
        lines = self.render(content, depth + 1)
        if lname in ADMONITIONS:
            return _labelled(ADMONITIONS[lname], lines)
        if base in VERSIONS:  # its text may start on the directive's line and go on below it, unindented
            version, _, rest = arg.partition(" ")
            if rest:
                first = args[0].partition(" ")[2]
                lines = self.render([first, *args[1:], *([""] if content else []), *content], depth + 1)
            label = f"{VERSIONS[base]} {version}".strip()
            return _labelled(label, lines) if lines else [f"{label}."]
        if base in TITLED or base in _TABS:
            return _labelled(self.inline(arg), lines)
        if ":" in lname or base in _OBJECTS or base.startswith(("auto", "doxygen")):
            # autodoc's and Doxygen's text lives in the code; what the page adds to it is shown
            label = ", ".join(f"`{a}`" for a in args)
            if not lines:  # docutils' "class" directive names a style; autodoc alone has nothing of ours
                return (
                    [label] if label and base != "class" and not base.startswith(("auto", "doxygen")) else []
                )
            return _labelled(label, lines)
        return lines  # a container (only, figure, container, compound...) or a project's own directive

    @staticmethod
    def _directive_parts(arg: str, body: list[str], content_first: bool, one_line: bool = False):
        """A directive's arguments (its first line and the lines after it up to a blank line or an option),
        options (":name: value" lines) and content. An admonition's text on its first line is content."""
        args = [arg] if arg else []
        k = 0
        if not content_first and not one_line:
            while k < len(body) and body[k].strip() and not _DIRECTIVE_OPTION.match(body[k]):
                args.append(body[k].strip())
                k += 1
        options: dict[str, str] = {}
        if not (content_first and arg):
            while k < len(body) and _DIRECTIVE_OPTION.match(body[k]):
                key, _, value = body[k][1:].partition(":")
                k += 1
                while k < len(body) and body[k].strip() and body[k][0] == " ":
                    value += " " + body[k].strip()
                    k += 1
                options[key.strip().lower()] = value.strip()
        content = body[k:]
        if content_first and arg:
            content = [arg, *content]
            args = []
        return args, options, _dedent(content)

    def _csv_rows(self, options: dict[str, str], content: list[str]) -> list[list[str]]:
        delim = options.get("delim", ",")
        delim = {"tab": "\t", "space": " ", "comma": ","}.get(delim, delim[:1] or ",")
        rows = []
        try:
            if options.get("header"):
                rows += list(csv.reader([options["header"]], delimiter=",", skipinitialspace=True))
            rows += list(csv.reader(io.StringIO("\n".join(content)), delimiter=delim, skipinitialspace=True))
        except csv.Error:
            return []
        return [[self.inline(c.strip()) for c in row] for row in rows]

    def _list_rows(self, content: list[str], depth: int) -> list[list[str]]:
        """A list-table's rows: the items of a bullet list of bullet lists."""
        return [
            [" ".join(x for x in self.render(cell, depth + 2) if x) for cell in _items(row)]
            for row in _items(content)
        ]

    # --- tables ----------------------------------------------------------------------------------------------
    def _grid(self, lines: list[str], i: int, depth: int) -> tuple[list[str], int]:
        j = i
        while j < len(lines) and lines[j][:1] in ("+", "|"):
            j += 1
        table = [x.rstrip() for x in lines[i:j]]
        bounds = [k for k, ch in enumerate(table[0]) if ch == "+"]
        rows: list[list[str]] = []
        header = 0
        group: list[str] = []
        for line in table[1:]:
            if _GRID_SEPARATOR.match(line):
                if group:
                    rows.append(self._grid_row(group, bounds, depth))
                    group = []
                if "=" in line:
                    header = len(rows)
                continue
            group.append(line)
        if group:
            rows.append(self._grid_row(group, bounds, depth))
        if header > 1:  # header rows read as one: each column's words together
            rows = [
                [" ".join(filter(None, col)) for col in zip(*rows[:header], strict=False)],
                *rows[header:],
            ]
        return rows_as_text(rows), j

    def _grid_row(self, group: list[str], bounds: list[int], depth: int) -> list[str]:
        """One row of a grid table: cells between the column lines all its lines have (a cell spanning columns
        has none between them; it is the first column's)."""
        present = [b for b in bounds[1:-1] if all(len(x) <= b or x[b] in "|+" for x in group)]
        edges = [bounds[0], *present, bounds[-1]]
        cells = []
        for a, b in zip(edges, edges[1:], strict=False):
            text = [x[a + 1 : b] for x in group]
            text = ["" if re.fullmatch(r"[-=]+", t.strip()) else t for t in text]
            cells.append(" ".join(x for x in self.render(_dedent(text), depth + 1) if x))
            cells += [""] * (bounds.index(b) - bounds.index(a) - 1)
        return cells

    def _simple(self, lines: list[str], i: int, depth: int) -> tuple[list[str], int] | None:
        border = lines[i].rstrip()
        starts = [m.start() for m in re.finditer(r"=+", border)]
        j, inner = i + 1, []
        while j < len(lines):
            if _SIMPLE_BORDER.match(lines[j]) or (lines[j].strip() and set(lines[j].strip()) == {"="}):
                if j + 1 >= len(lines) or not lines[j + 1].strip():
                    break
                inner.append(j)
            j += 1
        else:
            return None  # no closing border: not a table
        header_end = inner[0] if inner else None
        head: list[list[str]] = []
        rows: list[list[str]] = []
        for k in range(i + 1, j):
            line = lines[k]
            if not line.strip() or k in inner or _SIMPLE_RULE.match(line):
                continue
            cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=False)]
            target = head if header_end is not None and k < header_end else rows
            if target and not cells[0]:  # the first column blank: the row goes on
                target[-1] = [f"{x} {c}".strip() for x, c in zip(target[-1], cells, strict=False)]
            else:
                target.append(cells)
        if head:
            head = [[" ".join(filter(None, col)) for col in zip(*head, strict=False)]]
        table = [[self.inline(c) for c in row] for row in head + rows]
        return rows_as_text(table), j + 1

    # --- inline ------------------------------------------------------------------------------------------------
    def inline(self, text: str) -> str:
        """Inline markup as the text it shows."""
        if not any(ch in text for ch in "\\`*|_["):
            return text
        return _INLINE.sub(self._inline_one, text)

    def _inline_one(self, m: re.Match) -> str:
        g = m.groupdict()
        if g["esc"] is not None:
            return "" if g["esc"].isspace() else g["esc"]
        if g["literal"] is not None:
            return role_text("literal", g["literal"])
        if g["role"] is not None:
            return role_text(g["role"], g["role_body"])
        if g["target"] is not None:
            return g["target"]
        if g["body"] is not None:
            if g["suffix"]:
                return role_text(g["suffix"], g["body"])
            body = g["body"]
            if g["ref"]:
                titled = _TITLED_REF.match(body)
                if titled:
                    uri = "".join(titled.group(2).split())
                    href = self._resolve(_reference_name(uri)) if _reference_name(uri) is not None else uri
                    return self._linked(titled.group(1) or titled.group(2), href)
            shown = " ".join(body.split()) if "\n" in body else body
            return self._linked(shown, self._reference(shown, g["ref"])) if g["ref"] else shown
        if g["sub"] is not None:
            shown = self._substitute(" ".join(g["sub"].split()))
            ref = g["sub_ref"]
            return self._linked(shown, self._reference(" ".join(g["sub"].split()), ref)) if ref else shown
        if g["note"] is not None:
            label = g["note"]
            if label.startswith("#"):
                self.note_refs += 1
                label = str(self.note_refs)
            return f"[{label}]"
        if g["strong"] is not None:
            return self.inline(g["strong"])
        if g["em"] is not None:
            return self.inline(g["em"])
        return self._linked(g["word"], self._reference(g["word"], m.group(0)[len(g["word"]) :]))

    # --- hyperlink references ----------------------------------------------------------------------------------
    def _reference(self, name: str, marker: str) -> str | None:
        """Where a reference leads: "name_" to its named target, "name__" to the next anonymous target."""
        if marker == "__":
            return next(self.anonymous, None)
        return self._resolve(name)

    def _resolve(self, name: str) -> str | None:
        """The uri of the target ``name``, through indirect targets ("a_" -> "b_" -> uri); None for an
        internal target (a section label) or one the document does not define."""
        for _ in range(8):  # a bounded chain: a cycle of indirect targets leads nowhere
            uri = self.targets.get(_normalized(name))
            if not uri:
                return None
            if (name := _reference_name(uri)) is None:
                return uri
        return None

    @staticmethod
    def _linked(shown: str, href: str | None) -> str:
        """A reference as a reader sees it: its text, then its web or mail address where the text does not say it
        (``link_target``, as for Markdown and HTML links)."""
        target = link_target(href, shown)
        return f"{shown} ({target})" if target else shown

    def _substitute(self, name: str) -> str:
        kind, value = self.subs.get(name) or next(
            (v for k, v in self.subs.items() if k.lower() == name.lower()), ("", name)
        )
        if kind == "replace" and self.sub_depth < 4:
            self.sub_depth += 1
            try:
                return self.inline(value)
            finally:
                self.sub_depth -= 1
        if kind == "unicode":
            return _unicode(value)
        return value if not kind else ""  # an image, a date or another directive's output: not text


# docutils' order of recognition: lists, fields, options, doctests, line blocks, tables, explicit markup; then
# (``_Reader._elements``) section titles, transitions, definition lists and paragraphs
_MARKED = (
    _Reader._bullets,
    _Reader._enumerated,
    _Reader._fields,
    _Reader._options,
    _Reader._doctest,
    _Reader._line_block,
    _Reader._tables,
    _Reader._explicit,
)


def _normalized(name: str) -> str:
    """A reference name as docutils compares them: whitespace collapsed, case folded."""
    return " ".join(name.split()).casefold()


def _reference_name(uri: str) -> str | None:
    """The target name an indirect target or an embedded alias names ("other_", "`Other name`_"), else None (a
    uri; "\\_" at its end is an escaped underscore)."""
    if uri.endswith("\\_") or not (m := _REFERENCE_NAME.match(uri)):
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def _targets(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """The document's hyperlink targets: named ones (normalized name -> uri, "" for an internal target, the first
    definition of a name kept) and the anonymous ones' uris in document order."""
    named: dict[str, str] = {}
    anonymous: list[str] = []
    for i, line in enumerate(lines):
        if "_" not in line or not line.lstrip().startswith(("..", "__")):
            continue
        anon = _ANONYMOUS_TARGET.match(line)
        m = None if anon else _NAMED_TARGET.match(line)
        if not anon and not m:
            continue
        parts = [(anon or m).group(1 if anon else 3) or ""]
        j = i + 1
        while j < len(lines) and lines[j].strip() and _indent(lines[j]) > _indent(line):
            parts.append(lines[j].strip())
            j += 1
        uri = "".join("".join(parts).split())  # a uri wrapped over lines is one
        if anon:
            anonymous.append(uri)
        else:
            named.setdefault(_normalized((m.group(1) or m.group(2)).replace("\\:", ":")), uri)
    return named, anonymous


def _enum_shape(m: re.Match) -> tuple[str, str]:
    """An enumerator's format and sequence: "1." and "#." are one list, "(a)" another, "ii)" a third."""
    value = m.group(1) or m.group(3)
    kind = "1" if value == "#" or value.isdigit() else "a" if len(value) == 1 else "i"
    return ("()" if m.group(3) else m.group(2)), kind


def _items(lines: list[str]) -> list[list[str]]:
    """The items of a bullet list, each as its dedented lines."""
    items: list[list[str]] = []
    i = 0
    while i < len(lines):
        m = _BULLET.match(lines[i])
        if not m:
            i += 1
            continue
        j = _block_end(lines, i + 1)
        items.append([lines[i][m.end() :].strip(), *_dedent(lines[i + 1 : j])])
        i = j
    return items


def parse_rst(text: str) -> ParsedDocument:
    """A reStructuredText document as docutils shows it, its section titles as headings."""
    lines = [x.rstrip() for x in text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(8).split("\n")]
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    r = _Reader(lines)
    r.read(lines)
    try:
        return r.b.build("rst", None, r.title or r.b.first_heading)
    except ParseError:
        if not r.includes:
            raise
        names = ", ".join(r.includes[:3]) + (", ..." if len(r.includes) > 3 else "")
        raise ParseError(
            f"The document has no text of its own: it only includes {names}, which is not in it; upload the "
            "included file instead."
        ) from None
