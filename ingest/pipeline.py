"""Plain functions behind the Celery tasks (they run without Celery too: CLI, tests).

process_document: parse -> chunk -> embed -> (under the collection lock) write a FAISS segment and its BM25
sidecar, add Chunk rows, bump the manifest row, mark the document ready: one commit. Every step re-reads state,
so a redelivered task either finishes the work or returns early. Long work (parse, embed) never holds a DB
session open.

While it works, a heartbeat thread keeps the document's `updated_at` fresh (ingest.recovery re-queues a
"processing" document whose heartbeat stopped). Each progress write re-reads the status: a document cancelled,
deleted or finished by another delivery meanwhile stops the work there, before anything reaches the index.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import case, func
from sqlmodel import Session, delete, select, update

from app.db import session_scope
from app.models import (
    Chunk,
    Collection,
    DocStatus,
    Document,
    DocumentText,
    IndexManifest,
    title_from_filename,
    utcnow,
)
from app.settings import settings
from app.testhooks import pause_seconds
from ingest import storage
from ingest.locks import collection_lock, compaction_lock

log = logging.getLogger(__name__)
DONE = (DocStatus.ready, DocStatus.failed, DocStatus.deleting, DocStatus.cancelled)
# Segments per collection before compaction merges some (search cost grows with the segment count).
MAX_SEGMENTS = 16
# Segments one size-tiered merge takes (retrieval.index.pick_merge): Lucene's default. A merge brings 17 down
# to 8, so it runs once every 9 new segments; in a simulated bulk upload of 2,000 and 20,000 equal documents each
# vector was rewritten 3-6 times (a factor of 4: 4-7 times, with 3x the merges; merging the 10 smallest instead
# of like-sized ones: 14 and 139 times, quadratic).
MERGE_FACTOR = 10
# Merge rounds one compaction runs at most (a bulk upload keeps adding segments while it works).
MAX_ROUNDS = 32
# A compaction's working directory inside the collection's, which gc_segments never looks into.
STAGING_PREFIX = ".compaction-"


# --- manifest row <-> retrieval.index.Manifest ------------------------------------------------------
def load_manifest(session: Session, collection_id: int, for_update: bool = False):
    """The collection's manifest; for_update locks its row until the commit (PostgreSQL), so two writers
    can never both extend the same version, even if the collection lock expired under one of them."""
    from retrieval.index import Manifest

    row = session.get(IndexManifest, collection_id, with_for_update=for_update)
    return Manifest.from_json(row.body) if row is not None and row.body else Manifest()


def save_manifest(session: Session, collection_id: int, manifest, embedding: dict | None = None) -> None:
    """Save the manifest in the collection's row; ``embedding``: record it as the embedding space of the
    collection's vectors (``Embedder.space``; a writer whose segment it committed checked it first:
    ``embedding_conflict``), None: leave the row's as it is."""
    row = session.get(IndexManifest, collection_id)
    if row is None:
        row = IndexManifest(collection_id=collection_id)
    row.version = manifest.version
    row.body = manifest.to_json()
    if embedding is not None:
        row.embedding = json.dumps(embedding, sort_keys=True)
    row.updated_at = utcnow()
    session.add(row)


def collection_dir(collection_id: int) -> Path:
    return settings.index_dir / str(collection_id)


def embedding_conflict(
    session: Session, collection_id: int, space: dict, for_update: bool = False, writer: bool = False
) -> str | None:
    """Why the collection's vectors cannot be searched with or joined by vectors of the embedding space
    ``space`` (``Embedder.space``), in a sentence for an admin; None when they can: the same space, no
    segment left to differ, or none recorded yet (a collection last written before migration 0007). For a
    ``writer`` (whose commit records its space) such a collection's vectors must at least have its dimensions:
    it reads them off its smallest segment (once: the commit then records the space)."""
    from retrieval.embeddings import space_conflict
    from retrieval.index import read_segment, segment_sizes

    row = session.get(IndexManifest, collection_id, with_for_update=for_update)
    recorded = row.embedding if row is not None else None
    why = space_conflict(recorded, space)
    if why is None and not (writer and row is not None and not recorded):
        return None
    segments = load_manifest(session, collection_id).segments
    if not segments:
        return None
    if why is None:  # nothing recorded: the dimensions at least
        cdir = collection_dir(collection_id)
        sizes = segment_sizes(cdir, segments)
        try:
            dim = read_segment(cdir / min(segments, key=lambda n: sizes[n])).d
        except (FileNotFoundError, RuntimeError):  # unreadable here: the search's own check stays
            return None
        if dim == space["dim"]:
            return None
        why = (
            f"its passages have {dim} dimensions (the model that made them was not recorded), not "
            f"{space['dim']} as {space['model']}'s"
        )
    col = session.get(Collection, collection_id)
    name = col.name if col is not None else str(collection_id)
    return (
        f"Collection {name!r}: {why}, and vectors of the two cannot be searched together. Re-embed it "
        f"with this model (`autoglm reembed {name}`), or set AUTOGLM_EMBEDDING_MODEL back to the model it was "
        f"indexed with."
    )


# --- helpers ---------------------------------------------------------------------------------------
def _pause(stage: str) -> None:
    """Test hook (app.testhooks): waits at `stage` when AUTOGLM_TEST_PAUSE_AT names it."""
    if seconds := pause_seconds(stage):
        time.sleep(seconds)


class Stopped(Exception):
    """The document left "processing" under our feet (cancelled, deleted, or finished by another delivery)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def _update(document_id: int, **fields) -> None:
    """Record progress; raises Stopped (writing nothing) when the document is no longer processing."""
    with session_scope() as s:
        doc = s.get(Document, document_id)
        if doc is None or doc.status != DocStatus.processing:
            raise Stopped(doc.status if doc is not None else "missing")
        for k, v in fields.items():
            setattr(doc, k, v)
        doc.updated_at = utcnow()
        s.add(doc)
        s.commit()


def heartbeat_interval() -> float:
    return max(0.5, settings.stuck_after_s / 5)


@contextmanager
def _heartbeat(document_id: int) -> Iterator[None]:
    """Keep the processing document's updated_at fresh from a thread (parsing a large file or embedding one
    batch may take longer than stuck_after_s without any progress write)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_interval()):
            try:
                with session_scope() as s:
                    s.exec(
                        update(Document)
                        .where(Document.id == document_id, Document.status == DocStatus.processing)
                        .values(updated_at=utcnow())
                    )
                    s.commit()
            except Exception:  # noqa: BLE001  the database blinked; the next beat tries again
                log.warning("heartbeat of document %s failed", document_id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"heartbeat-{document_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(1.0)  # a beat blocked on the database ends by itself; it only touches "processing"


def fail_document(document_id: int, reason: str, retryable: bool = True) -> None:
    """Final failure: store a reason a person can read (never overrides ready, deleting or cancelled), and
    whether processing the same file again may succeed: True where the worker failed (stopped, timed out, out of
    memory, the database or broker away); False where the file itself is the reason (damaged, cut short,
    encrypted, unsupported, no text, gone from storage), which only another file mends."""
    with session_scope() as s:
        doc = s.get(Document, document_id)
        if doc is None or doc.status in (DocStatus.ready, DocStatus.deleting, DocStatus.cancelled):
            return
        doc.status, doc.error, doc.retryable, doc.updated_at = DocStatus.failed, reason, retryable, utcnow()
        s.add(doc)
        s.commit()
    log.info("document %s failed (%s): %s", document_id, "retryable" if retryable else "permanent", reason)


def _embedder():
    from retrieval.embeddings import get_embedder

    return get_embedder(
        settings.embedding_model or None,
        cache_path=settings.embed_cache_path,
        device=settings.embed_device,
        bulk=True,
    )


# --- process -------------------------------------------------------------------------------------
def process_document(document_id: int, schedule_compaction: bool = True) -> str:
    """Ingest one document; returns its final status (or 'missing'). Idempotent.

    schedule_compaction=False leaves compaction to the caller (the CLI's in-process ingest compacts at the end).
    """
    with session_scope() as s:
        doc = s.get(Document, document_id)
        if doc is None:
            return "missing"
        if doc.status in DONE:
            return doc.status
        if doc.attempts >= settings.max_attempts:
            attempts = doc.attempts
            s.close()
            fail_document(
                document_id,
                f"Processing was started {attempts} times without finishing (the worker stopped or kept failing); gave up.",
            )
            return DocStatus.failed
        doc.status, doc.stage, doc.progress, doc.error = DocStatus.processing, "parsing", 0.0, None
        doc.retryable = None
        doc.notices = []  # an earlier run's; this run's come with its ready status
        doc.attempts += 1
        doc.chunks_embedded = 0
        doc.updated_at = utcnow()
        s.add(doc)
        s.commit()
        sha, filename, collection_id = doc.sha256, doc.filename, doc.collection_id
    try:
        with _heartbeat(document_id):
            status = _process(document_id, sha, filename, collection_id)
    except Stopped as e:
        log.info("document %s stopped while processing: it is %s now", document_id, e.status)
        return e.status
    except (KeyboardInterrupt, SystemExit):
        # The process is stopping (Ctrl-C, a worker's shutdown: ingest.celery_app): not a failed start.
        requeue_interrupted(document_id)
        raise
    if status == DocStatus.ready:
        warm_lexical(collection_id)  # a sidecar the commit could not write (logged): build it from the rows
        if schedule_compaction:
            maybe_schedule_compaction(collection_id)
    return status


def requeue_interrupted(document_id: int) -> bool:
    """Put a document whose processing was interrupted by a stopping process back to "queued", its start not
    counted; nothing of it reached the index (that is one commit). Whichever delivery comes next (the broker's
    redelivery, requeue_pending at `autoglm serve`'s start, ingest.recovery's resend) processes it from the
    start. False when it is no longer processing (it was committed, cancelled or deleted meanwhile)."""
    with session_scope() as s:
        done = s.exec(
            update(Document)
            .where(Document.id == document_id, Document.status == DocStatus.processing)
            .values(
                status=DocStatus.queued,
                stage="queued",
                progress=0.0,
                chunks_embedded=0,
                attempts=case((Document.attempts > 0, Document.attempts - 1), else_=0),
                updated_at=utcnow(),
            )
        ).rowcount
        s.commit()
    if done:
        log.info("document %s interrupted by shutdown: queued again", document_id)
    return bool(done)


def _process(document_id: int, sha: str, filename: str, collection_id: int) -> str:
    """parse -> chunk -> embed -> commit, for a document already marked processing. Raises Stopped."""
    from ingest.chunking import chunk_document
    from ingest.parsers import ParseError, parse
    from retrieval import lexical

    _pause("parsing")
    data = storage.read_blob(sha)
    if data is None:
        fail_document(
            document_id, "The uploaded file is missing from storage; upload it again.", retryable=False
        )
        return DocStatus.failed
    try:
        parsed = parse(data, filename)
    except ParseError as e:
        fail_document(document_id, e.reason, retryable=e.retryable)
        return DocStatus.failed
    del data
    title = parsed.title or title_from_filename(filename)  # plain text and CSV name no title of their own
    _update(
        document_id,
        stage="chunking",
        progress=0.1,
        detected_type=parsed.detected_type,
        pages=parsed.pages,
        title=title,
    )

    embedder = _embedder()
    with session_scope() as s:  # early: the commit checks again, under the collection lock
        conflict = embedding_conflict(s, collection_id, embedder.space, writer=True)
    if conflict:
        fail_document(document_id, f"{conflict} Then re-index this document.", retryable=True)
        return DocStatus.failed
    max_tokens = min(settings.chunk_tokens, embedder.max_tokens)
    overlap = min(settings.chunk_overlap_tokens, max_tokens - 1)
    specs = chunk_document(parsed, embedder.tokenizer, max_tokens, overlap)
    if not specs:
        fail_document(document_id, "No text could be extracted from the document.", retryable=False)
        return DocStatus.failed
    _update(document_id, stage="embedding", progress=0.15, chunks_total=len(specs))
    _pause("embedding")

    parts: list[np.ndarray] = []
    step = settings.progress_every_chunks
    for i in range(0, len(specs), step):
        _pause("embed_batch")
        parts.append(embedder.embed([c.text for c in specs[i : i + step]]))
        done = min(i + step, len(specs))
        if done < len(specs):  # also the cancellation check between batches
            _update(document_id, chunks_embedded=done, progress=0.15 + 0.8 * done / len(specs))
    vectors = np.concatenate(parts).astype(np.float32, copy=False)  # (n_chunks, dim)
    _update(document_id, stage="indexing", chunks_embedded=len(specs), progress=0.95)
    # the segment's BM25 index, here: tokenizing is most of a sidecar's work, kept out of the collection lock
    bm25 = None
    with _best_effort(f"the BM25 index of document {document_id}"):
        bm25 = lexical.index_texts([lexical.lexical_text(title, list(c.heading_path), c.text) for c in specs])
    _pause("indexing")
    return _commit_document(
        document_id, collection_id, parsed.text, specs, vectors, parsed.notices, title, bm25, embedder.space
    )


def lexical_texts(ids) -> list[str]:
    """What BM25 indexes per chunk id (title and heading path, then the text); "" where the row is gone."""
    from retrieval.lexical import lexical_text

    with session_scope() as s:
        rows = s.exec(
            select(Chunk.id, Chunk.text, Chunk.heading_path, Document.title, Document.filename)
            .join(Document, Chunk.document_id == Document.id)
            .where(Chunk.id.in_(list(ids)))
        ).all()
    texts = {
        cid: lexical_text(title or title_from_filename(name), heading or [], text)
        for cid, text, heading, title, name in rows
    }
    return [texts.get(i, "") for i in ids]


@contextmanager
def _best_effort(what: str) -> Iterator[None]:
    """Log an exception of the block and go on: a BM25 sidecar a writer could not write before its commit is
    built later from the committed rows (warm_lexical, or a reader), and never fails the document."""
    try:
        yield
    except Exception:
        log.warning("%s failed (built later from the committed rows)", what, exc_info=True)


def warm_lexical(collection_id: int) -> None:
    """Build the BM25 sidecars the collection's segments still lack (a writer writes a new segment's before
    its commit: this builds one whose write failed, or an older segment's after an analyzer upgrade), so a
    query does not spend its retrieval deadline on it. Best effort: a query builds whatever is missing."""
    from retrieval import lexical

    try:
        with session_scope() as s:
            manifest = load_manifest(s, collection_id)
        cdir = collection_dir(collection_id)
        for name in manifest.segments:  # files only: a worker keeps no BM25 models in memory
            if not (lexical.sidecar_path(cdir, name) / "ids.npy").is_file():
                lexical.build_sidecar(cdir, name, lexical_texts)
    except Exception:
        log.warning("BM25 warm-up of collection %s failed", collection_id, exc_info=True)


def _commit_document(
    document_id: int,
    collection_id: int,
    text: str,
    specs,
    vectors: np.ndarray,
    notices: list[str],
    title: str,
    bm25,
    space: dict,
) -> str:
    """Write the segment and its BM25 sidecar (`bm25`: ``lexical.index_texts`` of `specs` under `title`, None
    where that failed), then commit the chunk rows, the manifest and the ready status at once. ``space``: the
    embedding space of `vectors` (``Embedder.space``); a collection whose vectors are of another fails the
    document instead (``embedding_conflict``), else records it."""
    from retrieval import lexical
    from retrieval.index import add_segment, add_tombstones, gc_segments, write_segment

    replaced_sha: str | None = None
    with collection_lock(collection_id), session_scope() as s:
        # The row stays locked until the commit (PostgreSQL), so a cancel cannot slip in between.
        doc = s.get(Document, document_id, with_for_update=True)
        if doc is None or doc.status != DocStatus.processing:
            # Deleted or cancelled meanwhile, or a duplicate delivery already finished it.
            return doc.status if doc is not None else "missing"
        if conflict := embedding_conflict(s, collection_id, space, for_update=True, writer=True):
            s.rollback()
            fail_document(document_id, f"{conflict} Then re-index this document.", retryable=True)
            return DocStatus.failed
        chunks = [
            Chunk(
                document_id=document_id,
                ordinal=c.ordinal,
                text=c.text,
                heading_path=list(c.heading_path),
                page=c.page,
                page_kind=c.page_kind,
                char_start=c.char_start,
                char_end=c.char_end,
                token_count=c.token_count,
            )
            for c in specs
        ]
        s.add_all(chunks)
        s.flush()  # assigns chunk ids = vector ids
        ids = np.array([c.id for c in chunks], dtype=np.int64)
        manifest = load_manifest(s, collection_id, for_update=True)
        cdir = collection_dir(collection_id)
        cdir.mkdir(parents=True, exist_ok=True)
        # A writer killed between its segment file and its commit left a file no manifest lists; under the
        # lock, with the committed manifest in hand, it can go (it was never visible to a reader).
        if removed := gc_segments(cdir, manifest):
            log.info("collection %s: removed %d orphaned segment files", collection_id, removed)
        name = write_segment(cdir, ids, vectors)
        # The sidecar before the manifest lists the segment: a reader never has to build it. (Readers index the
        # committed row's title, the one _process wrote; a writer killed before the commit leaves an orphan
        # sidecar, which gc_segments removes with its segment.)
        if bm25 is not None and (doc.title or title_from_filename(doc.filename)) == title:
            with _best_effort(f"the BM25 sidecar of {name} (document {document_id})"):
                lexical.write_sidecar(cdir, name, ids, bm25)
        manifest = add_segment(manifest, name)
        _pause("segment_written")

        old = s.get(Document, doc.replaces_id) if doc.replaces_id else None
        if old is not None and old.collection_id == collection_id and old.id != doc.id:
            old_ids = s.exec(select(Chunk.id).where(Chunk.document_id == old.id)).all()
            if old_ids:
                manifest = add_tombstones(manifest, old_ids)
            replaced_sha = old.sha256
            _delete_rows(s, old.id)
        save_manifest(s, collection_id, manifest, embedding=space)
        s.add(DocumentText(document_id=document_id, text=text))
        doc.status, doc.stage, doc.progress = DocStatus.ready, "done", 1.0
        doc.chunk_count, doc.error, doc.retryable, doc.updated_at = len(chunks), None, None, utcnow()
        doc.notices = list(notices)  # capped by the parser (base.cap_notices)
        s.add(doc)
        s.commit()
    if replaced_sha:
        _gc_blob(replaced_sha)
    log.info("document %s ready: %d chunks", document_id, len(specs))
    return DocStatus.ready


def _delete_rows(s: Session, document_id: int) -> None:
    s.exec(delete(Chunk).where(Chunk.document_id == document_id))
    s.exec(delete(DocumentText).where(DocumentText.document_id == document_id))
    s.exec(delete(Document).where(Document.id == document_id))


def _gc_blob(sha: str) -> None:
    with session_scope() as s:
        if s.exec(select(Document.id).where(Document.sha256 == sha).limit(1)).first() is None:
            storage.remove_blob(sha)


# --- delete --------------------------------------------------------------------------------------
def delete_document(document_id: int) -> bool:
    """deleting -> tombstones in the manifest (search stops returning it) -> rows removed. False if absent."""
    from retrieval.index import add_tombstones

    with session_scope() as s:
        doc = s.get(Document, document_id)
        if doc is None:
            return False
        doc.status, doc.updated_at = DocStatus.deleting, utcnow()
        s.add(doc)
        s.commit()
        collection_id, sha = doc.collection_id, doc.sha256
    with collection_lock(collection_id), session_scope() as s:
        ids = s.exec(select(Chunk.id).where(Chunk.document_id == document_id)).all()
        if ids:
            save_manifest(
                s, collection_id, add_tombstones(load_manifest(s, collection_id, for_update=True), ids)
            )
        _delete_rows(s, document_id)
        s.commit()
    _gc_blob(sha)
    maybe_schedule_compaction(collection_id)
    return True


def delete_collection_index(collection_id: int) -> None:
    """Remove a collection's segment files (its rows are gone already)."""
    import shutil

    shutil.rmtree(collection_dir(collection_id), ignore_errors=True)


# --- compaction ----------------------------------------------------------------------------------
# A round of compaction runs in two steps (compact_collection): without the writer lock, it merges segments
# of a manifest snapshot into a staging directory of the collection (".compaction-<uuid>": gc_segments never
# looks into it) and builds the merged segment's BM25 sidecar there; under the writer lock it only re-reads
# the manifest, moves the two into place and commits. Writers of the collection go on meanwhile.


def _too_many_tombstones(s: Session, collection_id: int, manifest) -> bool:
    if not manifest.tombstones:
        return False
    live = s.exec(
        select(func.count(Chunk.id)).join(Document).where(Document.collection_id == collection_id)
    ).one()
    return len(manifest.tombstones) > settings.compaction_ratio * (live + len(manifest.tombstones))


def _needs_compaction(s: Session, collection_id: int, manifest) -> bool:
    return len(manifest.segments) > MAX_SEGMENTS or _too_many_tombstones(s, collection_id, manifest)


def maybe_schedule_compaction(collection_id: int) -> None:
    with session_scope() as s:
        needed = _needs_compaction(s, collection_id, load_manifest(s, collection_id))
    if needed:
        from ingest.tasks import enqueue_compaction

        enqueue_compaction(collection_id)


def _plan(collection_id: int, force: bool):
    """(manifest snapshot, segments to merge), or None when no trigger holds.

    Too many tombstones (or force) merges every segment: after it, deletes of settings.compaction_ratio of the
    collection must come before the trigger holds again, so the work stays a bounded multiple of the deletes.
    Too many segments merges MERGE_FACTOR like-sized ones (retrieval.index.pick_merge).
    """
    from retrieval.index import pick_merge, segment_sizes

    with session_scope() as s:
        manifest = load_manifest(s, collection_id)
        if not manifest.segments:
            return None
        if force or _too_many_tombstones(s, collection_id, manifest):
            return manifest, list(manifest.segments)
    sizes = segment_sizes(collection_dir(collection_id), manifest.segments)
    names = pick_merge(sizes, MAX_SEGMENTS, MERGE_FACTOR)
    return (manifest, names) if names else None


def compact_collection(collection_id: int, force: bool = False) -> bool:
    """Merge segments and drop tombstoned vectors; returns whether it compacted. Idempotent.

    force merges every segment (the CLI after an ingest, benchmarks) and waits for a compactor already at work;
    without it, a second compactor of the collection returns False at once (the first goes on while a trigger
    holds). Rounds go on while a trigger holds, at most MAX_ROUNDS.
    """
    cdir = collection_dir(collection_id)
    did, rounds = False, 0
    for _ in range(MAX_ROUNDS):
        with compaction_lock(collection_id, wait=force) as held:
            if not held:
                log.info("collection %s: another compaction is at work", collection_id)
                return did
            _remove_staging(cdir)  # a killed compactor's; no other compactor of the collection runs now
            while rounds < MAX_ROUNDS and (plan := _plan(collection_id, force and not did)):
                rounds += 1
                if not _merge(collection_id, *plan):
                    return did
                did = True
        # A writer that committed after the last plan found this compactor at work (its task returned at
        # once), so look again now that the lock is free.
        if rounds >= MAX_ROUNDS or _plan(collection_id, False) is None:
            break
    return did


def _remove_staging(cdir: Path) -> None:
    import shutil

    for path in cdir.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, left by a compaction that did not finish", path)


def _merge(collection_id: int, snapshot, names: list[str]) -> bool:
    """One round: merge `names` of the `snapshot` manifest and commit; False when the merge went stale (the
    collection changed under it: deleted, or another compaction replaced those segments) and was discarded."""
    import shutil

    from retrieval import lexical
    from retrieval.index import _fsync_dir, gc_segments, merge_segments, replace_segments

    cdir = collection_dir(collection_id)
    staging = cdir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    try:
        try:
            staging.mkdir()  # not parents=True: a collection deleted meanwhile stays deleted
            merged = merge_segments(cdir, names, snapshot.tombstones, staging)
        except FileNotFoundError:
            with session_scope() as s:
                if not set(names) <= set(load_manifest(s, collection_id).segments):
                    log.info("collection %s changed during compaction; merge discarded", collection_id)
                    return False
            raise
        if len(names) == len(snapshot.segments):
            merged.dropped |= snapshot.tombstones  # no segment of the snapshot is left that holds one
        if merged.name:
            # the merged segment's sidecar before the manifest lists it; its chunks' rows are committed
            with _best_effort(f"the BM25 sidecar of {merged.name} (compaction)"):
                lexical.build_sidecar(staging, merged.name, lexical_texts)
        _pause("compaction_built")
        with collection_lock(collection_id):
            try:
                with session_scope() as s:
                    current = load_manifest(s, collection_id, for_update=True)
                    new = replace_segments(current, names, merged)
                    if new is None:
                        log.info("collection %s changed during compaction; merge discarded", collection_id)
                        return False
                    if merged.name:
                        # Under the writer lock: no writer's gc_segments runs between the renames and the commit.
                        sidecar = lexical.sidecar_path(staging, merged.name)
                        if sidecar.is_dir():
                            os.replace(sidecar, cdir / sidecar.name)
                        os.replace(staging / merged.name, cdir / merged.name)
                        _fsync_dir(cdir)
                    save_manifest(s, collection_id, new)
                    s.commit()
            except BaseException:
                # Moved but not committed, the merged files are orphans: they go now, by the committed manifest
                # (else the next writer's gc_segments removes them).
                with contextlib.suppress(Exception), session_scope() as s:
                    gc_segments(cdir, load_manifest(s, collection_id))
                raise
            # Only after the new manifest row committed may the merged-away segment files go.
            removed = gc_segments(cdir, new)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "collection %s compacted: %d of %d segments merged, now %d; %d files removed",
        collection_id,
        len(names),
        len(snapshot.segments),
        len(new.segments),
        removed,
    )
    return True


def pending_documents() -> list[int]:
    """Documents left queued or processing (e.g. by a worker that died on the embedded broker)."""
    with session_scope() as s:
        return list(
            s.exec(
                select(Document.id).where(Document.status.in_([DocStatus.queued, DocStatus.processing]))
            ).all()
        )


# --- re-embedding ----------------------------------------------------------------------------------
def _ready_chunks(collection_id: int) -> dict[int, str]:
    """Chunk id -> text of the collection's ready documents (what ingestion embedded)."""
    with session_scope() as s:
        rows = s.exec(
            select(Chunk.id, Chunk.text)
            .join(Document, Chunk.document_id == Document.id)
            .where(Document.collection_id == collection_id, Document.status == DocStatus.ready)
        ).all()
    return dict(rows)


def reembed_collection(collection_id: int, progress=None) -> int:
    """Embed every chunk of the collection again with this process's embedding model and replace its
    segments with one of those vectors (after AUTOGLM_EMBEDDING_MODEL or its prompts changed: the old vectors
    cannot be searched with the new model, and writers refuse to mix them: ``embedding_conflict``). Returns the
    chunks embedded.

    The chunks are embedded outside the collection lock from a snapshot of their rows (a large collection can
    take long, and searches go on meanwhile: BM25 in full, the dense search as the old vectors allow); under
    the lock, chunks committed since are embedded too and those deleted since left out, the new segment and
    its BM25 sidecar are written, and the manifest that lists it alone (no tombstones) commits with the new
    embedding space. A failure before that commit leaves the collection as it was (the orphan segment goes
    with the next writer's ``gc_segments``). ``progress(done, total)`` is called as batches finish."""
    from retrieval import lexical
    from retrieval.index import Manifest, gc_segments, write_segment

    embedder = _embedder()
    snapshot = _ready_chunks(collection_id)
    ids = sorted(snapshot)
    step = settings.progress_every_chunks
    vectors: dict[int, np.ndarray] = {}
    for i in range(0, len(ids), step):
        part = ids[i : i + step]
        vectors.update(zip(part, embedder.embed([snapshot[c] for c in part]), strict=True))
        if progress is not None:
            progress(min(i + step, len(ids)), len(ids))
    cdir = collection_dir(collection_id)
    with collection_lock(collection_id), session_scope() as s:
        manifest = load_manifest(s, collection_id, for_update=True)
        now = _ready_chunks(collection_id)
        added = sorted(set(now) - set(vectors))
        if added:  # committed while the snapshot was embedded
            vectors.update(zip(added, embedder.embed([now[c] for c in added]), strict=True))
        live = np.array(sorted(now), dtype=np.int64)
        segments = []
        if live.size:
            cdir.mkdir(parents=True, exist_ok=True)
            name = write_segment(cdir, live, np.stack([vectors[int(c)] for c in live]).astype(np.float32))
            with _best_effort(f"the BM25 sidecar of {name} (re-embedding)"):
                lexical.build_sidecar(cdir, name, lexical_texts)
            segments = [name]
        new = Manifest(version=manifest.version + 1, segments=segments, tombstones=set())
        save_manifest(s, collection_id, new, embedding=embedder.space)
        s.commit()
        removed = gc_segments(cdir, new)
    log.info(
        "collection %s re-embedded with %s: %d chunks, %d old files removed",
        collection_id,
        embedder.name,
        live.size,
        removed,
    )
    return int(live.size)
