"""Compaction over a bulk upload into one collection: total compaction time and the longest time compaction held
the collection's writer lock (every document commit and delete of the collection waits that long).

    python benchmarks/compaction.py [--docs 2000] [--chunks 30] [--dim 384] [--label L] [--json F]

Runs in a temporary data directory (SQLite, file locks, no broker) the product's own functions: each document
is committed by ``ingest.pipeline._commit_document`` (the real writer: Chunk rows, FAISS segment, BM25 sidecar,
manifest) with precomputed random unit vectors instead of the embedding model and synthetic chunk texts (60
words from a 5,000-word vocabulary, plus a word unique to the document), and after each commit
``compact_collection`` runs (what the scheduled task does when a trigger holds; it returns at once otherwise).
The writer lock is timed by wrapping ``pipeline.collection_lock`` while compaction runs. At the end every
document's first chunk must be found by its vector (FAISS) and by its unique word (BM25). Run it from any
checkout (a copy of this file in another checkout measures that checkout's code; the JSON names its file): the old code without
partial merges runs the same functions. Prints a table, writes JSON (default benchmarks/out/compaction.json).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import random
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--chunks", type=int, default=30, help="chunks (vectors) per document")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--label", default="")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "compaction.json")
    args = ap.parse_args()

    data = Path(tempfile.mkdtemp(prefix="autoglm-compaction-"))
    os.environ.update(
        AUTOGLM_DATA_DIR=str(data), AUTOGLM_DATABASE_URL="", AUTOGLM_REDIS_URL="", AUTOGLM_BROKER_URL=""
    )
    from sqlmodel import select

    from app.db import migrate, session_scope
    from app.models import Chunk, Collection, DocStatus, Document
    from app.settings import reload_settings
    from ingest import pipeline
    from ingest.chunking import ChunkSpec
    from retrieval import lexical
    from retrieval.index import IndexCache
    from retrieval.lexical import LexicalCache

    reload_settings()
    migrate()
    with session_scope() as s:
        c = Collection(name="bulk")
        s.add(c)
        s.commit()
        cid = c.id

    holds: list[float] = []  # seconds compaction held the writer lock, each time it took it
    compacting = False
    real_lock = pipeline.collection_lock

    @contextmanager
    def timed_lock(collection_id: int):
        with real_lock(collection_id):
            t0 = time.perf_counter()
            try:
                yield
            finally:
                if compacting:
                    holds.append(time.perf_counter() - t0)

    pipeline.collection_lock = timed_lock

    # a writer that records its vectors' embedding space takes one (any, the same each time); an older one not
    space = {}
    if "space" in inspect.signature(pipeline._commit_document).parameters:
        space = {"space": {"model": "benchmarks/compaction.py random vectors", "dim": args.dim}}
    rnd = random.Random(0)
    rng = np.random.default_rng(0)
    vocab = [
        "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9)))
        for _ in range(5000)
    ]
    first_vectors, first_chunk = {}, {}
    compact_s, writer_s, calls_that_compacted = 0.0, 0.0, 0
    segments_max = 0
    t_all = time.perf_counter()
    for d in range(args.docs):
        marker = f"qz{d}marker"  # one term, unique to the document
        texts = [" ".join([marker, *rnd.choices(vocab, k=60)]) for _ in range(args.chunks)]
        specs = [ChunkSpec(i, t, [], None, 0, len(t), 80) for i, t in enumerate(texts)]
        vectors = rng.standard_normal((args.chunks, args.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        title = f"doc{d}"
        bm25 = lexical.index_texts([lexical.lexical_text(title, [], t) for t in texts])
        with session_scope() as s:
            doc = Document(collection_id=cid, filename=f"{title}.txt", sha256=f"{d:064x}", title=title)
            doc.status = DocStatus.processing
            s.add(doc)
            s.commit()
            doc_id = doc.id
        t0 = time.perf_counter()
        status = pipeline._commit_document(
            doc_id, cid, "\n".join(texts), specs, vectors, [], title, bm25, **space
        )
        writer_s += time.perf_counter() - t0
        assert status == DocStatus.ready, status
        first_vectors[doc_id] = vectors[0]
        compacting = True
        t0 = time.perf_counter()
        calls_that_compacted += bool(pipeline.compact_collection(cid))
        compact_s += time.perf_counter() - t0
        compacting = False
        with session_scope() as s:
            segments_max = max(segments_max, len(pipeline.load_manifest(s, cid).segments))
        if (d + 1) % 250 == 0:
            print(f"  {d + 1} documents, {compact_s:.1f} s compacting so far", file=sys.stderr, flush=True)
    total_s = time.perf_counter() - t_all

    with session_scope() as s:
        manifest = pipeline.load_manifest(s, cid)
        for doc_id in first_vectors:
            first_chunk[doc_id] = s.exec(
                select(Chunk.id).where(Chunk.document_id == doc_id, Chunk.ordinal == 0)
            ).one()
    cdir = pipeline.collection_dir(cid)
    vec_cache, lex_cache = IndexCache(), LexicalCache()
    check = sorted(rnd.sample(list(first_vectors), min(200, len(first_vectors))))
    found_vec = sum(
        vec_cache.search(cdir, manifest, first_vectors[i], 1)[0][0] == first_chunk[i] for i in check
    )
    found_bm25 = 0
    for i, doc_id in enumerate(first_vectors):
        if doc_id in check:
            hits = lex_cache.search(cdir, manifest, f"qz{i}marker", args.chunks, pipeline.lexical_texts)
            found_bm25 += first_chunk[doc_id] in {h for h, _ in hits}
    sidecar_builds = lex_cache.builds

    result = {
        "label": args.label,
        "code": str(Path(pipeline.__file__).resolve()),
        "docs": args.docs,
        "chunks_per_doc": args.chunks,
        "dim": args.dim,
        "compaction_s": round(compact_s, 2),
        "writer_commits_s": round(writer_s, 2),
        "total_s": round(total_s, 2),
        "compaction_lock_holds": len(holds),  # the old code took it also to find nothing to do
        "calls_that_compacted": calls_that_compacted,
        "lock_hold_max_s": round(max(holds, default=0.0), 4),
        "lock_hold_total_s": round(sum(holds), 3),
        "segments_max": segments_max,
        "segments_end": len(manifest.segments),
        "checked": len(check),
        "found_by_vector": int(found_vec),
        "found_by_bm25": int(found_bm25),
        "sidecars_built_by_reader": sidecar_builds,
        "machine": f"{platform.node()} {os.cpu_count()} CPUs",
    }
    print(
        "| code | docs x chunks | compaction total s | calls that compacted | writer lock held by compaction: max s"
        " / total s | segments max / end | found (vector, BM25) of checked | writer commits s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.label or result['code']} | {args.docs} x {args.chunks} | {compact_s:.1f} | {calls_that_compacted} | "
        f"{result['lock_hold_max_s']:.3f} / {result['lock_hold_total_s']:.1f} | {segments_max} / "
        f"{len(manifest.segments)} | {found_vec}, {found_bm25} of {len(check)} | {writer_s:.1f} |"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    import shutil

    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
