"""How long Ctrl-C takes to stop `autoglm serve` (API + embedded worker), idle and while the worker embeds.

    python benchmarks/serve_stop.py [--repeat 3] [--doc FILE] [--root CHECKOUT] [--json F]

Starts the real product in a temporary data directory, waits until the API answers and its embedded worker is ready, then sends
SIGINT to the process group (what a terminal's Ctrl-C does) and times until `serve` and its worker have
exited. Case `idle`: nothing to do; case `embedding`: --doc (default the Node.js fs API page, 590 chunks)
was uploaded and the worker is embedding it. After a stop while embedding, the document's row is read: its
status and attempts (a stop must not lose it). --root runs another checkout's product with this script (a
before/after comparison). Prints a table, writes JSON (default benchmarks/out/serve_stop.json).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import ROOT, free_port, percentile, product_env  # noqa: E402

DEFAULT_DOC = Path("/usr/share/doc/nodejs/api/fs.html")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def one_stop(root: Path, doc: Path | None) -> dict:
    """Start serve, (upload doc and wait for its embedding,) Ctrl-C; seconds until serve and worker exited."""
    tmp = tempfile.TemporaryDirectory(prefix="autoglm-stop-")
    data = Path(tmp.name) / "data"
    env = product_env(data)
    env["PYTHONPATH"] = str(root)
    log_path = Path(tmp.name) / "serve.log"
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=root, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while b" ready." not in log_path.read_bytes() or not _up(
            port
        ):  # Celery's "<node> ready." line, the API
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        worker = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        doc_id = None
        if doc is not None:
            key = subprocess.run([sys.executable, "-m", "app.cli", "create-admin"], cwd=root, env=env, check=True,
                                 capture_output=True, text=True).stdout.strip()  # fmt: skip
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
                              timeout=60) as http:  # fmt: skip
                cid = http.post("/api/collections", json={"name": "stop"}).json()["id"]
                r = http.post(
                    f"/api/collections/{cid}/documents", files=[("files", (doc.name, doc.read_bytes()))]
                )
                doc_id = r.json()["documents"][0]["id"]
                while http.get(f"/api/documents/{doc_id}").json()["stage"] != "embedding":
                    time.sleep(0.2)
            time.sleep(2)  # well into the embedding
        t0 = time.perf_counter()
        os.killpg(proc.pid, signal.SIGINT)
        worker_s = None
        while proc.poll() is None or (worker_s is None and _alive(worker)):
            if worker_s is None and not _alive(worker):
                worker_s = time.perf_counter() - t0
            if time.perf_counter() - t0 > 120:
                raise SystemExit(f"serve did not stop in 120 s: {log_path.read_text()[-3000:]}")
            time.sleep(0.01)
        serve_s = time.perf_counter() - t0
        out = {
            "serve_s": serve_s,
            "worker_s": worker_s if worker_s is not None else serve_s,
            "rc": proc.returncode,
        }
        if doc_id is not None:
            with sqlite3.connect(data / "autoglm.db") as db:
                status, attempts = db.execute(
                    "SELECT status, attempts FROM documents WHERE id = ?", (doc_id,)
                ).fetchone()
            out.update(status=status, attempts=attempts)
        return out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        tmp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--doc", default=str(DEFAULT_DOC), help="document the worker embeds when stopped")
    ap.add_argument("--root", default=str(ROOT), help="checkout whose product to start")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    root = Path(args.root).resolve()
    runs: dict[str, list[dict]] = {"idle": [], "embedding": []}
    for _ in range(args.repeat):
        for case in runs:
            r = one_stop(root, Path(args.doc) if case == "embedding" else None)
            runs[case].append(r)
            print(f"{case}: {r}", flush=True)
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    print(
        f"\nCtrl-C on `autoglm serve` ({root}, {commit}), {args.repeat} runs per case, {os.cpu_count()} CPUs"
    )
    print("| case | serve exited s (each) | worker exited s (each) | document after |")
    print("|---|---|---|---|")
    for case, rs in runs.items():
        after = ", ".join(f"{r['status']} ({r['attempts']} attempts)" for r in rs if "status" in r) or "-"
        serve = ", ".join(f"{r['serve_s']:.1f}" for r in rs)
        worker = ", ".join(f"{r['worker_s']:.1f}" for r in rs)
        print(f"| {case} | {serve} | {worker} | {after} |")
    summary = {c: {"serve_p50_s": percentile([r["serve_s"] for r in rs], 0.5)} for c, rs in runs.items()}
    out = Path(args.json) if args.json else Path(__file__).resolve().parent / "out" / "serve_stop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "root": str(root),
                               "commit": commit, "runs": runs, "summary": summary}, indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
