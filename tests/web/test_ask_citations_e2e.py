"""The ask page renders the citation markers GLM-4 writes, end to end: `autoglm serve` with a GLM-4 checkpoint
whose greedy answer is known in advance (tests/inference/conftest.py: build_scripted_checkpoint), driven by
Chromium. 【1】, streamed as three tokens, and ［来源：2］ become [1] and [2] buttons that open their passages;
the year [2024], the list item (3) and the code `days[3]` stay text; the answer reopened from the history reads
the same."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.app.ask_support import GUIDE
from tests.app.test_ask_citations import EXTRA, PIECES
from tests.inference.conftest import build_scripted_checkpoint
from tests.web.test_e2e import Server, ask, browser, expect, page, serve, shot, sign_in, upload_and_wait  # noqa: F401

pytestmark = pytest.mark.slow

# what the page shows: each marker that names sources as one [n] button per source, the rest as written
SHOWN = (
    "员工每年有二十八天带薪假[1]，未用完的最多五天可结转[2]。2024 年的规定[2024]见清单 (3) 与代码 `days[3]`。"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("web-glm")
    model = build_scripted_checkpoint(tmp / "scripted-glm", PIECES)
    with serve(tmp, AUTOGLM_MODEL_PATH=str(model), AUTOGLM_ANSWER_MAX_TOKENS="32",
               AUTOGLM_KV_CACHE_MEMORY_MB="32") as s:  # fmt: skip
        with s.api() as c:
            upload_and_wait(c, "handbook", [("vacation.md", GUIDE), ("leave.md", EXTRA)])
        yield s


def test_glm4_markers_render_as_citation_buttons(server, page):  # noqa: F811
    sign_in(page, server.base)
    page.get_by_label("handbook").check()
    answer = ask(page, "员工每年有多少天带薪假？")
    turn = page.locator(".msg.assistant").last
    expect(turn.locator(".source-list li")).to_have_count(4)
    assert answer.get_attribute("data-tokens") == str(len(PIECES))  # 【 1 】 came as three token events
    expect(answer).to_have_text(SHOWN)
    expect(answer.locator("button.cite")).to_have_text(["[1]", "[2]"])
    expect(turn.locator(".source-list li.cited")).to_have_count(2)
    expect(turn.locator(".source-list li.cited")).to_contain_text(["Vacation policy", "Vacation policy"])
    expect(page.locator(".note.extractive")).to_have_count(0)  # the engine wrote it
    shot(page, "20-glm4-citations")
    answer.locator("button.cite", has_text="[2]").click()
    expect(page.locator("#source-panel .chunk")).to_contain_text("Unused leave of up to five days")

    page.get_by_role("button", name="New conversation").click()
    page.locator("#history .history-item").first.click()
    stored = page.locator(".msg.assistant .answer").last
    expect(stored).to_have_text(SHOWN)
    expect(stored.locator("button.cite")).to_have_text(["[1]", "[2]"])
