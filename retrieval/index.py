"""Per-collection vector index: immutable FAISS segment files plus a manifest.

A collection's directory holds segment files (``seg-<uuid>.faiss``), each an ``IndexIDMap2`` over
either an exact flat index (small segments) or IVF-Flat (large segments), inner product on normalized
vectors. Which files are live, and which chunk ids are deleted, is recorded in a :class:`Manifest`;
its durable copy belongs to the caller (a database row), so this module never touches a database.

Contract:
- ``write_segment`` never leaves a half-written ``*.faiss`` file: it writes ``.<name>.tmp``, fsyncs,
  renames and fsyncs the directory. A crashed writer leaves at most a ``*.tmp`` file, which no reader
  ever opens (readers open only names listed in a manifest) and ``gc_segments`` removes.
- Manifests are values: ``add_segment`` / ``add_tombstones`` / ``compact`` / ``replace_segments`` return a
  new manifest with ``version + 1``. Tombstoned ids are never returned by a search; a merge
  (``merge_segments``, ``compact``) drops those inside the segments it merges for good.
- Merge policy apart from mechanism: ``pick_merge`` chooses which segments to merge (size-tiered, from
  ``segment_sizes``), ``merge_segments`` builds the merged segment (in any directory), and
  ``replace_segments`` puts it into whatever manifest is current by then.
- ``IndexCache`` keeps loaded segments per collection directory and reloads when it is handed a
  manifest with a different version; segments shared by both versions are not read again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

logger = logging.getLogger(__name__)
_DIM_WARNED: set[tuple[str, int, int]] = set()  # (collection dir, query dims, segment dims) warned about

SEGMENT_SUFFIX = ".faiss"
TMP_SUFFIX = ".tmp"
# Up to this many vectors a segment is an exact flat index: 50k x 384 floats is ~19M multiply-adds
# per query (a few ms). Above it, an inverted-file index (IVF-Flat: k-means lists, exact vectors)
# scans only the lists nearest the query. IVF rather than HNSW because it builds ~20x faster on a
# small CPU (1M vectors in well under a minute on 2 cores against many minutes), which matters for
# compaction, and its cost per query is predictable: ~n * nprobe / nlist vectors.
FLAT_MAX_VECTORS = 50_000
IVF_TRAIN_PER_LIST = 40  # k-means sample: lists x this many points (FAISS warns below 39)
IVF_NPROBE_FRACTION = 16  # probe nlist / this many lists (at least IVF_MIN_NPROBE)
IVF_MIN_NPROBE = 16


def ivf_lists(n: int) -> int:
    """Number of IVF lists for a segment of n vectors: ~sqrt(n), a power of two."""
    return int(2 ** round(np.log2(max(np.sqrt(n), 64))))


def ivf_nprobe(nlist: int) -> int:
    return min(nlist, max(IVF_MIN_NPROBE, nlist // IVF_NPROBE_FRACTION))


@dataclass
class Manifest:
    """The live segment files of one collection and the chunk ids deleted but still inside them."""

    version: int = 0
    segments: list[str] = field(default_factory=list)
    tombstones: set[int] = field(default_factory=set)

    def to_json(self) -> str:
        return json.dumps(
            {"version": self.version, "segments": list(self.segments), "tombstones": sorted(self.tombstones)}
        )

    @classmethod
    def from_json(cls, s: str) -> Manifest:
        body = json.loads(s) if s else {}
        return cls(
            version=int(body.get("version", 0)),
            segments=[str(x) for x in body.get("segments", [])],
            tombstones={int(x) for x in body.get("tombstones", [])},
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _build_index(ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    n, dim = vectors.shape
    if n <= FLAT_MAX_VECTORS:
        inner: faiss.Index = faiss.IndexFlatIP(dim)
    else:
        nlist = ivf_lists(n)
        inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        inner.cp.niter = 10
        # A fixed seed keeps segment building deterministic; an evenly spaced sample covers the data.
        sample = vectors[:: max(1, n // (nlist * IVF_TRAIN_PER_LIST))]
        inner.train(sample)
        inner.nprobe = ivf_nprobe(nlist)
    index = faiss.IndexIDMap2(inner)
    if n:
        index.add_with_ids(vectors, ids)
    return index


def _check_input(ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != ids.shape[0]:
        raise ValueError(
            f"ids and vectors disagree: ids {ids.shape}, vectors {vectors.shape}; want (n,) and (n, dim)"
        )
    if ids.size == 0:
        raise ValueError("a segment needs at least one vector")
    if np.unique(ids).size != ids.size:
        raise ValueError("ids must be unique within a segment")
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.abs(norms - 1.0) < 1e-3):
        bad = int(np.argmax(np.abs(norms - 1.0)))
        raise ValueError(
            f"vectors must be L2-normalized (inner product = cosine); row {bad} has norm {norms[bad]:.4f}"
        )
    return ids, vectors


def write_segment(collection_dir: Path, ids: np.ndarray, vectors: np.ndarray) -> str:
    """Write an immutable segment atomically and return its file name (relative to collection_dir)."""
    ids, vectors = _check_input(ids, vectors)
    collection_dir = Path(collection_dir)
    collection_dir.mkdir(parents=True, exist_ok=True)
    name = f"seg-{uuid.uuid4().hex}{SEGMENT_SUFFIX}"
    tmp = collection_dir / f".{name}{TMP_SUFFIX}"
    index = _build_index(ids, vectors)
    try:
        faiss.write_index(index, str(tmp))
        del index
        # NOTE: FAISS closes the file without fsync; reopen it so the bytes are durable before the rename.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, collection_dir / name)
        _fsync_dir(collection_dir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("wrote segment %s (%d vectors)", name, ids.size)
    return name


def add_segment(m: Manifest, name: str) -> Manifest:
    """A new manifest with segment `name` added."""
    if name in m.segments:
        raise ValueError(f"segment {name!r} is already in manifest version {m.version}")
    return Manifest(version=m.version + 1, segments=[*m.segments, name], tombstones=set(m.tombstones))


def add_tombstones(m: Manifest, ids: Iterable[int]) -> Manifest:
    """A new manifest in which `ids` are deleted (hidden from search until compaction drops them)."""
    return Manifest(
        version=m.version + 1, segments=list(m.segments), tombstones=set(m.tombstones) | {int(i) for i in ids}
    )


def read_segment(path: Path) -> faiss.Index:
    """Load a segment, memory-mapped where FAISS supports it (flat codes), else read into memory."""
    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError as e:
        if not Path(path).exists():
            raise FileNotFoundError(f"segment file {path} is missing (was it garbage-collected?)") from e
        return faiss.read_index(str(path))


def segment_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) stored in a segment, in insertion order."""
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexIVF):
        inner.make_direct_map()
    vectors = inner.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
    return ids, np.asarray(vectors, dtype=np.float32)


def segment_sizes(collection_dir: Path, names: Iterable[str]) -> dict[str, int]:
    """Bytes on disk of each named segment (0 for a missing file): one stat each. Within a collection every
    vector has the same dimension, so the size is proportional to the segment's vector count (an IVF
    segment's centroids add ~sqrt(n) vectors), which is all a merge policy needs to weigh merge work."""
    sizes = {}
    for name in names:
        try:
            sizes[name] = os.stat(Path(collection_dir) / name).st_size
        except FileNotFoundError:
            sizes[name] = 0
    return sizes


def pick_merge(sizes: dict[str, int], max_segments: int, factor: int) -> list[str]:
    """The segments a size-tiered merge should merge next (empty when there are at most `max_segments`).

    Among the segments sorted by size, every run of `factor` neighbours is a candidate; the chosen run has
    the lowest skew (largest / total) times total ** 0.05 (Lucene's TieredMergePolicy score): segments of a
    like size, small ones first. Merging the `factor` smallest instead is quadratic: a big segment that is
    among them is rewritten with a few small ones again and again. With a low skew a vector's segment grows
    by a constant factor each time it is merged, so a bulk upload of N vectors rewrites each O(log N) times.
    """
    if len(sizes) <= max_segments:
        return []
    if factor < 2 or factor > max_segments + 1:
        raise ValueError(f"factor must be in 2..{max_segments + 1} (max_segments + 1), got {factor}")
    order = sorted(sizes, key=lambda n: (sizes[n], n))
    best, best_score = 0, float("inf")
    for i in range(len(order) - factor + 1):
        run = [max(1, sizes[n]) for n in order[i : i + factor]]
        score = max(run) / sum(run) * sum(run) ** 0.05
        if score < best_score:
            best, best_score = i, score
    return order[best : best + factor]


@dataclass
class Merged:
    """What ``merge_segments`` built: the merged segment's file name (None when every vector was tombstoned)
    and the tombstoned ids it left out (they were inside the merged segments, so their tombstones can go)."""

    name: str | None
    dropped: set[int]


def merge_segments(source_dir: Path, names: Iterable[str], tombstones: set[int], out_dir: Path) -> Merged:
    """Merge the named segments of `source_dir` without the `tombstones` into one new segment written
    atomically into `out_dir` (which may be another directory: a compactor builds where ``gc_segments`` does
    not look). The inputs are left as they are."""
    source_dir = Path(source_dir)
    dead = np.fromiter(tombstones, np.int64, len(tombstones))
    all_ids, all_vecs, dropped = [], [], set()
    for name in names:
        ids, vecs = segment_vectors(read_segment(source_dir / name))
        keep = ~np.isin(ids, dead)
        dropped.update(ids[~keep].tolist())
        all_ids.append(ids[keep])
        all_vecs.append(vecs[keep])
    ids = np.concatenate(all_ids) if all_ids else np.zeros(0, np.int64)
    if ids.size == 0:
        return Merged(None, dropped)
    vecs = np.concatenate(all_vecs)
    # The same id in two segments (a re-run writer) is kept once: the first occurrence wins.
    ids, first = np.unique(ids, return_index=True)
    return Merged(write_segment(out_dir, ids, vecs[first]), dropped)


def replace_segments(m: Manifest, merged_away: Iterable[str], merged: Merged) -> Manifest | None:
    """`m` with the `merged_away` segments replaced by `merged` (where the first of them was) and the ids the
    merge dropped out of the tombstones; any other tombstone stays, also one added after the merge began that
    names an id inside the merged segment. None when `m` no longer lists every merged-away segment (the
    collection was emptied, or another compaction replaced them): the merge is then stale."""
    away = list(merged_away)
    if not away or not set(away) <= set(m.segments):
        return None
    at = min(m.segments.index(n) for n in away)
    rest = [n for n in m.segments if n not in set(away)]
    segments = rest[:at] + ([merged.name] if merged.name else []) + rest[at:]
    return Manifest(version=m.version + 1, segments=segments, tombstones=set(m.tombstones) - merged.dropped)


def compact(collection_dir: Path, m: Manifest) -> Manifest:
    """Merge all segments into one without the tombstoned ids. Old files stay until gc_segments."""
    if not m.segments:
        return Manifest(version=m.version + 1, segments=[], tombstones=set())
    merged = merge_segments(collection_dir, m.segments, m.tombstones, collection_dir)
    merged.dropped |= m.tombstones  # no segment is left that holds a tombstoned id
    return replace_segments(m, m.segments, merged)


def _segment_of(name: str) -> str | None:
    """The segment a directory entry belongs to (itself, its temporary file or a sidecar), else None."""
    n = name.lstrip(".")
    i = n.find(SEGMENT_SUFFIX)
    return n[: i + len(SEGMENT_SUFFIX)] if i >= 0 else None


def gc_segments(collection_dir: Path, keep: Manifest) -> int:
    """Remove segment and leftover temporary files not referenced by `keep`; return how many went.

    Call only after `keep` is durably committed, while holding the collection's writer lock.
    """
    collection_dir = Path(collection_dir)
    if not collection_dir.is_dir():
        return 0
    live = set(keep.segments)
    removed = 0
    for path in collection_dir.iterdir():
        seg = _segment_of(path.name)
        # Derived files `<segment>.<ext>` (the BM25 sidecars of retrieval.lexical) live and die with their segment.
        if path.name in live or seg in live or not (seg or path.name.endswith(TMP_SUFFIX)):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    if removed:
        _fsync_dir(collection_dir)
    return removed


@dataclass
class _Loaded:
    version: int
    segments: dict[str, faiss.Index]
    tombstones: np.ndarray  # sorted int64
    selector: faiss.IDSelector | None
    _keep: tuple = ()  # keeps the id array of the selector alive (FAISS does not copy it)


@dataclass
class _Collection:
    versions: OrderedDict[int, _Loaded] = field(default_factory=OrderedDict)  # least recently used first
    segments: dict[str, faiss.Index] = field(default_factory=dict)


def _search_params(
    index: faiss.Index, selector: faiss.IDSelector | None, k: int
) -> faiss.SearchParameters | None:
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexIVF):
        params = faiss.SearchParametersIVF()
        params.nprobe = inner.nprobe
    elif selector is not None:
        params = faiss.SearchParameters()
    else:
        return None
    if selector is not None:
        params.sel = selector
    return params


class IndexCache:
    """Loaded segments per collection directory; search returns (chunk_id, score) best first.

    Thread-safe. A manifest with a new version triggers a reload of what changed: new segments are
    read, unchanged ones reused. The last few versions stay ready, so requests that read the manifest
    row a moment apart (one old, one new version) do not make the cache flip between them; a
    segment is released once no retained version lists it. Tombstones are applied inside FAISS (an
    id selector) so a search still returns k live results when many ids are deleted.
    """

    KEEP_VERSIONS = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._collections: dict[str, _Collection] = {}
        self.loads = 0  # segment files read so far (tests use it to prove reuse)

    def _get(self, collection_dir: Path, manifest: Manifest) -> _Loaded:
        key = os.path.abspath(collection_dir)  # not resolve(): that stats every component, ~0.1 ms a query
        with self._lock:
            col = self._collections.setdefault(key, _Collection())
            loaded = col.versions.get(manifest.version)
            if loaded is not None:
                col.versions.move_to_end(manifest.version)
                return loaded
            segments = {}
            for name in manifest.segments:
                if name not in col.segments:
                    col.segments[name] = read_segment(Path(key) / name)
                    self.loads += 1
                segments[name] = col.segments[name]
            tomb = np.array(sorted(manifest.tombstones), dtype=np.int64)
            selector, keep = None, ()
            if tomb.size:
                batch = faiss.IDSelectorBatch(tomb.size, faiss.swig_ptr(tomb))
                selector = faiss.IDSelectorNot(batch)
                keep = (tomb, batch)
            loaded = _Loaded(manifest.version, segments, tomb, selector, keep)
            col.versions[manifest.version] = loaded
            while len(col.versions) > self.KEEP_VERSIONS:
                col.versions.popitem(last=False)
            live = {name for v in col.versions.values() for name in v.segments}
            for name in [n for n in col.segments if n not in live]:
                del col.segments[name]
            return loaded

    def evict(self, collection_dir: Path) -> None:
        with self._lock:
            self._collections.pop(os.path.abspath(collection_dir), None)

    def search(
        self, collection_dir: Path, manifest: Manifest, query: np.ndarray, k: int
    ) -> list[tuple[int, float]]:
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        loaded = self._get(collection_dir, manifest)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        best: dict[int, float] = {}
        # NOTE: FAISS parallelizes over queries, so one query runs on one core whatever the thread count;
        # extra OpenMP threads only spin, and on a busy machine that spinning made a 100k search 4x slower.
        # Concurrency comes from concurrent requests (FAISS releases the GIL). The setting is per thread.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            for index in loaded.segments.values():
                if index.ntotal == 0:
                    continue
                if q.shape[1] != index.d:
                    # vectors of another embedding model (one its collection did not record: written before
                    # the manifest row kept it): nothing to compare with; the caller's BM25 still searches them
                    if (str(collection_dir), q.shape[1], index.d) not in _DIM_WARNED:
                        _DIM_WARNED.add((str(collection_dir), q.shape[1], index.d))
                        logger.warning(
                            "%s: query vectors of %d dimensions, segments of %d: not searched by vectors (the "
                            "embedding model changed since they were written: `autoglm reembed` the collection)",
                            collection_dir, q.shape[1], index.d,
                        )  # fmt: skip
                    continue
                kk = min(k, index.ntotal)
                scores, ids = index.search(q, kk, params=_search_params(index, loaded.selector, kk))
                for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True):
                    if i >= 0 and (i not in best or s > best[i]):
                        best[i] = s
        finally:
            faiss.omp_set_num_threads(threads)
        if loaded.tombstones.size:
            dead = set(np.intersect1d(np.fromiter(best, np.int64, len(best)), loaded.tombstones).tolist())
            best = {i: s for i, s in best.items() if i not in dead}
        return sorted(best.items(), key=lambda t: (-t[1], t[0]))[:k]


_default_cache = IndexCache()


def get_index_cache() -> IndexCache:
    """The process-wide IndexCache."""
    return _default_cache
