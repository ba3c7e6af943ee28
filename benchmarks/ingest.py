"""Ingestion throughput through the real pipeline vs a bare SentenceTransformer.encode of the same chunks.

    python benchmarks/ingest.py [--docs DIR] [--limit 300]

Each document goes through app.uploads.add_document (blob store, dedupe, DB row) and
ingest.pipeline.process_document (parse, chunk, embed, FAISS segment, Chunk rows, manifest commit under the
collection lock): the function the Celery task runs. A fresh data directory (and so an empty embedding cache)
is used per run. Then the same chunk texts are embedded with a bare SentenceTransformer.encode (batch 64,
normalized, in the embedder's precision: bfloat16 autocast where ``retrieval.embeddings.bf16_on_cpu`` says so)
to compare embedding throughput, and in float32 too where that differs (the speed bf16 gives). Prints a table
and writes JSON under benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# NOTE: this file is named like the `ingest` package; drop its folder from the path so imports find the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

DOC_DIRS = [
    "/usr/share/doc/python3/html",
    "/usr/share/doc/python3.11/html",
    "/usr/share/doc/python3-doc/html",
]


def find_docs(root: str | None, limit: int) -> list[Path]:
    roots = [Path(root)] if root else [Path(d) for d in DOC_DIRS if Path(d).is_dir()]
    if not roots:
        raise SystemExit(
            "no documents: install python3-doc (apt-get install -y python3-doc) or pass --docs DIR"
        )
    files = sorted(p for r in roots for p in r.rglob("*.html") if p.stat().st_size > 2000)
    if len(files) > limit:  # an even spread over the whole tree, not just its first folder
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", default=None)
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--out", default="benchmarks/out/ingest.json")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data_dir = Path(tempfile.mkdtemp(prefix="autoglm-bench-"))
    os.environ["AUTOGLM_DATA_DIR"] = str(data_dir)
    for k in ("AUTOGLM_DATABASE_URL", "AUTOGLM_REDIS_URL", "AUTOGLM_BROKER_URL", "AUTOGLM_INDEX_ROOT"):
        os.environ.pop(k, None)

    import torch
    from sqlmodel import select

    if args.threads:
        torch.set_num_threads(args.threads)
    from app.db import migrate, session_scope
    from app.models import Chunk, Collection, Document
    from app.settings import reload_settings, settings
    from app.uploads import Rejected, add_document
    from ingest.pipeline import process_document
    from retrieval.embeddings import DEFAULT_EMBEDDING_MODEL, bf16_on_cpu, get_embedder

    reload_settings()
    migrate()
    files = find_docs(args.docs, args.limit)
    total_bytes = sum(f.stat().st_size for f in files)
    embedder = get_embedder(settings.embedding_model or None, cache_path=settings.embed_cache_path)
    embedder.embed(["warm-up"])  # model load is not ingestion

    with session_scope() as s:
        coll = Collection(name="bench")
        s.add(coll)
        s.commit()
        cid = coll.id
    statuses: dict[str, int] = {}
    t0 = time.perf_counter()
    for f in files:
        with session_scope() as s:
            try:
                doc, new = add_document(s, cid, f.name, f.read_bytes(), None)
            except Rejected:
                statuses["rejected"] = statuses.get("rejected", 0) + 1
                continue
            s.commit()
        status = process_document(doc.id) if new else "duplicate"
        statuses[status] = statuses.get(status, 0) + 1
    pipeline_s = time.perf_counter() - t0

    with session_scope() as s:
        texts = [c.text for c in s.exec(select(Chunk).join(Document).order_by(Chunk.id)).all()]
    n_chunks = len(texts)

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(settings.embedding_model or DEFAULT_EMBEDDING_MODEL, device="cpu")
    bf16 = bf16_on_cpu("cpu")

    def bare_seconds(half: bool) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
            model.encode(["warm-up"])
            t0 = time.perf_counter()
            model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
            return time.perf_counter() - t0

    bare_s = bare_seconds(bf16)
    fp32_s = bare_seconds(False) if bf16 else bare_s

    ours = n_chunks / pipeline_s
    bare = n_chunks / bare_s
    result = {
        "documents": len(files),
        "statuses": statuses,
        "bytes": total_bytes,
        "chunks": n_chunks,
        "pipeline_seconds": round(pipeline_s, 2),
        "docs_per_s": round(len(files) / pipeline_s, 2),
        "chunks_per_s": round(ours, 1),
        "bare_encode_seconds": round(bare_s, 2),
        "bare_encode_chunks_per_s": round(bare, 1),
        "embed_bf16": bf16,
        "bare_encode_float32_chunks_per_s": round(n_chunks / fp32_s, 1),
        "throughput_ratio": round(ours / bare, 3),
        "overhead_pct": round(100 * (1 - ours / bare), 1),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "chunk_tokens": settings.chunk_tokens,
    }
    rows = [
        ("documents", f"{len(files)} ({total_bytes / 1e6:.1f} MB HTML)"),
        ("outcome", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))),
        ("chunks", str(n_chunks)),
        ("pipeline wall time", f"{pipeline_s:.1f} s"),
        ("documents/s", f"{result['docs_per_s']:.2f}"),
        ("chunks/s (end to end)", f"{ours:.1f}"),
        ("bare encode chunks/s", f"{bare:.1f}{' (bf16)' if bf16 else ''}"),
        ("bare encode chunks/s, float32", f"{n_chunks / fp32_s:.1f}"),
        ("ours / bare", f"{ours / bare:.3f}  (overhead {result['overhead_pct']:.1f}%, target < 15%)"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"ingest benchmark ({result['cpu_count']} CPUs, {result['torch_threads']} torch threads)")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
