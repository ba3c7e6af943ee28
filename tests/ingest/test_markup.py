"""Markup read as a reader sees it: HTML inside Markdown, XML and DocBook, long headings, code that is not
Markdown."""

from __future__ import annotations

import time

import pytest

from ingest.parsers import detect_type, parse
from tests.ingest.test_parsers import assert_tiles, section_of

# --- a heading made of a whole paragraph ----------------------------------------------------------------
LONG_PARAGRAPH = " ".join(
    f"This is an implementation of the language number {i} with extensions and a few bugs fixed."
    for i in range(9)
)


def test_a_setext_heading_made_of_a_paragraph_is_a_short_title_and_whole_text():
    md = f"{LONG_PARAGRAPH}\n{'-' * 60}\n\nThe body of the section.\n"
    doc = parse(md.encode(), "README.md")
    assert_tiles(doc)
    assert 100 <= len(doc.title) <= 151 and doc.title.endswith("\u2026")
    assert LONG_PARAGRAPH.startswith(doc.title[:-1])
    assert not doc.title[:-1].endswith((" ", "."))  # cut at a word boundary, no dangling space or stop
    path = section_of(doc, "The body").heading_path
    assert path == [doc.title]
    heading = section_of(doc, "number 8")
    assert LONG_PARAGRAPH in doc.text[heading.start : heading.end]  # the words are all still text


def test_a_short_heading_is_not_cut():
    doc = parse(b"Introduction to the tool\n---\n\nBody.\n", "README.md")
    assert doc.title == "Introduction to the tool"


# --- code is not Markdown ---------------------------------------------------------------------------------
AWK = "# Print the second field of each line\n# Usage: awk -f fields.awk file\n\n{ print $2 }\n"
PYTHON = '# Configuration file for the Sphinx documentation builder.\n#\n# -- Project\n\nproject = "demo"\n'


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (AWK, "fields.awk"),
        (PYTHON, "conf.py"),
        ("# Utility functions\npackage Foo::Util;\n1;\n", "Util.pm"),
        ("# Build the docs\nall:\n\tsphinx-build . _build\n", "Makefile"),
        ("# Build the docs\nall:\n\tsphinx-build . _build\n", "GNUmakefile"),
        ("#!/bin/sh\n# Install the tool\n\nmake install\n", None),  # an interpreter line says it is a script
        ("#!/usr/bin/env python3\n# Tool\n\nprint(1)\n", "tool"),
    ],
)
def test_a_code_file_is_text_and_its_comments_are_no_headings(data, name):
    assert detect_type(data.encode(), name) == "text"
    doc = parse(data.encode(), name)
    assert all(not s.heading_path for s in doc.sections)
    assert doc.title is None
    assert data.strip().splitlines()[-1] in doc.text


def test_markdown_with_a_markdown_name_or_none_stays_markdown():
    md = b"# Tools\n\nSome notes on `awk`.\n"
    assert detect_type(md, "notes.md") == detect_type(md, None) == detect_type(md, "README") == "markdown"
    assert detect_type(b"# Tool\n\n- a\n", "tool.mdown") == "markdown"


# --- a root prompt in a plain-text README is no heading ---------------------------------------------------
# Excerpts of Debian's /usr/share/doc: adduser's examples/INSTALL, apt's NEWS.Debian (1.2~exp1), git's
# contrib/git-jump/README. Read as Markdown (no suffix says otherwise), their "# command" lines were headings,
# and the document's title.
ADDUSER_INSTALL = """\
Please read the README file for detailed information about what needs to
be done to install the ADDUSER Local System Additions program.  In brief:

# cp --pr=t ./adduser.local /usr/local/sbin
# chmod 755 /usr/local/sbin/adduser.local
# cp ./adduser.local.conf /etc
# editor /etc/adduser.local.conf         # The important step!

IMPORTANT: Do NOT just perform the above steps without knowing what you
are doing!
"""
APT_NEWS = """\
apt (1.2~exp1) experimental; urgency=medium

  [ Automatic removal of debs after install ]
  After packages are successfully installed by apt(8),
  the corresponding .deb package files will be
  removed from the /var/cache/apt/archives cache directory.

  This can be changed by setting the apt configuration option
    "Binary::apt::APT::Keep-Downloaded-Packages" to "true". E.g:

  # echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' \\
      > /etc/apt/apt.conf.d/01keep-debs

  Please note that the behavior of apt-get is unchanged.
"""
GIT_JUMP = """\
Using git-jump
--------------

To use it, just drop git-jump in your PATH, and then invoke it like
this:

--------------------------------------------------
# jump to changes not yet staged for commit
git jump diff

# jump to changes that are staged for commit; you can give
# arbitrary diff options
git jump diff --cached

# use the silver searcher for git jump grep
git config jump.grepCmd "ag --column"
--------------------------------------------------


Related Programs
----------------

You can accomplish some of the same things with individual tools.
"""


@pytest.mark.parametrize(
    ("data", "name", "prompt"),
    [
        (ADDUSER_INSTALL, "INSTALL", "# chmod 755 /usr/local/sbin/adduser.local"),
        (APT_NEWS, "NEWS.Debian", "  # echo 'Binary::apt::APT::Keep-Downloaded-Packages"),
        (
            "Enable it as root:\n\n  # echo 1 > /proc/sys/vm/overcommit_memory\n\nThen restart.\n",
            None,
            "  # echo 1",
        ),
        ("Install:\n\n# apt install widgetry\n# widgetry --start\n", "README", "# apt install widgetry"),
    ],
)
def test_a_text_file_with_root_prompts_is_text(data, name, prompt):
    assert detect_type(data.encode(), name) == "text"
    doc = parse(data.encode(), name)
    assert doc.title is None and all(not s.heading_path for s in doc.sections)
    assert prompt in doc.text  # the line as written, "#" and all


def test_a_readme_with_underlined_headings_keeps_them_and_not_its_example_comments():
    doc = parse(GIT_JUMP.encode(), "README")
    assert doc.detected_type == "markdown"  # its underlined titles are headings
    assert {tuple(s.heading_path) for s in doc.sections} == {("Using git-jump",), ("Related Programs",)}
    assert doc.title == "Using git-jump"
    # the comments of the example and the command over its closing dashes stay text in the example
    assert "# jump to changes not yet staged for commit\ngit jump diff\n" in doc.text
    assert (
        'git jump diff --cached\n\n# use the silver searcher for git jump grep\ngit config jump.grepCmd "ag --column"\n'
        in doc.text
    )


def test_markdown_without_a_markdown_name_keeps_its_headings_beside_a_prompt():
    md = "# Widgetry\n\nInstall it as root:\n\n    # apt install widgetry\n\n## Usage\n\nRun it.\n"
    assert detect_type(md.encode(), "README") == "markdown"
    doc = parse(md.encode(), "README")
    assert doc.title == "Widgetry"
    assert section_of(doc, "Run it").heading_path == ["Widgetry", "Usage"]
    assert "# apt install widgetry" in doc.text  # an indented code block: never a heading
    # two headings in a row are Markdown's, not a comment block
    doc = parse(b"# Widgetry\n## Usage\n\nRun it.\n", "README")
    assert section_of(doc, "Run it").heading_path == ["Widgetry", "Usage"]
    # a name, a dash and what it is: a title (libdatrie1's README), not a command and its option
    doc = parse(
        b"datrie - Double-Array Trie Library\n==================================\n\nA trie.\n", "README"
    )
    assert doc.title == "datrie - Double-Array Trie Library"
    # a file named as Markdown is read as its author wrote it: there "# ..." is a heading
    assert parse(b"# apt install widgetry\n\nThen run it.\n", "notes.md").title == "apt install widgetry"


# --- HTML inside Markdown ---------------------------------------------------------------------------------
README = """<p align="center">
  <a href="https://example.org"><img src="logo.png" alt="Logo" width="200"></a>
</p>
<h1 align="center">Widgetry</h1>

Press <kbd>Ctrl</kbd>+<kbd>C</kbd> to stop.<br>
Area is r<sup>2</sup> times pi, see <a href="https://example.org/docs">the manual</a>.<!-- TODO: link -->
Write `<br>` for a break; `List<T>` and Vec<T> stay.

<details>
<summary>Supported platforms</summary>

Linux and **macOS**.

</details>

<table>
  <tr><th>Option</th><th>Default</th></tr>
  <tr><td>--fast</td><td>off</td></tr>
</table>

<!-- badges: start -->
<style>.x { color: red }</style>

```html
<div class="banner">Hello</div>
```

- An item with <b>bold</b> text
  <div>and a block in it</div>

## Usage <sup>beta</sup>

Run it.
"""


def test_html_in_markdown_is_the_text_a_reader_sees():
    doc = parse(README.encode(), "README.md")
    assert_tiles(doc)
    text = doc.text
    for markup in ("<p", "<img", "<a ", "</a>", "<kbd>", "<sup>", "<details>", "<summary>", "<table", "<td>",
                   "<!--", "TODO", "badges", "<style", "color: red", "<b>", "<div>", "<h1", "align="):  # fmt: skip
        assert markup not in text, markup
    assert doc.title == "Widgetry"
    assert "Press Ctrl+C to stop.\nArea is r2 times pi, see the manual (https://example.org/docs)." in text
    assert "Logo" not in text  # an image shows no text, as on an HTML page
    assert "Supported platforms\n\nLinux and macOS." in text
    assert "Option: --fast; Default: off" in text  # a table reads as rows naming their columns
    assert "- An item with bold text\n  and a block in it" in text
    assert section_of(doc, "Run it").heading_path == ["Widgetry", "Usage beta"]
    assert section_of(doc, "Linux and").heading_path == ["Widgetry"]


def test_code_that_shows_html_keeps_it():
    doc = parse(README.encode(), "README.md")
    assert '```html\n<div class="banner">Hello</div>\n```' in doc.text
    assert "Write `<br>` for a break; `List<T>` and Vec<T> stay." in doc.text
    indented = parse(b"# Tags\n\nAn example:\n\n    <p>Hello <b>you</b></p>\n", "README.md")
    assert "<p>Hello <b>you</b></p>" in indented.text


def test_markdown_without_html_is_unchanged_by_the_html_reading():
    md = "# Guide\n\nSome text with a < b > c.\n\n- one\n- two\n"
    doc = parse(md.encode(), "guide.md")
    assert doc.text == "Guide\n\nSome text with a < b > c.\n\n- one\n- two"


# --- XML and DocBook ---------------------------------------------------------------------------------------
DOCBOOK = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE book PUBLIC "-//OASIS//DTD DocBook XML V4.5//EN" "http://www.oasis-open.org/docbook/xml/4.5/docbookx.dtd" [
<!ENTITY version "2.4.1">
<!ENTITY product "Frobnicator &version;">
]>
<book>
  <bookinfo>
    <title>The &product; Manual</title>
    <author><firstname>Ada</firstname><surname>Lovelace</surname></author>
    <legalnotice><para>Copying permitted.</para></legalnotice>
  </bookinfo>
  <chapter id="intro">
    <title>Getting started</title>
    <para>The <application>frob</application> tool turns &lt;input&gt; into output &mdash; quickly.<indexterm><primary>frob</primary></indexterm></para>
    <note><para>Run it as root.</para></note>
    <programlisting>frob --fast   input.txt
  | sort</programlisting>
    <section>
      <title>Options</title>
      <variablelist>
        <varlistentry><term><option>--fast</option></term>
          <listitem><para>Skip the checks.</para></listitem></varlistentry>
      </variablelist>
      <itemizedlist>
        <listitem><para>First point.</para></listitem>
        <listitem><para>Second point.</para></listitem>
      </itemizedlist>
      <table><title>Limits</title><tgroup cols="2">
        <thead><row><entry>Name</entry><entry>Value</entry></row></thead>
        <tbody><row><entry>files</entry><entry>64</entry></row></tbody>
      </tgroup></table>
    </section>
  </chapter>
  <chapter><title>Reference</title><para>See the manual page.</para></chapter>
</book>
"""


def test_docbook_sections_are_headings_and_blocks_paragraphs():
    doc = parse(DOCBOOK.encode(), "manual.xml")
    assert doc.detected_type == detect_type(DOCBOOK.encode(), None) == "xml"
    assert_tiles(doc)
    assert doc.title == "The Frobnicator 2.4.1 Manual"  # internal entities expanded, nested ones too
    text = doc.text
    assert "<" not in text.replace("<input>", "") and "&" not in text and "id=" not in text
    assert "The frob tool turns <input> into output \u2014 quickly." in text  # &lt; and &mdash; resolved
    assert "Note: Run it as root." in text
    assert "frob --fast   input.txt\n  | sort" in text  # a program listing keeps its spacing and lines
    assert "--fast: Skip the checks." in text and "- First point." in text
    assert "Name: files; Value: 64" in text
    assert "Copying permitted." in text and "Lovelace" not in text  # a title page's notice, not its names
    assert section_of(doc, "Skip the checks").heading_path == [doc.title, "Getting started", "Options"]
    assert section_of(doc, "See the manual").heading_path == [doc.title, "Reference"]


GENERIC_XML = """<?xml version="1.0"?>
<catalog xmlns:x="urn:x">
  <!-- generated -->
  <entry id="1"><name>Widget</name><price currency="EUR">12.50</price></entry>
  <entry id="2"><name>Gadget</name><note>Ships in <b>two</b> days.</note></entry>
</catalog>
"""


def test_generic_xml_is_its_text_an_element_a_line():
    doc = parse(GENERIC_XML.encode(), "catalog.xml")
    assert doc.detected_type == "xml"
    assert doc.text == "Widget\n12.50\n\nGadget\nShips in two days."
    assert doc.title is None


def test_xml_of_attributes_only_reads_its_attributes():
    data = b'<?xml version="1.0"?>\n<book xmlns="http://www.devhelp.net/book" title="Foo Manual" author="">\n'
    data += (
        b'<functions><keyword type="function" name="foo_open ()" link="foo.html#open"/></functions></book>\n'
    )
    doc = parse(data, "foo.devhelp2")
    assert doc.text == "title: Foo Manual\n\ntype: function; name: foo_open (); link: foo.html#open"


def test_xml_never_reads_external_entities_nor_expands_a_bomb(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    data = (
        f'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY s SYSTEM "{secret.as_uri()}">]>\n<d><p>a &s; b</p></d>'
    )
    doc = parse(data.encode(), "d.xml")
    assert "TOP-SECRET" not in doc.text and "a" in doc.text
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = f'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY l0 "lol">{lol}]>\n<d>&l9;</d>'
    started = time.perf_counter()
    doc = parse(bomb.encode(), "bomb.xml")
    assert len(doc.text) < 100_000 and time.perf_counter() - started < 5


def test_xml_many_references_to_one_large_entity_fail_with_a_reason(monkeypatch):
    # each entity under the per-entity bound and no nesting, but many references to one 10,000-character entity:
    # past the file's expansion budget the file is refused with the reason. (libxml2 itself refuses such files
    # at ~1 MB of expansion and they are read as plain text: the budget is lowered here to reach ours.)
    from ingest.parsers import ParseError, xmldoc

    monkeypatch.setattr(xmldoc, "_MIN_EXPANSION", 100_000)
    big = "word " * 2_000
    data = f'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY b "{big}">]>\n<d>{"<p>&b;</p>" * 50}</d>'
    with pytest.raises(ParseError, match="entity references expand"):
        parse(data.encode(), "many.xml")
    # a few references to the same entity are read
    few = f'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY b "{big}">]>\n<d><p>&b;</p><p>&b;</p></d>'
    assert parse(few.encode(), "few.xml").text.count("word") == 4_000


def test_malformed_xml_is_plain_text_and_xhtml_is_html():
    doc = parse(b'<?xml version="1.0"?>\n<a><b>unclosed</a>\n', "broken.xml")
    assert doc.detected_type == "text" and "<b>unclosed</a>" in doc.text
    xhtml = b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><body><p>Hi</p></body></html>'
    assert detect_type(xhtml, "page.xml") == "html"
    assert detect_type(b"<config><a>1</a></config>", "settings.xml") == "xml"
    assert detect_type(b"<config><a>1</a></config>", None) != "xml"  # no declaration: the name says XML


def test_a_paragraph_of_many_unclosed_backtick_runs_and_tags_parses_in_linear_time():
    runs = " ".join("`" * k + " x" for k in range(1, 400))  # no run closes another: all literal backticks
    md = f"<b>Hi</b> {runs} <i>end</i>\n\n" + "<kbd>k</kbd> word<br> " * 20_000 + "\n"
    started = time.perf_counter()
    doc = parse(md.encode(), "README.md")
    assert time.perf_counter() - started < 10
    assert doc.text.startswith("Hi ` x `` x") and "end" in doc.text and "<kbd>" not in doc.text


def test_markdown_links_and_emphasis_read_as_the_text_a_reader_sees():
    # A handbook's sentences are full of links ("We recommend using [KeePassXC](https://keepassxc.org/) ...");
    # quoted and embedded with their Markdown syntax they read as markup and lose to sentences without any. The
    # text is what a reader sees, with a web address after its link's text (where to download, whom to write to)
    md = (
        "# Passwords\n\n"
        "We recommend using [KeePassXC](https://keepassxc.org/) which is **open source**. See the\n"
        '[security guide]({% page "/security/" %}) and [the FAQ][faq] \\- or <https://x.example/a>.\n\n'
        "- Go to\n  [https://transitapp.ost.dot.gov/](https://transitapp.ost.dot.gov/)\n"
        "- Click on ![](x.png) **Register**\n\n"
        "> Run `make [all](x)` first.\n\n"
        "[faq]: https://example.com/faq\n"
    )
    text = parse(md.encode(), "passwords.md").text
    assert "We recommend using KeePassXC (https://keepassxc.org/) which is open source. See the\n" in text
    assert "security guide and the FAQ (https://example.com/faq) - or https://x.example/a." in text
    assert "- Go to\n  https://transitapp.ost.dot.gov/\n- Click on  Register" in text
    assert "> Run `make [all](x)` first." in text  # code keeps its marks; list and quote marks stay
    for markup in ("](https", "**", "{%", "[faq]", "\\-"):
        assert markup not in text, markup


def test_link_addresses_are_kept_where_they_lead_somewhere():
    # "Where do I download the installer?" could not be answered from a Markdown page: only the link's text
    # was indexed. A web or mail address now follows its text; a relative path, an #anchor, an image's path and
    # a linked badge mean nothing outside the site and add nothing, nor does a link whose text is its address.
    md = (
        "# Install\n\n"
        "Download the [installer](https://downloads.example.com/app-2.1.msi) from the portal, or ask\n"
        "[the service desk](mailto:help@example.com). See [setup](../guide.md#setup), [above](#install),\n"
        "![screenshot](img/step1.png) and [![build](https://ci.example.com/b.svg)](https://ci.example.com/p).\n"
        "Docs: [example.com/docs](https://example.com/docs/), <https://example.com/faq>, "
        'an <a href="https://intranet.example.com/vpn">intranet page</a>.\n\n'
        "| Platform | Installer |\n|---|---|\n| Windows | [MSI](https://downloads.example.com/app.msi) |\n"
    )
    text = parse(md.encode(), "install.md").text
    assert (
        "Download the installer (https://downloads.example.com/app-2.1.msi) from the portal, or ask\n" in text
    )
    assert "the service desk (help@example.com). See setup, above,\nscreenshot and build.\n" in text
    assert (
        "Docs: example.com/docs, https://example.com/faq, an intranet page (https://intranet.example.com/vpn)."
        in text
    )
    assert "Platform: Windows; Installer: MSI (https://downloads.example.com/app.msi)" in text
    html = (
        b'<html><body><nav><a href="https://example.com/">Home</a></nav><main><h1>Install</h1><p>Download the'
        b' <a href="https://downloads.example.com/app-2.1.msi">installer</a>; read <a href="guide.html">the guide'
        b'</a> or <a href="#faq">the FAQ</a>. <a href="https://example.com/"><img src="logo.png" alt=""></a></p>'
        b"<table><tr><th>Platform</th><th>Installer</th></tr><tr><td>Windows</td><td>"
        b'<a href="https://downloads.example.com/app.msi">MSI</a></td></tr></table></main></body></html>'
    )
    text = parse(html, "install.html").text
    assert (
        "Download the installer (https://downloads.example.com/app-2.1.msi); read the guide or the FAQ."
        in text
    )
    assert "Platform: Windows; Installer: MSI (https://downloads.example.com/app.msi)" in text
    assert "Home" not in text  # navigation is still chrome


def test_site_generator_tags_in_markdown_read_as_the_page_shows():
    # Jekyll / Eleventy handbooks (18F's) write links to their own pages with a tag ("[leave]({% page "/leave/"
    # %})": no link to a Markdown reader, the tag has spaces), wrap notes in block tags and name chat channels
    md = (
        "# Leave\n\n{% alert %}\n  Use the [leave chart](https://x.example/chart).\n{% endalert %}\n\n"
        'Before you go, read [out of office expectations]({% page "/ooo/" %}) and tell\n'
        '{% slack_channel "equipment" %}.{% comment %} a note for editors {% endcomment %}\n'
        '{% include "steps.html"\nsteps: travel.steps %}\n\n'
        "```liquid\n{% if user %}Hello{% endif %}\n```\n"
    )
    text = parse(md.encode(), "leave.md").text
    assert "Use the leave chart (https://x.example/chart)." in text
    assert "Before you go, read out of office expectations and tell\nequipment." in text
    assert "{% if user %}Hello{% endif %}" in text  # code shows the tags it is about
    for markup in ("{% alert", "endalert", "slack_channel", "editors", "steps.html", "travel.steps", "/ooo/"):
        assert markup not in text, markup
