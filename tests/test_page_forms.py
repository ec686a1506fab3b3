"""The review page's writes (DESIGN.md section 9) in a real headless Chromium against a real
`agentstage serve --auth tokens` under a policy: token login and its cookie, the seed's
story clicked through (edit on Monday, Wednesday and Friday, review, publish with a reason
and a confirmation, history, filter, preview, revert, publish again) with the git state
checked after each step, CSRF refusals, what the policy does not let a viewer do, a lost
save, and hostile text through every form. One server and one browser for the module;
screenshots of every new page go to tests/artifacts/pages/.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import pytest

from conftest import git
from test_page import ARTIFACTS, serious
from test_serve import Server, cli, sample_repo, server_env

POLICY = """\
admins: [alice]
editors: [ed]
publishers:
  billing-support: [ed-no]
"""
AGENT = "billing-support"
HOSTILE = '<script>alert("x")</script> & <b>bold</b> "q" \'s\' Zoë 山田 \u202eevil\u202c'


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("forms")
    repo = sample_repo(base)
    env = server_env(base / "home")
    (base / "policy.yaml").write_text(POLICY)
    assert cli(repo, env, "policy", "set", str(base / "policy.yaml")).returncode == 0
    tokens = {}
    for name in ("alice", "ed", "vera", "temp"):
        made = cli(repo, env, "token", "create", name, "--email", f"{name}@example.com")
        assert made.returncode == 0, made.stderr
        tokens[name] = made.stdout.strip()
    server = Server(repo, env, "--auth", "tokens")
    yield {"repo": repo, "env": env, "tokens": tokens, "server": server}
    assert server.stop() == 0, server.stderr
    assert "Traceback" not in server.stderr, server.stderr


class Tab:
    def __init__(self, browser: Any, site: dict[str, Any]) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800},
                                           base_url=site["server"].url)
        self.page = self.context.new_page()
        self.page.set_default_timeout(8000)
        self.dialogs: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def login(self, token: str) -> None:
        self.page.goto("/login")
        self.page.get_by_label("Token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state()

    def look(self, name: str, heading: str | None = None, at: Any = None) -> None:
        """No script ran, no traceback, axe-core content, a screenshot (of *at* when given)."""
        page = self.page
        if at is not None:
            at.scroll_into_view_if_needed()
        assert self.dialogs == []
        assert page.locator("script").count() == 0
        assert "Traceback" not in page.content()
        if heading is not None:
            assert page.locator("h1").first.inner_text().startswith(heading), \
                page.locator("main").inner_text()[:2000]
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        assert serious(page) == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}-light.png"))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def alice(browser: Any, site: dict[str, Any]) -> Iterator[Tab]:
    tab = Tab(browser, site)
    tab.login(site["tokens"]["alice"])
    yield tab
    tab.close()


def staging(site: dict[str, Any], fmt: str = "%an|%s") -> str:
    return git(site["repo"], "log", "-1", f"--format={fmt}", "staging")


def rev(site: dict[str, Any], ref: str) -> str:
    return git(site["repo"], "rev-parse", "-q", "--verify", ref, check=False)


def api(site: dict[str, Any], who: str = "alice") -> httpx.Client:
    client: httpx.Client = site["server"].client(
        headers={"authorization": f"Bearer {site['tokens'][who]}"})
    return client


def field(text: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', text)
    assert found, f"no {name} in the page"
    return unescape(found.group(1))


# -- login -------------------------------------------------------------------------------


def test_login_good_bad_and_revoked_tokens_and_the_cookie(browser: Any,
                                                          site: dict[str, Any]) -> None:
    tab = Tab(browser, site)
    try:
        page = tab.page
        page.goto(f"/agents/{AGENT}")  # not signed in: to the login page, and back after
        assert "/login?next=" in page.url
        tab.look("login", "Sign in")
        page.get_by_label("Token").fill("ast_000000000000_wrong")
        page.get_by_role("button", name="Sign in").click()
        assert "unknown, revoked or expired" in page.locator("main").inner_text()
        tab.look("login-refused", "Sign in")
        page.get_by_label("Token").fill(site["tokens"]["temp"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**/agents/{AGENT}")
        assert page.locator(".viewer strong").inner_text() == "temp"
        assert page.locator(".viewer .role").inner_text() == "viewer"
        cookie = next(c for c in tab.context.cookies() if c["name"] == "agentstage_session")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/" and site["tokens"]["temp"] not in cookie["value"]
        assert 11 * 3600 < cookie["expires"] - time.time() <= 12 * 3600
        # the API never takes the cookie
        with site["server"].client(cookies={"agentstage_session": cookie["value"]}) as http:
            assert http.get("/api/v2/agents").status_code == 401
        # a revoked token ends its sessions
        assert cli(site["repo"], site["env"], "token", "revoke", "temp").returncode == 0
        time.sleep(0.6)
        page.goto(f"/agents/{AGENT}/history")
        assert "/login?next=" in page.url
        # sign out forgets the cookie
        tab.login(site["tokens"]["vera"])
        page.goto("/")
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/login")
        assert not [c for c in tab.context.cookies() if c["name"] == "agentstage_session"]
    finally:
        tab.close()


# -- the seed's story --------------------------------------------------------------------


def save_form(tab: Tab, form: Any, button: str) -> None:
    form.get_by_role("button", name=button).click()
    tab.page.wait_for_url("**/edit?saved=*")


def test_the_story_edit_review_publish_history_revert_publish(alice: Tab,
                                                              site: dict[str, Any]) -> None:
    page = alice.page
    assert page.locator(".viewer .role").inner_text() == "admin"
    start = rev(site, "staging")
    # Monday: the system prompt
    page.goto(f"/agents/{AGENT}")
    page.get_by_role("link", name="Edit staging").click()
    alice.look("edit", "Edit Billing Support Bot")
    persona = page.get_by_role("form", name="Instruction persona")
    persona.get_by_label(re.compile("^Instruction persona")).fill(
        "You are Billing Bot.\nConfirm the account first.\n")
    persona.get_by_label("Commit message").fill("Monday: a shorter persona")
    save_form(alice, persona, "Save text")
    assert staging(site) == "alice|Monday: a shorter persona"
    alice.look("edit-saved", "Edit Billing Support Bot")
    # Wednesday: a knowledge source
    page.get_by_label("Corpus id").fill("refund-faq")
    page.get_by_label("Description", exact=True).last.fill("Refund questions")
    page.locator("#k-new-s").fill('{"top_k": 4}')
    save_form(alice, page.locator("form", has=page.locator("#k-new-id")), "Connect the corpus")
    assert staging(site) == "alice|billing-support: connect corpus refund-faq"
    # Friday: the guardrails
    tox = page.get_by_role("form", name="Guardrail toxicity")
    tox.get_by_label("Config of toxicity").fill('{"threshold": 0.5, "action": "block"}')
    save_form(alice, tox, "Save guardrail")
    assert staging(site) == "alice|billing-support: guardrail toxicity"
    assert git(site["repo"], "rev-list", "--count", f"{start}..staging") == "3"
    assert rev(site, f"refs/heads/production/{AGENT}") == ""
    # review, reason, confirmation, publish
    page.goto(f"/agents/{AGENT}")
    alice.look("review-publish-form", "Billing Support Bot")
    page.get_by_label(re.compile("^Reason")).fill("Monday to Friday: persona, FAQ, toxicity")
    page.get_by_role("button", name="Review what goes live…").click()
    alice.look("publish-confirm", f"Publish {AGENT} v1?")
    assert rev(site, f"refs/tags/{AGENT}/v1") == ""  # not before the confirmation
    page.get_by_role("button", name="Publish v1 now").click()
    page.wait_for_url("**/history/1?published=1")
    assert "Published v1" in page.locator(".notice.done").inner_text()
    alice.look("published", f"{AGENT} v1")
    assert rev(site, f"refs/heads/production/{AGENT}") == rev(site, "staging")
    tagger = git(site["repo"], "for-each-ref", "--format=%(taggername)|%(contents:subject)",
                 f"refs/tags/{AGENT}/v1")
    assert tagger.startswith("alice|")
    # a second publish by the API, so there is something to revert
    with api(site) as http:
        r = http.patch(f"/api/v2/agents/{AGENT}/fields", json={"set": {"model.temperature": 0.9}})
        assert r.status_code == 200, r.text
        r = http.post(f"/api/v2/agents/{AGENT}/publish", json={"reason": "Too warm"})
        assert r.status_code == 200, r.text
    # history, filter, the entry, the revert preview
    page.goto(f"/agents/{AGENT}/history?author=alice")
    assert page.locator("table.history tbody tr").count() == 2
    page.get_by_role("link", name="v2", exact=True).first.click()
    page.get_by_role("link", name="Preview a revert of v2").click()
    alice.look("preview-confirm", f"Preview: revert {AGENT} v2")
    production = rev(site, f"refs/heads/production/{AGENT}")
    page.get_by_label(re.compile("^Reason")).fill("0.9 was too warm")
    page.get_by_role("button", name="Revert v2 on staging").click()
    page.wait_for_url(f"**/agents/{AGENT}?done=revert*")
    assert "Production is untouched" in page.locator(".notice.done").inner_text()
    alice.look("reverted", "Billing Support Bot")
    assert rev(site, f"refs/heads/production/{AGENT}") == production
    assert staging(site, "%an|%B").startswith("alice|")
    assert f"Reverts: {AGENT}/v2" in staging(site, "%B") or "v2" in staging(site, "%s")
    # publish again
    page.get_by_label(re.compile("^Reason")).fill("Back to 0.2")
    page.get_by_role("button", name="Review what goes live…").click()
    page.get_by_role("button", name="Publish v3 now").click()
    page.wait_for_url("**/history/3?published=1")
    assert rev(site, f"refs/heads/production/{AGENT}") == rev(site, "staging")
    assert rev(site, f"refs/tags/{AGENT}/v3") != ""
    # nothing to publish now: no form
    page.goto(f"/agents/{AGENT}")
    assert page.get_by_role("button", name="Review what goes live…").count() == 0


def test_a_refused_publish_keeps_the_reason(alice: Tab, site: dict[str, Any]) -> None:
    page = alice.page
    with api(site) as http:
        http.patch("/api/v2/agents/hr-helpdesk/fields", json={"set": {"model.temperature": 0.3}})
    page.goto("/agents/hr-helpdesk")
    page.get_by_label(re.compile("^Reason")).fill("Kept <b>reason</b>")
    with api(site) as http:  # someone changes staging after the review was loaded
        http.patch("/api/v2/agents/hr-helpdesk/fields", json={"set": {"model.temperature": 0.4}})
    page.get_by_role("button", name="Review what goes live…").click()
    assert "changed on staging since you reviewed" in page.locator(".notice.error").inner_text()
    assert page.get_by_label(re.compile("^Reason")).input_value() == "Kept <b>reason</b>"
    alice.look("publish-refused", "HR Helpdesk")
    assert rev(site, "refs/tags/hr-helpdesk/v1") == ""


# -- CSRF and the policy -----------------------------------------------------------------


@contextlib.contextmanager
def session(site: dict[str, Any], who: str) -> Iterator[httpx.Client]:
    """A plain HTTP client signed in through the login form."""
    with site["server"].client() as http:
        form = http.get("/login")
        r = http.post("/login", data={"csrf": field(form.text, "csrf"), "next": "/",
                                      "token": site["tokens"][who]})
        assert r.status_code == 303, r.text
        yield http


def test_csrf_without_wrong_or_cross_site_is_refused(site: dict[str, Any]) -> None:
    with session(site, "alice") as http:
        text = http.get(f"/agents/{AGENT}/edit").text
        good = {"csrf": field(text, "csrf"), "etag": field(text, "etag"), "id": "persona",
                "op": "save", "text": "forged"}
        before = rev(site, "staging")
        url = f"/agents/{AGENT}/edit/instruction"
        for data, headers in (({k: v for k, v in good.items() if k != "csrf"}, {}),
                              ({**good, "csrf": "0" * 64}, {}),
                              (good, {"Origin": "https://evil.example"}),
                              (good, {"Sec-Fetch-Site": "cross-site"})):
            r = http.post(url, data=data, headers=headers)
            assert r.status_code == 403, r.text
            assert "Traceback" not in r.text
        with session(site, "ed") as other:  # another session's token is wrong too
            assert other.post(url, data=good).status_code == 403
        assert rev(site, "staging") == before
        # a form post without a session: to the login page, nothing changed
        with site["server"].client() as anonymous:
            assert anonymous.post(url, data=good).status_code == 303
        assert rev(site, "staging") == before
        # and the login form has its own token
        assert http.post("/login", data={"token": site["tokens"]["alice"]}).status_code == 403


def test_a_viewer_is_offered_nothing_and_a_forged_post_is_refused(site: dict[str, Any],
                                                                  browser: Any) -> None:
    with api(site) as http:
        http.patch("/api/v2/agents/sales-assistant/fields",
                   json={"set": {"model.temperature": 0.6}})
    tab = Tab(browser, site)
    try:
        tab.login(site["tokens"]["vera"])
        tab.page.goto("/agents/sales-assistant")
        assert tab.page.locator("form[action$='/publish']").count() == 0
        assert "does not let vera publish" in tab.page.locator("main").inner_text()
        tab.look("review-viewer", "Sales Assistant")
        tab.page.goto("/agents/sales-assistant/edit")
        assert tab.page.locator("main form").count() == 0
        tab.look("edit-viewer", "Edit Sales Assistant")
    finally:
        tab.close()
    before = rev(site, "staging")
    for who in ("vera", "ed"):  # ed may edit, not publish
        with session(site, who) as http:
            text = http.get("/agents/sales-assistant").text
            assert 'action="/agents/sales-assistant/publish"' not in text
            csrf = field(text, "csrf")
            r = http.post("/agents/sales-assistant/publish",
                          data={"csrf": csrf, "reason": "forged", "step": "publish"})
            assert r.status_code == 403 and "may not publish" in r.text
            edit = http.get("/agents/sales-assistant/edit").text
            assert ('action="/agents/sales-assistant/edit/settings"' in edit) == (who == "ed")
    with session(site, "vera") as http:
        r = http.post("/agents/sales-assistant/edit/tool",
                      data={"csrf": field(http.get("/").text, "csrf"), "id": "x",
                            "op": "enable"})
        assert r.status_code == 403 and "may not edit staging" in r.text
    assert rev(site, "refs/tags/sales-assistant/v1") == "" and rev(site, "staging") == before


# -- a lost save, hostile text -----------------------------------------------------------


def test_a_lost_save_shows_both_versions(alice: Tab, site: dict[str, Any]) -> None:
    page = alice.page
    page.goto("/agents/hr-helpdesk/edit")
    page.get_by_label("Description", exact=True).first.fill("Mine: HR questions only")
    with api(site, "ed") as http:
        r = http.put("/api/v2/agents/hr-helpdesk", json={"description": "Theirs: HR and IT"})
        assert r.status_code == 200, r.text
    before = rev(site, "staging")
    page.get_by_role("button", name="Save settings").click()
    lost = page.locator("#lost-title").locator("..")
    assert "Mine: HR questions only" in lost.inner_text()
    assert "Theirs: HR and IT" in lost.inner_text()
    assert page.get_by_label("Description", exact=True).first.input_value() == \
        "Theirs: HR and IT"
    alice.look("edit-lost", "Edit HR Helpdesk")
    assert rev(site, "staging") == before


def test_hostile_text_round_trips_through_every_form(alice: Tab, site: dict[str, Any]) -> None:
    page = alice.page
    page.goto("/agents/sales-assistant/edit")
    page.get_by_label("Name", exact=True).fill(HOSTILE)
    page.get_by_label("Description", exact=True).first.fill(HOSTILE + "\nline two")
    page.get_by_label("Model parameters").fill('{"note": "</textarea><script>x</script>"}')
    page.locator("#msg-settings-").fill(HOSTILE)
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_url("**/edit?saved=*")
    page.get_by_label("Id (letters").fill("hostile")
    page.locator("#i-new-text").fill(HOSTILE + "\n</textarea>")
    page.get_by_role("button", name="Add the instruction").click()
    page.wait_for_url("**/edit?saved=*")
    page.get_by_label("Corpus id").fill("evil")
    page.locator("#k-new-d").fill(HOSTILE)
    page.get_by_role("button", name="Connect the corpus").click()
    page.wait_for_url("**/edit?saved=*")
    alice.look("edit-hostile", "Edit")
    with api(site) as http:
        config = http.get("/api/v2/agents/sales-assistant").json()
    assert config["name"] == HOSTILE
    assert config["description"] == HOSTILE + "\nline two"
    assert config["model"]["parameters"]["note"] == "</textarea><script>x</script>"
    assert next(i for i in config["instructions"] if i["id"] == "hostile")["text"] == \
        HOSTILE + "\n</textarea>"
    assert next(k for k in config["knowledge"] if k["id"] == "evil")["description"] == HOSTILE
    # the forms show it back as text, unchanged
    assert page.get_by_label("Name", exact=True).input_value() == HOSTILE
    assert page.locator("#i-hostile").input_value() == HOSTILE + "\n</textarea>"
    assert git(site["repo"], "log", "-1", "--format=%s", "staging~2") == \
        HOSTILE.replace("\u202e", "\u202e")
    # a bad value is refused with what was typed kept
    page.get_by_label("Temperature").fill("warm")
    page.get_by_label("Name", exact=True).fill("Typed <name>")
    page.get_by_role("button", name="Save settings").click()
    assert "temperature must be a number" in page.locator(".notice.error").inner_text()
    assert page.get_by_label("Name", exact=True).input_value() == "Typed <name>"
    alice.look("edit-refused", "Edit")


# -- knowledge sources other than corpora, a tool's own config, a new agent -------------


def on_staging(site: dict[str, Any], agent: str, file: str) -> Any:
    """The YAML of one of *agent*'s files on staging, as git holds it."""
    import yaml

    return yaml.safe_load(git(site["repo"], "show", f"staging:agents/{agent}/{file}"))


def fresh_agent(site: dict[str, Any], agent: str) -> None:
    with api(site) as http:
        r = http.post("/api/v2/agents", json={"id": agent, "name": f"Agent {agent}"})
        assert r.status_code == 201, r.text


def saved_one_commit(tab: Tab, site: dict[str, Any], before: str, subject: str) -> None:
    tab.page.wait_for_url("**/edit?saved=*")
    assert git(site["repo"], "rev-list", "--count", f"{before}..staging") == "1"
    assert staging(site) == f"alice|{subject}"


def test_sharepoint_folder_and_website_connect_edit_disconnect(alice: Tab,
                                                               site: dict[str, Any]) -> None:
    agent = "sp-bot"
    fresh_agent(site, agent)
    page = alice.page
    page.goto(f"/agents/{agent}/edit#knowledge")
    # a refused connect keeps what was typed
    before = rev(site, "staging")
    page.get_by_label("Description of the folder").fill(HOSTILE)
    page.get_by_label("Folder settings").fill('{"library": "Docs"}')
    page.get_by_role("button", name="Connect the folder").click()
    error = page.locator(".notice.error").inner_text()
    assert "site_url" in error, error
    assert page.get_by_label("Description of the folder").input_value() == HOSTILE
    assert page.get_by_label("Folder settings").input_value() == '{"library": "Docs"}'
    alice.look("edit-sharepoint-refused", "Edit", page.locator(".notice.error"))
    assert rev(site, "staging") == before
    # connect: one commit, the entry the API's POST .../sharepoint/folder makes
    page.get_by_label("Folder settings").fill(
        '{"site_url": "https://acme.sharepoint.com/sites/a", "library": "Docs"}')
    page.get_by_role("button", name="Connect the folder").click()
    saved_one_commit(alice, site, before, f"{agent}: connect SharePoint folder sharepoint")
    assert on_staging(site, agent, "knowledge.yaml") == [
        {"id": "sharepoint", "type": "sharepoint", "description": HOSTILE,
         "settings": {"site_url": "https://acme.sharepoint.com/sites/a", "library": "Docs"}}]
    folder = page.get_by_role("form", name="SharePoint folder sharepoint")
    assert folder.get_by_label("Description", exact=True).input_value() == HOSTILE
    alice.look("edit-sharepoint", "Edit", folder)
    # edit its settings: a bad URL is refused with the text kept, then a good one saved
    before = rev(site, "staging")
    bad = '{"site_url": "not a url <b>x</b>", "library": "Docs"}'
    folder.get_by_label("Settings").fill(bad)
    folder.get_by_role("button", name="Save folder settings").click()
    assert "http" in page.locator(".notice.error").inner_text()
    folder = page.get_by_role("form", name="SharePoint folder sharepoint")
    assert folder.get_by_label("Settings").input_value() == bad
    assert rev(site, "staging") == before
    folder.get_by_label("Settings").fill(
        '{"site_url": "https://acme.sharepoint.com/sites/b", "exclude_folders": ["Drafts"]}')
    folder.get_by_label("Commit message").fill("Finance moved the library")
    folder.get_by_role("button", name="Save folder settings").click()
    saved_one_commit(alice, site, before, "Finance moved the library")
    (entry,) = on_staging(site, agent, "knowledge.yaml")
    assert entry["settings"] == {"site_url": "https://acme.sharepoint.com/sites/b",
                                 "exclude_folders": ["Drafts"]}
    assert entry["description"] == HOSTILE
    # a website: refused without its url (what was typed kept), then connected
    before = rev(site, "staging")
    page.get_by_label("Website source id").fill("docs-site")
    page.get_by_label("Description of the website").fill("Public docs")
    page.get_by_label("Website settings").fill('{"crawl_depth": 2}')
    page.get_by_role("button", name="Connect the website").click()
    assert "url" in page.locator(".notice.error").inner_text()
    assert page.get_by_label("Website source id").input_value() == "docs-site"
    assert page.get_by_label("Description of the website").input_value() == "Public docs"
    page.get_by_label("Website settings").fill(
        '{"url": "https://docs.example.com", "crawl_depth": 2}')
    page.get_by_role("button", name="Connect the website").click()
    saved_one_commit(alice, site, before, f"{agent}: connect website docs-site")
    assert on_staging(site, agent, "knowledge.yaml")[1] == {
        "id": "docs-site", "type": "website", "description": "Public docs",
        "settings": {"url": "https://docs.example.com", "crawl_depth": 2}}
    # disconnect the folder: one commit, the website stays
    before = rev(site, "staging")
    page.get_by_role("form", name="SharePoint folder sharepoint").get_by_role(
        "button", name="Disconnect").click()
    saved_one_commit(alice, site, before, f"{agent}: disconnect SharePoint folder sharepoint")
    assert [k["id"] for k in on_staging(site, agent, "knowledge.yaml")] == ["docs-site"]
    # the sample's SharePoint folder of another id is edited in place
    page.goto("/agents/hr-helpdesk/edit#knowledge")
    hr = page.get_by_role("form", name="SharePoint folder hr-policies")
    assert "Published Policies" in hr.get_by_label("Settings").input_value()
    # a viewer is offered none of it, and a forged post is refused
    with session(site, "vera") as http:
        text = http.get(f"/agents/{agent}/edit").text
        assert "/edit/source" not in text
        before = rev(site, "staging")
        r = http.post(f"/agents/{agent}/edit/source",
                      data={"csrf": field(http.get("/").text, "csrf"), "type": "website",
                            "id": "docs-site", "op": "disconnect"})
        assert r.status_code == 403 and "may not edit staging" in r.text
        assert rev(site, "staging") == before


def test_a_tools_own_config_and_adding_a_tool(alice: Tab, site: dict[str, Any]) -> None:
    agent = "tool-bot"
    fresh_agent(site, agent)
    page = alice.page
    page.goto(f"/agents/{agent}/edit#tools")
    # add a tool that is not there yet: enabled, with its config, one commit
    before = rev(site, "staging")
    adding = page.get_by_role("form", name="Add a tool")
    adding.get_by_label("Tool id").fill("web-search")
    adding.get_by_label("Config of the new tool").fill('{"max_results": 5}')
    adding.get_by_role("button", name="Add the tool").click()
    saved_one_commit(alice, site, before, f"{agent}: add tool web-search")
    assert on_staging(site, agent, "tools.yaml") == [
        {"id": "web-search", "enabled": True, "config": {"max_results": 5}}]
    # adding it again is refused, what was typed kept
    before = rev(site, "staging")
    adding = page.get_by_role("form", name="Add a tool")
    adding.get_by_label("Tool id").fill("web-search")
    adding.get_by_label("Config of the new tool").fill('{"kept": true}')
    adding.get_by_role("button", name="Add the tool").click()
    assert "is there already" in page.locator(".notice.error").inner_text()
    adding = page.get_by_role("form", name="Add a tool")
    assert adding.get_by_label("Config of the new tool").input_value() == '{"kept": true}'
    assert rev(site, "staging") == before
    # its own config: not JSON is refused with the text kept, then hostile text saved
    tool = page.get_by_role("form", name="Tool web-search config")
    tool.get_by_label("Config of tool web-search").fill('{"max_results": 5,')
    tool.get_by_label("Commit message").fill("typed <message>")
    tool.get_by_role("button", name="Save tool config").click()
    assert "is not JSON" in page.locator(".notice.error").inner_text()
    tool = page.get_by_role("form", name="Tool web-search config")
    assert tool.get_by_label("Config of tool web-search").input_value() == '{"max_results": 5,'
    assert tool.get_by_label("Commit message").input_value() == "typed <message>"
    alice.look("edit-tool-refused", "Edit", tool)
    assert rev(site, "staging") == before
    hostile = '{"max_results": 3, "note": "' + HOSTILE.replace('"', '\\"') + '"}'
    tool.get_by_label("Config of tool web-search").fill(hostile)
    tool.get_by_role("button", name="Save tool config").click()
    saved_one_commit(alice, site, before, "typed <message>")
    assert on_staging(site, agent, "tools.yaml") == [
        {"id": "web-search", "enabled": True, "config": {"max_results": 3, "note": HOSTILE}}]
    tool = page.get_by_role("form", name="Tool web-search config")
    assert json.loads(tool.get_by_label("Config of tool web-search").input_value())["note"] \
        == HOSTILE
    alice.look("edit-tool-config", "Edit", tool)
    # emptied: the config goes, the tool stays
    before = rev(site, "staging")
    tool.get_by_label("Config of tool web-search").fill("")
    tool.get_by_role("button", name="Save tool config").click()
    saved_one_commit(alice, site, before, f"{agent}: config of tool web-search")
    assert on_staging(site, agent, "tools.yaml") == [{"id": "web-search", "enabled": True}]
    # the sample's tools show their config
    page.goto(f"/agents/{AGENT}/edit#tools")
    assert "base_url" in page.get_by_label("Config of tool billing-lookup").input_value()
    with session(site, "vera") as http:
        assert "/edit/tool" not in http.get(f"/agents/{agent}/edit").text


def test_a_new_agent_from_the_agents_page(alice: Tab, site: dict[str, Any]) -> None:
    page = alice.page
    page.goto("/")
    adding = page.get_by_role("form", name="Add an agent")
    # refused: an id taken, then an id outside the grammar; what was typed is kept
    before = rev(site, "staging")
    for ident, says in ((AGENT, "already exists"), ("Bad Id", "invalid agent id")):
        adding = page.get_by_role("form", name="Add an agent")
        adding.get_by_label("Agent id").fill(ident)
        adding.get_by_label("Name", exact=True).fill(HOSTILE)
        adding.get_by_label("Description").fill("Typed <description>")
        adding.get_by_label("Model name").fill("claude-x")
        adding.get_by_role("button", name="Add the agent").click()
        assert says in page.locator(".notice.error").inner_text().lower(), \
            page.locator(".notice.error").inner_text()
        adding = page.get_by_role("form", name="Add an agent")
        assert adding.get_by_label("Agent id").input_value() == ident
        assert adding.get_by_label("Name", exact=True).input_value() == HOSTILE
        assert adding.get_by_label("Description").input_value() == "Typed <description>"
        assert adding.get_by_label("Model name").input_value() == "claude-x"
    alice.look("new-agent-refused", "Agents", adding)
    assert rev(site, "staging") == before
    # created: one commit, then its edit page
    adding.get_by_label("Agent id").fill("new-bot")
    adding.get_by_label("Model provider").fill("anthropic")
    adding.get_by_role("button", name="Add the agent").click()
    page.wait_for_url("**/agents/new-bot/edit?saved=*")
    assert git(site["repo"], "rev-list", "--count", f"{before}..staging") == "1"
    assert staging(site, "%an") == "alice"
    settings = on_staging(site, "new-bot", "agent.yaml")
    assert settings["name"] == HOSTILE and settings["description"] == "Typed <description>"
    assert settings["model"]["name"] == "claude-x"
    assert settings["model"]["provider"] == "anthropic"
    assert page.get_by_label("Name", exact=True).input_value() == HOSTILE
    alice.look("new-agent-created", "Edit")
    page.goto("/?q=new-bot")
    assert page.locator("table.agents tbody tr").count() == 1
    # a viewer is not offered the form, and a forged post is refused; an editor is offered it
    before = rev(site, "staging")
    with session(site, "vera") as http:
        text = http.get("/").text
        assert 'action="/agents"' not in text
        r = http.post("/agents", data={"csrf": field(text, "csrf"), "id": "forged",
                                       "name": "Forged"})
        assert r.status_code == 403 and "may not edit staging" in r.text
        assert "Traceback" not in r.text
        assert http.post("/agents", data={"id": "forged", "name": "x"}).status_code == 403
    with session(site, "ed") as http:
        assert 'action="/agents"' in http.get("/").text
    assert rev(site, "staging") == before
