"""BM25 over a collection's FAISS segments: one lexical sidecar per immutable segment (bm25s).

Sidecar: ``<segment name>.bm25`` next to ``seg-<uuid>.faiss``, a bm25s index directory plus ``ids.npy``
(row -> chunk id). It is derived data: built on first use from the segment's chunk ids and the texts the
caller returns for them (``texts_for_ids``; retrieval/ never reads the database), written to a temporary
directory, fsynced and renamed, so a reader sees a whole sidecar or none. Every caller of one collection
must return the same texts for an id (the product indexes ``lexical_text(title, heading_path, text)``;
"" for an id whose row is gone). ``gc_segments`` removes it with its
segment. Segments are immutable, so a sidecar never goes stale.

Scores across segments: each bm25s index bakes its own IDF into its stored term scores, and a segment of
one document would rank its rare words far above the same words in a big segment. We rescale per query term
to the collection's IDF: the score of term t in a segment is multiplied by idf(df_global) / idf(df_segment),
where df_global sums the document frequencies of every segment in the manifest (Lucene's rule: deleted
documents still count until compaction). Length normalization keeps each segment's average length.

Text analysis (``tokenize``): NFKC, lowercase; runs of CJK ideographs are cut with jieba's search mode
(overlapping words, e.g. 中华人民共和国 -> 中华, 华人, 人民, 共和, 共和国, 中华人民共和国); other text
is cut at non-alphanumerics and stemmed with the English Snowball stemmer; English and Chinese stopwords
are dropped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.index import Manifest, _fsync_dir, read_segment

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".bm25"
TextsForIds = Callable[[Sequence[int]], list[str]]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]+")
_WORD = re.compile(r"[^\W_]+")
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


def tokenize(text: str) -> list[str]:
    """Index/query terms of mixed Chinese/English text (see the module docstring)."""
    import jieba

    stemmer, stop = _get_analyzer()
    text = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    pos = 0
    for m in _CJK.finditer(text):
        words = _WORD.findall(text, pos, m.start())
        out += stemmer.stemWords([w for w in words if w not in stop])
        out += [w for w in jieba.lcut_for_search(m.group()) if w.strip() and w not in stop]
        pos = m.end()
    words = _WORD.findall(text, pos)
    out += stemmer.stemWords([w for w in words if w not in stop])
    return out


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


def sidecar_path(collection_dir: Path, segment: str) -> Path:
    return Path(collection_dir) / f"{segment}{SIDECAR_SUFFIX}"


def _from_model(ids: np.ndarray, model) -> Sidecar:
    indptr = np.asarray(model.scores["indptr"])
    return Sidecar(ids=ids, model=model, df=np.diff(indptr).astype(np.int64))


def build_sidecar(collection_dir: Path, segment: str, texts_for_ids: TextsForIds) -> Sidecar:
    """Index the chunks of `segment` and write its sidecar atomically; returns it loaded."""
    import bm25s

    collection_dir = Path(collection_dir)
    index = read_segment(collection_dir / segment)
    import faiss

    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    del index
    texts = texts_for_ids(ids.tolist())
    if len(texts) != ids.size:
        raise ValueError(f"texts_for_ids returned {len(texts)} texts for {ids.size} ids")
    tokens = [tokenize(t) for t in texts]
    if not any(tokens):
        # NOTE: every chunk of the segment is gone (its documents were deleted or replaced); bm25s cannot
        # index an empty vocabulary, so index a token no query has (tombstones zero these rows anyway).
        tokens = [["\x00"]] * len(tokens)
    model = bm25s.BM25()  # lucene variant, k1=1.5, b=0.75
    model.index(tokens, show_progress=False)
    final = sidecar_path(collection_dir, segment)
    tmp = collection_dir / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        model.save(str(tmp), show_progress=False)
        np.save(tmp / "ids.npy", ids)
        (tmp / "meta.json").write_text(json.dumps({"segment": segment, "docs": int(ids.size)}))
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
        _fsync_dir(collection_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("built BM25 sidecar for %s (%d chunks)", segment, ids.size)
    return _from_model(ids, model)


def load_sidecar(collection_dir: Path, segment: str) -> Sidecar | None:
    """The sidecar of `segment`, or None when it was not built yet."""
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
        terms = tokenize(query) if isinstance(query, str) else list(query)
        if not terms:
            return []
        parts: list[tuple[Sidecar, np.ndarray]] = []
        for cdir, manifest in sources:
            tomb = np.fromiter(manifest.tombstones, np.int64, len(manifest.tombstones))
            parts += [(self.get(cdir, name, texts_for_ids), tomb) for name in manifest.segments]
        if not parts:
            return []
        n_total = sum(s.num_docs for s, _ in parts)
        df_global = {
            t: sum(int(s.df[s.model.vocab_dict[t]]) for s, _ in parts if t in s.model.vocab_dict)
            for t in set(terms)
        }
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


_default_cache = LexicalCache()


def get_lexical_cache() -> LexicalCache:
    """The process-wide LexicalCache."""
    return _default_cache


def warm(collection_dir: Path, manifest: Manifest, texts_for_ids: TextsForIds) -> int:
    """Build the BM25 sidecars of a manifest's segments now (a worker calls it after writing a segment)."""
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
