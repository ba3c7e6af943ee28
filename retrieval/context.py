"""Prompt context: numbered passages packed into a token budget, citations, follow-up rewriting.

Layout (stable, so requests that retrieve overlapping passages share a prompt prefix the engine's radix
cache can reuse):

    system:  <system prompt>

             Sources:
             [1] <title> › <heading> › <heading> (p. 3)
             <passage text>

             [2] <deck title> › <slide title> (slide 4)

             [2] ...
    user:    <question>

Which passages: greedily by retrieval rank while they fit the budget (a passage that does not fit is
skipped, later smaller ones may still fit). Their order in the prompt, and so their numbers: by
(document_id, char_start), i.e. document order, never by score. Two requests that pick the same passages
get byte-identical prompts whatever the score jitter, and passages of one document appear in reading
order. The system prompt comes first and never changes, so it is always a shared prefix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from retrieval.lexical import _CJK, tokenize

TokenCounter = Callable[[str], int]
HEADING_SEP = " › "
SOURCES_HEADER = "Sources:"
DEFAULT_SYSTEM_PROMPT = (
    "You answer questions from the numbered sources below. Use only what they say. After each claim, cite "
    "the sources it comes from with their numbers in square brackets, e.g. [1] or [2][3]. If the sources do "
    "not contain the answer, say that you do not know. Unless told otherwise, answer in the language of the "
    "question, even when the sources are in another language."
)


@dataclass
class Passage:
    """A retrieved chunk with what the prompt and a citation need."""

    chunk_id: int
    document_id: int
    title: str
    text: str
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None
    char_start: int = 0
    char_end: int = 0
    page_kind: str | None = None  # what page counts: "slide" for a presentation's; "page" or None: a page


@dataclass
class Source:
    """Passage number n in the prompt, and where its text lives (for the API and the UI's highlight)."""

    n: int
    passage: Passage


@dataclass
class Context:
    system: str  # system prompt + sources block: the message the engine sees first
    sources: list[Source]
    tokens: int  # system + question, by the caller's counter
    dropped: list[int] = field(default_factory=list)  # chunk ids that did not fit

    def source(self, n: int) -> Source | None:
        return self.sources[n - 1] if 1 <= n <= len(self.sources) else None

    def messages(self, question: str, history: Sequence[dict] = ()) -> list[dict]:
        """Chat messages: system (prompt + sources), earlier turns, then the question."""
        return [{"role": "system", "content": self.system}, *history, {"role": "user", "content": question}]


def locator(page: int | None, page_kind: str | None = None) -> str | None:
    """Where a passage is, as a citation names it: "slide 4" for a presentation's slide, "p. 3" for a page (and for
    a passage stored before its kind was recorded); None without a page number."""
    if page is None:
        return None
    return f"slide {page}" if page_kind == "slide" else f"p. {page}"


def passage_header(n: int, p: Passage) -> str:
    head = HEADING_SEP.join([p.title, *[h for h in p.heading_path if h and h != p.title]])
    where = locator(p.page, p.page_kind)
    return f"[{n}] {head}" + (f" ({where})" if where else "")


def _block(n: int, p: Passage) -> str:
    return f"{passage_header(n, p)}\n{p.text.strip()}"


def assemble_context(
    passages: Sequence[Passage],
    question: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> Context:
    """Pack `passages` (best first) into max_tokens (the model's context minus the answer budget)."""
    fixed = count_tokens(f"{system_prompt}\n\n{SOURCES_HEADER}\n") + count_tokens(question)
    if fixed > max_tokens:
        raise ValueError(
            f"system prompt and question take {fixed} tokens, more than the budget of {max_tokens}"
        )
    used, chosen, dropped, seen = fixed, [], [], set()
    for p in passages:
        if p.chunk_id in seen:
            continue
        seen.add(p.chunk_id)
        # Numbers have at most a few digits; count the block with a placeholder of the widest one.
        cost = count_tokens(_block(len(passages), p) + "\n\n")
        if used + cost <= max_tokens:
            chosen.append(p)
            used += cost
        else:
            dropped.append(p.chunk_id)
    chosen.sort(key=lambda p: (p.document_id, p.char_start, p.chunk_id))
    sources = [Source(i, p) for i, p in enumerate(chosen, start=1)]
    body = "\n\n".join(_block(s.n, s.passage) for s in sources)
    system = f"{system_prompt}\n\n{SOURCES_HEADER}\n{body}" if sources else system_prompt
    return Context(system=system, sources=sources, tokens=used, dropped=dropped)


# --- citations ------------------------------------------------------------------------------------
# A citation marker as models write it. The prompt asks for [1] / [2][3]; GLM-4, above all in Chinese, also
# writes 【1】 ［1］ 【1,2】 [1、2] [1，3] [^1] [Source 1] [来源1] 【来源：1】 [文档1], ranges [1-3] [1~3] [1至3],
# and its digits full-width in Chinese text (【１】 ［２］ 【１，２】 【１－３】); models tuned on OpenAI's tools
# write 【4†source】 and 【4†L1-L5】 (what follows the dagger names a title or lines, not another source).
# Any opening bracket with any closing one; a list of numbers or ranges, each optionally labelled. Parentheses
# never cite ("(1)" is a list item), and code spans and fenced code blocks are skipped ("a[1]" indexes).
# NOTE: web/citations.js holds the same pattern for the ask page; change both together.
_SP = r"[ \t\u3000]*"
_DIGIT = r"[0-9０-９]"
_WORDS = r"sources?|docs?|documents?|refs?|来源|出处|文档|资料|参考资料|参考文献|参考"
_LABEL = rf"(?:\^|(?:{_WORDS}){_SP}[:：#]?)"
_ITEM = rf"(?:{_LABEL}{_SP})?{_DIGIT}{{1,6}}(?:{_SP}[-–—－~～至到]{_SP}{_DIGIT}{{1,6}})?"
_DAGGER = r"†[^\[\]【】［］\n]{0,200}"  # OpenAI's 【4†source】: the rest of the marker, outside the numbers
_CITATION = re.compile(
    r"^[ \t]*(`{3,}|~{3,})[\s\S]*?(?:^[ \t]*\1|(?![\s\S]))"  # a fenced code block (unclosed: to the end)
    r"|(`+)(?!`)[^\n]*?[^`\n]\2(?!`)"  # a code span, within a line (a quote's stray ` hides no other line)
    rf"|[\[【［]{_SP}({_ITEM}(?:{_SP}[,，、;；]{_SP}{_ITEM})*)(?:{_SP}{_DAGGER})?{_SP}[\]】］]",
    re.MULTILINE | re.IGNORECASE,
)
# int() reads full-width digits as well
_NUMBERS = re.compile(rf"({_DIGIT}+)(?:{_SP}[-–—－~～至到]{_SP}({_DIGIT}+))?")


@dataclass(frozen=True)
class Citation:
    """A marker in an answer: text[start:end] cites `numbers` (ranges expanded, in the order written)."""

    start: int
    end: int
    numbers: tuple[int, ...]


def citations(text: str, n_sources: int) -> list[Citation]:
    """The citation markers of `text` whose every number names one of sources 1..n_sources; any other
    ("[2024]", "[0]", "[1-1000]", a descending "[3-1]") is ordinary text."""
    out = []
    for m in _CITATION.finditer(text):
        if m.group(3) is None:  # code
            continue
        numbers: list[int] = []
        for lo, hi in _NUMBERS.findall(m.group(3)):
            first, last = int(lo), int(hi or lo)
            if not 1 <= first <= last <= n_sources:
                break
            numbers += range(first, last + 1)
        else:
            out.append(Citation(m.start(), m.end(), tuple(numbers)))
    return out


def cited_numbers(text: str, n_sources: int) -> list[int]:
    """Source numbers (1..n_sources) cited in `text`, in order of first appearance."""
    return list(dict.fromkeys(n for c in citations(text, n_sources) for n in c.numbers))


def cited_sources(text: str, context: Context) -> list[Source]:
    """The sources an answer cites; markers that name no source ([0], [99]) are ignored."""
    return [context.sources[n - 1] for n in cited_numbers(text, len(context.sources))]


# --- follow-up questions -------------------------------------------------------------------------
REWRITE_PROMPT = (
    "Rewrite the last question of this conversation as one standalone question that can be understood "
    "without the conversation. Keep names and terms exactly. Answer with the question only.\n\n"
    "{history}\nLast question: {question}\nStandalone question:"
)
MAX_CARRIED_TERMS = 8


def standalone_query(
    history: Sequence[dict],
    question: str,
    generate: Callable[[str], str] | None = None,
    turns: int = 2,
) -> str:
    """A retrieval query for `question` that stands on its own, given earlier messages {role, content}.

    With `generate`, the model rewrites it (falling back to the rule below on an empty or failed answer).
    Without: a question that depends on the earlier ones (``is_follow_up``: it refers back, continues them, or
    is too short to stand alone) plus the salient terms of the last `turns` user messages that it lacks (words
    that are not stopwords, newest turn first, in their original spelling), so "and how do I delete
    it?" after "how do I create a virtual environment" retrieves about virtual environments; any other
    question as asked ("What does the -p option of ssh do?" after a question on MIME types was searched with
    their words, and found only the MIME specification).
    """
    users = [m["content"] for m in history if m.get("role") == "user" and m.get("content")][-turns:]
    if not users:
        return question
    if generate is not None:
        lines = [f"{m['role']}: {m['content']}" for m in history[-2 * turns :] if m.get("content")]
        try:
            out = generate(REWRITE_PROMPT.format(history="\n".join(lines), question=question))
        except Exception:  # a failed rewrite must not fail the question
            out = ""
        out = (out or "").strip().splitlines()[0].strip().strip('"“”') if (out or "").strip() else ""
        if out:
            return out
    if not is_follow_up(question):
        return question
    have = set(tokenize(question))
    extra: list[str] = []
    for text in reversed(users):
        for word in _surface_words(text):
            terms = tokenize(word)
            if terms and not set(terms) <= have:
                have |= set(terms)
                extra.append(word)
    return " ".join([question, *extra[:MAX_CARRIED_TERMS]])


def _surface_words(text: str) -> list[str]:
    """Words as written: jieba words inside Chinese runs, alphanumeric runs (with inner . - _) elsewhere."""
    import jieba

    out, pos = [], 0
    for m in _CJK.finditer(text):
        out += _WORDISH.findall(text, pos, m.start())
        out += [w for w in jieba.lcut(m.group()) if w.strip()]
        pos = m.end()
    return out + _WORDISH.findall(text, pos)


_WORDISH = re.compile(r"[^\W_](?:[\w.\-]*[^\W_])?")

# NOTE: what makes a question lean on the ones before it. Carrying the earlier words into every question sent a
# new topic's search to the old one (all sources of "What does the -p option of ssh do?" were the MIME
# specification asked about before); a question that holds the earlier topic's words anyway loses nothing by
# being searched as asked.
# It refers back: a pronoun or a determiner that points at something said before. "that" and "there" only where
# they point (after a function word or at the end: "Does that work?", "What is stored there?"), not as a
# relative pronoun ("the file that contains ...") or in "Is there a ...?"; "it" not as the dummy subject of "Is it
# possible to ...?"; "this" not in "this year"; "one" only as a pronoun ("which one", "the new ones").
_REFERS_BACK_EN = re.compile(
    r"\b(it|its|itself|they|them|their|theirs|themselves|these|those|he|she|him|her|his|such(?!\s+as\b)"
    r"|this(?!\s+(year|month|week|quarter|morning|afternoon|evening|time)\b)"
    r"|the\s+(same|former|latter|above|other|others|rest|remaining|previous)|above|aforementioned"
    r"|(which|another|the\s+(new|old|first|second|last))\s+ones?|the\s+ones)\b"
    r"|(^|\b(do|does|did|is|are|was|were|can|could|will|would|should|about|of|in|on|for|with|to|from|like|than"
    r"|and|or|not|but|so|after|before|without)\s+)that\b"  # "Does that ...?", "What about that?"
    r"|\bthat\s*[?.!]*\s*$"
    r"|\b(in|from|to|over|at|out|up|down)\s+there\b|\bthere\s*[?.!]*\s*$",
    re.I,
)
_DUMMY_IT = re.compile(
    r"\b(is|was|will|would)\s+it\s+(be\s+)?(possible|necessary|ok|okay|safe|allowed|required|true|better|best|wise"
    r"|recommended|normal|legal|mandatory|a\s+good\s+idea)\b"
    r"|\bit(\s+is|'s|\s+was)\s+(possible|necessary|ok|okay|safe|allowed|required|true|better|best|recommended)\b",
    re.I,
)
# It continues the one before: "And ...?", "Also ...?", "What about ...?", "How about ...?", "... too?"
_CONTINUES_EN = re.compile(
    r"^\W*(and|also|or|but|so|then|plus|else|what\s+about|how\s+about|what\s+if|as\s+for|same\s+for|likewise)\b"
    r"|\b(too|as\s+well|instead|either|otherwise)\W*$",
    re.I,
)
# Chinese: a pronoun or determiner that points back (jieba words, whole: 该 of 该政策, not of 应该 / 我该), or a
# question that continues: 那/那么/还有/另外 ... at the start, 呢 at the end ("病假呢？": and sick leave?)
_REFERS_BACK_ZH = frozenset(
    "它 它们 他 她 他们 她们 其 该 此 这 那 这个 那个 这些 那些 这种 那种 这样 那样 这里 那里 上述 前者 后者 同样 以上 此类 这项 那项 "
    "这条 那条 该项".split()
)
_CONTINUES_ZH = re.compile(r"^\W*(那|那么|那如果|还有|另外|此外|而且|并且|那要是|如果是)|呢\W*$")
# "What is FAISS?", "Who is Dana?", 什么是 FAISS: a name asked about stands alone, even as the only term
_NAMES_IT = re.compile(r"^\W*((what|who)(\s+is|\s+are|'s)\s+(?!the\b)\S|什么是|.+是什么\W*$)", re.I)


def is_follow_up(question: str) -> bool:
    """Whether `question` depends on the conversation before it: it refers back ("Where is it installed?",
    "Can I edit those?", 它可以累积吗？, 上述规定 ...), continues the earlier question ("And on Windows?", "What
    about ...?", 病假呢？) or holds too little to stand alone (no term: "Why?"; one, in a question of at most four
    words that does not ask what or who something is: "Which version?", "What's the default?")."""
    plain = _DUMMY_IT.sub(" ", question)
    if (
        _REFERS_BACK_EN.search(plain)
        or _CONTINUES_EN.search(question)
        or _CONTINUES_ZH.search(question.strip())
    ):
        return True
    words = _surface_words(question)
    if any(w in _REFERS_BACK_ZH for w in words):
        return True
    content = [w for w in words if tokenize(w, characters=False)]
    if not content:
        return True
    return len(content) == 1 and len(words) <= 4 and not _NAMES_IT.search(question.strip())


def rewrite_followup(
    question: str, previous: Sequence[str], generate: Callable[[str], str] | None = None
) -> str:
    """standalone_query for callers that keep only the earlier user questions (oldest first)."""
    return standalone_query([{"role": "user", "content": p} for p in previous], question, generate)
