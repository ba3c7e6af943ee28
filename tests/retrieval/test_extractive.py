"""Extractive answers on reference manuals (the Node.js API pages, HTML): a code line is no heading, a
parameter's "Default:" is quoted with its item, a sentence that refers back is quoted with the one it refers
to, and a "How do I ...?" question prefers the sentence that says what to do."""

from __future__ import annotations

from collections import Counter

import pytest

from retrieval.context import Passage, assemble_context
from retrieval.embeddings import get_embedder
from retrieval.extractive import extractive_answer
from retrieval.lexical import idf, in_dictionary, lexical_text, tokenize


def _answer(question: str, text: str, headings: list[str] | None = None, embed: bool = True):
    ctx = assemble_context(
        [Passage(7, 2, "Manual", text, headings or [], None, 0, len(text))],
        "q",
        lambda s: len(s.split()),
        500,
    )
    return extractive_answer(question, ctx, get_embedder().embed if embed else None)


def test_a_short_line_of_code_is_quoted_not_taken_for_a_heading():
    # "--with-intl=full-icu (default)" is short and has no stop, like a heading, but "=" makes it code
    text = (
        "Options for building\n\n"
        "Four ICU options are available during compilation.\n\n"
        "--with-intl=none\n\n--with-intl=small-icu\n\n--with-intl=full-icu (default)\n\n"
        "Small ICU\n\nThis option links against a smaller set of ICU data."
    )
    ans = _answer("Which ICU build is the default?", text, ["Options for building"], embed=False)
    assert ans.quotes[0].text == "--with-intl=full-icu (default)"
    assert all(q.text != "Small ICU" for q in ans.quotes)  # a line without code marks is still a heading


def test_a_default_is_quoted_with_its_parameter():
    # a parameter list item of an API page; "Default: 1000." alone would answer nothing
    item = (
        "maxKeys <number> Specifies the maximum number of keys to parse. "
        "Specify 0 to remove key counting limitations. Default: 1000."
    )
    text = (  # as the HTML parser gives it: a block (here a list item) per paragraph
        "options <Object>\n\n"
        "decodeURIComponent <Function> The function to use when decoding percent-encoded characters. "
        "Default: querystring.unescape().\n\n" + item + "\n\n"
        "The querystring.parse() method parses a URL query string into a collection of key and value pairs."
    )
    heading = "querystring.parse(str[, sep[, eq[, options]]])"
    ans = _answer("How many keys does querystring.parse() parse at most by default?", text, [heading])
    assert ans.quotes[0].text == item
    assert all(not q.text.startswith("Default:") for q in ans.quotes)


def test_a_sentence_that_refers_back_is_quoted_with_the_one_before():
    # "If none of them is set" speaks of the variables the sentence before names
    text = (
        "Returns the operating system's default directory for temporary files as a string.\n\n"
        "On non-Windows platforms, TMPDIR, TMP and TEMP environment variables will be checked to override "
        "the result of this method, in the described order. If none of them is set, it defaults to /tmp."
    )
    ans = _answer("What is the default temporary directory on Linux if TMPDIR is not set?", text)
    assert ans.quotes[0].text.startswith("On non-Windows platforms, TMPDIR")
    assert ans.quotes[0].text.endswith("If none of them is set, it defaults to /tmp.")


# A sentence that goes on from the one before it ("Otherwise, ...", "If it is not set, ...", "These are held ...")
# is one statement with it: the question may ask what either half says, and the half that holds its words alone
# answered it wrongly ("Otherwise, matching is case sensitive.") or not at all (the buffer, not what it holds).
@pytest.mark.parametrize(
    ("question", "heading", "text", "answer"),
    [
        ("Is quillfeed filter case sensitive?", "quillfeed filter PATTERN",
         "Hide the entries whose titles match PATTERN, a regular expression.\n\nIf the pattern is all lowercase, "
         "matching ignores case. Otherwise, matching is case sensitive. Pass --exact to always match case.",
         "If the pattern is all lowercase, matching ignores case. Otherwise, matching is case sensitive."),
        ("Which directory does Quillfeed use for its cache?", "Files",
         "Quillfeed reads its settings from ~/.config/quillfeed/config.toml. Quillfeed keeps downloaded entries "
         "in the directory that QUILLFEED_CACHE names. If it is not set, the cache goes to ~/.cache/quillfeed.",
         "Quillfeed keeps downloaded entries in the directory that QUILLFEED_CACHE names. If it is not set, the "
         "cache goes to ~/.cache/quillfeed."),
        ("What happens to partial entries sent by a feed?", "Fetching",
         "Quillfeed fetches every feed once an hour. When a feed sends a partial entry, Quillfeed keeps an "
         "internal buffer so that no entry is ever shown incomplete. These are held in the buffer until the next "
         "fetch completes them.",
         "When a feed sends a partial entry, Quillfeed keeps an internal buffer so that no entry is ever shown "
         "incomplete. These are held in the buffer until the next fetch completes them."),
    ],
)  # fmt: skip
def test_a_sentence_that_goes_on_from_the_one_before_is_quoted_with_it(question, heading, text, answer):
    assert _page(question, [([heading], text)], "Quillfeed manual").quotes[0].text == answer


def test_the_default_for_a_named_setting_is_a_stated_default():
    # "The default for <a setting of several words> is ..." states the default; "This directory is the default
    # location for ..." only names one
    text = (
        "~/.quillfeed/ This directory is the default location for all per-user Quillfeed files. The default for "
        "the per-user configuration file is ~/.quillfeed/config.toml."
    )
    ans = _page("What is the default per-user configuration file?", [(["Files"], text)], "Quillfeed manual")
    assert (
        ans.quotes[0].text == "The default for the per-user configuration file is ~/.quillfeed/config.toml."
    )


@pytest.mark.parametrize(
    ("question", "text", "answer"),
    [
        # the sentence that restates the question comes first by meaning; the one that says what to do wins
        ("How do I enable Corepack?",
         "Due to its experimental status, Corepack currently needs to be explicitly enabled to have any "
         "effect. To do that, run corepack enable, which will set up the symlinks in your environment next "
         "to the node binary.",
         "run corepack enable"),
        ("How do I turn off large file support when building patch?",
         "This version of patch has many changes made by the Free Software Foundation. They add support "
         "for:\n* handling arbitrary binary data and large files\n\n"
         "Use `configure --disable-largefile' to disable large file support; this is reportedly necessary "
         "on Red Hat GNU/Linux 6.0 to avoid a C library bug.",
         "--disable-largefile"),
    ],
)  # fmt: skip
def test_how_do_i_prefers_the_sentence_that_says_what_to_do(question, text, answer):
    assert answer in _answer(question, text).quotes[0].text


def _page(question: str, sections: list[tuple[list[str], str]], title: str, embed: bool = True):
    """A manual page as retrieval hands it over: a passage per section, each with its heading path."""
    passages = [
        Passage(i + 1, 2, title, text, hp, None, 0, len(text)) for i, (hp, text) in enumerate(sections)
    ]
    ctx = assemble_context(passages, "q", lambda s: len(s.split()), 2000)
    return extractive_answer(question, ctx, get_embedder().embed if embed else None)


def test_a_sentence_is_read_under_its_headings():
    # tar(1): the answer never names what it speaks of ("This option" is --delete, its heading); alone it
    # is less like the question than the synopsis line and the compression options
    sections = [
        (["SYNOPSIS", "GNU-style usage"], "tar --delete [--file ARCHIVE] [OPTIONS] [MEMBER...]"),
        (
            ["OPTIONS", "Compression options", "-z, --gzip, --gunzip, --ungzip"],
            "Filter the archive through gzip(1).",
        ),
        (
            ["DESCRIPTION", "Operation mode", "--delete"],
            "Delete from the archive. The arguments supply names of the archive members to be removed. At "
            "least one argument must be given.\n\nThis option does not operate on compressed archives. There "
            "is no short option equivalent.",
        ),
    ]
    ans = _page("Can I delete members from a compressed tar archive?", sections, "tar - an archiving utility")
    assert ans.quotes[0].text == "This option does not operate on compressed archives."


def test_a_question_about_a_default_prefers_the_sentence_that_states_it():
    # the Shared MIME-info spec (PDF): the sentence that gives the default, not the ones about weights
    sections = [
        (
            ["2. Unified system", "2.2. The source XML files"],
            "glob elements have a pattern attribute. There is also an optional weight attribute which is used "
            "when resolving conflicts with other glob matches. The default weight value is 50, and the "
            "maximum is 100.",
        ),
        (
            ["2. Unified system", "2.4. The glob files"],
            "The globs2 file is a simple list of lines containing weight, MIME type and pattern, separated by "
            "a colon. If several patterns of the same weight match then the longest pattern SHOULD be used.",
        ),
    ]
    ans = _page("What is the default weight of a glob pattern?", sections, "Shared MIME-info Database")
    assert ans.quotes[0].text == "The default weight value is 50, and the maximum is 100."


def test_a_pronoun_under_a_heading_speaks_of_its_section_not_the_title():
    # "This can cause a performance penalty" is about --line-buffered; it used to get grep(1)'s title words
    # ("egrep", "fgrep") and, with the sentence it refers back to, outscore the one that names them
    sections = [
        (
            ["DESCRIPTION"],
            "Debian also includes the variant programs egrep and fgrep. For portability reasons, it is "
            "recommended to avoid the variant programs.",
        ),
        (["OPTIONS", "Other Options", "--line-buffered"], "Use line buffering on output. This can cause a "
         "performance penalty."),
    ]  # fmt: skip
    title = "grep, egrep, fgrep - print lines that match patterns"
    ans = _page("Should I still use egrep and fgrep?", sections, title, embed=False)
    assert ans.quotes[0].text == "Debian also includes the variant programs egrep and fgrep."
    # without headings the pronoun still speaks of the document: "It" is cscope
    text = "Cscope is a text screen based source browsing tool. It has been released under the BSD license."
    ans = _page("Under which license was cscope released?", [([], text)], "cscope", embed=False)
    assert ans.quotes[0].text == "It has been released under the BSD license."


def test_an_answer_form_makes_no_off_topic_sentence_an_answer():
    # "By default, ..." states a default and "Use ..." says what to do, but neither is about vacation days
    sections = [
        (
            ["OPTIONS", "-M#, --memory=#"],
            "By default, zstd uses 128 MiB for decompression as the maximum amount of memory. Use a smaller "
            "limit on systems with little memory.",
        )
    ]
    for question in ("What is the default number of vacation days?", "How do I request vacation days?"):
        assert _page(question, sections, "zstd - fast compression").quotes == []


def test_a_question_about_an_amount_prefers_the_sentence_that_states_one():
    # an employee handbook: "How much ...?" is answered by the sentence with the figure, not by the one that
    # says more about the same premium and the same company
    text = (
        "Each month the company pays the premium directly to the insurer, and you see your share on your "
        "payslip. The company covers 75% of it and you pay the other 25%."
    )
    ans = _page(
        "How much of the premium does the company pay?",
        [(["Benefits", "Medical Insurance"], text)],
        "Benefits",
    )
    assert ans.quotes[0].text == "The company covers 75% of it and you pay the other 25%."


def test_a_question_about_what_one_gets_prefers_the_sentence_that_grants_it():
    # "How many days ... do I get?": the sentence that grants the days, not the carry-over rule that also
    # counts days under the same heading
    sections = [
        (
            ["Types of leave", "Military leave"],
            "You can receive 15 Military Leave days each year for active duty, active duty training, and "
            "inactive duty training in the National Guard or as a Reservist. You can carry over a maximum of 15 "
            "days into the next fiscal year.",
        ),
    ]
    ans = _page("How many days of military leave do I get each year?", sections, "Leave types")
    assert ans.quotes[0].text.startswith("You can receive 15 Military Leave days each year")


# Chinese questions: an English-only embedding model's similarities of Chinese text are noise (app.answer
# passes ``Embedder.trust`` of the question as embed_trust); the figures of Chinese amounts.
def _zh_answer(question: str, text: str, headings: list[str], embed=None, trust: float = 0.0):
    ctx = assemble_context(
        [Passage(7, 2, "员工手册", text, headings, None, 0, len(text))], "q", lambda s: len(s), 5000
    )
    return extractive_answer(question, ctx, embed, embed_trust=trust)


def test_a_chinese_amount_question_prefers_the_sentence_with_the_figure():
    text = "市内打车报销需提供出租车票和发票。\n市内打车单次报销不超过二十元。"  # a Chinese numeral
    got = _zh_answer("在市内打车，一次最多能报销多少钱？", text, ["费用", "交通费"])
    assert got.quotes[0].text == "市内打车单次报销不超过二十元。"
    text = "全勤奖依据考勤系统判定，每季度评定，与当月薪资一同发放。\n全勤奖奖励不超过100元或同等值礼品。"
    got = _zh_answer("全勤奖能拿多少钱？", text, ["薪酬", "全勤奖"])  # digits right after Chinese
    assert got.quotes[0].text == "全勤奖奖励不超过100元或同等值礼品。"


def test_an_untrusted_embedding_model_is_not_asked_and_trusted_one_decides():
    import numpy as np

    # both state a figure: a sentence without one answers no question about an amount
    text = "互助会的会长负责管理互助基金，每月5日公布收支。\n会员费：200元/年，转正后第一年由公司缴纳。"
    question = "加入互助会一年要交多少会费？"

    def fooled(texts):  # a model sure the first sentence answers
        v = np.array([[1.0, 0.0] if "会长" in t or t == question else [0.0, 1.0] for t in texts])
        return v.astype(np.float32)

    def never(texts):
        raise AssertionError("embedded at trust 0")

    assert _zh_answer(question, text, ["员工互助会"], never).quotes[0].text.startswith("会员费：200元/年")
    assert (
        _zh_answer(question, text, ["员工互助会"], fooled, trust=1.0)
        .quotes[0]
        .text.startswith("互助会的会长")
    )
    with pytest.raises(ValueError, match="embed_trust"):
        _zh_answer(question, text, ["员工互助会"], fooled, trust=-0.1)


PER_DIEM = (
    "Per diem rates\n\nCity: London; Hotel cap per night: £220; Meals per day: £65\n"
    "City: New York; Hotel cap per night: $340; Meals per day: $90\n"
    "City: Singapore; Hotel cap per night: S$310; Meals per day: S$80\n"
    "City: Munich; Hotel cap per night: €190; Meals per day: €60"
)


@pytest.mark.parametrize(
    ("question", "rows"),
    [
        # every row holds the column names the question shares ("hotel cap per night"): the row it picks is the
        # answer, the others were quoted after it as if they answered too
        ("What is the hotel cap per night in New York?", ["New York"]),
        ("What are the hotel caps in London and Munich?", ["Munich", "London"]),  # two rows named: both
        (
            "What is the meal allowance per day?",
            ["London", "Singapore", "New York"],
        ),  # none picked: as before
    ],
)
def test_a_question_that_picks_a_table_row_gets_that_row_alone(question, rows):
    ans = _answer(question, PER_DIEM, ["Per diem rates"])
    assert sorted(q.text.split(";")[0].removeprefix("City: ") for q in ans.quotes) == sorted(rows)


def _runbooks(lines_a: str, lines_b: str):
    """Two runbooks with the same "Contacts" section, the search team's first."""
    docs = [("Search runbook", lines_b, 11), ("Payments runbook", lines_a, 12)]
    passages = [
        Passage(doc_id, doc_id, title, f"Contacts\n{text}", ["Contacts"], None, 0, len(text) + 9)
        for title, text, doc_id in docs
    ]
    return assemble_context(passages, "q", lambda s: len(s.split()), 500)


@pytest.mark.parametrize("embed", [False, True])
def test_a_field_line_under_a_heading_counts_its_documents_title(embed):
    # "Owner: Dana" under "Contacts" ignored the title "Payments runbook" (only a passage without headings
    # lent a field line its title): both owners covered "owner" alone and the first document's won
    ctx = _runbooks("Owner: Dana Reyes\nPager: #payments-oncall", "Owner: Sam Ito\nPager: #search-oncall")
    ans = extractive_answer(
        "Who is the owner of the payments runbook?", ctx, get_embedder().embed if embed else None
    )
    assert ans.quotes[0].text == "Owner: Dana Reyes"
    assert all("Sam" not in q.text for q in ans.quotes)


@pytest.mark.parametrize(
    ("question", "text", "answer"),
    [
        ("Who owns the billing service?",
         "The billing service sends the monthly invoices.\nOwner: Dana Reyes\nRuns: nightly at 02:00",
         "Owner: Dana Reyes"),
        ("Who is the owner of the billing service?",
         "The billing service sends the monthly invoices. The payments team owns the billing service.",
         "The payments team owns the billing service."),
        ("Who holds the copyright of patch?",
         "Patch was written by Larry Wall.\nCopyright holder: Free Software Foundation",
         "Copyright holder: Free Software Foundation"),
    ],
)  # fmt: skip
def test_a_who_question_matches_the_agent_noun_and_the_verb(question, text, answer):
    # Snowball leaves "owner" and "holder" whole while "owns" and "holds" lose their -s: the question's verb
    # covered nothing of "Owner: Dana Reyes", and the line was not quoted first
    ans = _answer(question, text, ["Billing service"] if "billing" in question else None, embed=False)
    assert ans.quotes[0].text == answer


# A small company handbook: the office's gift rules, parking and the salary FAQ. Questions the handbook does not
# answer share its words ("office" and "Officer" are one stem, offic; "parking" and "Munich"), and the embedding
# places its sentences near them; quoting those lines answered with something else instead of refusing.
HANDBOOK = [
    (
        "Gifts and hospitality",
        "Gifts offered to an Officer of the company must be declared to the Compliance Office within five days. "
        "Gifts worth more than 50 euros are returned with a letter of thanks.",
    ),
    (
        "Munich office",
        "The Munich office is on Leopoldstrasse, a short walk from the Giselastrasse underground station. "
        "Parking is available in the public garage next door, and bicycles can be parked in the courtyard.",
    ),
    (
        "Salary FAQ",
        "Q: When is salary paid?\nA: Salary is paid on the 25th of each month, or on the working day before it.",
    ),
]


def _handbook(question: str):
    passages = [
        Passage(i, i, "Employee handbook", text, [heading], None, 0, len(text))
        for i, (heading, text) in enumerate(HANDBOOK, 1)
    ]
    ctx = assemble_context(passages, "q", lambda s: len(s.split()), 500)
    return extractive_answer(question, ctx, get_embedder().embed)


@pytest.mark.parametrize(
    "question",
    [
        "What is the dress code for the office?",  # only offic is shared, with "Officer" and "Office"
        "How many parking spaces are in the Munich office?",  # parking and Munich, but no number of spaces
    ],
)
def test_a_question_the_documents_do_not_answer_is_refused(question):
    ans = _handbook(question)
    assert (ans.text, ans.quotes) == ("", [])


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Do I have to declare gifts offered to an officer?", "Gifts offered to an Officer"),
        ("Where can I park at the Munich office?", "Parking is available in the public garage"),
        ("How much is a gift allowed to be worth?", "Gifts worth more than 50 euros"),
    ],
)
def test_a_question_the_documents_answer_with_the_same_words_is_answered(question, answer):
    assert _handbook(question).quotes[0].text.startswith(answer)


def test_a_faq_answer_is_quoted_not_its_question_line():
    ans = _handbook("When is salary paid?")
    assert ans.quotes[0].text.startswith("A: Salary is paid on the 25th")
    assert all("?" not in q.text for q in ans.quotes)


# A product's manual names the product in every passage: "Quillfeed" and "run" are common there, the platform or
# the feature a question asks about is what it turns on. A sentence holding only a question's common words
# answered it ("Does Quillfeed run on Windows?": 2 of its 3 terms; "... sync subscriptions to the cloud?": the
# embedding found the export sentence near it).
MANUAL = [
    ("Installation", "Quillfeed runs on Linux and macOS. Install Quillfeed with the package manager of your "
                     "system, or download a release archive."),
    ("Configuration", "Quillfeed reads its settings from ~/.config/quillfeed/config.toml. Run quillfeed --check "
                      "to validate the file."),
    ("Feeds", "Quillfeed fetches every feed once an hour. Add a feed with quillfeed add URL."),
    ("Exporting", "Quillfeed exports your subscriptions as OPML with quillfeed export."),
    ("Troubleshooting", "If Quillfeed cannot reach a feed, it retries three times and then marks the feed as "
                        "stale."),
]  # fmt: skip


def _manual(question: str, weigh: bool = True):
    passages = [
        Passage(i, i, "Quillfeed manual", text, [heading], None, 0, len(text))
        for i, (heading, text) in enumerate(MANUAL, 1)
    ]
    # the collection's statistics as the BM25 sidecars keep them: chunks holding each term, of all chunks
    df = Counter(t for p in passages for t in set(tokenize(lexical_text(p.title, p.heading_path, p.text))))

    def weights(terms):
        return {t: float(idf(df[t], len(passages))) for t in terms}

    ctx = assemble_context(passages, "q", lambda s: len(s.split()), 500)
    return extractive_answer(question, ctx, get_embedder().embed, idf=weights if weigh else None)


@pytest.mark.parametrize(
    "question", ["Does Quillfeed run on Windows?", "Does Quillfeed sync subscriptions to the cloud?"]
)
def test_a_sentence_holding_only_the_questions_common_words_answers_nothing(question):
    assert _manual(question, weigh=False).quotes  # without the collection's statistics it was quoted
    ans = _manual(question)
    assert (ans.text, ans.quotes) == ("", [])


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Does Quillfeed run on macOS?", "Quillfeed runs on Linux and macOS."),
        ("How often does Quillfeed fetch a feed?", "Quillfeed fetches every feed once an hour."),
        ("How do I validate the config file?", "Run quillfeed --check to validate the file."),
    ],
)
def test_a_sentence_holding_the_questions_rare_words_still_answers(question, answer):
    assert _manual(question).quotes[0].text == answer


# The same manual in a company's documentation of 200 chunks, 20 of them the manual's: "Quillfeed" is rare there,
# and every sentence of the manual holds it. It made the share of sentences that name the product but not what is
# asked of it ("Quillfeed runs on Linux and macOS." for "Does Quillfeed run on Windows?": 2 of 3 terms, 40% of the
# weight).
COMPANY_DF = {"quillfe": 20, "read": 30, "file": 60, "feed": 25, "remov": 12, "run": 40}


def _company_manual(question: str):
    passages = [
        Passage(i, 1, "Quillfeed manual", text, [heading], None, 0, len(text))
        for i, (heading, text) in enumerate(MANUAL, 1)
    ]

    def weights(terms):
        return {t: float(idf(COMPANY_DF.get(t, 0), 200)) for t in terms}

    ctx = assemble_context(passages, "q", lambda s: len(s.split()), 500)
    return extractive_answer(question, ctx, get_embedder().embed, idf=weights)


@pytest.mark.parametrize(
    "question",
    [
        "Does Quillfeed run on Windows?",  # the subject of a yes/no question counts for nothing
        "Can Quillfeed read YAML files?",
        "How do I remove an expired feed from Quillfeed?",  # "Quillfeed manual": the title's term counts less
    ],
)
def test_a_sentence_naming_only_the_subject_and_a_common_word_answers_nothing(question):
    ans = _company_manual(question)
    assert (ans.text, ans.quotes) == ("", [])


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Does Quillfeed run on macOS?", "Quillfeed runs on Linux and macOS."),
        ("Can Quillfeed export OPML?", "Quillfeed exports your subscriptions as OPML with quillfeed export."),
        ("How often does Quillfeed fetch a feed?", "Quillfeed fetches every feed once an hour."),
        ("Where does Quillfeed read its settings from?", "Quillfeed reads its settings from"),
    ],
)
def test_what_the_sentence_says_of_the_subject_still_answers(question, answer):
    assert _company_manual(question).quotes[0].text.startswith(answer)


# A Chinese handbook's collection: 员工 and 公司 are in nearly every chunk (the collection's commonest words), as in
# the real handbooks, where an off-topic question ("员工可以住公司宿舍吗？") was answered with any sentence holding them.
ZH_HANDBOOK = [
    ("考勤", "公司实行弹性工作制，员工上午九点到十点之间到公司即可。员工迟到一次，发十元钉钉红包。"),
    ("福利", "公司为员工提供每月一天带薪假，员工可以在钉钉上申请。"),
    ("入职", "试岗周期为5个工作日，部门安排工作，当日总结和讨论。"),
    ("报销", "员工出差住宿每晚不超过250元，公司凭发票报销。"),
    ("离职", "正式员工辞职，须提前1个月通知公司。"),
    ("保密", "员工不得向公司以外的人透露薪资。"),
]


def _zh_collection(question: str, title: str, rows, read: int | None = None, weigh: bool = True):
    """The extractive answer over a Chinese collection of (heading, text) rows: the answerer reads the first
    `read` of them (what retrieval returned; all by default), the IDF counts them all. The default, English-only
    model is not trusted on a Chinese question (app.answer passes embed_trust 0)."""
    passages = [
        Passage(i, i, title, text, [heading], None, 0, len(text)) for i, (heading, text) in enumerate(rows, 1)
    ]
    df = Counter(t for p in passages for t in set(tokenize(lexical_text(p.title, p.heading_path, p.text))))

    def weights(terms):
        return {t: float(idf(df[t], len(passages))) for t in terms}

    ctx = assemble_context(passages[:read], "q", lambda s: len(s), 5000)
    return extractive_answer(question, ctx, None, embed_trust=0.0, idf=weights if weigh else None)


def _zh_handbook(question: str, weigh: bool = True):
    return _zh_collection(question, "员工手册", ZH_HANDBOOK, weigh=weigh)


@pytest.mark.parametrize("question", ["员工可以住公司宿舍吗？", "公司提供子女教育补贴吗？"])
def test_an_off_topic_chinese_question_sharing_only_common_words_is_declined(question):
    assert _zh_handbook(question, weigh=False).quotes  # without the collection's statistics it was quoted
    ans = _zh_handbook(question)
    assert (ans.text, ans.quotes) == ("", [])


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        # 多久 and 几天 are in no chunk, so they would weigh most: the words of the question's form weigh nothing
        ("试岗一般要试多久？", "试岗周期为5个工作日，部门安排工作，当日总结和讨论。"),
        ("公司每个月给几天带薪假？", "公司为员工提供每月一天带薪假，员工可以在钉钉上申请。"),
        ("迟到了要发多少钱的红包？", "员工迟到一次，发十元钉钉红包。"),
    ],
)
def test_a_chinese_question_holding_rare_words_of_a_sentence_is_still_answered(question, answer):
    assert _zh_handbook(question).quotes[0].text == answer


# jieba cuts a question and its answer in other words differently: the question's 站 / 会 are the page's 站会, its
# 借 / 的 / 钱 the page's 借款; a word of the question inside a word of the sentence covers it (half as much)
ZH_RULES = [
    ("开发流程", "每天10点准时站会，每人说说昨天做了什么。"),
    ("开发流程", "每周五下午发布新版本。"),
    ("财务制度", "员工向公司借款，一月内还清。"),
    ("财务制度", "报销的钱由部门经理签字以后交给财务。"),
    ("考勤", "每天上午十点以前到公司打卡。"),
    ("考勤", "员工住宿由行政统一安排出差酒店。"),
]


def _zh_rules(question: str):
    return _zh_collection(question, "员工手册", ZH_RULES)


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("每天的站会几点开始？", "每天10点准时站会，每人说说昨天做了什么。"),
        ("向公司借的钱多久要还？", "员工向公司借款，一月内还清。"),
    ],
)
def test_a_chinese_question_word_inside_a_longer_word_of_the_sentence_is_covered(question, answer):
    assert _zh_rules(question).quotes[0].text == answer


def test_a_chinese_word_sharing_only_a_character_with_the_sentence_does_not_answer():
    # 住 is inside 住宿, 公司 and 员工 are everywhere: 宿舍, in no chunk, is what the question asks about
    assert _zh_rules("员工可以住公司宿舍吗？").quotes == []


# A style guide's collection: 文档, 一个, 最多, 写, 公司 are in most of its chunks, 段落 in several. The answerer reads
# three of them (what retrieval returned); the IDF counts them all
ZH_STYLE_READ = [
    ("段落", "一个段落的长度不能超过七行。"),
    ("考勤", "员工每天上午十点以前到公司打卡。"),
    ("福利", "公司为员工提供每月一天带薪假。"),
]
ZH_STYLE = (
    ZH_STYLE_READ
    + [("目录", f"第{i}章：文档里一个小节最多写{i}页，公司发给员工。") for i in range(1, 31)]
    + [("段落", f"段落{i}的格式见附录。") for i in range(1, 6)]
)


def _zh_style(question: str):
    return _zh_collection(question, "写作规范", ZH_STYLE, read=len(ZH_STYLE_READ))


def test_a_compound_jieba_glued_from_common_characters_weighs_as_they_do():
    # jieba's HMM glues 最多能 (no dictionary word), which no chunk holds: at the IDF of an unseen term it outweighed 段落
    assert not in_dictionary("最多能")
    assert _zh_style("文档里一个段落最多能写几行？").quotes[0].text == "一个段落的长度不能超过七行。"


def test_a_glued_compound_with_a_character_no_chunk_holds_still_weighs_most():
    # 发工牌 is glued too, but 牌 is in no chunk: weighed as its commonest character (发), 公司 would answer it
    assert not in_dictionary("发工牌")
    assert _zh_style("公司发工牌吗？").quotes == []


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        (
            "Welche Groesse darf eine Datei haben?",
            "Eine Datei darf höchstens die Größe von zehn Megabyte haben.",
        ),
        ("Wann ist das Büro geschlossen?", "Das Buero ist montags und an Feiertagen geschlossen."),
    ],
)
def test_a_german_word_spelled_otherwise_than_the_page_covers_its_term(question, answer):
    # "Groesse" is the page's "Größe" and "Büro" its "Buero": without that, the sentence before, which holds as
    # many of the question's other words, or the canteen's closing day, came first
    text = (
        "Eine Datei darf man nur dann umbenennen, wenn man sie zum Schreiben haben will.\n\n"
        "Eine Datei darf höchstens die Größe von zehn Megabyte haben.\n\n"
        "Das Buero ist montags und an Feiertagen geschlossen.\n\n"
        "Die Kantine ist wann immer das Haus geschlossen ist ebenfalls geschlossen."
    )
    assert _answer(question, text, embed=False).quotes[0].text == answer
