"""The ask page's label of a source (web/ask.js ``sourceLabel``), run by Node.js on the page's own code: a slide
is "slide N", a page (and a source stored before the kind was kept) "p. N"."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ASK_JS = Path(__file__).resolve().parents[2] / "web" / "ask.js"
NODE = shutil.which("node")

# the function's source, cut from the module as written (it uses nothing else of the page), then called on
# each source given as JSON
SCRIPT = """
const fs = require("fs");
const code = fs.readFileSync(process.argv[1], "utf8");
const m = code.match(/^function sourceLabel\\(src\\) \\{[\\s\\S]*?^\\}$/m);
if (!m) throw new Error("sourceLabel not found in ask.js");
const sourceLabel = new Function(`${m[0]}; return sourceLabel;`)();
console.log(JSON.stringify(JSON.parse(process.argv[2]).map(sourceLabel)));
"""


@pytest.mark.skipif(NODE is None, reason="needs Node.js to run the page's script")
def test_a_source_is_labelled_slide_or_page_by_its_page_kind():
    sources = [
        {"page": 4, "page_kind": "slide", "heading_path": ["Roadmap", "Budget"]},
        {"page": 3, "page_kind": "page", "heading_path": []},
        {"page": 2, "heading_path": ["Policy"]},  # stored before page_kind existed
        {"page": 5, "page_kind": None, "heading_path": []},  # a chunk indexed before: null
        {"page": None, "page_kind": None, "heading_path": ["Notes"]},
    ]
    out = subprocess.run(
        [NODE, "-e", SCRIPT, str(ASK_JS), json.dumps(sources)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["slide 4 · Roadmap › Budget", "p. 3", "p. 2 · Policy", "p. 5", "Notes"]
