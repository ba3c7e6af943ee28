"""Search latency of our segment index against a FAISS flat index, with recall@k against exact search.

Data: clustered vectors with a low intrinsic dimension, like sentence embeddings: a mixture of
`--clusters` gaussians in a `--latent-dim`-dimensional subspace (random orthonormal basis) plus
isotropic noise in all 384 dimensions (`--noise`), L2-normalized. NOTE: a plain mixture of isotropic
gaussians in 384-d is trivially easy for IVF (recall 1.0 probing 4 of 1024 lists: every neighbour
sits in its own cluster), so it would not test recall; with this model IVF needs ~32-64 of 1024
lists for recall@10 >= 0.95, as on real embedding sets. Queries are fresh draws from the same
distribution. Each query is searched alone (the latency a user sees), one FAISS thread per query
(see IndexCache.search), and the QPS xN column runs N client threads at once. Recall is against
exact search over all queries; the flat index's latency is timed on the first `--flat-queries`
(it is slow at 1M).

    python benchmarks/search_index.py --sizes 10000,100000,1000000 --threads 2

Prints a table and writes JSON to benchmarks/out/search_index-<utc time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from retrieval.index import IndexCache, Manifest, add_segment, write_segment

DIM = 384


class Corpus:
    """Samples of the low-rank gaussian mixture described in the module docstring."""

    def __init__(self, args, rng: np.random.Generator):
        self.rng = rng
        self.basis = np.linalg.qr(rng.standard_normal((DIM, args.latent_dim)))[0].astype(
            np.float32
        )  # (DIM, r)
        self.means = rng.standard_normal((args.clusters, args.latent_dim), dtype=np.float32)  # (C, r)
        self.spread = args.spread
        self.noise = args.noise * np.sqrt(args.latent_dim / DIM)  # per dimension, relative to the signal

    def sample(self, n: int) -> np.ndarray:
        """(n, DIM) normalized float32, built in blocks to bound memory."""
        out = np.empty((n, DIM), dtype=np.float32)
        r = self.means.shape[1]
        for s in range(0, n, 100_000):
            m = min(n, s + 100_000) - s
            z = self.means[self.rng.integers(0, len(self.means), m)]
            z += self.spread * self.rng.standard_normal((m, r), dtype=np.float32)  # (m, r)
            block = z @ self.basis.T  # (m, DIM)
            block += self.noise * self.rng.standard_normal((m, DIM), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[s : s + m] = block
        return out


def timed(search, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-query wall and CPU (this thread) latencies in ms, and total wall seconds, one query at a time.

    On a busy machine wall time includes waiting for a core; the CPU time is the work itself.
    """
    lat, cpu = np.empty(len(queries)), np.empty(len(queries))
    t0 = time.perf_counter()
    for i, q in enumerate(queries):
        t, c = time.perf_counter(), time.thread_time()
        search(q)
        lat[i] = (time.perf_counter() - t) * 1e3
        cpu[i] = (time.thread_time() - c) * 1e3
    return lat, cpu, time.perf_counter() - t0


def concurrent_qps(search, queries: np.ndarray, clients: int) -> float:
    """Queries/s with `clients` threads each sending its share one at a time (FAISS releases the GIL)."""
    if clients <= 1:
        return 0.0
    parts = np.array_split(queries, clients)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda part: [search(q) for q in part], parts))
    return len(queries) / (time.perf_counter() - t0)


def recall(found: list[list[int]], exact: np.ndarray, k: int) -> float:
    hits = sum(len(set(f[:k]) & set(e[:k].tolist())) for f, e in zip(found, exact, strict=True))
    return hits / (k * len(found))


def run_size(n: int, args, corpus: Corpus) -> list[dict]:
    x = corpus.sample(n)
    queries = corpus.sample(args.queries)
    ids = np.arange(n, dtype=np.int64)
    rows = []

    flat = faiss.IndexFlatIP(DIM)
    flat.add(x)
    _, exact = flat.search(queries, args.k)  # ground truth, batched
    # Exact search at 1M takes ~0.1-0.3 s a query on 2 cores: time it on the first --flat-queries only.
    # Timed single-threaded, as our index searches (one query uses one core either way; see IndexCache).
    faiss.omp_set_num_threads(1)

    def flat_one(q: np.ndarray):
        faiss.omp_set_num_threads(1)  # per calling thread: the client threads of concurrent_qps too
        return flat.search(q.reshape(1, -1), args.k)

    lat, cpu, wall = timed(flat_one, queries[: args.flat_queries])
    both = concurrent_qps(flat_one, queries[: args.flat_queries], args.clients)
    faiss.omp_set_num_threads(args.threads)
    rows.append(row("faiss IndexFlatIP (exact)", n, lat, cpu, wall, 1.0, 0.0, both, args))
    flat.reset()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t = time.perf_counter()
        manifest = Manifest()
        for part in np.array_split(np.arange(n), args.segments):
            manifest = add_segment(manifest, write_segment(Path(tmp), ids[part], x[part]))
        build_s = time.perf_counter() - t
        del x
        cache = IndexCache()
        cache.search(Path(tmp), manifest, queries[0], args.k)  # load outside the timing
        found: list[list[int]] = []
        lat, cpu, wall = timed(
            lambda q: found.append([i for i, _ in cache.search(Path(tmp), manifest, q, args.k)]), queries
        )
        both = concurrent_qps(lambda q: cache.search(Path(tmp), manifest, q, args.k), queries, args.clients)
        label = "ours (1 segment)" if args.segments == 1 else f"ours ({args.segments} segments)"
        rows.append(row(label, n, lat, cpu, wall, recall(found, exact, args.k), build_s, both, args))
    return rows


def row(
    name: str,
    n: int,
    lat: np.ndarray,
    cpu: np.ndarray,
    wall: float,
    rec: float,
    build_s: float,
    qps_c: float,
    args,
) -> dict:
    return {
        "index": name,
        "vectors": n,
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3),
        "cpu_p99_ms": round(float(np.percentile(cpu, 99)), 3),
        "qps": round(len(lat) / wall, 1),
        f"qps_{args.clients}_clients": round(qps_c, 1),
        f"recall@{args.k}": round(rec, 4),
        "build_s": round(build_s, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated vector counts")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--flat-queries", type=int, default=200, help="queries timed on the exact flat index")
    ap.add_argument("--segments", type=int, default=1, help="split the vectors into this many segments")
    ap.add_argument("--clients", type=int, default=2, help="threads for the concurrent QPS column")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="FAISS/OpenMP threads (target: 2 cores)")
    ap.add_argument("--clusters", type=int, default=20, help="gaussians in the latent space")
    ap.add_argument("--latent-dim", type=int, default=32, help="intrinsic dimension of the data")
    ap.add_argument("--spread", type=float, default=0.8, help="std of each gaussian (latent unit scale)")
    ap.add_argument("--noise", type=float, default=0.3, help="isotropic noise relative to the signal")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where segment files are written (default: system tmp)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args()

    faiss.omp_set_num_threads(args.threads)
    corpus = Corpus(args, np.random.default_rng(args.seed))

    cols = [
        ("index", 28, "index", "s"),
        ("vectors", 9, "vectors", "d"),
        ("p50 ms", 8, "p50_ms", ".2f"),
        ("p99 ms", 8, "p99_ms", ".2f"),
        ("cpu p50", 8, "cpu_p50_ms", ".2f"),
        ("cpu p99", 8, "cpu_p99_ms", ".2f"),
        ("QPS", 8, "qps", ".1f"),
        (f"QPS x{args.clients}", 8, f"qps_{args.clients}_clients", ".1f"),
        (f"recall@{args.k}", 10, f"recall@{args.k}", ".4f"),
        ("build s", 8, "build_s", ".2f"),
    ]
    header = " ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w, _, _) in enumerate(cols))
    print(header)
    print("-" * len(header))
    rows: list[dict] = []
    for n in (int(s) for s in args.sizes.split(",")):
        for r in run_size(n, args, corpus):
            rows.append(r)
            cells = [
                f"{r[k]:<{w}{f}}" if i == 0 else f"{r[k]:>{w}{f}}" for i, (_, w, k, f) in enumerate(cols)
            ]
            print(" ".join(cells), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"search_index-{stamp}.json"
    meta = {
        "machine": platform.platform(),
        "cpus_visible": os.cpu_count(),
        "faiss": faiss.__version__,
        "threads": args.threads,
        "queries": args.queries,
        "flat_queries_timed": args.flat_queries,
        "segments": args.segments,
        "k": args.k,
        "data": (
            f"mixture of {args.clusters} gaussians (std {args.spread}) in a {args.latent_dim}-d subspace "
            f"+ isotropic noise {args.noise}, dim {DIM}, normalized"
        ),
        "seed": args.seed,
    }
    path.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
