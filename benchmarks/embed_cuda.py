"""The embedding model on a GPU: chunks a second by batch size and precision, to choose ``CUDA_BATCH`` and
whether ingestion on CUDA may encode in half precision (retrieval/embeddings.py).

    python benchmarks/embed_cuda.py --make-texts OUT.jsonl [--docs DIR] [--limit 300]   # here: real chunks
    python benchmarks/embed_cuda.py --texts OUT.jsonl [--model DIR] [--batches 32,64,128,256,512] [--product]  # GPU

The first form parses and chunks documents with the product's own parser and chunker (the packaged
all-MiniLM-L6-v2 tokenizer, the default chunk size) and writes their chunk texts, so the GPU times the texts
ingestion really embeds. The second encodes all of them with sentence-transformers' ``encode`` (as the
Embedder does: normalized, numpy out) once per batch size in float32 (the product's CUDA path today) and
under fp16 / bf16 autocast, after a warm-up pass; prints chunks/s and, for the half precisions, the lowest and
mean cosine between their vectors and float32's, and writes JSON to $OUT/embed_cuda.json (or
benchmarks/out/). ``--product`` then times the product's own ``Embedder`` on cuda with float16 autocast on and off, fed in
calls of 256 chunks as the pipeline feeds it, and checks its vectors against the CPU's. ``--model`` takes a
sentence-transformers directory; a ``model.safetensors`` stored in
float16 (to fit a device call's carry limit) is widened to float32 on load, so every precision starts from the
same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_texts(out: Path, docs: Path, limit: int) -> None:
    from ingest.chunking import chunk_document
    from ingest.parsers import ParseError, parse
    from retrieval.embeddings import get_embedder

    tokenizer = get_embedder().tokenizer
    texts: list[str] = []
    files = sorted(
        p for p in docs.rglob("*")
        if p.is_file() and (p.suffix in (".html", ".txt", ".md", ".rst") or p.name.startswith("README"))
        and not p.name.endswith(".gz")
    )  # fmt: skip
    for p in files[:limit]:
        try:
            doc = parse(p.read_bytes(), p.name)
        except ParseError:
            continue
        texts += [c.text for c in chunk_document(doc, tokenizer)]
    out.write_text("\n".join(json.dumps(t) for t in texts) + "\n")
    print(f"{len(texts)} chunks from {min(limit, len(files))} files -> {out}")


def load_model(path: Path, device: str = "cuda"):
    """The sentence-transformers model of ``path`` (a float32 directory: ``widened``) on ``device``."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True).to(device)


def bench(model, texts: list[str], batch: int, dtype) -> tuple[float, object]:
    import numpy as np
    import torch

    def run():
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            return model.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)  # fmt: skip

    run()  # warm-up: kernels, cuBLAS handles, the allocator's pools
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    vecs = run()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, np.asarray(vecs, dtype=np.float32)


def widened(path: Path, to: Path) -> Path:
    """``path`` itself, or where its ``model.safetensors`` is stored in float16 (the carried copy) a copy at ``to``
    with the weights widened to float32: every precision below, and the product's Embedder (which loads weights
    as stored), start from the same float32 weights."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(path / "model.safetensors"))
    if next(iter(state.values())).dtype != torch.float16:
        return path
    if to.exists():
        shutil.rmtree(to)
    shutil.copytree(path, to)
    save_file(
        {k: v.float() for k, v in state.items()}, str(to / "model.safetensors"), metadata={"format": "pt"}
    )
    return to


def product(model_path: Path, texts: list[str], call: int) -> list[dict]:
    """The product's ``Embedder`` on cuda, float16 autocast on and off (AUTOGLM_EMBED_FP16), fed as the pipeline
    feeds it (``embed`` calls of ``call`` texts, no cache), against the same Embedder on the CPU in float32 for
    the vectors: chunks/s and the lowest cosine to the CPU's vectors (of the first 1,000 texts)."""
    import numpy as np

    from retrieval.embeddings import Embedder

    os.environ["AUTOGLM_EMBED_BF16"] = "off"
    cpu = Embedder(str(model_path), device="cpu").encode(texts[:1000])
    rows = []
    for mode in ("off", "on", "off", "on"):
        os.environ["AUTOGLM_EMBED_FP16"] = mode
        emb = Embedder(str(model_path), device="cuda")
        emb.embed(texts[:call])  # warm-up
        t0 = time.perf_counter()
        vecs = np.concatenate([emb.embed(texts[i : i + call]) for i in range(0, len(texts), call)])
        secs = time.perf_counter() - t0
        cos = float((vecs[:1000] * cpu).sum(axis=1).min())
        rows.append({"fp16": emb.fp16, "device": emb.device, "batch": emb.batch_size, "chunks_per_s": round(len(texts) / secs, 1), "min_cos_vs_cpu": round(cos, 6)})  # fmt: skip
        print(f"Embedder on {emb.device}, fp16 {emb.fp16}, batch {emb.batch_size}, calls of {call}: "
              f"{rows[-1]['chunks_per_s']:.1f} chunks/s, cosine to the CPU's float32 >= {cos:.6f}", flush=True)  # fmt: skip
        del emb
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-texts", type=Path, help="write chunk texts (JSONL) and stop")
    ap.add_argument("--docs", type=Path, default=Path("/usr/share/doc"))
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--texts", type=Path, help="JSONL of chunk texts (from --make-texts)")
    ap.add_argument(
        "--model", type=Path, help="sentence-transformers directory (default: the packaged model)"
    )
    ap.add_argument("--batches", default="32,64,128,256,512")
    ap.add_argument("--product", action="store_true", help="also time the product's Embedder (calls of 256)")
    ap.add_argument(
        "--json", default=os.path.join(os.environ.get("OUT", "benchmarks/out"), "embed_cuda.json")
    )
    args = ap.parse_args()
    if args.make_texts:
        return make_texts(args.make_texts, args.docs, args.limit)
    import torch

    if args.model is None:
        from retrieval.embeddings import DEFAULT_EMBEDDING_MODEL

        args.model = Path(DEFAULT_EMBEDDING_MODEL)
    texts = [json.loads(line) for line in args.texts.read_text().splitlines() if line.strip()]
    model_dir = widened(args.model, Path("/tmp/embed_cuda_model"))
    model = load_model(model_dir)
    print(
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {len(texts)} chunks, model {args.model}"
    )
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        ref = None
        for name, dtype in (("float32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
            secs, vecs = bench(model, texts, batch, dtype)
            row = {
                "batch": batch,
                "precision": name,
                "seconds": round(secs, 4),
                "chunks_per_s": round(len(texts) / secs, 1),
            }
            if ref is None:
                ref = vecs
            else:
                cos = (vecs * ref).sum(axis=1)
                row.update(min_cos=round(float(cos.min()), 6), mean_cos=round(float(cos.mean()), 6))
            rows.append(row)
            print(f"batch {batch:4d} {name:8s} {row['chunks_per_s']:9.1f} chunks/s"
                  + (f"  cos min {row['min_cos']:.6f} mean {row['mean_cos']:.6f}" if "min_cos" in row else ""),
                  flush=True)  # fmt: skip
    out = {"device": torch.cuda.get_device_name(), "chunks": len(texts), "rows": rows}
    if args.product:
        out["product"] = product(model_dir, texts, 256)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
