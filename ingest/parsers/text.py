"""Plain text and Markdown: encoding detection, and Markdown headings (ATX and Setext) as sections; MyST too."""

from __future__ import annotations

import codecs
import collections
import csv
import functools
import io
import re

from lxml.html import defs as html_defs
from markdown_it import MarkdownIt
from markdown_it.common.html_re import HTML_TAG_RE

from .base import (
    MAX_SHEET_CELLS,
    SUPPORTED_NAMES,
    ParsedDocument,
    ParseError,
    TextBuilder,
    UnsupportedFileType,
    clean_inline,
    link_target,
    metadata_title,
    rows_as_text,
    sheet_rows_as_text,
)
from .charset import detect
from .myst import END, TAB, myst_to_markdown

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BINARY = UnsupportedFileType(
    f"The file is not a supported document: its content is binary data, not text ({SUPPORTED_NAMES})."
)
# Characters that never occur in real text; more than a few per thousand means binary data. Not the two that
# text formats use as separators: a unit separator ending its line (GNU Info's and Emacs Babyl's record marks)
# and a DEL before a number (an Info tag table's "Node: Top\x7f1206"); a small Info file (a split manual's
# table of its parts) is mostly those and was refused as binary data.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1e\ufffd]|\x1f(?![\r\n])|\x7f(?!\d)")


def _looks_binary(text: str, utf8: bool = False) -> bool:
    """More than a few control characters per thousand: binary data. ``utf8``: the bytes were valid UTF-8 with
    characters past ASCII, which binary data almost never is, so up to 2% pass (a short Chinese handbook page
    with five stray backspaces an editor left in its headings, 5 of 327 characters, was refused as binary;
    the parsers drop control characters from the text anyway)."""
    sample = text[:65536]
    if not sample:
        return False
    count = len(_CONTROL.findall(sample))
    if utf8 and not sample.isascii():
        return count > max(8, len(sample) // 50)
    return count > max(2, len(sample) // 200)


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Decode bytes in any common encoding (BOM, a declared charset, UTF-8, else the likeliest legacy code page
    or UTF-16 without a BOM, ``charset.detect``).

    Raises UnsupportedFileType for binary data. Text with NUL bytes in it (a log padded with NULs where its writer
    crashed, a record an editor or a transfer left them in) is its text without them: it was refused as binary
    data. UTF-16 and UTF-32, whose NUL bytes are characters' halves, are decoded as such before that.
    """
    return decode_text_noted(data, declared)[0]


def decode_text_noted(data: bytes, declared: str | None = None) -> tuple[str, str | None]:
    """``decode_text``, and a notice (None if none) where the encoding was a guess: a short text that reads
    nearly as well in two code pages."""
    try:
        text, guess = _decode(data, declared)
    except UnsupportedFileType:
        if b"\x00" not in data or data.startswith(_WIDE_BOMS):
            raise
        # Binary data keeps its other control bytes (lengths, offsets, opcodes), which _looks_binary still counts.
        text, guess = _decode(data.replace(b"\x00", b""), declared)
    if not text.isascii():
        text = _undo_double_utf8(text)
    if "\r\r" in text:
        # CRLF converted twice (git's autocrlf over a file that had them, an FTP transfer in text mode): "\r\r\n"
        # is one line break, not two; read as two, every line was a paragraph of its own and a Markdown table
        # no table
        text = _CRS.sub("\n", text)
    notice = None
    if guess:
        notice = (
            f"The file's character encoding is not certain; it was read as {guess}. If its text looks wrong, "
            "save it as UTF-8 and upload it again."
        )
    return text, notice


_CRS = re.compile(r"\r+\n")


def _c1_as_bytes(e: UnicodeError) -> tuple[bytes, int]:
    """Encoding error handler: C1 control characters (U+0080-U+009F) as their byte, which is what a Latin-1 or a
    Windows-1252 decoder that passes its five undefined bytes through made of them."""
    if isinstance(e, UnicodeEncodeError):
        part = e.object[e.start : e.end]
        if all("\x80" <= c <= "\x9f" for c in part):
            return part.encode("latin-1"), e.end
    raise e


codecs.register_error("autoglm-c1", _c1_as_bytes)


def _undo_double_utf8(text: str) -> str:
    """UTF-8 text that was once read as Windows-1252 or Latin-1 and saved as UTF-8 again ("CafÃ©", "â€œquotedâ€\x9d",
    "â‚¬5": a database export, a file through two tools) as it was written, when the whole text turns back into
    valid UTF-8; text really meant as such characters almost never does (``_decode_mixed``). Otherwise the text
    is unchanged: a search for "café" found nothing."""
    try:
        return text.encode("cp1252", errors="autoglm-c1").decode("utf-8")
    except UnicodeError:
        return text


_WIDE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # UTF-32's begin with one of these too


def _decode(data: bytes, declared: str | None) -> tuple[str, str | None]:
    """The text, and the name of the encoding it was read in where that was a guess (else None)."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            text = data.decode(enc, errors="replace")
            if _looks_binary(text):
                raise _BINARY
            return text, None
    if declared and not (_single_byte(declared) and _utf8_beyond_ascii(data)):
        try:
            text = data.decode(declared)
            if not _looks_binary(text):
                return text, None
        except (LookupError, UnicodeDecodeError):
            pass
    if b"\x1b$" in data[:65536] and data.isascii():
        # ISO-2022-JP (Japanese mail and old text): 7-bit, each run of kanji and kana between escapes; read as
        # UTF-8 it was "\x1b$B2q5D..." with no Japanese in it
        try:
            text = data.decode("iso2022_jp_2")
            if not _looks_binary(text, utf8=True):
                return text, None
        except UnicodeDecodeError:
            pass
    # NUL bytes without a BOM: UTF-16/32 without a BOM is rare; charset.detect weighs it below.
    if b"\x00" not in data[:65536]:
        try:
            # Incremental, so a sample cut inside a multi-byte character still decodes.
            text = codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
            if _looks_binary(text, utf8=True):
                raise _BINARY
            return text, None
        except UnicodeDecodeError:
            pass
    found = detect(data)
    if _single_byte(found.encoding) and _UTF8_MULTIBYTE.search(data):
        text = _decode_mixed(data, found.encoding)
    else:
        text = data.decode(found.encoding, errors="replace")
    if _looks_binary(text):
        raise _BINARY
    return text, None if found.confident else found.label


def _utf8_beyond_ascii(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 with characters past ASCII. A page saved as UTF-8 by an editor that left its
    ``<meta charset="iso-8859-1">`` (or a mail part labelled so) read as declared was mojibake ("CafÃ©",
    "â€œquotedâ€"); text really in a single-byte code page is almost never valid UTF-8 (``_decode_mixed``)."""
    if data.isascii():
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)  # a sample may end mid-character
    except UnicodeDecodeError:
        return False
    return True


# A multi-byte UTF-8 sequence (RFC 3629: no overlongs, no surrogates).
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)


@functools.lru_cache(maxsize=64)
def _single_byte(encoding: str) -> bool:
    """Whether every byte of ``encoding`` is one character (cp1252, Latin-1, KOI8-R; not GBK or Shift-JIS)."""
    try:
        return len(bytes(range(128, 256)).decode(encoding, errors="replace")) == 128
    except LookupError:
        return False


def _decode_mixed(data: bytes, encoding: str) -> str:
    """Text in a single-byte code page that also holds lines in UTF-8: those lines as UTF-8, the rest in the
    code page. Files edited by many hands over the years (AUTHORS, changelogs, copyright notices) mix the two;
    decoded whole in the code page, every UTF-8 name in them became mojibake ("DurÃ¡n" for "Durán"). A line of
    real Latin-1 text is valid UTF-8 only if it is made of such mojibake pairs itself."""
    out = []
    for line in data.splitlines(keepends=True):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(line.decode(encoding, errors="replace"))
    return "".join(out)


_SETEXT = re.compile(r"^[^\s].*\n {0,3}(=+|-+) *$", re.M)
_MD_SIGNS = re.compile(r"^ {0,3}(```|~~~|[-*+] \S|\d+\. \S|> )|\[[^\]]+\]\([^)]+\)|\*\*\S", re.M)


# Names that say a file is a program or a configuration: there a "# comment" line is no heading (an awk
# script's first comment became the document's title). Markdown-in-code (R Markdown, Jupyter text) has names
# of its own and is not listed.
_CODE_EXT = frozenset(
    "py pyi pyw pyx pxd pm pl pod t awk sed sh bash zsh ksh csh fish tcl rb r jl lua nim cr ex exs "
    "mk make cmake am ac m4 conf cfg cnf ini toml yaml yml properties env service desktop spec "
    "ps1 psm1 bat cmd nix bzl bazel gn gni ninja sql c h cc cpp hpp cxx hxx go rs java js mjs cjs ts "
    "php vim el".split()
)
_CODE_NAMES = frozenset(
    "makefile gnumakefile dockerfile containerfile rakefile gemfile vagrantfile jenkinsfile snakefile "
    "sconstruct sconscript meson.build build.gradle cmakelists.txt configure pkgbuild apkbuild".split()
)


def looks_like_code(text: str, filename: str | None) -> bool:
    """Whether the file is a program or configuration file by its name (``_CODE_EXT``, ``_CODE_NAMES``) or by a
    "#!" interpreter line, so that its "# comment" lines are not read as Markdown headings."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].lower()
    stem, dot, ext = name.rpartition(".")
    if name in _CODE_NAMES or (dot and stem and ext in _CODE_EXT) or name.startswith("makefile."):
        return True
    return text.lstrip("\ufeff")[:2] == "#!"


# A "#" line of a plain-text file (a README or INSTALL without a suffix) is often no heading but a root shell's
# prompt ("# apt install foo", "  # echo 1 > /proc/sys/vm/overcommit_memory") or a comment in a command example
# ("# jump to merge conflicts" over "git jump merge"; a licence header or a "#####" banner of "#" lines).
_HASH_LINE = re.compile(r" {0,3}#")
_ATX_LINE = re.compile(r" {0,3}#{1,6}(?:[ \t]|$)")
_SHELL_WORDS = frozenset(
    "sudo su apt apt-get aptitude apt-cache dpkg dpkg-reconfigure yum dnf zypper pacman rpm snap flatpak pip pip3 "
    "npm npx yarn gem cargo go cd ls cp mv rm ln mkdir rmdir chmod chown chgrp touch cat less head tail grep sed "
    "awk find echo printf export source unset make cmake ninja meson install tar unzip gzip gunzip curl wget ssh "
    "scp rsync git svn hg docker podman kubectl systemctl service journalctl modprobe insmod rmmod lsmod mount "
    "umount sysctl useradd adduser usermod userdel groupadd passwd editor vi vim nano emacs python python3 perl "
    "ruby node java bash sh zsh kill killall ps df du ip ifconfig ping crontab update-alternatives "
    "update-rc.d update-grub debconf-set-selections ldconfig openssl gpg".split()
)
_CONFIG_LINE = re.compile(r"\s*(?:\[[^\]\n]+\]|[\w.-]+\s*=\s*\S.*)\s*")  # "[section]", "key = value"


def reads_as_command(line: str) -> bool:
    """Whether a line reads as a shell command ("apt install foo", "$ make install", "./configure --prefix=/usr",
    "widgetry --start"): a command's name, then its arguments; a sentence ("make sure it runs.") is none."""
    words = line.split()
    if words[:1] in (["$"], ["%"]):  # a user's prompt before the command
        words = words[1:]
    if not words or line.rstrip().endswith((".", "?", ":")):
        return False
    if words[0].startswith(("./", "/", "~/")):
        return True
    if len(words) > 1 and re.match(r"--?\w", words[1]) and re.fullmatch(r"[a-z][\w.+-]*", words[0]):
        return True  # a lower-case name, then an option (not "datrie - Double-Array Trie Library", a title)
    return words[0] in _SHELL_WORDS and len(words) > 1


def shell_hash_lines(lines: list[str]) -> set[int]:
    """Indices of the lines that a Markdown reader would take for "#" headings but that are shell: a block of
    "#" lines holding a prompt's command, a bare "#" or a "#####" banner, one of three or more, or one that a
    command or configuration line follows at once (a comment in an example). Two headings in a row stay."""
    out: set[int] = set()
    i = 0
    while i < len(lines):
        if not _HASH_LINE.match(lines[i]):
            i += 1
            continue
        end = i
        while end < len(lines) and _HASH_LINE.match(lines[end]):
            end += 1
        run = lines[i:end]
        after = lines[end] if end < len(lines) else ""
        if (
            len(run) >= 3
            or any(not _ATX_LINE.match(line) or not line.strip(" \t#") for line in run)
            or any(reads_as_command(line.strip().lstrip("#")) for line in run)
            or reads_as_command(after)
            or _CONFIG_LINE.fullmatch(after)
        ):
            out.update(range(i, end))
        i = end
    return out


def looks_like_markdown(text: str) -> bool:
    """Whether a file not named as Markdown reads as Markdown: a "#" heading that is no shell line
    (``shell_hash_lines``), an underlined (Setext) heading, or three other signs (lists, fences, links, bold)."""
    sample = text[:65536]
    if _SETEXT.search(sample):
        return True
    lines = sample.split("\n")
    shell = shell_hash_lines(lines)
    if any(_ATX_LINE.match(line) and i not in shell for i, line in enumerate(lines)):
        return True
    return len(_MD_SIGNS.findall(sample)) >= 3


def parse_text(text: str) -> ParsedDocument:
    b = TextBuilder()
    b.block(text)
    return b.build("text", None, None)


def parse_delimited(text: str) -> ParsedDocument:
    """A CSV / TSV export as a table: the delimiter sniffed (comma, semicolon, tab or bar), the first row the
    header, each other row a line of "Header: value; ..." as a spreadsheet's rows (``rows_as_text``), so a
    passage keeps the column names of its values. A file that is not one table of 2+ columns is plain text."""
    sample = text[:65_536]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        rows = list(csv.reader(io.StringIO(text), dialect))
    except (csv.Error, ValueError):
        return parse_text(text)
    widths = [len(r) for r in rows if any(c.strip() for c in r)]
    if not widths or max(widths) < 2:
        return parse_text(text)
    if sum(widths) > MAX_SHEET_CELLS:
        raise ParseError(f"The table has more than {MAX_SHEET_CELLS:,} cells; split it.")
    b = TextBuilder()
    b.block("\n".join(sheet_rows_as_text(rows)))
    return b.build("csv", None, None)


def parse_markdown(text: str, named: bool = True) -> ParsedDocument:
    """Headings (ATX `#` and Setext underlines; not `#` inside code) become heading paths. ``named=False``: the
    file is Markdown by its content, not by its name (a README without a suffix), so its shell lines
    (``shell_hash_lines``: "# apt install foo") stay text; a .md file's "#" lines are headings, as its author wrote.

    The text keeps the Markdown source's lines between headings, each paragraph as a reader sees it
    (``_shown_lines``: links as their text and web address, no emphasis marks; list and quote marks and code stay), and without
    a site generator's template tags (``_without_templates``); heading lines are replaced by the heading text
    alone, and pipe tables by their rows as
    "Header: value; ..." lines (``rows_as_text``, as tables of the other formats), so a passage cut from a
    long table still names its columns. MyST (Markdown for Sphinx) is read as Sphinx shows it
    (``myst.myst_to_markdown``): roles as their text, directives as their labelled body or not at all, and each
    tab of a tab set a heading one level below the section that holds the set.
    """
    from .web import html_fragment  # web imports this module

    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text, meta_title = _front_matter(text)
    text = _without_templates(text)
    text, events = myst_to_markdown(text)
    lines: list[str | None] = list(text.split("\n"))  # None: a line whose text an earlier line now holds
    shell = set() if named else shell_hash_lines(text.split("\n"))
    try:
        env: dict = {}
        tokens = MarkdownIt("commonmark").enable("table").parse(text, env)
    except Exception as e:  # markdown-it is robust; this guards the worker all the same
        raise ParseError(f"The Markdown file could not be read ({e}).") from e
    for ref in env.get("references", {}).values():  # "[1]: https://..." defines a link; no reader sees it
        if ref.get("map"):
            _rewrite(lines, ref["map"], None)
    # (first line, end line, kind, heading level, heading text or table rows); kind: heading, table, tab, end
    blocks: list[tuple[int, int, str, int, str]] = []
    table, row, rows = None, [], []
    for i, tok in enumerate(tokens):
        if (
            tok.type == "heading_open"
            and tok.map
            and tok.level == 0
            and (
                _paragraph_over_a_rule(tok, tokens[i + 1], lines)
                # a command over the dashes that close an example ("git jump grep foo" / "-----")
                or (not named and tok.markup in ("-", "=") and reads_as_command(tokens[i + 1].content))
            )
        ):
            # NOTE: CommonMark makes a paragraph of several lines over "-----" one Setext heading; what
            # writes it is a paragraph, then a rule (a changelog's separator between releases: bash's
            # CHANGES came out titled "a. When creating shared libraries on Mac OS X, the pathname ...")
            inline = tokens[i + 1]
            inline.map = [tok.map[0], tok.map[1] - 1]
            shown = _shown_lines(inline, lines)
            if shown is not None:
                for k, line in enumerate(shown):
                    lines[tok.map[0] + k] = line
            lines[tok.map[1] - 1] = None  # the rule
        elif tok.type == "heading_open" and tok.map and tok.level == 0:
            if tok.markup.startswith("#") and tok.map[0] in shell:
                continue  # a prompt or a comment of an example: its line stays as it is
            kind = TAB if events.get(tok.map[0], ("",))[0] == TAB else "heading"
            blocks.append((tok.map[0], tok.map[1], kind, int(tok.tag[1]), _plain_inline(tokens[i + 1])))
        elif tok.type == "table_open":
            table, rows = tok, []
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "inline" and i and tokens[i - 1].type in ("th_open", "td_open"):
            row.append(_plain_inline(tok, links=True))
        elif tok.type == "tr_close":
            rows.append(row)
        elif tok.type == "table_close" and table.map and table.level == 0:  # not in a list or a quote
            blocks.append((table.map[0], table.map[1], "table", 0, "\n".join(rows_as_text(rows))))
        elif tok.type == "html_block" and tok.map and tok.level == 0:
            blocks.append((tok.map[0], tok.map[1], "html", 0, tok.content))
        elif tok.type == "html_block" and tok.map:  # in a list item or a quote: its lines keep their marks
            _rewrite(lines, tok.map, _strip_html("\n".join(lines[tok.map[0] : tok.map[1]]), None))
        elif tok.type == "inline" and tok.map and i and tokens[i - 1].type == "paragraph_open":
            shown = _shown_lines(tok, lines)
            if shown is not None:
                for k, line in enumerate(shown):
                    lines[tok.map[0] + k] = line
            elif htmls := [c.content for c in tok.children or [] if c.type == "html_inline"]:
                _rewrite(lines, tok.map, _strip_html("\n".join(lines[tok.map[0] : tok.map[1]]), htmls))
    blocks += [(line, line + 1, END, 0, "") for line, (kind, _) in events.items() if kind == END]
    blocks.sort()
    b = TextBuilder()
    tab_sets: list[tuple[int, int]] = []  # (set id, its tabs' heading level), innermost last
    pos = 0
    for first, end, kind, level, content in blocks:
        b.block(_join(lines[pos:first]))
        if kind == "heading":
            b.heading(level, content)
        elif kind == TAB:
            set_id = events[first][1]
            if not tab_sets or tab_sets[-1][0] != set_id:
                tab_sets.append((set_id, b.level + 1))
            first = b.first_heading
            b.heading(tab_sets[-1][1], content)
            b.first_heading = first  # a tab's name is no title for the document
        elif kind == END:
            set_id = events[first][1]
            if any(s == set_id for s, _ in tab_sets):
                while tab_sets[-1][0] != set_id:
                    tab_sets.pop()
                b.leave(tab_sets.pop()[1])
        elif kind == "html":
            html_fragment(content, b)
        else:
            b.block(content)
        pos = end
    b.block(_join(lines[pos:]))
    return b.build("markdown", None, meta_title or b.first_heading)


# YAML front matter (Jekyll, Hugo, MkDocs, MyST): "---" on the first line, "key: value" lines (after blank or
# "# comment" lines, if any), "---" or "..."; or nothing between the two lines (Jekyll's "---" / "---", which
# makes a page of a file)
_FRONT_MATTER = re.compile(
    r"---[ \t]*\n((?:[ \t]*(?:#[^\n]*)?\n)*[A-Za-z_][\w-]*[ \t]*:.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|$)", re.S
)
_SINGLE_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _scalar(value: str) -> str:
    """A one-line YAML (or TOML) scalar's text: quotes and their escapes ('It''s', "say \\"hi\\""), or a plain
    value without its " # comment"."""
    value = value.strip()
    if m := _SINGLE_QUOTED.match(value):
        return m.group(1).replace("''", "'")
    if m := _DOUBLE_QUOTED.match(value):
        return re.sub(r"\\(.)", r"\1", m.group(1))
    return re.sub(r"\s+#.*$", "", value).strip("\"'")


_META_TITLE = re.compile(r"^title[ \t]*:[ \t]*(.+)$((?:\n[ \t]+\S.*$)*)", re.M)
# Hugo's TOML front matter: "+++" lines around "key = value" lines
_TOML_FRONT_MATTER = re.compile(r"\+\+\+[ \t]*\n([A-Za-z_][\w-]*[ \t]*=.*?\n)\+\+\+[ \t]*(?:\n|$)", re.S)
_TOML_TITLE = re.compile(r"^title[ \t]*=[ \t]*(.+)$", re.M)


def _front_matter(text: str) -> tuple[str, str | None]:
    """The text without its front matter, YAML or TOML (metadata, not prose: it read as a "---" and a heading
    made of the keys, or "+++" and "title = ..." lines), and the front matter's title (a YAML block scalar's
    too: "title: >-" over indented lines)."""
    m = _FRONT_MATTER.match(text)
    if m:
        title = _META_TITLE.search(m.group(1) or "")
        value = title and title.group(1).strip()
        if title and value[:1] in "|>" and title.group(2):  # a block scalar: the indented lines below
            value = " ".join(line.strip() for line in title.group(2).split("\n"))
    elif m := _TOML_FRONT_MATTER.match(text):
        title = _TOML_TITLE.search(m.group(1))
        value = title and title.group(1).strip()
    else:
        return text, None
    return text[m.end() :], metadata_title(_scalar(value)) if title else None


# Liquid / Jinja / Nunjucks tags of a site generator (Jekyll, Eleventy, ...), run before the Markdown is read
_TEMPLATE_TAG = re.compile(r"\{%-?\s*(?P<name>\w+)(?P<args>.*?)-?%\}", re.S)
_TEMPLATE_COMMENT = re.compile(r"\{%-?\s*comment\s*-?%\}.*?\{%-?\s*endcomment\s*-?%\}", re.S)
_QUOTED_ARG = re.compile(r"""\s*(["'])(?P<arg>[^"'\n]*)\1\s*""")
_FENCE_LINE = re.compile(r" {0,3}(`{3,}|~{3,})")


def _without_templates(text: str) -> str:
    """Markdown written for a site generator, as its readers see it: a template tag in a link's destination
    ("[the leave page]({% page "/leave/" %})", not a link to markdown-it: the tag has spaces) becomes its
    quoted argument, a tag alone on its lines ("{% alert %}", "{% include "steps.html" ... %}") goes, an inline
    tag with one quoted argument ("{% slack_channel "equipment" %}") shows it, any other goes, and a
    "{% comment %}" block goes whole. Fenced code keeps its tags (a template language's own manual)."""
    if "{%" not in text:
        return text
    out, prose, fence = [], [], None
    for line in text.split("\n"):
        m = _FENCE_LINE.match(line)
        if fence is None and m:
            if prose:
                out.append(_tags_shown("\n".join(prose)))
            prose, fence = [], m.group(1)
            out.append(line)
        elif fence is not None:
            out.append(line)
            if (
                m
                and m.group(1)[0] == fence[0]
                and len(m.group(1)) >= len(fence)
                and not line[m.end() :].strip()
            ):
                fence = None
        else:
            prose.append(line)
    if prose:
        out.append(_tags_shown("\n".join(prose)))
    return "\n".join(out)


def _tags_shown(text: str) -> str:
    def shown(m: re.Match) -> str:
        before = text[text.rfind("\n", 0, m.start()) + 1 : m.start()]
        after_end = text.find("\n", m.end())
        after = text[m.end() : len(text) if after_end < 0 else after_end]
        newlines = "\n" * m.group(0).count("\n")
        if m.group("name") in ("raw", "endraw"):
            return ""
        # a block tag on lines of its own: the lines stay (blank), so the paragraphs around it stay apart
        if not before.strip() and not after.strip():
            return newlines
        arg = _QUOTED_ARG.fullmatch(m.group("args"))
        if before.rstrip().endswith("]("):
            return arg.group("arg").replace(" ", "%20") if arg else "#"
        return (arg.group("arg") if arg else "") + newlines

    text = _TEMPLATE_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return _TEMPLATE_TAG.sub(shown, text)


def _paragraph_over_a_rule(heading, inline, lines: list[str | None]) -> bool:
    """A Setext heading (underlined) that is a paragraph above a rule: its text runs over two lines or more, or
    it is a sentence (ending in a full stop) under a line that overshoots it (a separator of 78 dashes under
    "a. `readarray' is now a synonym for `mapfile'."; a title's underline matches it, more or less)."""
    if heading.markup not in ("-", "=") or heading.map[1] - heading.map[0] < 2:
        return False
    if heading.map[1] - heading.map[0] > 2:
        return True
    rule, text = (lines[heading.map[1] - 1] or "").strip(), inline.content.strip()
    return text.endswith(".") and len(rule) > len(text) + 8


def _plain_inline(inline, links: bool = False) -> str:
    """A heading's text without its Markdown marks, from markdown-it's parse: emphasis and link syntax go,
    literal characters stay (`snake_case`, `a * b`, escapes, `<T>`: a tag that is no HTML element, as written),
    HTML tags go (``_html_inline_text``), an image counts as its alt text. With ``links`` (a table's cell), a
    link shows its address as in a paragraph (``_Links``)."""
    parts: list[str] = []
    tracked = _Links(parts) if links else None
    for child in inline.children or []:
        if tracked is not None and tracked.handles(child):
            continue
        if child.type in ("text", "text_special", "code_inline"):
            parts.append(child.content)
        elif child.type == "html_inline":
            shown = _html_inline_text(child.content)
            parts.append(child.content if shown is None else shown)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
            if tracked is not None:
                tracked.image()
    return clean_inline("".join(parts))


_A_OPEN = re.compile(r"""<a\s[^>]*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)
_A_CLOSE = re.compile(r"</a\s*>", re.I)
_LINK_TEXT = MarkdownIt("commonmark").normalizeLinkText  # a URL as written: "%E6%96%87" is "文" again


class _Links:
    """The addresses of a paragraph's links, each appended to the link's text as "text (address)" when it says
    something the text does not (``link_target``: a web or mail address, not a relative path or an #anchor): the
    answer to "where do I download the installer?" is the address. A link that is only an image (a README's
    build badge) adds nothing. Markdown links and inline HTML <a href> alike; ``parts`` is the caller's output,
    where ``BREAK`` stands for a line break."""

    BREAK = "\0"  # markdown-it reads NUL as U+FFFD: no text holds it

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts
        self.open: list[tuple[str, int]] = []  # (href, where its text starts in parts)
        self.images: set[int] = set()  # parts that are an image's alt text

    def handles(self, child) -> bool:
        """Consume a link's opening or closing token; False for any other token (the caller shows it)."""
        if child.type == "link_open":
            self.open.append((_LINK_TEXT(child.attrGet("href") or ""), len(self.parts)))
        elif child.type == "html_inline" and (m := _A_OPEN.match(child.content)):
            self.open.append((next(g for g in m.groups() if g is not None), len(self.parts)))
        elif child.type == "link_close" or (child.type == "html_inline" and _A_CLOSE.match(child.content)):
            if self.open:
                self._close(*self.open.pop())
        else:
            return False
        return True

    def image(self) -> None:
        """The part just appended is an image's alt text."""
        self.images.add(len(self.parts) - 1)

    def _close(self, href: str, start: int) -> None:
        shown = [i for i in range(start, len(self.parts)) if self.parts[i].strip(" " + self.BREAK)]
        if shown and all(i in self.images for i in shown):
            return  # a linked image
        text = "".join(p for p in self.parts[start:] if p != self.BREAK)
        if target := link_target(href, text):
            self.parts.append(f" ({target})")


# HTML elements by name: a tag of one of them is markup, a "tag" of another name (`List<T>`, `<filename>`, often
# meant literally by a README's author) is kept as written.
_HTML_TAGS = frozenset(html_defs.tags | html_defs.html5_tags | {"picture", "source", "svg", "path", "wbr"})
_TAG_NAME = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)")
# An escape or an HTML tag, comment, processing instruction or declaration, as markdown-it reads them.
_ESCAPE_OR_TAG = re.compile(r"\\\\.|(?P<tag>" + HTML_TAG_RE.pattern + ")")
_BACKTICKS = re.compile(r"`+")
_LINE_END = re.compile(r"[ \t]*(\n|$)")


def _code_spans(src: str) -> list[tuple[int, int]]:
    """Where the code spans of a paragraph's source are: a backtick run up to the next run of the same length
    (CommonMark), found in one pass (a regex that looked ahead from each unclosed run took minutes on a
    paragraph of many)."""
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(src)]
    by_length: dict[int, collections.deque[int]] = collections.defaultdict(collections.deque)
    for i, (start, end) in enumerate(runs):
        by_length[end - start].append(i)
    spans, i = [], 0
    while i < len(runs):
        later = by_length[runs[i][1] - runs[i][0]]
        while later and later[0] <= i:
            later.popleft()
        if later:
            j = later.popleft()
            spans.append((runs[i][0], runs[j][1]))
            i = j + 1
        else:
            i += 1  # an unmatched run is literal backticks
    return spans


def _html_inline_text(html: str) -> str | None:
    """What a reader sees of one piece of inline HTML: nothing for a tag or a comment, a line break for <br>; None
    for a tag whose name is no HTML element (kept as written)."""
    m = _TAG_NAME.match(html)
    if m is None:
        return ""  # a comment, processing instruction, declaration or CDATA section
    name = m.group(1).lower()
    if name not in _HTML_TAGS:
        return None
    return "\n" if name == "br" and not html.startswith("</") else ""


def _strip_html(src: str, htmls: list[str] | None) -> str:
    """Markdown source with its inline HTML as a reader sees it (``_html_inline_text``): the tags of ``htmls``
    (markdown-it's html_inline tokens, in order), or any tag where None; code spans and escapes untouched, so
    `<br>` written as code stays."""
    out: list[str] = []
    spans = _code_spans(src)
    pos = cursor = k = n = 0  # pos: copied up to; cursor: read up to; k: next of htmls; n: next code span
    while htmls is None or k < len(htmls):
        m = _ESCAPE_OR_TAG.search(src, cursor)
        if m is None:
            break
        if n < len(spans) and spans[n][0] < m.start():  # the code span comes first: nothing in it is markup
            cursor = max(cursor, spans[n][1])
            n += 1
            continue
        cursor = m.end()
        while n < len(spans) and spans[n][0] < cursor:
            n += 1  # backticks inside a tag's attribute are no code span
        tag = m.group("tag")
        if tag is None or (htmls is not None and tag != htmls[k]):
            continue
        k += 1
        shown = _html_inline_text(tag)
        if shown is None:
            continue
        if shown == "\n" and _LINE_END.match(src, m.end()):
            shown = ""  # a <br> at a line's end: the line ends anyway
        out += [src[pos : m.start()], shown]
        pos = m.end()
    out.append(src[pos:])
    return "".join(out)


def without_tags(text: str) -> str:
    """Text that holds HTML tags as characters (a page's <title> written with <strong> in it) as a reader sees it:
    tags of HTML elements dropped, others (`List<T>`) kept."""
    return _strip_html(text, None)


def _shown_lines(inline, lines: list[str | None]) -> list[str] | None:
    """A paragraph's source lines as a reader sees them, each line's container marks kept ("- ", "> ", indent):
    a link as its text, then its address where that is a web or mail address the text does not show
    ("Download the [installer](https://dl.example.com/setup.msi)" -> "Download the installer
    (https://dl.example.com/setup.msi)": a question for the download address found nothing; a relative path or
    an #anchor means nothing outside the site and is left out, ``_Links``), an image as its alt text, emphasis marks,
    escapes and entities as the characters they show, inline HTML as ``_html_inline_text``; code spans keep
    their backticks (they mark code). None when the paragraph shows as written, or when its lines cannot be
    matched to the source's (a code span across lines): then the source stays."""
    a, b = inline.map
    parts: list[str] = []  # the paragraph's shown pieces, links.BREAK between its lines
    links = _Links(parts)
    for child in inline.children or []:
        if links.handles(child):
            continue
        if child.type in ("text", "text_special", "image"):
            parts.append(child.content)
            if child.type == "image":
                links.image()
        elif child.type == "code_inline":
            parts.append(child.markup + child.content + child.markup)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(links.BREAK)
        elif child.type == "html_inline":
            shown = _html_inline_text(child.content)
            parts.append(child.content if shown is None else shown)
    out = "".join(parts).split(links.BREAK)
    out = [line.removesuffix("\n") for line in out]  # a <br> at a line's end: the line ends anyway
    source = lines[a:b]
    content = inline.content.split("\n")
    if len(out) != len(source) or len(content) != len(source) or any(s is None for s in source):
        return None
    shown_lines = []
    for src, cont, line in zip(source, content, out, strict=True):
        src, cont = src.rstrip(), cont.rstrip()
        if not src.endswith(cont):
            return None
        shown_lines.append(src[: len(src) - len(cont)] + line)
    return None if shown_lines == [s.rstrip() for s in source] else shown_lines


def _rewrite(lines: list[str | None], span: list[int], text: str | None) -> None:
    """Lines span[0]:span[1] replaced by ``text`` (its line count may differ: a comment over lines is gone;
    None: no line at all)."""
    a, b = span
    lines[a] = text
    lines[a + 1 : b] = [None] * (b - a - 1)


def _join(lines: list[str | None]) -> str:
    return "\n".join(line for line in lines if line is not None)
