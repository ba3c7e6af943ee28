"""MyST (Markdown for Sphinx) rewritten as the CommonMark a reader sees, before ``parse_markdown`` reads it.

Sphinx projects written in MyST (pip's docs, many others) use syntax that CommonMark keeps as text:

- roles, {ref}`text <target>` -> "text", {pypi}`name` -> "name", {pep}`517` -> "PEP 517"; code-like roles
  ({file}, {command}, {envvar}, Python objects...) -> `text`, as Sphinx sets them in a code font;
- directives, ```{name} argument ... ``` (or ~~~ / :::, nested with longer fences): admonitions keep their body
  labelled ("Note: ...", "Changed in version 20.0: ..."), {code-block} becomes a normal code fence, structural
  ones ({toctree}, {include}, {contents}, autodoc...) go; ":option: value" lines and YAML option blocks never
  reach the text;
- tabs ({tab} of sphinx-inline-tabs, {tab-item} in a sphinx-design {tab-set}, sphinx-tabs' {tabs} with {tab},
  {group-tab}, {code-tab}): each tab's name becomes a heading of its own (``TAB`` events), so "on Linux" finds the
  Linux tab and a quote names its tab; the heading ends with the set (``END`` events), and the text after a set
  is the enclosing section's again. Tabs inside a list item are labelled "Linux: ..." instead;
- "(label)=" targets, "% comments" and "+++" block breaks go.

A document without MyST signs is returned unchanged, so plain Markdown never pays for this nor changes.
"""

from __future__ import annotations

import bisect
import re

TAB, END = "tab", "end"  # events: a tab's heading line; the blank line that ends its set
_MAX_DEPTH = 16  # directives nested deeper are kept as text (a hostile file cannot exhaust the stack)

_SIGN = re.compile(
    r"^ *(`{3,}|~{3,}|:{3,}) *\{[A-Za-z][\w:+.-]*\}|^\([^()\s]+\)= *$|(?<![\w`\\])\{[A-Za-z][\w:+.-]*\}`[^`\s]",
    re.M,
)
# a fence, also on a list item's first line ("- ```")
_FENCE = re.compile(r"^( *(?:(?:[-*+]|\d{1,9}[.)]) +)?)(`{3,}|~{3,}|:{3,})(.*)$")
_DIRECTIVE = re.compile(r"^\s*\{([A-Za-z][\w:+.-]*)\}\s*(.*?)\s*$")
_OPTION = re.compile(r"^\s*:[\w-]+:(\s.*)?$")
_TARGET = re.compile(r"^\([^()\s]+\)= *$")
_MYST_LINE = re.compile(r"^(\([^()\s]+\)= *|%.*|\+\+\+.*)$")  # target, comment, block break
_BLOCK_START = re.compile(r"^\s*([-*+](\s|$)|\d+[.)](\s|$)|#|>|`{3}|~{3}|:{3}|\||\s{4})")
_DEFINITION = re.compile(r"^: +(\S.*)$")  # a definition list's definition (MyST's deflist)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_BACKTICKS = re.compile(r"`+")
_ROLE_BEFORE = re.compile(r"(?<!\\)\{([A-Za-z][\w:+.-]*)\}\Z")
_TITLED = re.compile(r"^(.*?)\s*<([^<>]*)>$", re.S)

ADMONITIONS = {
    "note": "Note", "warning": "Warning", "tip": "Tip", "important": "Important", "caution": "Caution",
    "danger": "Danger", "attention": "Attention", "hint": "Hint", "error": "Error", "seealso": "See also",
    "todo": "To do",
}  # fmt: skip
VERSIONS = {
    "versionadded": "New in version", "versionchanged": "Changed in version",
    "deprecated": "Deprecated since version", "versionremoved": "Removed in version",
}  # fmt: skip
# a title (the argument) labels the body
TITLED = {"admonition", "dropdown", "topic", "sidebar", "card", "grid-item-card", "table"}
# the argument is the text itself
ARGUMENT_TEXT = {"rubric", "centered"}
CODE = {"code-block", "code", "sourcecode", "code-cell", "parsed-literal", "doctest", "testcode", "testoutput",
        "jupyter-execute", "ipython", "prompt", "math", "graphviz", "mermaid", "plantuml", "productionlist"}  # fmt: skip
CODE_LANG = {"code-block", "code", "sourcecode", "code-cell"}  # the argument is the language
# no text of their own (or text that lives in another file)
STRUCTURAL = {
    "toctree", "contents", "include", "literalinclude", "image", "raw", "index", "meta", "highlight",
    "tabularcolumns", "currentmodule", "module", "sectionauthor", "codeauthor", "moduleauthor", "default-role",
    "default-domain", "program-output", "command-output", "bibliography", "footbibliography", "rst-class",
    "cssclass", "sectnum", "header", "footer", "target-notes", "title", "tableofcontents", "argparse", "click",
}  # fmt: skip
# API objects: the argument is a signature that names the body
OBJECTS = {"function", "class", "method", "attribute", "data", "exception", "describe", "object", "option",
           "envvar", "confval", "decorator", "property", "staticmethod", "classmethod", "type", "macro"}  # fmt: skip
# roles whose text is all shown ("List<T>" is no "title <target>")
UNTITLED_ROLES = {"code", "samp", "file", "kbd", "command", "program", "math", "abbr", "sup", "sub", "literal",
                  "regexp", "makevar", "mailheader", "guilabel", "menuselection", "dfn", "strong", "emphasis"}  # fmt: skip
# R Markdown's and Quarto's code chunks are fenced as ```{r} and ```{python}: code, not MyST directives
ENGINES = {"r", "python", "py", "bash", "sh", "sql", "julia", "ojs", "dot", "rcpp", "stan", "js", "css", "c",
           "cpp", "fortran", "octave", "perl", "ruby", "scala", "go", "rust", "matlab", "powershell"}  # fmt: skip
TABS = {"tab", "tab-item", "group-tab", "code-tab"}
# roles Sphinx sets in a code font
LITERAL_ROLES = {
    "code", "command", "file", "samp", "envvar", "option", "program", "kbd", "makevar", "mailheader", "regexp",
    "literal", "mod", "func", "class", "meth", "attr", "data", "exc", "obj", "const", "var", "type", "macro",
    "member", "struct", "union", "enum", "enumerator", "expr", "texpr", "confval",
}  # fmt: skip


def myst_to_markdown(text: str) -> tuple[str, dict[int, tuple[str, int]]]:
    """The text with MyST's roles, directives and lines rewritten (see the module docstring), and its events:
    output line number -> (TAB, set id) for a tab's heading line, (END, set id) for the blank line after a set."""
    if not _SIGN.search(text):
        return text, {}
    r = _Renderer(myst_lines=False)
    lines, events = r.render(text.split("\n"), depth=0, top=True)
    if not r.found:  # the signs were in code: plain Markdown, as written
        return text, {}
    # again with MyST's own lines ("% ..." is a comment, ": ..." a definition, only where the file is MyST)
    lines, events = _Renderer(myst_lines=True).render(text.split("\n"), depth=0, top=True)
    return "\n".join(lines), events


class _Renderer:
    def __init__(self, myst_lines: bool) -> None:
        self._sets = 0
        self._myst_lines = myst_lines
        self.found = False  # a role, a directive or a target outside code

    def render(self, lines: list[str], depth: int, top: bool) -> tuple[list[str], dict]:
        """Lines of one container (the document, or a directive's body without its indent)."""
        out: list[str] = []
        events: dict[int, tuple[str, int]] = {}
        para: list[str] = []  # text lines, not yet role-rewritten
        tab_set = None  # the id of the run of tabs being rendered, if any

        def flush() -> None:
            if para:
                kept = (
                    _definitions([x for x in para if not _MYST_LINE.match(x)]) if self._myst_lines else para
                )
                done = _roles("\n".join(kept))
                self.found = self.found or done != "\n".join(para) or any(_TARGET.match(x) for x in para)
                out.extend(done.split("\n"))
            para.clear()

        def end_set() -> None:
            nonlocal tab_set
            if tab_set is not None and top:
                events[len(out)] = (END, tab_set)
                out.append("")
            tab_set = None

        i = 0
        while i < len(lines):
            line = lines[i]
            m = _FENCE.match(line)
            if not m or (m.group(2)[0] == "`" and "`" in m.group(3)):
                if line.strip() and tab_set is not None:
                    flush()
                    end_set()
                para.append(line)
                i += 1
                continue
            lead, fence, info = m.group(1), m.group(2), m.group(3)
            indent = len(lead)
            d = _DIRECTIVE.match(info)
            if fence[0] == ":" and not d:  # a colon line is a fence only for a directive
                para.append(line)
                i += 1
                continue
            j = i + 1
            while j < len(lines) and not _closes(lines[j], fence):
                j += 1
            body = [_dedent(x, indent) for x in lines[i + 1 : j]]
            flush()
            if d and d.group(1).lower() in ENGINES:  # an R Markdown / Quarto chunk, not a directive
                d = None
            if not d or depth >= _MAX_DEPTH:  # a code fence: as written
                end_set()
                out.extend(lines[i : j + 1])
                i = j + 1
                continue
            self.found = True
            name, arg = d.group(1).lower(), d.group(2)
            is_tab = name in TABS
            if not is_tab or (name == "tab" and _has_option(body, "new-set")):
                end_set()
            here = top and indent == 0
            if is_tab:
                if tab_set is None:
                    self._sets += 1
                    tab_set = self._sets
                sub, sub_events = self._tab(name, arg, body, depth, here, tab_set)
            else:
                sub, sub_events = self._directive(name, arg, body, depth, here)
            for k, v in sub_events.items():
                events[len(out) + k] = v
            out.extend(
                (" " * indent if n else lead) + x if x.strip() or not n else "" for n, x in enumerate(sub)
            )
            i = j + 1
        flush()
        end_set()
        return out, events

    def _directive(
        self, name: str, arg: str, body: list[str], depth: int, top: bool
    ) -> tuple[list[str], dict]:
        body = _strip_options(body)
        base = name.rsplit(":", 1)[-1]
        if name in STRUCTURAL or base in STRUCTURAL or base.startswith("auto"):
            return [], {}
        if name in CODE:
            return _code(arg.split()[0] if arg and name in CODE_LANG else "", body), {}
        if name in ARGUMENT_TEXT:
            return [_roles(arg)] if arg else [], {}
        if name == "tab-set-code":  # code blocks as tabs named by their language
            body = [
                re.sub(r"^(\s*(`{3,}|~{3,}|:{3,}))\{(code-block|code|sourcecode)\}", r"\1{code-tab}", x)
                for x in body
            ]
        if name in ADMONITIONS:
            label, body = ADMONITIONS[name], ([arg] if arg else []) + body
        elif name in VERSIONS:
            version, _, rest = arg.partition(" ")
            label = f"{VERSIONS[name]} {version}".strip()
            body = ([rest] if rest else []) + body
        elif name in TITLED:
            label = _roles(arg)
        elif ":" in name or base in OBJECTS:
            label = f"`{arg}`" if arg else ""
        else:  # a container (grid, div, only, tab-set, eval-rst...) or a directive of this project's own
            label = ""
            if _console(body):
                return _code("", body), {}
        lines, events = self.render(body, depth + 1, top)
        return _labelled(label, lines, events, versioned=name in VERSIONS)

    def _tab(self, name: str, arg: str, body: list[str], depth: int, top: bool, set_id: int):
        body = _strip_options(body)
        label = arg
        if name == "code-tab":  # "{code-tab} py Python": a language and the tab's name
            lang, _, label = arg.partition(" ")
            label = label or lang
            lines, events = _code(lang, body), {}
        else:
            lines, events = self.render(body, depth + 1, top)
        label = _plain_label(_roles(label))
        if not label:
            return lines, events
        if not top:
            return _labelled(label, lines, events)
        shifted = {k + 1: v for k, v in events.items()}
        shifted[0] = (TAB, set_id)
        return [f"###### {label}", *lines], shifted


def _closes(line: str, fence: str) -> bool:
    s = line.strip()
    return len(s) >= len(fence) and s == fence[0] * len(s)


def _dedent(line: str, indent: int) -> str:
    n = len(line) - len(line.lstrip(" "))
    return line[min(n, indent) :]


def _has_option(body: list[str], option: str) -> bool:
    for line in body:
        if not _OPTION.match(line):
            return False
        if line.strip().startswith(f":{option}:"):
            return True
    return False


def _strip_options(body: list[str]) -> list[str]:
    """The body without its options: ":key: value" lines, or a YAML block between "---" lines, atop it."""
    if body and body[0].strip() == "---":
        end = next((k for k in range(1, len(body)) if body[k].strip() == "---"), None)
        if end is not None:
            return body[end + 1 :]
    k = 0
    while k < len(body) and _OPTION.match(body[k]):
        k += 1
    return body[k:]


def _definitions(lines: list[str]) -> list[str]:
    """A definition list's "Term" / ": definition" as one line "Term: definition" (a further definition of the
    term, or one after a blank line, loses its marker)."""
    out: list[str] = []
    merged = -1  # the index of the last "Term: definition" line
    for line in lines:
        m = _DEFINITION.match(line)
        if not m:
            out.append(line)
        elif out and out[-1].strip() and not out[-1].startswith(" ") and merged != len(out) - 1:
            term = out[-1].rstrip()
            out[-1] = term if term[-1] in ".:?!" else f"{term}:"
            if re.match(r"([-*+]|\d{1,9}[.)])\s", m.group(1)):  # a list: under its term
                out.append(f"  {m.group(1)}")
            else:
                out[-1] += f" {m.group(1)}"
            merged = len(out) - 1
        else:
            out.append(m.group(1))
    return out


def _console(body: list[str]) -> bool:
    """A shell or Python session (a project's own directive for commands, e.g. pip's {pip-cli})."""
    first = next((x.strip() for x in body if x.strip()), "")
    return first.startswith(("$ ", ">>> ", "C:\\>", "PS> "))


def _code(lang: str, body: list[str]) -> list[str]:
    while body and not body[-1].strip():
        body = body[:-1]
    while body and not body[0].strip():
        body = body[1:]
    runs = [len(r) for x in body for r in re.findall(r"^\s*(`{3,})", x)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return [fence + lang, *body, fence]


def _labelled(label: str, lines: list[str], events: dict, versioned: bool = False) -> tuple[list[str], dict]:
    """The body with its label first: "Note: text..." on its first line, or "Note:" alone above a list, a code
    block or a heading; a label ending in punctuation ("Why?") stands alone."""
    k = 0
    while k < len(lines) and not lines[k].strip():
        k += 1
    lines, events = lines[k:], {n - k: v for n, v in events.items() if n >= k}
    if not label:
        return lines, events
    if not lines:
        return ([f"{label}."] if versioned else []), {}
    alone = label[-1] in ".:?!" or _BLOCK_START.match(lines[0]) or 0 in events
    if alone:
        head = label if label[-1] in ".:?!" else f"{label}:"
        return [head, "", *lines], {n + 2: v for n, v in events.items()}
    return [f"{label}: {lines[0].lstrip()}", *lines[1:]], events


def _plain_label(s: str) -> str:
    return " ".join(s.replace("`", "").replace("*", "").split())


def _roles(text: str) -> str:
    """Each role replaced by the text Sphinx shows; code spans (and roles inside them) stay as written."""
    if "{" not in text or "`" not in text:
        return text
    out: list[str] = []
    pos = 0
    for start, end in _paragraphs(text):
        runs = [m for m in _BACKTICKS.finditer(text, start, end) if not _escaped(text, m.start())]
        by_len: dict[int, list[int]] = {}
        for n, m in enumerate(runs):
            by_len.setdefault(len(m.group()), []).append(n)
        n = 0
        while n < len(runs):
            m = runs[n]
            same = by_len[len(m.group())]
            k = bisect.bisect_right(same, n)
            if k == len(same):  # no closing run: literal backticks
                n += 1
                continue
            close = runs[same[k]]
            role = _ROLE_BEFORE.search(text, max(pos, m.start() - 80), m.start())
            if role:
                out.append(text[pos : role.start()])
                out.append(role_text(role.group(1), text[m.end() : close.start()]))
                pos = close.end()
            n = same[k] + 1
    out.append(text[pos:])
    return "".join(out)


def _paragraphs(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _BLANK_LINE.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return spans


def _escaped(text: str, at: int) -> bool:
    n = 0
    while at - n - 1 >= 0 and text[at - n - 1] == "\\":
        n += 1
    return n % 2 == 1


_PY_ROLES = {"mod", "func", "class", "meth", "attr", "data", "exc", "obj", "const"}
_INTERSPHINX = re.compile(r"^[A-Za-z][\w-]*:(?=[~\w])(?!\S*\s)")


def role_text(name: str, content: str) -> str:
    """What Sphinx shows for a role: the title of "title <target>", else the target ("~a.b.c" shows "c")."""
    base = name.lower().rsplit(":", 1)[-1]
    content = " ".join(content.split())
    m = None if base in UNTITLED_ROLES else _TITLED.match(content)
    if (
        m
        and m.group(1)
        and content[m.end(1)] == "<"
        and " " not in m.group(1)
        and m.group(2) == m.group(2).upper()
    ):
        # "IMPORTED_LOCATION_<CONFIG>", "List<T>": a name with a placeholder, not "title <target>"; a target
        # in lower case ("Guide<guide>", "os.path<os.path>") is one: Sphinx needs no space before the "<"
        m = None
    if m and m.group(1):
        text = m.group(1)
    else:
        text = m.group(2) if m else content
        if base not in UNTITLED_ROLES:  # "!" and "~" are cross-reference syntax; ``~`` is a tilde
            text = text.lstrip("!")
            if (
                base in _PY_ROLES
            ):  # an intersphinx project's name: "py2:types.ClassType" shows "types.ClassType"
                text = _INTERSPHINX.sub("", text, count=1)
            if text.startswith("~"):
                text = text[1:].rsplit(".", 1)[-1]
        if base == "doc":  # Sphinx shows the page's title, which lives in that page; its name says most
            text = text.rstrip("/").rsplit("/", 1)[-1]
        if base in ("pep", "rfc") and text[:1].isdigit():
            text = f"{base.upper()} {text}"
    text = text.replace("\\<", "<").replace("\\>", ">")
    if base in ("guilabel", "menuselection"):
        text = text.replace("&&", "\0").replace("&", "").replace("\0", "&").replace("-->", ">")
    if base in LITERAL_ROLES or name.lower().startswith(("py:", "c:", "cpp:", "js:")):
        fence = "`" * (max((len(r) for r in re.findall("`+", text)), default=0) + 1)
        pad = " " if text.startswith("`") or text.endswith("`") else ""
        return f"{fence}{pad}{text}{pad}{fence}"
    return text
