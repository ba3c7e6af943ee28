"""Builders of real document files for the parser tests (python-docx, python-pptx, openpyxl, xlsxwriter,
reportlab, pypdf), each returning the file's bytes."""

from __future__ import annotations

import io
import zipfile


def make_pdf(pages: list[str], title: str | None = "Quarterly Report") -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    if title:
        c.setTitle(title)
    for text in pages:
        y = 800
        for line in text.split("\n"):
            c.drawString(72, y, line)
            y -= 16
        c.showPage()
    c.save()
    return buf.getvalue()


def _pdf_file(objects: list[bytes]) -> bytes:
    """A PDF file of these objects (numbered from 1, the catalog first) with its cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def make_cmap_pdf(cmap: str, ordering: str, codes: bytes) -> bytes:
    """One page showing ``codes`` in a CJK font that is not embedded, through the predefined Adobe CMap
    ``cmap`` (e.g. "KSC-EUC-H"; ``ordering``: "Korea1", "GB1", "Japan1", "CNS1"), as older Chinese, Japanese and
    Korean PDFs do: the text is only in the CMap's character codes, no ToUnicode map."""
    content = b"BT /F1 24 Tf 20 100 Td <" + codes.hex().upper().encode() + b"> Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 7 0 R >>",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /CJKFont /Encoding /"
        + cmap.encode()
        + b" /DescendantFonts [5 0 R] >>",
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /CJKFont /CIDSystemInfo << /Registry (Adobe) /Ordering ("
        + ordering.encode()
        + b") /Supplement 1 >> /FontDescriptor 6 0 R >>",
        b"<< /Type /FontDescriptor /FontName /CJKFont /Flags 6 /FontBBox [0 -120 1000 880] /ItalicAngle 0 "
        b"/Ascent 880 /Descent -120 /CapHeight 700 /StemV 80 >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
    ]
    return _pdf_file(objects)


def make_pdf_with_outline() -> bytes:
    """Three pages with bookmarks: "Overview" (p1), "Details" (p2) > "Limits" (p3, on the page)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    pages = [
        ("Overview", 0, ["Overview", "The product answers questions."]),
        ("Details", 0, ["Details", "It reads documents."]),
        ("Limits", 1, ["Carried over from details.", "Limits", "Uploads stop at 100 MB."]),
    ]
    for n, (title, level, lines) in enumerate(pages):
        y = 800
        for line in lines:
            c.drawString(72, y, line)
            y -= 16
        c.bookmarkPage(f"p{n}")
        c.addOutlineEntry(title, f"p{n}", level=level)
        c.showPage()
    c.save()
    return buf.getvalue()


def make_sized_pdf(
    pages: list[list[tuple[float, str]]], outline: str | None = None, title: str | None = None
) -> bytes:
    """Pages of (font size, line) in Helvetica, no bookmarks unless ``outline`` names one (on page 1), as a
    report saved without "create bookmarks"; lines are drawn in the text's own units (``Tf`` at the size)
    and, for sizes given negative, at 1 pt scaled by the text matrix (as many PDF writers do). ``title``: the
    document's metadata title."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    if title:
        c.setTitle(title)
    for n, lines in enumerate(pages):
        y = 800.0
        for size, line in lines:
            t = c.beginText()
            if size < 0:
                size = -size
                t.setTextTransform(size, 0, 0, size, 72, y)
                t.setFont("Helvetica", 1)
            else:
                t.setTextOrigin(72, y)
                t.setFont("Helvetica", size)
            t.textLine(line)
            c.drawText(t)
            y -= size * 1.5
        if outline and n == 0:
            c.bookmarkPage("p0")
            c.addOutlineEntry(outline, "p0", level=0)
        c.showPage()
    c.save()
    return buf.getvalue()


def make_image_only_pdf() -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.rect(100, 100, 300, 300, fill=1)  # drawn shapes, no text: what a scanned page looks like to us
    c.showPage()
    c.save()
    return buf.getvalue()


def make_encrypted_pdf(password: str = "s3cret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(make_pdf(["Top secret salaries"]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password="owner")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def make_docx() -> bytes:
    from docx import Document

    d = Document()
    d.core_properties.title = "Employee Handbook"
    d.add_heading("Employee Handbook", level=0)
    d.add_paragraph("Welcome to the company. This handbook explains our policies.")
    d.add_heading("Leave", level=1)
    d.add_paragraph("Every employee gets 25 days of paid leave per year.")
    d.add_heading("Sick leave", level=2)
    d.add_paragraph("Report sickness to your manager before 10:00.")
    table = d.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("Country", "Days"), ("Germany", "30"), ("China", "15")]):
        table.rows[r].cells[0].text = a
        table.rows[r].cells[1].text = b
    d.add_heading("Travel", level=1)
    d.add_paragraph("Book trains for trips under 500 km.")
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def make_pptx(core_title: str = "") -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    prs.core_properties.title = core_title  # python-pptx's own default is "PowerPoint Presentation"
    s1 = prs.slides.add_slide(prs.slide_layouts[1])  # title and content
    s1.shapes.title.text = "Roadmap 2025"
    s1.placeholders[1].text = "Ship the search API in March."
    s2 = prs.slides.add_slide(prs.slide_layouts[5])  # title only
    s2.shapes.title.text = "Budget"
    tbl = s2.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    tbl.cell(0, 0).text, tbl.cell(0, 1).text = "Team", "Budget"
    tbl.cell(1, 0).text, tbl.cell(1, 1).text = "Search", "1.2M"
    s2.notes_slide.notes_text_frame.text = "Budget approved by the board."
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


def make_xlsx() -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Prices"
    ws.append(["Product", "Price", "Currency"])
    ws.append(["Widget", 9.5, "EUR"])
    ws.append(["Gadget", 12, "USD"])
    ws2 = wb.create_sheet("Staff")
    ws2.append(["Name", "Role"])
    ws2.append(["张伟", "工程师"])
    wb.create_sheet("Empty")
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def make_zip_bomb_docx(member_mb: int = 64) -> bytes:
    """A real .docx plus one member of `member_mb` MB of zeros (deflates ~1000:1)."""
    src = zipfile.ZipFile(io.BytesIO(make_docx()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for info in src.infolist():
            out.writestr(info, src.read(info))
        with out.open("word/media/padding.bin", "w", force_zip64=True) as f:
            block = b"\0" * (1 << 20)
            for _ in range(member_mb):
                f.write(block)
    return buf.getvalue()


HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Install guide</title>
<style>body { color: red }</style><script>var secret = "tracking code";</script></head>
<body>
<header><a href="/">Home</a> | <a href="/docs">Docs</a></header>
<nav><ul><li>Menu entry one</li><li>Menu entry two</li></ul></nav>
<main>
<div role="navigation">Previous topic | Next topic</div>
<h1>Installation<a class="headerlink" href="#installation">¶</a></h1>
<p>Download the <b>installer</b> from the portal.</p>
<h2>On Linux</h2>
<p>Run the script as root.<br>Then reboot.</p>
<table><tr><th>Distro</th><th>Command</th></tr><tr><td>Debian</td><td>apt install autoglm</td></tr></table>
<form><input name="q"><button>Search the site</button></form>
<h2>On Windows</h2>
<p>Double-click the MSI file.</p>
</main>
<aside>Related articles sidebar</aside>
<footer>Copyright footer text</footer>
</body></html>
"""

MARKDOWN_DOC = """Intro line before any heading.

# Guide

Welcome text.

Setup
-----

Install **everything** first.

```
# not a heading, a shell comment
```

### Deep detail

Fine print.

Next Part
=========

Last words.
"""


def make_docx_real_world() -> bytes:
    """Word features python-docx's own text skips: a heading style based on "Heading 1", an outline level
    on a plain paragraph, tracked changes, a hyperlink, content controls (one a table of contents, two still
    showing their prompt), a text box stored twice (DrawingML and its VML fallback), a table cell with a
    tracked insertion, footnotes."""
    from docx import Document
    from docx.enum.style import WD_STYLE_TYPE
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from lxml import etree

    W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    NS = (f'xmlns:w="{W}" xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
          'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"')  # fmt: skip

    def xml(s: str):
        return etree.fromstring(f"<root {NS}>{s}</root>")[0]

    d = Document()
    chapter = d.styles.add_style("Chapter", WD_STYLE_TYPE.PARAGRAPH)
    chapter.base_style = d.styles["Heading 1"]
    body = d.element.body
    sect = body[-1]  # sectPr stays last
    d.add_paragraph("Remote work", style="Chapter")
    for s in (
        '<w:p><w:r><w:t xml:space="preserve">Staff may work from home </w:t></w:r>'
        '<w:ins w:id="1" w:author="HR"><w:r><w:t>three</w:t></w:r></w:ins>'
        '<w:del w:id="2" w:author="HR"><w:r><w:delText>two</w:delText></w:r></w:del>'
        '<w:r><w:t xml:space="preserve"> days a week; see </w:t></w:r>'
        '<w:hyperlink r:id="rIdX"><w:r><w:t>the intranet</w:t></w:r></w:hyperlink>'
        '<w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText> PAGE </w:instrText></w:r>'
        '<w:r><w:fldChar w:fldCharType="end"/></w:r><w:r><w:t>.</w:t></w:r>'
        '<w:r><w:footnoteReference w:id="1"/></w:r></w:p>',
        '<w:sdt><w:sdtPr><w:docPartObj><w:docPartGallery w:val="Table of Contents"/></w:docPartObj></w:sdtPr>'
        "<w:sdtContent><w:p><w:r><w:t>Contents remote work 1</w:t></w:r></w:p></w:sdtContent></w:sdt>",
        '<w:p><w:pPr><w:outlineLvl w:val="1"/></w:pPr><w:r><w:t>Equipment</w:t></w:r></w:p>',
        '<w:sdt><w:sdtPr><w:alias w:val="Budget"/></w:sdtPr><w:sdtContent><w:p><w:r>'
        "<w:t>The equipment budget is 800 EUR per person.</w:t></w:r>"
        '<w:sdt><w:sdtPr><w:showingPlcHdr/></w:sdtPr><w:sdtContent><w:r><w:t xml:space="preserve"> Click or tap '
        "here to enter text.</w:t></w:r></w:sdtContent></w:sdt></w:p></w:sdtContent></w:sdt>",
        "<w:sdt><w:sdtPr><w:showingPlcHdr/></w:sdtPr><w:sdtContent><w:p><w:r><w:t>Click or tap here to enter "
        "text.</w:t></w:r></w:p></w:sdtContent></w:sdt>",
        "<w:p><w:r><w:t>Shipping is free.</w:t></w:r><w:r><mc:AlternateContent>"
        '<mc:Choice Requires="wps"><w:drawing><w:txbxContent><w:p><w:r><w:t>Boxed tip: ask IT for a headset.'
        "</w:t></w:r></w:p></w:txbxContent></w:drawing></mc:Choice><mc:Fallback><w:pict><w:txbxContent><w:p>"
        "<w:r><w:t>Boxed tip: ask IT for a headset.</w:t></w:r></w:p></w:txbxContent></w:pict></mc:Fallback>"
        "</mc:AlternateContent></w:r></w:p>",
    ):
        sect.addprevious(xml(s))
    table = d.add_table(rows=2, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Item", "Limit"
    table.rows[1].cells[0].text = "Monitor"
    table.rows[1].cells[1]._tc.append(xml('<w:p><w:ins w:id="3" w:author="HR"><w:r><w:t>300 EUR</w:t></w:r>'
                                          "</w:ins></w:p>"))  # fmt: skip
    notes = (f'<w:footnotes {NS}><w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p>'
             '</w:footnote><w:footnote w:id="1"><w:p><w:r><w:t>Agreed with the works council in 2024.</w:t>'
             "</w:r></w:p></w:footnote></w:footnotes>")  # fmt: skip
    ct = "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml"
    d.part.relate_to(Part(PackURI("/word/footnotes.xml"), ct, notes.encode(), d.part.package), RT.FOOTNOTES)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def make_email(html_body: bool = False) -> bytes:
    """A reply with a body (plain or HTML only), a damaged PDF, a forwarded message, a Word document and an
    image attached."""
    from email.message import EmailMessage

    fwd = EmailMessage()
    fwd["From"], fwd["To"], fwd["Subject"] = (
        "Facilities <fac@example.com>",
        "ops@example.com",
        "Badge readers",
    )
    fwd["Date"] = "Mon, 03 Mar 2025 09:00:00 +0100"
    fwd.set_content("The badge readers on floor 3 are replaced on Friday.")
    m = EmailMessage()
    m["From"], m["To"] = "Anna Schmidt <anna@example.com>", "team@example.com"
    m["Subject"] = "Re: Office move – überall neue Schlüssel"
    m["Date"] = "Tue, 04 Mar 2025 10:30:00 +0100"
    m["Message-ID"] = "<1@example.com>"
    text = "Hi all,\n\nthe office moves to Torstrasse 140 on 1 April.\nNew keys are handed out at reception."
    if html_body:
        m.set_content("<html><body><nav>Menu</nav><p>Hi all,</p><p>the office moves to <b>Torstrasse 140</b> on "
                      "1 April.</p></body></html>", subtype="html")  # fmt: skip
    else:
        m.set_content(text)
    m.add_attachment(b"%PDF-1.4 floor plan", maintype="application", subtype="pdf", filename="floor-plan.pdf")
    m.add_attachment(fwd)
    m.add_attachment(make_docx(), maintype="application", subtype="octet-stream", filename="handbook.docx")
    m.add_attachment(b"\x89PNG\r\n\x1a\n" + bytes(64), maintype="image", subtype="png", filename="map.png")
    return m.as_bytes()


_ODF_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
           'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
           'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
           'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
           'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" '
           'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
           'xmlns:dc="http://purl.org/dc/elements/1.1/" '
           'xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0"')  # fmt: skip


def _odf_zip(mimetype: str, body: str, title: str | None) -> bytes:
    """An OpenDocument package as LibreOffice writes it: the mimetype member stored first."""
    content = (f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document-content {_ODF_NS}><office:body>{body}'
               "</office:body></office:document-content>")  # fmt: skip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", mimetype, compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        if title is not None:
            meta = (f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document-meta {_ODF_NS}><office:meta>'
                    f"<dc:title>{title}</dc:title></office:meta></office:document-meta>")  # fmt: skip
            z.writestr("meta.xml", meta, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("META-INF/manifest.xml", "<manifest/>", compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def make_odt(mimetype: str = "application/vnd.oasis.opendocument.text") -> bytes:
    """An OpenDocument text as LibreOffice writes it (mimetype stored first), with headings, a list, a table
    with repeated and covered cells, a text box, a footnote, a comment, a tracked deletion and a table of
    contents."""
    body = """<office:text>
<text:tracked-changes><text:changed-region><text:deletion><text:p>removed words</text:p></text:deletion>
</text:changed-region></text:tracked-changes>
<text:table-of-content><text:index-body><text:p>Travel ..... 1</text:p></text:index-body></text:table-of-content>
<text:h text:outline-level="1">Travel</text:h>
<text:p>Book trains<text:s text:c="2"/>for trips under 500 km.<text:note text:note-class="footnote">
<text:note-citation>1</text:note-citation><text:note-body><text:p>Measured by road.</text:p></text:note-body>
</text:note><office:annotation><text:p>check this</text:p></office:annotation></text:p>
<text:list><text:list-item><text:p>Second class</text:p></text:list-item>
<text:list-item><text:p>Seat reservations<text:tab/>allowed</text:p></text:list-item></text:list>
<text:h text:outline-level="2">Allowances</text:h>
<table:table><table:table-row><table:table-cell><text:p>City</text:p></table:table-cell>
<table:table-cell><text:p>Per day</text:p></table:table-cell></table:table-row>
<table:table-row><table:table-cell><text:p>Paris</text:p></table:table-cell>
<table:table-cell><text:p>90 EUR</text:p></table:table-cell>
<table:table-cell table:number-columns-repeated="1020"/></table:table-row>
<table:table-row><table:table-cell table:number-columns-spanned="2"><text:p>Other cities: 60 EUR</text:p>
</table:table-cell><table:covered-table-cell/></table:table-row></table:table>
<text:p>Receipts are needed.<draw:frame><draw:text-box><text:p>Tip: keep them in the app.</text:p>
</draw:text-box></draw:frame></text:p>
</office:text>"""
    return _odf_zip(mimetype, body, "Travel policy")


def make_ods() -> bytes:
    """An OpenDocument spreadsheet: a title line above a table, repeated cells and rows (as LibreOffice pads a
    sheet to its used range), an empty sheet and a second sheet."""
    empty = '<table:table-cell table:number-columns-repeated="1020"/>'
    body = f"""<office:spreadsheet>
<table:table table:name="Rates"><table:table-column table:number-columns-repeated="3"/>
<table:table-row><table:table-cell><text:p>Hotel rates 2025</text:p></table:table-cell>{empty}</table:table-row>
<table:table-row table:number-rows-repeated="2">{empty}</table:table-row>
<table:table-row><table:table-cell><text:p>City</text:p></table:table-cell>
<table:table-cell><text:p>Per night</text:p></table:table-cell>{empty}</table:table-row>
<table:table-row><table:table-cell office:value-type="string"><text:p>Lyon</text:p></table:table-cell>
<table:table-cell office:value-type="float" office:value="120"><text:p>120</text:p></table:table-cell>
{empty}</table:table-row>
<table:table-row table:number-rows-repeated="2"><table:table-cell><text:p>Nice</text:p></table:table-cell>
<table:table-cell><text:p>140</text:p></table:table-cell>{empty}</table:table-row>
<table:table-row table:number-rows-repeated="1048570">{empty}</table:table-row>
</table:table>
<table:table table:name="Empty"><table:table-row>{empty}</table:table-row></table:table>
<table:table table:name="Contacts"><table:table-row><table:table-cell><text:p>Name</text:p></table:table-cell>
<table:table-cell><text:p>Phone</text:p></table:table-cell></table:table-row>
<table:table-row><table:table-cell><text:p>Travel desk</text:p></table:table-cell>
<table:table-cell><text:p>+49 30 1234</text:p></table:table-cell></table:table-row></table:table>
</office:spreadsheet>"""
    return _odf_zip("application/vnd.oasis.opendocument.spreadsheet", body, "Travel rates")


def make_odp() -> bytes:
    """An OpenDocument presentation: two slides, frames written out of reading order, a table, a group,
    speaker notes beside the slide's thumbnail; no metadata title."""

    def frame(y: str, x: str, text: str, cls: str = "") -> str:
        c = f' presentation:class="{cls}"' if cls else ""
        return (f'<draw:frame svg:x="{x}" svg:y="{y}" svg:width="10cm" svg:height="2cm"{c}><draw:text-box>'
                f"<text:p>{text}</text:p></draw:text-box></draw:frame>")  # fmt: skip

    body = f"""<office:presentation>
<draw:page draw:name="page1">{frame("12cm", "2cm", "Questions: travel@example.com")}
{frame("5cm", "14cm", "Right column: trains first", "outline")}{frame("5.2cm", "2cm", "Left column: book early", "outline")}
{frame("1cm", "2cm", "Travel rules", "title")}
<presentation:notes><draw:page-thumbnail presentation:class="page"/>{frame("3cm", "2cm", "Say: rules apply from May.", "notes")}
</presentation:notes></draw:page>
<draw:page draw:name="page2">{frame("1cm", "2cm", "Rates", "title")}
<draw:frame svg:x="2cm" svg:y="4cm"><table:table><table:table-row><table:table-cell><text:p>City</text:p>
</table:table-cell><table:table-cell><text:p>Rate</text:p></table:table-cell></table:table-row>
<table:table-row><table:table-cell><text:p>Lyon</text:p></table:table-cell><table:table-cell><text:p>120</text:p>
</table:table-cell></table:table-row></table:table></draw:frame>
<draw:g>{frame("9cm", "2cm", "Grouped: ask the desk")}</draw:g>
</draw:page></office:presentation>"""
    return _odf_zip("application/vnd.oasis.opendocument.presentation", body, None)


def make_rtf() -> bytes:
    """An RTF document as Word writes one: font table with a Chinese (GBK) font, colour and list tables,
    stylesheet headings, an info title, a page header, a picture, a \\bin blob, a hyperlink field, a
    footnote, hidden text, a comment, \\u characters with fallbacks, list numbers and a two-row table."""
    gbk = "".join(f"\\'{b:02x}" for b in "差旅标准".encode("gbk"))
    return (
        r"{\rtf1\ansi\ansicpg1252\uc1\deff0{\fonttbl{\f0\froman\fcharset0 Times New Roman;}"
        r"{\f1\fnil\fcharset134 SimSun;}{\f2\fnil\fcharset2 Symbol;}}"
        r"{\colortbl;\red0\green0\blue0;}{\*\listtable{\list\listtemplateid1{\listlevel\levelnfc0{\leveltext\'02\'00.;}}}}"
        r"{\stylesheet{\ql Normal;}{\s1\ql\outlinelevel0 heading 1;}{\s2\ql heading 2;}"
        r"{\*\cs10 Default Paragraph Font;}}"
        r"{\info{\title Travel policy 2025}{\author Ann Admin}{\company ACME}}"
        r"{\header \pard\plain ACME confidential\par}"
        "\n"
        r"\pard\plain\s1\outlinelevel0 Travel\par"
        r"\pard\plain Book trains for trips under 500\~km.{\v  secret note}{\*\atnid AA}"
        r"{\annotation check this}\par"
        r"\pard\plain{\pict\pngblip\picw10\pich10 89504e470d0a1a0a0000}{\*\objdata\bin4 }{\}}Pack light.\par"
        "\n"
        r"\pard\plain{\listtext\f2 \'b7\tab}Second class\par"
        r"\pard\plain{\listtext 2.\tab}Caf\'e9 \u8364? 90 per day\par"
        r"\pard\plain\s2 Allowances\par"
        r"\trowd\cellx2000\cellx4000\pard\intbl City\cell Per day\cell\row"
        r"\trowd\cellx2000\cellx4000\pard\intbl Paris\cell 90 EUR\cell\row"
        r"\pard\plain See {\field{\*\fldinst HYPERLINK \"https://intranet/travel\"}{\fldrslt the intranet}}"
        r"{\super\chftn}{\footnote\pard\plain{\super\chftn} Measured by road.}.\par"
        r"\pard\plain{\f1 " + gbk + r"}\line second line\par"
        "}"
    ).encode("ascii")


def make_epub(encrypted: bool = False) -> bytes:
    """An EPUB 3 book as an e-book tool writes it: the package in OEBPS/, a navigation document outside the
    spine, two chapters (the second with a table and a file name needing %-decoding), a spine entry the
    book lacks, a cover image."""
    page = ('<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
            "<title>{title}</title></head><body>{body}</body></html>")  # fmt: skip
    opf = """<?xml version="1.0" encoding="UTF-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Field Service Manual</dc:title></metadata>
<manifest><item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
<item id="c1" href="text/ch1.xhtml" media-type="application/xhtml+xml"/>
<item id="c2" href="text/ch%202.xhtml" media-type="application/xhtml+xml"/>
<item id="gone" href="text/missing.xhtml" media-type="application/xhtml+xml"/>
<item id="cover" href="img/cover.jpg" media-type="image/jpeg"/></manifest>
<spine><itemref idref="cover"/><itemref idref="c1"/><itemref idref="gone"/><itemref idref="c2"/></spine></package>"""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/container.xml", '<?xml version="1.0"?><container version="1.0" '
                   'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile '
                   'full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles>'
                   "</container>")  # fmt: skip
        if encrypted:
            z.writestr("META-INF/encryption.xml", '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:'
                       'container"><EncryptedData xmlns="http://www.w3.org/2001/04/xmlenc#"/></encryption>')  # fmt: skip
        z.writestr("OEBPS/content.opf", opf)
        z.writestr(
            "OEBPS/nav.xhtml", page.format(title="Contents", body="<nav><ol><li>Chapter 1</li></ol></nav>")
        )
        z.writestr("OEBPS/text/ch1.xhtml", page.format(
            title="1", body="<h1>Installation</h1><p>Mount the unit <em>level</em>.</p><h2>Power</h2>"
            "<p>Use a 16 A fuse.</p>"))  # fmt: skip
        z.writestr("OEBPS/text/ch 2.xhtml", page.format(
            title="2", body="<h1>Maintenance</h1><table><tr><th>Part</th><th>Interval</th></tr>"
            "<tr><td>Filter</td><td>6 months</td></tr></table>"))  # fmt: skip
        z.writestr("OEBPS/img/cover.jpg", b"\xff\xd8\xff" + bytes(32))
    return buf.getvalue()


def make_doc(encrypted: bool = False) -> bytes:
    """A Word 97-2003 document as [MS-DOC] lays it out: a FIB, a piece table (after a property modifier) of
    three pieces (cp1252 8-bit, UTF-16, 8-bit), a field, a table with an empty cell, a footnote, a header, a
    text box, a stylesheet and paragraph properties (a heading style, an outline level)."""
    import struct

    from .cfb import write_cfb

    main_a = ("Employee Handbook\rCafé rules: see \x13 HYPERLINK \"https://intranet\" \x14the intranet\x15 "
              "first.\x02\rCountry\x07Days\x07\x07Germany\x0730\x07\x07China\x07\x07\x07After the table.\r")  # fmt: skip
    main_b = "差旅标准 € ok\r"
    ftn = "\x02 Measured by road.\r"
    hdr = "ACME confidential\r\r"
    txbx = "Tip: keep receipts.\r"
    tail = ftn + hdr + txbx
    fib = bytearray(0x400)
    struct.pack_into("<HH", fib, 0, 0xA5EC, 0x00C1)
    struct.pack_into("<H", fib, 0x0A, 0x0200 | (0x0100 if encrypted else 0))
    struct.pack_into("<8i", fib, 0x4C, len(main_a) + len(main_b), len(ftn), len(hdr), 0, 0, 0, len(txbx), 0)
    a_at, b_at, c_at = 0x400, 0x800, 0xC00
    wd = bytearray(fib) + bytes(0x1000 - len(fib))
    wd[a_at : a_at + len(main_a)] = main_a.encode("cp1252")
    wd[b_at : b_at + 2 * len(main_b)] = main_b.encode("utf-16-le")
    wd[c_at : c_at + len(tail)] = tail.encode("cp1252")
    cps = [0, len(main_a), len(main_a) + len(main_b), len(main_a) + len(main_b) + len(tail)]
    fcs = [(a_at * 2) | 0x40000000, b_at, (c_at * 2) | 0x40000000]
    plc = struct.pack("<4I", *cps) + b"".join(struct.pack("<HIH", 0, fc, 0) for fc in fcs)
    clx = b"\x01" + struct.pack("<H", 2) + b"\x00\x00" + b"\x02" + struct.pack("<I", len(plc)) + plc
    # the stylesheet: style 0 Normal (sti 0), style 1 a heading 1 of any name (sti 1)
    stsh = struct.pack("<H", 18) + struct.pack("<HH", 2, 10) + bytes(14)
    stsh += b"".join(struct.pack("<H", 10) + struct.pack("<H", sti) + bytes(8) for sti in (0, 1))
    # one page of paragraph properties: "Employee Handbook" in style 1; the UTF-16 paragraph with its own
    # outline level 1 (a second-level heading); the rest without properties
    page = bytearray(512)
    runs = [(a_at, 0xF0), (a_at + len("Employee Handbook\r"), 0), (a_at + len(main_a), 0), (b_at, 0xF4)]
    bounds = [fc for fc, _ in runs] + [b_at + 2 * len(main_b)]
    struct.pack_into(f"<{len(bounds)}I", page, 0, *bounds)
    for i, (_fc, at) in enumerate(runs):
        page[4 * len(bounds) + 13 * i] = at // 2
    page[0xF0 : 0xF0 + 4] = b"\x00\x01" + struct.pack("<H", 1)  # cb 0, cb' 1: istd 1
    page[0xF4 : 0xF4 + 6] = b"\x03" + struct.pack("<HHB", 0, 0x2640, 1)  # cb 3: istd 0, sprmPOutLvl 1
    page[511] = len(runs)
    wd += bytes(0x1000 - len(wd)) + page
    bte = struct.pack("<III", a_at, b_at + 2 * len(main_b), 0x1000 // 512)
    table = bytes(16) + clx + stsh + bte
    struct.pack_into("<II", wd, 0x1A2, 16, len(clx))
    struct.pack_into("<II", wd, 0xA2, 16 + len(clx), len(stsh))
    struct.pack_into("<II", wd, 0x102, 16 + len(clx) + len(stsh), len(bte))
    return write_cfb({"WordDocument": bytes(wd), "1Table": table})


def make_msg(html_only: bool = False) -> bytes:
    """An Outlook message ([MS-OXMSG]): subject, sender, recipients, submit time, a plain-text (or only an
    HTML) body, a Word attachment, an image, and an attached message."""
    import struct

    from .cfb import write_cfb

    def u(s: str) -> bytes:
        return s.encode("utf-16-le")

    def props(header: int, *items: tuple[int, int]) -> bytes:
        return bytes(header) + b"".join(struct.pack("<IIQ", tag, 6, v) for tag, v in items)

    filetime = (1741075200 + 11644473600) * 10_000_000  # 2025-03-04 08:00:00 UTC
    s = {
        "__properties_version1.0": props(32, (0x00390040, filetime), (0x3FFD0003, 1252)),
        "__substg1.0_0037001F": u("Office move – new keys"),
        "__substg1.0_0C1A001F": u("Anna Admin"),
        "__substg1.0_5D01001F": u("anna@example.com"),
        "__substg1.0_0E04001F": u("All staff"),
        "__substg1.0_0E03001F": u("Facilities"),
        "__attach_version1.0_#00000000/__substg1.0_3707001F": u("handbook.docx"),
        "__attach_version1.0_#00000000/__substg1.0_37010102": make_docx(),
        "__attach_version1.0_#00000001/__substg1.0_3707001F": u("map.png"),
        "__attach_version1.0_#00000001/__substg1.0_37010102": b"\x89PNG\r\n\x1a\n" + bytes(64),
        "__attach_version1.0_#00000002/__substg1.0_3701000D/__properties_version1.0": props(24),
        "__attach_version1.0_#00000002/__substg1.0_3701000D/__substg1.0_0037001F": u("Badge readers"),
        "__attach_version1.0_#00000002/__substg1.0_3701000D/__substg1.0_1000001E": b"Readers are replaced Friday.",
    }
    if html_only:
        s["__substg1.0_10130102"] = (
            b"<html><body><nav>Menu</nav><p>The office moves on <b>1 April</b>.</p></body></html>"
        )
    else:
        s["__substg1.0_1000001F"] = u("Hi all,\r\n\r\nthe office moves on 1 April.")
    return write_cfb(s)


def make_xls() -> bytes:
    """An Excel 97-2003 workbook (xlwt): a title line, a header, numbers, a date, a second sheet."""
    import datetime as dt

    import xlwt

    wb = xlwt.Workbook()
    ws = wb.add_sheet("Rates")
    date = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for r, row in enumerate([["Hotel rates 2025"], [], ["City", "Per night", "From"], ["Lyon", 120, dt.date(2025, 4, 1)],
                             ["Nice", 140.5, None]]):  # fmt: skip
        for c, v in enumerate(row):
            if v is not None:
                ws.write(r, c, v, date if isinstance(v, dt.date) else xlwt.Style.default_style)
    ws2 = wb.add_sheet("Contacts")
    for r, row in enumerate([["Name", "Phone"], ["Travel desk", "+49 30 1234"]]):
        for c, v in enumerate(row):
            ws2.write(r, c, v)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def make_ppt(persist: bool = True) -> bytes:
    """A PowerPoint 97-2003 presentation as [MS-PPT] lays it out: two slides whose placeholder text is in the
    document's slide list (a title, 8-bit body text, a centred title), a text box and a placeholder reference
    in a slide's drawing, speaker notes, and two edits: the second rewrote slide 2 (its old version stays in the
    stream, unreferenced). ``persist=False`` drops the edit chain (the Current User stream)."""
    import struct

    from .cfb import write_cfb

    def rec(rtype: int, data: bytes = b"", inst: int = 0, container: bool = False) -> bytes:
        return struct.pack("<HHI", (inst << 4) | (0xF if container else 0), rtype, len(data)) + data

    def box(kind: int, text: str) -> bytes:  # a shape with a text box (OfficeArt containers)
        inner = rec(0x0F9F, struct.pack("<I", kind)) + rec(0x0FA0, text.encode("utf-16-le"))
        return rec(0xF004, rec(0xF00D, inner, container=True), container=True)

    def drawing(*shapes: bytes) -> bytes:
        return rec(
            0x040C, rec(0xF002, rec(0xF003, b"".join(shapes), container=True), container=True), container=True
        )

    def slide(notes_ref: int, *shapes: bytes) -> bytes:
        atom = rec(0x03EF, struct.pack("<I8sIIHH", 0, bytes(8), 0, notes_ref, 0, 0))
        return rec(0x03EE, atom + drawing(*shapes), container=True)

    stream = bytearray()

    def put(data: bytes) -> int:
        stream.extend(data)
        return len(stream) - len(data)

    ref = rec(0xF004, rec(0xF00D, rec(0x0F9E, struct.pack("<I", 0)), container=True), container=True)
    s1 = put(slide(5, ref, box(4, "Questions: travel@example.com")))
    s2_old = put(slide(0, box(4, "Old rates, withdrawn")))
    notes = put(rec(0x03F0, drawing(box(2, "Say: rules apply from May.")), container=True))
    slide_list = (rec(0x03F3, struct.pack("<IIIII", 3, 0, 2, 256, 0)) + rec(0x0F9F, struct.pack("<I", 0))
                  + rec(0x0FA0, "Travel rules".encode("utf-16-le")) + rec(0x0F9F, struct.pack("<I", 1))
                  + rec(0x0FA8, "Book early\rTrains first, café after".encode("latin-1"))
                  + rec(0x03F3, struct.pack("<IIIII", 4, 0, 1, 257, 0)) + rec(0x0F9F, struct.pack("<I", 6))
                  + rec(0x0FA0, "Rates 2025 – Lyon".encode("utf-16-le")))  # fmt: skip
    doc = put(rec(0x03E8, rec(0x0FF0, slide_list, inst=0, container=True), container=True))

    def edit(entries: list[tuple[int, list[int]]], last: int) -> int:
        body = b"".join(struct.pack("<I", first | (len(offs) << 20)) + struct.pack(f"<{len(offs)}I", *offs)
                        for first, offs in entries)  # fmt: skip
        pdir = put(rec(0x1772, body))
        return put(rec(0x0FF5, struct.pack("<IHBBIIIIHH", 0, 0, 0, 3, last, pdir, 1, 6, 0, 0)))

    first_edit = edit([(1, [doc]), (3, [s1, s2_old, notes])], 0)
    s2_new = put(slide(0, box(4, "Nice: 140 per night")))
    second_edit = edit([(4, [s2_new])], first_edit)
    streams = {"PowerPoint Document": bytes(stream)}
    if persist:
        streams["Current User"] = rec(0x0FF6, struct.pack("<III", 0x14, 0xE391C05F, second_edit))
    return write_cfb(streams)


def make_mhtml(word: bool = False) -> bytes:
    """A web page saved as one file: as Chrome writes it (From "<Saved by Blink>", quoted-printable HTML, an image
    part) or as Word's "Single File Web Page" (no From, windows-1252 HTML declared only on the part)."""
    html_qp = ("<!DOCTYPE html><html><head><title>Expense policy</title></head><body><nav>Home | Intranet</nav>"
               "<h1>Expenses</h1><p>Claims are filed within 30 days =E2=80=93 receipts attached.</p>"
               "<h2>Meals</h2><p>Up to 40 EUR a d=\r\nay.</p></body></html>")  # fmt: skip
    if word:
        head = ('MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary="----=_NextPart_01D"\r\n\r\n'
                "This document is a Single File Web Page, also known as a Web Archive file.\r\n\r\n")  # fmt: skip
        page = ("------=_NextPart_01D\r\nContent-Location: file:///C:/policy.htm\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\nContent-Type: text/html; charset=\"windows-1252\"\r\n\r\n"
                "<html><head><title>Reisekosten</title></head><body><h1>Reisekosten</h1>"
                "<p>Gro=DFe Reisen brauchen eine Genehmigung.</p></body></html>\r\n")  # fmt: skip
        return (head + page + "------=_NextPart_01D--\r\n").encode("ascii")
    return (
        "From: <Saved by Blink>\r\nSnapshot-Content-Location: https://intranet.example.com/expenses\r\n"
        "Subject: Expense policy\r\nDate: Tue, 4 Mar 2025 09:00:00 -0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/related;\r\n\ttype="text/html";\r\n\tboundary="----MultipartBoundary--abc"\r\n\r\n'
        "------MultipartBoundary--abc\r\nContent-Type: text/html\r\nContent-ID: <frame-1@mhtml.blink>\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\nContent-Location: https://intranet.example.com/expenses\r\n\r\n"
        + html_qp
        + "\r\n------MultipartBoundary--abc\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
        "Content-Location: https://intranet.example.com/logo.png\r\n\r\niVBORw0KGgo=\r\n"
        "------MultipartBoundary--abc--\r\n"
    ).encode("ascii")


# A SmartArt diagram's data part: the approval process of the tests. The points are stored out of their reading
# order (Word and PowerPoint append new points at the end); the parent-of connections give the order: "Submit
# request", then "Manager approves" with its child "Within 3 days". Transitions and the root carry no text.
DIAGRAM_DATA = b"""<dgm:dataModel xmlns:dgm="http://schemas.openxmlformats.org/drawingml/2006/diagram"
 xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main">
<dgm:ptLst>
 <dgm:pt modelId="{D0}" type="doc"><dgm:prSet/><dgm:spPr/><dgm:t><a:bodyPr/><a:p><a:endParaRPr/></a:p></dgm:t></dgm:pt>
 <dgm:pt modelId="{D2}"><dgm:prSet/><dgm:spPr/><dgm:t><a:bodyPr/><a:p><a:r><a:t>Manager </a:t></a:r><a:r><a:t>approves</a:t></a:r></a:p></dgm:t></dgm:pt>
 <dgm:pt modelId="{T1}" type="parTrans"><dgm:prSet/><dgm:spPr/><dgm:t><a:bodyPr/><a:p><a:endParaRPr/></a:p></dgm:t></dgm:pt>
 <dgm:pt modelId="{D3}"><dgm:prSet/><dgm:spPr/><dgm:t><a:bodyPr/><a:p><a:r><a:t>Within 3 days</a:t></a:r></a:p></dgm:t></dgm:pt>
 <dgm:pt modelId="{D1}"><dgm:prSet/><dgm:spPr/><dgm:t><a:bodyPr/><a:p><a:r><a:t>Submit request</a:t></a:r></a:p></dgm:t></dgm:pt>
 <dgm:pt modelId="{P1}" type="pres"><dgm:prSet/><dgm:spPr/></dgm:pt>
</dgm:ptLst>
<dgm:cxnLst>
 <dgm:cxn modelId="{C2}" srcId="{D0}" destId="{D2}" srcOrd="1" destOrd="0" parTransId="{T1}"/>
 <dgm:cxn modelId="{C1}" srcId="{D0}" destId="{D1}" srcOrd="0" destOrd="0"/>
 <dgm:cxn modelId="{C3}" srcId="{D2}" destId="{D3}" srcOrd="0" destOrd="0"/>
 <dgm:cxn modelId="{C4}" type="presOf" srcId="{D1}" destId="{P1}" srcOrd="0" destOrd="0"/>
</dgm:cxnLst>
</dgm:dataModel>"""
DIAGRAM_CT = "application/vnd.openxmlformats-officedocument.drawingml.diagramData+xml"
DIAGRAM_RT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/diagramData"
DIAGRAM_URI = "http://schemas.openxmlformats.org/drawingml/2006/diagram"
_DGM_NS = 'xmlns:dgm="http://schemas.openxmlformats.org/drawingml/2006/diagram"'


def make_docx_with_diagram() -> bytes:
    """A Word document with a SmartArt diagram between two paragraphs, and one whose data part is missing."""
    from docx import Document
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    doc = Document()
    doc.add_paragraph("How to request leave:")
    part = Part(PackURI("/word/diagrams/data1.xml"), DIAGRAM_CT, DIAGRAM_DATA, doc.part.package)
    rid = doc.part.relate_to(part, DIAGRAM_RT)
    for r_dm in (rid, "rId999"):
        p = doc.add_paragraph()
        p._p.append(parse_xml(
            f'<w:r {nsdecls("w", "wp", "a", "r")} {_DGM_NS}><w:drawing><wp:inline><wp:extent cx="5486400" cy="3200400"/>'
            f'<wp:docPr id="1" name="Diagram 1"/><a:graphic><a:graphicData uri="{DIAGRAM_URI}">'
            f'<dgm:relIds r:dm="{r_dm}" r:lo="" r:qs="" r:cs=""/></a:graphicData></a:graphic></wp:inline>'
            "</w:drawing></w:r>"
        ))  # fmt: skip
    doc.add_paragraph("HR answers within a week.")
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def make_pptx_with_diagram() -> bytes:
    """One slide, "Leave process", with a SmartArt diagram under a text box."""
    from pptx import Presentation
    from pptx.opc.package import Part
    from pptx.opc.packuri import PackURI
    from pptx.oxml import parse_xml
    from pptx.util import Emu

    prs = Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[5])  # title only
    slide.shapes.title.text = "Leave process"
    slide.shapes.add_textbox(
        Emu(500000), Emu(1500000), Emu(4000000), Emu(500000)
    ).text_frame.text = "Three steps:"
    part = Part(PackURI("/ppt/diagrams/data1.xml"), DIAGRAM_CT, prs.part.package, DIAGRAM_DATA)
    rid = slide.part.relate_to(part, DIAGRAM_RT)
    slide.shapes._spTree.append(parse_xml(
        '<p:graphicFrame xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" '
        'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
        f'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" {_DGM_NS}>'
        '<p:nvGraphicFramePr><p:cNvPr id="10" name="Diagram 1"/><p:cNvGraphicFramePr/><p:nvPr/></p:nvGraphicFramePr>'
        '<p:xfrm><a:off x="500000" y="2500000"/><a:ext cx="6000000" cy="3000000"/></p:xfrm>'
        f'<a:graphic><a:graphicData uri="{DIAGRAM_URI}"><dgm:relIds r:dm="{rid}" r:lo="" r:qs="" r:cs=""/>'
        "</a:graphicData></a:graphic></p:graphicFrame>"
    ))  # fmt: skip
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


def make_pptx_with_chart() -> bytes:
    """One slide, "Revenue", with a clustered bar chart (python-pptx writes the chart part and its cached values):
    title "Revenue by quarter", quarters Q1-Q3, series EMEA and APAC (one value with float noise), and a second
    chart, a pie of shares under a percent format."""
    from pptx import Presentation
    from pptx.chart.data import CategoryChartData
    from pptx.enum.chart import XL_CHART_TYPE
    from pptx.util import Emu

    prs = Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[5])
    slide.shapes.title.text = "Revenue"
    data = CategoryChartData()
    data.categories = ["Q1", "Q2", "Q3"]
    data.add_series("EMEA", (1.5, 2.25, 3))
    data.add_series("APAC", (0.1 + 0.2, 4, 5))
    frame = slide.shapes.add_chart(XL_CHART_TYPE.COLUMN_CLUSTERED, Emu(500000), Emu(1500000), Emu(6000000),
                                   Emu(2500000), data)  # fmt: skip
    frame.chart.has_title = True
    frame.chart.chart_title.text_frame.text = "Revenue by quarter"
    shares = CategoryChartData(number_format="0%")
    shares.categories = ["Online", "Stores"]
    shares.add_series("Share", (0.625, 0.375))
    slide.shapes.add_chart(XL_CHART_TYPE.PIE, Emu(500000), Emu(4200000), Emu(3000000), Emu(2000000), shares)
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


def make_docx_with_chart() -> bytes:
    """A Word document with the bar chart of ``make_pptx_with_chart`` (its chart part, as Word stores one) after
    a paragraph."""
    from docx import Document
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    with zipfile.ZipFile(io.BytesIO(make_pptx_with_chart())) as z:
        chart = z.read(next(n for n in sorted(z.namelist()) if n.startswith("ppt/charts/chart")))
    doc = Document()
    doc.add_paragraph("Quarterly figures:")
    part = Part(PackURI("/word/charts/chart1.xml"),
                "application/vnd.openxmlformats-officedocument.drawingml.chart+xml", chart, doc.part.package)  # fmt: skip
    rid = doc.part.relate_to(
        part, "http://schemas.openxmlformats.org/officeDocument/2006/relationships/chart"
    )
    p = doc.add_paragraph()
    p._p.append(parse_xml(
        f'<w:r {nsdecls("w", "wp", "a", "r")} xmlns:c="http://schemas.openxmlformats.org/drawingml/2006/chart">'
        '<w:drawing><wp:inline><wp:extent cx="5486400" cy="3200400"/><wp:docPr id="2" name="Chart 1"/><a:graphic>'
        '<a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/chart">'
        f'<c:chart r:id="{rid}"/></a:graphicData></a:graphic></wp:inline></w:drawing></w:r>'
    ))  # fmt: skip
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def make_partly_scanned_pdf(
    n_pages: int = 12,
    scanned: tuple[int, ...] = (3, 7, 8, 9),
    inline: tuple[int, ...] = (8,),
    blank: tuple[int, ...] = (11,),
) -> bytes:
    """Typed pages with a sentence each ("Page 2 says the budget is 2 million."), except the 1-based pages in
    ``scanned``, which show a grey picture and hold no text, as a page scanned into the PDF does (those in
    ``inline`` as an inline image, the others as an image XObject), and those in ``blank``: nothing at all."""
    from PIL import Image
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    picture = Image.new("L", (60, 80), 190)
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.setTitle("Budget memo")
    for n in range(1, n_pages + 1):
        if n in scanned and n in inline:
            c.drawInlineImage(picture, 72, 200, 450, 600)
        elif n in scanned:
            c.drawImage(ImageReader(picture), 72, 200, 450, 600)
        elif n not in blank:
            c.drawString(72, 800, f"Page {n} says the budget is {n} million.")
        c.showPage()
    c.save()
    return buf.getvalue()


def make_xlsx_with_unsaved_formulas(q3_title: str = "Q3", recalc_on_open: bool = False) -> bytes:
    """A workbook as openpyxl writes it: sheet ``q3_title`` with 14 rows whose tax is a formula (no saved value),
    a sheet "Summary" whose two formulas have a saved value as Excel stores them (a number, and an empty text
    result, ``t="str"``), and a sheet "Staff" without formulas. Unless ``recalc_on_open``, without openpyxl's
    ``<calcPr fullCalcOnLoad="1"/>``, as Excel saves a workbook (it drops the flag)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = q3_title
    ws.append(["Item", "Amount", "Tax"])
    for i in range(2, 16):
        ws.append([f"Laptop {i}", i * 100, f"=B{i}*0.2"])
    summary = wb.create_sheet("Summary")
    summary.append(["Label", "Value", "Flag"])
    summary.append(["Rows", "=COUNTA(A:A)", '=IF(B2>100,"many","")'])
    staff = wb.create_sheet("Staff")
    staff.append(["Name", "Desk"])
    staff.append(["Ann Lee", "4.12"])
    buf = io.BytesIO()
    wb.save(buf)
    # Excel's saved results in the summary sheet: a number, and the empty text an IF gave
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/worksheets/sheet2.xml":
                data = data.replace(b"<f>COUNTA(A:A)</f><v></v>", b"<f>COUNTA(A:A)</f><v>2</v>")
                data = data.replace(b'<c r="C2"><f>', b'<c r="C2" t="str"><f>')
            if item.filename == "xl/workbook.xml" and not recalc_on_open:
                assert b' fullCalcOnLoad="1"' in data
                data = data.replace(b' fullCalcOnLoad="1"', b"")
            dst.writestr(item, data)
    return out.getvalue()


def make_docx_with_embedded_object() -> bytes:
    """A Word document with an Excel worksheet embedded in its second paragraph (w:object > o:OLEObject, as Word
    stores an "Insert > Object"; only its picture shows)."""
    from docx import Document
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    doc = Document()
    doc.add_paragraph("The regional figures are in the worksheet below.")
    p = doc.add_paragraph()
    p._p.append(parse_xml(
        f'<w:r {nsdecls("w", "r")} xmlns:o="urn:schemas-microsoft-com:office:office" '
        'xmlns:v="urn:schemas-microsoft-com:vml"><w:object><v:shape id="_x0000_i1025" style="width:300pt;'
        'height:100pt"/><o:OLEObject Type="Embed" ProgID="Excel.Sheet.12" ShapeID="_x0000_i1025" '
        'DrawAspect="Content" ObjectID="_1700000001" r:id="rId99"/></w:object></w:r>'
    ))  # fmt: skip
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def make_pptx_with_embedded_objects() -> bytes:
    """Three slides with titles; an Excel workbook embedded on slides 2 and 3 (python-pptx's add_ole_object)."""
    from pptx import Presentation
    from pptx.enum.shapes import PROG_ID
    from pptx.util import Inches

    prs = Presentation()
    for n in range(1, 4):
        slide = prs.slides.add_slide(prs.slide_layouts[5])
        slide.shapes.title.text = f"Budget part {n}"
        if n > 1:
            slide.shapes.add_ole_object(io.BytesIO(make_xlsx()), PROG_ID.XLSX, Inches(1), Inches(2))
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


def make_xlsxwriter_workbook(sheets: tuple[str, ...] = ("Q3", "Summary"), rows: int = 14) -> bytes:
    """A workbook as xlsxwriter writes it: formulas saved with 0 as their value (it computes none) and
    ``<calcPr fullCalcOnLoad="1"/>``, asking Excel to recalculate on opening. The first of ``sheets`` has ``rows``
    rows whose tax is a formula, the others a formula each; a sheet "Staff" has none."""
    import xlsxwriter

    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf)
    for n, name in enumerate(sheets):
        ws = wb.add_worksheet(name)
        if n == 0:
            ws.write_row(0, 0, ["Item", "Amount", "Tax"])
            for r in range(1, rows + 1):
                ws.write_row(r, 0, [f"Laptop {r + 1}", (r + 1) * 100])
                ws.write_formula(r, 2, f"=B{r + 1}*0.2")
        else:
            ws.write_row(0, 0, ["Label", "Value"])
            ws.write(1, 0, "Rows")
            ws.write_formula(1, 1, "=COUNTA(A:A)")
    staff = wb.add_worksheet("Staff")
    staff.write_row(0, 0, ["Name", "Desk"])
    staff.write_row(1, 0, ["Ann Lee", "4.12"])
    wb.close()
    return buf.getvalue()


def make_pdf_with_damaged_pages(
    pages: list[str], not_inflating: tuple[int, ...] = (), bad_ascii85: tuple[int, ...] = ()
) -> bytes:
    """``make_pdf(pages)`` with the content streams of some 1-based pages damaged in place (reportlab stores each
    page's content Flate-compressed, then ASCII85-encoded): in ``not_inflating``, the compressed bytes' zlib header
    overwritten, so the stream does not inflate (pypdf logs it and reads the page as blank); in ``bad_ascii85``,
    characters that are no ASCII85 (pypdf raises on the page)."""
    import base64
    import re

    data = make_pdf(pages)
    streams = list(re.finditer(rb"stream\n(.*?)~>endstream", data, re.S))
    assert len(streams) == len(pages), "one content stream a page"
    for n in not_inflating:
        s = streams[n - 1]
        raw = bytearray(base64.a85decode(s.group(1), adobe=False))
        raw[:2] = b"\xff\xff"  # no zlib header: "incorrect header check"
        encoded = base64.a85encode(bytes(raw), adobe=False)
        assert len(encoded) == len(s.group(1)), "the stream keeps its length (the file's offsets stay right)"
        data = data[: s.start(1)] + encoded + data[s.end(1) :]
    for n in bad_ascii85:
        s = streams[n - 1]
        mid = (s.start(1) + s.end(1)) // 2
        data = data[:mid] + b"vwxy" + data[mid + 4 :]
    return data


def make_pdf_with_fonts(pages: list[tuple[str, str]]) -> bytes:
    """A PDF written by hand, one page a ``(font, text)``, each line of ``text`` shown on a line of its own, in
    one of these fonts (none embedded: text extraction reads only the font dictionaries):
    - "mapped": a Type0 font with a ToUnicode map, so any text (CJK, Arabic, math, private-use symbols) reads
      back as itself;
    - "standard": Helvetica in WinAnsiEncoding (Latin-1 text), as reportlab writes it;
    - "shifted": the same font showing every letter's code one higher, as a custom-encoded subset font whose
      glyph for "T" sits at the code of "U" does without a ToUnicode map ("Uif rvjdl cspxo gpy");
    - "sequential": a TrueType subset font without an encoding or a ToUnicode map whose codes are given from 1
      in the order the characters first appear (its text reads as control characters and punctuation);
    - "identity": a Type0 font in Identity-H without a ToUnicode map, its codes the glyph ids of a common
      TrueType font (character code - 29: "The" reads "7KH")."""
    objects: list[bytes] = [b"", b""]  # the catalog and the page tree, written last

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    def hex_string(codes: list[int], width: int) -> bytes:
        return b"<" + b"".join(b"%0*X" % (2 * width, c) for c in codes) + b">"

    kids = []
    for font, text in pages:
        lines = text.split("\n")
        shown: list[bytes] = []
        if font == "mapped":
            cids = {ch: n for n, ch in enumerate(dict.fromkeys(text.replace("\n", "")), 1)}
            cmap = (
                b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Custom def "
                b"1 begincodespacerange <0000> <FFFF> endcodespacerange\n"
            )
            items = list(cids.items())
            for k in range(0, len(items), 100):
                part = items[k : k + 100]
                cmap += b"%d beginbfchar\n" % len(part)
                cmap += b"".join(
                    b"<%04X> <%s>\n" % (c, ch.encode("utf-16-be").hex().upper().encode()) for ch, c in part
                )
                cmap += b"endbfchar\n"
            cmap += b"endcmap CMapName currentdict /CMap defineresource pop end end"
            to_unicode = add(b"<< /Length %d >>\nstream\n" % len(cmap) + cmap + b"\nendstream")
            descendant = add(
                b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /AAAAAA+Mapped /CIDSystemInfo << /Registry "
                b"(Adobe) /Ordering (Identity) /Supplement 0 >> /DW 500 >>"
            )
            font_ref = add(
                b"<< /Type /Font /Subtype /Type0 /BaseFont /AAAAAA+Mapped /Encoding /Identity-H /DescendantFonts "
                b"[%d 0 R] /ToUnicode %d 0 R >>" % (descendant, to_unicode)
            )
            shown = [hex_string([cids[ch] for ch in line], 2) for line in lines]
        elif font in ("standard", "shifted"):
            font_ref = add(
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            )
            for line in lines:
                codes = list(line.encode("latin-1"))
                if font == "shifted":
                    codes = [c + 1 if chr(c).isalpha() and c < 0x7F else c for c in codes]
                shown.append(hex_string(codes, 1))
        elif font == "sequential":
            font_ref = add(b"<< /Type /Font /Subtype /TrueType /BaseFont /BBBBBB+Sequential >>")
            codes = {ch: n for n, ch in enumerate(dict.fromkeys(text.replace("\n", "")), 1)}
            shown = [hex_string([codes[ch] for ch in line], 1) for line in lines]
        elif font == "identity":
            descendant = add(
                b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /CCCCCC+Identity /CIDSystemInfo << /Registry "
                b"(Adobe) /Ordering (Identity) /Supplement 0 >> >>"
            )
            font_ref = add(
                b"<< /Type /Font /Subtype /Type0 /BaseFont /CCCCCC+Identity /Encoding /Identity-H "
                b"/DescendantFonts [%d 0 R] >>" % descendant
            )
            shown = [hex_string([ord(ch) - 29 for ch in line], 2) for line in lines]
        else:
            raise ValueError(f"unknown font {font!r}")
        content = b"BT /F1 11 Tf 14 TL 40 800 Td " + b"".join(s + b" Tj T* " for s in shown) + b"ET"
        stream = add(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        kids.append(
            add(
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 %d 0 R >> >> "
                b"/Contents %d 0 R >>" % (font_ref, stream)
            )
        )
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    return _pdf_file(objects)
