"""Sentence boundaries in hard-wrapped plain text (retrieval.sentences) and the extractive rules that read
them: a wrapped line may start with any character, a sentence ending in a dangling word announces the next,
a "What is X?" question prefers the sentence that defines X, "Who wrote X?" the "Author:" field."""

from __future__ import annotations

import pytest

from retrieval.context import Passage, assemble_context
from retrieval.embeddings import get_embedder
from retrieval.extractive import extractive_answer
from retrieval.sentences import split_sentences


def sentences(text: str) -> list[str]:
    return [" ".join(text[s:e].split()) for s, e in split_sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a long line without a stop wraps on to the next, whatever that one starts with (python3's README.venv)
        ("If you need to install a Python application (or version) that isn't packaged in\n"
         "Debian, we recommend that you install it with pipx. It will set up an environment.",
         ["If you need to install a Python application (or version) that isn't packaged in Debian, we recommend "
          "that you install it with pipx.", "It will set up an environment."]),
        # so does a short one ending in a word no sentence ends in (ca-certificates' README.Debian)
        ("The CA certificates contained in this package are installed into\n/usr/share/ca-certificates/.\nNext.",
         ["The CA certificates contained in this package are installed into /usr/share/ca-certificates/.",
          "Next."]),
        ("Please send bug reports for this version of patch to\n<bug-patch@gnu.org>.",
         ["Please send bug reports for this version of patch to <bug-patch@gnu.org>."]),
        # indented prose wraps at the same indentation (mawk's README)
        ("\t\tShow \"compiling foo.c\" rather than the full compiler and\n\t\toptions.  Those are clutter.",
         ["Show \"compiling foo.c\" rather than the full compiler and options.", "Those are clutter."]),
    ],
)  # fmt: skip
def test_a_hard_wrapped_line_carries_on_whatever_the_next_line_starts_with(text, expected):
    assert sentences(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # a list after a long line, a heading's underline, a table, a code block, capitals, a stop: all stay
        "We require several tools to build the software, including the following ones\n* Make\n* Automake",
        "Installing Python Packages in Debian with the package manager of the system\n"
        "====================================",
        "Name of the package that was installed on the machine last week   Version\nLibfoo   1.2",
        "To build the library with the default options of the project, run the command\n    ./configure",
        "The following chapters describe the installation of the product in detail\nCHAPTER TWO",
        "This line is long enough to be wrapped but it ends with a full stop here.\nDebian is next.",
    ],
)
def test_lists_underlines_tables_code_and_stops_keep_their_line_breaks(text):
    assert sentences(text) == [" ".join(line.split()) for line in text.split("\n")]


def _answer(question: str, text: str, title: str = "README"):
    ctx = assemble_context(
        [Passage(7, 2, title, text, [], None, 0, len(text))], "q", lambda s: len(s.split()), 500
    )
    return extractive_answer(question, ctx, get_embedder().embed)


def test_a_sentence_ending_in_a_dangling_word_is_quoted_with_the_next():
    # mawk's README: the address comes after a blank line, on a line of its own
    text = (
        "mawk -- an implementation of new/posix awk\n\n"
        "Send bug reports, comments, questions, etc. to \n\n"
        "\tThomas E. Dickey <dickey@example.net>\n"
        "\thttps://example.net/mawk/\n\n"
        "The program builds on several POSIX-style platforms."
    )
    ans = _answer("Who should bug reports for mawk be sent to?", text, "mawk README")
    assert ans.quotes[0].text.startswith("Send bug reports")
    assert "Thomas E. Dickey" in ans.quotes[0].text


def test_what_is_prefers_the_sentence_that_defines_the_subject():
    text = (
        "If you are developing Valgrind, please read README_DEVELOPERS. "
        "Valgrind is licensed under the GNU General Public License, version 2. "
        "Valgrind is a framework for building dynamic analysis tools. "
        "Valgrind is closely tied to details of the CPU and operating system."
    )
    ans = _answer("What is Valgrind?", text, "Valgrind README")
    assert ans.quotes[0].text == "Valgrind is a framework for building dynamic analysis tools."


def test_who_wrote_finds_the_author_field():
    # a README's record block: "Who wrote bc?" is answered by "Author: ...", whose words are neither the
    # question's verb nor the program's name (the field is about the document's subject: its title)
    text = (
        "bc is an arbitrary precision numeric processing language.\n\n"
        "Program: GNU bc\nAuthor: Philip A. Nelson\nE-mail: phil@example.org\nOS: UNIX (BSD, System V)\n"
        "Copying: GNU GPL version 2\n\n"
        "The bc program has been written to run on many systems and was tested by many people."
    )
    assert _answer("Who wrote bc?", text, "bc README").quotes[0].text == "Author: Philip A. Nelson"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Steps:\n1. Install it.\n  2. Run it. Then stop.", ["Steps:", "1. Install it.", "2. Run it.", "Then stop."]),
        ("2.10. Storing the MIME type\nA type is stored.", ["2.10. Storing the MIME type", "A type is stored."]),
        # a number ending a line, or one inside a line, ends its sentence as before
        ("The total came to 42.\nNext.", ["The total came to 42.", "Next."]),
        ("It was 2024. The year ended.", ["It was 2024.", "The year ended."]),
    ],
)  # fmt: skip
def test_a_list_number_at_the_start_of_a_line_stays_with_its_item(text, expected):
    # "1. Install it." was split into "1." and "Install it.": the quote of a step lost its number
    assert sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "the last `.` (period) character" in an HTML page: a period after a space is the character itself
        ("It returns the text after the last . (period) character. Then stop.",
         ["It returns the text after the last . (period) character.", "Then stop."]),
        ("If there is no . In the name, it is empty.", ["If there is no . In the name, it is empty."]),
        ("It ended here. Then stop.", ["It ended here.", "Then stop."]),
    ],
)  # fmt: skip
def test_a_period_after_a_space_ends_no_sentence(text, expected):
    # the quote was "...from the last occurrence of the ." and the rest of its answer a sentence of its own
    assert [text[s:e] for s, e in split_sentences(text)] == expected


def test_an_api_manuals_signature_parameters_and_function_titles_are_sentences_of_their_own():
    # a PDF manual's function reference (Texinfo: libtasn1): the title in lower case after the last entry's
    # stop, the signature, then one "name: description" line per parameter
    text = ("Returns: ASN1_SUCCESS if successful, ASN1_ELEMENT_NOT_FOUND if * structure was NULL.\n"
            "asn1 delete element\n"
            "[Function]int asn1_delete_element (asn1 node structure, const char * element_name)\n"
            "structure: pointer to the structure that contains the element you want to delete.\n"
            "element name: element's name you want to delete\n"
            "flags: additional flags\n"
            "Deletes the element named element_name inside structure.")  # fmt: skip
    assert sentences(text) == text.split("\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a word and a colon that open a wrapped line of prose are no definition list
        ("The library was written to be small and to be fast, and it supports two\nmodes: fast and safe.",
         ["The library was written to be small and to be fast, and it supports two modes: fast and safe."]),
        # an abbreviation's period before a short line in lower case ends no sentence
        ("For the parts you build yourself, see the manual, e.g.\nthe install chapter\nof it.",
         ["For the parts you build yourself, see the manual, e.g. the install chapter of it."]),
        # nor does a period before a line that goes on as a sentence ("etc.\nare kept.")
        ("Files, directories, links, sockets, etc.\nare kept as they were.",
         ["Files, directories, links, sockets, etc. are kept as they were."]),
    ],
)  # fmt: skip
def test_prose_wrapped_before_a_colon_or_after_an_abbreviation_stays_one_sentence(text, expected):
    assert sentences(text) == expected


def test_a_function_title_with_a_digit_in_its_name_is_not_quoted_as_an_answer():
    # the title line "asn1 delete structure" holds every word of the question, but says nothing; the
    # sentence under it answers ("Version 2" stays quotable: a figure of its own)
    text = ("asn1 delete structure\n"
            "Deletes the structure * structure . At the end, * structure is set to NULL.\n"
            "Returns: ASN1_SUCCESS if successful.")  # fmt: skip
    ans = _answer("What does asn1 delete structure do?", text, "Libtasn1")
    assert [q.text for q in ans.quotes][:1] == [
        "Deletes the structure * structure . At the end, * structure is set to NULL."
    ]


def test_an_index_entry_is_neither_joined_to_the_next_nor_quoted():
    text = ("asn1_get_length_ber. . . . . . . . . . . . . . . . . . 18\n"
            "asn1_get_length_der. . . . . . . . . . . . . . . . . . 17\n"
            "asn1_get_length_der returns the decoded length value, or -1 on indefinite length.")  # fmt: skip
    assert sentences(text) == text.split("\n")
    ans = _answer("What does asn1_get_length_der return?", text, "Libtasn1")
    assert [q.text for q in ans.quotes] == [
        "asn1_get_length_der returns the decoded length value, or -1 on indefinite length."
    ]


def test_japanese_sentences_end_at_full_width_and_half_width_periods():
    # 。！？ as in Chinese; the full-width ． of technical Japanese after kana or kanji, never after a digit
    assert sentences("これはペンです．あれは本です．それは何ですか？") == [
        "これはペンです．",
        "あれは本です．",
        "それは何ですか？",
    ]
    assert sentences("半角の句点｡次の文｡") == ["半角の句点｡", "次の文｡"]
    assert sentences("価格は３．５万円です。1．概要") == ["価格は３．５万円です。", "1．概要"]
    assert sentences("회의실은 3층에 있습니다. 회의는 10시에 시작합니다.") == [
        "회의실은 3층에 있습니다.",
        "회의는 10시에 시작합니다.",
    ]
