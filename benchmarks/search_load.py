"""`POST /api/search` under load: queries/s and latency at N concurrent clients, against one client.

    python benchmarks/search_load.py [--data-dir DIR] [--docs DIR] [--pages 150] [--clients 32] [--seconds 30]

Starts the real product (`autoglm serve --no-worker` on a free loopback port) over a data directory.
Without --data-dir it first ingests --pages pages of Debian's python3-doc HTML with `autoglm ingest`
into a temporary one; with --data-dir (for example the one benchmarks/retrieval_quality.py built) it
serves that index as it is. Clients send the labelled questions of benchmarks/data/python_docs_questions.jsonl
in a loop, each waiting for its answer before the next (closed loop), for a bounded time on loopback.
The peer is the same server with a single client: the table shows what concurrency costs in latency
and buys in throughput. Prints a table, writes JSON under benchmarks/out/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import DOC_DIRS, QUESTIONS, ROOT, autoglm, free_port, percentile  # noqa: E402


def build_corpus(env: dict[str, str], docs: Path, pages: int) -> None:
    files = sorted((docs / "library").glob("*.html"))[:pages]
    if not files:
        raise SystemExit(f"no HTML pages under {docs}/library: install python3-doc or pass --docs")
    t = time.perf_counter()
    autoglm(env, "ingest", *map(str, files), "--collection", "pydocs", "--quiet")
    print(f"ingested {len(files)} pages in {time.perf_counter() - t:.0f} s")


async def run_load(url: str, key: str, questions: list[str], clients: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = degraded = 0
    deadline = time.perf_counter() + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal errors, degraded
        n = i
        while time.perf_counter() < deadline:
            q = questions[n % len(questions)]
            n += clients
            t = time.perf_counter()
            try:
                r = await http.post(f"{url}/api/search", json={"query": q, "k": 10})
                ok = r.status_code == 200
                degraded += bool(ok and r.json().get("degraded"))
            except httpx.HTTPError:
                ok = False
            lat.append((time.perf_counter() - t) * 1000)
            errors += not ok

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {key}"}, timeout=30, limits=limits
    ) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        wall = time.perf_counter() - t0
    return {
        "clients": clients,
        "requests": len(lat),
        "qps": len(lat) / wall,
        "p50_ms": percentile(lat, 0.5),
        "p99_ms": percentile(lat, 0.99),
        "errors": errors,
        "degraded": degraded,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="serve this data directory as it is")
    ap.add_argument("--docs", default=None, help="python3-doc HTML root (default: Debian's)")
    ap.add_argument("--pages", type=int, default=150)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    tmp = tempfile.TemporaryDirectory(prefix="autoglm-load-")
    data = Path(args.data_dir) if args.data_dir else Path(tmp.name) / "data"
    env = {**os.environ, "AUTOGLM_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "AUTOGLM_LOG_JSON": "false"}
    env["PYTHONPATH"] = str(ROOT)
    if not args.data_dir:
        docs = Path(args.docs) if args.docs else next((Path(d) for d in DOC_DIRS if Path(d).is_dir()), None)
        if docs is None:
            raise SystemExit("no documents: apt-get install -y python3-doc, or pass --docs / --data-dir")
        build_corpus(env, docs, args.pages)
    key = autoglm(env, "create-admin", "--name", "loadtest", capture_output=True, text=True).stdout.strip()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--no-worker", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("server did not start")
        # Warm the embedder, BM25 sidecars and index segments before timing.
        asyncio.run(run_load(url, key, questions, 2, 5))
        one = asyncio.run(run_load(url, key, questions, 1, args.seconds / 2))
        many = asyncio.run(run_load(url, key, questions, args.clients, args.seconds))
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(f"\n/api/search on {platform.node()} ({os.cpu_count()} CPUs), {args.seconds:.0f} s per load level")
    print("| clients | requests | QPS | p50 ms | p99 ms | errors | degraded |")
    print("|---|---|---|---|---|---|---|")
    for r in (one, many):
        print(
            f"| {r['clients']} | {r['requests']} | {r['qps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['errors']} | {r['degraded']} |"
        )
    out = Path(args.json) if args.json else ROOT / "benchmarks" / "out" / "search_load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "one": one, "many": many})
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
