"""Messy-but-valid and broken files as real collections hold them, generated here, through parse -> chunk (and the
upload API for the names and duplicates): readable text or a reason a person can read, never a crash."""

from __future__ import annotations

import io
import zipfile

import pytest
from transformers import AutoTokenizer

from app.models import Role
from ingest.chunking import MAX_CHARS_PER_TOKEN, chunk_document
from ingest.parsers import ParsedDocument, ParseError, UnsupportedFileType, parse
from ingest.pipeline import process_document
from retrieval.embeddings import DEFAULT_EMBEDDING_MODEL
from tests.app.support import env, make_user  # noqa: F401  (fixture)
from tests.ingest import parser_fixtures as F

MAX_TOKENS = 256
CAFE = "Our caf\u00e9 policy: the \u201cquiet hours\u201d cost \u20ac5 \u2014 see the na\u00efve r\u00e9sum\u00e9.\n"


@pytest.fixture
def client(env):  # noqa: F811
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as c:
        yield c


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(DEFAULT_EMBEDDING_MODEL)


def read(tok, data: bytes, name: str) -> tuple[ParsedDocument, list]:
    """Parse and chunk as the pipeline does; the text is readable and every chunk bounded and exact."""
    doc = parse(data, name)
    assert "\x00" not in doc.text and "\ufffd" not in doc.text, doc.text[:200]
    chunks = chunk_document(doc, tok, MAX_TOKENS, 32)
    assert chunks
    for c in chunks:
        assert c.text == doc.text[c.char_start : c.char_end]
        assert c.token_count <= MAX_TOKENS and len(c.text) <= MAX_TOKENS * MAX_CHARS_PER_TOKEN, (
            len(c.text),
            c,
        )
    return doc, chunks


# --- text in other encodings ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        pytest.param((CAFE * 3).encode("utf-16"), id="utf-16-bom-le"),
        pytest.param(b"\xfe\xff" + (CAFE * 3).encode("utf-16-be"), id="utf-16-bom-be"),
        pytest.param(b"\xef\xbb\xbf" + (CAFE * 3).encode(), id="utf-8-bom"),
        pytest.param((CAFE * 3).encode("cp1252"), id="cp1252"),
    ],
)
def test_text_in_unicode_and_windows_encodings_reads_as_written(tok, data):
    doc, _ = read(tok, data, "policy.txt")
    assert doc.text == (CAFE * 3).strip()


@pytest.mark.parametrize(
    "text",
    [
        "Caf\u00e9 \u201cquoted\u201d costs \u20ac5.",  # was DOS Baltic: "Cafķ ōquotedö costs Ć5."
        "Price: \u20ac5",  # was Cyrillic: "Price: Ђ5"
        "Our caf\u00e9 serves cr\u00e8me br\u00fbl\u00e9e; the \u201csmart\u201d quotes cost \u20ac5 each.",
        "\u00c7al\u0131\u015fanlar y\u0131ll\u0131k izin hakk\u0131na sahiptir. \u015eirket a\u011f\u0131.",  # cp1254
    ],
)
def test_short_windows_code_page_text_is_not_read_in_a_dos_code_page(tok, text):
    enc = "cp1254" if "\u0131" in text else "cp1252"
    doc, _ = read(tok, text.encode(enc), "note.txt")
    assert doc.text == text


def test_a_legacy_code_page_that_fits_much_better_is_kept():
    # Russian in cp1251 and Polish in cp1250 stay what they are
    for text, enc in [
        ("\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041e\u0442\u043f\u0443\u0441\u043a 28 \u0434\u043d\u0435\u0439.", "cp1251"),
        ("Za\u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144. Pracownicy maj\u0105 prawo do urlopu.", "cp1250"),
    ]:  # fmt: skip
        assert parse(text.encode(enc), "a.txt").text == text


@pytest.mark.parametrize(
    ("text", "enc"),
    [
        ("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, na\u00efve fa\u00e7ade, \u00e0 la carte. Se\u00f1or Mu\u00f1oz.\n" * 2, "latin-1"),
        ("社員は毎年有給休暇を二十日取得できます。申請は上司に提出してください。\n" * 3, "shift_jis"),
        ("员工每年享有带薪年假十五天。请假需提前向主管提交申请。\n" * 3, "gbk"),
    ],
)  # fmt: skip
def test_latin1_and_cjk_code_pages(tok, text, enc):
    doc, _ = read(tok, text.encode(enc), "leave.txt")
    assert doc.text == text.strip()


def test_mixed_line_endings_are_lines(tok):
    doc, _ = read(tok, b"line one CRLF\r\nline two CR\rline three LF\nline four\r\rpara two\r\n", "eol.txt")
    assert doc.text == "line one CRLF\nline two CR\nline three LF\nline four\n\npara two"


def _through(text: str, encoding: str) -> str:
    """``text`` as UTF-8 read back in ``encoding`` (Windows-1252 passing its five undefined bytes through)."""
    return "".join(bytes([b]).decode(encoding, errors="ignore") or chr(b) for b in text.encode())


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_utf8_that_went_through_a_single_byte_code_page_is_read_as_written(tok, encoding):
    text = CAFE.strip() + " Stra\u00dfe, \u00c5ngstr\u00f6m, \u00a9 2025."
    mojibake = _through(text, encoding)
    assert mojibake.startswith("Our caf\u00c3\u00a9 policy: the \u00e2")  # "cafÃ©", as it was indexed
    doc, _ = read(tok, mojibake.encode(), "export.txt")
    assert doc.text == text


@pytest.mark.parametrize(
    "text",
    [
        "na\u00efve caf\u00e9 \u20ac5",
        "\u00c3\u00a9 is what \u00e9 looks like as mojibake",
        "\u00a9 2025 \u00c2",
    ],
)
def test_text_that_is_not_double_encoded_stays_as_it_is(text):
    assert parse(text.encode(), "a.txt").text == text


def test_crlf_converted_twice_is_one_line_break(tok):
    md = b"# Fees\r\r\n\r\r\n| Item | Fee |\r\r\n|---|---|\r\r\n| Badge | 5 |\r\r\n| Locker | 10 |\r\r\n"
    doc, _ = read(tok, md, "fees.md")  # was "| Item | Fee |\n\n|---|---|\n\n...": no table
    assert doc.text == "Fees\n\nItem: Badge; Fee: 5\nItem: Locker; Fee: 10"
    doc, _ = read(tok, b"All staff who\r\r\nwork remotely.\r\r\n\r\r\nNew paragraph.", "p.txt")
    assert doc.text == "All staff who\nwork remotely.\n\nNew paragraph."


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"The first half is here." + b"\x00" * 5 + b" The second half follows.\n" * 3, id="run"),
        pytest.param(b"Alpha bravo charlie delta.\x00 " * 40, id="scattered"),
        pytest.param(
            b"Service started.\nService crashed.\n" + b"\x00" * 4096 + b"Service restarted.\n", id="padding"
        ),
        pytest.param(
            "Caf\u00e9 \u201cquoted\u201d \u20ac5.\n".encode("cp1252") * 3 + b"\x00\x00 more text\n",
            id="cp1252",
        ),
        pytest.param(
            "员工每年享有带薪年假。\n".encode() + b"\x00" * 7 + "请假需提前申请。\n".encode(), id="utf-8"
        ),
    ],
)
def test_nul_bytes_inside_text_are_dropped_not_a_refusal(tok, data):
    # was refused as "binary data, not text"
    doc, _ = read(tok, data, "service.log")
    assert doc.detected_type == "text"
    want = data.replace(b"\x00", b"").decode("cp1252" if b"\x93" in data else "utf-8")
    assert doc.text == "\n".join(line.rstrip() for line in want.strip().split("\n")).replace("\n\n\n", "\n\n")


def test_terminal_colour_codes_in_a_log_are_dropped(tok):
    data = b"\x1b[1;31mERROR\x1b[0m disk full on \x1b[32mhost-7\x1b[0m\n\x1b[2Kok line\n" * 3
    doc, _ = read(tok, data, "ci.log")  # was "[1;31mERROR[0m disk full on [32mhost-7[0m"
    assert doc.text == "\n".join(["ERROR disk full on host-7", "ok line"] * 3)


def test_utf16_without_bom_is_still_utf16_and_binary_still_refused():
    assert parse("Hello, UTF-16 without a BOM.\n".encode("utf-16-le") * 3, "a.txt").text.startswith(
        "Hello, UTF-16"
    )
    with pytest.raises(UnsupportedFileType, match="binary data"):
        parse(bytes(range(256)) * 64 + b"\x00" * 512, "junk.txt")


def test_a_5mb_line_of_words_is_chunked_in_bounded_chunks(tok):
    doc, chunks = read(tok, b"word " * (1024 * 1024), "one-line.txt")
    assert len(doc.text) == 5 * 1024 * 1024 - 1 and len(chunks) > 1000


def test_a_5mb_line_without_spaces_is_cut_into_bounded_chunks(tok):
    # one "word" over 100 characters is one [UNK] token: it was a single chunk of 5 MB counted as 1 token
    doc, chunks = read(tok, b"x" * (5 * 1024 * 1024), "minified.txt")
    assert len(chunks) == 5 * 1024 * 1024 // (MAX_TOKENS * MAX_CHARS_PER_TOKEN)
    assert "".join(c.text for c in chunks) == doc.text


def test_a_long_word_inside_prose_keeps_the_prose_in_bounded_chunks(tok):
    blob = "A" * 30_000
    text = f"The key starts here. {blob} The key ends here, and the policy continues after it."
    doc, chunks = read(tok, text.encode(), "key.txt")
    assert chunks[0].text.startswith("The key starts here.") and chunks[-1].text.endswith(
        "continues after it."
    )
    assert sum(len(c.text) for c in chunks) >= len(blob)


# --- HTML ---------------------------------------------------------------------------------------------
def test_html_with_missing_closing_tags(tok):
    data = b"<html><head><title>Leave</title><body><h1>Leave policy<p>Para one<p>Para two<div>inside<li>item a<li>b"
    doc, _ = read(tok, data, "leave.html")
    assert doc.title == "Leave"
    assert doc.text == "Leave policy\n\nPara one\n\nPara two\n\ninside\n\nitem a\n\nb"


def test_html_scripts_and_styles_are_not_indexed(tok):
    data = (
        b"<html><head><style>body{font: SECRETSTYLE}</style><script>var SECRETSCRIPT=1;</script></head><body>"
        b"<p>Visible text.</p><script>alert('SECRET2')</script><style>.x{y:SECRET3}</style></body></html>"
    )
    doc, _ = read(tok, data, "page.html")
    assert doc.text == "Visible text."


@pytest.mark.parametrize(
    ("meta", "enc"),
    [
        ('<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">', "cp1252"),
        ('<meta charset="iso-8859-1">', "cp1252"),  # browsers read Latin-1 as Windows-1252
        ('<meta charset="utf-8">', "cp1252"),  # a lying declaration: was "Cafķ ōquotedö Ć5"
    ],
)
def test_html_charset_from_meta_or_despite_it(tok, meta, enc):
    page = f"<html><head>{meta}<title>Caf\u00e9</title></head><body><p>Caf\u00e9 \u201cquoted\u201d costs \u20ac5.</p></body></html>"
    doc, _ = read(tok, page.encode(enc), "menu.html")
    assert (doc.title, doc.text) == ("Caf\u00e9", "Caf\u00e9 \u201cquoted\u201d costs \u20ac5.")


@pytest.mark.parametrize(
    "meta", ['<meta charset="iso-8859-1">', '<meta content="text/html; charset=windows-1252">']
)
def test_html_saved_as_utf8_under_a_stale_single_byte_meta_is_utf8(tok, meta):
    # an editor re-saved the page as UTF-8 and left the old declaration: was "CafÃ© â€œquotedâ€ costs â‚¬5."
    page = f"<html><head>{meta}<title>Caf\u00e9</title></head><body><p>Caf\u00e9 \u201cquoted\u201d costs \u20ac5.</p></body></html>"
    doc, _ = read(tok, page.encode(), "menu.html")
    assert (doc.title, doc.text) == ("Caf\u00e9", "Caf\u00e9 \u201cquoted\u201d costs \u20ac5.")


@pytest.mark.parametrize("tail", ["", " "])  # an even or odd number of bytes
def test_html_saved_as_utf8_that_declares_utf16_is_utf8(tok, tail):
    page = (
        '<html><head><meta charset="utf-16"><title>T</title></head><body><p>Caf\u00e9 page.</p></body></html>'
    )
    doc, _ = read(tok, (page + tail).encode(), "p.html")  # was "格浴㹬格慥㹤洼瑥..." at an even length
    assert (doc.title, doc.text) == ("T", "Caf\u00e9 page.")
    real = parse(page.encode("utf-16"), "p.html")  # UTF-16 with its BOM stays UTF-16
    assert (real.title, real.text) == ("T", "Caf\u00e9 page.")


def test_html_in_shift_jis_declared_in_meta(tok):
    page = '<html><head><meta charset="Shift_JIS"><title>休暇</title></head><body><p>社員は有給休暇を取得できます。</p></body></html>'
    doc, _ = read(tok, page.encode("shift_jis"), "jp.html")
    assert (doc.title, doc.text) == ("休暇", "社員は有給休暇を取得できます。")


def test_html_entities(tok):
    data = b"<html><body><p>Caf&eacute;&nbsp;opens&nbsp;at&#160;9 &amp; closes &lt;late&gt; &euro;5 &#x201C;ok&#x201D;</p></body></html>"
    doc, _ = read(tok, data, "e.html")
    assert doc.text == "Caf\u00e9 opens at 9 & closes <late> \u20ac5 \u201cok\u201d"


def test_inline_data_uris_are_not_indexed(tok):
    blob = b"iVBORw0KGgoAAAANSUhEUgAA" * 5000
    page = (
        b'<html><body><p>Logo below.</p><img src="data:image/png;base64,' + blob + b'">'
        b'<p>See <a href="data:text/plain;base64,' + blob + b'">the note</a>.</p>'
        b"<p>Pasted: data:image/png;base64," + blob + b" end.</p></body></html>"
    )
    doc, _ = read(tok, page, "logo.html")
    assert "base64" not in doc.text and "iVBOR" not in doc.text  # the pasted one was 120 KB of text
    assert doc.text.startswith("Logo below.\n\nSee the note.\n\nPasted:")
    md = (
        b"# Logo\n\n![company logo](data:image/png;base64,"
        + blob
        + b") and text.\n\nRaw data:image/gif;base64,"
        + blob
    )
    doc, _ = read(tok, md, "logo.md")
    assert "base64" not in doc.text and "company logo and text." in doc.text
    short = "An example: data:image/gif;base64,R0lGODlhAQABAAAAACw= is a 1x1 GIF."
    assert parse(short.encode(), "a.txt").text == short  # an example in documentation stays


# --- Markdown -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "title", "body"),
    [
        (b"---\ntitle: Travel Policy 2025\nauthor: Jane\ntags: [a, b]\n---\n\n# Overview\n\nBook economy.\n",
         "Travel Policy 2025", "Overview\n\nBook economy."),
        (b"---\nauthor: Jane Doe\ndate: 2024-01-01\n---\n\nBody about expenses.\n", None, "Body about expenses."),
        (b"\xef\xbb\xbf---\r\ntitle: \"Quoted CRLF\"\r\n---\r\n\r\nBody.\r\n", "Quoted CRLF", "Body."),
        (b"---\ntitle: >-\n  A Folded\n  Long Title\ndate: 2024\n---\n\nBody.\n", "A Folded Long Title", "Body."),
        (b'+++\ntitle = "Hugo Page"\ndraft = false\n+++\n\nBody.\n', "Hugo Page", "Body."),
        # were quoted as body text (and "Page metadata" or "title: Blank first" a heading and the title)
        (b"---\n---\n\nJekyll page.\n", None, "Jekyll page."),
        (b"---\n# Page metadata\ntitle: Commented\n---\n\nBody.\n", "Commented", "Body."),
        (b"---\n\ntitle: Blank first\n---\n\nBody.\n", "Blank first", "Body."),
        # YAML's own syntax in the title: was "Leave # draft", "It''s leave"
        (b"---\ntitle: Leave # draft\n---\n\nBody.\n", "Leave", "Body."),
        (b"---\ntitle: 'It''s leave'\n---\n\nBody.\n", "It's leave", "Body."),
        (b'---\ntitle: "The \\"new\\" leave" # v2\n---\n\nBody.\n', 'The "new" leave', "Body."),
    ],
)  # fmt: skip
def test_markdown_front_matter_is_metadata(tok, data, title, body):
    doc, _ = read(tok, data, "page.md")
    assert (doc.title, doc.text) == (title, body)


def test_a_long_markdown_table_keeps_its_header_in_every_chunk(tok):
    rows = "".join(f"| {i} | Person {i} | Dept {i % 7} | Note on row {i} |\n" for i in range(3000))
    doc, chunks = read(
        tok, f"# Staff\n\n| ID | Name | Department | Notes |\n|---|---|---|---|\n{rows}".encode(), "t.md"
    )
    assert len(chunks) > 100
    assert all(
        line.startswith("ID: ") for c in chunks for line in c.text.split("\n") if line not in ("Staff", "")
    )


# --- PDF ----------------------------------------------------------------------------------------------
def _encrypted(user: str, algorithm: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(F.make_pdf(["Salary bands are reviewed every April."]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password=user, owner_password="owner-secret", algorithm=algorithm)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_pdf_encrypted_with_an_empty_user_password_opens(tok, algorithm):
    # AES needs the cryptography package: without it this was "encrypted with a password"
    doc, _ = read(tok, _encrypted("", algorithm), "restricted.pdf")
    assert doc.text == "Salary bands are reviewed every April."


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_pdf_with_a_real_password_says_it_is_password_protected(algorithm):
    with pytest.raises(ParseError, match="^The PDF is password-protected"):
        parse(_encrypted("hunter2", algorithm), "locked.pdf")


def test_scanned_pdf_says_there_is_no_extractable_text():
    with pytest.raises(ParseError, match=r"no extractable text.*scanned pages\?.*OCR\) is not supported"):
        parse(F.make_image_only_pdf(), "scan.pdf")


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_pdf_says_it_ends_early(cut):
    data = F.make_pdf(["Salary bands are reviewed every April.", "Appeals go to HR."])
    with pytest.raises(
        ParseError, match=r"^The PDF could not be read: the file ends early .*upload the complete"
    ):
        parse(data[: int(len(data) * cut)], "cut.pdf")


def _damaged_fonts(data: bytes) -> bytes:
    return data.replace(
        b"/Font 1 0 R", b"/Font 1 0 0"
    )  # the pages' font dictionary unresolvable, xref intact


def test_pdf_whose_fonts_are_damaged_is_not_a_document_of_replacement_characters():
    data = _damaged_fonts(F.make_pdf(["Salary bands are reviewed every April.", "Appeals go to HR."]))
    with pytest.raises(ParseError, match="no extractable text: its characters could not be decoded"):
        parse(data, "corrupt.pdf")  # was a ready document of U+FFFD


# --- Office files that are not what they say ---------------------------------------------------------
def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("report.docx", _zip({"readme.txt": b"hello"}), "is a ZIP archive, not a Word"),
        ("sheet.xlsx", _zip({"a/b.csv": b"a,b\n1,2"}), "is a ZIP archive, not a Word"),
        ("deck.pptx", _zip({"x.png": b"\x89PNG"}), "is a ZIP archive, not a Word"),
        ("empty.docx", b"", "The file is empty."),
        ("empty.xlsx", b"", "The file is empty."),
        ("nothing.pptx", _zip({}), "The file is an empty ZIP container: it holds no document."),  # was "binary data"
        ("broken.docx", _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document><w:p>"}),
         "The Word document could not be read: the file is damaged."),
        ("broken.xlsx", _zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"}),
         "The Excel file could not be read: the file is damaged."),
        ("broken.pptx", _zip({"[Content_Types].xml": b"<Types/>", "ppt/presentation.xml": b"<p/>"}),
         "The PowerPoint file could not be read: the file is damaged."),
        ("random.docx", bytes(range(256)) * 10, "binary data, not text"),
    ],
)  # fmt: skip
def test_office_files_that_are_not_office_files_fail_with_a_reason(name, data, reason):
    with pytest.raises(ParseError) as e:
        parse(data, name)
    assert reason in e.value.reason


def test_a_cut_short_docx_is_a_damaged_zip():
    data = F.make_docx()
    with pytest.raises(ParseError, match="damaged ZIP"):
        parse(data[: len(data) // 2], "cut.docx")


def test_a_file_whose_extension_lies_is_read_by_its_content(tok):
    pdf = F.make_pdf(["Salary bands are reviewed every April."])
    assert read(tok, pdf, "actually-a-pdf.docx")[0].detected_type == "pdf"
    assert read(tok, F.make_docx(), "actually-a-docx.pdf")[0].detected_type == "docx"
    assert read(tok, b"<html><body><p>Hi there.</p></body></html>", "page.pdf")[0].detected_type == "html"


@pytest.mark.parametrize("sep", ["\t", ","])
@pytest.mark.parametrize("name", ["export.xls", "export.xlsx"])
def test_text_named_as_a_spreadsheet_is_read_as_a_table(tok, sep, name):
    data = (
        sep.join(["Name", "Department", "Phone"])
        + "\n"
        + sep.join(["Ana Lopez", "Finance", "555-0101"])
        + "\n"
    )
    doc, _ = read(tok, data.encode(), name)  # was plain text: "Name\tDepartment\tPhone\nAna Lopez\t..."
    assert (doc.detected_type, doc.text) == ("csv", "Name: Ana Lopez; Department: Finance; Phone: 555-0101")


# --- through the upload API and the pipeline ---------------------------------------------------------
def messy_batch() -> list[tuple[str, bytes]]:
    pdf = F.make_pdf(["Salary bands are reviewed every April."])
    return [
        ("café “notes” 2025.txt", "Caf\u00e9 \u201cquoted\u201d costs \u20ac5.".encode("cp1252")),
        ("service.log", b"Service started.\n" + b"\x00" * 64 + b"Service crashed at noon.\n"),
        ("restricted.pdf", _encrypted("", "AES-128")),
        ("locked.pdf", _encrypted("hunter2", "AES-256")),
        ("scan.pdf", F.make_image_only_pdf()),
        ("fonts.pdf", _damaged_fonts(pdf)),
        ("cut.pdf", pdf[: len(pdf) // 2]),
        ("lying.docx", pdf),
        ("minified.txt", b"x" * (1024 * 1024)),
    ]


def check_messy(get_doc, ids: dict[str, int]) -> None:
    """Each document ready or failed with its reason; none left queued or processing."""
    want_failed = {
        "locked.pdf": "password-protected",
        "scan.pdf": "no extractable text",
        "fonts.pdf": "could not be decoded",
        "cut.pdf": "ends early (no end-of-file marker)",
    }
    for name, doc_id in ids.items():
        doc = get_doc(doc_id)
        if name in want_failed:
            assert doc["status"] == "failed" and want_failed[name] in doc["error"], (name, doc)
        else:
            assert doc["status"] == "ready", (name, doc)
    assert get_doc(ids["café “notes” 2025.txt"])["title"] == "café “notes” 2025"
    assert get_doc(ids["lying.docx"])["detected_type"] == "pdf"


def test_messy_batch_through_the_upload_api(client):
    admin = make_user(Role.admin)
    cid = client.post("/api/collections", json={"name": "messy"}, headers=admin).json()["id"]
    r = client.post(
        f"/api/collections/{cid}/documents", files=[("files", f) for f in messy_batch()], headers=admin
    )
    assert r.status_code == 202 and r.json()["rejected"] == [], r.text
    ids = {d["filename"]: d["id"] for d in r.json()["documents"]}
    for doc_id in ids.values():
        process_document(doc_id)
    check_messy(lambda i: client.get(f"/api/documents/{i}", headers=admin).json(), ids)
    r = client.post(
        "/api/search", json={"query": "when did the service crash", "collection_ids": [cid]}, headers=admin
    )
    assert r.json()["hits"][0]["document_id"] == ids["service.log"]


def test_office_files_that_lie_are_refused_at_upload_with_the_reason(client):
    admin = make_user(Role.admin)
    cid = client.post("/api/collections", json={"name": "office"}, headers=admin).json()["id"]
    docx = F.make_docx()
    files = [
        ("report.docx", _zip({"readme.txt": b"hello"})),
        ("empty.xlsx", b""),
        ("nothing.pptx", _zip({})),
        ("cut.docx", docx[: len(docx) // 2]),
        (
            "broken.docx",
            _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document><w:p>"}),
        ),
    ]
    r = client.post(f"/api/collections/{cid}/documents", files=[("files", f) for f in files], headers=admin)
    rejected = {x["filename"]: (x["status_code"], x["detail"]) for x in r.json()["rejected"]}
    assert rejected["report.docx"][0] == 415 and "is a ZIP archive, not a Word" in rejected["report.docx"][1]
    assert rejected["empty.xlsx"] == (422, "The file is empty.")
    assert rejected["nothing.pptx"] == (422, "The file is an empty ZIP container: it holds no document.")
    assert rejected["cut.docx"] == (422, "The file could not be read: it is a damaged ZIP container.")
    (doc,) = r.json()["documents"]  # a container that opens is read by the worker, which fails it
    assert doc["filename"] == "broken.docx" and process_document(doc["id"]) == "failed"
    got = client.get(f"/api/documents/{doc['id']}", headers=admin).json()
    assert got["error"] == "The Word document could not be read: the file is damaged."


def test_unusual_names_and_duplicates_through_the_upload_api(client):
    admin = make_user(Role.admin)
    cid = client.post("/api/collections", json={"name": "names"}, headers=admin).json()["id"]
    url = f"/api/collections/{cid}/documents"
    body = b"The cafeteria is closed on public holidays."
    long_ok = "l" * 251 + ".txt"  # 255 bytes: the file-system limit
    nfd = "U\u0308bersicht 年假 😀.txt"  # as macOS spells it: U + combining diaeresis
    names = ["  spaced   name .txt ", nfd, long_ok, "hr/2025/policy.txt"]
    r = client.post(url, files=[("files", (n, body + n.encode())) for n in names], headers=admin)
    assert r.status_code == 202 and r.json()["rejected"] == [], r.text
    stored = [d["filename"] for d in r.json()["documents"]]
    assert stored == ["spaced   name .txt", "\u00dcbersicht 年假 😀.txt", long_ok, "hr/2025/policy.txt"]
    assert [d["title"] for d in r.json()["documents"]][::3] == ["spaced name", "policy"]
    for d in r.json()["documents"]:
        assert process_document(d["id"]) == "ready"

    bad = [
        "x" * 252 + ".txt",
        "../etc/passwd",
        "/abs/a.txt",
        "a/../b.txt",
        "evil\u202etxt.pdf",
    ]
    files = [("files", (n, body)) for n in bad] + [("files", ("fine.txt", body + b"?"))]
    r = client.post(url, files=files, headers=admin)
    assert [d["filename"] for d in r.json()["documents"]] == ["fine.txt"]  # the rest of the upload goes on
    got = [(x["status_code"], x["detail"].split(":")[0]) for x in r.json()["rejected"]]
    assert got == [(400, "Invalid file name")] * len(bad), r.text
    # a Windows browser's full path: the multipart parser keeps the file's own name
    r = client.post(url, files=[("files", ("C:\\Users\\ana\\leave.txt", body + b"!"))], headers=admin)
    assert r.json()["documents"][0]["filename"] == "leave.txt"

    # the same bytes again, under its name or another: the existing document, not a second copy
    first = client.post(url, files=[("files", ("dup.txt", body))], headers=admin).json()["documents"][0]
    assert process_document(first["id"]) == "ready"
    again = client.post(url, files=[("files", ("dup.txt", body)), ("files", ("copy of dup.txt", body))],
                        headers=admin).json()["documents"]  # fmt: skip
    assert [(d["id"], d["duplicate"], d["uploaded_filename"]) for d in again] == [
        (first["id"], True, "dup.txt"),
        (first["id"], True, "copy of dup.txt"),
    ]
    # changed bytes under the same name replace the old document once ready
    changed = client.post(url, files=[("files", ("dup.txt", body + b" Also on Sundays."))], headers=admin)
    new = changed.json()["documents"][0]
    assert new["id"] != first["id"] and not new["duplicate"]
    assert process_document(new["id"]) == "ready"
    assert client.get(f"/api/documents/{first['id']}", headers=admin).status_code == 404
