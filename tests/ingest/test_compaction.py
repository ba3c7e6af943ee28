"""Compaction on real databases, FAISS files and BM25 sidecars: built without the writer lock (writers and deletes
go on while it works), size-tiered partial merges, and a failed or killed compaction that leaves nothing half
done behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlmodel import select

from app.db import session_scope
from app.models import Chunk
from app.search import search
from app.settings import reload_settings
from ingest import pipeline
from retrieval import index as ri
from retrieval import lexical
from retrieval.lexical import LexicalCache, sidecar_path
from tests.app.support import (  # noqa: F401
    ROOT,
    apply_env,
    base_env,
    env,
    postgres_database,
    redis_or_skip,
    restore_settings,
)
from tests.ingest.support import add_file
from tests.ingest.support import manifest as _manifest
from tests.ingest.support import new_collection as _collection

ANIMALS = [
    "quokka", "narwhal", "axolotl", "pangolin", "okapi", "tapir", "capybara", "wombat", "ibex", "lemur", "meerkat",
    "ocelot", "dugong", "gharial",
]  # fmt: skip


def _text(animal: str) -> bytes:
    return f"The {animal} enclosure is cleaned every Tuesday by the {animal} keepers.".encode()


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def db_env(request, tmp_path, monkeypatch):
    """SQLite with file locks, and a throwaway PostgreSQL database with Redis locks."""
    drop, url, redis_url = None, "", ""
    if request.param != "sqlite":
        redis_or_skip()
        url, drop = postgres_database()
        redis_url = "redis://127.0.0.1:6379/0"
    apply_env(monkeypatch, base_env(tmp_path, database_url=url, redis_url=redis_url))
    yield request.param
    monkeypatch.undo()
    restore_settings()
    if drop is not None:
        drop()


def _add(cid: int, animal: str) -> int:
    return add_file(cid, f"{animal}.txt", _text(animal))


def _ingest(cid: int, animal: str) -> int:
    doc_id = _add(cid, animal)
    assert pipeline.process_document(doc_id, schedule_compaction=False) == "ready"
    return doc_id


def _chunk_ids(doc_id: int) -> set[int]:
    with session_scope() as s:
        return set(s.exec(select(Chunk.id).where(Chunk.document_id == doc_id)).all())


def _vector_top(cid: int, animal: str) -> int | None:
    with session_scope() as s:
        hits = search(s, f"when is the {animal} enclosure cleaned", [cid], 3)
    return hits[0].document_id if hits else None


def _bm25(cid: int, animal: str, reader: LexicalCache) -> list[int]:
    cdir = pipeline.collection_dir(cid)
    return [i for i, _ in reader.search(cdir, _manifest(cid), animal, 5, pipeline.lexical_texts)]


def _files(cid: int) -> list[str]:
    return sorted(p.name for p in pipeline.collection_dir(cid).iterdir())


def _listed_files(cid: int, m: ri.Manifest) -> list[str]:
    cdir = pipeline.collection_dir(cid)
    return sorted([*m.segments, *(sidecar_path(cdir, n).name for n in m.segments)])


def test_writers_and_deletes_go_on_while_a_compaction_is_between_build_and_commit(db_env, monkeypatch):
    # (the delete below would start another round, merging everything again, at the default ratio)
    monkeypatch.setenv("AUTOGLM_COMPACTION_RATIO", "0.9")
    reload_settings()
    cid = _collection()
    docs = {a: _ingest(cid, a) for a in ANIMALS[:3]}
    before = _manifest(cid)
    beta_chunks = _chunk_ids(docs[ANIMALS[1]])
    late = _add(cid, ANIMALS[3])

    # The compactor stops once its merged segment and sidecar are built, until the test lets it go on.
    built, go = threading.Event(), threading.Event()
    build = lexical.build_sidecar

    def build_then_wait(*args, **kwargs):
        out = build(*args, **kwargs)
        if threading.current_thread().name == "compactor":
            built.set()
            assert go.wait(120)
        return out

    monkeypatch.setattr(lexical, "build_sidecar", build_then_wait)
    result: list[object] = []
    compactor = threading.Thread(
        target=lambda: result.append(pipeline.compact_collection(cid, force=True)), name="compactor"
    )
    outcomes: dict[str, object] = {}

    def run(name: str, fn) -> threading.Thread:
        t = threading.Thread(target=lambda: outcomes.__setitem__(name, fn()), name=name)
        t.start()
        return t

    compactor.start()
    try:
        assert built.wait(120), "the compaction never built its merged segment"
        deleter = run("delete", lambda: pipeline.delete_document(docs[ANIMALS[1]]))
        deleter.join(60)
        assert not deleter.is_alive(), "a delete waited for the compaction"
        writer = run("write", lambda: pipeline.process_document(late, schedule_compaction=False))
        writer.join(120)
        assert not writer.is_alive(), "a document's commit waited for the compaction"
        assert outcomes == {"delete": True, "write": "ready"}
        assert compactor.is_alive()  # still paused between its build and its commit
    finally:
        go.set()
        compactor.join(120)
    assert result == [True]

    m = _manifest(cid)
    (merged, new) = m.segments
    assert merged not in before.segments and new not in before.segments
    assert m.tombstones == beta_chunks  # deleted during the compaction, inside the merged segment: still dead
    assert _files(cid) == _listed_files(cid, m)  # merged-away files gone, no staging directory left
    reader = LexicalCache()
    alpha_chunks, late_chunks = _chunk_ids(docs[ANIMALS[0]]), _chunk_ids(late)
    assert set(_bm25(cid, ANIMALS[0], reader)) == alpha_chunks
    assert set(_bm25(cid, ANIMALS[3], reader)) == late_chunks
    assert _bm25(cid, ANIMALS[1], reader) == []
    assert reader.builds == 0  # both sidecars were in place before their manifest committed
    assert _vector_top(cid, ANIMALS[0]) == docs[ANIMALS[0]]
    assert _vector_top(cid, ANIMALS[3]) == late
    assert _vector_top(cid, ANIMALS[1]) != docs[ANIMALS[1]]


def test_partial_merges_keep_the_segment_count_bounded_and_every_chunk_findable(env, monkeypatch):  # noqa: F811
    monkeypatch.setattr(pipeline, "MAX_SEGMENTS", 4)
    # (raising=False: where there is no merge factor, the test fails on its assertions, not here)
    monkeypatch.setattr(pipeline, "MERGE_FACTOR", 3, raising=False)
    monkeypatch.setenv("AUTOGLM_COMPACTION_RATIO", "0.9")  # this test is about the segment-count trigger
    reload_settings()
    cid = _collection()
    docs, counts, kept = {}, [], 0
    for i, animal in enumerate(ANIMALS[:12]):
        docs[animal] = _ingest(cid, animal)
        if i == 1:
            gone = _chunk_ids(docs[ANIMALS[0]])
            assert pipeline.delete_document(docs[ANIMALS[0]])
            first_segment = _manifest(cid).segments[0]
        before = _manifest(cid)
        if pipeline.compact_collection(cid):
            after = _manifest(cid)
            kept += len(set(before.segments) & set(after.segments))  # left as they were by the merge
            # the deleted document's tombstones stay while its segment is unmerged, and go with it
            assert after.tombstones == (gone if first_segment in after.segments else set())
        counts.append(len(_manifest(cid).segments))
        assert _files(cid) == _listed_files(cid, _manifest(cid))
    assert max(counts) <= 4 and kept > 0, (counts, kept)
    reader = LexicalCache()
    for animal in ANIMALS[1:12]:
        assert set(_bm25(cid, animal, reader)) == _chunk_ids(docs[animal]), animal
        assert _vector_top(cid, animal) == docs[animal], animal
    assert _bm25(cid, ANIMALS[0], reader) == []


def test_a_compaction_that_fails_leaves_the_collection_as_it_was(env, monkeypatch):  # noqa: F811
    cid = _collection()
    docs = {a: _ingest(cid, a) for a in ANIMALS[:3]}
    before = _manifest(cid)
    files = _files(cid)
    write = ri.write_segment

    def write_then_fail(*args, **kwargs):  # the disk filled up once the merged segment was written
        write(*args, **kwargs)
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as mp:
        mp.setattr(ri, "write_segment", write_then_fail)
        with pytest.raises(OSError, match="No space left"):
            pipeline.compact_collection(cid, force=True)
    assert _manifest(cid) == before and _files(cid) == files  # nothing half done, nothing left behind

    def commit_fails(*args, **kwargs):  # the database went away as the compaction committed
        raise RuntimeError("server closed the connection unexpectedly")

    with monkeypatch.context() as mp:
        mp.setattr(pipeline, "save_manifest", commit_fails)
        with pytest.raises(RuntimeError, match="server closed"):
            pipeline.compact_collection(cid, force=True)
    assert _manifest(cid) == before and _files(cid) == files
    for animal, doc_id in docs.items():
        assert _vector_top(cid, animal) == doc_id
    assert pipeline.compact_collection(cid, force=True)
    assert len(_manifest(cid).segments) == 1


def test_a_killed_compaction_leaves_the_index_whole_and_its_leftovers_go(env):  # noqa: F811
    cid = _collection()
    docs = {a: _ingest(cid, a) for a in ANIMALS[:3]}
    before = _manifest(cid)
    cdir = pipeline.collection_dir(cid)
    staging_dirs = ".compaction-*"  # pipeline.STAGING_PREFIX
    victim = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from ingest import pipeline; pipeline.compact_collection({cid}, force=True)",
        ],
        cwd=ROOT,
        env={**os.environ, "AUTOGLM_TEST_PAUSE_AT": "compaction_built:600"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not [p for p in cdir.glob(f"{staging_dirs}/*.bm25") if p.is_dir()]:
            assert victim.poll() is None, "the compaction finished without pausing between build and commit"
            assert time.monotonic() < deadline, "the compaction never built its merged segment"
            time.sleep(0.1)
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)
    (staging,) = cdir.glob(staging_dirs)
    assert _manifest(cid) == before  # nothing of it committed
    # a writer of the collection commits beside the leftover (its gc never looks into the staging directory)
    docs[ANIMALS[3]] = _ingest(cid, ANIMALS[3])
    assert staging.is_dir()
    for animal, doc_id in docs.items():
        assert _vector_top(cid, animal) == doc_id
    assert pipeline.compact_collection(cid, force=True)  # the next compaction removes the leftover
    m = _manifest(cid)
    assert len(m.segments) == 1 and _files(cid) == _listed_files(cid, m)
    for animal, doc_id in docs.items():
        assert _vector_top(cid, animal) == doc_id
