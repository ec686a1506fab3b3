"""The rough edges a newcomer hit (issue 8): help, hints, colour, located shape errors,
the hook without agentstage on PATH, and validate going on past a bad directory name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, commit_all, git, tree_state, write_agent

AGENT_YAML = "agents/billing-support/agent.yaml"


# -- the hook says how to install agentstage ---------------------------------------------------


def test_pre_commit_without_agentstage_on_path_says_how_to_install(run: Any,
                                                                   repo: Path) -> None:
    assert run("hooks", "install", repo=repo).code == 0
    path = "/usr/bin:/bin"
    assert shutil.which("git", path=path) and not shutil.which("agentstage", path=path)
    (repo / AGENT_YAML).write_text((repo / AGENT_YAML).read_text() + "# touched\n")
    git(repo, "add", "-A")
    head = git(repo, "rev-parse", "HEAD")
    done = subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "edit"],
                          capture_output=True, text=True, check=False,
                          env={"PATH": path, "HOME": str(repo.parent), "GIT_CONFIG_NOSYSTEM": "1",
                               "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.com",
                               "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@example.com"})
    assert done.returncode == 1
    assert done.stderr == (
        "error: the git hook pre-commit needs agentstage, which is not on PATH\n"
        "hint: pip install agentstage, or activate the environment that has it "
        "(source .venv/bin/activate)\n")
    assert "not found" not in done.stderr
    assert git(repo, "rev-parse", "HEAD") == head


# -- no arguments: help, exit 0 ------------------------------------------------------------------


@pytest.mark.parametrize(("args", "usage"), [
    ((), "Usage: agentstage [OPTIONS] COMMAND [ARGS]..."),
    (("hooks",), "Usage: agentstage hooks [OPTIONS] COMMAND [ARGS]..."),
    (("policy",), "Usage: agentstage policy [OPTIONS] COMMAND [ARGS]..."),
])
def test_no_subcommand_prints_help_and_exits_0(run: Any, args: tuple[str, ...],
                                               usage: str) -> None:
    result = run(*args)
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith(usage + "\n")
    assert "Commands:" in result.out
    assert result.out == run(*args, "--help").out


# -- --color and NO_COLOR ----------------------------------------------------------------------

BOLD = "\x1b[1m"


def on_a_terminal(repo: Path, *args: str, no_color: str | None) -> str:
    """Run the CLI with its stdout on a pseudo-terminal; what it wrote there."""
    import os
    import pty

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if no_color is not None:
        env["NO_COLOR"] = no_color
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "agentstage", "-C", str(repo), *args],
                              stdout=follower, stderr=subprocess.PIPE, env=env, check=False,
                              timeout=60)
        os.close(follower)
        assert done.returncode == 0, done.stderr
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    return out.decode()


@pytest.mark.parametrize(("no_color", "args", "coloured"), [
    (None, (), True),
    ("", (), True),  # an empty NO_COLOR does not count (no-color.org)
    ("1", (), False),
    (None, ("--color", "never"), False),
    ("1", ("--color", "always"), True),
])
def test_colour_on_a_terminal(repo: Path, no_color: str | None, args: tuple[str, ...],
                              coloured: bool) -> None:
    out = on_a_terminal(repo, *args, "agents", no_color=no_color)
    assert (BOLD in out) == coloured
    assert "billing-support" in out


@pytest.mark.parametrize(("args", "coloured"), [
    ((), False), (("--color", "auto"), False), (("--color", "always"), True),
    (("--color=never",), False),
])
def test_colour_in_a_pipe(run: Any, repo: Path, monkeypatch: pytest.MonkeyPatch,
                          args: tuple[str, ...], coloured: bool) -> None:
    monkeypatch.delenv("NO_COLOR")
    result = run(*args, "agents", repo=repo)
    assert result.code == 0
    assert (BOLD in result.out) == coloured
    assert "billing-support" in result.out


def test_a_bad_color_value_is_a_usage_error(run: Any, repo: Path) -> None:
    result = run("--color", "sometimes", "agents", repo=repo)
    assert result.code == 2
    assert "'sometimes' is not one of 'auto', 'always', 'never'" in result.err


# -- hints that fit ------------------------------------------------------------------------------

RULE = ("an agent id is lowercase letters, digits and '-', starting with a letter or digit, at "
        "most 63 characters")


@pytest.mark.parametrize(("bad", "suggested"), [
    ("Support_Bot", "support-bot"), ("Billing Support!", "billing-support"),
    ("Ünïcode Bot", "unicode-bot"), ("-x", "x"), ("x/y", "x-y"), ("a" * 70, "a" * 63),
    ("___", "support-bot"),
])
def test_a_bad_agent_id_gets_an_id_made_from_it(run: Any, repo: Path, bad: str,
                                                suggested: str) -> None:
    result = run("show", "--", bad, repo=repo)
    assert result.code == 2
    assert result.err == (f"error: invalid agent id {bad!r}: {RULE}\n"
                          f"hint: pick an id such as {suggested!r}\n")


@pytest.mark.parametrize(("env", "meant"), [
    ("prod", "production"), ("live", "production"), ("PRD", "production"),
    ("Production", "production"), ("prodution", "production"), ("stage", "staging"),
    ("stagin", "staging"),
])
def test_show_env_close_to_a_real_one_is_a_usage_error(run: Any, repo: Path, env: str,
                                                        meant: str) -> None:
    result = run("show", "billing-support", "--env", env, repo=repo)
    assert (result.code, result.out) == (2, "")
    assert result.err == (f"error: unknown environment {env!r}: --env takes staging, "
                          "production or a publish vN\n"
                          f"hint: did you mean --env {meant}?\n")


def test_publish_without_m_says_pass_m(run: Any, repo: Path) -> None:
    before = tree_state(repo)
    result = run("publish", "billing-support", repo=repo)
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith("error: a publish needs a reason")
    assert "\nhint: pass -m 'why" in result.err
    assert "Missing option" not in result.err
    assert tree_state(repo) == before


def test_publish_dry_run_needs_no_m(run: Any, repo: Path) -> None:
    before = tree_state(repo)
    result = run("publish", "billing-support", "--dry-run", "--format", "json", repo=repo)
    assert result.code == 0, result.err
    assert result.json()["published"] is False
    assert result.json()["version"] == 1
    assert tree_state(repo) == before
    done = run("publish", "billing-support", "-m", "first", repo=repo)
    assert done.code == 0, done.err


@pytest.mark.parametrize(("args", "env", "message", "hint"), [
    ((), "bob", "error: invalid identity 'bob' in the environment variable AGENTSTAGE_AUTHOR: "
                "expected 'Name <email>'",
     "hint: set it as AGENTSTAGE_AUTHOR='Ada Lovelace <ada@example.com>', or unset it to use "
     "git's user.name and user.email"),
    (("--author", "bob"), "Fine Person <fine@example.com>",
     "error: invalid identity 'bob' in --author: expected 'Name <email>'",
     "hint: for example --author \"Ada Lovelace <ada@example.com>\""),
])
def test_a_bad_identity_names_its_source(run: Any, repo: Path, monkeypatch: pytest.MonkeyPatch,
                                         args: tuple[str, ...], env: str, message: str,
                                         hint: str) -> None:
    monkeypatch.setenv("AGENTSTAGE_AUTHOR", env)
    before = tree_state(repo)
    result = run(*args, "publish", "billing-support", "-m", "why", repo=repo)
    assert result == (2, "", f"{message}\n{hint}\n")
    assert tree_state(repo) == before


# -- show says what it shows ---------------------------------------------------------------------


def test_show_says_which_configuration_it_shows(run: Any, repo: Path, bare: Path) -> None:
    work = run("show", "billing-support", repo=repo)
    assert work.code == 0, work.err
    assert work.out.startswith("# billing-support: the work tree (agents/billing-support), "
                               "uncommitted changes included\nname: Billing Support Bot\n")
    staging = run("show", "billing-support", "--env", "staging", repo=repo)
    assert staging.out.startswith("# billing-support: staging\nname: Billing Support Bot\n")
    in_bare = run("show", "billing-support", repo=bare)
    assert in_bare.out.startswith("# billing-support: staging (a bare repository has no work "
                                  "tree)\nname: Billing Support Bot\n")
    as_json = run("show", "billing-support", "--format", "json", repo=repo)
    assert as_json.json()["name"] == "Billing Support Bot"  # pure JSON, no comment line


# -- validate: one bad directory name does not stop the run ----------------------------------------


def test_a_bad_directory_name_does_not_stop_validate(run: Any, repo: Path) -> None:
    write_agent(repo, "Old_Bot", {"agent.yaml": "name: Old\nmodel: {name: m, temprature: 1}\n"})
    hr = repo / "agents/hr-helpdesk/agent.yaml"
    hr.write_text(hr.read_text().replace("access: private", "access: everyone"))
    result = run("validate", repo=repo)
    assert result.code == 4
    assert result.out == (
        "invalid  agents/Old_Bot\n"
        f"  agents/Old_Bot: directory name 'Old_Bot' is not a valid agent id: {RULE} (rename "
        "it, e.g. to 'old-bot')\n"
        "  agents/Old_Bot/agent.yaml:2: model.temprature: unknown field (did you mean "
        "temperature?)\n"
        "ok       agents/billing-support\n"
        "invalid  agents/hr-helpdesk\n"
        "  agents/hr-helpdesk/agent.yaml:13: access: input should be 'private', 'team', "
        "'organization' or 'public' (got 'everyone')\n"
        "ok       agents/sales-assistant\n"
        "4 agents checked, 2 invalid\n")
    assert result.err.startswith("error: 2 invalid agents: Old_Bot, hr-helpdesk\n")


@pytest.mark.parametrize("fixture", ["repo", "bare"])
def test_a_bad_directory_name_at_a_ref_does_not_stop_validate(
        run: Any, repo: Path, request: pytest.FixtureRequest, fixture: str) -> None:
    write_agent(repo, "Old_Bot", {"agent.yaml": "name: Old\nmodel: {name: m}\n"})
    commit_all(repo, "an agent with a bad directory name")
    where = repo if fixture == "repo" else request.getfixturevalue("bare")
    result = run("validate", "--ref", "staging", "--format", "json", repo=where)
    assert result.code == 4
    by_agent = {r["agent"]: r for r in result.json()["agents"]}
    assert sorted(by_agent) == ["Old_Bot", "billing-support", "hr-helpdesk", "sales-assistant"]
    assert [r["agent"] for r in by_agent.values() if not r["valid"]] == ["Old_Bot"]
    assert by_agent["Old_Bot"]["problems"] == [{
        "file": "staging:agents/Old_Bot", "line": None, "path": "",
        "message": f"directory name 'Old_Bot' is not a valid agent id: {RULE} (rename it, "
                   "e.g. to 'old-bot')"}]


def test_validate_ref_with_a_bad_id_typed_is_still_a_usage_error(run: Any, repo: Path) -> None:
    result = run("validate", "--ref", "staging", "Old_Bot", repo=repo)
    assert result.code == 2
    assert result.err.startswith("error: invalid agent id 'Old_Bot'")


# -- the README's `agents` example is what `agents` prints ---------------------------------------


def test_readme_agents_example_is_the_real_output(run: Any, repo: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("**`agentstage agents`**")
    block = readme[readme.index("```\n", start) + 4:]
    block = block[:block.index("```\n")]
    assert run("publish", "billing-support", "-m", "one", repo=repo).code == 0
    assert run("set", "billing-support", "model.temperature=0.3", "-m", "x", repo=repo).code == 0
    assert run("publish", "billing-support", "-m", "two", repo=repo).code == 0
    assert run("set", "billing-support", "model.temperature=0.4", "-m", "x", repo=repo).code == 0
    result = run("agents", repo=repo)
    assert result.code == 0, result.err
    assert block == result.out


# -- typos in the free-form parts that have a known shape ------------------------------------------

AGENT = "name: Bot\nmodel:\n  name: gpt-4o\n"
G = "agents/bot/guardrails.yaml"
K = "agents/bot/knowledge.yaml"
KNOWN = ("pii-redaction, toxicity, topic-restriction, jailbreak-detection, prompt-injection, "
         "self-harm-detection")

SHAPES: list[tuple[str, str, str, list[str]]] = [
    ("guardrail-typo", "guardrails.yaml", "- type: pii-redaction\n- type: toxicty\n",
     [f"{G}:2: guardrails[toxicty].type: unknown guardrail type 'toxicty' "
      "(did you mean toxicity?)"]),
    ("guardrail-short", "guardrails.yaml", "- type: jailbreak\n  enabled: true\n",
     [f"{G}:1: guardrails[jailbreak].type: unknown guardrail type 'jailbreak' "
      "(did you mean jailbreak-detection?)"]),
    ("guardrail-unknown", "guardrails.yaml", "- type: profanity\n",
     [f"{G}:1: guardrails[profanity].type: unknown guardrail type 'profanity': expected one "
      f"of {KNOWN}, or custom-<name> (or x-<name>) for a type of your own"]),
    ("guardrail-custom-empty", "guardrails.yaml", "- type: custom-\n",
     [f"{G}:1: guardrails[custom-].type: unknown guardrail type 'custom-': expected one "
      f"of {KNOWN}, or custom-<name> (or x-<name>) for a type of your own"]),
    ("corpus-typo", "knowledge.yaml", "- id: faq\n  type: corpus\n  settings:\n    top_kk: 5\n",
     [f"{K}:4: knowledge[faq].settings.top_kk: unknown field (did you mean top_k?)"]),
    ("corpus-range", "knowledge.yaml", "- id: faq\n  type: corpus\n  settings: {top_k: 0}\n",
     [f"{K}:3: knowledge[faq].settings.top_k: input should be greater than 0 (got 0)"]),
    ("website-without-url", "knowledge.yaml",
     "- id: site\n  type: website\n  settings:\n    max_depth: 2\n",
     [f"{K}:3: knowledge[site].settings.url: required field is missing",
      f"{K}:4: knowledge[site].settings.max_depth: unknown field (did you mean crawl_depth?)"]),
    ("website-without-settings", "knowledge.yaml", "- id: faq\n  type: corpus\n"
     "- id: site\n  type: website\n",
     [f"{K}:3: knowledge[site].settings.url: required field is missing"]),
    ("website-bad-url", "knowledge.yaml",
     "- id: site\n  type: website\n  settings: {url: ftp://example.com}\n",
     [f"{K}:3: knowledge[site].settings.url: must be an http:// or https:// URL "
      "(got 'ftp://example.com')"]),
    ("sharepoint-typo", "knowledge.yaml",
     "- id: hr\n  type: sharepoint\n  settings:\n    site: https://x.sharepoint.com/sites/hr\n",
     [f"{K}:3: knowledge[hr].settings.site_url: required field is missing",
      f"{K}:4: knowledge[hr].settings.site: unknown field (did you mean site_url?)"]),
    ("sharepoint-list", "knowledge.yaml",
     "- id: hr\n  type: sharepoint\n  settings:\n    site_url: https://x.sharepoint.com\n"
     "    exclude_folders: Drafts\n",
     [f"{K}:5: knowledge[hr].settings.exclude_folders: input should be a valid list "
      "(got 'Drafts')"]),
]


@pytest.mark.parametrize(("file", "text", "expected"), [c[1:] for c in SHAPES],
                         ids=[c[0] for c in SHAPES])
def test_a_typo_in_a_known_shape_is_located(run: Any, repo: Path, file: str, text: str,
                                            expected: list[str]) -> None:
    write_agent(repo, "bot", {"agent.yaml": AGENT, file: text})
    before = tree_state(repo)
    result = run("validate", "agents/bot", repo=repo)
    assert result.code == 4
    assert result.out == ("invalid  agents/bot\n" + "".join(f"  {p}\n" for p in expected)
                          + "1 agent checked, 1 invalid\n")
    assert tree_state(repo) == before


def test_known_shapes_and_custom_guardrails_are_valid(run: Any, repo: Path) -> None:
    write_agent(repo, "bot", {
        "agent.yaml": AGENT,
        "guardrails.yaml": "- type: custom-profanity-filter\n  config: {words: [darn]}\n"
                           "- type: x-legal-review\n- type: prompt-injection\n",
        "knowledge.yaml": "- id: faq\n  type: corpus\n  settings: {min_score: 0, "
                          "chunk_overlap: 0}\n"
                          "- id: site\n  type: website\n  settings: {url: 'http://x.example', "
                          "crawl_depth: 0, max_pages: 10}\n"
                          "- id: hr\n  type: sharepoint\n  settings: {site_url: "
                          "'https://x.sharepoint.com/sites/hr', folder: Policies}\n"})
    result = run("validate", repo=repo)
    assert result.code == 0, result.out


def test_set_with_a_settings_typo_is_refused(run: Any, repo: Path) -> None:
    before = tree_state(repo)
    result = run("set", "billing-support", "knowledge[public-pricing].settings.crawl_dept=2",
                 repo=repo)
    assert result.code == 4
    assert ("knowledge[public-pricing].settings.crawl_dept: unknown field "
            "(did you mean crawl_depth?)") in result.err
    assert tree_state(repo) == before


# -- the JSON Schema: hover text for every field, and the shapes ---------------------------------


def _properties(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every (path, schema) of a property anywhere in a schema, $defs included."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            found.append((f"{where}.{name}", prop))
        for key, value in node.items():
            if key != "if":  # a condition on a field, not a field
                found += _properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            found += _properties(value, f"{where}[{n}]")
    return found


def test_every_field_of_every_schema_has_a_description(run: Any) -> None:
    schemas = run("schema").json()
    props = _properties(schemas)
    assert len(props) > 40
    missing = [path for path, prop in props
               if "$ref" not in prop and not prop.get("description")]
    assert missing == []


def test_schema_carries_the_knowledge_settings_and_guardrail_types(run: Any) -> None:
    knowledge = run("schema", "knowledge.yaml").json()
    rules = {r["if"]["properties"]["type"]["const"]: r["then"] for r in knowledge["items"]["allOf"]}
    assert rules["website"] == {"properties": {"settings": {"$ref": "#/$defs/WebsiteSettings"}},
                                "required": ["settings"]}
    assert rules["corpus"] == {"properties": {"settings": {"$ref": "#/$defs/CorpusSettings"}}}
    website = knowledge["$defs"]["WebsiteSettings"]
    assert website["required"] == ["url"] and website["additionalProperties"] is False
    assert knowledge["$defs"]["SharePointSettings"]["required"] == ["site_url"]
    guard = run("schema", "guardrails.yaml").json()["items"]["properties"]["type"]
    consts = [c.get("const") for c in guard["anyOf"]]
    assert consts[:2] == ["pii-redaction", "toxicity"]
    assert guard["anyOf"][-1]["pattern"] == "^(custom|x)-[A-Za-z0-9_.:-]{1,120}$"
    assert all(c.get("description") for c in guard["anyOf"])
