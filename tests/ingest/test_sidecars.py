"""The ingestion writer's BM25 sidecars: written before the manifest that lists a new segment commits (a reader
never builds one for a fresh segment), the same as a reader would build from the committed rows, never failing
a document, and collected with their segment when the commit never came."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from app.db import session_scope
from app.search import search
from ingest import pipeline
from retrieval import lexical
from retrieval.lexical import LexicalCache, get_lexical_cache, load_sidecar, sidecar_path
from tests.app.support import env  # noqa: F401  (fixture)
from tests.ingest.support import add_file as _add
from tests.ingest.support import manifest as _manifest
from tests.ingest.support import new_collection as _collection

FILES = {
    # a title of its own and a heading path
    "handbook.md": b"# Employee handbook\n\n## Parking\n\nThe parking garage opens at six in the morning.\n",
    # no title: the file name's
    "printer_supplies.txt": b"Printer toner is ordered through the facilities team's request form.",
}


@pytest.fixture
def published(monkeypatch):
    """For every manifest the pipeline saves, the segments it lists whose sidecar was not on disk as it was
    saved (before its commit); and warm_lexical (which builds sidecars after the commit) made a no-op."""
    missing: list[list[str]] = []
    save = pipeline.save_manifest

    def checked_save(session, collection_id, manifest, **kw):
        cdir = pipeline.collection_dir(collection_id)
        missing.append([n for n in manifest.segments if not (sidecar_path(cdir, n) / "ids.npy").is_file()])
        save(session, collection_id, manifest, **kw)

    monkeypatch.setattr(pipeline, "save_manifest", checked_save)
    monkeypatch.setattr(pipeline, "warm_lexical", lambda collection_id: None)
    return missing


def test_a_new_segment_is_published_with_its_sidecar(env, published, tmp_path):  # noqa: F811
    cid = _collection()
    ids = {name: _add(cid, name, data) for name, data in FILES.items()}
    for doc_id in ids.values():
        assert pipeline.process_document(doc_id, schedule_compaction=False) == "ready"
    assert published == [[], []]  # each manifest row saved with every segment's sidecar in place
    manifest, cdir = _manifest(cid), pipeline.collection_dir(cid)
    assert len(manifest.segments) == 2
    # the writer's sidecar is the one a reader builds from the committed rows (titles and headings included)
    for name in manifest.segments:
        ref_dir = tmp_path / "ref"
        ref_dir.mkdir()
        shutil.copy(cdir / name, ref_dir / name)
        ref = lexical.build_sidecar(ref_dir, name, pipeline.lexical_texts)
        got = load_sidecar(cdir, name)
        assert got.ids.tolist() == ref.ids.tolist()
        assert got.model.vocab_dict == ref.model.vocab_dict
        for key in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(np.asarray(got.model.scores[key]), ref.model.scores[key])
        shutil.rmtree(ref_dir)
    # a reader that searches the new segments right away builds nothing (the API's cache, and a fresh one)
    builds = get_lexical_cache().builds
    with session_scope() as s:
        hits = search(s, "employee handbook parking garage", [cid], 5)
    assert hits[0].document_id == ids["handbook.md"]
    assert get_lexical_cache().builds == builds
    reader = LexicalCache()
    assert reader.search(cdir, manifest, "printer supplies toner", 1, pipeline.lexical_texts)
    assert reader.builds == 0


def test_a_failed_bm25_build_does_not_fail_the_document(env, monkeypatch, caplog):  # noqa: F811
    import bm25s

    cid = _collection()
    doc_id = _add(cid, "printer_supplies.txt", FILES["printer_supplies.txt"])

    def broken(self, *args, **kwargs):
        raise RuntimeError("bm25s broke")

    with monkeypatch.context() as m, caplog.at_level("WARNING", logger="ingest.pipeline"):
        m.setattr(bm25s.BM25, "index", broken)
        assert pipeline.process_document(doc_id, schedule_compaction=False) == "ready"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"the BM25 index of document {doc_id} failed (built later from the committed rows)" in warnings
    manifest, cdir = _manifest(cid), pipeline.collection_dir(cid)
    assert not sidecar_path(cdir, manifest.segments[0]).exists()  # warm_lexical failed too
    reader = LexicalCache()  # bm25s mended: the reader builds it
    hits = reader.search(cdir, manifest, "printer toner", 1, pipeline.lexical_texts)
    assert reader.builds == 1 and len(hits) == 1


def test_a_failed_sidecar_write_is_built_from_the_rows_after_the_commit(env, monkeypatch, caplog):  # noqa: F811
    cid = _collection()
    doc_id = _add(cid, "printer_supplies.txt", FILES["printer_supplies.txt"])

    write, calls = lexical.write_sidecar, []

    def disk_full_once(*args, **kwargs):  # the disk was full for a moment
        calls.append(args[1])
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return write(*args, **kwargs)

    monkeypatch.setattr(lexical, "write_sidecar", disk_full_once)
    with caplog.at_level("WARNING", logger="ingest.pipeline"):
        assert pipeline.process_document(doc_id, schedule_compaction=False) == "ready"
    assert any(
        r.getMessage().endswith(f"(document {doc_id}) failed (built later from the committed rows)")
        for r in caplog.records
    )
    monkeypatch.undo()
    manifest, cdir = _manifest(cid), pipeline.collection_dir(cid)
    # warm_lexical built it from the committed rows, after the commit
    assert calls == [manifest.segments[0]] * 2
    assert (sidecar_path(cdir, manifest.segments[0]) / "ids.npy").is_file()


def test_the_sidecar_of_a_segment_never_committed_is_collected(env, monkeypatch):  # noqa: F811
    cid = _collection()
    first = _add(cid, "handbook.md", FILES["handbook.md"])

    def crash(session, collection_id, manifest, **kw):  # the worker dies between its files and its commit
        raise RuntimeError("worker lost")

    with monkeypatch.context() as m:
        m.setattr(pipeline, "save_manifest", crash)
        with pytest.raises(RuntimeError, match="worker lost"):
            pipeline.process_document(first, schedule_compaction=False)
    cdir = pipeline.collection_dir(cid)
    assert _manifest(cid).segments == []
    (orphan,) = [p.name for p in cdir.glob("seg-*.faiss")]
    assert (sidecar_path(cdir, orphan) / "ids.npy").is_file()

    # the next commit into the collection (here: the retry) removes both under the lock
    assert pipeline.process_document(first, schedule_compaction=False) == "ready"
    (live,) = _manifest(cid).segments
    assert live != orphan
    assert sorted(p.name for p in cdir.iterdir()) == sorted([live, sidecar_path(cdir, live).name])


def test_compaction_publishes_the_merged_segment_with_its_sidecar(env, published):  # noqa: F811
    cid = _collection()
    ids = {name: _add(cid, name, data) for name, data in FILES.items()}
    for doc_id in ids.values():
        assert pipeline.process_document(doc_id, schedule_compaction=False) == "ready"
    assert pipeline.delete_document(ids["printer_supplies.txt"])
    assert pipeline.compact_collection(cid, force=True)
    (merged,) = _manifest(cid).segments
    assert published[-1] == [] and all(not m for m in published)
    cdir = pipeline.collection_dir(cid)
    assert sorted(p.name for p in cdir.iterdir()) == sorted([merged, sidecar_path(cdir, merged).name])
    reader = LexicalCache()
    hits = reader.search(cdir, _manifest(cid), "parking garage", 5, pipeline.lexical_texts)
    assert reader.builds == 0 and len(hits) == 1
