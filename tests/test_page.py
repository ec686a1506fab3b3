"""The review pages (DESIGN.md section 9) in a real headless Chromium, against a real
`agentstage serve` on a real repository: every page rendered, navigated by its links,
checked by axe-core, screenshotted; hostile content shown as text; the security headers;
and `agentstage diff --format html`.

One server and one browser for the module. The server authenticates by a proxy header
(`--auth header:X-Agentstage-User`), so each API call and each browser context says who it
is, and the publishes have different authors. Screenshots (1280x800, light and dark) go to
tests/artifacts/pages/ (git-ignored); README's picture is docs/review-page.png, a copy of
`review-light.png`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import CHROMIUM, ROOT, commit_all, git, write_agent
from test_serve import Server, sample_repo, server_env

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install "
                           "chromium)")
    pytest.skip(f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)

pytest.importorskip("playwright.sync_api")
axe_api = pytest.importorskip("axe_playwright_python.sync_playwright")

USER = "X-Agentstage-User"
ALICE = "Alice Admin <alice@example.com>"
BOB = "Bob Builder <bob@example.com>"
VIEWER = "Vera Viewer <vera@example.com>"
ARTIFACTS = ROOT / "tests" / "artifacts" / "pages"
SCRIPT = '<script>alert("x")</script>'
HOSTILE = {
    "name": '<script>alert("name")</script> & <b>Bold</b>',
    "description": '<img src=x onerror=alert(1)> "quoted" \'single\' </td></tr></table>',
    "instruction": ("</pre></td></tr></table><script>alert(2)</script>\n"
                    "Zoë 山田 👩‍💻 مرحبا \u202eevil\u202c zero\u200bwidth\n"
                    "<a href=\"javascript:alert(3)\">click me</a>\n"),
    "reason": '<script>alert("reason")</script> — Zoë 山田 👩‍💻',
}
# long, yet within what a publish record holds (256 KiB, both sides of the change)
LONG_TEXT = "".join(f"Line {n}: {'lorem ipsum dolor sit amet ' * 3}\n" for n in range(1200))


def api(http: httpx.Client, method: str, path: str, who: str = ALICE, **body: Any
        ) -> dict[str, Any]:
    r = http.request(method, path, json=body or None, headers={USER: who})
    assert r.status_code in (200, 201), r.text
    result: dict[str, Any] = r.json()
    return result


def edit(http: httpx.Client, agent: str, values: dict[str, Any], who: str = ALICE) -> None:
    api(http, "PATCH", f"/api/v2/agents/{agent}/fields", who, set=values)


def publish(http: httpx.Client, agent: str, reason: str, who: str = ALICE) -> int:
    version: int = api(http, "POST", f"/api/v2/agents/{agent}/publish", who,
                       reason=reason)["version"]
    return version


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The sample agents with a story, a hostile agent, a 500-field change, an invalid one."""
    base = tmp_path_factory.mktemp("page")
    repo = sample_repo(base)
    write_agent(repo, "broken", {"agent.yaml": "name: Broken\nmodel:\n  name: gpt-4o\n"
                                               "  temprature: 0.3\n"})
    commit_all(repo, "An agent with a typo")
    server = Server(repo, server_env(base / "home"), "--auth", f"header:{USER}")
    with server.client() as http:
        # billing-support: three publishes by two people, then staged edits in every section
        assert publish(http, "billing-support", "First release") == 1
        edit(http, "billing-support", {"model.temperature": 0.4,
                                       "instructions[persona].text": "You are Billing Bot.\n"
                                       "Be concise and friendly.\n"})
        assert publish(http, "billing-support", "Warmer replies", BOB) == 2
        edit(http, "billing-support", {"model.temperature": 0.5})
        assert publish(http, "billing-support", "Zoë's tweak: a bit warmer") == 3
        edit(http, "billing-support", {
            "name": "Billing Support Bot (beta)", "tags": ["billing", "tier-2"],
            "instructions[persona].text": "You are Billing Bot, the billing assistant.\n"
            "Be concise, friendly and precise.\nAlways confirm the account first.\n",
            "knowledge[status-page]": {"type": "website",
                                       "settings": {"url": "https://status.example.com"}},
            "tools[ticketing].enabled": False,
            "guardrails[toxicity].config.threshold": 0.5})
        # hr-helpdesk: published, nothing staged since
        publish(http, "hr-helpdesk", "HR goes live")
        # hostile: HTML and script in every text field, unicode, a very long text
        api(http, "POST", "/api/v2/agents", id="hostile", name=HOSTILE["name"],
            description=HOSTILE["description"], tags=["<b>tag</b>", "Zoë"])
        edit(http, "hostile", {
            "instructions[persona].text": HOSTILE["instruction"],
            "instructions[long].text": LONG_TEXT,
            "knowledge[faq]": {"type": "corpus", "description": HOSTILE["description"]},
            "tools[web]": {"enabled": True, "description": SCRIPT,
                           "config": {"note": SCRIPT}},
            "guardrails[custom-html]": {"enabled": True, "config": {"message": SCRIPT}}})
        publish(http, "hostile", HOSTILE["reason"], VIEWER)
        edit(http, "hostile", {
            "name": HOSTILE["name"] + " v2", "description": SCRIPT + " changed",
            "instructions[persona].text": HOSTILE["instruction"].replace("evil", "<i>x</i>"),
            "instructions[long].text": LONG_TEXT.replace("Line 1000:", "<b>Line</b> 1000:"),
            "tools[web].description": SCRIPT + "2", "guardrails[custom-html].config.message":
            "<style>body{display:none}</style>"})
        # wide: 500 fields change at once
        api(http, "POST", "/api/v2/agents", id="wide", name="Wide")
        edit(http, "wide", {"model.parameters": {f"p{n:03}": n for n in range(500)}})
        publish(http, "wide", "500 parameters")
        edit(http, "wide", {"model.parameters": {f"p{n:03}": f"<b>{n}</b>"
                                                 for n in range(500)}})
    yield server
    assert server.stop() == 0, server.stderr


class Tab:
    """A browser page that records what must never happen: a dialog (a script ran), a
    console error (a CSP violation says so), a failed request."""

    def __init__(self, browser: Any, site: Server, scheme: str = "light",
                 who: str | None = VIEWER) -> None:
        self.context = browser.new_context(
            viewport={"width": 1280, "height": 800}, color_scheme=scheme,
            base_url=site.url, extra_http_headers={USER: who} if who else {})
        self.page = self.context.new_page()
        self.scheme = scheme
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("console", lambda m: self.errors.append(m.text)
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, path: str, status: int = 200) -> Any:
        response = self.page.goto(path)
        assert response is not None
        if response.status != status:  # the error page says what went wrong
            shown = self.page.locator("body").inner_text() if response.ok or \
                "html" in response.headers.get("content-type", "") else response.text()
            raise AssertionError(f"{path}: {response.status}, not {status}: {shown[:2000]}")
        return response

    def clean(self) -> None:
        assert self.dialogs == [], self.dialogs
        # an error status is logged by Chromium as a failed resource: that one is expected
        unexpected = [e for e in self.errors if "the server responded with a status" not in e]
        assert unexpected == [], unexpected
        assert self.page.locator("script").count() == 0

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}-{self.scheme}.png"
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, site: Server) -> Iterator[Tab]:
    opened = Tab(browser, site)
    yield opened
    opened.close()


def serious(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page, one line each."""
    results = axe_api.Axe().run(page)
    assert results.response["passes"], "axe-core checked nothing"
    return [f"{v['id']} ({v['impact']}): {v['help']}: "
            + "; ".join(n["target"][0] if n["target"] else "?" for n in v["nodes"][:5])
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff",
           "referrer-policy": "same-origin"}


def secure(response: Any) -> None:
    headers = response.headers
    for name, value in HEADERS.items():
        assert headers.get(name) == value, (name, headers.get(name))
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'none'" in csp
    assert "unsafe-inline" not in csp and "default-src 'self'" in csp


# (name, path, status, the page's h1) for every page; the screenshots are named by name
PAGES = [
    ("agents", "/", 200, "Agents"),
    ("agents-filtered", "/?q=bill", 200, "Agents"),
    ("review", "/agents/billing-support", 200, "Billing Support Bot (beta)"),
    ("review-nothing", "/agents/hr-helpdesk", 200, "HR Helpdesk"),
    ("review-new", "/agents/sales-assistant", 200, "Sales Assistant"),
    ("review-hostile", "/agents/hostile", 200, HOSTILE["name"] + " v2"),
    ("review-500", "/agents/wide", 200, "Wide"),
    ("review-invalid", "/agents/broken", 422, "Invalid configuration"),
    ("history", "/agents/billing-support/history", 200, "Publish history"),
    ("history-filtered", "/agents/billing-support/history?author=bob&since=2000-01-01",
     200, "Publish history"),
    ("history-paged", "/agents/billing-support/history?limit=2", 200, "Publish history"),
    ("history-hostile", "/agents/hostile/history", 200, "Publish history"),
    ("entry", "/agents/billing-support/history/2", 200, "billing-support v2"),
    ("entry-hostile", "/agents/hostile/history/1", 200, "hostile v1"),
    ("preview-revert", "/agents/billing-support/history/2/preview?action=revert", 200,
     "Preview: revert billing-support v2"),
    ("preview-restore", "/agents/billing-support/history/1/preview?action=restore", 200,
     "Preview: restore billing-support v1"),
    ("not-found", "/agents/no-such-agent", 404, "Not found"),
    ("bad-date", "/agents/billing-support/history?since=yesterday", 400, "Bad request"),
]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(("name", "path", "status", "heading"), PAGES,
                         ids=[p[0] for p in PAGES])
def test_every_page_renders_accessibly_and_securely(browser: Any, site: Server, name: str,
                                                    path: str, status: int, heading: str,
                                                    scheme: str) -> None:
    tab = Tab(browser, site, scheme)
    try:
        response = tab.open(path, status)
        secure(response)
        assert "Traceback" not in tab.page.content()
        assert tab.page.locator("h1").first.inner_text().startswith(heading)
        assert tab.page.get_by_text("Signed in as").count() == 1
        assert tab.page.locator(".viewer strong").inner_text() == "Vera Viewer"
        # usable: no page wider than the window, whatever the content
        width = tab.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, f"{path} is {width}px wide"
        shot = tab.shot(name)
        assert shot.stat().st_size > 5000
        tab.clean()
        assert serious(tab.page) == []
    finally:
        tab.close()


def test_the_stylesheet_is_served_by_the_app(site: Server) -> None:
    with site.client() as http:
        r = http.get("/static/agentstage.css")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
        assert "prefers-color-scheme: dark" in r.text
        assert r.headers["x-content-type-options"] == "nosniff"
        page = http.get("/", headers={USER: VIEWER}).text
    for url in re.findall(r'(?:href|src)="([^"]*)"', page):
        assert not url.startswith(("http:", "https:", "//")), url


def test_pages_need_the_same_authentication_as_the_api(browser: Any, site: Server) -> None:
    tab = Tab(browser, site, who=None)
    try:
        for path in ("/", "/agents/billing-support", "/agents/billing-support/history"):
            response = tab.open(path, 401)
            secure(response)
            assert tab.page.locator("h1").inner_text().startswith("Sign-in needed")
            assert "no identity in the X-Agentstage-User header" in tab.page.content()
        assert serious(tab.page) == []
        tab.shot("unauthenticated")
    finally:
        tab.close()
    with site.client() as http:  # the API says the same
        assert http.get("/api/v2/agents").status_code == 401


def test_navigation_by_links(tab: Tab) -> None:
    page = tab.page
    tab.open("/")
    page.get_by_role("link", name="Billing Support Bot (beta)").click()
    page.wait_for_url("**/agents/billing-support")
    assert page.get_by_role("heading", name="Settings").count() == 1
    page.get_by_role("link", name="Publish history").click()
    page.wait_for_url("**/agents/billing-support/history")
    rows = page.locator("table.history tbody tr")
    assert rows.count() == 3
    assert [rows.nth(n).locator("th").inner_text().split()[0] for n in range(3)] == \
        ["v3", "v2", "v1"]  # newest first
    page.get_by_role("link", name="Diff of v2").click()
    page.wait_for_url("**/agents/billing-support/history/2")
    assert page.get_by_text("Warmer replies").count() == 1
    assert page.locator("td", has_text="0.4").count() >= 1
    page.get_by_role("link", name="Preview a revert of v2").click()
    page.wait_for_url("**/history/2/preview?action=revert")
    assert page.get_by_text("Production is untouched.").count() == 1
    page.get_by_role("link", name="Preview a restore to v2 instead").click()
    page.wait_for_url("**/history/2/preview?action=restore")
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="Agents").click()
    page.wait_for_url(re.compile(r".*/$"))
    tab.clean()


def test_keyboard_reaches_the_content_and_the_filter(tab: Tab) -> None:
    page = tab.page
    tab.open("/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")  # focus moves to the main content
    page.keyboard.press("Tab")  # its first control: the filter box
    focused = page.evaluate("document.activeElement.id")
    assert focused == "q", focused
    page.keyboard.type("hr-")
    page.keyboard.press("Enter")
    page.wait_for_url("**/?q=hr-")
    names = page.locator("table.agents tbody th .id").all_inner_texts()
    assert names == ["hr-helpdesk"]


def test_the_agents_list(tab: Tab) -> None:
    page = tab.page
    tab.open("/")
    row = page.locator("table.agents tbody tr", has_text="billing-support")
    assert "v3" in row.locator("td").nth(0).inner_text()
    assert "by Alice Admin" in row.locator("td").nth(1).inner_text()
    assert "6 changed fields" in row.locator("td").nth(2).inner_text()
    same = page.locator("table.agents tbody tr", has_text="hr-helpdesk")
    assert "Same as production" in same.inner_text()
    new = page.locator("table.agents tbody tr", has_text="sales-assistant")
    assert "not published" in new.inner_text() and "never" in new.inner_text()
    broken = page.locator("table.agents tbody tr", has_text="broken").inner_text()
    assert "Invalid" in broken and "temprature" in broken
    hostile = page.locator("table.agents tbody tr", has_text="hostile")
    assert hostile.locator("a.name").inner_text() == HOSTILE["name"] + " v2"
    tab.open("/?q=nothing-like-this")
    assert page.get_by_text("No agent matches").count() == 1
    tab.clean()


def test_the_review_groups_marks_and_diffs_lines(tab: Tab) -> None:
    page = tab.page
    tab.open("/agents/billing-support")
    assert page.locator(".summary").inner_text() == \
        "6 changes: settings 2, instructions 1, knowledge 1, tools 1, guardrails 1"
    headings = page.locator("main h2").all_inner_texts()
    assert [h.split()[0] for h in headings] == ["Settings", "Instructions", "Knowledge",
                                                "Tools", "Guardrails", "Publish"]
    # the kind of change in words and a symbol, not only colour
    added = page.locator("tr", has_text="knowledge[status-page]")
    assert added.locator(".kind").inner_text() == "+ added"
    assert added.locator("td.old").inner_text() == "(none)"
    name = page.locator("table.diff tr", has_text="Billing Support Bot (beta)")
    assert name.locator(".kind").inner_text() == "~ modified"
    assert name.locator("td.new ins").inner_text() == " (beta)"
    # the instruction: a side-by-side line diff with the changed words marked
    lines = page.locator("table.lines")
    assert lines.count() == 1
    marked = lines.locator("ins").all_inner_texts()
    assert ", the billing assistant" in marked and "precise" in marked
    assert "Be concise" not in "".join(marked)  # the words that stayed are not marked
    assert "+Always confirm the account first." in lines.locator("td.came").last.inner_text()
    tab.open("/agents/hr-helpdesk")
    assert page.get_by_role("heading", name="Nothing to publish").count() == 1
    assert page.get_by_text("Staging is identical to production (v1).").count() == 1
    assert page.locator("table.diff").count() == 0
    tab.clean()


def test_hostile_content_is_text_and_the_page_stays_usable(tab: Tab) -> None:
    page = tab.page
    tab.open("/agents/hostile")
    tab.clean()  # no dialog, no CSP violation, no script element
    assert page.locator("img").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("style").count() == 0  # the staged <style> is text
    body = page.locator("main").inner_text()
    assert "<style>body{display:none}</style>" in body
    assert SCRIPT + " changed" in body
    assert '<img src=x onerror=alert(1)> "quoted"' in body
    # invisible characters are shown, not obeyed
    escapes = page.locator(".esc").all_inner_texts()
    assert "\\u202e" in escapes and "\\u200b" in escapes
    assert "Zoë 山田 👩‍💻 مرحبا" in body
    # the long text: only the changed line and its context, not 1,200 lines
    long_diff = page.locator("tr", has_text="instructions[long].text").locator("table.lines")
    assert long_diff.locator("td.came").inner_text().startswith("+<b>Line</b> 1000:")
    assert long_diff.locator("tr.skip").count() == 2
    # still a page: the heading, the links and the tables work
    assert page.locator("main h1").is_visible()
    page.get_by_role("link", name="Publish history").click()
    page.wait_for_url("**/agents/hostile/history")
    assert HOSTILE["reason"] in page.locator("table.history").inner_text()
    tab.clean()


def test_five_hundred_changed_fields(tab: Tab) -> None:
    page = tab.page
    tab.open("/agents/wide")
    assert page.locator(".summary").inner_text() == "500 changes: settings 500"
    assert page.locator("table.diff tbody tr").count() == 500
    last = page.locator("table.diff tbody tr").last
    assert last.locator("th").inner_text() == "model.parameters.p499"
    assert last.locator("td.new").inner_text() == "<b>499</b>"
    tab.clean()


def test_history_filters_are_in_the_url(tab: Tab) -> None:
    page = tab.page
    tab.open("/agents/billing-support/history?author=bob")
    versions = page.locator("table.history tbody th a").all_inner_texts()
    assert versions == ["v2"]
    assert page.locator("#author").input_value() == "bob"
    tab.open("/agents/billing-support/history?author=alice&until=2000-01-01")
    assert page.get_by_role("heading", name="No publish matches these filters").count() == 1
    # the form makes the same kind of link
    tab.open("/agents/billing-support/history")
    page.get_by_label("Published by").fill("Alice")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/history?author=Alice&since=&until=")
    assert page.locator("table.history tbody th a").all_inner_texts() == ["v3", "v1"]
    tab.clean()


def test_history_pages_with_the_cursor(tab: Tab) -> None:
    page = tab.page
    tab.open("/agents/billing-support/history?limit=2")
    assert page.locator("table.history tbody th a").all_inner_texts() == ["v3", "v2"]
    page.get_by_role("link", name="Older publishes →").click()
    page.wait_for_url("**/history?limit=2&cursor=billing-support%2Fv2")
    assert page.locator("table.history tbody th a").all_inner_texts() == ["v1"]
    assert page.get_by_role("link", name="Older publishes →").count() == 0
    page.get_by_role("link", name="← Newest publishes").click()
    page.wait_for_url("**/history?limit=2")
    tab.clean()


def test_the_preview_names_conflicts_and_shows_both_diffs(tab: Tab) -> None:
    page = tab.page
    tab.open("/agents/billing-support/history/2/preview?action=revert")
    conflicts = page.locator("table.conflicts tbody tr")
    # v2 set both fields; both were edited since
    assert sorted(conflicts.locator("th").all_inner_texts()) == \
        ["instructions[persona].text", "model.temperature"]
    temperature = conflicts.filter(has_text="model.temperature").locator("td")
    assert temperature.all_inner_texts() == ["0.4", "0.5", "0.2"]
    assert page.get_by_role("heading", name="Nothing would be applied", exact=True).count() == 2
    tab.open("/agents/billing-support/history/1/preview?action=restore")
    assert page.locator("table.conflicts").count() == 0
    staging = page.locator("section[aria-labelledby^='staging-']")
    production = page.locator("section[aria-labelledby^='production-']")
    assert staging.count() >= 1 and production.count() >= 1
    assert "0.2" in production.first.inner_text() or "0.2" in staging.first.inner_text()
    assert page.get_by_text("Production is untouched.").count() == 1
    tab.clean()


def test_errors_are_pages_with_the_api_status(tab: Tab) -> None:
    page = tab.page
    for path, status in (("/agents/no-such-agent", 404), ("/agents/BAD_ID", 400),
                         ("/agents/billing-support/history/99", 404),
                         ("/agents/billing-support/history/2/preview?action=merge", 400),
                         ("/agents/billing-support/history?limit=0", 400),
                         ("/agents/billing-support/nothing/here", 404),
                         ("/agents/broken", 422)):
        response = tab.open(path, status)
        secure(response)
        assert response.headers["content-type"].startswith("text/html")
        text = page.content()
        assert "Traceback" not in text and 'File "' not in text
        assert page.locator("[role=alert]").count() == 1
    assert "model.temprature" in page.locator("[role=alert]").inner_text()
    tab.clean()


def test_auth_none_pages_just_work(browser: Any, tmp_path: Path) -> None:
    server = Server(sample_repo(tmp_path), server_env(tmp_path / "home"))
    tab = Tab(browser, server, who=None)
    try:
        tab.open("/agents/hr-helpdesk")
        assert "Serve Author" in tab.page.locator(".viewer").inner_text()
        assert "--auth none" in tab.page.locator(".viewer").inner_text()
        tab.clean()
    except AssertionError as exc:
        server.stop()
        raise AssertionError(f"{exc}\nthe server said: {server.stderr}") from None
    finally:
        tab.close()
    assert server.stop() == 0, server.stderr


# -- agentstage diff --format html ---------------------------------------------------------


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "action")]


def test_diff_format_html_is_one_self_contained_page(run: Any, site: Server, browser: Any,
                                                     tmp_path: Path) -> None:
    repo = tmp_path / "copy"
    shutil.copytree(site.repo, repo, symlinks=True)
    git(repo, "rm", "-q", "-r", "agents/broken")  # an invalid agent stops a diff of all (4)
    git(repo, "commit", "-q", "-m", "Without the broken agent")
    result = run("diff", "hostile", "--format", "html", repo=repo)
    assert result.code == 0, result.err
    document = result.out
    assert document.startswith("<!doctype html>")
    parsed = Links()
    parsed.feed(document)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    for url in parsed.urls:
        assert url.startswith(("#", "data:")), url
    assert "<style>" in document and "prefers-color-scheme: dark" in document
    assert SCRIPT not in document and "&lt;script&gt;" in document
    # every agent that differs, in one page; --exit-code still says so
    everything = run("diff", "--format", "html", "--exit-code", repo=repo)
    assert everything.code == 1
    for agent in ("billing-support", "hostile", "wide", "sales-assistant"):
        assert f'id="agent-{agent}"' in everything.out
    same = run("diff", "hr-helpdesk", "--format", "html", repo=repo)
    assert "Nothing to publish" in same.out
    revs = run("diff", "--base", "production/billing-support", "--head", "staging",
               "billing-support", "--format", "html", repo=repo)
    assert revs.code == 0 and "Base" in revs.out and "Head" in revs.out
    # the same review, read by a browser with no server behind it
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.route("**/*", lambda route: route.abort())  # nothing may be fetched
        page.set_content(document)
        assert page.locator("h1").inner_text() == "Review of hostile"
        assert page.locator("script").count() == 0
        assert serious(page) == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "diff-format-html.png"))
    finally:
        context.close()


def test_the_diff_command_does_not_import_the_server(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = sample_repo(tmp_path)
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "agentstage", "-C",
                           str(repo), "diff", "hr-helpdesk", "--format", "html"],
                          capture_output=True, text=True, timeout=60, check=True,
                          env=server_env(tmp_path / "home"))
    imported = {line.rpartition("|")[2].strip().split(".")[0]
                for line in done.stderr.splitlines() if "|" in line}
    assert "jinja2" in imported
    assert imported.isdisjoint({"fastapi", "starlette", "uvicorn"})
    assert git(repo, "status", "--porcelain") == ""
