"""The CLI face of loading: validate, schema, show, init, new, help and version."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from agentstage import __version__
from agentstage.cli import cli
from agentstage.model import AGENT_FILES
from agentstage.yamlload import MAX_FILE_BYTES
from conftest import SAMPLE, commit_all, git, tree_state, write_agent
from test_config import AGENT, BAD
from test_yamlload import BOMB

SAMPLES = ("billing-support", "hr-helpdesk", "sales-assistant")
RULE = ("an agent id is lowercase letters, digits and '-', starting with a letter or digit, "
        "at most 63 characters")
VALID_OUT = (
    "ok       agents/billing-support\n"
    "ok       agents/hr-helpdesk\n"
    "ok       agents/sales-assistant\n"
    "3 agents valid\n"
)
SHOW_KEYS = ["name", "description", "model", "access", "tags", "instructions", "knowledge",
             "tools", "guardrails"]
DESIGN_COMMANDS = ["init", "new", "validate", "schema", "agents", "show", "set", "unset", "diff",
                   "publish", "history", "revert", "restore", "hooks"]


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One checkout like `repo` for the tests that only add untracked files: much quicker."""
    path = tmp_path_factory.mktemp("shared") / "repo"
    shutil.copytree(SAMPLE / "agents", path / "agents")
    env = {**os.environ, "HOME": str(path.parent), "XDG_CONFIG_HOME": str(path.parent),
           "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "test@example.com"}
    for args in (["init", "-q", "-b", "staging"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", "-C", str(path), *args], env=env, check=True)
    return path


@pytest.fixture
def scratch(shared_repo: Path) -> Iterator[Path]:
    """The shared checkout, put back as committed after the test."""
    yield shared_repo
    git(shared_repo, "clean", "-fdxq")
    git(shared_repo, "reset", "-q", "--hard")
    assert git(shared_repo, "status", "--porcelain", "--ignored") == ""


def snapshot(repo: Path) -> str:
    """Refs and work tree: equal before and after proves a command wrote nothing."""
    status = git(repo, "status", "--porcelain", "--untracked-files=all", "--ignored") if (
        repo / ".git").exists() else ""
    return f"{tree_state(repo)}\n{status}"


def refused(run: Any, repo: Path, *args: str, code: int) -> Any:
    """Run a command that must fail with *code*, with no traceback, writing nothing."""
    before = snapshot(repo)
    result = run(*args, repo=repo)
    assert result.code == code, (result.out, result.err)
    assert "Traceback" not in result.err + result.out
    assert result.err.startswith("error: ")
    assert snapshot(repo) == before
    return result


def invalid_out(agent: str, problems: list[str]) -> str:
    """validate's text output when *agent*, beside the samples, has *problems*."""
    blocks = {a: f"ok       agents/{a}\n" for a in SAMPLES}
    blocks[agent] = f"invalid  agents/{agent}\n" + "".join(f"  {p}\n" for p in problems)
    return "".join(blocks[a] for a in sorted(blocks)) + "4 agents checked, 1 invalid\n"


def write_files(repo: Path, agent: str, files: dict[str, str | bytes]) -> Path:
    directory = repo / "agents" / agent
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return directory


# -- validate: the good case -----------------------------------------------------------------


def test_validate_a_valid_repository(run: Any, repo: Path) -> None:
    before = snapshot(repo)
    result = run("validate", repo=repo)
    assert result == (0, VALID_OUT, "")
    assert snapshot(repo) == before


def test_validate_from_inside_the_checkout(run: Any, repo: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo / "agents")
    assert run("validate") == (0, VALID_OUT, "")


def test_validate_json_on_a_valid_repository(run: Any, repo: Path) -> None:
    result = run("validate", "--format", "json", repo=repo)
    assert result.code == 0
    assert result.err == ""
    assert result.json() == {"valid": True, "agents": [
        {"agent": a, "path": f"agents/{a}", "valid": True, "problems": []} for a in SAMPLES]}


@pytest.mark.parametrize(
    ("args", "out"),
    [
        (["agents/hr-helpdesk"], "ok       agents/hr-helpdesk\n1 agent valid\n"),
        (["agents/hr-helpdesk/agent.yaml"], "ok       agents/hr-helpdesk\n1 agent valid\n"),
        (["agents"], VALID_OUT),
        (["."], VALID_OUT),
        (["agents/hr-helpdesk", "agents/hr-helpdesk/tools.yaml", "agents/sales-assistant"],
         "ok       agents/hr-helpdesk\nok       agents/sales-assistant\n2 agents valid\n"),
    ],
    ids=["agent-dir", "agent-file", "agents-dir", "root", "deduplicated"],
)
def test_validate_paths_are_taken_in_the_repository(run: Any, scratch: Path, args: list[str],
                                                    out: str) -> None:
    # Like `git -C`, relative paths are taken in the -C directory.
    assert run("validate", *args, repo=scratch) == (0, out, "")


def test_validate_an_absolute_path(run: Any, repo: Path) -> None:
    path = repo / "agents" / "hr-helpdesk"
    assert run("validate", str(path)) == (0, f"ok       {path}\n1 agent valid\n", "")


# -- validate: every bad input ---------------------------------------------------------------


@pytest.mark.parametrize(("files", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_validate_reports_bad_input(run: Any, scratch: Path, files: dict[str, str | bytes],
                                    expected: list[str]) -> None:
    repo = scratch
    write_files(repo, "bot", files)
    if not expected:
        assert run("validate", "agents/bot", repo=repo).code == 0
        return
    result = refused(run, repo, "validate", "agents/bot", code=4)
    assert result.out == ("invalid  agents/bot\n" + "".join(f"  {p}\n" for p in expected)
                          + "1 agent checked, 1 invalid\n")
    assert result.err == "error: 1 invalid agent: bot\nhint: fix the problems listed above\n"


@pytest.mark.parametrize("case", ["misspelt-model-key", "duplicate-action", "two-documents",
                                  "unknown-file", "binary-file"])
def test_validate_the_whole_repository_reports_bad_input(run: Any, scratch: Path,
                                                         case: str) -> None:
    files, expected = next(c[1:] for c in BAD if c[0] == case)
    write_files(scratch, "bot", files)
    result = refused(run, scratch, "validate", code=4)
    assert result.out == invalid_out("bot", expected)


def test_validate_reports_the_design_example(run: Any, repo: Path) -> None:
    text = (repo / "agents/hr-helpdesk/agent.yaml").read_text()
    text = text.replace("temperature: 0.1", "temprature: 0.1")
    (repo / "agents/hr-helpdesk/agent.yaml").write_text(text)
    result = refused(run, repo, "validate", "agents/hr-helpdesk", code=4)
    assert result.out == (
        "invalid  agents/hr-helpdesk\n"
        "  agents/hr-helpdesk/agent.yaml:10: model.temprature: unknown field "
        "(did you mean temperature?)\n"
        "1 agent checked, 1 invalid\n"
    )
    assert result.err == ("error: 1 invalid agent: hr-helpdesk\n"
                          "hint: fix the problems listed above\n")


def test_alias_bomb_is_refused_in_well_under_a_second(run: Any, repo: Path) -> None:
    write_files(repo, "bot", {"agent.yaml": AGENT.encode() + b"  parameters:\n"
                              + b"".join(b"    " + ln for ln in BOMB.splitlines(keepends=True))})
    before = snapshot(repo)
    start = time.perf_counter()
    result = run("validate", "agents/bot", repo=repo)
    assert time.perf_counter() - start < 0.5
    assert snapshot(repo) == before
    assert result.code == 4
    assert "Traceback" not in result.err
    assert result.out == (
        "invalid  agents/bot\n"
        "  agents/bot/agent.yaml:5: anchor &a is not allowed: write values out in full\n"
        "1 agent checked, 1 invalid\n"
    )


def test_several_invalid_agents_are_all_reported(run: Any, repo: Path) -> None:
    hr = repo / "agents/hr-helpdesk"
    (hr / "agent.yaml").write_text((hr / "agent.yaml").read_text().replace(
        "access: private", "access: everyone"))
    (hr / "tools.yaml").write_text((hr / "tools.yaml").read_text().replace(
        "  enabled: true\n  description: Creates", "  enabled: no\n  description: Creates"))
    sales = repo / "agents/sales-assistant"
    (sales / "guardrails.yaml").write_text((sales / "guardrails.yaml").read_text() +
                                           "\n- type: toxicity\n  enabled: true\n")
    (sales / "tool.yaml").write_text("- id: x\n")
    result = refused(run, repo, "validate", code=4)
    assert result.out == (
        "ok       agents/billing-support\n"
        "invalid  agents/hr-helpdesk\n"
        "  agents/hr-helpdesk/agent.yaml:13: access: input should be 'private', 'team', "
        "'organization' or 'public' (got 'everyone')\n"
        "  agents/hr-helpdesk/tools.yaml:21: tools[ticketing].enabled: input should be a valid "
        "boolean (got 'no')\n"
        "invalid  agents/sales-assistant\n"
        "  agents/sales-assistant/guardrails.yaml:35: guardrails[toxicity]: duplicate type "
        "'toxicity' (first at line 29)\n"
        "  agents/sales-assistant/tool.yaml: unknown file (did you mean tools.yaml?)\n"
        "3 agents checked, 2 invalid\n"
    )
    assert result.err == ("error: 2 invalid agents: hr-helpdesk, sales-assistant\n"
                          "hint: fix the problems listed above\n")


def test_validate_json_on_an_invalid_repository(run: Any, repo: Path) -> None:
    write_files(repo, "bot", {"agent.yaml": AGENT + "  temprature: 3\n",
                              "tools.yaml": "- id: t\n  enabled: no\n"})
    result = refused(run, repo, "validate", "--format", "json", code=4)
    data = result.json()
    assert data["valid"] is False
    assert [a["agent"] for a in data["agents"]] == ["billing-support", "bot", *SAMPLES[1:]]
    for entry in data["agents"]:
        assert list(entry) == ["agent", "path", "valid", "problems"]
    assert data["agents"][1] == {
        "agent": "bot", "path": "agents/bot", "valid": False,
        "problems": [
            {"file": "agents/bot/agent.yaml", "line": 4, "path": "model.temprature",
             "message": "unknown field (did you mean temperature?)"},
            {"file": "agents/bot/tools.yaml", "line": 2, "path": "tools[t].enabled",
             "message": "input should be a valid boolean (got 'no')"},
        ],
    }
    assert result.err == "error: 1 invalid agent: bot\nhint: fix the problems listed above\n"


def test_validate_json_of_a_file_without_a_line(run: Any, repo: Path) -> None:
    write_files(repo, "bot", {"agent.yaml": b"\x00"})
    entry = refused(run, repo, "validate", "agents/bot", "--format=json", code=4).json()
    assert entry == {"valid": False, "agents": [{
        "agent": "bot", "path": "agents/bot", "valid": False,
        "problems": [{"file": "agents/bot/agent.yaml", "line": None, "path": "",
                      "message": "binary file: not YAML text"}]}]}


def test_a_symlink_inside_an_agent_directory(run: Any, repo: Path) -> None:
    (repo / "agents/hr-helpdesk/knowledge.yaml").unlink()
    (repo / "agents/hr-helpdesk/knowledge.yaml").symlink_to("/etc/passwd")
    result = refused(run, repo, "validate", "agents/hr-helpdesk", code=4)
    assert result.out == (
        "invalid  agents/hr-helpdesk\n"
        "  agents/hr-helpdesk/knowledge.yaml: symbolic links are not allowed in an agent\n"
        "1 agent checked, 1 invalid\n"
    )


def test_a_linked_agent_directory(run: Any, repo: Path) -> None:
    (repo / "agents/bot").symlink_to(repo / "agents/hr-helpdesk")
    result = refused(run, repo, "validate", code=4)
    assert result.out == invalid_out(
        "bot", ["agents/bot: an agent directory must not be a symbolic link"])


def test_a_subdirectory_inside_an_agent_directory(run: Any, repo: Path) -> None:
    (repo / "agents/hr-helpdesk/old").mkdir()
    (repo / "agents/hr-helpdesk/old/agent.yaml").write_text(AGENT)
    result = refused(run, repo, "validate", "agents/hr-helpdesk", code=4)
    assert result.out == (
        "invalid  agents/hr-helpdesk\n"
        "  agents/hr-helpdesk/old: subdirectories are not allowed in an agent\n"
        "1 agent checked, 1 invalid\n"
    )


def test_an_oversized_file_on_disk(run: Any, repo: Path) -> None:
    write_files(repo, "bot", {"agent.yaml": AGENT + "#" * MAX_FILE_BYTES})
    result = refused(run, repo, "validate", "agents/bot", code=4)
    size = len(AGENT) + MAX_FILE_BYTES
    assert result.out == (
        "invalid  agents/bot\n"
        f"  agents/bot/agent.yaml: file is {size} bytes, over the cap of {MAX_FILE_BYTES}\n"
        "1 agent checked, 1 invalid\n"
    )


@pytest.mark.parametrize("name", ["Bad_Name", "-lead", "UPPER", "a" * 64, "has.dot", "sp ace"])
def test_a_directory_that_is_not_an_agent_id(run: Any, scratch: Path, name: str) -> None:
    repo = scratch
    write_agent(repo, name, {"agent.yaml": AGENT})
    result = refused(run, repo, "validate", code=4)
    suggested = {"Bad_Name": "bad-name", "-lead": "lead", "UPPER": "upper", "a" * 64: "a" * 63,
                 "has.dot": "has-dot", "sp ace": "sp-ace"}[name]
    assert (
        f"invalid  agents/{name}\n"
        f"  agents/{name}: directory name {name!r} is not a valid agent id: {RULE} (rename it, "
        f"e.g. to {suggested!r})\n"
    ) in result.out
    assert result.out.endswith("4 agents checked, 1 invalid\n")  # the others checked too


@pytest.mark.parametrize("path", ["nosuch", "agents/nosuch", "agents/hr-helpdesk/nosuch.yaml"])
def test_a_path_that_does_not_exist(run: Any, scratch: Path, path: str) -> None:
    repo = scratch
    result = refused(run, repo, "validate", path, code=6)
    assert result.out == ""
    assert result.err == (f"error: no such file or directory: {repo / path}\n"
                          "hint: check the path\n")


def test_a_repository_that_does_not_exist(run: Any, tmp_path: Path) -> None:
    result = run("validate", repo=tmp_path / "nowhere")
    assert result.code == 6
    assert result.err.startswith("error: no such directory: ")


def test_a_directory_without_agents(run: Any, tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "staging")
    result = run("validate", repo=tmp_path)
    assert result == (6, "", f"error: no agents/ directory in {tmp_path}\n"
                             "hint: run 'agentstage init' to make one\n")


def test_validate_on_disk_in_a_bare_repository(run: Any, bare: Path) -> None:
    result = refused(run, bare, "validate", code=2)
    assert result.err == ("error: a bare repository has no files on disk\n"
                          "hint: use --ref staging\n")


# -- validate --ref --------------------------------------------------------------------------

REF_OUT = "".join(f"ok       staging:agents/{a}\n" for a in SAMPLES) + "3 agents valid\n"


def test_validate_ref_in_a_checkout(run: Any, repo: Path) -> None:
    # Only what is committed counts: a broken file in the work tree is not at the ref.
    write_files(repo, "bot", {"agent.yaml": "name: [\n"})
    before = snapshot(repo)
    assert run("validate", "--ref", "staging", repo=repo) == (0, REF_OUT, "")
    assert snapshot(repo) == before


def test_validate_ref_in_a_bare_repository(run: Any, bare: Path) -> None:
    before = tree_state(bare)
    assert run("validate", "--ref", "staging", repo=bare) == (0, REF_OUT, "")
    assert run("validate", "--ref", "staging", "hr-helpdesk", repo=bare) == (
        0, "ok       staging:agents/hr-helpdesk\n1 agent valid\n", "")
    assert tree_state(bare) == before


def test_validate_ref_json(run: Any, bare: Path) -> None:
    result = run("validate", "--ref", "staging", "--format", "json", repo=bare)
    assert result.json() == {"valid": True, "agents": [
        {"agent": a, "path": f"staging:agents/{a}", "valid": True, "problems": []}
        for a in SAMPLES]}


def test_validate_ref_reports_committed_problems(run: Any, repo: Path) -> None:
    write_files(repo, "bot", {"agent.yaml": AGENT + "access: everyone\n",
                              "tools.yaml": "- id: t\n- id: t\n"})
    (repo / "agents/hr-helpdesk/notes.yaml").symlink_to("agent.yaml")
    commit_all(repo, "broken")
    result = refused(run, repo, "validate", "--ref", "staging", code=4)
    assert result.out == (
        "ok       staging:agents/billing-support\n"
        "invalid  staging:agents/bot\n"
        "  staging:agents/bot/agent.yaml:4: access: input should be 'private', 'team', "
        "'organization' or 'public' (got 'everyone')\n"
        "  staging:agents/bot/tools.yaml:2: tools[t]: duplicate id 't' (first at line 1)\n"
        "invalid  staging:agents/hr-helpdesk\n"
        "  staging:agents/hr-helpdesk/notes.yaml: symbolic links are not allowed in an agent\n"
        "ok       staging:agents/sales-assistant\n"
        "4 agents checked, 2 invalid\n"
    )
    assert result.err == ("error: 2 invalid agents: bot, hr-helpdesk\n"
                          "hint: fix the problems listed above\n")


def test_validate_ref_at_an_older_commit(run: Any, repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    write_files(repo, "bot", {"agent.yaml": "name: x\n"})
    commit_all(repo, "broken")
    assert run("validate", "--ref", first, repo=repo).code == 0
    assert run("validate", "--ref", "staging", repo=repo).code == 4
    assert run("validate", "--ref", "HEAD~1", "bot", repo=repo).code == 6


@pytest.mark.parametrize("ref", ["nosuch", "production/hr-helpdesk", "refs/heads/nope", "a..b",
                                 "0" * 40])
def test_validate_an_unknown_ref(run: Any, bare: Path, ref: str) -> None:
    result = refused(run, bare, "validate", "--ref", ref, code=6)
    assert result.out == ""
    assert result.err == (f"error: no commit or ref named {ref!r}\n"
                          "hint: check the name with 'git branch -a' or 'git tag'\n")


@pytest.mark.parametrize("fixture", ["repo", "bare"])
def test_validate_ref_of_an_unknown_agent(run: Any, request: pytest.FixtureRequest,
                                          fixture: str) -> None:
    where = request.getfixturevalue(fixture)
    result = refused(run, where, "validate", "--ref", "staging", "nosuch", code=6)
    assert result == (6, "", "error: no agent 'nosuch' at staging\n")


def test_validate_ref_of_a_bad_agent_id(run: Any, bare: Path) -> None:
    result = refused(run, bare, "validate", "--ref", "staging", "Bad_Id", code=2)
    assert result.err == f"error: invalid agent id 'Bad_Id': {RULE}\n"


# -- version, help, usage --------------------------------------------------------------------


def test_version(run: Any) -> None:
    assert run("--version") == (0, f"agentstage, version {__version__}\n", "")


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_registered_command(run: Any, flag: str) -> None:
    result = run(flag)
    assert result.code == 0
    assert result.err == ""
    listed = re.findall(r"^  (\S+)\s", result.out.split("Commands:")[1].split("Examples:")[0],
                        re.MULTILINE)
    assert sorted(listed) == sorted(cli.commands)
    assert "Exit codes:" in result.out


@pytest.mark.parametrize(
    "command",
    DESIGN_COMMANDS,
)
def test_help_mentions_every_command_of_the_design(run: Any, command: str) -> None:
    assert re.search(rf"^  {command}\s", run("--help").out, re.MULTILINE)


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _all_commands(command, (*prefix, name))
    return found


@pytest.mark.parametrize("command", _all_commands(cli), ids=" ".join)
def test_every_command_has_help_with_an_example(run: Any, command: tuple[str, ...]) -> None:
    result = run(*command, "--help")
    assert result.code == 0, result.err
    assert result.err == ""
    assert "Example" in result.out
    assert f"Usage: agentstage {' '.join(command)}" in result.out


@pytest.mark.parametrize(
    "args",
    [["--bogus"], ["validate", "--bogus"], ["validate", "--format", "xml"], ["nosuchcommand"],
     ["schema", "--write"], ["show"], ["new", "x"]],
    ids=["global", "validate", "bad-choice", "command", "missing-value", "missing-argument",
         "missing-option"],
)
def test_usage_errors_exit_2(run: Any, scratch: Path, args: list[str]) -> None:
    result = refused(run, scratch, *args, code=2)
    assert result.out == ""
    assert "Traceback" not in result.err


def test_unknown_option_names_it_and_points_at_help(run: Any, repo: Path) -> None:
    result = refused(run, repo, "validate", "--bogus", code=2)
    assert result.err == ("error: No such option '--bogus'.\n"
                          "hint: see 'agentstage validate --help'\n")


# -- schema ----------------------------------------------------------------------------------


def test_schema_prints_all_five(run: Any) -> None:
    result = run("schema")
    assert result.code == 0
    schemas = result.json()
    assert list(schemas) == list(AGENT_FILES)
    for name, schema in schemas.items():
        assert schema["title"] == name
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schemas["agent.yaml"]["type"] == "object"
    assert schemas["agent.yaml"]["additionalProperties"] is False
    assert set(schemas["agent.yaml"]["required"]) == {"name", "model"}
    for name in AGENT_FILES[1:]:
        assert schemas[name]["type"] == "array"


@pytest.mark.parametrize("name", AGENT_FILES)
def test_schema_of_one_file(run: Any, name: str) -> None:
    result = run("schema", name)
    assert result.code == 0
    assert result.err == ""
    assert result.json() == run("schema").json()[name]


@pytest.mark.parametrize("name", ["tool.yaml", "agent.yml", "nosuch", ""])
def test_schema_of_an_unknown_file(run: Any, name: str) -> None:
    result = run("schema", name)
    assert result == (2, "", f"error: no agent file {name!r}\n"
                             f"hint: choose one of {', '.join(AGENT_FILES)}\n")


def test_schema_write(run: Any, tmp_path: Path) -> None:
    out = tmp_path / "schemas" / "deep"
    result = run("schema", "--write", str(out))
    assert result.code == 0
    names = [f.removesuffix(".yaml") + ".schema.json" for f in AGENT_FILES]
    assert result.out == "".join(f"{out / n}\n" for n in names)
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    everything = run("schema").json()
    for file, name in zip(AGENT_FILES, names, strict=True):
        assert json.loads((out / name).read_text()) == everything[file]


# -- show ------------------------------------------------------------------------------------


def test_show_a_sample_agent_as_json(run: Any, repo: Path) -> None:
    result = run("show", "billing-support", "--format", "json", repo=repo)
    assert result.code == 0, result.err
    shown = result.json()
    assert list(shown) == SHOW_KEYS
    assert shown["name"] == "Billing Support Bot"
    assert shown["description"].startswith("Answers customer questions about invoices")
    assert "\a" not in shown["description"]
    assert "plan pricing" in shown["description"]
    assert shown["model"] == {"provider": "openai", "name": "gpt-4o", "temperature": 0.2,
                              "max_tokens": 1024,
                              "parameters": {"top_p": 0.9, "presence_penalty": 0}}
    assert shown["access"] == "team"
    assert shown["tags"] == ["billing", "customer-support", "tier-1"]
    assert [i["id"] for i in shown["instructions"]] == ["persona", "refunds-policy",
                                                         "escalation", "tone"]
    assert [k["id"] for k in shown["knowledge"]] == ["billing-faq", "refund-policies",
                                                      "public-pricing"]
    assert [t["id"] for t in shown["tools"]] == ["billing-lookup", "ticketing", "web-search"]
    assert [g["type"] for g in shown["guardrails"]] == ["pii-redaction", "topic-restriction",
                                                        "jailbreak-detection", "toxicity"]


@pytest.mark.parametrize("agent", SAMPLES)
def test_show_every_sample_has_the_show_keys(run: Any, repo: Path, agent: str) -> None:
    result = run("show", agent, "--format", "json", repo=repo)
    assert list(result.json()) == SHOW_KEYS


def test_show_an_invalid_agent_exits_4(run: Any, repo: Path) -> None:
    write_files(repo, "bot", {"agent.yaml": AGENT + "  temprature: 1\n"})
    result = refused(run, repo, "show", "bot", code=4)
    assert result.err == (
        "error: agents/bot/agent.yaml:4: model.temprature: unknown field "
        "(did you mean temperature?)\n"
        "hint: fix the files named above, then run the command again\n"
    )


def test_show_an_unknown_agent_exits_6(run: Any, repo: Path) -> None:
    refused(run, repo, "show", "nosuch", code=6)


def test_show_a_bad_agent_id_exits_2(run: Any, repo: Path) -> None:
    result = refused(run, repo, "show", "../etc", code=2)
    assert result.err == ("error: invalid agent id '../etc': " + RULE + "\n"
                          "hint: pick an id such as 'etc'\n")


# -- init and new ----------------------------------------------------------------------------


def test_init_a_new_directory(run: Any, tmp_path: Path) -> None:
    path = tmp_path / "agents-repo"
    result = run("init", str(path))
    assert result.code == 0, result.err
    assert result.out == f"{path}: added agents/ on staging\n"
    assert git(path, "symbolic-ref", "HEAD") == "refs/heads/staging"
    assert git(path, "ls-tree", "-r", "--name-only", "staging") == "agents/.gitkeep"
    assert git(path, "rev-list", "--count", "staging") == "1"
    assert git(path, "status", "--porcelain") == ""
    assert run("validate", repo=path) == (0, "0 agents valid\n", "")


def test_init_twice_says_already_initialized(run: Any, tmp_path: Path) -> None:
    path = tmp_path / "agents-repo"
    assert run("init", str(path)).code == 0
    before = tree_state(path)
    result = run("init", str(path))
    assert result == (0, f"{path}: already initialized: nothing to do\n", "")
    assert tree_state(path) == before


def test_init_adopts_a_repository_that_has_agents(run: Any, repo: Path) -> None:
    before = snapshot(repo)
    result = run("init", str(repo))
    assert result == (0, f"{repo}: already initialized: nothing to do\n", "")
    assert snapshot(repo) == before


def test_new_adds_an_agent_in_one_commit_on_staging(run: Any, repo: Path) -> None:
    parent = git(repo, "rev-parse", "staging")
    result = run("new", "fresh-bot", "--name", "Fresh Bot", repo=repo)
    assert result.code == 0, result.err
    commit = git(repo, "rev-parse", "staging")
    assert result.out == f"created fresh-bot on staging ({commit[:12]})\n"
    assert git(repo, "rev-parse", "staging~1") == parent
    assert git(repo, "diff", "--name-status", parent, commit).splitlines() == [
        "A\tagents/fresh-bot/agent.yaml", "A\tagents/fresh-bot/instructions.yaml"]
    assert run("validate", "--ref", "staging", "fresh-bot", repo=repo) == (
        0, "ok       staging:agents/fresh-bot\n1 agent valid\n", "")
    assert git(repo, "status", "--porcelain") == ""
    shown = run("show", "fresh-bot", "--format", "json", repo=repo).json()
    assert shown["name"] == "Fresh Bot"
    assert list(shown) == SHOW_KEYS


def test_new_in_a_bare_repository(run: Any, bare: Path) -> None:
    result = run("new", "fresh-bot", "--name", "no", "--format", "json", repo=bare)
    assert result.code == 0, result.err
    assert result.json()["commit"] == git(bare, "rev-parse", "staging")
    assert run("show", "fresh-bot", "--env", "staging", "--format", "json",
               repo=bare).json()["name"] == "no"


@pytest.mark.parametrize("agent", ["Bad", "bad_id", "-x", "a" * 64, "../x", "x/y", ""])
def test_new_with_a_bad_id_writes_nothing(run: Any, scratch: Path, agent: str) -> None:
    result = refused(run, scratch, "new", "--name", "X", "--", agent, code=2)
    suggested = {"Bad": "bad", "bad_id": "bad-id", "-x": "x", "a" * 64: "a" * 63, "../x": "x",
                 "x/y": "x-y", "": "support-bot"}[agent]
    assert result.err == (f"error: invalid agent id {agent!r}: {RULE}\n"
                          f"hint: pick an id such as {suggested!r}\n")


def test_new_of_an_existing_agent_exits_5(run: Any, repo: Path) -> None:
    result = refused(run, repo, "new", "billing-support", "--name", "X", code=5)
    assert result.err == ("error: agent 'billing-support' already exists on staging\n"
                          "hint: edit it with 'agentstage set billing-support ...'\n")


def test_new_of_an_existing_agent_in_a_bare_repository_exits_5(run: Any, bare: Path) -> None:
    refused(run, bare, "new", "hr-helpdesk", "--name", "X", code=5)


def test_sample_repo_is_what_the_fixture_copies(repo: Path) -> None:
    assert sorted(os.listdir(repo / "agents")) == sorted(os.listdir(SAMPLE / "agents"))
