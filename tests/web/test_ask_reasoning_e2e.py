"""The ask page with a reasoning checkpoint (GLM-Z1 layout: the template opens <think>, the model thinks, closes it
and answers), end to end: `autoglm serve` with a scripted GLM-4 checkpoint, driven by Chromium. While the model
reasons the page says it is working; the answer is the text after the reasoning, with only its own citations as
buttons; the reasoning sits in a collapsed "Reasoning" disclosure, also when the answer is reopened from the
history."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.app.ask_support import GUIDE
from tests.app.test_ask_reasoning import ANSWER, OPENED, REASONING, THOUGHT
from tests.inference.conftest import build_scripted_checkpoint
from tests.web.test_e2e import Server, ask, browser, expect, page, serve, sign_in, upload_and_wait  # noqa: F401

pytestmark = pytest.mark.slow

SHOWN = "Employees get twenty-eight days a year [1]."
# records every text the status line shows while the answer streams
WATCH = """() => {
  window.__statuses = [];
  new MutationObserver(() => {
    for (const el of document.querySelectorAll(".reasoning-status")) {
      if (!el.hidden && el.textContent) window.__statuses.push(el.textContent);
    }
  }).observe(document.getElementById("messages"), { subtree: true, childList: true, characterData: true,
                                                    attributes: true });
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("web-z1")
    model = build_scripted_checkpoint(tmp / "z1", [*THOUGHT, "</think>", "\n\n", *ANSWER], OPENED, "<think>")
    with serve(tmp, AUTOGLM_MODEL_PATH=str(model), AUTOGLM_ANSWER_MAX_TOKENS="8",
               AUTOGLM_REASONING_MAX_TOKENS="32", AUTOGLM_KV_CACHE_MEMORY_MB="32") as s:  # fmt: skip
        with s.api() as c:
            upload_and_wait(c, "handbook", [("vacation.md", GUIDE)])
        yield s


def test_the_reasoning_is_apart_from_the_answer(server, page):  # noqa: F811
    sign_in(page, server.base)
    page.get_by_label("handbook").check()
    page.evaluate(WATCH)
    answer = ask(page, "How many days of paid leave do employees get?")
    turn = page.locator(".msg.assistant").last
    assert page.evaluate("window.__statuses")[:1] == ["Thinking before answering…"]
    expect(turn.locator(".reasoning-status")).to_be_hidden()  # no longer working
    expect(answer).to_have_text(SHOWN)
    expect(answer.locator("button.cite")).to_have_text(["[1]"])  # the reasoning's [2] is no citation
    reasoning = turn.locator("details.reasoning")
    expect(reasoning).not_to_have_attribute("open", "")
    expect(reasoning.locator("summary")).to_have_text("Reasoning")
    expect(reasoning.locator(".reasoning-text")).to_be_hidden()
    reasoning.locator("summary").click()
    expect(reasoning.locator(".reasoning-text")).to_have_text(REASONING)
    expect(reasoning.locator(".reasoning-text button")).to_have_count(0)

    page.get_by_role("button", name="New conversation").click()
    page.locator("#history .history-item").first.click()
    turn = page.locator(".msg.assistant").last
    expect(turn.locator(".answer")).to_have_text(SHOWN)
    expect(turn.locator("details.reasoning .reasoning-text")).to_have_text(REASONING)
