"""Stored markup in the browser (real server, Debian's Chromium through Playwright): a collection, a file
name, a document title, passages and a question that carry <script>, <img onerror> and <svg onload> are
shown as text on the admin page, the ask page (answer, sources, passage view) and the history list, and
never run: no `window.__pwned`, no dialog, no element created from them, no Content-Security-Policy
violation (the pages themselves need no inline script or style)."""

from __future__ import annotations

import re

import pytest

from tests.web.test_e2e import _wait, browser, server, sign_in  # noqa: F401  (fixtures)

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need `playwright`")
expect = sync_api.expect
pytestmark = pytest.mark.slow

COLLECTION = 'ops <img src=x onerror="window.__pwned=4">'
DESCRIPTION = "<script>window.__pwned=5</script> runbooks"
FILENAME = "<img src=x onerror=window.__pwned=2>.md"
# NOTE: no underscores in the heading: the Markdown parser drops them from titles ("snake_case" -> "snakecase").
TITLE_MARKUP = "<script>alert('title')</script>"
# The markup sits in code spans: the Markdown reader takes a document's own HTML as the text it shows (tags
# gone), so markup reaches title and passages literally only as code, as in a page that documents HTML.
DOC = f"""# Payroll `{TITLE_MARKUP}` notes

Payroll dates: salaries are paid on the 25th. The `<script>window.__pwned=1</script>` tag,
`<img src=x onerror="window.__pwned=3;alert('xss')">` and `<svg onload="window.__pwned=6"></svg>` are
only text in this payroll passage.
""".encode()
QUESTION = 'When are salaries paid? <img src=x onerror="window.__pwned=7">'
PASSAGE_WORDS = re.compile(r"salaries are paid on the 25th|only text in this payroll passage")
# Fires on any CSP violation: injected markup that tried to run, or a page that needs inline code.
RECORD = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
"""


@pytest.fixture
def page(browser):  # noqa: F811
    """A fresh context; dialogs are recorded (and dismissed), script errors fail the test."""
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    ctx.add_init_script(RECORD)
    pg = ctx.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: m.type == "error" and errors.append(m.text))
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    yield pg
    ctx.close()
    assert not dialogs, dialogs
    assert not [e for e in errors if "Failed to load resource" not in e], errors


def _never_ran(page) -> None:
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("window.__cspViolations") == []
    injected = "img[src=x], script:not([src]), svg[onload], [onerror], [onload]"
    assert page.locator(injected).count() == 0


def test_stored_markup_shows_as_text_and_never_runs(server, page):  # noqa: F811
    with server.api() as c:
        r = c.post("/api/collections", json={"name": COLLECTION, "description": DESCRIPTION})
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        r = c.post(f"/api/collections/{cid}/documents", files=[("files", (FILENAME, DOC))])
        assert r.status_code == 202, r.text
        doc_id = r.json()["documents"][0]["id"]
        _wait(
            lambda: c.get(f"/api/documents/{doc_id}").json()["status"] == "ready", 180, "the document ready"
        )

    response = page.goto(f"{server.base}/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    sign_in(page, server.base)

    # Admin page: collection list and document table.
    page.goto(f"{server.base}/admin")
    expect(page.locator("tr[data-collection]").filter(has_text=COLLECTION)).to_have_count(1)
    page.get_by_role("button", name=f"Open collection {COLLECTION}").click()
    row = page.locator(f'tr[data-document="{FILENAME}"]')
    expect(row).to_have_attribute("data-status", "ready")
    expect(row).to_contain_text(FILENAME)
    expect(row).to_contain_text(TITLE_MARKUP)
    _never_ran(page)

    # Ask page: the collection picker, the answer, its sources and the passage view.
    page.goto(f"{server.base}/")
    page.get_by_label(COLLECTION).check()
    page.get_by_label("Question").fill(QUESTION)
    page.get_by_role("button", name="Ask", exact=True).click()
    answer = page.locator(".msg.assistant .answer").last
    expect(answer).to_have_attribute("data-state", "done", timeout=60_000)
    # a quote of the stored passage, whichever of its sentences the answerer picks (the question's own markup
    # shares six words with the passage's markup sentence, and those weigh as much as "salaries paid")
    expect(answer).to_contain_text(PASSAGE_WORDS)
    quoted = answer.inner_text()
    expect(page.locator(".msg.user").last).to_contain_text(QUESTION)
    expect(page.locator(".source-list")).to_contain_text(TITLE_MARKUP)
    page.locator(".msg.assistant .source-link").first.click()
    expect(page.locator("#source-title")).to_contain_text(TITLE_MARKUP)
    expect(page.locator("#source-text")).to_contain_text(
        """<img src=x onerror="window.__pwned=3;alert('xss')">"""
    )
    expect(page.locator("#source-text")).to_contain_text('<svg onload="window.__pwned=6"></svg>')
    expect(page.locator("#source-text")).to_contain_text("<script>window.__pwned=1</script>")
    _never_ran(page)

    # History: the stored question is the conversation's title; reopening it renders the stored turn.
    page.reload()
    item = page.locator("#history .history-item").first
    expect(item).to_contain_text(re.compile(re.escape(QUESTION[:40])))
    item.click()
    expect(page.locator(".msg.user").first).to_contain_text(QUESTION)
    expect(page.locator(".msg.assistant .answer").first).to_contain_text(quoted.strip()[-60:])
    _never_ran(page)
