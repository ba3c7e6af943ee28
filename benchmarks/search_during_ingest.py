"""Searches while the embedded worker ingests: `/api/search` latency and degraded answers with the worker idle
and while it embeds a batch of documents, and the ingestion throughput with nobody searching.

    python benchmarks/search_during_ingest.py [--docs DIR] [--clients 2] [--think 0.2] [--seconds 30]
        [--batch-kb 800] [--env AUTOGLM_WORKER_NICE=0 ...] [--label L] [--json F]

Starts the real product (`autoglm serve`: API + embedded Celery worker child, embedded defaults) in a
temporary data directory. HTML pages of --docs (default: Debian's nodejs API docs, /usr/share/doc/nodejs/api;
any folder of HTML or text files) are dealt in name order to three batches of about --batch-kb each (the seed
a little smaller): the seed is indexed with `autoglm ingest` before the server starts (what the searches
find), batch A is uploaded with nobody searching (ingestion throughput alone), batch B while --clients
clients search in a closed loop (each waits for its answer, then --think seconds). Different pages per batch,
because the embedding cache would make a second ingestion of the same text free.

Phases, in this order: `idle` (searches for --seconds, worker waiting), `ingest alone` (batch A, no
searches), `during ingest` (batch B, searches until its last document is ready). Reports per search phase
requests, p50/p99 latency, the share answered degraded ("Partial search") and the query-embedding stage's
p50/p99 (`timings_ms.embed`); per ingestion phase chunks, seconds and chunks/s; per phase the share of the
machine's CPU that other processes used meanwhile ("other load": the machine may be shared). --env sets product
settings for the server (the same build compared with a setting on and off). Prints a table, writes JSON
(default benchmarks/out/search_during_ingest.json).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import autoglm, percentile, product_env, start_server, stop_server  # noqa: E402

NODE_DOCS = Path("/usr/share/doc/nodejs/api")
# Questions about the Node.js API pages (any text works for timing; these find something).
QUERIES = [
    "how do I read a file line by line",
    "create an HTTP server that listens on a port",
    "spawn a child process and read its output",
    "generate a random UUID",
    "what does process.nextTick do",
    "encrypt data with AES in GCM mode",
    "watch a directory for changes",
    "convert a buffer to a base64 string",
    "resolve a host name to an IP address",
    "handle uncaught exceptions in a process",
    "pipe a readable stream into a writable stream",
    "set a timeout and cancel it",
    "parse a URL and read its query parameters",
    "compress data with gzip",
    "share memory between worker threads",
    "measure the time a function takes with performance hooks",
]


def batches(docs: Path, kb: int) -> tuple[list[Path], list[Path], list[Path]]:
    """(seed, A, B): files dealt in name order, round robin, to batches of about kb KiB (seed: two thirds)."""
    files = sorted(
        f
        for f in docs.iterdir()
        if f.is_file() and f.suffix in (".html", ".txt") and f.stat().st_size < 2 << 20
    )
    if not files:
        raise SystemExit(f"no .html or .txt files under {docs}: pass --docs")
    targets = [kb * 1024 * 2 // 3, kb * 1024, kb * 1024]
    out: list[list[Path]] = [[], [], []]
    size = [0, 0, 0]
    i = 0
    for f in files:
        open_ = [b for b in range(3) if size[b] < targets[b]]
        if not open_:
            break
        b = open_[i % len(open_)]
        out[b].append(f)
        size[b] += f.stat().st_size
        i += 1
    if any(size[b] < targets[b] for b in range(3)):
        raise SystemExit(f"not enough documents under {docs} for three batches of {kb} KiB: lower --batch-kb")
    return out[0], out[1], out[2]


def worker_pid(server_pid: int) -> int | None:
    """The embedded worker: the serve process's child."""
    for task in Path(f"/proc/{server_pid}/task").glob("*"):
        kids = (task / "children").read_text().split()
        if kids:
            return int(kids[0])
    return None


def niceness(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return None


class OtherLoad:
    """The share of the machine's CPU time that processes other than the server, its worker and this client
    used between start() and stop() (the machine is shared: other work's load changes what a phase sees)."""

    def __init__(self, pids: list[int | None]) -> None:
        self.pids = [p for p in pids if p is not None] + [os.getpid()]
        self.t0 = self.busy0 = self.ours0 = 0.0

    def _read(self) -> tuple[float, float]:
        cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(cpu) - cpu[3] - cpu[4]  # all but idle and iowait
        ours = 0
        for pid in self.pids:
            try:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ours += int(f[11]) + int(f[12])  # utime + stime
            except (OSError, IndexError, ValueError):
                pass
        return busy, ours

    def start(self) -> OtherLoad:
        self.t0 = time.perf_counter()
        self.busy0, self.ours0 = self._read()
        return self

    def stop(self) -> float:
        busy, ours = self._read()
        ticks = (time.perf_counter() - self.t0) * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
        return max(0.0, (busy - self.busy0) - (ours - self.ours0)) / ticks


def upload(http: httpx.Client, cid: int, files: list[Path]) -> list[int]:
    ids: list[int] = []
    for s in range(0, len(files), 20):  # AUTOGLM_UPLOAD_MAX_FILES
        part = [("files", (f.name, f.read_bytes())) for f in files[s : s + 20]]
        r = http.post(f"/api/collections/{cid}/documents", files=part)
        r.raise_for_status()
        ids += [d["id"] for d in r.json()["documents"]]
    return ids


def wait_ready(http: httpx.Client, ids: list[int], timeout: float = 1800) -> tuple[float, int]:
    """Seconds until every document is ready (or failed), and their chunks."""
    t0 = time.perf_counter()
    left = set(ids)
    chunks = 0
    while left:
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"documents {sorted(left)} not done after {timeout} s")
        for i in list(left):
            d = http.get(f"/api/documents/{i}").json()
            if d["status"] in ("ready", "failed", "cancelled"):
                left.discard(i)
                chunks += d.get("chunks_total") or 0
                if d["status"] != "ready":
                    print(f"warning: document {i} {d['status']}: {d.get('error')}", file=sys.stderr)
        time.sleep(0.25)
    return time.perf_counter() - t0, chunks


async def search_loop(url: str, key: str, clients: int, think: float, until) -> dict:
    """Closed-loop searches by `clients` clients until until() is true; latency, degraded, embed stage."""
    lat: list[float] = []
    embed: list[float] = []
    degraded = errors = 0
    timed_out: dict[str, int] = {}  # stage -> searches it was abandoned in

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal degraded, errors
        n = i
        while not until():
            q = QUERIES[n % len(QUERIES)]
            n += clients
            t = time.perf_counter()
            try:
                r = await http.post(f"{url}/api/search", json={"query": q, "k": 8})
                body = r.json() if r.status_code == 200 else None
            except httpx.HTTPError:
                body = None
            lat.append((time.perf_counter() - t) * 1000)
            if body is None:
                errors += 1
            else:
                degraded += bool(body.get("degraded"))
                for stage in body.get("timed_out", []):
                    timed_out[stage] = timed_out.get(stage, 0) + 1
                if "embed" in body.get("timings_ms", {}):
                    embed.append(body["timings_ms"]["embed"])
            await asyncio.sleep(think)

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    n = len(lat)
    return {
        "requests": n,
        "p50_ms": percentile(lat, 0.5),
        "p99_ms": percentile(lat, 0.99),
        "degraded": degraded,
        "degraded_share": degraded / n if n else float("nan"),
        "errors": errors,
        "timed_out": timed_out,
        "embed_p50_ms": percentile(embed, 0.5),
        "embed_p99_ms": percentile(embed, 0.99),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", default=str(NODE_DOCS), help="folder of HTML or text files")
    ap.add_argument("--batch-kb", type=int, default=800, help="size of each ingested batch, KiB")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--think", type=float, default=0.2, help="seconds a client waits between searches")
    ap.add_argument("--seconds", type=float, default=30, help="length of the idle search phase")
    ap.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="product setting for the server"
    )
    ap.add_argument("--label", default="")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    seed, batch_a, batch_b = batches(Path(args.docs), args.batch_kb)
    tmp = tempfile.TemporaryDirectory(prefix="autoglm-sdi-")
    extra = dict(kv.split("=", 1) for kv in args.env)
    env = product_env(Path(tmp.name) / "data", AUTOGLM_LOG_LEVEL="WARNING", **extra)
    # the indexed seed is kept (benchmarks/out/) and copied into later runs' data directories
    digest = hashlib.sha256("\n".join(f"{f}:{f.stat().st_size}" for f in seed).encode()).hexdigest()[:12]
    cached = Path(__file__).resolve().parent / "out" / f"search_during_ingest_seed_{digest}"
    if cached.is_dir():
        shutil.copytree(cached, Path(tmp.name) / "data")
    else:
        t = time.perf_counter()
        autoglm(env, "ingest", *map(str, seed), "--collection", "seed", "--quiet", capture_output=True)
        print(f"seed: {len(seed)} pages indexed in {time.perf_counter() - t:.0f} s", flush=True)
        shutil.copytree(Path(tmp.name) / "data", cached)
    key = autoglm(env, "create-admin", "--name", "bench", capture_output=True, text=True).stdout.strip()

    log = open(Path(tmp.name) / "server.log", "wb")  # noqa: SIM115
    server, url = start_server(env, log=log)
    results: dict = {}
    try:
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        cid = http.post("/api/collections", json={"name": "incoming"}).json()["id"]
        # the worker is up and its model loaded once a small document is ready
        (Path(tmp.name) / "hello.txt").write_text("Warm-up document for the worker.\n")
        wait_ready(http, upload(http, cid, [Path(tmp.name) / "hello.txt"]), timeout=300)
        wpid = worker_pid(server.pid)
        results["worker_nice"] = niceness(wpid)
        load = OtherLoad([server.pid, wpid])
        asyncio.run(search_loop(url, key, args.clients, args.think, _for(5)))  # warm searches

        load.start()
        results["idle"] = asyncio.run(search_loop(url, key, args.clients, args.think, _for(args.seconds)))
        results["idle"]["other_load"] = load.stop()
        print(f"idle: {results['idle']}", flush=True)

        load.start()
        secs, chunks = wait_ready(http, upload(http, cid, batch_a))
        results["ingest_alone"] = {
            "docs": len(batch_a),
            "chunks": chunks,
            "seconds": secs,
            "chunks_per_s": chunks / secs,
            "other_load": load.stop(),
        }
        print(f"ingest alone: {results['ingest_alone']}", flush=True)

        ids = upload(http, cid, batch_b)
        done = threading.Event()
        box: dict = {}

        def ingest() -> None:
            box["secs"], box["chunks"] = wait_ready(
                httpx.Client(base_url=url, headers=http.headers, timeout=60), ids
            )
            done.set()

        load.start()
        threading.Thread(target=ingest, daemon=True).start()
        results["during_ingest"] = asyncio.run(search_loop(url, key, args.clients, args.think, done.is_set))
        done.wait()
        results["during_ingest"]["other_load"] = load.stop()
        results["ingest_searched"] = {
            "docs": len(batch_b),
            "chunks": box["chunks"],
            "seconds": box["secs"],
            "chunks_per_s": box["chunks"] / box["secs"],
            "other_load": results["during_ingest"]["other_load"],
        }
        print(f"during ingest: {results['during_ingest']}", flush=True)
    finally:
        stop_server(server)
        log.close()

    print(
        f"\n/api/search while the embedded worker ingests, on {platform.node()} ({os.cpu_count()} CPUs); "
        f"{args.clients} clients, think {args.think} s; worker nice {results['worker_nice']}; {args.label} {extra}"
    )
    print(
        "| phase | searches | p50 ms | p99 ms | degraded | timed out | embed p50 ms | embed p99 ms | other load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for phase in ("idle", "during_ingest"):
        r = results[phase]
        stages = " ".join(f"{k} {v}" for k, v in r["timed_out"].items()) or "-"
        print(
            f"| {phase.replace('_', ' ')} | {r['requests']} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} "
            f"| {r['degraded_share']:.0%} | {stages} | {r['embed_p50_ms']:.0f} | {r['embed_p99_ms']:.0f} "
            f"| {r['other_load']:.0%} |"
        )
    print("\n| ingestion | docs | chunks | seconds | chunks/s | other load |")
    print("|---|---|---|---|---|---|")
    for phase in ("ingest_alone", "ingest_searched"):
        r = results[phase]
        print(
            f"| {phase.replace('_', ' ')} | {r['docs']} | {r['chunks']} | {r['seconds']:.1f} "
            f"| {r['chunks_per_s']:.1f} | {r['other_load']:.0%} |"
        )
    out = (
        Path(args.json)
        if args.json
        else Path(__file__).resolve().parent / "out" / "search_during_ingest.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    results.update(date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), label=args.label, env=extra,
                   clients=args.clients, think=args.think, cpus=os.cpu_count())  # fmt: skip
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


def _for(seconds: float):
    end = time.perf_counter() + seconds
    return lambda: time.perf_counter() >= end


if __name__ == "__main__":
    main()
