"""Notices: what of a file that was read could not be (scanned or damaged pages of a typed PDF, formulas without
saved values or with values a generator did not compute, embedded objects, an attachment that could not be opened),
on real files generated here."""

from __future__ import annotations

import pytest

from ingest.parsers import ParseError, base, parse
from tests.ingest import parser_fixtures as F

SCANNED = "Pages 3, 7-9 of 12 have no text layer (scanned images?); their content is not searchable."
UNSAVED = (
    "Sheet 'Q3': 14 formula cells have no saved value (the file was not recalculated before saving); they read "
    "as empty."
)


# --- PDF -----------------------------------------------------------------------------------------
def test_a_partly_scanned_pdf_names_its_pages_without_text():
    # pages 3, 7 and 9 show an image XObject, page 8 an inline image; page 11 is blank: nothing is missing there
    doc = parse(F.make_partly_scanned_pdf(), "memo.pdf")
    assert doc.notices == [SCANNED]
    assert doc.pages == 12
    assert "Page 2 says the budget is 2 million." in doc.text and "Page 12 says" in doc.text


def test_one_scanned_page_is_named_in_the_singular():
    doc = parse(F.make_partly_scanned_pdf(n_pages=3, scanned=(2,), inline=(), blank=()), "memo.pdf")
    assert doc.notices == ["Page 2 of 3 has no text layer (a scanned image?); its content is not searchable."]


def test_typed_pdfs_and_blank_pages_have_no_notices():
    assert parse(F.make_pdf(["Revenue grew.", "", "Costs fell."]), "q.pdf").notices == []
    assert parse(F.make_partly_scanned_pdf(n_pages=4, scanned=(), blank=(2, 3)), "q.pdf").notices == []


def test_a_pdf_of_scanned_pages_only_still_fails_with_its_reason():
    data = F.make_partly_scanned_pdf(n_pages=3, scanned=(1, 2, 3), inline=(2,), blank=())
    with pytest.raises(
        ParseError, match=r"^The PDF has no extractable text: it seems to contain only images"
    ):
        parse(data, "scan.pdf")


def test_a_page_whose_characters_could_not_be_decoded_is_named():
    data = F.make_pdf(["Salary bands are reviewed every April.", "Appeals go to HR.", "Travel is booked."])
    data = data.replace(b"/Font 1 0 R", b"/Font 1 0 0", 1)  # the first page's font dictionary unresolvable
    doc = parse(data, "bands.pdf")
    assert doc.notices == [
        "Page 1 of 3 holds only characters that could not be decoded (damaged or unmapped fonts); its text is "
        "missing."
    ]
    assert doc.text == "Appeals go to HR.\n\nTravel is booked."


def test_pages_whose_content_is_damaged_are_named_and_the_others_read():
    pages = [f"Page {n} says the budget is {n} million." for n in range(1, 6)]
    # page 2's content does not inflate (pypdf only logs it; the page read as blank), page 4's raises
    doc = parse(F.make_pdf_with_damaged_pages(pages, not_inflating=(2,), bad_ascii85=(4,)), "memo.pdf")
    assert doc.notices == ["Pages 2, 4 of 5 could not be read (damaged); their content is missing."]
    assert doc.text == "\n\n".join(pages[i] for i in (0, 2, 4))
    doc = parse(F.make_pdf_with_damaged_pages(pages[:3], not_inflating=(3,)), "memo.pdf")
    assert doc.notices == ["Page 3 of 3 could not be read (damaged); its content is missing."]


def test_a_pdf_whose_every_page_is_damaged_fails_as_damaged():
    data = F.make_pdf_with_damaged_pages(["Revenue grew.", "Costs fell."], not_inflating=(1, 2))
    with pytest.raises(
        ParseError, match=r"^The PDF could not be read: the file is damaged or is not a valid PDF"
    ):
        parse(data, "q.pdf")


def test_a_pdf_cut_off_says_so_and_what_to_do():
    # A download or copy that stopped short was refused as "damaged or not a valid PDF", which did not say
    # that the whole file would read; a damaged file that ends as a PDF ends still says "damaged".
    data = F.make_pdf([f"Page {n} says the budget is {n} million." for n in range(1, 6)])
    for cut in (len(data) // 2, len(data) - 10):
        with pytest.raises(ParseError) as e:
            parse(data[:cut], "budget.pdf")
        assert str(e.value) == (
            "The PDF could not be read: the file ends early (no end-of-file marker), as a download or copy "
            "that was cut off does; upload the complete file again."
        )
    with pytest.raises(
        ParseError, match=r"^The PDF could not be read: the file is damaged or is not a valid PDF"
    ):
        parse(data[: len(data) // 2] + b"\n%%EOF\n", "budget.pdf")


# pages whose fonts have no Unicode mapping: their text layer reads as other characters (plausible.py)
POLICY = (
    "Employees may carry over up to five days of unused annual leave into the next calendar year.\n"
    "Requests to carry over more days must be approved in writing by the head of department before\n"
    "the end of November, and the extra days must be taken before the end of March of the next year."
)
UNMAPPED = (
    "Pages 2, 4-5 of 5 have a text layer that does not decode to readable text (fonts without a Unicode "
    "mapping?); their content is missing."
)


def test_pages_in_fonts_without_a_unicode_mapping_are_named_and_their_text_left_out():
    good = ["Page one: the leave policy applies to all staff.", "Page three: sick leave is paid in full."]
    data = F.make_pdf_with_fonts(
        [("standard", good[0]), ("shifted", POLICY), ("standard", good[1]), ("sequential", POLICY),
         ("identity", POLICY)]
    )  # fmt: skip
    doc = parse(data, "leave.pdf")
    assert doc.notices == [UNMAPPED]
    assert doc.text == "\n\n".join(good)  # no "Fnqmpzfft nbz dbssz", no "(PSOR\\HHV", no punctuation soup


def test_one_page_in_a_font_without_a_unicode_mapping_is_named_in_the_singular():
    doc = parse(F.make_pdf_with_fonts([("standard", POLICY), ("shifted", POLICY)]), "leave.pdf")
    assert doc.notices == [
        "Page 2 of 2 has a text layer that does not decode to readable text (a font without a Unicode "
        "mapping?); its content is missing."
    ]
    assert doc.text.split() == POLICY.split()  # no "Fnqmpzfft nbz dbssz pwfs"


def test_a_pdf_whose_every_page_is_unmapped_fails_with_its_reason():
    data = F.make_pdf_with_fonts([("shifted", POLICY), ("identity", POLICY), ("sequential", POLICY)])
    with pytest.raises(
        ParseError,
        match=r"^The PDF has no readable text: its text layer does not decode to readable text \(fonts without "
        r"a Unicode mapping\?\)",
    ):
        parse(data, "leave.pdf")


def test_private_use_bullets_of_a_symbol_font_go_and_their_text_stays():
    # Word's bullets in Symbol and Wingdings read as private-use characters (U+F0B7, U+F0A7, U+F0D8)
    bullets = (
        "\uf0b7 Submit the form by Friday.\n\uf0b7 Attach all receipts.\n\uf0a7 Keep a copy.\n\uf0d8 Ask HR."
    )
    doc = parse(F.make_pdf_with_fonts([("mapped", bullets)]), "howto.pdf")
    assert doc.notices == []
    assert doc.text == "Submit the form by Friday.\nAttach all receipts.\nKeep a copy.\nAsk HR."


LEGITIMATE = {
    "numbers": "Region   Q1 2024    Q2 2024    Q3 2024    Change\nNorth    1,234.56   1,310.20   1,402.75   +6.9%\n"
    "South    987.10     954.33     1,001.02   +4.9%\nEast     2,045.00   2,112.48   2,230.91   +5.6%\n"
    "Total    4,266.66   4,377.01   4,634.68   +5.6%",
    "code": "static int parse_args(int argc, char **argv, struct opts *o) {\n"
    '    for (int i = 1; i < argc; i++) {\n        if (!strcmp(argv[i], "-v")) o->verbose++;\n'
    '        else if (!strncmp(argv[i], "--out=", 6)) o->out = argv[i] + 6;\n'
    '        else { fprintf(stderr, "usage: %s [-v]\\n", argv[0]); return -1; }\n    }\n    return 0;\n}',
    "math": "Theorem 2. Let f : ℝ → ℝ be continuous on [a, b]. Then ∫ f(x) dx = F(b) − F(a), where F′ = f.\n"
    "Proof. For ε > 0 choose δ > 0 with |f(x) − f(y)| < ε whenever |x − y| < δ. Then\n"
    "|∑ f(ξᵢ)Δxᵢ − ∫ f| ≤ ε(b − a) → 0 as max Δxᵢ → 0. ∎ ‖Ax‖₂ ≤ σ(A)‖x‖₂, λ ∈ σ(A), α + β ≥ γ/2",
    "chinese": "员工可以通过人事门户网站申请年假，直属经理应在五个工作日内审批。\n未使用的假期最多可以结转五天到下一年度。"
    "出差费用须在返回后三十天内凭原始发票报销。",
    "japanese": "従業員は人事ポータルから年次休暇を申請でき、上長は五営業日以内に承認します。\n未使用の休暇は翌年度に最大五日まで繰り越す"
    "ことができます。",
    "arabic": "يمكن للموظفين طلب الإجازة السنوية من خلال بوابة الموارد البشرية، ويجب على المدير المباشر الموافقة عليها\n"
    "خلال خمسة أيام عمل. ويمكن ترحيل ما لا يزيد على خمسة أيام من الإجازة غير المستخدمة إلى السنة التالية.",
    "hebrew": "עובדים יכולים לבקש חופשה שנתית דרך פורטל משאבי אנוש, והמנהל הישיר צריך לאשר אותה\n"
    "בתוך חמישה ימי עבודה. ניתן להעביר עד חמישה ימי חופשה שלא נוצלו לשנה הבאה.",
    "cyrillic": "Сотрудники могут подать заявление на ежегодный отпуск через кадровый портал, а непосредственный\n"
    "руководитель утверждает его в течение пяти рабочих дней. Неиспользованные дни можно перенести.",
    "greek": "Οι εργαζόμενοι μπορούν να υποβάλουν αίτηση για ετήσια άδεια μέσω της πύλης ανθρώπινου δυναμικού\n"
    "και ο άμεσος προϊστάμενος την εγκρίνει εντός πέντε εργάσιμων ημερών.",
    "hindi": "कर्मचारी मानव संसाधन पोर्टल के माध्यम से वार्षिक अवकाश के लिए आवेदन कर सकते हैं,\n"
    "और उनके प्रबंधक पाँच कार्य दिवसों के भीतर इसे स्वीकृत करते हैं।",
    "polish": "Szanowni Państwo, uprzejmie informujemy, że od przyszłego miesiąca zmieniają się zasady rozliczania\n"
    "delegacji służbowych. Wszystkie wnioski należy składać wyłącznie w formie elektronicznej, a rachunki\n"
    "przesyłać w ciągu czternastu dni od powrotu z podróży.",
    "bibliography": '[1] A. Vaswani, N. Shazeer, N. Parmar et al., "Attention is all you need," in Proc. NeurIPS, 2017.\n'
    '[2] J. Devlin, M.-W. Chang, K. Lee, K. Toutanova, "BERT: Pre-training of deep bidirectional transformers."\n'
    "[3] Y. Bengio, R. Ducharme, P. Vincent, J. Mach. Learn. Res. 3 (2003) 1137–1155.\n"
    "[4] T. Mikolov et al., arXiv:1301.3781 [cs.CL], 2013. https://arxiv.org/abs/1301.3781",
    "parts": "XJ-4421-B   M8x1.25 hex bolt, zinc   6205-2RS   SKU 00-1142/A   Qty 250\n"
    "RT-0093-C   M6x1.0 washer DIN 125    6203-ZZ    SKU 00-0981/B   Qty 1,000\n"
    "AB-7710-K   O-ring 12x2 NBR70        608-2RS    SKU 01-2231/C   Qty 75\n"
    "https://parts.example.com/catalog?sku=00-1142%2FA&lang=en",
    "title": "Annual Report 2024",
}


@pytest.mark.parametrize("name", LEGITIMATE)
def test_legitimate_pages_read_as_text(name):
    # among pages in a standard font; the page itself in a font with a Unicode mapping
    doc = parse(F.make_pdf_with_fonts([("standard", POLICY), ("mapped", LEGITIMATE[name])]), "page.pdf")
    assert doc.notices == []
    words = [w for w in LEGITIMATE[name].split() if len(w) > 3]
    # pypdf reverses right-to-left runs (PDFs store them in visual order, these are in logical order)
    assert words and all(w in doc.text or w[::-1] in doc.text for w in words), doc.text


# --- spreadsheets --------------------------------------------------------------------------------
def test_formulas_without_saved_values_are_counted_by_sheet():
    # openpyxl writes formulas without their results; a saved number and a saved empty text are results
    doc = parse(F.make_xlsx_with_unsaved_formulas(), "q3.xlsx")
    assert doc.notices == [UNSAVED]
    assert "Item: Laptop 2; Amount: 200" in doc.text  # the rest of the sheet reads as before
    assert "Label: Rows; Value: 2" in doc.text


def test_formulas_in_a_sheet_larger_than_one_read_are_each_counted_once():
    import io
    import zipfile

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Model"
    for i in range(1, 12_001):
        ws.append([i, i * 2, f"=A{i}+B{i}", f"=C{i}*2"])
    buf = io.BytesIO()
    wb.save(buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        assert z.getinfo("xl/worksheets/sheet1.xml").file_size > 1 << 20  # read 1 MB at a time
    doc = parse(buf.getvalue(), "model.xlsx")
    assert doc.notices == [UNSAVED.replace("'Q3': 14", "'Model': 24,000")]


def test_a_sheet_name_with_markup_is_kept_as_written():
    # notices are plain text; the page shows them as text (tests/web)
    doc = parse(F.make_xlsx_with_unsaved_formulas(q3_title="<img src=x onerror=1>"), "q3.xlsx")
    assert doc.notices == [UNSAVED.replace("'Q3'", "'<img src=x onerror=1>'")]


RECALC = (
    "The workbook asks to be recalculated when opened (it was saved by a program that does not compute formulas): "
    "its 15 formula cells on sheets 'Q3', 'Summary' read as the values saved with them, which may be 0 or out of "
    "date."
)


def test_formulas_saved_by_xlsxwriter_are_named_as_possibly_stale():
    # xlsxwriter saves 0 as every formula's value and asks for a recalculation on opening
    doc = parse(F.make_xlsxwriter_workbook(), "q3.xlsx")
    assert doc.notices == [RECALC]
    assert "Item: Laptop 2; Amount: 200; Tax: 0" in doc.text  # read as saved: the notice is what warns
    assert "Name: Ann Lee; Desk: 4.12" in doc.text


def test_one_stale_formula_is_named_in_the_singular():
    doc = parse(F.make_xlsxwriter_workbook(sheets=("Q3",), rows=1), "q3.xlsx")
    assert doc.notices == [
        "The workbook asks to be recalculated when opened (it was saved by a program that does not compute "
        "formulas): its 1 formula cell on sheet 'Q3' reads as the value saved with it, which may be 0 or out "
        "of date."
    ]


def test_a_cell_is_named_by_one_notice_only():
    # openpyxl asks for a recalculation too: its formulas without a value keep their notice; only those with a
    # saved value (here put there as Excel would) are named as possibly stale
    doc = parse(F.make_xlsx_with_unsaved_formulas(recalc_on_open=True), "q3.xlsx")
    assert doc.notices == [
        UNSAVED,
        "The workbook asks to be recalculated when opened (it was saved by a program that does not compute "
        "formulas): its 2 formula cells on sheet 'Summary' read as the values saved with them, which may be 0 or "
        "out of date.",
    ]
    # the same formulas saved without the flag (as Excel saves) are read as they are
    assert parse(F.make_xlsx_with_unsaved_formulas(), "q3.xlsx").notices == [UNSAVED]


def test_many_sheets_with_stale_formulas_fit_one_notice():
    sheets = tuple(f"Region {n:02d} forecast" for n in range(1, 13))
    (notice,) = parse(F.make_xlsxwriter_workbook(sheets=sheets), "regions.xlsx").notices
    assert len(notice) <= base.MAX_NOTICE_CHARS
    assert "its 25 formula cells on sheets 'Region 01 forecast', 'Region 02 forecast'" in notice
    assert notice.endswith(" more read as the values saved with them, which may be 0 or out of date.")


def test_a_workbook_without_formulas_has_no_notices():
    assert parse(F.make_xlsx(), "prices.xlsx").notices == []
    # xlsxwriter asks for a recalculation, but there is nothing to recalculate
    assert parse(F.make_xlsxwriter_workbook(sheets=()), "staff.xlsx").notices == []


# --- embedded objects, attachments ---------------------------------------------------------------
def test_an_object_embedded_in_a_word_document_is_named():
    doc = parse(F.make_docx_with_embedded_object(), "regions.docx")
    assert doc.notices == ["1 embedded object (Excel) is not read; its content is not searchable."]
    assert "The regional figures are in the worksheet below." in doc.text


def test_objects_embedded_in_slides_are_named_with_their_slides():
    doc = parse(F.make_pptx_with_embedded_objects(), "budget.pptx")
    assert doc.notices == [
        "Slides 2-3: 2 embedded objects (Excel) are not read; their content is not searchable."
    ]


def test_a_damaged_attachment_is_a_notice_and_an_attachments_notices_are_kept():
    from email.message import EmailMessage

    doc = parse(F.make_email(), "reply.eml")
    assert doc.notices == [
        "Attachment 'floor-plan.pdf': The PDF could not be read: the file is damaged or is not a valid PDF."
    ]  # the image attached beside it is only named, as before
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "ann@example.com", "team@example.com", "Budget memo"
    m.set_content("The memo is attached.")
    m.add_attachment(F.make_partly_scanned_pdf(), maintype="application", subtype="pdf", filename="memo.pdf")
    doc = parse(m.as_bytes(), "memo.eml")
    assert doc.notices == [f"Attachment 'memo.pdf': {SCANNED}"]
    assert "Page 2 says the budget is 2 million." in doc.text


# --- limits --------------------------------------------------------------------------------------
def test_notices_are_few_short_single_lines():
    many = [f"Sheet 'S{i}': 1 formula cell has no saved value." for i in range(20)]
    capped = base.cap_notices(many + [many[0], "  two\nlines  ", "x" * 1000])
    assert len(capped) == base.MAX_NOTICES
    assert capped[:-1] == many[: base.MAX_NOTICES - 1]
    assert capped[-1] == f"{22 - base.MAX_NOTICES + 1} more notices are not shown."
    assert base.cap_notices(["  two\nlines  "]) == ["two lines"]
    (long,) = base.cap_notices(["word " * 100])
    assert len(long) <= base.MAX_NOTICE_CHARS and long.endswith("\u2026")


@pytest.mark.parametrize(
    ("pages", "text"),
    [([3], "3"), ([9, 3, 7, 8], "3, 7-9"), ([1, 2, 3, 5], "1-3, 5"), (list(range(1, 40, 2)), None)],
)
def test_page_ranges(pages, text):
    if text is None:  # twenty separate pages: the first twelve, then how many more
        text = ", ".join(str(p) for p in range(1, 24, 2)) + " and 8 more"
    assert base.page_ranges(pages) == text
