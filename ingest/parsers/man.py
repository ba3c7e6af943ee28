"""Manual pages: troff source in the man(7) macros (most of /usr/share/man: GNU, curl, DocBook's and pod2man's
output) or BSD's mdoc(7) (OpenSSH), read as `man` shows them.

Read as plain text a page was its markup: ".B \\-\\-list" in quotes, "\\fB" in passages, no headings, and a
line of dashes in an example taken for a Markdown underline made "--- Example file ---" curl's title.

Here: .SH/.Sh sections and .SS/.Ss subsections are headings; an option's tag (.TP, .IP "tag", DocBook's term
paragraph over an indented block, mdoc's .It in a tag list) is a heading under its section, so a passage
says which option it describes; fonts, escapes and named characters are their text; examples keep their
lines; the title is the NAME line ("curl - transfer a URL"). Macro definitions, conditionals, comments and
layout requests are dropped. This is a reader, not a typesetter: a page that defines its own macros loses
what they would print.
"""

from __future__ import annotations

import re

from .base import ParsedDocument, ParseError, TextBuilder, clean_inline, rows_as_text

# --- detection -------------------------------------------------------------------------------------------------
_REQUEST = re.compile(r"^[.'][ \t]*([A-Za-z][A-Za-z0-9]?)\b")
_HEADER = {"TH", "Dd", "Dt"}
_BODY = {"SH", "Sh", "SS", "Ss", "PP", "LP", "TP", "IP", "Pp", "Nm", "Nd", "It", "B", "I", "BR", "Fl"}


_SO = re.compile(r"^\.[ \t]*so[ \t]+(\S+)[ \t]*$")


def man_link(text: str) -> str | None:
    """The page a link page names: a file of nothing but ".so man1/xz.1" (comments aside), as installed for a
    page's other names (xzcat.1 for xz.1); else None."""
    target = None
    for line in _lines(text[:4096]):
        if not line.strip():
            continue
        m = _SO.match(line)
        if m is None or target is not None:
            return None
        target = m.group(1)
    return target


def looks_like_man(text: str) -> bool:
    """A page opening (after comments) with .TH, or mdoc's .Dd/.Dt, followed by sections and paragraphs; or a
    link page (``man_link``)."""
    if not text.lstrip("\ufeff \t\r\n").startswith((".", "'", '\\"')):
        return False
    if man_link(text):
        return True
    header = body = 0
    for n, line in enumerate(_lines(text[:65536])):  # comments, macro definitions and conditionals gone
        if n > 400:
            break
        if not line.strip():
            continue
        m = _REQUEST.match(line)
        if m is None:
            if not header:
                return False  # text before the page's header: not a manual page
            continue
        name = m.group(1)
        header += name in _HEADER
        body += name in _BODY
        if header and body >= 2:
            return True
    return False


# --- escapes ---------------------------------------------------------------------------------------------------
_CHARS = {
    "hy": "-", "en": "\u2013", "em": "\u2014", "bu": "\u2022", "aq": "'", "dq": '"', "lq": "\u201c",
    "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "ga": "`", "ti": "~", "ha": "^", "rs": "\\", "sl": "/",
    "ba": "|", "br": "|", "co": "\u00a9", "rg": "\u00ae", "tm": "\u2122", "de": "\u00b0", "mu": "\u00d7",
    "di": "\u00f7", "+-": "\u00b1", "<=": "\u2264", ">=": "\u2265", "!=": "\u2260", "==": "\u2261",
    "->": "\u2192", "<-": "\u2190", "<>": "\u2194", "ua": "\u2191", "da": "\u2193", "if": "\u221e",
    "ul": "_", "ru": "_", "mi": "-", "pl": "+", "eq": "=", "lB": "[", "rB": "]", "lC": "{", "rC": "}",
    "la": "\u27e8", "ra": "\u27e9", "Fo": "\u00ab", "Fc": "\u00bb", "fo": "\u2039", "fc": "\u203a",
    "bq": "\u201e", "Bq": "\u201e", "ss": "\u00df", "sc": "\u00a7", "ps": "\u00b6", "ct": "\u00a2",
    "Eu": "\u20ac", "eu": "\u20ac", "Po": "\u00a3", "Ye": "\u00a5", "at": "@", "sh": "#", "dd": "\u2021",
    "dg": "\u2020", "pc": "\u00b7", "aa": "\u00b4", "a-": "\u00af", "12": "\u00bd", "14": "\u00bc",
    "34": "\u00be", "sq": "\u25a1", "ci": "\u25cb", "OK": "\u2713", "tf": "\u2234", "pt": "\u221d",
    "*a": "\u03b1", "*b": "\u03b2", "*g": "\u03b3", "*d": "\u03b4", "*e": "\u03b5", "*l": "\u03bb",
    "*m": "\u03bc", "*p": "\u03c0", "*s": "\u03c3", "a\"": "\u02dd", ":a": "\u00e4", ":o": "\u00f6",
    ":u": "\u00fc", ":A": "\u00c4", ":O": "\u00d6", ":U": "\u00dc", "'e": "\u00e9", "`e": "\u00e8",
    "'a": "\u00e1", "`a": "\u00e0", "^e": "\u00ea", ",c": "\u00e7", "~n": "\u00f1", "'E": "\u00c9",
}  # fmt: skip
# Strings that pages use without defining them where this reader sees it (pod2man's and DocBook's preambles
# define them inside conditionals, which are not evaluated).
_STRINGS = {
    "Aq": "'", "C+": "C++", "C'": "'", "C`": "'", "L\"": "\u201c", "R\"": "\u201d", "--": "--", "PI": "\u03c0",
    "Tm": "\u2122", "lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "S": "", "Ba": "|", "q": '"', "Lq": "\u201c",
    "Rq": "\u201d",
}  # fmt: skip
# \fB, \f(CW, \f[...], \s-2, \s(12, \m[blue], \*(xx, \*[name], \n(xx, \h'...', \w'...', \(xx, \[name], \N'65', ...
_ESCAPE = re.compile(
    r"\\(?:"
    r"f(?:\[[^\]]*\]|\(..|.)"  # font
    r"|s(?:\[[^\]]*\]|\([0-9]{2}|[+-]?\([0-9]{2}|[+-]?[0-9]{1,2}|'[^']*')"  # size
    r"|[mMgkY](?:\[[^\]]*\]|\(..|.)"  # colour, register format, mark, zero-width, ...
    r"|n[+-]?(?:\[[^\]]*\]|\(..|.)"  # number register
    r"|\*(?P<str>\[[^\]]*\]|\(..|.)"  # string
    r"|\$[0-9*@]"  # macro argument
    r"|[hvwlLoDbxXZRSAB](?P<q>['\"|]).*?(?P=q)"  # motions, widths, drawing, overstrike, device controls
    r"|N'(?P<num>[0-9]+)'"  # character by number
    r"|\((?P<ch>..)"  # named character, two letters
    r"|\[(?P<long>[^\]]*)\]"  # named character, long name (groff): \[aq], \[u00E9], \[char46]
    r"|(?P<one>.)"
    r")",
    re.S,
)
_ONE = {"-": "-", "e": "\\", "\\": "\\", "E": "\\", ".": ".", " ": " ", "~": " ", "0": " ", "'": "'", "`": "`",
        "t": "\t", "_": "_", "&": "", ")": "", "|": "", "^": "", "%": "", ":": "", "/": "", ",": "", "{": "",
        "}": "", "c": "", "a": "", "d": "", "u": "", "r": "", "p": "", "!": "", "?": "", "#": "", "z": ""}  # fmt: skip


class _Escapes:
    """Troff escapes to text, with the page's own string definitions (.ds)."""

    def __init__(self) -> None:
        self.strings = dict(_STRINGS)

    def text(self, s: str) -> str:
        if "\\" not in s:
            return s
        return _ESCAPE.sub(self._one, s)

    def _one(self, m: re.Match) -> str:
        if m.group("str") is not None:
            name = m.group("str")
            name = name[1:-1] if name.startswith("[") else name[1:] if name.startswith("(") else name
            return self.text(self.strings.get(name, ""))
        if m.group("num") is not None:
            n = int(m.group("num"))
            return chr(n) if 32 <= n < 0x110000 else ""
        if m.group("ch") is not None:
            return _CHARS.get(m.group("ch"), "")
        if m.group("long") is not None:
            name = m.group("long")
            if re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
                return chr(int(name[1:], 16))
            if name.startswith("char") and name[4:].isdigit():
                return chr(int(name[4:]))
            return _CHARS.get(name, "")
        if m.group("one") is not None:
            return _ONE.get(m.group("one"), m.group("one"))
        return ""


def _args(s: str) -> list[str]:
    """A request's arguments: blank-separated, "double quoted" ones may hold blanks ("" is a quote in them)."""
    out, i, n = [], 0, len(s)
    while i < n:
        if s[i] in " \t":
            i += 1
            continue
        if s[i] == '"':
            j, buf = i + 1, []
            while j < n:
                if s[j] == '"':
                    if s[j + 1 : j + 2] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                if s[j] == "\\" and j + 1 < n:
                    buf.append(s[j : j + 2])
                    j += 2
                    continue
                buf.append(s[j])
                j += 1
            out.append("".join(buf))
            i = j + 1
        else:
            j = i
            while j < n and s[j] not in " \t":
                j += 2 if s[j] == "\\" and j + 1 < n else 1
            out.append(s[i:j])
            i = j
    return out


def _lines(text: str) -> list[str]:
    """Source lines with comments gone, continued lines joined, and macro definitions, ignore blocks and
    conditionals (with their braced bodies) dropped."""
    raw = text.replace("\r\n", "\n").split("\n")
    joined: list[str] = []
    buf = ""
    for line in raw:
        line = re.sub(r'\\".*$|\\#.*$', "", line) if ('\\"' in line or "\\#" in line) else line
        if line.endswith("\\") and not line.endswith("\\\\"):
            buf += line[:-1]
            continue
        joined.append(buf + line)
        buf = ""
    if buf:
        joined.append(buf)
    out: list[str] = []
    skip_to: str | None = None
    depth = 0
    for line in joined:
        stripped = line.strip()
        if skip_to is not None:
            if stripped.startswith(skip_to):
                skip_to = None
            continue
        if depth:
            depth += line.count("\\{") - line.count("\\}")
            depth = max(depth, 0)
            continue
        if line[:1] in ".'" and stripped in (".", "'"):
            continue  # an empty request
        m = re.match(r"^[.'][ \t]*(\w+)", line)
        name = m.group(1) if m else ""
        if name in ("de", "de1", "am", "am1", "ig"):
            a = _args(line[m.end() :])
            end = a[0] if name == "ig" and a else a[1] if name != "ig" and len(a) > 1 else "."
            skip_to = "." + end  # the block ends at ".." or at ".END" when it names an END
            continue
        if name in ("if", "ie", "el", "while"):
            depth = max(line.count("\\{") - line.count("\\}"), 0)
            continue
        out.append(line)
    return out


# --- the reader ------------------------------------------------------------------------------------------------
# a list item's mark, not an option's tag: "\(bu", "o", and the circles and squares of ronn/pandoc pages
# (zstd's ".IP "\[ci]" 4" items were headings)
_BULLETS = {"\u2022", "*", "-", "o", "+", "\u00b7", "\u2013", "\u2014", "\u25cb", "\u25cf", "\u25e6", "\u25a1",
            "\u25a0", "\u25aa", "\u25ab", "\u2023", "\u2043", "\u2219"}  # fmt: skip
_ENUM = re.compile(r"^\(?[0-9a-zA-Z]{1,3}[.)]$")
_FONT_ALT = {"BR", "BI", "IB", "IR", "RB", "RI"}
_FONT_ONE = {"B", "I", "SM", "SB", "CW", "R"}
_BREAKS = {"PP", "LP", "P", "HP"}  # a new paragraph at the page's indent: a tagged paragraph ends
_SPACE = {"sp", "ns", "rs"}  # vertical space only: a tagged paragraph goes on
_NAME_SECTIONS = {"NAME", "NOM", "NOMBRE", "NAMEN", "\u540d\u79f0"}


class _Reader:
    """Walks the source lines into a TextBuilder: headings, paragraphs, terms, examples."""

    def __init__(self) -> None:
        self.b = TextBuilder()
        self.esc = _Escapes()
        self.par: list[str] = []  # pieces of the paragraph being read
        self.glue = False  # the next piece continues the last word (\c, mdoc's Ns)
        self.nofill = False
        self.rs = 0  # .RS depth
        self.section = 0  # heading level of the innermost .SH/.SS (1 or 2), 0 before any
        self.term_level = 0  # level of the open term heading, 0 when none
        self.term_rs = -1  # .RS depth when the open term began
        self.pending_tag = False  # .TP: the next line is the tag
        self.prefix = ""  # a nested term or a list mark, put before the next paragraph
        self.title_name = ""
        self.name_line = ""
        self.in_name = False
        self.heading_next = 0  # .SH with no arguments: the next line is the heading, at this level
        self.url = ""  # .UR: the link its text is followed by
        self.mdoc = _Mdoc(self)

    # paragraph text
    def add(self, text: str) -> None:
        if self.pending_tag:
            self.pending_tag = False
            self.term(text)
            return
        if self.heading_next:
            level, self.heading_next = self.heading_next, 0
            self.heading(level, text)
            return
        if not self.par or self.glue:
            self.par.append(text)
        elif self.nofill:
            self.par.append("\n" + text)
        else:
            self.par.append(" " + text)
        self.glue = False

    def text_line(self, raw: str) -> None:
        glue_after = raw.rstrip().endswith("\\c")
        if glue_after:
            raw = raw.rstrip()[:-2]
        text = self.esc.text(raw)
        if not self.nofill:
            text = text.strip()
            if not text:
                if not glue_after:
                    self.flush()
                return
        self.add(text.rstrip())
        self.glue = glue_after

    def flush(self) -> None:
        text = "".join(self.par)
        self.par = []
        self.glue = False
        if self.in_name and text.strip() and not self.name_line:
            self.name_line = clean_inline(text)
        if text.strip():
            self.b.block(self.prefix + text if self.prefix else text)
            self.prefix = ""

    # structure
    def heading(self, level: int, text: str) -> None:
        self.flush()
        self.pending_tag = False
        self.prefix = ""
        self.term_level = 0
        self.rs = 0
        self.section = level
        self.in_name = level == 1 and text.strip().upper() in _NAME_SECTIONS
        self.b.heading(level, text)

    def term(self, text: str) -> None:
        """An option's tag (or any term of a tagged list): a heading under the section while the list is the
        page's own; a term inside another term's text leads its paragraph instead ("--tlsv1.2: ...")."""
        self.flush()
        text = clean_inline(text)
        if not text:
            return
        if text in _BULLETS or _ENUM.match(text):
            self.prefix = ("- " if text in _BULLETS else text + " ") + self.prefix
            return
        if self.term_level and self.rs > self.term_rs:
            self.prefix = text + ": "
            return
        self.end_term()
        self.term_level = max(self.section, 1) + 1
        self.term_rs = self.rs
        self.b.heading(self.term_level, text)

    def end_term(self) -> None:
        if self.term_level:
            self.b.leave(self.term_level)
            self.term_level = 0

    def paragraph(self) -> None:
        """.PP and friends: the paragraph ends; at the list's own indent, the tagged paragraph ends too."""
        self.flush()
        self.prefix = ""
        if self.term_level and self.rs <= self.term_rs:
            self.end_term()

    def request(self, name: str, rest: str) -> None:
        args = _args(rest)
        if self.mdoc.handles(name):
            self.mdoc.request(name, args, rest)
            return
        if name == "TH":
            self.title_name = self._title(args)
        elif name in ("SH", "SS"):
            level = 1 if name == "SH" else 2
            if args:
                self.heading(level, self.esc.text(" ".join(args)))
            else:
                self.flush()
                self.heading_next = level
        elif name in _BREAKS:
            self.paragraph()
        elif name in _SPACE:
            self.flush()
        elif name == "br":
            if self.par:
                self.par.append("\n")
                self.glue = True
        elif name == "TP":
            self.flush()
            self.pending_tag = True
        elif name == "IP":
            tag = self.esc.text(args[0]) if args else ""
            if tag.strip():
                self.term(tag)
            else:
                self.flush()
        elif name == "TQ":
            self.pending_tag = True
        elif name == "RS":
            if not self.term_level and self.rs == 0:
                self._term_paragraph()
            self.flush()
            self.rs += 1
        elif name == "RE":
            self.flush()
            self.rs = max(self.rs - 1, 0)
        elif name in ("nf", "EX"):
            self.flush()
            self.nofill = True
        elif name in ("fi", "EE"):
            self.flush()
            self.nofill = False
        elif name in _FONT_ONE:
            if args:
                self.add(self.esc.text(" ".join(args)))
        elif name in _FONT_ALT:
            self.add(self.esc.text("".join(args)))
        elif name in ("UR", "MT"):
            self.url = self.esc.text(args[0]) if args else ""
        elif name in ("UE", "ME"):
            if self.url:
                self.add(f"<{self.url}>")
            self.url = ""
            if args:
                self.par.append(self.esc.text("".join(args)))
        elif name == "OP":
            self.add("[" + " ".join(self.esc.text(a) for a in args) + "]")
        elif name == "SY":
            self.flush()
            if args:
                self.add(self.esc.text(args[0]))
        elif name == "ds" and args:
            value = rest.split(None, 1)[1] if len(rest.split(None, 1)) > 1 else ""
            self.esc.strings[args[0]] = value[1:] if value.startswith('"') else value
        # everything else (layout, registers, traps, custom macros) prints nothing here

    def _term_paragraph(self) -> None:
        """DocBook's variable lists: ".PP", one line (the term), then ".RS 4" with its text. That line (not a
        sentence: no stop or colon at its end) is a term."""
        text = "".join(self.par).strip()
        if text and "\n" not in text and len(text) <= 120 and not text.endswith((".", ":")) and self.section:
            self.par = []
            self.term(text)
            self.term_rs = 0

    def _title(self, args: list[str]) -> str:
        if not args:
            return ""
        name = self.esc.text(args[0])
        return f"{name}({self.esc.text(args[1])})" if len(args) > 1 else name

    def title(self) -> str | None:
        line = self.name_line
        if line:
            return line
        return self.title_name.lower() if self.title_name.isupper() else self.title_name or None

    def read(self, lines: list[str]) -> None:
        table: list[str] | None = None
        for line in lines:
            if table is not None:
                if re.match(r"^[.'][ \t]*TE\b", line):
                    self._table(table)
                    table = None
                else:
                    table.append(line)
                continue
            m = re.match(r"^[.'][ \t]*([^ \t]+)(.*)$", line)
            if m is None:
                self.text_line(line)
                continue
            name, rest = m.group(1), m.group(2)
            if self.mdoc.xo is not None and self.mdoc.extend(name, _args(rest)):
                continue
            if name == "TS":
                self.flush()
                table = []
                continue
            self.request(name, rest)
        self.flush()

    def _table(self, lines: list[str]) -> None:
        """A tbl(1) table: its data rows as "Header: value; ..." lines (options and format lines skipped)."""
        tab = "\t"
        i = 0
        if lines and lines[0].rstrip().endswith(";"):
            m = re.search(r"tab\s*\((.)\)", lines[0])
            tab = m.group(1) if m else tab
            i = 1
        while i < len(lines) and not lines[i].rstrip().endswith("."):
            i += 1
        rows: list[list[str]] = []
        cell_text: list[str] | None = None
        row: list[str] = []
        for line in lines[i + 1 :]:
            if cell_text is not None:
                if line.startswith("T}"):
                    row.append(" ".join(cell_text))
                    cell_text = None
                    rest = line[2:].lstrip(tab)
                    if rest:
                        row += [self.esc.text(c) for c in rest.split(tab)]
                    else:
                        rows.append(row)
                        row = []
                elif not line.startswith((".", "'")):
                    cell_text.append(self.esc.text(line))
                continue
            if line.strip() in ("_", "=", "") or line.startswith((".", "'")):
                continue
            cells = line.split(tab)
            if cells[-1].strip() == "T{":
                row = [self.esc.text(c) for c in cells[:-1]]
                cell_text = []
                continue
            rows.append([self.esc.text(c) for c in cells])
        self.flush()
        text = "\n".join(rows_as_text(rows))
        if text:
            self.b.block(text)


# --- mdoc ------------------------------------------------------------------------------------------------------
_ENCLOSE = {"Op": ("[", "]"), "Dq": ("\u201c", "\u201d"), "Sq": ("\u2018", "\u2019"), "Pq": ("(", ")"),
            "Qq": ('"', '"'), "Aq": ("<", ">"), "Bq": ("[", "]"), "Brq": ("{", "}"), "Ql": ("\u2018", "\u2019")}  # fmt: skip
_OPEN = {"Oo": "[", "Do": "\u201c", "So": "\u2018", "Po": "(", "Qo": '"', "Ao": "<", "Bo": "[", "Bro": "{"}
_CLOSE = {"Oc": "]", "Dc": "\u201d", "Sc": "\u2019", "Pc": ")", "Qc": '"', "Ac": ">", "Bc": "]", "Brc": "}"}
_FIXED = {"Ux": "UNIX", "Bx": "BSD", "Ox": "OpenBSD", "Nx": "NetBSD", "Fx": "FreeBSD", "Dx": "DragonFly",
          "Bsx": "BSD/OS", "At": "AT&T UNIX", "Lb": ""}  # fmt: skip
_WORDS = {"Ar", "Cm", "Ic", "Li", "Pa", "Ev", "Em", "Sy", "Va", "Dv", "Er", "Fa", "Ft", "Fd", "Tn", "Ad", "An",
          "Cd", "Ms", "No", "Mt", "Ot", "Vt", "Nm", "Fl", "Xr", "Lk", "St", "Ns", "Sx", "Ta", "Fn",
          "Eo", "Ec", "Es", "Pf", "Ap", "In", "Nd", "Tg", "Fo", "Fc"}  # fmt: skip
_CALLABLE = set(_ENCLOSE) | set(_OPEN) | set(_CLOSE) | set(_FIXED) | _WORDS
_PUNCT_AFTER = {".", ",", ";", ":", "?", "!", ")", "]"}
_PUNCT_BEFORE = {"(", "["}
_BLOCK = {"Dt", "Dd", "Os", "Sh", "Ss", "Pp", "Lp", "Bl", "El", "It", "Bd", "Ed", "D1", "Dl", "Nd", "Bk", "Ek",
          "Rs", "Re", "Ex", "Rv", "Sm", "Nm", "Ux", "Ns"}  # fmt: skip


class _Mdoc:
    """BSD's semantic macros: each line a sentence of callable macros (".Op Fl b Ar bind_address")."""

    def __init__(self, r: _Reader) -> None:
        self.r = r
        self.name = ""
        self.lists: list[tuple[str, int]] = []  # (kind, enum counter)
        self.spacing = True  # .Sm off: words run together
        self.active = False
        self.xo: list[str] | None = None  # an item's head continued over lines (.It ... Xo, up to .Xc)
        self.xo_glued = False

    def extend(self, name: str, args: list[str]) -> bool:
        """A line inside ``.It ... Xo`` / ``.Xc``: part of the item's head (True when taken)."""
        assert self.xo is not None, f"{self.xo=}"
        if name == "Sm":
            self.spacing = not args or args[0] != "off"
            return True
        if name == "Xc":
            head, self.xo = " ".join(self.xo), None
            self.r.term(head.strip())
        elif not self.spacing and self.xo_glued:
            self.xo[-1] += self.line([name, *args])  # .Sm off: this line's words run on from the last one's
        else:
            self.xo.append(self.line([name, *args]))
        self.xo_glued = not self.spacing
        return True

    def handles(self, name: str) -> bool:
        if name in ("Dd", "Dt"):
            self.active = True
        return self.active and (name in _BLOCK or name in _CALLABLE or name.startswith("%"))

    def request(self, name: str, args: list[str], rest: str) -> None:
        r = self.r
        if name == "Dt":
            r.title_name = f"{args[0]}({args[1]})" if len(args) > 1 else args[0] if args else ""
        elif name in ("Dd", "Os", "Bk", "Ek", "Rs"):
            return
        elif name == "Re":
            r.flush()
        elif name in ("Sh", "Ss"):
            r.heading(1 if name == "Sh" else 2, self.line(args))
        elif name in ("Pp", "Lp"):
            r.flush()  # inside a list item a paragraph of the item; .El ends the item
            r.prefix = ""
        elif name == "Sm":
            self.spacing = not args or args[0] != "off"
        elif name == "Nm" and not self.name and args:
            self.name = r.esc.text(args[0])
            r.add(self.line(["Nm", *args]))
        elif name == "Nd":
            r.add("- " + self.line(args))
        elif name == "Bl":
            r.flush()
            kind = next((a[1:] for a in args if a[1:] in _LIST_KINDS), "tag")
            self.lists.append((kind, 0))
            r.rs += 1 if len(self.lists) > 1 else 0
        elif name == "El":
            r.flush()
            if self.lists:
                self.lists.pop()
                if self.lists:
                    r.rs = max(r.rs - 1, 0)
                else:
                    r.end_term()
            r.prefix = ""
        elif name == "It":
            kind, n = self.lists[-1] if self.lists else ("tag", 0)
            if kind in ("bullet", "dash", "hyphen", "item"):
                r.flush()
                r.prefix = "- " if kind != "item" else ""
            elif kind == "enum":
                r.flush()
                self.lists[-1] = (kind, n + 1)
                r.prefix = f"{n + 1}. "
            elif kind == "column":
                r.flush()
                cells = [self.line(c) for c in _split_on(args, "Ta")]
                r.add("; ".join(c for c in cells if c))
            elif args and args[-1] == "Xo":
                r.flush()
                self.xo, self.xo_glued = [self.line(args[:-1])], False
            else:
                text = self.line(args)
                if text:
                    r.term(text)
                else:
                    r.flush()
        elif name == "Bd":
            r.flush()
            r.nofill = any(a in ("-literal", "-unfilled") for a in args)
        elif name == "Ed":
            r.flush()
            r.nofill = False
        elif name in ("D1", "Dl"):
            r.flush()
            r.add(self.line(args))
            r.flush()
        elif name in ("Ex", "Rv"):
            utility = self.name or "the utility"
            r.add(
                f"The {utility} utility exits 0 on success, and >0 if an error occurs."
                if name == "Ex"
                else "The function returns the value 0 if successful; otherwise the value -1 is returned."
            )
        elif name.startswith("%"):
            r.add(self.line(args))
        else:
            text = self.line([name, *args])
            if name == "Ns" or (text and text[0] in _PUNCT_AFTER):
                r.glue = True
            r.add(text)

    def line(self, tokens: list[str]) -> str:
        out = _Spacer(self.spacing)
        self._render(tokens, out)
        return out.text()

    def _render(self, tokens: list[str], out: _Spacer) -> None:
        esc = self.r.esc.text
        i, n = 0, len(tokens)
        while i < n:
            t = tokens[i]
            i += 1
            if t in _ENCLOSE:
                rest = tokens[i:]
                k = len(rest)
                while k and rest[k - 1] in _PUNCT_AFTER:
                    k -= 1
                left, right = _ENCLOSE[t]
                out.open(left)
                self._render(rest[:k], out)
                out.close(right)
                for p in rest[k:]:
                    out.word(p)
                return
            if t in _OPEN:
                out.open(_OPEN[t])
            elif t in _CLOSE:
                out.close(_CLOSE[t])
            elif t in _FIXED:
                out.word(_FIXED[t])
            elif t == "Ns":
                out.glue()
            elif t == "Ap":
                out.glue()
                out.word("'")
                out.glue()
            elif t == "Fl":
                args = []
                while i < n and tokens[i] not in _CALLABLE:
                    args.append(tokens[i])
                    i += 1
                if not args or args[0] in _PUNCT_AFTER:
                    out.word("-")
                    out.glue()
                for a in args:
                    out.word(esc(a) if a in _PUNCT_AFTER else "-" + esc(a))
            elif t == "Xr":
                if i + 1 < n and tokens[i + 1] not in _CALLABLE:
                    out.word(f"{esc(tokens[i])}({esc(tokens[i + 1])})")
                    i += 2
            elif t == "Nm":
                if i >= n or tokens[i] in _CALLABLE or tokens[i] in _PUNCT_AFTER:
                    out.word(self.name)
            elif t == "Ar":
                if i >= n or tokens[i] in _CALLABLE or tokens[i] in _PUNCT_AFTER:
                    out.word("file ...")
            elif t == "Lk":
                args = []
                while i < n and tokens[i] not in _CALLABLE and tokens[i] not in _PUNCT_AFTER:
                    args.append(esc(tokens[i]))
                    i += 1
                if args:
                    out.word(" ".join(args[1:]) + f" <{args[0]}>" if len(args) > 1 else args[0])
            elif t == "Fn":
                if i < n:
                    fn, i = esc(tokens[i]), i + 1
                    params = []
                    while i < n and tokens[i] not in _CALLABLE and tokens[i] not in _PUNCT_AFTER:
                        params.append(esc(tokens[i]))
                        i += 1
                    out.word(f"{fn}({', '.join(params)})")
            elif t == "In":
                if i < n:
                    out.word(f"#include <{esc(tokens[i])}>")
                    i += 1
            elif t == "Pf":
                if i < n:
                    out.word(esc(tokens[i]))
                    out.glue()
                    i += 1
            elif t in ("Eo", "Ec"):
                if i < n and tokens[i] not in _CALLABLE:
                    (out.open if t == "Eo" else out.close)(esc(tokens[i]))
                    i += 1
            elif t == "Ta":
                out.word(";")
            elif t in _WORDS:
                continue  # a font or meaning macro: its arguments are the words that follow
            else:
                out.word(esc(t))


_LIST_KINDS = {"tag", "bullet", "dash", "hyphen", "item", "enum", "column", "hang", "ohang", "inset", "diag"}


def _split_on(tokens: list[str], sep: str) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for t in tokens:
        if t == sep:
            out.append([])
        elif "\t" in t:
            parts = t.split("\t")
            out[-1].append(parts[0])
            out += [[p] for p in parts[1:]]
        else:
            out[-1].append(t)
    return out


class _Spacer:
    """Words joined by spaces, but punctuation sticks to its word and brackets to what they enclose."""

    def __init__(self, spacing: bool = True) -> None:
        self.parts: list[str] = []
        self.stick = True
        self.spacing = spacing

    def word(self, w: str) -> None:
        if not w:
            return
        if self.parts and not self.stick and self.spacing and w not in _PUNCT_AFTER:
            self.parts.append(" ")
        self.parts.append(w)
        self.stick = w in _PUNCT_BEFORE

    def open(self, s: str) -> None:
        self.word(s)
        self.stick = True

    def close(self, s: str) -> None:
        self.parts.append(s)
        self.stick = False

    def glue(self) -> None:
        self.stick = True

    def text(self) -> str:
        return "".join(self.parts).strip()


def parse_man(text: str) -> ParsedDocument:
    """A manual page (man or mdoc macros) as the text `man` shows, with its sections as headings; a link page
    is refused with the page it names."""
    link = man_link(text)
    if link:
        raise ParseError(
            f"The file is a manual-page link with no text of its own: it points to {link}; upload that page "
            "instead."
        )
    r = _Reader()
    r.read(_lines(text))
    return r.b.build("man", None, r.title())
