"""ingest.pipeline without Celery: idempotency, compaction, the attempts guard, and the task contract."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from app.db import session_scope
from app.models import Chunk, Collection, DocStatus, Document
from app.search import search
from app.settings import settings
from app.uploads import add_document
from ingest import names, pipeline, tasks
from tests.app.support import env  # noqa: F401  (fixture)

TEXTS = {
    "alpha.txt": b"The parking garage opens at six in the morning and closes at midnight.",
    "beta.txt": b"Printer toner is ordered through the facilities team's request form.",
    "gamma.txt": b"The security team rotates the office door codes on the first of each month.",
}


def _ingest_all() -> tuple[int, dict[str, int]]:
    with session_scope() as s:
        c = Collection(name="kb")
        s.add(c)
        s.commit()
        ids = {}
        for name, data in TEXTS.items():
            doc, new = add_document(s, c.id, name, data, None)
            assert new
            ids[name] = doc.id
        s.commit()
    for doc_id in ids.values():
        assert pipeline.process_document(doc_id, schedule_compaction=False) == "ready"
    return c.id, ids


def _hits(cid: int, query: str) -> list[int]:
    with session_scope() as s:
        return [h.document_id for h in search(s, query, [cid], 10)]


def test_rerun_of_a_finished_document_changes_nothing(env):  # noqa: F811
    cid, ids = _ingest_all()
    with session_scope() as s:
        before = s.exec(select(Chunk.id).order_by(Chunk.id)).all()
        manifest = pipeline.load_manifest(s, cid)
    assert pipeline.process_document(ids["alpha.txt"]) == "ready"  # a redelivered task returns early
    with session_scope() as s:
        assert s.exec(select(Chunk.id).order_by(Chunk.id)).all() == before
        assert pipeline.load_manifest(s, cid).version == manifest.version
    assert pipeline.process_document(10_000) == "missing"


def test_delete_then_compaction_reclaims_space_and_keeps_search_right(env):  # noqa: F811
    cid, ids = _ingest_all()
    cdir = Path(settings.index_dir) / str(cid)
    assert len(list(cdir.glob("*.faiss"))) == 3
    assert pipeline.delete_document(ids["alpha.txt"]) and pipeline.delete_document(ids["beta.txt"])
    assert not pipeline.delete_document(ids["beta.txt"])
    with session_scope() as s:
        m = pipeline.load_manifest(s, cid)
        assert len(m.tombstones) == 2 and len(m.segments) == 3
        assert pipeline._needs_compaction(s, cid, m)  # 2 of 3 vectors are dead
    assert _hits(cid, "when does the parking garage open") == [ids["gamma.txt"]]

    assert pipeline.compact_collection(cid)
    with session_scope() as s:
        m = pipeline.load_manifest(s, cid)
    assert (len(m.segments), m.tombstones) == (1, set())
    assert [p.name for p in cdir.glob("*.faiss")] == m.segments  # old files garbage-collected
    assert _hits(cid, "door codes rotation") == [ids["gamma.txt"]]
    assert not pipeline.compact_collection(cid)  # nothing left to do


def test_a_document_that_keeps_killing_workers_ends_failed(env):  # noqa: F811
    cid, ids = _ingest_all()
    with session_scope() as s:
        doc = Document(collection_id=cid, filename="x.txt", sha256="1" * 64, status=DocStatus.processing)
        doc.attempts = settings.max_attempts
        s.add(doc)
        s.commit()
    assert pipeline.process_document(doc.id) == "failed"
    with session_scope() as s:
        d = s.get(Document, doc.id)
    assert d.error.startswith(f"Processing was started {settings.max_attempts} times without finishing")
    assert d.retryable is True  # the workers stopped, not the file: Re-index may finish it


def test_task_contract_and_final_failure_reason(env):  # noqa: F811
    t = tasks.process_document_task
    assert (t.name, t.acks_late, t.reject_on_worker_lost, t.max_retries) == (
        names.PROCESS_DOCUMENT, True, True, settings.task_max_retries,
    )  # fmt: skip
    assert t.retry_backoff and t.retry_jitter and t.autoretry_for == tasks.TRANSIENT
    assert tasks.app.conf.task_soft_time_limit < tasks.app.conf.task_time_limit
    assert tasks.app.conf.task_routes[names.PROCESS_DOCUMENT] == {"queue": names.QUEUE_INGEST}
    with session_scope() as s:
        c = Collection(name="c")
        s.add(c)
        s.flush()
        doc = Document(collection_id=c.id, filename="y.txt", sha256="2" * 64, status=DocStatus.processing)
        s.add(doc)
        s.commit()
    from celery.exceptions import SoftTimeLimitExceeded

    t.on_failure(SoftTimeLimitExceeded(), "task-id", [doc.id], {}, None)
    with session_scope() as s:
        d = s.get(Document, doc.id)
    assert (d.status, d.error, d.retryable) == (
        "failed",
        f"Processing took longer than {settings.task_soft_time_limit} s and was stopped.",
        True,
    )


def test_a_failure_says_whether_processing_the_same_file_again_can_help(env, monkeypatch):  # noqa: F811
    # A cut-off or encrypted file fails again however often it is re-indexed: only another file helps. Running
    # out of memory may not happen on the next try (the worker was busy beside it).
    import ingest.parsers as parsers
    from tests.ingest import parser_fixtures as F

    pdf = F.make_pdf(["Leave is 28 days a year.", "Carry-over is five days."])
    files = {
        "cut.pdf": pdf[: len(pdf) // 2],
        "locked.pdf": F.make_encrypted_pdf(),
        "scan.pdf": F.make_image_only_pdf(),
        "big.txt": b"A text that the parser runs out of memory on.",
    }
    with session_scope() as s:
        c = Collection(name="kb")
        s.add(c)
        s.commit()
        ids = {name: add_document(s, c.id, name, data, None)[0].id for name, data in files.items()}
        s.commit()

    def out_of_memory(data: bytes):
        raise MemoryError

    monkeypatch.setitem(parsers._PARSERS, "text", out_of_memory)
    for name in files:
        assert pipeline.process_document(ids[name]) == "failed", name
    monkeypatch.undo()
    with session_scope() as s:
        got = {name: (s.get(Document, i).retryable, s.get(Document, i).error) for name, i in ids.items()}
    assert got["cut.pdf"][0] is False and "ends early" in got["cut.pdf"][1]
    assert got["locked.pdf"][0] is False and "password-protected" in got["locked.pdf"][1]
    assert got["scan.pdf"][0] is False and "only images" in got["scan.pdf"][1]
    assert got["big.txt"] == (True, "The document is too large to process in memory.")
    # a retry (Re-index queues it again) succeeds, and a ready document has no such answer
    with session_scope() as s:
        d = s.get(Document, ids["big.txt"])
        d.status = DocStatus.queued
        s.commit()
    assert pipeline.process_document(ids["big.txt"]) == "ready"
    with session_scope() as s:
        assert s.get(Document, ids["big.txt"]).retryable is None


def test_the_same_blob_stored_by_two_threads_at_once(env):  # noqa: F811
    # Both wrote ".<sha>.<pid>.tmp" (one process, two request threads): the second rename found it gone, and
    # the upload answered 500 (two admins, or two tabs, uploading the same file)
    import threading

    from ingest import storage

    data = bytes(range(256)) * 40_000  # 10 MB: the writes overlap
    start, errors = threading.Barrier(4), []

    def put() -> None:
        start.wait()
        try:
            storage.put_blob(data)
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert storage.read_blob(storage.sha256_hex(data)) == data
    assert [p.name for p in storage.blob_path(storage.sha256_hex(data)).parent.iterdir()] == [
        storage.sha256_hex(data)
    ]  # no temporary file left


def test_a_gpu_that_is_not_there_does_not_fail_ingestion(env, monkeypatch, caplog):  # noqa: F811
    """AUTOGLM_EMBED_DEVICE names a GPU this machine lacks: documents are embedded on the CPU, with a warning,
    and are found by search (whose query vectors come from the CPU embedder)."""
    from app.settings import reload_settings

    monkeypatch.setenv("AUTOGLM_EMBED_DEVICE", "cuda:99")
    reload_settings()
    with caplog.at_level("WARNING", logger="retrieval.embeddings"):
        cid, ids = _ingest_all()
    assert any("CUDA device 'cuda:99' unusable" in r.getMessage() for r in caplog.records)
    with session_scope() as s:
        assert {d.status for d in s.exec(select(Document))} == {DocStatus.ready}
    assert _hits(cid, "when does the parking garage open?")[0] == ids["alpha.txt"]
