"""Builders of real document files for the parser tests (python-docx, python-pptx, openpyxl,
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
