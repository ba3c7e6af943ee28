"""Context assembly, citations, follow-up rewriting and extractive answers."""

from __future__ import annotations

import pytest

from retrieval.context import (
    DEFAULT_SYSTEM_PROMPT,
    Passage,
    assemble_context,
    cited_numbers,
    cited_sources,
    locator,
    passage_header,
    standalone_query,
)
from retrieval.embeddings import get_embedder
from retrieval.extractive import extractive_answer


def words(s: str) -> int:
    return len(s.split())


P = [
    Passage(7, 2, "Venv guide", "Create it with python -m venv env.", ["Setup"], 3, 100, 134),
    Passage(3, 1, "Sorting", "sorted() returns a new list.", ["Basics", "Functions"], None, 40, 68),
    Passage(9, 1, "Sorting", "list.sort() sorts in place and returns None.", ["Basics"], None, 0, 44),
    Passage(5, 3, "Huge", "word " * 500, [], None, 0, 2500),
]


def test_passages_packed_by_rank_and_laid_out_in_document_order():
    ctx = assemble_context(P, "how to sort?", words, max_tokens=200)
    assert ctx.dropped == [5]  # the 500-word passage does not fit
    assert [(s.n, s.passage.chunk_id) for s in ctx.sources] == [(1, 9), (2, 3), (3, 7)]
    assert ctx.system.startswith(DEFAULT_SYSTEM_PROMPT + "\n\nSources:\n[1] Sorting › Basics\n")
    assert "[2] Sorting › Basics › Functions\nsorted() returns a new list." in ctx.system
    assert "[3] Venv guide › Setup (p. 3)\nCreate it with python -m venv env." in ctx.system
    assert ctx.tokens <= 200
    # Another ranking of the same passages gives the byte-identical prompt (shared prefix).
    again = assemble_context([P[2], P[0], P[1], P[3]], "how to sort?", words, max_tokens=200)
    assert again.system == ctx.system
    msgs = ctx.messages("how to sort?", [{"role": "user", "content": "hi"}])
    assert [m["role"] for m in msgs] == ["system", "user", "user"] and msgs[-1]["content"] == "how to sort?"


def test_a_slide_is_cited_as_a_slide_and_a_page_as_a_page():
    # a presentation's passages said "(p. 4)"; a passage stored before the kind was kept (None) is still a page
    deck = Passage(4, 5, "Roadmap", "Ship the search API.", ["Q3 plans"], 4, 0, 20, page_kind="slide")
    assert passage_header(1, deck) == "[1] Roadmap › Q3 plans (slide 4)"
    assert (
        passage_header(2, Passage(1, 2, "Policy", "x", [], 3, 0, 1, page_kind="page")) == "[2] Policy (p. 3)"
    )
    assert passage_header(3, P[0]) == "[3] Venv guide › Setup (p. 3)"  # no kind: a page
    assert passage_header(4, P[1]) == "[4] Sorting › Basics › Functions"  # no number: no locator
    assert [locator(2, "slide"), locator(2, "page"), locator(2), locator(None, "slide")] == [
        "slide 2",
        "p. 2",
        "p. 2",
        None,
    ]
    ctx = assemble_context([deck, P[0]], "what ships?", words, max_tokens=200)
    assert ctx.system.endswith("[2] Roadmap › Q3 plans (slide 4)\nShip the search API.")  # document order


def test_the_answer_is_asked_in_the_question_language_with_the_same_prompt_for_every_question():
    # a Chinese question over English sources is answered in Chinese; the instruction is part of the system
    # prompt, which is the same whatever the question, so every request still shares its cached prefix
    assert "answer in the language of the question" in DEFAULT_SYSTEM_PROMPT
    zh = assemble_context(P[:3], "如何对列表排序？", words, max_tokens=200)
    en = assemble_context(P[:3], "How do I sort a list?", words, max_tokens=200)
    assert zh.system == en.system and zh.system.startswith(DEFAULT_SYSTEM_PROMPT + "\n\nSources:\n")


def test_budget_too_small_for_the_prompt_is_an_error():
    with pytest.raises(ValueError, match="more than the budget of 5"):
        assemble_context(P, "q", words, max_tokens=5)


def test_citation_markers_map_to_chunks():
    ctx = assemble_context(P[:3], "q", words, max_tokens=500)
    assert cited_numbers("A [2]. B [1][3], C [1, 2] and [2-3]; not [x] or [0-999]", 3) == [2, 1, 3]
    cited = cited_sources("sorted() makes a copy [2] while sort() does not [1]; see also [7].", ctx)
    assert [(s.n, s.passage.chunk_id, s.passage.document_id, s.passage.char_start) for s in cited] == [
        (2, 3, 1, 40),
        (1, 9, 1, 0),
    ]


def test_follow_up_without_generator_carries_earlier_terms():
    history = [
        {"role": "user", "content": "How do I create a virtual environment with venv?"},
        {"role": "assistant", "content": "Run python -m venv env [1]."},
    ]
    q = standalone_query(history, "and how do I delete it?")
    assert q == "and how do I delete it? create virtual environment venv"
    assert standalone_query([], "plain question") == "plain question"
    zh = standalone_query([{"role": "user", "content": "如何创建虚拟环境"}], "怎么删除它")
    assert zh.startswith("怎么删除它 ") and "虚拟环境" in zh


MIME = [{"role": "user", "content": "Which file contains the MIME type glob patterns?"}]


@pytest.mark.parametrize(
    "question",
    [
        "Where is it installed?",  # refers back
        "Does that work on Windows too?",
        "What are their default values?",
        "Can I edit those by hand?",
        "And where do I install them?",
        "What about the magic rules?",  # continues the earlier question
        "How about user overrides?",
        "And on Windows?",
        "Also in the user's home?",
        "Why?",  # too short to stand alone
        "Which version?",
        "What's the default?",
        "Which one takes precedence?",
    ],
)
def test_a_follow_up_carries_the_earlier_questions_terms(question):
    assert standalone_query(MIME, question) == f"{question} file contains MIME type glob patterns"


@pytest.mark.parametrize(
    "question",
    [
        # a new topic after the MIME question was searched with its words: all sources were the MIME spec
        "What does the -p option of ssh do?",
        "Is there a way to limit the number of ssh connection retries?",  # "there" here refers to nothing
        "Is it possible to run sshd on two ports?",
        "Which file holds the settings that sshd reads at start?",  # "that" is a relative pronoun
        "What is FAISS?",
        "Can I run more than one sshd with programs such as systemd?",
        "How many vacation days do I get this year?",
        "Where are the MIME glob patterns of a user stored?",  # the same topic, its own words: as asked
    ],
)
def test_a_self_contained_question_is_searched_as_asked(question):
    assert standalone_query(MIME, question) == question


def test_chinese_follow_ups_carry_and_new_topics_do_not():
    leave = [{"role": "user", "content": "年假有多少天？"}]
    for q in (
        "病假呢？",
        "那病假呢？",
        "它可以累积吗？",
        "这些天数可以顺延到明年吗？",
        "上述规定适用于实习生吗？",
        "为什么？",
    ):
        # jieba cuts 年假有多少天 into 年 / 假有 / 多少 / 天: the words the question lacks are carried
        carried = standalone_query(leave, q).removeprefix(q + " ").split()
        assert carried and set(carried) <= {"年", "假", "多少", "天"}, q
    for q in ("报销差旅费需要哪些发票？", "公司的办公室在哪个城市？"):
        assert standalone_query(leave, q) == q


def test_follow_up_with_generator_and_fallback():
    history = [{"role": "user", "content": "How do I create a virtual environment?"}]
    prompts = []

    def gen(prompt: str) -> str:
        prompts.append(prompt)
        return '"How do I delete a virtual environment?"\nextra'

    assert standalone_query(history, "delete it?", gen) == "How do I delete a virtual environment?"
    assert "user: How do I create a virtual environment?" in prompts[0]
    assert prompts[0].rstrip().endswith("Last question: delete it?\nStandalone question:")
    assert standalone_query(history, "delete it?", lambda p: "  ").startswith("delete it? ")


def test_extractive_answer_quotes_best_sentences_with_offsets():
    passages = [
        Passage(
            11,
            4,
            "zlib",
            "The zlib module compresses data. Use zlib.crc32 to compute a CRC-32 checksum of bytes.",
            [],
            None,
            500,
            586,
        ),
        Passage(
            12, 5, "json", "json.dumps serializes objects. It accepts an indent argument.", [], None, 0, 61
        ),
    ]
    ctx = assemble_context(passages, "q", words, max_tokens=500)
    emb = get_embedder()
    ans = extractive_answer("How do I compute a CRC-32 checksum?", ctx, emb.embed, max_sentences=2)
    best = ans.quotes[0]
    assert best.text == "Use zlib.crc32 to compute a CRC-32 checksum of bytes."
    assert (best.n, best.chunk_id, best.document_id) == (1, 11, 4)
    assert passages[0].text[best.start : best.end] == best.text
    assert (best.doc_start, best.doc_end) == (500 + best.start, 500 + best.end)
    assert ans.text.splitlines()[0] == "“Use zlib.crc32 to compute a CRC-32 checksum of bytes.” [1]"
    # Without embeddings, term coverage alone still finds it.
    assert extractive_answer("crc-32 checksum", ctx).quotes[0].chunk_id == 11


HANDBOOK = [
    Passage(21, 7, "Benefits", "Parental leave\nPrimary caregivers receive 16 weeks of paid parental leave. "
            "Secondary caregivers receive 6 weeks.", [], 2, 300, 400),  # a PDF line the parser saw as text
    Passage(22, 8, "IT Security Policy", "Laptops\n\nLost laptops must be reported to security@example.com "
            "within 24 hours. Disk encryption is mandatory.", ["Laptops"], None, 0, 100),
    Passage(23, 9, "On-call handbook", "On-call\n\nThe on-call rotation changes every Monday at 10:00 UTC. "
            "Page the incident commander via PagerDuty.", ["On-call"], None, 0, 110),
]  # fmt: skip


def test_extractive_answer_quotes_answers_not_headings_or_filler():
    ctx = assemble_context(HANDBOOK, "q", words, max_tokens=500)
    emb = get_embedder()
    ans = extractive_answer("How many weeks of parental leave do primary caregivers get?", ctx, emb.embed)
    quoted = [q.text for q in ans.quotes]
    assert quoted[0] == "Primary caregivers receive 16 weeks of paid parental leave."
    assert "Parental leave" not in quoted  # a heading line answers nothing
    ans = extractive_answer("How do I report a lost laptop?", ctx, emb.embed)
    # the heading, and the sentences of other documents that score far below the answer, are not quoted
    assert [q.text for q in ans.quotes] == [
        "Lost laptops must be reported to security@example.com within 24 hours."
    ]


def test_extractive_answer_does_not_quote_a_numbered_heading():
    # "2.10. Storing ..." splits at "2.10." (a sentence end before a space): its words alone are the heading
    text = "2.10. Storing the MIME type in extended attributes\nA file's MIME type may be stored in the user.mime_type attribute."
    head = ["2. Unified system", "2.10. Storing the MIME type in extended attributes"]
    ctx = assemble_context(
        [Passage(41, 3, "Shared MIME-info", text, head, 14, 0, len(text))], "q", words, 500
    )
    ans = extractive_answer("Where is the MIME type of a file stored?", ctx, get_embedder().embed)
    assert [q.text for q in ans.quotes] == [
        "A file's MIME type may be stored in the user.mime_type attribute."
    ]


def test_extractive_answer_quotes_a_hard_wrapped_sentence_whole():
    # a text file wrapped at ~80 columns (a README, an e-mail): the answer is the whole sentence, on one line,
    # not the line that happens to hold the question's words
    text = (
        "Installation order\n\n"
        "Dependencies are solved and the packages downloaded.\n"
        "Packages have to be installed in a particular order so that their dependencies are\n"
        "satisfied, but optional packages go last so that a broken one does not\n"
        "block the installation of important packages.\n"
        "- a list item\n"
        "- Another item"
    )
    ctx = assemble_context([Passage(31, 9, "APT", text, [], None, 0, len(text))], "q", words, 500)
    ans = extractive_answer("In what order are packages installed?", ctx, get_embedder().embed)
    best = ans.quotes[0]
    assert best.text.startswith("Packages have to be installed") and best.text.endswith("important packages.")
    assert text[best.start : best.end] == best.text
    assert ans.text.splitlines()[0] == (
        "“Packages have to be installed in a particular order so that their dependencies are satisfied, but "
        "optional packages go last so that a broken one does not block the installation of important "
        "packages.” [1]"
    )
    # lines that start a new line in upper case, or follow a blank line, still end where they did
    from retrieval.sentences import split_sentences

    sentences = [text[s:e] for s, e in split_sentences(text)]
    assert sentences[:2] == ["Installation order", "Dependencies are solved and the packages downloaded."]
    assert sentences[-2:] == ["- a list item", "- Another item"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a name's initials, abbreviations and a period before lower case end no sentence
        ("Author: Philip A. Nelson\nE-mail: phil@example.org", ["Author: Philip A. Nelson", "E-mail: phil@example.org"]),
        ("J. R. R. Tolkien wrote it. Yes.", ["J. R. R. Tolkien wrote it.", "Yes."]),
        ("Set a prefix (e.g. CMAKE_PREFIX=/usr) first. Then build.", ["Set a prefix (e.g. CMAKE_PREFIX=/usr) first.", "Then build."]),
        ("Dr. Smith signs it. See Fig. 3 and No. 5 below.", ["Dr. Smith signs it.", "See Fig. 3 and No. 5 below."]),
        ("It costs approx. five euros. Pay cash.", ["It costs approx. five euros.", "Pay cash."]),
        # ... and those that do end one still do
        ("He said no. Then he left.", ["He said no.", "Then he left."]),
        ("Version 1.0. New features. I agree.", ["Version 1.0.", "New features.", "I agree."]),
        ("Wait... Really? Yes, and so on etc. The end.", ["Wait...", "Really?", "Yes, and so on etc.", "The end."]),
    ],
)  # fmt: skip
def test_sentences_do_not_end_at_initials_or_abbreviations(text, expected):
    # "Philip A." + "Nelson" was two sentences (and a chunk could start at "Nelson"); "(e.g." a quote
    from retrieval.sentences import split_sentences

    assert [text[s:e] for s, e in split_sentences(text)] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a wrapped line may start with a figure: the sentence goes on after a long line ending mid-sentence
        ("The following uid/gid pairs have been allocated in the static range\n60000-64999. They are created"
         " by their packages.",
         ["The following uid/gid pairs have been allocated in the static range\n60000-64999.",
          "They are created by their packages."]),
        ("Release notes for every version of the product were published in\n2024 by the team.",
         ["Release notes for every version of the product were published in\n2024 by the team."]),
        # ... but not a list number, a short line (a label, a table row), a line of figures or a page number
        ("Do the following steps carefully and in order, one after another\n1. Install it.\n2) Run it.",
         ["Do the following steps carefully and in order, one after another", "1. Install it.", "2) Run it."]),
        ("Total items\n42 apples", ["Total items", "42 apples"]),
        ("This is the last line of the page before the page number\n12\nNext page",
         ["This is the last line of the page before the page number", "12", "Next page"]),
        ("Quarterly revenue by region for the last three years in euros\n2022 2023 2024",
         ["Quarterly revenue by region for the last three years in euros", "2022 2023 2024"]),
    ],
)  # fmt: skip
def test_a_wrapped_sentence_carries_on_over_a_line_starting_with_a_figure(text, expected):
    # base-passwd's README: "...allocated in the static range" + "60000-64999." was two sentences, and the
    # quote that answered "which uid range is static" lost the range
    from retrieval.sentences import split_sentences

    assert [text[s:e] for s, e in split_sentences(text)] == expected


@pytest.mark.parametrize(
    "question",
    ["What is the capital of France?", "How do I bake sourdough bread?", "Who won the 2018 world cup?"],
)
def test_extractive_answer_quotes_nothing_when_no_source_answers(question):
    ctx = assemble_context(HANDBOOK, "q", words, max_tokens=500)
    ans = extractive_answer(question, ctx, get_embedder().embed)
    assert (ans.text, ans.quotes) == ("", [])


def test_extractive_answer_counts_the_section_headings_words():
    # two sections say alike how their tests run; the one whose heading names what is asked answers it
    unit = "Unit tests\n\nThese tests are executed by ctest and can be run with make test."
    integ = "Integration tests\n\nThese tests are slow and can be run with the run-tests script."
    ctx = assemble_context(
        [
            Passage(1, 1, "APT", integ, ["APT", "Testing", "Integration tests"], None, 0, len(integ)),
            Passage(2, 1, "APT", unit, ["APT", "Testing", "Unit tests"], None, 900, 900 + len(unit)),
        ],
        "q",
        words,
        max_tokens=500,
    )
    # word coverage alone (no embedding): both sentences hold "run" and "tests", only one section "unit"
    ans = extractive_answer("How can I run the unit tests?", ctx, max_sentences=1)
    assert ans.quotes[0].text == "These tests are executed by ctest and can be run with make test."
    ans = extractive_answer("How can I run the unit tests?", ctx, get_embedder().embed, max_sentences=1)
    assert ans.quotes[0].text == "These tests are executed by ctest and can be run with make test."


def test_extractive_answer_quotes_what_a_colon_announces():
    # "...should be sent to:" alone answers nothing; the address on the next line is quoted with it, once
    text = "Reporting Bugs\n\nBug reports for bash should be sent to:\n\n\tbug-bash@gnu.org\n\nUse bashbug."
    ctx = assemble_context(
        [Passage(4, 2, "Bash", text, ["Reporting Bugs"], None, 50, 50 + len(text))], "q", words, 500
    )
    ans = extractive_answer("Where should bash bug reports be sent?", ctx, get_embedder().embed)
    first = ans.quotes[0]
    assert text[first.start : first.end] == "Bug reports for bash should be sent to:\n\n\tbug-bash@gnu.org"
    assert ans.text.splitlines()[0] == "“Bug reports for bash should be sent to: bug-bash@gnu.org” [1]"
    assert not any(q.text == "bug-bash@gnu.org" for q in ans.quotes)


def test_extractive_answer_reads_a_leading_pronoun_as_the_documents_subject():
    # "It has been released ... under the BSD license" speaks of the document's subject (its title): the
    # title's words count for a sentence that starts with a pronoun, not for the others
    text = "Cscope was first released in 1985. It has been released as Open Source under the BSD license."
    ctx = assemble_context([Passage(1, 1, "Cscope", text, [], None, 0, len(text))], "q", words, 500)
    ans = extractive_answer("Under which license was cscope released?", ctx, max_sentences=1)
    assert ans.quotes[0].text == "It has been released as Open Source under the BSD license."


def test_extractive_answer_counts_the_words_of_an_identifier():
    # "problem resolver" are words of pkgProblemResolver: the sentence naming it covers more of the question
    text = (
        "This option shows the packages that were unpacked. "
        "You can see their fight and its resolution with Debug::pkgProblemResolver."
    )
    ctx = assemble_context([Passage(1, 1, "APT", text, [], None, 0, len(text))], "q", words, 500)
    ans = extractive_answer("Which option shows the problem resolver's fight?", ctx, max_sentences=1)
    assert ans.quotes[0].text == "You can see their fight and its resolution with Debug::pkgProblemResolver."
    # an identifier of the question is one term, not three (libtasn1, libtasn, 1): naming it does not outweigh
    # the question's other words
    text = "Building libtasn1 needs no network access. Building it needs Automake version 2.5 or later."
    ctx = assemble_context([Passage(2, 1, "README", text, [], None, 0, len(text))], "q", words, 500)
    ans = extractive_answer("Which Automake version does building libtasn1 need?", ctx, max_sentences=1)
    assert ans.quotes[0].text == "Building it needs Automake version 2.5 or later."


def test_extractive_answer_in_chinese():
    text = "Python 是一种编程语言。虚拟环境可以用 venv 模块创建。删除虚拟环境只需删除其目录。"
    ctx = assemble_context([Passage(1, 1, "指南", text, [], None, 10, 10 + len(text))], "q", len, 10_000)
    ans = extractive_answer("如何删除虚拟环境？", ctx, max_sentences=1)
    assert ans.quotes[0].text == "删除虚拟环境只需删除其目录。"
    assert text[ans.quotes[0].start : ans.quotes[0].end] == ans.quotes[0].text
    assert ans.text == "“删除虚拟环境只需删除其目录。” [1]"


def test_rewrite_followup_takes_earlier_questions():
    from retrieval.context import rewrite_followup

    assert rewrite_followup("and delete it?", ["create a venv"]) == "and delete it? create venv"
