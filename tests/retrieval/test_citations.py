"""Citation markers in a generated answer (retrieval.context.citations): the forms models write, GLM-4 above
all in Chinese, count as citations; years, list numbers, indexing in code and numbers that name no source stay
text. tests/web/test_citations.py runs the same CASES through the ask page's parser (web/citations.js)."""

from __future__ import annotations

import pytest

from retrieval.context import citations, cited_numbers

N = 3  # sources [1]..[3]

# (answer text, [(marker as written, numbers it cites)]) with sources 1..N
CASES: list[tuple[str, list[tuple[str, list[int]]]]] = [
    ("Leave is 28 days [1]. Carry-over [2][3].", [("[1]", [1]), ("[2]", [2]), ("[3]", [3])]),
    (
        "Both [1, 2], a range [1-3], an en dash [2–3].",
        [("[1, 2]", [1, 2]), ("[1-3]", [1, 2, 3]), ("[2–3]", [2, 3])],
    ),
    # full-width brackets, as GLM-4 writes them in Chinese
    ("员工每年有二十八天带薪假【1】，最多五天可结转［2］。", [("【1】", [1]), ("［2］", [2])]),
    (
        "见【1,2】和[1、2]，以及[1，3]、【2；3】。",
        [("【1,2】", [1, 2]), ("[1、2]", [1, 2]), ("[1，3]", [1, 3]), ("【2；3】", [2, 3])],
    ),
    ("Markdown footnotes[^1] and [^3].", [("[^1]", [1]), ("[^3]", [3])]),
    (
        "Labelled [Source 1], [source 2], [Sources 1, 3], [Source: 2].",
        [("[Source 1]", [1]), ("[source 2]", [2]), ("[Sources 1, 3]", [1, 3]), ("[Source: 2]", [2])],
    ),
    (
        "来源标注[来源1]、【来源：2】、[文档3]、[来源1、来源3]。",
        [("[来源1]", [1]), ("【来源：2】", [2]), ("[文档3]", [3]), ("[来源1、来源3]", [1, 3])],
    ),
    ("Ranges [1~2], 【1至3】, [2～3].", [("[1~2]", [1, 2]), ("【1至3】", [1, 2, 3]), ("[2～3]", [2, 3])]),
    ("Glued to a word: per year[1].", [("[1]", [1])]),
    # full-width digits, as GLM-4 writes them in Chinese text
    (
        "带薪假【１】，结转［２］，见【１，２】与【１－３】、[来源：３]、【２０２４】。",
        [
            ("【１】", [1]),
            ("［２］", [2]),
            ("【１，２】", [1, 2]),
            ("【１－３】", [1, 2, 3]),
            ("[来源：３]", [3]),
        ],
    ),
    # OpenAI's form (ChatGPT, models tuned on its tools): what follows the dagger is a title or lines, not a source
    (
        "Leave is 28 days 【1†source】, carried over 【3†L1-L5】 and 【２†HR handbook.pdf】.",
        [("【1†source】", [1]), ("【3†L1-L5】", [3]), ("【２†HR handbook.pdf】", [2])],
    ),
    ("Not sources: 【9†source】, 【0†L1】, 【4:0†source】, a dagger alone 【†source】.", []),
    # not citations: a year, list items, numbers naming no source, a descending range, letters
    ("In [2024] the policy changed.", []),
    ("Steps: (1) open the portal, (2) submit; （3） approve.", []),
    ("Not sources: [0], [4], [1-1000], [3-1], [1, 4], [x], [1.5], [ ].", []),
    ("Not sources either: 【０】, ［４］, 【２０２４】, 【１，４】.", []),
    # indexing in code: a code span, a fenced block (closed or still streaming), the citation after it counts
    ("Use `a[1]` or ``b[2]`` here [3].", [("[3]", [3])]),
    ("Code keeps its brackets: `x【１】`, `y【2†source】`; the answer cites 【２】.", [("【２】", [2])]),
    ("```python\nx = a[1]\ny = b[2]\n```\nThat reads the second item [2].", [("[2]", [2])]),
    ("~~~\nitems[1]\n~~~\nsee [1]", [("[1]", [1])]),
    ("Example:\n```js\nconst x = a[1];", []),
    # a code span ends with its line: an extractive answer's quote with a stray backtick hides no other quote's [n]
    ("“Run `make” [1]\n“then `make install” [2]", [("[1]", [1]), ("[2]", [2])]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_citation_forms_and_plain_text(text, expected):
    got = [(text[c.start : c.end], list(c.numbers)) for c in citations(text, N)]
    assert got == expected


def test_cited_numbers_in_order_of_first_use():
    text = "假期【2】。结转[来源1、来源2]；见 [^3] 与 `a[1]`，[2024]。"
    assert cited_numbers(text, N) == [2, 1, 3]
    assert cited_numbers(text, 1) == []  # with one source, every marker here names one that does not exist
