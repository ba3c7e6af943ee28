"""Extractive answers to a follow-up question: the words it leans on (what the search carried of the earlier
questions) help the sentence that answers it, never one that answers nothing of it, and its leading "And ..."
hides not what it asks."""

from __future__ import annotations

from retrieval.context import Passage, assemble_context
from retrieval.embeddings import get_embedder
from retrieval.extractive import extractive_answer


def _answer(question: str, text: str, support: str = "", embed: bool = False):
    ctx = assemble_context(
        [Passage(7, 2, "Contacts", text, [], None, 0, len(text))], "q", lambda s: len(s.split()), 500
    )
    return extractive_answer(question, ctx, get_embedder().embed if embed else None, support=support)


def test_the_words_a_follow_up_leans_on_count_where_a_sentence_holds_its_own():
    # "And how many of them carry over?" after a question on days of paid leave: the sentence that answers holds
    # "carry" of its terms ("many" is the question's form, "them" a stopword), half: under the coverage floor
    text = "Employees receive twenty-eight days of paid leave per year. Unused leave of up to five days carries over."
    question = "And how many of them carry over?"
    got = _answer(question, text, support=f"{question} days paid leave employees", embed=True)
    assert [q.text for q in got.quotes] == ["Unused leave of up to five days carries over."]
    assert _answer(question, text, embed=True).quotes == []


def test_the_earlier_words_make_no_sentence_an_answer_by_themselves():
    # a sentence that holds only the earlier question's words ("patch") holds none of this one's
    text = "GNU patch applies diff files to original files. Send bug reports for patch to bug-patch@gnu.org."
    got = _answer(
        "Which license is it under?", text, support="Which license is it under? GNU patch", embed=True
    )
    assert got.quotes == []


def test_and_how_many_asks_an_amount():
    # "And how many ...?" asks for a figure as "How many ...?" does: the sentence without one answers nothing
    text = "Unused leave carries over into the next year. Up to five days of leave carry over."
    got = _answer("And how many of them carry over?", text, support="days paid leave")
    assert [q.text for q in got.quotes] == ["Up to five days of leave carry over."]
