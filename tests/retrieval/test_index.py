"""Segment index on real FAISS files: exact ids, tombstones, versions, compaction, gc, crash leftovers."""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np
import pytest

from retrieval import index as ri
from retrieval.index import (
    IndexCache,
    Manifest,
    add_segment,
    add_tombstones,
    compact,
    gc_segments,
    read_segment,
    write_segment,
)

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, dim: int = DIM, clusters: int = 50) -> np.ndarray:
    centres = unit(rng, clusters, dim)
    x = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)).astype(
        np.float32
    ) * 0.6 / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact(ids: np.ndarray, x: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    order = np.argsort(-(x @ q), kind="stable")[:k]
    return ids[order].tolist()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_write_segment_is_atomic_and_search_returns_exact_ids(tmp_path, rng):
    ids = np.arange(1000, 1200, dtype=np.int64)
    x = unit(rng, 200)
    name = write_segment(tmp_path, ids, x)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind
    m = add_segment(Manifest(), name)
    cache = IndexCache()
    for i in (0, 57, 199):
        hits = cache.search(tmp_path, m, x[i], 5)
        assert [h for h, _ in hits] == exact(ids, x, x[i], 5)
        assert hits[0] == (int(ids[i]), pytest.approx(1.0, abs=1e-5))


def test_manifest_is_a_value_with_versions_and_json(tmp_path, rng):
    m0 = Manifest()
    m1 = add_segment(m0, "seg-a.faiss")
    m2 = add_tombstones(m1, [5, 7])
    m3 = add_segment(m2, "seg-b.faiss")
    assert (m0.version, m1.version, m2.version, m3.version) == (0, 1, 2, 3)
    assert m0.segments == [] and m1.tombstones == set()  # earlier values unchanged
    assert Manifest.from_json(m3.to_json()) == m3 == Manifest(3, ["seg-a.faiss", "seg-b.faiss"], {5, 7})
    assert Manifest.from_json("") == Manifest()
    with pytest.raises(ValueError, match="already in manifest"):
        add_segment(m3, "seg-a.faiss")


def test_tombstones_hide_deleted_ids_at_once_and_k_live_results_remain(tmp_path, rng):
    ids = np.arange(300, dtype=np.int64)
    x = unit(rng, 300)
    m = add_segment(Manifest(), write_segment(tmp_path, ids, x))
    cache = IndexCache()
    q = x[10]
    before = [h for h, _ in cache.search(tmp_path, m, q, 10)]
    dead = before[:5]
    m2 = add_tombstones(m, dead)
    after = [h for h, _ in cache.search(tmp_path, m2, q, 10)]
    assert not set(dead) & set(after)
    live = ids[~np.isin(ids, dead)]
    assert after == exact(live, x[live], q, 10)


def test_readers_reload_on_a_new_version_and_reuse_loaded_segments(tmp_path, rng):
    cache = IndexCache()
    x1, x2 = unit(rng, 50), unit(rng, 50)
    m1 = add_segment(Manifest(), write_segment(tmp_path, np.arange(50), x1))
    assert cache.search(tmp_path, m1, x2[3], 1)[0][0] != 103
    assert cache.loads == 1
    cache.search(tmp_path, m1, x1[0], 3)
    assert cache.loads == 1  # same version: nothing read again
    m2 = add_segment(m1, write_segment(tmp_path, np.arange(100, 150), x2))
    assert cache.search(tmp_path, m2, x2[3], 1)[0][0] == 103
    assert cache.loads == 2  # only the new segment was read


def test_compaction_merges_drops_tombstones_and_gc_reclaims(tmp_path, rng):
    cache = IndexCache()
    m = Manifest()
    all_ids, all_x = [], []
    for s in range(3):
        ids = np.arange(s * 100, s * 100 + 80, dtype=np.int64)
        x = unit(rng, 80)
        m = add_segment(m, write_segment(tmp_path, ids, x))
        all_ids.append(ids)
        all_x.append(x)
    ids, x = np.concatenate(all_ids), np.concatenate(all_x)
    dead = [0, 1, 105, 279]
    m = add_tombstones(m, dead)
    queries = unit(rng, 20)
    before = [cache.search(tmp_path, m, q, 10) for q in queries]

    mc = compact(tmp_path, m)
    assert mc.version == m.version + 1 and len(mc.segments) == 1 and mc.tombstones == set()
    merged_ids, _ = ri.segment_vectors(read_segment(tmp_path / mc.segments[0]))
    assert sorted(merged_ids.tolist()) == sorted(set(ids.tolist()) - set(dead))
    after = [cache.search(tmp_path, mc, q, 10) for q in queries]
    assert [[i for i, _ in h] for h in after] == [[i for i, _ in h] for h in before]

    assert len(list(tmp_path.glob("*.faiss"))) == 4  # old files stay until the manifest is committed
    assert gc_segments(tmp_path, mc) == 3
    assert [p.name for p in tmp_path.iterdir()] == mc.segments
    assert cache.search(tmp_path, mc, x[50], 1)[0][0] == ids[50]


def test_compacting_everything_away_leaves_an_empty_manifest(tmp_path, rng):
    m = add_segment(Manifest(), write_segment(tmp_path, np.arange(10), unit(rng, 10)))
    m = compact(tmp_path, add_tombstones(m, range(10)))
    assert m.segments == [] and m.tombstones == set()
    assert IndexCache().search(tmp_path, m, unit(rng, 1)[0], 5) == []


def test_leftover_tmp_from_a_crashed_writer_is_never_loaded(tmp_path, rng):
    x = unit(rng, 40)
    name = write_segment(tmp_path, np.arange(40), x)
    # What a writer killed mid-write leaves: a truncated temporary file next to the real segments.
    good = (tmp_path / name).read_bytes()
    crashed = tmp_path / ".seg-deadbeef.faiss.tmp"
    crashed.write_bytes(good[: len(good) // 3])
    m = add_segment(Manifest(), name)
    cache = IndexCache()
    assert cache.search(tmp_path, m, x[7], 1)[0][0] == 7
    assert cache.loads == 1
    assert gc_segments(tmp_path, m) == 1 and not crashed.exists()
    assert (tmp_path / name).exists()


def test_failed_write_leaves_no_file(tmp_path, rng, monkeypatch):
    def disk_full(index, path):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(faiss, "write_index", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_segment(tmp_path, np.arange(5), unit(rng, 5))
    assert list(tmp_path.iterdir()) == []


def test_same_id_in_two_segments_is_returned_once(tmp_path, rng):
    x = unit(rng, 20)
    m = add_segment(Manifest(), write_segment(tmp_path, np.arange(20), x))
    m = add_segment(m, write_segment(tmp_path, np.arange(20), x))
    hits = IndexCache().search(tmp_path, m, x[4], 5)
    assert [h for h, _ in hits] == exact(np.arange(20), x, x[4], 5)


def test_missing_segment_raises_file_not_found(tmp_path, rng):
    m = add_segment(Manifest(), write_segment(tmp_path, np.arange(5), unit(rng, 5)))
    os.unlink(tmp_path / m.segments[0])
    with pytest.raises(FileNotFoundError, match="missing"):
        IndexCache().search(tmp_path, m, unit(rng, 1)[0], 3)


def test_callers_mistakes_raise_value_error(tmp_path, rng):
    with pytest.raises(ValueError, match="unique"):
        write_segment(tmp_path, np.array([1, 1]), unit(rng, 2))
    with pytest.raises(ValueError, match="disagree"):
        write_segment(tmp_path, np.arange(3), unit(rng, 2))
    with pytest.raises(ValueError, match="L2-normalized"):
        write_segment(tmp_path, np.arange(2), 2 * unit(rng, 2))
    m = add_segment(Manifest(), write_segment(tmp_path, np.arange(5), unit(rng, 5)))
    with pytest.raises(ValueError, match="k must be positive"):
        IndexCache().search(tmp_path, m, unit(rng, 1)[0], 0)


def test_a_query_of_another_embedding_models_dimensions_finds_nothing_and_warns_once(tmp_path, rng, caplog):
    """Segments written before the embedding model changed (to one of other dimensions, in a collection whose
    manifest row never recorded the model) are skipped by a query of the new model's dimensions, with one
    warning naming the fix, instead of failing every search; segments of its own dimensions still answer."""
    old = write_segment(tmp_path, np.arange(5), unit(rng, 5))
    x = unit(rng, 3, DIM + 8)
    m = add_segment(add_segment(Manifest(), old), write_segment(tmp_path, np.arange(10, 13), x))
    cache = IndexCache()
    with caplog.at_level("WARNING", logger="retrieval.index"):
        for _ in range(3):
            assert [i for i, _ in cache.search(tmp_path, m, x[1], 2)] == [
                11,
                exact(np.arange(10, 13), x, x[1], 2)[1],
            ]
    warned = [r.getMessage() for r in caplog.records if "dimensions" in r.getMessage()]
    assert len(warned) == 1 and "autoglm reembed" in warned[0], warned


def test_large_segments_use_ivf_with_high_recall_and_tombstones(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(ri, "FLAT_MAX_VECTORS", 2_000)
    n = 20_000
    ids = np.arange(n, dtype=np.int64) * 3 + 11
    x = clustered(rng, n)
    m = add_segment(Manifest(), write_segment(tmp_path, ids, x))
    seg = read_segment(tmp_path / m.segments[0])
    assert isinstance(faiss.downcast_index(seg.index), faiss.IndexIVFFlat)
    cache = IndexCache()
    queries = clustered(np.random.default_rng(1), 100)
    found = [[i for i, _ in cache.search(tmp_path, m, q, 10)] for q in queries]
    hits = sum(len(set(f) & set(exact(ids, x, q, 10))) for f, q in zip(found, queries, strict=True))
    assert hits / 1000 >= 0.95
    assert cache.search(tmp_path, m, x[123], 1)[0][0] == ids[123]

    dead = [f[0] for f in found[:20]]
    m2 = add_tombstones(m, dead)
    for q in queries[:20]:
        got = [i for i, _ in cache.search(tmp_path, m2, q, 10)]
        assert len(got) == 10 and not set(got) & set(dead)

    mc = compact(tmp_path, m2)  # reconstructs vectors from the IVF lists
    merged_ids, merged_x = ri.segment_vectors(read_segment(tmp_path / mc.segments[0]))
    assert sorted(merged_ids.tolist()) == sorted(set(ids.tolist()) - set(dead))
    pos = {int(i): k for k, i in enumerate(ids)}
    np.testing.assert_array_equal(merged_x, x[[pos[int(i)] for i in merged_ids]])


def test_concurrent_readers_see_whole_versions_while_a_writer_adds_segments(tmp_path, rng):
    """Searches from several threads while new versions land: every answer matches one version."""
    import threading

    cache = IndexCache()
    x = unit(rng, 400)
    q = x[0]
    manifests = [add_segment(Manifest(), write_segment(tmp_path, np.arange(100), x[:100]))]
    for s in range(1, 4):
        manifests.append(
            add_segment(
                manifests[-1],
                write_segment(tmp_path, np.arange(s * 100, s * 100 + 100), x[s * 100 : (s + 1) * 100]),
            )
        )
    expected = {m.version: exact(np.arange(100 * m.version), x[: 100 * m.version], q, 5) for m in manifests}
    current = [manifests[0]]
    errors: list[str] = []

    def reader():
        # at least 200 searches, and on until the last version has been searched (on a busy machine a reader's
        # 200 could all run before the writer publishes a second version)
        n = 0
        while True:
            m = current[0]
            got = [i for i, _ in cache.search(tmp_path, m, q, 5)]
            if got != expected[m.version]:
                errors.append(f"version {m.version}: {got} != {expected[m.version]}")
            n += 1
            if n >= 200 and m.version == manifests[-1].version:
                break

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for m in manifests[1:]:
        current[0] = m
    for t in threads:
        t.join()
    assert errors == []
    assert cache.loads == 4  # each segment read once, whatever the interleaving


def test_readers_on_neighbouring_versions_do_not_thrash(tmp_path, rng):
    """Requests that read the manifest a moment apart alternate old/new versions: nothing is re-read."""
    cache = IndexCache()
    x = unit(rng, 60)
    m1 = add_segment(Manifest(), write_segment(tmp_path, np.arange(30), x[:30]))
    m2 = add_tombstones(add_segment(m1, write_segment(tmp_path, np.arange(30, 60), x[30:])), [31])
    for _ in range(10):
        assert cache.search(tmp_path, m1, x[31], 1)[0][0] != 31
        assert cache.search(tmp_path, m2, x[30], 1)[0][0] == 30
        assert 31 not in [i for i, _ in cache.search(tmp_path, m2, x[31], 5)]
    assert cache.loads == 2


def test_size_tiered_merges_keep_a_bulk_upload_loglinear_and_the_segment_count_bounded():
    # A bulk upload of equal documents, one segment each, a merge whenever there are more than 16: each vector
    # is rewritten a few times (the old "merge everything" rewrote the whole collection every 16 documents,
    # ~N / 32 times a vector; merging the 10 smallest segments instead: 14 times at 2,000 documents).
    def upload(n_docs: int) -> tuple[float, int]:
        sizes: dict[str, int] = {}
        rewritten = most = 0
        for d in range(n_docs):
            sizes[f"d{d}"] = 30
            if names := ri.pick_merge(sizes, 16, 10):
                assert len(names) == 10 and len(sizes) == 17
                sizes[f"m{d}"] = merged = sum(sizes.pop(n) for n in names)
                rewritten += merged
            most = max(most, len(sizes))
        assert ri.pick_merge(sizes, 16, 10) == []
        return rewritten / (30 * n_docs), most

    small, big = upload(200), upload(2000)
    assert small[1] <= 16 and big[1] <= 16
    assert big[0] < 5 and big[0] < 2.5 * small[0]  # log growth: 10x the documents, not 10x the rewrites


def test_pick_merge_takes_like_sized_segments():
    sizes = {f"s{i}": 1000 for i in range(7)} | {f"t{i}": 10 + i for i in range(10)}
    assert sorted(ri.pick_merge(sizes, 16, 10)) == [f"t{i}" for i in range(10)]
    sizes = {f"s{i}": 1000 + i for i in range(10)} | {f"t{i}": 10 for i in range(7)}
    # ten big ones, not three big ones with the seven small ones
    assert sorted(ri.pick_merge(sizes, 16, 10)) == [f"s{i}" for i in range(10)]
    assert ri.pick_merge(dict(list(sizes.items())[:16]), 16, 10) == []
    with pytest.raises(ValueError, match="factor must be in 2..17"):
        ri.pick_merge(sizes, 16, 18)


def test_a_partial_merge_keeps_the_other_segments_and_their_tombstones(tmp_path, rng):
    cache = IndexCache()
    m, segs = Manifest(), {}
    for s in range(4):
        ids = np.arange(s * 100, s * 100 + 50, dtype=np.int64)
        segs[s] = (ids, unit(rng, 50))
        m = add_segment(m, write_segment(tmp_path, *segs[s]))
    m = add_tombstones(m, [3, 104, 302])  # in segments 0, 1 and 3
    staging = tmp_path / ".staging"
    staging.mkdir()
    merged = ri.merge_segments(tmp_path, m.segments[:2], m.tombstones, staging)
    assert merged.dropped == {3, 104} and [p.name for p in staging.iterdir()] == [merged.name]
    assert gc_segments(tmp_path, m) == 0  # the collection's gc never looks into the staging directory

    # meanwhile: a new segment, and a tombstone for an id inside the merged segment
    m = add_segment(m, write_segment(tmp_path, np.arange(900, 910), unit(rng, 10)))
    m = add_tombstones(m, [7])
    os.replace(staging / merged.name, tmp_path / merged.name)
    mm = ri.replace_segments(m, m.segments[:2], merged)
    assert mm.version == m.version + 1
    assert mm.segments == [merged.name, *m.segments[2:]] and mm.tombstones == {7, 302}
    got, _ = ri.segment_vectors(read_segment(tmp_path / merged.name))
    assert sorted(got.tolist()) == sorted((set(range(50)) | set(range(100, 150))) - {3, 104})
    for s, dead in ((0, 7), (3, 302)):
        ids, x = segs[s]
        i = int(np.flatnonzero(ids == dead)[0])
        assert dead not in [h for h, _ in cache.search(tmp_path, mm, x[i], 5)]
        assert cache.search(tmp_path, mm, x[i + 1], 1)[0][0] == ids[i + 1]
    assert ri.replace_segments(mm, m.segments[:2], merged) is None  # stale: they were merged already
