"""Load: N users searching and asking for M minutes while documents ingest; errors, latency, deadline hits,
back-pressure refusals and the memory of the API and worker processes.

    python benchmarks/load.py [--users 8] [--minutes 1] [--think 1.0] [--docs DIR] [--tiny-model] [--json F]
    python benchmarks/load.py --url http://host:8000 --key ADMIN_KEY [--api-pid PID] ...

Starts the real product (`autoglm serve`: API + embedded Celery worker, embedded defaults) in a temporary
data directory, or targets a running one (--url, with an admin key). Creates a collection, a group and
one member per simulated user (so per-user question limits apply per user, as in real use), uploads
--seed pages of Debian's python3-doc HTML and waits for them, then starts the clock: each user loops
search -> streamed ask (the SSE read to its end) -> every --chat-every turns an OpenAI chat completion on
`rag:<collection>`, with a random think time around --think between requests, and waits Retry-After on
a 429/503 (as a well-behaved client does) while the rest of the pages are uploaded in batches and
ingested in the background. The ask path answers with what the server has: extractively without a model,
or with --tiny-model a tiny random GLM-4 checkpoint (built as the tests build one) through the engine.

Reports per operation: requests, statuses, error rate, p50/p99 latency of answered requests and of
refusals, retrieval deadline hits (degraded answers); documents ingested during the run; RSS of the API
and the worker (process tree) sampled every second, max and last, against --rss-bound-mb. Prints a
Markdown table, writes JSON (--json, default benchmarks/out/load.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import (  # noqa: E402
    ROOT,
    autoglm,
    docs_dir,
    load_questions,
    percentile,
    product_env,
    start_server,
    stop_server,
)

OPS = ("search", "ask", "chat", "upload")
UPLOAD_BATCH = 5  # pages per upload request during the run


@dataclass
class OpStats:
    """Outcomes of one operation: latency per answered request, status counts, degraded answers."""

    ok_ms: list[float] = field(default_factory=list)
    refused_ms: list[float] = field(default_factory=list)  # 429 and 503
    statuses: Counter = field(default_factory=Counter)
    degraded: int = 0
    stream_errors: int = 0  # 200 streams that ended in an `error` event

    def row(self) -> dict:
        n = sum(self.statuses.values())
        bad = n - sum(v for k, v in self.statuses.items() if _ok(k)) + self.stream_errors
        return {
            "requests": n,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0]))},
            "error_rate": bad / n if n else 0.0,
            "p50_ms": percentile(self.ok_ms, 0.5),
            "p99_ms": percentile(self.ok_ms, 0.99),
            "refused_p99_ms": percentile(self.refused_ms, 0.99),
            "degraded": self.degraded,
            "stream_errors": self.stream_errors,
        }


def _ok(status: int | str) -> bool:
    return isinstance(status, int) and 200 <= status < 300


class Recorder:
    def __init__(self) -> None:
        self.ops = {op: OpStats() for op in OPS}

    def add(self, op: str, status: int | str, ms: float, degraded: bool = False) -> None:
        s = self.ops[op]
        s.statuses[status] += 1
        if _ok(status):
            s.ok_ms.append(ms)
            s.degraded += degraded
        elif status in (429, 503):
            s.refused_ms.append(ms)


class RssSampler(threading.Thread):
    """RSS of the API process and of its children (the worker) every second."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.api: list[float] = []
        self.worker: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        if self.pid is None:
            return
        proc = psutil.Process(self.pid)
        while not self.stop.is_set():
            try:
                self.api.append(proc.memory_info().rss / 2**20)
                kids = 0
                for child in proc.children(recursive=True):
                    try:
                        kids += child.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
                self.worker.append(kids / 2**20)
            except psutil.NoSuchProcess:
                return
            self.stop.wait(1.0)


def _retry_after(r: httpx.Response) -> float:
    try:
        return float(r.headers.get("retry-after", 1))
    except ValueError:
        return 1.0


async def _search(http: httpx.AsyncClient, rec: Recorder, q: str, cid: int) -> float:
    t = time.perf_counter()
    try:
        r = await http.post("/api/search", json={"query": q, "k": 10, "collection_ids": [cid]})
    except httpx.HTTPError as e:
        rec.add("search", type(e).__name__, 0.0)
        return 0.0
    ms = (time.perf_counter() - t) * 1000
    rec.add("search", r.status_code, ms, r.status_code == 200 and r.json().get("degraded", False))
    return _retry_after(r) if r.status_code in (429, 503) else 0.0


async def _ask(http: httpx.AsyncClient, rec: Recorder, q: str, cid: int) -> float:
    """A streamed ask read to its last event; degraded and error events come from the stream."""
    t = time.perf_counter()
    body = {"question": q, "collection_ids": [cid], "stream": True}
    try:
        async with http.stream("POST", "/api/ask", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                rec.add("ask", r.status_code, (time.perf_counter() - t) * 1000)
                return _retry_after(r) if r.status_code in (429, 503) else 0.0
            event, last, data = "", "", {}
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    last, data = event, json.loads(line[6:])
    except httpx.HTTPError as e:
        rec.add("ask", type(e).__name__, 0.0)
        return 0.0
    ms = (time.perf_counter() - t) * 1000
    if last == "done":
        rec.add("ask", 200, ms, bool(data.get("degraded")))
    else:
        rec.add("ask", 200, ms)
        rec.ops["ask"].stream_errors += 1
    return 0.0


async def _chat(http: httpx.AsyncClient, rec: Recorder, q: str, model: str) -> float:
    t = time.perf_counter()
    body = {"model": model, "messages": [{"role": "user", "content": q}], "max_tokens": 32}
    try:
        r = await http.post("/v1/chat/completions", json=body)
    except httpx.HTTPError as e:
        rec.add("chat", type(e).__name__, 0.0)
        return 0.0
    rec.add("chat", r.status_code, (time.perf_counter() - t) * 1000)
    return _retry_after(r) if r.status_code in (429, 503) else 0.0


async def user_loop(
    url: str, key: str, rec: Recorder, questions: list[str], cid: int, model: str, args, end: float, seed: int
) -> None:
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120, limits=limits
    ) as http:
        turn = 0
        while time.perf_counter() < end:
            turn += 1
            steps = [("search", _search), ("ask", _ask)]
            if args.chat_every and turn % args.chat_every == 0:
                steps.append(("chat", _chat))
            for op, fn in steps:
                if time.perf_counter() >= end:
                    return
                q = rng.choice(questions)
                wait = await fn(http, rec, q, model if op == "chat" else cid)
                think = rng.uniform(0.5, 1.5) * args.think
                await asyncio.sleep(min(max(wait, think), max(0.0, end - time.perf_counter())))


async def uploader(url: str, key: str, rec: Recorder, cid: int, pages: list[Path], end: float) -> int:
    """Upload `pages` in batches spread over the run; returns how many were accepted."""
    accepted = 0
    batches = [pages[i : i + UPLOAD_BATCH] for i in range(0, len(pages), UPLOAD_BATCH)]
    gap = max(1.0, (end - time.perf_counter()) * 0.8 / max(1, len(batches)))
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300
    ) as http:
        for batch in batches:
            while time.perf_counter() < end:
                files = [("files", (p.name, p.read_bytes(), "text/html")) for p in batch]
                t = time.perf_counter()
                try:
                    r = await http.post(f"/api/collections/{cid}/documents", files=files)
                except httpx.HTTPError as e:
                    rec.add("upload", type(e).__name__, 0.0)
                    break
                rec.add("upload", r.status_code, (time.perf_counter() - t) * 1000)
                if r.status_code not in (429, 503):
                    accepted += len(r.json().get("documents", [])) if r.status_code == 202 else 0
                    break
                await asyncio.sleep(_retry_after(r))
            await asyncio.sleep(gap)
            if time.perf_counter() >= end:
                break
    return accepted


def doc_counts(http: httpx.Client, cid: int) -> Counter:
    return Counter(d["status"] for d in http.get(f"/api/collections/{cid}/documents").json())


def metric_sums(http: httpx.Client, prefix: str) -> dict[str, float]:
    """Samples of the Prometheus metrics starting with `prefix`, by their full sample name with labels."""
    out = {}
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def setup(url: str, admin: str, users: int, docs: Path, seed: int) -> tuple[int, str, list[str], list[Path]]:
    """Collection, group, members, seed pages ingested; returns (collection id, name, member keys, rest)."""
    tag = time.strftime("%H%M%S")
    name = f"load-{tag}"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=120) as http:
        gid = http.post("/api/groups", json={"name": name}).raise_for_status().json()["id"]
        cid = (
            http.post("/api/collections", json={"name": name, "group_ids": [gid]})
            .raise_for_status()
            .json()["id"]
        )
        keys = [
            http.post("/api/users", json={"name": f"{name}-u{i}", "group_ids": [gid]})
            .raise_for_status()
            .json()["api_key"]
            for i in range(users)
        ]
        # Seed: the answer pages of the labelled questions first (smallest first), so searches find answers.
        answer_pages = {q["page"] for q in load_questions()}
        pages = sorted(
            (docs / "library").glob("*.html"),
            key=lambda p: (f"library/{p.name}" not in answer_pages, p.stat().st_size),
        )
        seeded, rest = pages[:seed], pages[seed:]
        t = time.perf_counter()
        for i in range(0, len(seeded), UPLOAD_BATCH):
            files = [("files", (p.name, p.read_bytes(), "text/html")) for p in seeded[i : i + UPLOAD_BATCH]]
            http.post(f"/api/collections/{cid}/documents", files=files).raise_for_status()
        while True:
            counts = doc_counts(http, cid)
            if counts.get("ready", 0) + counts.get("failed", 0) >= len(seeded):
                break
            time.sleep(2)
        print(f"seeded {counts.get('ready', 0)} pages in {time.perf_counter() - t:.0f} s ({dict(counts)})")
    return cid, name, keys, rest


async def run(args, url: str, admin: str, keys: list[str], cid: int, name: str, rest: list[Path], model: str):
    questions = [q["question"] for q in load_questions()]
    rec = Recorder()
    # Warm-up (not recorded): embedder, BM25 sidecars, index segments.
    warm = Recorder()
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {keys[0]}"}, timeout=120
    ) as http:
        for q in questions[:3]:
            await _search(http, warm, q, cid)
            await _ask(http, warm, q, cid)
    end = time.perf_counter() + args.minutes * 60
    up = asyncio.ensure_future(uploader(url, admin, rec, cid, rest[: args.ingest_pages], end))
    await asyncio.gather(
        *(user_loop(url, k, rec, questions, cid, model, args, end, seed=i) for i, k in enumerate(keys))
    )
    accepted = await up
    return rec, accepted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="target a running server (needs --key, an admin API key)")
    ap.add_argument("--key", default=None)
    ap.add_argument("--api-pid", type=int, default=None, help="with --url: the API process to sample RSS of")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--think", type=float, default=1.0, help="mean think time between requests, seconds")
    ap.add_argument("--chat-every", type=int, default=3, help="a chat completion every N turns (0 = none)")
    ap.add_argument("--docs", default=None, help="python3-doc HTML root (default: Debian's)")
    ap.add_argument("--seed", type=int, default=12, help="pages ingested before the clock starts")
    ap.add_argument("--ingest-pages", type=int, default=60, help="pages uploaded during the run")
    ap.add_argument("--tiny-model", action="store_true", help="serve a tiny random GLM-4 (engine path)")
    ap.add_argument("--rss-bound-mb", type=float, default=2048, help="stated bound per process (API, worker)")
    ap.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the server (repeatable)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.url and not args.key:
        raise SystemExit("--url needs --key (an admin API key)")

    docs = docs_dir(args.docs)
    tmp = tempfile.TemporaryDirectory(prefix="autoglm-load-")
    proc = None
    model = ""
    if args.url:
        url, admin, pid = args.url.rstrip("/"), args.key, args.api_pid
    else:
        extra = dict(kv.split("=", 1) for kv in args.env)
        env = product_env(Path(tmp.name) / "data", AUTOGLM_LOG_LEVEL="WARNING", **extra)
        serve_args: list[str] = []
        if args.tiny_model:
            serve_args = ["--model", str(tiny_checkpoint(Path(tmp.name)))]
            env.setdefault("AUTOGLM_ANSWER_MAX_TOKENS", "32")
            env.setdefault("AUTOGLM_KV_CACHE_MEMORY_MB", "256")
        admin = autoglm(
            env, "create-admin", "--name", "loadtest", capture_output=True, text=True
        ).stdout.strip()
        log = open(Path(tmp.name) / "server.log", "ab")  # noqa: SIM115
        proc, url = start_server(env, *serve_args, log=log)
        pid = proc.pid
    sampler = RssSampler(pid)
    try:
        cid, name, keys, rest = setup(url, admin, args.users, docs, args.seed)
        model = f"rag:{name}"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=60) as http:
            ready0 = doc_counts(http, cid).get("ready", 0)
            before = metric_sums(http, "autoglm_retrieval_timeouts_total") | metric_sums(
                http, "autoglm_backpressure_rejected_total"
            )
            sampler.start()
            t0 = time.perf_counter()
            rec, accepted = asyncio.run(run(args, url, admin, keys, cid, name, rest, model))
            wall = time.perf_counter() - t0
            counts = doc_counts(http, cid)
            after = metric_sums(http, "autoglm_retrieval_timeouts_total") | metric_sums(
                http, "autoglm_backpressure_rejected_total"
            )
        sampler.stop.set()
    finally:
        if proc is not None:
            stop_server(proc)
    report(args, rec, wall, ready0, counts, accepted, before, after, sampler)
    tmp.cleanup()


def tiny_checkpoint(root: Path) -> Path:
    """A tiny random GLM-4 checkpoint built by the tests' own builder (tests/inference/conftest.py)."""
    from tests.inference.conftest import build_checkpoint, build_tokenizer

    tok = root / "tok"
    tok.mkdir()
    build_tokenizer(tok)
    build_checkpoint(root / "tiny-glm", "glm", tok)
    return root / "tiny-glm"


def report(args, rec: Recorder, wall: float, ready0: int, counts: Counter, accepted: int, before, after, rss):
    rows = {op: s.row() for op, s in rec.ops.items() if s.statuses}
    delta = {
        k: after.get(k, 0.0) - before.get(k, 0.0) for k in after if after.get(k, 0.0) != before.get(k, 0.0)
    }
    deadline_hits = {
        re.search(r'stage="(\w+)"', k).group(1): int(v) for k, v in delta.items() if "retrieval_timeouts" in k
    }
    rss_api = {"max": max(rss.api, default=0.0), "last": rss.api[-1] if rss.api else 0.0,
               "first": rss.api[0] if rss.api else 0.0}  # fmt: skip
    rss_worker = {"max": max(rss.worker, default=0.0), "last": rss.worker[-1] if rss.worker else 0.0,
                  "first": rss.worker[0] if rss.worker else 0.0}  # fmt: skip
    ingested = counts.get("ready", 0) - ready0
    print(
        f"\n{args.users} users x {args.minutes:g} min (think {args.think:g} s) on {platform.node()} "
        f"({os.cpu_count()} CPUs), {wall:.0f} s wall"
    )
    print(
        "| op | requests | 2xx | 429 | 503 | other | error % | p50 ms | p99 ms | refusal p99 ms | degraded |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for op, r in rows.items():
        st = r["statuses"]
        ok = sum(v for k, v in st.items() if k.isdigit() and _ok(int(k)))
        other = r["requests"] - ok - st.get("429", 0) - st.get("503", 0) + r["stream_errors"]
        print(
            f"| {op} | {r['requests']} | {ok} | {st.get('429', 0)} | {st.get('503', 0)} | {other} "
            f"| {100 * r['error_rate']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['refused_p99_ms']:.0f} "
            f"| {r['degraded']} |"
        )
    print(f"retrieval stages abandoned at the deadline: {deadline_hits or 'none'}")
    print(f"documents: {accepted} uploaded during the run, {ingested} became ready ({dict(counts)})")
    bound = args.rss_bound_mb
    for name, r in (("API", rss_api), ("worker", rss_worker)):
        verdict = "within" if r["max"] <= bound else "OVER"
        print(
            f"{name} RSS MiB: start {r['first']:.0f}, max {r['max']:.0f}, last {r['last']:.0f} ({verdict} {bound:.0f})"
        )
    out = Path(args.json) if args.json else ROOT / "benchmarks" / "out" / "load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
                "args": vars(args),
                "wall_s": wall,
                "ops": rows,
                "retrieval_deadline_hits": deadline_hits,
                "counter_deltas": delta,
                "documents": {"uploaded_during_run": accepted, "ingested_during_run": ingested, **counts},
                "rss_mib": {"api": rss_api, "worker": rss_worker, "bound": bound},
                # every 5th one-second sample: a leak climbs to the end, a high-water mark levels off
                "rss_series_mib": {
                    "api": [round(x) for x in rss.api[::5]],
                    "worker": [round(x) for x in rss.worker[::5]],
                },
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
