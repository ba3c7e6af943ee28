"""Run the document parsers over a folder of sample files and count what each file type gave: read (with how
many got heading paths), refused as unsupported, failed with a reason, or raised anything else (a bug).

    python benchmarks/parse_samples.py DIR [--ext doc,ppt,xls,msg,rtf] [--show failed] [--json PATH]

Public corpora with many real-world Office files, e.g. Apache POI's test-data folder
(`git clone --depth 1 https://github.com/apache/poi && python benchmarks/parse_samples.py poi/test-data`).
Nothing is uploaded or indexed: only `ingest.parsers.parse`, with a 20 s limit a file (a slow file counts as
"slow").
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.parsers import ParseError, UnsupportedFileType, parse  # noqa: E402

LIMIT_S = 20


class _Slow(Exception):
    pass


def _alarm(*_args) -> None:
    raise _Slow


def run(files: list[Path]) -> dict[str, dict]:
    signal.signal(signal.SIGALRM, _alarm)
    out: dict[str, dict] = collections.defaultdict(
        lambda: {
            "files": 0,
            "read": 0,
            "with_headings": 0,
            "unsupported": 0,
            "failed": 0,
            "slow": 0,
            "crashed": 0,
            "reasons": collections.Counter(),
            "crashes": [],
        }  # fmt: skip
    )
    for f in files:
        row = out[f.suffix.lower().lstrip(".") or "(none)"]
        row["files"] += 1
        signal.alarm(LIMIT_S)
        try:
            doc = parse(f.read_bytes(), f.name)
            row["read"] += 1
            row["with_headings"] += any(
                s.heading_path and s.heading_path[0] not in ("Footnotes", "Endnotes") for s in doc.sections
            )
        except UnsupportedFileType as e:
            row["unsupported"] += 1
            row["reasons"][e.reason[:100]] += 1
        except ParseError as e:
            row["failed"] += 1
            row["reasons"][e.reason[:100]] += 1
        except _Slow:
            row["slow"] += 1
        except Exception as e:  # noqa: BLE001  (what this script is for: anything but a ParseError is a bug)
            row["crashed"] += 1
            row["crashes"].append(f"{f.name}: {type(e).__name__}: {str(e)[:200]}")
        finally:
            signal.alarm(0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--ext", default="doc,ppt,xls,msg,rtf,epub,odt,ods,odp,docx,pptx,xlsx,pdf,eml,mht,mhtml")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    exts = {"." + e.strip().lower() for e in args.ext.split(",")}
    files = sorted(p for p in args.dir.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    t = time.time()
    out = run(files)
    print(f"{len(files)} files under {args.dir} in {time.time() - t:.0f} s")
    print("| type | files | read | with headings | unsupported | failed | slow | crashed |")
    print("|---|---|---|---|---|---|---|---|")
    for ext, r in sorted(out.items()):
        print(f"| {ext} | {r['files']} | {r['read']} | {r['with_headings']} | {r['unsupported']} | {r['failed']} "
              f"| {r['slow']} | {r['crashed']} |")  # fmt: skip
    for ext, r in sorted(out.items()):
        for reason, n in r["reasons"].most_common(6):
            print(f"{ext}: {n} x {reason}")
        for c in r["crashes"]:
            print(f"{ext}: CRASH {c}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=lambda o: dict(o)))


if __name__ == "__main__":
    main()
