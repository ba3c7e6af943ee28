"""Tables whose header is two rows: group titles over the columns' own names ("Q1 | | Q2 |" merged over
"Revenue | Cost | Revenue | Cost"). The second header row was read as data, so a row's fields said "Q2: 55"
under a "Cost" row of its own and "What was the Q2 cost for Berlin?" found no field naming both."""

from __future__ import annotations

import io

from ingest.parsers import base, parse
from retrieval.context import Passage, assemble_context
from retrieval.extractive import extractive_answer

BERLIN = "City: Berlin; Q1 Revenue: 100; Q1 Cost: 40; Q2 Revenue: 120; Q2 Cost: 55"
PARIS = "City: Paris; Q1 Revenue: 90; Q1 Cost: 30; Q2 Revenue: 95; Q2 Cost: 35"


def _xlsx() -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Results"
    ws.append(["City", "Q1", None, "Q2", None])
    ws.append([None, "Revenue", "Cost", "Revenue", "Cost"])
    ws.append(["Berlin", 100, 40, 120, 55])
    ws.append(["Paris", 90, 30, 95, 35])
    ws.merge_cells("A1:A2")  # "City" merged down over both header rows
    ws.merge_cells("B1:C1")
    ws.merge_cells("D1:E1")
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_an_xlsx_header_of_merged_group_titles_over_names_names_each_column_by_both():
    doc = parse(_xlsx(), "results.xlsx")
    assert doc.text == f"Results\n\n{BERLIN}\n{PARIS}"


def test_a_csv_header_repeating_its_group_titles_names_each_column_by_both():
    data = b"City,Q1,Q1,Q2,Q2\n,Revenue,Cost,Revenue,Cost\nBerlin,100,40,120,55\nParis,90,30,95,35\n"
    assert parse(data, "results.csv").text == f"{BERLIN}\n{PARIS}"


def test_the_row_answers_a_question_naming_the_group_and_the_column():
    text = parse(_xlsx(), "results.xlsx").text
    ctx = assemble_context(
        [Passage(1, 1, "results.xlsx", text, ["Results"], None, 0, len(text))],
        "q",
        lambda s: len(s.split()),
        500,
    )
    ans = extractive_answer("What was the Q2 cost for Berlin?", ctx, None)
    assert ans.quotes[0].text == BERLIN


def test_a_two_row_header_after_a_spacer_starts_a_table_of_its_own():
    rows = [
        ["Team", "Phone"],
        ["Service desk", "x4000"],
        [],
        ["City", "2025", "", "2026", ""],
        ["", "Q1", "Q2", "Q1", "Q2"],
        ["Berlin", "10", "12", "14", "15"],
    ]
    assert base.sheet_rows_as_text(rows) == [
        "Team: Service desk; Phone: x4000",
        "City: Berlin; 2025 Q1: 10; 2025 Q2: 12; 2026 Q1: 14; 2026 Q2: 15",
    ]


def test_one_row_headers_stay_one_row():
    # a header with an empty last column over a row of text: that row is data, not a second header
    notes = [["Name", "Team", ""], ["Ana", "Sales", "remote"], ["Bob", "Support", "on site 2 days"]]
    assert base.rows_as_text(notes) == [
        "Name: Ana; Team: Sales; Column 3: remote",
        "Name: Bob; Team: Support; Column 3: on site 2 days",
    ]
    # a first data row without figures under a plain header
    staff = [["Name", "Office", "Phone"], ["Ana", "Berlin", "Lisbon"], ["Tom", "Paris", "x4010"]]
    assert base.rows_as_text(staff)[0] == "Name: Ana; Office: Berlin; Phone: Lisbon"
    # a banner merged over the columns (one cell) stays a line of its own above a one-row header
    banner = [["", "Quarterly results", "", ""], ["City", "Revenue", "Cost", ""], ["Berlin", "100", "40", ""]]
    assert base.rows_as_text(banner) == ["Quarterly results", "City: Berlin; Revenue: 100; Cost: 40"]
    # names repeated under no group title: a header row over data, no group
    plain = [["City", "Revenue", "Cost"], ["", "Revenue", "Cost"], ["Berlin", "100", "40"]]
    assert base.rows_as_text(plain)[0] == "Revenue: Revenue; Cost: Cost"
