"""Extractive answers (no generator loaded): quote the sentences that best answer the question, cited.

Each sentence of the context's passages is scored
    score = SEMANTIC_WEIGHT * cos(question, sentence) + (1 - SEMANTIC_WEIGHT) * coverage
where cos is the similarity of the question to the sentence as its passage frames it, the document's title
and the headings of its section before it ("xz > OPTIONS > -0 ... -9: The default is -6."; a manual's
sentence leans on them: alone, "The default value is 10 if no argument is given." is about nothing), and
coverage is the share of the question's terms (retrieval.lexical.tokenize: stemmed English, jieba
words for Chinese; an identifier of the question is one term, one of a sentence also gives it the words it
joins, pkgProblemResolver -> problem, resolver) that the sentence or the headings of its section contain
(a Chinese word also, for half, inside a longer word of theirs: 借 in 借款, 站 and 会 in 站会, never across two
words)
(and, for a "Label: value" field line, "Author: ...", "Owner: Dana", the document's title, under a section
heading too: the line is the record of the document the question may name, "the payments runbook"; for a
sentence that starts with a pronoun, "It has been released ...", the title only in a passage without section
headings: under a heading, "This can cause a performance penalty" speaks of its section, "--line-buffered",
not of grep); a verb of authorship is covered by the noun ("wrote" by "Author": ``_RELATED``), and in a
question that asks who (``retrieval.lexical.asks_who``) a verb by its agent noun and the other way round
("owns" by "Owner", "the owner" by "owns": ``retrieval.lexical.agent_forms``). For a "What is X?" question a
sentence that defines X ("X is a ...") scores DEFINITION more, for a "How do I ...?" question a sentence that
says what to do ("To do that, run ...", "Use ...", "You can ...") INSTRUCTION more, and for a question about a
default one that states a default ("The default is -6.", "(default: 3)", "... defaults to /tmp.") DEFAULT
more, for a question about an amount ("How many ...?", "What percentage ...?", "多少/几天/多久 ...？") one with a
figure (digits, a number word, a Chinese numeral before what it counts: "不超过二十元") QUANTITY
more, and for one about what the asker is given ("How many vacation days do I get?") one that grants
something ("37signals offers 20 days ...", "You can receive 15 ... days") ENTITLEMENT more. Without an
embedding function, coverage alone decides. The
similarity is believed as far as the embedding model is trusted on the question's language (``embed_trust``:
the default model, English-only, places Chinese sentences almost at random); for the rest of its share it is
the share of the question's pairs of adjacent Chinese characters that the sentence holds. A
sentence ending in a colon or a dangling word is taken with the sentence after it ("... should be sent to:"
+ the address); a field that ends a list item ("maxKeys <number> The most keys to parse. Default: 1000.")
with its line, never alone; a sentence that refers back ("These are held ...", "To do that, run ...", "If
none of them is set, it ...", "Otherwise, ...", "If it is not set, ...") is also a candidate together with the
sentence before it, scoring CONTINUATION more (the two are one statement). The best
`max_sentences` distinct, non-overlapping sentences are quoted, best first, each with its source number and
its character offsets in the chunk text and in the document (chunk.char_start + offset), so the UI can
highlight it. A sentence that only repeats a heading of its passage (or the document's title; a numbered
heading also without its number), or a short line without punctuation, figures or code marks (a heading
the parser could not see; "--with-intl=full-icu (default)" is code, not one), answers nothing and is not
quoted; nor is one scoring under RELATIVE of the best, or under MIN_SCORE before the bonuses for the
answer's form (those rank relevant sentences, they make none relevant), nor one that holds under MIN_COVERAGE
of the question's terms unless the embedding is sure of it (SURE_SIMILARITY), nor, either way, one whose terms
make under MIN_WEIGHTED_COVERAGE (SURE_WEIGHTED_COVERAGE) of the question's terms weighed by their IDF in the
collection (``idf``: "Quillfeed runs on Linux and macOS." holds the common two of "Does Quillfeed run on
Windows?"; also with the terms of the sentence's document title weighing TITLE_WEIGHT and a yes/no question's
subject nothing: a sentence names what its document is about whatever it says; for a Chinese question, whose
character pairs stand in for the untrusted embedding, under ZH_MIN_WEIGHTED_COVERAGE of its jieba terms' weight,
the words of an amount question's form, 多少钱, 多久, 几天, weighing nothing: "员工可以住公司宿舍吗？" is not
answered by a sentence holding the collection's commonest words 员工 and 公司), nor, for a question about an
amount, one without a figure, nor a question ("Q: When is salary paid?" before its answer line): when no sentence
is left, nothing in the sources answers the question, nothing is quoted, and the answer says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from retrieval.context import Context, Source
from retrieval.lexical import agent_forms, asks_who, in_dictionary, spelled_otherwise, tokenize
from retrieval.sentences import CONTENTS_ENTRY, SECTION_NUMBER, ends_dangling, split_sentences

SEMANTIC_WEIGHT = 0.6
MAX_EMBEDDED = 64  # sentences embedded per question (the best by coverage); bounds the cost
MIN_CHARS = 6  # a short Chinese sentence is a few characters
MAX_CHARS = 600
# NOTE: calibrated with the default embedding model (all-MiniLM-L6-v2) on an HR/IT handbook of PDF, Word,
# Excel, PowerPoint, HTML and Chinese Markdown files (2026-12-02): sentences that answered the question scored
# 0.56-0.90; the best sentence for questions the documents do not cover ("What is the capital of France?",
# "How do I bake sourdough bread?", a policy no file has) 0.06-0.15, and the third-best quotes of answerable
# questions, which were off topic, 20-35% of the best, while related second sentences scored 54-78% of it.
MIN_SCORE = 0.2
RELATIVE = 0.5
# NOTE: the embedding places a sentence of the same domain near any question of it ("Gifts offered to an
# Officer must be declared." near "What is the dress code for the office?"), so a score over MIN_SCORE quoted
# unrelated lines of a collection that does not answer the question. A sentence answers only if it (with its
# section's headings) holds MIN_COVERAGE of the question's terms, or the embedding is sure of it on its own
# (cosine >= SURE_SIMILARITY: "DO NOT turn off your computer" for "Should I shut down my computer if I think
# it's been hacked?"); and, for a question about an amount, only with a figure ("How many parking spaces
# ...?": a sentence about parking without a number does not say how many). Chosen on the tuning sets (Debian
# dev and fresh, nodejs-html, pip-valgrind, man-pages, handbook-dev: 149 answerable, 24 unanswerable questions,
# 2026-12-07): coverage alone refused 7 of the 24 at 0.4 and lost 5 answers (an employee's paraphrase holds
# few of the page's words); with the similarity 13 at 0.6, losing one third quote. The coverage floor is
# scaled by embed_trust: a Chinese question's jieba words are few of its answer's (zh-dev lost 2 first quotes
# and 5 any at 0.4, nothing at 0.25 or less).
MIN_COVERAGE = 0.6
SURE_SIMILARITY = 0.45
# NOTE: a sentence that shares only a question's common words passed both: "How to use and configure APT to acquire
# additional files" (apt, use, configure: 3 of 5 terms) for "How do I configure apt to use an HTTP proxy?", "mawk's
# built-in regular expression engine does not yet support brace expressions" (cosine 0.59) for "Does mawk support
# UTF-8 input?". Weighted by the collection's IDF (the BM25 statistics; a term no chunk holds weighs most), the
# question's terms a sentence holds must also make MIN_WEIGHTED_COVERAGE of the question's weight, or
# SURE_WEIGHTED_COVERAGE where the embedding is sure of it. Chosen on the tuning sets (dev, fresh, nodejs-html,
# pip-valgrind, man-pages, handbook-dev; 2026-12-07): refused 18 of their 24 unanswerable questions (13 before) for
# one first quote ("DO NOT turn off your computer" for "Should I shut down my computer if I think it's been
# hacked?": no word of the question but "computer", cosine 0.63) and no other any quote; the weighted floor in
# place of MIN_COVERAGE (0.45-0.6) refused 16-18 and lost as many or up to 2 more, a sure-floor of 0.25 refused 15,
# one of 0.35 lost 2 more first quotes. Scaled by embed_trust, like the coverage floor; without an embedding, or
# without the statistics (``idf`` None), not applied.
MIN_WEIGHTED_COVERAGE = 0.35
SURE_WEIGHTED_COVERAGE = 0.3
# NOTE: a sentence holds the name of what its document is about by being in it ("If you want to learn to use jq,
# read the documentation at ..." in jq's README holds jq and read: 47% of "Can jq read YAML files?"'s weight),
# and names the subject of a yes/no question whenever it speaks of it ("Valgrind runs fine on Intel processors."
# for "Does valgrind run on Windows?"): that tells where an answer would be, not that this sentence gives it.
# So the weighted floors also hold with the question's terms that the sentence's document title holds weighing
# TITLE_WEIGHT of their IDF, and the subject of a yes/no question ("Can jq ...?", "Does the company ...?")
# nothing: what the sentence says of the subject must make the share. Chosen on the tuning sets (dev, fresh,
# nodejs-html, pip-valgrind, man-pages, handbook-dev; 2026-12-07, cached retrievals): refused 21 of their 24
# unanswerable questions (18 before) for no first or any quote lost (one any quote gained); a title weight of 0-0.3
# refused 21 too but lost a first quote ("How much severance would I get after three years?" in "Severance
# Packages"), 0.45-0.5 refused 20; the title rule alone 20, the subject rule alone 19. Held out (not looked at
# until then): 10 of 18 refused (8 before) for 2 first and 2 any quotes, paraphrases near the floor ("Files of
# less than about one hundred bytes tend to get larger" for "Why do tiny files get bigger when compressed with
# bzip2?"). Not kept: a proximity rule (the covered terms within a few words of each other) would refuse none of
# the tuning sets' quoted ones, whose covered terms stand 1-4 words apart; ranking by the weighted coverage lost 3
# first quotes.
TITLE_WEIGHT = 0.4
# NOTE: a Chinese question has no embedding to trust (the default model is English-only: ``embed_trust`` 0), so the
# floors above, scaled by it, were off, and an off-topic question got any sentence sharing a word with it: "员工可以住
# 公司宿舍吗？" quoted one holding 员工, 可以, 公司, the collection's commonest words, while an answer holds rarer ones
# (宿舍 is in no chunk). For the share of the similarity the character pairs stand for (1 - embed_trust), a sentence
# must also hold ZH_MIN_WEIGHTED_COVERAGE of the question's jieba terms weighed by their IDF (the same weights, the
# words of an amount question's form, 多少钱, 多久, 几天, weighing nothing), with no title rule: a Chinese handbook's
# titles name topics (标点符号, 工时约定), which a question naming them asks about. Chosen on zh-dev (30 answerable)
# and zh-offtopic (30) over the three Chinese handbooks (2026-12-07, cached retrievals): 25 of 30 off-topic
# questions declined (15 before) for no first or any quote lost at 0.28-0.31; 0.24-0.27 declined 23-24, 0.32-0.36
# lost a third quote (全角顿号), 0.4 three; with the title rule (0.4) 23-26 at 0.26-0.34, each losing that third
# quote; without the form words' zero weight, 0.3 lost 2 first and 4 any quotes ("试岗一般要试多久？": 多久 is in no
# chunk). A mixed question's floors are the two floors in proportion (an English question's, trust 1, unchanged).
ZH_MIN_WEIGHTED_COVERAGE = 0.3
# NOTE: a Chinese word of the question that a sentence holds only inside a longer word (借 in 借款, 站 and 会 in 站会:
# jieba cut the question and the page differently) counts for ZH_INSIDE_CREDIT of a word it holds, in the coverage
# and in the weighted floors: it may be the same word in other words or another word sharing a character (the
# question's 住 in a travel rule's 住宿 for "员工可以住公司宿舍吗？"). Chosen on zh-dev and zh-offtopic (2026-12-07,
# with the characters of Chinese words in the BM25 index): 1.0 answered 18 first and 23 any of 30, declined 25 of
# 30; 0.5-0.75 the same and declined 26; 0-0.25 lost the 站会 answer (17 / 22, 26).
ZH_INSIDE_CREDIT = 0.5
# NOTE: a question word that no chunk holds weighs most (the IDF of an unseen term): right for a subject the
# collection lacks (宿舍, 台风), wrong for a compound that jieba's HMM glues from characters its dictionary has no
# word for (能写 of "一个段落最多能写几行？", 好出 of "密码没保管好出了事", 最多能): an accident of the cut, not a term.
# Such a compound that no chunk holds weighs as its rarest character (one that no chunk holds weighs most, a
# stopword nothing), and a sentence holding its characters covers it for ZH_INSIDE_CREDIT of the share of its
# characters it holds. Chosen on zh-dev, zh-offtopic and the seen zh-blind2, zh-blind3 (2026-12-07, cached
# retrievals): 3 refused questions answered (blind2 14 -> 16, blind3 5 -> 6 first quotes), every off-topic decline
# kept; at its characters' least IDF the same, without the characters' cover 2 answered, weighing nothing 3 and
# one wrong quote. Not for a dictionary word that no chunk holds: it may be the question's word for the page's (借钱
# / 借款, 赔钱 / 赔偿) but as often a missing subject of common characters (台风, 上海, 年货, 光合作用); weighed by
# its characters' least, most, mean or summed IDF it declined 15, 8, 12 or 4 fewer of the 62 off-topic questions
# (48 declined), weighing nothing 25 fewer.
# the words of a Chinese amount question's form (多少钱, 多久, 多长时间, 几天, 几点, 几号; not 几乎, 几个)
_ZH_AMOUNT_FORM = re.compile(r"多少钱?|多久|多长(时间)?|多大|多远|多贵|几(?![乎个])[\u4e00-\u9fff]")


# a yes/no question and its subject: "Can jq read YAML files?", "Does the company pay for ...?" ("Can I ...?": none)
_YES_NO = re.compile(
    r"\s*(can|could|does|do|did|is|are|was|were|will|would|should|may|must|has|have)\s+"
    r"((the|a|an|my|our|your|this|these|its|their)\s+)?(?P<subject>[^\s?,]+)",
    re.I,
)


def _subject_terms(question: str) -> set[str]:
    """The terms of a yes/no question's subject ("Does valgrind run on Windows?" -> {valgrind}), else none."""
    m = _YES_NO.match(question)
    return set(tokenize(m.group("subject"), parts=False, characters=False)) if m else set()


def _weighted_coverage(
    covered: Collection[str],
    terms: Collection[str],
    weights: Mapping[str, float],
    inside: Collection[str] = (),
    shares: Mapping[str, float] | None = None,
) -> float:
    """The share of the question's terms' weight (``weights``: IDF; a term missing from it weighs as the
    rarest) that the covered terms make, those covered only inside a longer word (``inside``) for
    ZH_INSIDE_CREDIT of theirs, and uncovered ones by ``shares`` of their characters for ZH_INSIDE_CREDIT of
    that share; 1.0 when they weigh nothing (nothing to tell)."""
    top = max(weights.values())
    total = sum(weights.get(t, top) for t in terms)
    held = sum(weights.get(t, top) for t in covered) - (1 - ZH_INSIDE_CREDIT) * sum(
        weights.get(t, top) for t in inside
    )
    if shares:
        held += ZH_INSIDE_CREDIT * sum(weights.get(t, top) * f for t, f in shares.items() if t not in covered)
    return held / total if total > 0 else 1.0


# a term that no analyzer emits (``tokenize`` never yields whitespace): its IDF is that of a term no chunk holds
_NO_TERM = " "


def _glued_weights(
    weights: Mapping[str, float],
    parts: Mapping[str, Sequence[str]],
    idf: Callable[[Collection[str]], Mapping[str, float]],
) -> tuple[dict[str, float], set[str]]:
    """The weights with each compound jieba glued (``parts``: its characters, stopwords left out) that no chunk
    holds weighing as its rarest character (nothing without one), and those compounds."""
    chars = dict(idf({_NO_TERM, *(c for cs in parts.values() for c in cs)}))
    unseen = chars.pop(_NO_TERM, None)
    glued = {t for t in parts if unseen is not None and weights.get(t, unseen) >= unseen}
    out = dict(weights)
    for t in glued:
        out[t] = max((chars.get(c, unseen) for c in parts[t]), default=0.0)
    return out, glued


# Same sentence boundaries as ingest.chunking: . ! ? before whitespace, 。！？ (closing quotes stay), line breaks
# (not those inside a hard-wrapped paragraph).
def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


# punctuation, or a figure that is no part of a word ("asn1", "utf8", "x86" are names, as a title may hold them)
_SENTENCE_MARKS = re.compile(r"[.!?。！？:：;；,，]|(?<![^\W_])\d")


_CODE_MARKS = re.compile(r"[=_$@<>{}\[\]|\\/`]|--")


def _label_line(text: str) -> bool:
    """A short line without punctuation or figures ("Parental leave", "住宿标准"; a digit inside a word is no
    figure: "asn1 delete structure", an API manual's function title): a heading the parser did not mark as
    one (a PDF without bookmarks, a bold line), not a sentence that answers anything. A line of
    code, an option or a path ("--with-intl=full-icu (default)", "/etc/skel") is no heading."""
    return (
        len(text) <= 40
        and len(text.split()) <= 4
        and not _SENTENCE_MARKS.search(text)
        and not _CODE_MARKS.search(text)
    )


def _is_label(text: str, labels: set[str]) -> bool:
    """A heading of the passage (``labels``: normalized), a line that looks like one, or an entry of a table of
    contents or an index ("asn1_get_length_der . . . . 17"): no answer."""
    return _norm(text) in labels or _label_line(text) or bool(CONTENTS_ENTRY.search(text))


def _asks(sent: str) -> bool:
    """A question ("Q: When is salary paid?", a FAQ's line before its answer "A: On the 25th ..."): it holds
    the asker's words, so it covers them best, but it answers nothing."""
    return sent.rstrip().endswith(("?", "？"))


def _announces(sent: str) -> bool:
    """A sentence that ends in a colon or in a word no sentence ends in ("Send bug reports to")."""
    return sent.endswith((":", "：")) or ends_dangling(sent)


# "What is Valgrind?" asks for a definition: "Valgrind is a framework for ..." (DEFINITION added to its score;
# not "Valgrind is licensed under ...")
_WHAT_IS = re.compile(
    r"\s*(what|who)\s+(is|are|was|were)\s+(an?\s+|the\s+)?(?P<x>[^?]{1,40}?)\s*\??\s*$", re.I
)
DEFINITION = 0.2


def _defines(question: str) -> re.Pattern | None:
    """For a "What is X?" question (X of at most four words), a pattern of the sentences that define X."""
    m = _WHAT_IS.match(question)
    if not m or len(m.group("x").split()) > 4:
        return None
    return re.compile(r"\W*" + re.escape(m.group("x")) + r"\W*\s+(is|are|was|were)\s+(a|an|the|one)\s", re.I)


# "How do I enable Corepack?" asks for something to do: a sentence that tells one ("To do that, run corepack
# enable.", "Use configure --disable-largefile to ...", "You can ...") scores INSTRUCTION more than one that
# only restates the question ("Corepack needs to be explicitly enabled to have any effect.")
_HOW_TO = re.compile(r"\s*how\s+(do|can|should|could|would|may|might|to)\b", re.I)
_DO_VERBS = (
    "run type call use set add pass install enable disable start stop create edit open remove delete select "
    "click press put copy move specify check make build configure write send define include import choose "
    "change replace invoke execute launch download apply append export unset upgrade update consider try see "
    "read"
).split()
_INSTRUCTION = re.compile(
    r"([-*•+]\s+|\d{1,2}[.)]\s+)?"  # a list item's marker
    r"((to|if|when|once|then|first|next|finally|alternatively|otherwise|instead)\b[^.;:!?]{0,80},\s*)?"
    r"(please\s+)?(" + "|".join(_DO_VERBS) + r")\b"  # "To do that, run ...", "Use ..."
    r"|.*\byou\s+(can|could|should|must|may|need\s+to|have\s+to)\b",  # "You can use ..."
    re.I,
)
INSTRUCTION = 0.1


# "What is the default compression preset?", "Which level does zstd use by default?" ask for a default: a
# sentence that states one ("The default is -6.", "(default: 3)", "It defaults to /tmp.", "This is the default
# behavior.", "Source files are preserved by default.") scores DEFAULT more than one that only names a default
# ("... replaces the default compression level with ...")
_ASKS_DEFAULT = re.compile(r"\bdefault(s|ed)?\b", re.I)
_STATES_DEFAULT = re.compile(
    r"\bdefault(\s+[\w-]+){0,5}\s*(:|=|\bis\b|\bare\b|\bwas\b|\bvalues?\b)"  # "The default (value) is", "Default: 10"
    r"|\bdefaults\s+to\b|\bdefaulting\s+to\b"  # "it defaults to /tmp"
    r"|[(\[]default\b|\bdefault\s*[)\]]"  # "(default: 3)", "--with-intl=full-icu (default)"
    r"|\b(is|are|was|as)\s+(the\s+)?default\b"  # "This is the default behavior.", "-6 is the default"
    r"|\bby\s+default\b",  # "Source files are preserved by default."
    re.I,
)
DEFAULT = 0.15


# "How many vacation days do I get?", "What percentage of profits is shared?" ask for an amount: a sentence
# that states one ("37signals offers 20 days of vacation ...", "... shares 10% of its annual company profits")
# scores QUANTITY more than one that only speaks of the thing ("Year to year, profits ... may swing wildly")
_ASKS_AMOUNT = re.compile(
    r"\s*(how\s+(many|much|long|often|far|soon|quickly|big|large)"
    r"|what(\s+is|'s)?\s+(the\s+)?(percentage|percent|share|amount|number|maximum|minimum|limit|cap|rate)"
    r"|(what|which)\s+percentage)\b"
    # Chinese, anywhere in the question: 多少 (how many/much), 多久/多长 (how long), 多大/多远/多贵, 几 before
    # what it counts (几天, 几点, 几号; not 几乎 "almost", nor 几个 "several")
    r"|.*(多少|多久|多长|多大|多远|多贵|几(?![乎个]))",
    re.I,
)
_NUMBER_WORDS = (
    "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty "
    "hundred thousand half once twice"
).split()
# a figure: a digit that is no part of a Latin word ("asn1", "x86" are names; after Chinese, "午休1.5小时", it
# is a figure), a number word, or a Chinese numeral before what it counts (十元, 两天, 五个工作日, 八小时)
_STATES_AMOUNT = re.compile(
    r"(?<![^\W_\u3400-\u4dbf\u4e00-\u9fff])\d|\b(" + "|".join(_NUMBER_WORDS) + r")\b"
    r"|[一二两三四五六七八九十百千万半]+\s*(个|天|日|周|月|年|小时|分钟|点|次|元|块|人|倍|成|岁|页|字)",
    re.I,
)
QUANTITY = 0.1


# "How many vacation days do I get?", "How much sick leave do I earn?" ask what one is given: a sentence that
# says so ("37signals offers 20 days of vacation ...", "You can receive 15 Military Leave days each year")
# scores ENTITLEMENT more than one that speaks of the same days otherwise ("You can carry over a maximum of
# 15 days into the next fiscal year.")
_ASKS_ENTITLEMENT = re.compile(
    r".*\b(do|does|will|would|can|could|should)\s+(i|we|you|employees?|staff|my\s+\w+)\s+"
    r"(get|receive|earn|accrue|have(?!\s+to\b)|take)\b",  # not "Do I have to come back ...?"
    re.I,
)
_STATES_ENTITLEMENT = re.compile(
    r"\b(you|employees|staff|everyone)\s+(can|may|will)\s+(also\s+)?(get|receive|earn|accrue|take|be\s+paid)\b"
    r"|\b(you|employees|staff|everyone)\s+(get|receive|earn|accrue)\b"  # not "if you take time off ..."
    r"|\b(is|are)\s+entitled\b|\b(offers?|provides?|grants?|gives?)\b",
    re.I,
)
ENTITLEMENT = 0.1


_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


# runs of Chinese characters, Japanese kanji and kana, Korean hangul: the text whose pairs stand in for the
# embedding (an English-only model is not trusted on any of them: ``retrieval.lexical.cjk_share``)
_PAIR_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3041-\u30ff\u31f0-\u31ff\uac00-\ud7af]+")


def _cjk_pairs(text: str) -> set[str]:
    """The pairs of adjacent Chinese characters of a text ("带薪假" -> 带薪, 薪假), the unit of Chinese
    retrieval that needs no dictionary: 会费 is found in 会员费's neighbourhood no better than by a word, but 年假
    is one pair whether or not the word list knows it. Japanese and Korean text the same way (パスワード ->
    パス, スワ, ...; 회의실은 -> 회의, 의실, 실은), as their BM25 terms are cut."""
    return {run[i : i + 2] for run in _PAIR_RUN.findall(text) for i in range(len(run) - 1)}


def _cjk_overlap(pairs: set[str], sentence: str) -> float:
    """The share of a question's character pairs (``_cjk_pairs``) that a sentence holds."""
    return len(pairs & _cjk_pairs(sentence)) / len(pairs) if pairs else 0.0


def _tells_what_to_do(text: str) -> bool:
    """Whether a sentence of the quote (one, or one with the sentence it refers back to) is an instruction."""
    return any(_INSTRUCTION.match(text, s) for s, _ in split_sentences(text))


_PRONOUN_START = re.compile(r"(it|its|this|they|these|he|she)\b", re.IGNORECASE)
# a sentence that speaks of what the one before it said: a pronoun subject, at the start or after a short
# opening phrase ("It ...", "On POSIX, it uses ...", "If none of them is set, it defaults to /tmp."), a
# demonstrative subject ("These are held ...", "This is useful ..."; not "This version of patch ..."), an
# opening phrase that ends in one ("To do that, run ...", "In such cases, ...", "To avoid that happening,
# call ..."), or "instead" ("To instead run until ...")
_REFERS_BACK = re.compile(
    r"([^,.;:!?]{1,40},\s+)?(it|they|he|she)\s"
    r"|(this|these|those|that)\s+(is|are|was|were|has|have|had|can|could|will|would|may|might|must|should"
    r"|does|do|did|means|allows|makes|lets|ensures|causes|requires)\b"
    r"|(\S+\s+){0,3}(this|these|those|that|such)(\s\w+)?,"
    r"|(\S+\s+){0,2}instead\b"
    r"|(otherwise|however)\b"  # "Otherwise, matching is case sensitive." (after "If the pattern is ...")
    r"|(if|when|once|unless|while|because|since)\s+(it|they|this|these|so|not)\b",  # "If it is set, ..."
    re.IGNORECASE,
)
# NOTE: such a sentence and the one it refers to are one statement: the question may ask what either says
# ("What happens to incomplete multibyte characters written to a StringDecoder?": "... an internal buffer is used
# to ensure that the decoded string does not contain any incomplete multibyte characters. These are held in the
# buffer until the next call to stringDecoder.write()"), and the first alone, which holds the question's words,
# outscored the two together (0.716 to 0.710), whose longer text the embedding places a little farther from the
# question. With an embedding, the two together score CONTINUATION more, like the answer's form bonuses (it ranks,
# it makes nothing relevant). Chosen on the tuning sets (dev, fresh, nodejs-html, pip-valgrind, man-pages, handbook-dev; cached
# retrievals, 2026-12-07): first quotes 112 / 114 / 115 / 116 / 115 / 112 of 149 at 0 / 0.015 / 0.02 / 0.025 /
# 0.03 / 0.04, any quote 131 -> 134, no unanswerable question quoted.
CONTINUATION = 0.025
# a "Label: value" line ("Author: Philip A. Nelson", "License: GPL-2"): a field of the document's own record
_FIELD_LINE = re.compile(r"[^\W\d][\w .-]{0,30}:\s+\S")
# a field that ends an item of a reference list ("maxKeys <number> The most keys to parse. Default: 1000.")
_ITEM_FIELD = re.compile(r"[A-Z][a-z]+( [a-z]+)?:\s+\S")
ITEM_CHARS = 300  # an item (a parameter's line), not a paragraph
# a question's verb of making answered by a field's noun: "Who wrote bc?" by "Author: ..." (stemmed terms)
_RELATED = {
    "wrote": {"author"}, "write": {"author"}, "written": {"author"}, "writer": {"author"},
    "creat": {"author", "creator"}, "author": {"writer", "creator"},
}  # fmt: skip


def _frame(title: str | None, heading_path: Sequence[str]) -> str:
    """What a sentence of the passage is about: the document's title and its section's headings, "tar - an
    archiving utility > OPTIONS > Compression options > -z, --gzip" (a heading that repeats the one above it,
    or the title, once)."""
    parts: list[str] = []
    for h in [title or "", *heading_path]:
        h = " ".join(h.split())
        if h and (not parts or _norm(h) != _norm(parts[-1])):
            parts.append(h)
    return " > ".join(parts)


@dataclass
class Quote:
    n: int  # source number, as in the answer's [n]
    chunk_id: int
    document_id: int
    text: str
    start: int  # offsets of text in the chunk's text
    end: int
    doc_start: int  # offsets in the document's text
    doc_end: int
    score: float


@dataclass
class ExtractiveAnswer:
    text: str  # quotes with [n] markers, one per line; "" when nothing relevant was found
    quotes: list[Quote]


# a table row as the parsers write it: "Header: value; Header: value; ..."
_TABLE_ROW = re.compile(r"[^\n:;]{1,80}: [^\n;]+(?:; [^\n:;]{1,80}: [^\n;]+)+")


# a field line of a record ("Owner: Dana Reyes"): a short value, no sentence in it
_FIELD_ROW = re.compile(r"[^\W\d][\w .-]{0,30}: (?:(?![.!?] )[^\n;]){1,60}")


def _row_labels(sent: str) -> set[str] | None:
    """The column names of a table row ("City: London; Hotel cap: £220" -> {"City", "Hotel cap"}), or the name
    of a record's field line ("Owner: Dana Reyes" -> {"Owner"}), else None."""
    sent = sent.strip()
    if not (_TABLE_ROW.fullmatch(sent) or _FIELD_ROW.fullmatch(sent)):
        return None
    return {cell.split(": ", 1)[0] for cell in sent.split("; ")}


class _Candidate(NamedTuple):
    """A sentence the answer may quote: where it stands, its text (``framed``: under its title and headings, as
    the embedding sees it), its coverage of the question's terms and which (``covered``; ``inside``: Chinese
    words of the question it holds only inside longer words), whether it is quoted with the sentence it
    refers back to, and the share of each glued compound's characters it holds (``shares``)."""

    source: Source
    start: int
    end: int
    text: str
    coverage: float
    framed: str
    covered: frozenset[str]
    refers_back: bool
    inside: frozenset[str]
    shares: dict[str, float]


def _other_row(cand: _Candidate, best: _Candidate) -> bool:
    """Whether ``cand`` is another row of the table of row ``best`` holding fewer of the question's words, and
    none that ``best`` lacks: a row that matches the column names every row shares ("hotel cap per night") but
    not the value the question picks ("New York") answers nothing. So is the same field of another record
    ("Owner: Sam Ito" of the search runbook, when the question names the payments runbook's owner)."""
    a, b = _row_labels(cand.text), _row_labels(best.text)
    if a is None or b is None or not (a <= b or b <= a):
        return False
    return cand.covered < best.covered


# NOTE: a follow-up names little of what it asks about ("And how many of them carry over?": "many", "carry"), so
# the sentence that answers it held half of its terms and was refused, though retrieval found it with the earlier
# question's words. Those words (``support``) count as covered terms more, in the share of covered terms, where a
# sentence holds them and all of the question's own but the words of its form ("how many"): they help a sentence
# that answers the question, never make one about the earlier topic, or one holding a part of the question
# ("environment" of "What about an environment variable?" in "the virtual environment"), an answer; the IDF
# floors still weigh the question's own terms only (an off-topic follow-up, "And what about parental leave?", is
# declined as the question alone would be).
# A leading "And", "Also", "So" ... does not hide the question's form from the rules below.
_CONTINUES = re.compile(r"^\s*(and|also|so|but|or|then|plus)\b[\s,]*", re.I)


def extractive_answer(
    question: str,
    context: Context | Sequence[Source],
    embed: Callable[[list[str]], np.ndarray] | None = None,
    max_sentences: int = 3,
    embed_trust: float = 1.0,
    idf: Callable[[Collection[str]], Mapping[str, float]] | None = None,
    support: str = "",
) -> ExtractiveAnswer:
    """Quote the best sentences of the sources; embed(texts) -> (n, dim) L2-normalized, or None.

    embed_trust (0..1, ``Embedder.trust`` of the question): how far the embedding similarity is to be
    believed; the rest of the similarity's share is the overlap of Chinese character pairs (``_cjk_overlap``):
    an English-only model places Chinese sentences almost at random, and at 0 it is not asked at all.
    idf(terms) -> {term: IDF in the collection} (``retrieval.lexical.idf`` of the BM25 document frequencies),
    or None: how rare each of the question's terms is, so that a sentence holding only its common words
    ("use", "file", "policy") answers nothing (``_weighted_coverage``).
    support: the words a follow-up leans on (what ``retrieval.context.standalone_query`` carries of the earlier
    questions, "days paid leave" for "And how many of them carry over?"): a sentence that holds all of the
    question's own terms (but an amount question's "how many") counts those it also holds as covered ones more
    (NOTE above); never required."""
    if not 0.0 <= embed_trust <= 1.0:
        raise ValueError(f"embed_trust must be within [0, 1], got {embed_trust}")
    embed = embed if embed_trust > 0 else None
    sources = context.sources if isinstance(context, Context) else list(context)
    # a sentence's identifiers cover the question's words ("problem resolver": pkgProblemResolver), but an
    # identifier of the question counts once, whole (libtasn1 is not three terms of "does libtasn1 need X?")
    q_terms = set(tokenize(question, parts=False, characters=False))
    lent = set(tokenize(support, parts=False, characters=False)) - q_terms
    asked = _CONTINUES.sub("", question, count=1)  # its form: "And how many ...?" asks an amount
    amount = _ASKS_AMOUNT.match(asked)  # its form's words ("how many", 多少) are not what it asks about
    form_words = (
        {m.group() for m in _ZH_AMOUNT_FORM.finditer(asked)} | {amount.group(1) or ""} if amount else set()
    )
    needed = q_terms - {t for w in form_words for t in tokenize(w, characters=False)}
    who = asks_who(asked)  # "Who owns X?" is answered by "Owner: ..." (``agent_forms``)
    # a German word the question spells otherwise than the page ("Groesse" / "Größe") is covered by the page's
    spelled = spelled_otherwise(question)
    # NOTE: jieba cuts a question and its answer in other words differently ("找公司借的钱" is 借 / 的 / 钱, the
    # page's "向公司借款" holds 借款; a question's 站 / 会 are the page's 站会): a Chinese word of the question is
    # also covered, for ZH_INSIDE_CREDIT, by a longer word of the sentence that holds it (never by characters across
    # two words: 法国 is no part of "违法国家"). Its IDF counts those words too (the BM25 index holds the characters
    # of each Chinese word)
    q_zh = {t for t in q_terms if _CJK_RUN.fullmatch(t)}
    # the compounds of the question that jieba's HMM glued (no dictionary word) and their characters, stopwords
    # left out (``_glued_weights``)
    glued_parts = {
        t: [c for c in t if tokenize(c, characters=False)]
        for t in q_zh
        if len(t) > 1 and not in_dictionary(t)
    }
    cands: list[_Candidate] = []
    seen: set[str] = set()
    for src in sources:
        text = src.passage.text
        # a chunk's text starts with its heading line: a heading alone answers nothing
        # (a numbered heading "2.10. Storing types" splits at "2.10." into a number and "Storing types")
        labels = {
            _norm(x)
            for h in [*src.passage.heading_path, src.passage.title or ""]
            for x in (h, SECTION_NUMBER.sub("", h))
        }
        # a sentence speaks of what its section's headings name ("can be run with `make test`" under "Unit
        # tests" answers how to run the unit tests): their terms count as its own
        heading_terms = {t for h in src.passage.heading_path for t in tokenize(h, characters=False)}
        title_terms = set(tokenize(src.passage.title or "", characters=False))
        frame = _frame(src.passage.title, src.passage.heading_path)
        spans = split_sentences(text)
        for j, (s, e) in enumerate(spans):
            # a sentence that announces what follows ("Bug reports should be sent to:", "... etc. to" and
            # the address on a line of its own) is quoted with it
            if _announces(text[s:e]) and j + 1 < len(spans) and spans[j + 1][1] - s <= MAX_CHARS:
                e = spans[j + 1][1]
            sent = text[s:e]
            line_start = text.rfind("\n", 0, s) + 1
            while text[line_start] in " \t":
                line_start += 1
            if _ITEM_FIELD.match(sent) and line_start < s and e - line_start <= ITEM_CHARS:
                # a field after a sentence on its line is that item's ("encoding <string> The encoding to
                # use. Default: 'utf8'."): quoted with the line, never alone
                s, sent = line_start, text[line_start:e]
            spellings = [(s, sent)]
            prev = text[slice(*spans[j - 1])] if j else ""
            if _REFERS_BACK.match(sent) and len(prev) >= MIN_CHARS and not _is_label(prev, labels):
                # also with the sentence it refers to: "Due to its experimental status, Corepack needs to
                # be enabled. To do that, run corepack enable."
                if e - spans[j - 1][0] <= MAX_CHARS:
                    spellings.append((spans[j - 1][0], text[spans[j - 1][0] : e]))
            for s, sent in spellings:
                key = _norm(sent)
                if not MIN_CHARS <= len(sent) <= MAX_CHARS or _is_label(sent, labels) or _asks(sent):
                    continue
                if key in seen:  # overlapping chunks repeat sentences: quote one copy
                    continue
                seen.add(key)
                terms = set(tokenize(sent, characters=False)) | heading_terms
                # a field line is the document's record, under a section heading too ("Owner: Dana" under
                # "Contacts" of the payments runbook); a pronoun speaks of its section where there is one
                if _FIELD_LINE.match(text, spellings[0][0]) or (
                    not heading_terms and _PRONOUN_START.match(text, spellings[0][0])
                ):
                    terms |= title_terms
                covered = frozenset(
                    t
                    for t in q_terms
                    if t in terms
                    or not terms.isdisjoint(_RELATED.get(t, ()))
                    or not terms.isdisjoint(spelled.get(t, ()))
                    or (who and not terms.isdisjoint(agent_forms(t)))
                )
                zh_words = [w for w in terms if len(w) > 1 and _CJK_RUN.fullmatch(w)] if q_zh else ()
                inside = frozenset(
                    t for t in q_zh - covered if any(t in w for w in zh_words if len(w) > len(t))
                )
                covered |= inside
                chars = {c for w in terms if _CJK_RUN.fullmatch(w) for c in w}
                shares = {
                    t: sum(c in chars for c in cs) / len(cs)
                    for t, cs in glued_parts.items()
                    if cs and t not in covered
                }
                held = len(covered) - (1 - ZH_INSIDE_CREDIT) * len(inside)
                # what the earlier words lend (NOTE above)
                lends = len(lent & terms) if covered >= needed else 0
                coverage = (held + lends) / (len(q_terms) + lends) if q_terms else 0.0
                framed = f"{frame}: {sent}" if frame else sent
                cands.append(
                    _Candidate(
                        src, s, e, sent, coverage, framed, covered, s != spellings[0][0], inside, shares
                    )
                )
    if not cands:
        return ExtractiveAnswer("", [])
    # Highest coverage first (ties: document order) so the embedding budget goes to likely answers.
    cands.sort(key=lambda c: -c.coverage)
    cands = cands[:MAX_EMBEDDED] if embed is not None else cands
    scores = np.array([c.coverage for c in cands], dtype=np.float32)
    cos = np.zeros(len(cands), dtype=np.float32)  # the embedding's similarity, where asked
    if embed is not None or embed_trust < 1:
        sim = np.zeros(len(cands), dtype=np.float32)
        if embed is not None:
            vecs = embed([question] + [c.framed for c in cands])  # (1 + n, dim)
            cos = vecs[1:] @ vecs[0]
            sim += embed_trust * cos
        if embed_trust < 1:
            pairs = _cjk_pairs(question)
            sim += (1 - embed_trust) * np.array(
                [_cjk_overlap(pairs, c.text) for c in cands], dtype=np.float32
            )
        scores = SEMANTIC_WEIGHT * sim + (1 - SEMANTIC_WEIGHT) * scores
    # the bonuses below rank the answers' forms among relevant sentences; they make no sentence relevant (a
    # "By default, ..." sentence is no answer to "What is the default number of vacation days?")
    relevance = scores
    if (defines := _defines(asked)) is not None:
        scores = scores + np.array(
            [DEFINITION if defines.match(c.text) else 0.0 for c in cands], dtype=np.float32
        )
    if _HOW_TO.match(asked):
        scores = scores + np.array(
            [INSTRUCTION if _tells_what_to_do(c.text) else 0.0 for c in cands], dtype=np.float32
        )
    if _ASKS_DEFAULT.search(asked):
        scores = scores + np.array(
            [DEFAULT if _STATES_DEFAULT.search(c.text) else 0.0 for c in cands], dtype=np.float32
        )
    if _ASKS_AMOUNT.match(asked):
        scores = scores + np.array(
            [QUANTITY if _STATES_AMOUNT.search(c.text) else 0.0 for c in cands], dtype=np.float32
        )
    if _ASKS_ENTITLEMENT.match(asked):
        scores = scores + np.array(
            [ENTITLEMENT if _STATES_ENTITLEMENT.search(c.text) else 0.0 for c in cands], dtype=np.float32
        )
    if embed is not None:  # the words of the two together are those of either: coverage needs no help
        scores = scores + np.array([CONTINUATION if c.refers_back else 0.0 for c in cands], dtype=np.float32)
    # a sentence answers only where it holds enough of the question's terms or the embedding is sure of it, and
    # with a figure where one is asked; the floor checks the embedding, as far as it is trusted (a Chinese
    # paraphrase shares few of its jieba words with the answer): without one, coverage alone ranks, as before
    floor_cov = MIN_COVERAGE * embed_trust if embed is not None else 0.0
    holds = np.array([c.coverage >= floor_cov for c in cands])
    sure = cos >= SURE_SIMILARITY
    # the weights where a floor applies: with an embedding, or for a Chinese question (its pairs stand in for it)
    weighed = idf is not None and (embed is not None or embed_trust < 1) and q_terms
    weights = dict(idf(q_terms)) if weighed else {}
    glued: set[str] = set()
    if weights and glued_parts:
        weights, glued = _glued_weights(weights, glued_parts, idf)
    if weights and (amount := _ASKS_AMOUNT.match(asked)):
        # "How many", "What percentage", 多少, 多久, 几天: the question's form, which the figure rule below checks;
        # its words name nothing (a small collection holds no "many" and would weigh it most)
        form = set(tokenize(amount.group(1), characters=False)) if amount.group(1) else set()
        form |= {t for m in _ZH_AMOUNT_FORM.finditer(asked) for t in tokenize(m.group(), characters=False)}
        weights = {t: 0.0 if t in form else w for t, w in weights.items()}
    if weights:  # and either way, enough of the question's rare terms, of what it asks about the subject too
        subject, top = _subject_terms(asked), max(weights.values())
        title_weight = TITLE_WEIGHT * embed_trust + (1 - embed_trust)  # no title rule for a Chinese question
        titles: dict[int, set[str]] = {}

        def says(c: _Candidate) -> float:
            title = titles.setdefault(
                c.source.passage.document_id, set(tokenize(c.source.passage.title or "", characters=False))
            )
            own = {
                t: weights.get(t, top) * (0.0 if t in subject else title_weight if t in title else 1.0)
                for t in q_terms
            }
            shares = {t: f for t, f in c.shares.items() if t in glued}
            return min(
                _weighted_coverage(c.covered, q_terms, weights, c.inside, shares),
                _weighted_coverage(c.covered, q_terms, own, c.inside, shares),
            )

        rare = np.array([says(c) for c in cands], dtype=np.float32)
        zh_floor = ZH_MIN_WEIGHTED_COVERAGE * (1 - embed_trust)  # as far as the embedding is not trusted
        holds &= rare >= MIN_WEIGHTED_COVERAGE * embed_trust + zh_floor
        sure &= rare >= SURE_WEIGHTED_COVERAGE * embed_trust + zh_floor
    answers = holds | sure
    if _ASKS_AMOUNT.match(asked):
        answers &= np.array([bool(_STATES_AMOUNT.search(c.text)) for c in cands])
    relevance = np.where(answers, relevance, -1.0)
    scores = np.where(answers, scores, -1.0)  # nor does it set the floor RELATIVE of the best
    order = sorted(range(len(cands)), key=lambda i: (-float(scores[i]), i))
    floor = RELATIVE * float(scores[order[0]])
    quotes: list[Quote] = []
    rows = [
        i for i in order if scores[i] >= floor and relevance[i] >= MIN_SCORE and _row_labels(cands[i].text)
    ]
    other_rows = {i for i in rows if any(_other_row(cands[i], cands[k]) for k in rows)}
    for i in order:
        src, s, e, sent, *_ = cands[i]
        if scores[i] < floor or len(quotes) == max_sentences:
            break
        if relevance[i] < MIN_SCORE:
            continue
        if any(q.chunk_id == src.passage.chunk_id and q.start < e and s < q.end for q in quotes):
            continue  # the line after a colon, quoted with it already (or the other way round)
        if i in other_rows:  # another row of a table whose row the question names
            continue
        p = src.passage
        quotes.append(
            Quote(
                src.n,
                p.chunk_id,
                p.document_id,
                sent,
                s,
                e,
                p.char_start + s,
                p.char_start + e,
                float(scores[i]),
            )
        )
    # a sentence wrapped over lines (``split_sentences``) is quoted on one
    text = "\n".join(f"“{' '.join(q.text.split())}” [{q.n}]" for q in quotes)
    return ExtractiveAnswer(text, quotes)
