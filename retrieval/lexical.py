"""BM25 over a collection's FAISS segments: one lexical sidecar per immutable segment (bm25s).

Sidecar: ``<segment name>.v<ANALYZER_VERSION>.bm25`` next to ``seg-<uuid>.faiss``, a bm25s index directory
plus ``ids.npy`` (row -> chunk id) and ``meta.json``. It is derived data, written to a temporary directory,
fsynced and renamed, so a reader sees a whole sidecar or none. The writer of a segment writes it before the
manifest that lists the segment commits (``index_texts`` + ``write_sidecar``, from the texts it holds), so a
reader finds it in place; a reader builds one still missing on first use (``build_sidecar``: an older segment,
an analyzer upgrade, a writer whose build failed) from the segment's chunk ids and the texts the caller returns
for them (``texts_for_ids``; retrieval/ never reads the database). Every writer and caller of one collection
must index the same text for an id (the product indexes ``lexical_text(title, heading_path, text)``; "" for an
id whose row is gone). ``gc_segments`` removes it with its segment (every ``<segment>.*`` entry, whatever its
version), also the sidecar of a segment whose manifest never committed. Segments are immutable, so a sidecar
goes stale only when the analyzer changes: its version is in the directory name (``<segment>.bm25``, without
one, is version 1), so a process looks only for the sidecar of its own analyzer, builds it beside an older
one (a rename onto a free name: atomic, and two builders race as for a first build, the loser keeps the
winner's) and then removes the older ones. A process of an older release still running during an upgrade
reads, or rebuilds, its own version's sidecar, until gc or the next newer build removes it.

Scores across segments: each bm25s index bakes its own IDF into its stored term scores, and a segment of
one document would rank its rare words far above the same words in a big segment. We rescale per query term
to the collection's IDF: the score of term t in a segment is multiplied by idf(df_global) / idf(df_segment),
where df_global sums the document frequencies of every segment in the manifest (Lucene's rule: deleted
documents still count until compaction). Length normalization keeps each segment's average length.

Text analysis (``tokenize``): NFKC, lowercase; runs of CJK ideographs are cut with jieba's search mode
(overlapping words, e.g. 中华人民共和国 -> 中华, 华人, 人民, 共和, 共和国, 中华人民共和国), and the characters
of the run's words of several characters (jieba's precise cut: 借款 -> 借, 款; 站会 -> 站, 会; a stopword's
too, 每天 -> 天; a character that is a stopword left out) are terms too, after the run's words: a question and
its answer in other words are often cut differently ("找公司借的钱" is 借 / 的 / 钱, the page's "员工向公司借款"
holds 借款; "站会" of a question is 站 / 会, the page's "每天 10 点准时站会" holds 站会), and the characters are
what they share (each weighs its own IDF, so a common one, 上 or 会, adds little). Runs of Japanese kana and of
Korean hangul are cut into overlapping pairs of characters, as Lucene's CJK analyzer does (``bigrams``:
パスワードを -> パス, スワ, ワー, ード, ドを; 회의실은 -> 회의, 의실, 실은; a run of one character is itself): a
particle stuck to a word (パスワードは, 회의실이) leaves the word's pairs to match. Japanese kanji stay on the
Chinese path (on the ja man-pages set it quoted 4 answers of 9 against 2 with the kanji in pairs too: RESULTS.md).
Other text is cut at non-alphanumerics, its Latin letters folded to their base letters (``fold``: réunion ->
reunion, Größe -> grosse, œ -> oe; no other script is touched) and stemmed with the English Snowball stemmer;
English and Chinese stopwords are dropped.
An identifier that joins words by case or digits (``word_parts``: pkgProblemResolver, HTTPServerError,
XMLHttpRequest, utf8Decode) yields its whole word, as before, and also its parts (pkg, problem, resolver;
http, server, error; xml, http, request; utf, 8, decode; after the text's words), so "problem resolver" finds
Debug::pkgProblemResolver, and "utf-8" (cut into utf, 8 like any text) finds utf8.
Like the words of a snake_case identifier, which were always cut apart, the parts are ordinary terms: they
count in the document's length and in each part's term frequency; only a word that does split adds them
(one part of one letter does not split a word: iPhone, eBay, iOS, x86, k8s stay whole).

Queries (``query_terms``): a question's terms, and for a question that asks who the agent nouns of its verbs
and the verbs of its agent nouns (own <-> owner: ``agent_forms``), which Snowball keeps apart. Query-side
only: the index is unchanged, so the analyzer's version is too.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import threading
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.index import Manifest, _fsync_dir, read_segment

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".bm25"
# What ``tokenize`` makes of a text. Bump it with any change to the analysis: sidecars of an older one are
# rebuilt on first use (their terms would not match the queries' terms). 1: no version in the name; 2: the
# parts of identifiers (``word_parts``); 3: the characters of Chinese words; 4: kana and hangul bigrams, Latin
# diacritics folded.
ANALYZER_VERSION = 4
TextsForIds = Callable[[Sequence[int]], list[str]]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]+")
# Japanese kana (hiragana, katakana with its prolonged sound mark ー, their phonetic extensions; NFKC has made
# half-width katakana full-width) and Korean hangul (syllables, and the jamo of text typed letter by letter)
_KANA = "\u3041-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff"  # not the middle dot ・, a separator
_HANGUL = "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
_BIGRAM_RUN = re.compile(f"[{_KANA}]+|[{_HANGUL}]+")
_ASIAN = re.compile(f"{_CJK.pattern}|{_BIGRAM_RUN.pattern}")
_WORD = re.compile(r"[^\W_]+")
# Latin letters with diacritics or ligatures (Latin-1 Supplement to Latin Extended-B, Latin Extended
# Additional); other scripts are never folded (NFKD would take Korean syllables apart into jamo)
_LATIN_EXTENDED = re.compile(r"[\u00c0-\u024f\u1e00-\u1eff]")
# what NFKD does not take apart: letters that are ligatures or letters of their own, not a letter and a mark
_FOLD_EXTRA = str.maketrans(
    {"ß": "ss", "ẞ": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ø": "o", "Ø": "o", "đ": "d", "Đ": "d",
     "ł": "l", "Ł": "l", "þ": "th", "Þ": "th", "ð": "d", "Ð": "d", "ı": "i", "ħ": "h", "Ħ": "h"}
)  # fmt: skip


def cjk_share(text: str) -> float:
    """The share of a text's words that are Chinese, Japanese or Korean, counting each CJK ideograph, kana and
    hangul syllable as one word and each run of other letters or digits as one: "提交 Pull Request 之后" -> 4 / 6,
    "passwd の -l オプション" -> 6 / 8. 0.0 for a text without words."""
    cjk = sum(len(m) for m in _ASIAN.findall(text))
    other = len(_WORD.findall(_ASIAN.sub(" ", text)))
    return cjk / (cjk + other) if cjk + other else 0.0


def fold(word: str) -> str:
    """A Latin word without its diacritics and ligatures, as Lucene's ASCII folding: réunion -> reunion,
    Größe -> Grosse, cœur -> coeur, Søren -> Soren (NFKD, combining marks dropped, ``_FOLD_EXTRA``). Only Latin
    letters are touched: Greek, Cyrillic and every other script are returned as they are."""
    if word.isascii() or not _LATIN_EXTENDED.search(word):
        return word
    out = []
    for ch in word.translate(_FOLD_EXTRA):
        if _LATIN_EXTENDED.match(ch):
            out += [c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)]
        else:
            out.append(ch)
    return "".join(out)


def bigrams(run: str) -> list[str]:
    """Overlapping pairs of a run of kana or hangul, as Lucene's CJK analyzer cuts them (パスワード -> パス,
    スワ, ワー, ード; 회의실은 -> 회의, 의실, 실은); a run of one character is itself."""
    return [run[i : i + 2] for i in range(len(run) - 1)] if len(run) > 1 else [run]


_analyzer_lock = threading.Lock()
_analyzer: tuple | None = None


def _get_analyzer() -> tuple:
    """(stemmer, stopwords), built once (jieba loads its dictionary lazily on first cut)."""
    global _analyzer
    with _analyzer_lock:
        if _analyzer is None:
            import Stemmer
            from bm25s.stopwords import STOPWORDS_CHINESE, STOPWORDS_EN_PLUS

            _analyzer = (
                Stemmer.Stemmer("english"),
                frozenset(STOPWORDS_EN_PLUS) | frozenset(STOPWORDS_CHINESE),
            )
        return _analyzer


def word_parts(word: str) -> list[str]:
    """The words an identifier joins by case or digits, lowercased; [] for a word that does not split.

    A part is a run of digits, of lowercase (or caseless) letters after at most one capital, or of capitals;
    in a run of capitals followed by lowercase letters the last capital begins the next part (HTTPServer ->
    http, server), unless only one lowercase letter follows them (URLs, IDsList, IPv6: a plural, a version).
    Letters stuck to digits are parts of their own (utf8 -> utf, 8: as "UTF-8" is cut; sha256, python3).
    Parts of one letter are dropped (a prefix such as the i of iPhone is no word to search for), and a word
    splits only into two or more parts that remain: iPhone, eBay, iOS, getX, x86, k8s and i18n stay whole,
    macOS -> mac, os.
    """
    if word.isdigit() or (word.isalpha() and (word.isupper() or word[1:].islower())):
        return []  # plain words, Capitalized words and acronyms: the common case, decided fast
    parts: list[str] = []
    i, n = 0, len(word)
    while i < n:
        j = i + 1
        if word[i].isdigit():
            while j < n and word[j].isdigit():
                j += 1
        elif word[i].isupper():
            while j < n and word[j].isupper():
                j += 1
            k = j
            while k < n and not (word[k].isupper() or word[k].isdigit()):
                k += 1
            j = j - 1 if j - i > 1 and k - j > 1 else k
        else:
            while j < n and not (word[j].isupper() or word[j].isdigit()):
                j += 1
        parts.append(word[i:j])
        i = j
    kept = [p.lower() for p in parts if len(p) > 1 or p.isdigit()]
    return kept if len(kept) > 1 else []


def tokenize(text: str, parts: bool = True, characters: bool = True) -> list[str]:
    """Index/query terms of mixed Chinese/English text (see the module docstring); `parts=False` leaves out
    the parts of identifiers (an identifier counts once, whole), `characters=False` the characters of
    Chinese words (the extractive answerer's words, which it matches inside a sentence's words itself)."""
    import jieba

    stemmer, stop = _get_analyzer()
    text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    pos = 0
    for m in _ASIAN.finditer(text):
        out += _latin_terms(text[pos : m.start()], stemmer, stop, parts)
        run = m.group()
        if _BIGRAM_RUN.fullmatch(run):
            out += bigrams(run)
        else:
            out += [w for w in jieba.lcut_for_search(run) if w.strip() and w not in stop]
            if characters:
                out += [c for w in jieba.lcut(run) if len(w) > 1 for c in w if c not in stop]
        pos = m.end()
    return out + _latin_terms(text[pos:], stemmer, stop, parts)


def in_dictionary(word: str) -> bool:
    """Whether jieba's dictionary holds the word (a word it cut by its HMM alone is in none: 能写, 好出)."""
    import jieba

    jieba.initialize()  # loads the dictionary once (a cut does too)
    return bool(jieba.get_FREQ(word))


# a question that asks for a person or a body ("Who owns ...?", "To whom ...?", "Whose approval ...?", "Which
# team maintains ...?"): an agent noun answers it ("Owner: Dana", "Maintainer: the search team"). At its start
# only: "a function whose return type ..." asks for no one
_ASKS_WHO = re.compile(
    r"\W*((to|for|by|from|with)\s+)?(who|whom|whose)\b"
    r"|\W*(which|what)\s+(person|people|team|group|department|role|company|vendor)\b",
    re.I,
)


def asks_who(question: str) -> bool:
    """Whether a question asks who (a person, a team) does or is something (``_ASKS_WHO``)."""
    return bool(_ASKS_WHO.match(question))


def agent_forms(term: str) -> tuple[str, ...]:
    """The other half of a stemmed verb and its agent noun, both ways: own <-> owner, hold <-> holder, write <->
    writer, creat <-> creator, edit <-> editor, use <-> user. Snowball keeps the -er/-or of most agent nouns
    ("owner" stays "owner" while "owns" is "own"; it joins only some: manager, maintainer, reviewer, approver
    are their verbs' stems already). A stem of at least three letters on either side (not "us" <-> "user")."""
    if not term.isalpha() or len(term) < 3:
        return ()
    if not term.endswith(("er", "or")):
        return (term + "er", term + "or") + ((term + "r",) if term.endswith("e") else ())
    verbs = [term[:-2]] + ([term[:-1]] if term.endswith("er") else [])  # owner -> own; writer -> write
    return tuple(v for v in verbs if len(v) >= 3)


# ä, ö, ü written as two letters (a keyboard without them, an older system): ae, oe, ue; ue not after a vowel
# or q (neue, Feuer, Quelle), as Lucene's German normalization reads it
_SPELLED_UMLAUT = re.compile(r"ae|oe|(?<![aeiouqAEIOUQ])ue", re.I)
_UMLAUT_SPELLING = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})
_german_only: frozenset[str] | None = None


def looks_german(words: Sequence[str]) -> bool:
    """Whether lowercase words hold at least two German function words that English does not share (wie, welche,
    ich, der, und, ...) and more of them than English ones: a question in German, not a word or two of it."""
    global _german_only
    if _german_only is None:
        from bm25s.stopwords import STOPWORDS_EN_PLUS, STOPWORDS_GERMAN

        _german_only = frozenset(STOPWORDS_GERMAN) - frozenset(STOPWORDS_EN_PLUS)
    _, stop = _get_analyzer()
    german = sum(w in _german_only for w in words)
    return german >= 2 and german > sum(w in stop and w not in _german_only for w in words)


def german_spellings(question: str) -> list[tuple[str, str]]:
    """(word, the same word written the other way German allows) for a question's words where that differs:
    ä, ö, ü as ae, oe, ue ("Größe" -> "Groesse": a page typed without umlauts) and, in a question that
    ``looks_german``, ae, oe, ue as the letters their umlauts fold to ("Groesse" -> "Grosse", as ``fold`` makes of
    "Größe"; "Buero" -> "Buro", of "Büro"). English questions keep their "blue", "does" and "guest" as they are."""
    words = _WORD.findall(unicodedata.normalize("NFKC", question))
    german = looks_german([w.lower() for w in words])
    out = []
    for w in words:
        if (t := w.translate(_UMLAUT_SPELLING)) != w:
            out.append((w, t))
        elif german and (t := _SPELLED_UMLAUT.sub(lambda m: m.group()[0], w)) != w:
            out.append((w, t))
    return out


def spelled_otherwise(question: str) -> dict[str, frozenset[str]]:
    """A question's terms (``tokenize`` without identifier parts or Chinese characters, as the extractive
    answerer takes them) -> the terms of the same word spelled the other way German allows
    (``german_spellings``): {"groess": {"gross"}} for "Welche Groesse ...?"."""
    out: dict[str, set[str]] = {}
    for word, other in german_spellings(question):
        alt = set(tokenize(other, parts=False, characters=False))
        for t in tokenize(word, parts=False, characters=False):
            out.setdefault(t, set()).update(alt - {t})
    return {t: frozenset(a) for t, a in out.items() if a}


def query_terms(question: str) -> list[str]:
    """A question's BM25 terms (``tokenize``); for a question that asks who (``asks_who``) the agent forms
    of its terms (``agent_forms``): "Who owns the billing service?" also looks for "owner", "Who is the
    owner ...?" for "own"; and the terms of its words spelled the other way German allows
    (``german_spellings``): "Welche Groesse ...?" also looks for "gross", the term of "Größe". A form no chunk
    holds scores nothing; other questions are their terms alone."""
    terms = tokenize(question)
    have = set(terms)
    extra = [t for _, w in german_spellings(question) for t in tokenize(w, parts=False) if t not in have]
    if asks_who(question):
        extra += [f for t in dict.fromkeys(terms) for f in agent_forms(t) if f not in have]
    return terms + list(dict.fromkeys(extra))


def _latin_terms(text: str, stemmer, stop: frozenset[str], parts: bool) -> list[str]:
    """Stemmed terms of text without CJK: its words, then the parts of its identifiers (``word_parts``)."""
    words = _WORD.findall(text)
    low = " ".join(words).lower()
    # NOTE: lowercasing may make a non-word character ("İ" -> "i" + a combining dot): cut there too, as when
    # the whole text was lowercased first
    terms = low.split(" ") if low.replace(" ", "").isalnum() else _WORD.findall(low)
    if parts:  # lowercase words never split
        terms += [p for w in words if not (w.islower() and w.isalpha()) for p in word_parts(w)]
    # folded after the stopwords are left out and before stemming (the English stemmer knows no accents)
    return stemmer.stemWords([fold(t) for t in terms if t not in stop])


def idf(df: np.ndarray | float, n: int) -> np.ndarray | float:
    """Lucene's BM25 IDF, the one bm25s bakes into its scores (method="lucene")."""
    return np.log1p((n - df + 0.5) / (df + 0.5))


@dataclass
class Sidecar:
    """One segment's BM25 index: bm25s model, row -> chunk id, and document frequency per vocabulary id."""

    ids: np.ndarray  # (n,) int64, row order of the bm25s index
    model: object  # bm25s.BM25
    df: np.ndarray  # (vocab,) int64

    @property
    def num_docs(self) -> int:
        return int(self.ids.size)


def sidecar_path(collection_dir: Path, segment: str, version: int | None = None) -> Path:
    """Where the sidecar of `segment` built by analyzer `version` (default: this one) lives."""
    version = ANALYZER_VERSION if version is None else version
    tag = f".v{version}" if version > 1 else ""  # version 1 had no version in the name
    return Path(collection_dir) / f"{segment}{tag}{SIDECAR_SUFFIX}"


def _remove_older_sidecars(collection_dir: Path, segment: str) -> int:
    """Remove the sidecars of `segment` built by older analyzers (never a newer one: an upgraded process
    beside this one may use it); returns how many went."""
    pattern = re.compile(re.escape(segment) + r"(?:\.v(\d+))?" + re.escape(SIDECAR_SUFFIX))
    removed = 0
    for path in Path(collection_dir).glob(f"{glob.escape(segment)}*{SIDECAR_SUFFIX}"):
        m = pattern.fullmatch(path.name)
        if m and int(m.group(1) or 1) < ANALYZER_VERSION:
            shutil.rmtree(path, ignore_errors=True)  # a concurrent builder may remove it too
            removed += 1
    return removed


def _from_model(ids: np.ndarray, model) -> Sidecar:
    indptr = np.asarray(model.scores["indptr"])
    return Sidecar(ids=ids, model=model, df=np.diff(indptr).astype(np.int64))


def index_texts(texts: Sequence[str]):
    """The bm25s index of a segment's chunk texts, row i for texts[i] (``lexical_text`` of each chunk)."""
    import bm25s

    tokens = [tokenize(t) for t in texts]
    if not any(tokens):
        # NOTE: every chunk of the segment is gone (its documents were deleted or replaced); bm25s cannot
        # index an empty vocabulary, so index a token no query has (tombstones zero these rows anyway).
        tokens = [["\x00"]] * len(tokens)
    model = bm25s.BM25()  # lucene variant, k1=1.5, b=0.75
    model.index(tokens, show_progress=False)
    return model


def write_sidecar(collection_dir: Path, segment: str, ids: np.ndarray, model) -> Sidecar:
    """Write the sidecar of `segment` atomically (temporary directory, fsync, rename): `model` (``index_texts``)
    with `ids`, the chunk id of each of its rows. A writer calls it before the manifest that lists a new
    segment commits, from the texts it holds, so no reader has to build it; returns it loaded."""
    collection_dir = Path(collection_dir)
    ids = np.asarray(ids, dtype=np.int64)
    if model.scores["num_docs"] != ids.size:
        raise ValueError(f"the BM25 index has {model.scores['num_docs']} rows for {ids.size} ids")
    final = sidecar_path(collection_dir, segment)
    tmp = collection_dir / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        model.save(str(tmp), show_progress=False)
        np.save(tmp / "ids.npy", ids)
        meta = {"segment": segment, "docs": int(ids.size), "analyzer": ANALYZER_VERSION}
        (tmp / "meta.json").write_text(json.dumps(meta))
        for f in tmp.iterdir():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same sidecar first: identical content, keep theirs.
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        # only now: until the new sidecar is in place, a process of the older release may still read the old
        if _remove_older_sidecars(collection_dir, segment):
            logger.info("removed the BM25 sidecar of an older analyzer for %s", segment)
        _fsync_dir(collection_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("built BM25 sidecar for %s (%d chunks)", segment, ids.size)
    return _from_model(ids, model)


def build_sidecar(collection_dir: Path, segment: str, texts_for_ids: TextsForIds) -> Sidecar:
    """Index the chunks of `segment` (texts from `texts_for_ids`) and write its sidecar; returns it loaded."""
    import faiss

    index = read_segment(Path(collection_dir) / segment)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    del index
    texts = texts_for_ids(ids.tolist())
    if len(texts) != ids.size:
        raise ValueError(f"texts_for_ids returned {len(texts)} texts for {ids.size} ids")
    return write_sidecar(collection_dir, segment, ids, index_texts(texts))


def load_sidecar(collection_dir: Path, segment: str) -> Sidecar | None:
    """The sidecar of `segment` built by this analyzer, or None when it was not built yet (one of an older
    analyzer counts as none: ``build_sidecar`` replaces it)."""
    import bm25s

    path = sidecar_path(collection_dir, segment)
    if not (path / "ids.npy").is_file():
        return None
    model = bm25s.BM25.load(str(path), mmap=True, show_progress=False)
    return _from_model(np.load(path / "ids.npy"), model)


class LexicalCache:
    """Loaded sidecars per collection directory (built on first use); search returns (chunk_id, score).

    Thread-safe. A sidecar is built at most once per process at a time (a per-segment lock); sidecars of
    segments no longer in a searched manifest are released after KEEP_SEGMENTS others came in.
    """

    KEEP_SEGMENTS = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sidecars: dict[str, Sidecar] = {}  # abs path of sidecar dir -> sidecar, insertion = age
        self._building: dict[str, threading.Lock] = {}
        self.builds = 0  # sidecars built by this cache (tests use it to prove reuse)

    def get(self, collection_dir: Path, segment: str, texts_for_ids: TextsForIds) -> Sidecar:
        key = os.path.abspath(sidecar_path(collection_dir, segment))
        with self._lock:
            found = self._sidecars.get(key)
            if found is not None:
                return found
            build_lock = self._building.setdefault(key, threading.Lock())
        with build_lock:
            with self._lock:
                found = self._sidecars.get(key)
            if found is None:
                found = load_sidecar(collection_dir, segment)
                if found is None:
                    found = build_sidecar(collection_dir, segment, texts_for_ids)
                    self.builds += 1
            with self._lock:
                self._sidecars[key] = found
                self._building.pop(key, None)
                while len(self._sidecars) > self.KEEP_SEGMENTS:
                    self._sidecars.pop(next(iter(self._sidecars)))
            return found

    def warm(self, collection_dir: Path, manifest: Manifest, texts_for_ids: TextsForIds) -> int:
        """Build (or load) the sidecars of every segment in `manifest`; returns how many there are."""
        for name in manifest.segments:
            self.get(collection_dir, name, texts_for_ids)
        return len(manifest.segments)

    def search(
        self,
        collection_dir: Path,
        manifest: Manifest,
        query: str | list[str],
        k: int,
        texts_for_ids: TextsForIds,
    ) -> list[tuple[int, float]]:
        """Top-k (chunk_id, BM25 score) over the manifest's live chunks, scores on the collection's IDF."""
        return self.search_many([(collection_dir, manifest)], query, k, texts_for_ids)

    def search_many(
        self,
        sources: Sequence[tuple[Path, Manifest]],
        query: str | list[str],
        k: int,
        texts_for_ids: TextsForIds,
    ) -> list[tuple[int, float]]:
        """Top-k over several collections at once, on IDF over all of them (so their scores compare)."""
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        terms = query_terms(query) if isinstance(query, str) else list(query)
        if not terms:
            return []
        parts = self._parts(sources, texts_for_ids)
        if not parts:
            return []
        df_global, n_total = _doc_freqs([s for s, _ in parts], terms)
        best: dict[int, float] = {}
        for s, tomb in parts:
            scores = np.zeros(s.num_docs, dtype=np.float32)
            for t in terms:  # a repeated query term counts again, as in bm25s
                tid = s.model.vocab_dict.get(t)
                if tid is None:
                    continue
                w = idf(df_global[t], n_total) / idf(int(s.df[tid]), s.num_docs)
                scores += np.float32(w) * s.model.get_scores_from_ids([tid])
            if tomb.size:
                scores[np.isin(s.ids, tomb)] = 0.0
            kk = min(k, s.num_docs)
            for row in np.argpartition(-scores, kk - 1)[:kk].tolist():
                sc, cid = float(scores[row]), int(s.ids[row])
                if sc > 0.0 and (cid not in best or sc > best[cid]):
                    best[cid] = sc
        return sorted(best.items(), key=lambda t: (-t[1], t[0]))[:k]

    def doc_freqs(
        self,
        sources: Sequence[tuple[Path, Manifest]],
        terms: Iterable[str],
        texts_for_ids: TextsForIds,
        build: bool = True,
    ) -> tuple[dict[str, int], int]:
        """(chunks holding each term, chunks) over the collections' segments: the statistics of search_many's
        IDF (a deleted chunk counts until compaction), for callers that weigh a question's terms by rarity.
        With build=False a segment whose sidecar is neither loaded nor on disk is not built (a search that
        gave up on it may still be building it): then there are no statistics, ({}, 0)."""
        if not build:
            with self._lock:
                have = set(self._sidecars)
            for cdir, manifest in sources:
                for name in manifest.segments:
                    path = sidecar_path(cdir, name)
                    if os.path.abspath(path) not in have and not (path / "ids.npy").is_file():
                        return {}, 0
        return _doc_freqs([s for s, _ in self._parts(sources, texts_for_ids)], terms)

    def _parts(
        self, sources: Sequence[tuple[Path, Manifest]], texts_for_ids: TextsForIds
    ) -> list[tuple[Sidecar, np.ndarray]]:
        """Each segment's sidecar with its collection's tombstones (chunk ids)."""
        parts: list[tuple[Sidecar, np.ndarray]] = []
        for cdir, manifest in sources:
            tomb = np.fromiter(manifest.tombstones, np.int64, len(manifest.tombstones))
            parts += [(self.get(cdir, name, texts_for_ids), tomb) for name in manifest.segments]
        return parts


def _doc_freqs(sidecars: Sequence[Sidecar], terms: Iterable[str]) -> tuple[dict[str, int], int]:
    """Document frequency of each term summed over the sidecars, and their number of documents."""
    df = {
        t: sum(int(s.df[s.model.vocab_dict[t]]) for s in sidecars if t in s.model.vocab_dict)
        for t in set(terms)
    }
    return df, sum(s.num_docs for s in sidecars)


_default_cache = LexicalCache()


def get_lexical_cache() -> LexicalCache:
    """The process-wide LexicalCache."""
    return _default_cache


def warm(collection_dir: Path, manifest: Manifest, texts_for_ids: TextsForIds) -> int:
    """Load the BM25 sidecars of a manifest's segments now, building those missing (a server's start-up)."""
    return _default_cache.warm(collection_dir, manifest, texts_for_ids)


def lexical_text(title: str, heading_path: Sequence[str], text: str) -> str:
    """What to index for a chunk: its document title and heading path, then its text.

    A chunk's own words rarely repeat the topic its headings name ("Use it like this: ..."); indexing the
    headings with it is the usual field weighting of titles, here with weight 1 (one extra occurrence).
    """
    head = " / ".join(h for h in [title, *heading_path] if h)
    return f"{head}\n{text}" if head else text


def preload() -> None:
    """Import bm25s and build the analyzer now (~1 s), so a server's first query does not pay it in budget."""
    import bm25s  # noqa: F401

    _get_analyzer()
