"""The ask page's citation parser (web/citations.js), run by Node.js on the page's own module: the same cases
as the server's (tests/retrieval/test_citations.py), so a marker the server counts as cited is the one the
page turns into a [n] button, and text the server leaves alone stays text on the page."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.retrieval.test_citations import CASES, N

CITATIONS_JS = Path(__file__).resolve().parents[2] / "web" / "citations.js"
NODE = shutil.which("node")

# the module imported as it is (an ES module, from a data: URL), then run on each text with sources 1..N
SCRIPT = """
const fs = require("fs");
const code = fs.readFileSync(process.argv[1], "utf8");
const [texts, n] = JSON.parse(process.argv[2]);
import("data:text/javascript;base64," + Buffer.from(code).toString("base64")).then(({ citations }) => {
  const out = texts.map((t) => citations(t, (k) => k >= 1 && k <= n).map((c) => [t.slice(c.start, c.end), c.numbers]));
  console.log(JSON.stringify(out));
});
"""


@pytest.mark.skipif(NODE is None, reason="needs Node.js to run the page's script")
def test_the_page_finds_the_markers_the_server_counts():
    texts = [text for text, _ in CASES]
    out = subprocess.run(
        [NODE, "-e", SCRIPT, str(CITATIONS_JS), json.dumps([texts, N])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    for (text, expected), markers in zip(CASES, got, strict=True):
        assert [tuple(m) for m in markers] == expected, text
