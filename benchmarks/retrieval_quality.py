"""Retrieval quality on the Python documentation: BM25 alone, dense alone and our hybrid, side by side.

    python benchmarks/retrieval_quality.py [--data-dir DIR] [--docs DIR]

The labelled set is benchmarks/data/python_docs_questions.jsonl: questions written by hand, each with the
page (path relative to the docs root) that answers it. The corpus is every page of tutorial/, faq/, howto/
and library/ of Debian's python3-doc HTML (the answer pages and ~470 distractors). Each page goes
through the real product path (app.uploads.add_document, ingest.pipeline.process_document: our HTML parser,
chunker, embedder, FAISS segments, Chunk rows). A hit is page-level: a retrieved chunk of the right page.
Reported: recall@1/5/10 and MRR@10 per method. Prints a table, writes JSON under benchmarks/out/.

--data-dir reuses an index built by an earlier run (ingestion is the slow part on a CPU).
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

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

DOC_DIRS = [
    "/usr/share/doc/python3/html",
    "/usr/share/doc/python3.11/html",
    "/usr/share/doc/python3-doc/html",
]
QUESTIONS = _HERE / "data" / "python_docs_questions.jsonl"


def docs_root(arg: str | None) -> Path:
    roots = [Path(arg)] if arg else [Path(d) for d in DOC_DIRS if (Path(d) / "library").is_dir()]
    if not roots:
        raise SystemExit(
            "no documents: install python3-doc (apt-get install -y python3-doc) or pass --docs DIR"
        )
    return roots[0]


def corpus_pages(root: Path, questions: list[dict]) -> list[str]:
    pages = {q["page"] for q in questions}
    for sub in ("tutorial", "faq", "howto", "library"):
        pages |= {p.relative_to(root).as_posix() for p in (root / sub).glob("*.html")}
    missing = sorted(p for p in pages if not (root / p).is_file())
    if missing:
        raise SystemExit(f"pages missing under {root}: {missing[:5]}")
    return sorted(pages)


def page_filename(rel: str) -> str:
    # Same base names live in several folders (library/venv.html, tutorial/venv.html): keep the folder.
    return rel.replace("/", "__")


def ingest(root: Path, pages: list[str], collection_id: int | None = None) -> dict:
    """Upload and process pages through the product pipeline (pages already there are skipped as
    duplicates); returns {"collection_id", "seconds", "pages"}."""
    from app.db import migrate, session_scope
    from app.uploads import add_document
    from benchmarks.common import create_collection
    from ingest.pipeline import compact_collection, process_document

    migrate()
    cid = create_collection("python-docs") if collection_id is None else collection_id
    t0 = time.perf_counter()
    for i, rel in enumerate(pages):
        with session_scope() as s:
            doc, new = add_document(s, cid, page_filename(rel), (root / rel).read_bytes(), None)
            s.commit()
            doc_id = doc.id
        status = process_document(doc_id, schedule_compaction=False) if new else "duplicate"
        if status not in ("ready", "duplicate"):
            print(f"  {rel}: {status}")
        if (i + 1) % 25 == 0:
            print(f"  ingested {i + 1}/{len(pages)} pages ({time.perf_counter() - t0:.0f} s)", flush=True)
    compact_collection(cid, force=True)
    return {"collection_id": cid, "seconds": round(time.perf_counter() - t0, 1), "pages": len(pages)}


def _metrics(ranked_pages: list[list[str]], gold: list[str]) -> dict:
    """recall@1/5/10 and MRR@10 over chunk rankings mapped to pages (a hit = a chunk of the right page)."""
    out = {}
    for k in (1, 5, 10):
        out[f"recall@{k}"] = sum(g in pages[:k] for pages, g in zip(ranked_pages, gold, strict=True)) / len(
            gold
        )
    rr = [
        next((1 / (i + 1) for i, p in enumerate(pages[:10]) if p == g), 0.0)
        for pages, g in zip(ranked_pages, gold, strict=True)
    ]
    out["mrr@10"] = sum(rr) / len(rr)
    return {k: round(v, 4) for k, v in out.items()}


def evaluate(questions: list[dict], info: dict, out_path: str) -> None:
    import shutil

    from sqlmodel import select

    from app.db import session_scope
    from app.models import Chunk, Document
    from app.settings import settings
    from ingest.pipeline import collection_dir, load_manifest
    from retrieval.embeddings import get_embedder
    from retrieval.hybrid import Budget, Source, hybrid_search_sync
    from retrieval.index import IndexCache
    from retrieval.lexical import LexicalCache, lexical_text

    cid = info["collection_id"]
    with session_scope() as s:
        manifest = load_manifest(s, cid)
        rows = s.exec(select(Chunk, Document).join(Document, Chunk.document_id == Document.id)).all()
    page_of = {c.id: d.filename.replace("__", "/") for c, d in rows}
    texts = {c.id: lexical_text(d.title or d.filename, c.heading_path, c.text) for c, d in rows}
    cdir = collection_dir(cid)
    for side in cdir.glob("*.bm25"):  # derived data: rebuild, so the build time is measured too
        shutil.rmtree(side)
    emb = get_embedder(settings.embedding_model or None, cache_path=settings.embed_cache_path)
    emb.embed_query("warm-up")

    def texts_for_ids(ids):
        return [texts[int(i)] for i in ids]

    lex, dense_cache = LexicalCache(), IndexCache()
    t0 = time.perf_counter()
    lex.warm(cdir, manifest, texts_for_ids)
    build_s = time.perf_counter() - t0
    dense_cache.search(cdir, manifest, emb.embed_query("warm-up"), 1)
    src = [Source(cdir, manifest)]
    unbounded = Budget(deadline_ms=1e6, embed_ms=1e6, dense_ms=1e6, bm25_ms=1e6, rerank_ms=1e6)
    ranked: dict[str, list[list[str]]] = {
        "bm25": [],
        "dense": [],
        "hybrid": [],
        "hybrid-rrf": [],
        "hybrid@300ms": [],
    }
    lat: dict[str, list[float]] = {k: [] for k in ranked}
    degraded = 0
    for q in questions:
        text = q["question"]
        t = time.perf_counter()
        ranked["bm25"].append([page_of[c] for c, _ in lex.search(cdir, manifest, text, 10, texts_for_ids)])
        lat["bm25"].append(time.perf_counter() - t)
        t = time.perf_counter()
        hits = dense_cache.search(cdir, manifest, emb.embed_query(text), 10)
        ranked["dense"].append([page_of[c] for c, _ in hits])
        lat["dense"].append(time.perf_counter() - t)
        for name, budget, fusion in (
            ("hybrid", unbounded, "convex"),
            ("hybrid-rrf", unbounded, "rrf"),
            ("hybrid@300ms", Budget(), "convex"),
        ):
            t = time.perf_counter()
            r = hybrid_search_sync(
                text,
                src,
                embed_query=emb.embed_query,
                texts_for_ids=texts_for_ids,
                k=10,
                budget=budget,
                fusion=fusion,
                index_cache=dense_cache,
                lexical_cache=lex,
            )
            lat[name].append(time.perf_counter() - t)
            ranked[name].append([page_of[h.chunk_id] for h in r.hits])
            degraded += name == "hybrid@300ms" and r.degraded
    gold = [q["page"] for q in questions]
    results = {name: _metrics(pages, gold) for name, pages in ranked.items()}
    for name in results:
        ms = sorted(x * 1000 for x in lat[name])
        results[name]["p50_ms"] = round(ms[len(ms) // 2], 1)
    report = {
        "questions": len(questions),
        "pages": len(info.get("page_list") or []) or info.get("pages"),
        "chunks": len(rows),
        "segments": len(manifest.segments),
        "bm25_sidecar_build_s": round(build_s, 2),
        "hybrid@300ms_degraded": int(degraded),
        "ingest_seconds": info.get("seconds"),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "methods": results,
    }
    print(
        f"retrieval quality: {len(questions)} questions, {info.get('pages')} pages, {len(rows)} chunks "
        f"(BM25 sidecar build {build_s:.1f} s)"
    )
    print(f"  {'method':<14}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'MRR@10':>8}{'p50 ms':>9}")
    for name, m in results.items():
        print(
            f"  {name:<14}{m['recall@1']:>8.3f}{m['recall@5']:>8.3f}{m['recall@10']:>8.3f}"
            f"{m['mrr@10']:>8.3f}{m['p50_ms']:>9.1f}"
        )
    print(f"  hybrid under the default 300 ms deadline: {degraded} of {len(questions)} degraded")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", default=None)
    ap.add_argument("--data-dir", default=None, help="reuse (or create) this data directory")
    ap.add_argument("--ingest-only", action="store_true")
    ap.add_argument("--out", default="benchmarks/out/retrieval_quality.json")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="autoglm-rq-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["AUTOGLM_DATA_DIR"] = str(data_dir)
    for k in ("AUTOGLM_DATABASE_URL", "AUTOGLM_REDIS_URL", "AUTOGLM_BROKER_URL", "AUTOGLM_INDEX_ROOT"):
        os.environ.pop(k, None)
    from app.settings import reload_settings

    reload_settings()
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    root = docs_root(args.docs)
    marker = data_dir / "retrieval_quality_ingest.json"
    info = json.loads(marker.read_text()) if marker.is_file() else {}
    pages = corpus_pages(root, questions)
    if info.get("page_list") != pages:  # new, or an index of an older corpus: add what is missing
        print(f"ingesting {len(pages)} pages from {root} into {data_dir}", flush=True)
        done = ingest(root, pages, info.get("collection_id"))
        info = {**done, "seconds": round(info.get("seconds", 0) + done["seconds"], 1), "page_list": pages}
        marker.write_text(json.dumps(info))
    if args.ingest_only:
        print(json.dumps(info))
        return
    evaluate(questions, info, args.out)


if __name__ == "__main__":
    main()
