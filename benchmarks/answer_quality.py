"""Extractive answers (the no-model path of /api/ask) on Debian's README files: is the answer quoted?

    python benchmarks/answer_quality.py [--questions FILE ...] [--out benchmarks/out/answer_quality.json]

The labelled set is benchmarks/data/debian_readme_questions.jsonl: questions written by hand on eight README
files every Debian system has under /usr/share/doc (bc, cscope, base-passwd, apt, adduser, bash, coreutils,
base-files' README.FHS), each with words the answering sentence holds; "dev" questions were looked at while
changing the answerer, "held-out" ones were written apart (their misses, printed too, were seen later on).
A second set, benchmarks/data/debian_readme_fresh_questions.jsonl ("fresh": jq, patch, mawk, ca-certificates,
python3.11's README.venv), was written after the answerer's rules and counted once before any change
(``--questions`` both files). A question with a "history" (the earlier questions of its conversation, oldest
first: benchmarks/data/debian_readme_followup_questions.jsonl, follow-ups and new topics) is searched and answered
as /api/ask does in a conversation. ``--distractors`` adds files nobody asks about to the collection; a question's or
a distractor's "doc" is a path under /usr/share/doc or an absolute path (HTML, Markdown and .gz files keep
their type: the file name tells it), e.g. the Node.js API manual's HTML pages:

    python benchmarks/answer_quality.py --questions benchmarks/data/nodejs_api_html_questions.jsonl \
        --distractors nodejs/api/{dns,readline,repl,domain,globals,permissions}.html

(benchmarks/data/pip_valgrind_questions.jsonl, on pip's Markdown topics and Valgrind's HTML quick start, runs
the same way; both sets' commands and distractors are in benchmarks/RESULTS.md.) ``--data-dir DIR`` keeps the
index in DIR and reuses it when the next run asks for the same files (a few hundred Markdown files take
minutes to ingest on a small CPU); remove DIR after a change to parsing or chunking.

Every file goes through the real product path (app.uploads.add_document, ingest.pipeline.process_document: parser, chunker, embedder, FAISS and BM25),
into one collection so the other files are distractors; each question runs app.answer.retrieve (hybrid
search) and app.answer.extractive_answer. Reported per set: the first quote holds the expected words (top),
any of the (at most three) quotes does (any); and the rank of the first retrieved source that holds the
expected words (passage in top 1 / 5). A question whose "outcome" is "no answer" (no "doc", no "expect":
benchmarks/data/zh_offtopic_questions.jsonl, off-topic questions to ask of a collection that does not answer
them; and in every other set, questions plausible for its collection that it does not answer, each checked absent
with grep) counts as refused when nothing is quoted. One table row a set: answerable questions, first / any quote
answers, answerable ones refused (nothing quoted), unanswerable ones, refused. Prints the misses (and the
unanswerable questions that got quotes), writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
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

QUESTIONS = _HERE / "data" / "debian_readme_questions.jsonl"
FRESH = _HERE / "data" / "debian_readme_fresh_questions.jsonl"
DOCS = Path("/usr/share/doc")


def upload_name(rel: str) -> str:
    """bc/README -> bc-README.txt, apt/README.md.gz -> apt-README.md (the file's type from its name)."""
    name = rel.strip("/").replace("/", "-").removesuffix(".gz")
    return name if "." in name.rsplit("-", 1)[-1] else name + ".txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", nargs="+", type=Path, default=[QUESTIONS], help="labelled JSONL files")
    ap.add_argument(
        "--distractors", nargs="*", default=[], help="more files for the collection, not asked about"
    )
    ap.add_argument("--data-dir", default=None, help="reuse (or create) this data directory")
    ap.add_argument("--out", default="benchmarks/out/answer_quality.json")
    args = ap.parse_args()
    questions = [
        json.loads(line) for f in args.questions for line in f.read_text().splitlines() if line.strip()
    ]
    docs = sorted({q["doc"] for q in questions if "doc" in q} | set(args.distractors))
    missing = [d for d in docs if not (DOCS / d).is_file()]  # DOCS / "/abs/path" is the absolute path
    if missing:
        raise SystemExit(f"missing under {DOCS}: {missing} (install the packages: bc cscope apt adduser ...)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="answer-quality-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["AUTOGLM_DATA_DIR"] = str(data_dir)

    from app.answer import extractive_answer, retrieve, standalone_query
    from app.db import session_scope
    from app.uploads import add_document
    from benchmarks.common import create_collection
    from ingest.pipeline import compact_collection, process_document

    marker = data_dir / "answer_quality_ingest.json"
    info = json.loads(marker.read_text()) if marker.is_file() else {}
    if info.get("docs") == docs:
        cid, ingest_s = info["collection_id"], info["ingest_s"]
        print(f"reusing the index in {data_dir}")
    else:
        if info:
            raise SystemExit(f"{data_dir} holds an index of other files; give another --data-dir")
        cid = create_collection("debian-readmes")
        t0 = time.perf_counter()
        for rel in docs:
            raw = (DOCS / rel).read_bytes()
            raw = gzip.decompress(raw) if rel.endswith(".gz") else raw
            with session_scope() as s:
                doc, _ = add_document(s, cid, upload_name(rel), raw, None)
                s.commit()
                doc_id = doc.id
            if (status := process_document(doc_id, schedule_compaction=False)) != "ready":
                raise SystemExit(f"{rel}: {status}")
        compact_collection(cid, force=True)
        ingest_s = time.perf_counter() - t0
        marker.write_text(json.dumps({"collection_id": cid, "ingest_s": round(ingest_s, 1), "docs": docs}))

    rows = []
    for q in questions:
        # a conversation's question ("history": the earlier questions, oldest first) is searched and answered as
        # /api/ask does, with what it carries of them
        history = [{"role": "user", "content": h} for h in q.get("history", [])]
        query = standalone_query(q["question"], history)
        hits = asyncio.run(retrieve(query, [cid]))
        text, _ = extractive_answer(q["question"], hits.sources, query=query)
        quotes = [line for line in text.splitlines() if line.startswith("“")]
        if q.get("outcome") == "no answer":
            rows.append({**q, "declined": not quotes, "quotes": quotes})
            continue
        want = q["expect"].casefold()
        # the retrieval's part: the rank of the first source that holds the expected words (None: none does)
        rank = next(
            (i for i, s in enumerate(hits.sources, 1) if want in " ".join(s.text.split()).casefold()), None
        )
        rows.append({**q, "top": bool(quotes) and want in quotes[0].casefold(), "rank": rank,
                     "any": any(want in line.casefold() for line in quotes), "quotes": quotes})  # fmt: skip
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.node(),
              "ingest_s": round(ingest_s, 1), "sets": {}, "questions": rows}  # fmt: skip
    print(f"{len(docs)} files ingested in {ingest_s:.1f} s\n")
    # one row a set: its answerable questions (first / any quote answers, refused: nothing quoted) and its
    # questions the collection does not answer ("outcome": "no answer"; refused when nothing is quoted)
    print("| set | answerable | passage in top 1 / 5 | first quote answers | any quote answers | wrongly refused "
          "| unanswerable | refused |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for name in dict.fromkeys(r["set"] for r in rows):
        got = [r for r in rows if r["set"] == name and "top" in r]
        off = [r for r in rows if r["set"] == name and "declined" in r]
        top, anyq = sum(r["top"] for r in got), sum(r["any"] for r in got)
        refused, declined = sum(not r["quotes"] for r in got), sum(r["declined"] for r in off)
        at1, at5 = (sum(r["rank"] is not None and r["rank"] <= k for r in got) for k in (1, 5))
        report["sets"][name] = {"questions": len(got), "passage_at_1": at1, "passage_at_5": at5, "top": top,
                                "any": anyq, "refused": refused, "unanswerable": len(off), "declined": declined}  # fmt: skip
        cells = f"{at1} / {at5} | {top} | {anyq} | {refused}" if got else "- | - | - | -"
        print(f"| {name} | {len(got)} | {cells} | {len(off)} | {declined if off else '-'} |")
    for r in rows:
        if "declined" in r:
            if not r["declined"]:
                print(f"\nQUOTED [{r['set']}] {r['question']} (wanted: no answer)")
                for line in r["quotes"]:
                    print(f"     {line[:140]}")
        elif not r["top"]:
            print(
                f"\n{'ANY ' if r['any'] else 'MISS'} [{r['set']}] {r['question']} (wanted: {r['expect']}; "
                f"passage rank {r['rank']})"
            )
            for line in r["quotes"]:
                print(f"     {line[:140]}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
