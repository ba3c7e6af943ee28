"""Changing the embedding model after a collection was indexed: a writer with the new model fails its document
with a reason that names both models and the fix, searches go on (by words for that collection, with no
error), and `autoglm reembed` moves the collection to the new model, after which ingestion and the dense
search work again."""

from __future__ import annotations

import json

import numpy as np

from app.cli import main as cli_main
from app.db import session_scope
from app.models import Collection, Document, IndexManifest
from app.search import search_with_meta
from app.settings import reload_settings
from ingest import pipeline
from retrieval.index import read_segment, segment_vectors
from tests.app.support import env  # noqa: F401  (fixture)
from tests.ingest.support import add_file as _add
from tests.ingest.support import manifest as _manifest
from tests.ingest.support import new_collection
from tests.retrieval.support import model_copy

FILES = {
    "parking.md": b"# Parking\n\nThe parking garage opens at six in the morning and closes at midnight.\n",
    "printers.txt": b"Printer toner is ordered through the facilities team's request form.",
}
LATE = ("travel.txt", b"Travel expenses are reimbursed within thirty days of the trip's end.")


def _recorded(cid: int) -> dict | None:
    with session_scope() as s:
        row = s.get(IndexManifest, cid)
        return json.loads(row.embedding) if row is not None and row.embedding else None


def test_a_changed_embedding_model_is_refused_searched_by_words_and_reembedded(env, tmp_path, monkeypatch):  # noqa: F811
    cid = new_collection("kb")
    for name, data in FILES.items():
        assert pipeline.process_document(_add(cid, name, data), schedule_compaction=False) == "ready"
    old = pipeline._embedder().space
    assert _recorded(cid) == old  # the writers recorded the space of their vectors

    # the admin points the product at another model
    monkeypatch.setenv(
        "AUTOGLM_EMBEDDING_MODEL",
        str(model_copy(tmp_path, "prompted-model", {"query": "query: ", "passage": "passage: "})),
    )
    reload_settings()
    new = pipeline._embedder().space
    assert new["id"] != old["id"] and new["document_prompt"] == "passage: "

    # a document ingested now fails, saying why and what to do; nothing of it reaches the index
    late = _add(cid, *LATE)
    assert pipeline.process_document(late, schedule_compaction=False) == "failed"
    with session_scope() as s:
        doc = s.get(Document, late)
        assert doc.retryable is True and doc.chunk_count in (0, None)
        assert "'kb'" in doc.error and "all-MiniLM-L6-v2" in doc.error and "prompted-model" in doc.error
        assert "autoglm reembed kb" in doc.error and "re-index this document" in doc.error
    assert _recorded(cid) == old and len(_manifest(cid).segments) == 2

    # the commit refuses too (a worker that checked before the model changed under it)
    real = pipeline.embedding_conflict
    monkeypatch.setattr(pipeline, "embedding_conflict", _conflict_at_commit_only(real))
    _requeue(late)
    assert pipeline.process_document(late, schedule_compaction=False) == "failed"
    assert len(_manifest(cid).segments) == 2
    monkeypatch.setattr(pipeline, "embedding_conflict", real)

    # searching with the new model: no error, the collection answered by BM25 alone
    hits, res = search_with_meta("When does the parking garage open?", [cid], 3)
    assert hits and hits[0].filename == "parking.md"
    assert "dense" in res.skipped and all(h.dense_rank is None for h in res.hits)

    # re-embedding moves the collection to the new model: one segment, the new vectors, the new space
    assert cli_main(["reembed", "kb", "--quiet"]) == 0
    manifest = _manifest(cid)
    assert len(manifest.segments) == 1 and not manifest.tombstones and _recorded(cid) == new
    ids, vecs = segment_vectors(read_segment(pipeline.collection_dir(cid) / manifest.segments[0]))
    texts = dict(pipeline._ready_chunks(cid))
    np.testing.assert_allclose(vecs, pipeline._embedder().embed([texts[int(i)] for i in ids]), atol=1e-5)
    hits, res = search_with_meta("When does the parking garage open?", [cid], 3)
    assert hits[0].filename == "parking.md" and "dense" not in res.skipped
    assert res.hits[0].dense_rank is not None

    # and the failed document goes in once re-indexed
    _requeue(late)
    assert pipeline.process_document(late, schedule_compaction=False) == "ready"
    hits, _ = search_with_meta("How soon are travel expenses reimbursed?", [cid], 3)
    assert hits[0].filename == "travel.txt"


def _requeue(document_id: int) -> None:
    """What the admin page's Re-index does to a failed document."""
    with session_scope() as s:
        d = s.get(Document, document_id)
        d.status, d.attempts, d.error, d.retryable = "queued", 0, None, None
        s.add(d)
        s.commit()


def _conflict_at_commit_only(real):
    """embedding_conflict that finds nothing at the early check (no row lock asked) and the truth at the commit."""

    def check(session, collection_id, space, for_update=False, writer=False):
        return real(session, collection_id, space, for_update, writer) if for_update else None

    return check


def test_a_collection_indexed_before_the_record_is_checked_for_its_dimensions(env):  # noqa: F811
    """A collection whose vectors came before any writer recorded their model (migration 0007) takes a
    document of a model with the same dimensions (and records it), and refuses one of other dimensions."""
    from retrieval.index import add_segment, write_segment

    with session_scope() as s:
        c = Collection(name="old")
        s.add(c)
        s.commit()
        cid = c.id
        cdir = pipeline.collection_dir(cid)
        cdir.mkdir(parents=True)
        v = np.random.default_rng(0).standard_normal((3, 128)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        pipeline.save_manifest(
            s, cid, add_segment(pipeline.load_manifest(s, cid), write_segment(cdir, np.array([1, 2, 3]), v))
        )
        s.commit()
    assert _recorded(cid) is None
    doc = _add(cid, *LATE)
    assert pipeline.process_document(doc, schedule_compaction=False) == "failed"
    with session_scope() as s:
        error = s.get(Document, doc).error
    assert "its passages have 128 dimensions (the model that made them was not recorded)" in error, error
    assert "not 384 as all-MiniLM-L6-v2's" in error and "autoglm reembed old" in error
    assert len(_manifest(cid).segments) == 1 and _recorded(cid) is None
    # a collection of vectors with this model's dimensions: taken, and the space recorded from then on
    with session_scope() as s:
        w = np.random.default_rng(1).standard_normal((2, 384)).astype(np.float32)
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        pipeline.save_manifest(
            s, cid, add_segment(type(_manifest(cid))(), write_segment(cdir, np.array([7, 8]), w))
        )
        s.commit()
    for name, data in FILES.items():
        assert pipeline.process_document(_add(cid, name, data), schedule_compaction=False) == "ready"
    assert _recorded(cid) == pipeline._embedder().space
