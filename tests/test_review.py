"""Pull-request review and the CI examples: `diff --base/--head`, and the commands of
examples/ run as the pipelines run them, on real repositories and a real server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import ROOT, SAMPLE, commit_all, copy_repo, git, hooked_server

AGENT = "billing-support"
AGENT_YAML = Path("agents") / AGENT / "agent.yaml"
GITHUB = ROOT / "examples" / "github-actions" / "agentstage.yml"
GITLAB = ROOT / "examples" / "gitlab-ci" / ".gitlab-ci.yml"
GITHUB_LIMIT = 65535


def edit(repo: Path, rel: Path | str, old: str, new: str) -> None:
    path = repo / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1))


# -- diff --base/--head --------------------------------------------------------------


def test_pr_diff_of_one_agent(run: Any, repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    edit(repo, AGENT_YAML, "temperature: 0.2", "temperature: 0.4")
    commit_all(repo, "Warmer")
    result = run("diff", "--base", "staging", "--head", "feature", "--format", "markdown",
                 repo=repo)
    assert result.code == 0, result.err
    assert result.out.startswith(f"**{AGENT}**: 1 change (settings 1)\n")
    assert "| `model.temperature` | `0.2` | `0.4` |" in result.out
    data = run("diff", "--base", "staging", "--head", "feature", "--format", "json",
               repo=repo).json()
    assert [(d["agent"], [c["path"] for c in d["changes"]]) for d in data] == \
        [(AGENT, ["model.temperature"])]
    assert run("diff", "--base", "staging", "--head", "feature", "--exit-code",
               repo=repo).code == 1
    assert run("diff", "--base", "staging", "--head", "staging", "--exit-code",
               repo=repo).code == 0


def test_pr_diff_filtered_to_an_unchanged_agent_is_an_empty_list(run: Any, repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    edit(repo, AGENT_YAML, "temperature: 0.2", "temperature: 0.4")
    commit_all(repo)
    result = run("diff", "hr-helpdesk", "--base", "staging", "--head", "feature",
                 "--format", "json", repo=repo)
    assert (result.code, result.json()) == (0, [])
    result = run("diff", "hr-helpdesk", "--base", "staging", "--head", "feature", repo=repo)
    assert (result.code, result.out) == (0, "no agent differs between staging and feature\n")


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--base", "nope", "--head", "HEAD"], 6, "error: no commit or ref named 'nope'"),
    (["--base", "staging", "--head", "nope~3"], 6, "error: no commit or ref named 'nope~3'"),
    (["--head", "HEAD"], 2, "error: --head needs --base"),
    (["Bad_Id", "--base", "staging"], 2, "error: invalid agent id 'Bad_Id'"),
])
def test_pr_diff_usage_and_unknown_revisions(run: Any, repo: Path, args: list[str], code: int,
                                             message: str) -> None:
    result = run("diff", *args, "--format", "markdown", repo=repo)
    assert (result.code, result.out) == (code, "")
    assert result.err.splitlines()[0].startswith(message)


@pytest.mark.parametrize("side", ["head", "base"])
def test_pr_diff_with_an_invalid_agent_on_one_side(run: Any, repo: Path, side: str) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    edit(repo, AGENT_YAML, "temperature: 0.2", "temperature: 7")
    commit_all(repo, "Too hot")
    if side == "base":  # the bad commit is the base; the head fixes it
        git(repo, "branch", "bad")
        edit(repo, AGENT_YAML, "temperature: 7", "temperature: 0.5")
        commit_all(repo, "Fixed")
        base, head = "bad", "feature"
    else:
        base, head = "staging", "feature"
    result = run("diff", "--base", base, "--head", head, "--format", "markdown", repo=repo)
    assert (result.code, result.out) == (4, "")
    rev = base if side == "base" else head
    assert result.err.startswith(
        f"error: {rev}:agents/{AGENT}/agent.yaml:10: model.temperature: input should be less"
        " than or equal to 2 (got 7)\n")


@pytest.fixture
def many(repo: Path) -> Path:
    """24 agents on staging; a `feature` branch rewrites every one's instructions at length."""
    for n in range(24):
        shutil.copytree(SAMPLE / "agents" / AGENT, repo / "agents" / f"bot-{n:02}")
    commit_all(repo, "Forty bots")
    git(repo, "checkout", "-q", "-b", "feature")
    for n in range(24):
        body = "".join(f"    Rule {i} for bot {n}: answer billing questions briefly and"
                       " politely, and never promise refunds.\n" for i in range(120))
        (repo / "agents" / f"bot-{n:02}" / "instructions.yaml").write_text(
            f"- id: persona\n  text: |\n{body}- id: tone\n  text: Be kind.\n")
        edit(repo, f"agents/bot-{n:02}/agent.yaml", "temperature: 0.2", "temperature: 0.3")
    commit_all(repo, "Long instructions everywhere")
    return repo


def test_pr_markdown_hits_the_comment_limit_and_says_what_was_cut(run: Any, many: Path) -> None:
    result = run("diff", "--base", "staging", "--head", "feature", "--format", "markdown",
                 repo=many)
    assert result.code == 0, result.err
    assert len(result.out) <= GITHUB_LIMIT
    assert len(result.out.encode("utf-16-le")) // 2 <= GITHUB_LIMIT
    assert "not shown" in result.out
    assert "**bot-00**: 5 changes (settings 1, instructions 4)" in result.out


def test_pr_markdown_keeps_every_agent_and_field_when_cut(run: Any, many: Path) -> None:
    out = run("diff", "--base", "staging", "--head", "feature", "--format", "markdown",
              repo=many).out
    base, head = (git(many, "rev-parse", "--short=7", rev) for rev in ("staging", "feature"))
    assert out.splitlines()[0] == (
        "**24 agents changed**: 120 changes (settings 24, instructions 96)"
        f" · Base `{base}` → Head `{head}`")
    for n in range(24):
        assert f"**bot-{n:02}**: 5 changes (settings 1, instructions 4)" in out
    # Each agent's fields, at least by path; the first ones with values.
    assert out.count("`instructions[persona].text`") == 24
    assert "| `model.temperature` | `0.2` | `0.3` |" in out
    assert "| Field | Base | Head |" in out and "Production" not in out
    assert "*Cut to fit a 65,000-character comment:*" in out
    assert out.endswith("Run `agentstage diff --base staging --head feature` for the whole"
                        " diff.\n\n")


# -- the CI examples ------------------------------------------------------------------


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


_EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


def github_step(job: str, step_id: str, context: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The shell script and environment of one step, `${{ }}` filled in as Actions would."""
    workflow = load(GITHUB)
    step = next(s for s in workflow["jobs"][job]["steps"] if s.get("id") == step_id)

    def fill(text: str) -> str:
        return _EXPRESSION.sub(lambda m: context[m.group(1)], str(text))

    env = {k: fill(v) for k, v in {**workflow.get("env", {}), **step.get("env", {})}.items()}
    return fill(step["run"]), env


def gitlab_job(name: str, ci: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A job's script as one shell script, and its variables expanded from the CI ones."""
    pipeline = load(GITLAB)
    job = pipeline[name]
    env = dict(ci)
    for key, value in {**pipeline.get("variables", {}), **job.get("variables", {})}.items():
        raw = value["value"] if isinstance(value, dict) else value
        env.setdefault(key, re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""),
                                   str(raw)))
    return "\n".join(job["script"]), env


def sh(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run *script* the way both CI systems do: bash, stop at the first failure."""
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True,
                          check=False)


def stub(bin_dir: Path, name: str, body: str) -> None:
    """A stand-in for a network client (gh, curl) that records how it was called."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\necho \"{name} $*\" >> \"$STUB_LOG\"\n{body}\n")
    path.chmod(0o755)


_TEMPLATE: dict[str, Path] = {}


def _template(run: Any, factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Built once: a bare server with the server hook and staging pushed through it; a
    clone with a `feature` branch editing billing-support, made before someone else
    changed hr-helpdesk on staging (so the branch is behind its base, as usual)."""
    if not _TEMPLATE:
        base = factory.mktemp("review-template")
        source, server = hooked_server(base, run)
        work = clone(server, base / "work")
        git(work, "checkout", "-q", "-b", "feature")
        edit(work, AGENT_YAML, "temperature: 0.2", "temperature: 0.4")
        commit_all(work, "Warmer billing replies")
        edit(source, "agents/hr-helpdesk/agent.yaml", "access: private", "access: team")
        commit_all(source, "HR for the team")
        git(source, "push", "-q", "origin", "staging")
        git(work, "fetch", "-q", "origin")
        _TEMPLATE.update(server=server, work=work)
    return _TEMPLATE


@pytest.fixture
def server(run: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare server with the server hook installed, staging on it."""
    return copy_repo(_template(run, tmp_path_factory)["server"], tmp_path / "server.git")


def clone(server: Path, path: Path) -> Path:
    git(server.parent, "clone", "-q", str(server), str(path))
    return path


@pytest.fixture
def pull_request(server: Path, tmp_path: Path) -> Path:
    """A clone of `server` on the pull request's `feature` branch."""
    path = tmp_path / "work"
    shutil.copytree(_TEMPLATE["work"], path, symlinks=True)
    git(path, "remote", "set-url", "origin", str(server))
    return path


def test_examples_parse_and_call_agentstage() -> None:
    workflow = load(GITHUB)
    assert set(workflow["on"]) == {"pull_request", "push", "workflow_dispatch"}
    assert workflow["on"]["pull_request"]["branches"] == ["staging"]
    assert set(workflow["on"]["workflow_dispatch"]["inputs"]) == {"agent", "reason"}
    runs = "\n".join(str(s.get("run", "")) for j in workflow["jobs"].values()
                     for s in j["steps"])
    assert "pip install" in runs and "agentstage==" in runs
    pipeline = load(GITLAB)
    assert pipeline["publish"]["rules"][0]["when"] == "manual"
    assert "pip install" in "\n".join(pipeline["default"]["before_script"])


def test_github_pull_request_job(pull_request: Path, tmp_path: Path) -> None:
    work = pull_request
    # actions/checkout of a pull request: HEAD is the merge of the branch into its base.
    git(work, "checkout", "-q", "--detach", "origin/staging")
    git(work, "merge", "-q", "--no-ff", "--no-edit", "feature")
    context = {"github.base_ref": "staging", "github.token": "t0ken",
               "github.repository": "acme/agents", "github.event.pull_request.number": "7"}
    for step in ("validate", "diff"):
        script, env = github_step("review", step, context)
        done = sh(script, work, env)
        assert done.returncode == 0, done.stderr
    diff_md = (work / "diff.md").read_text()
    assert diff_md.startswith(f"**{AGENT}**: 1 change (settings 1)\n")
    assert "hr-helpdesk" not in diff_md  # staging's own change is not the pull request's
    bin_dir = tmp_path / "bin"
    log = tmp_path / "gh.log"
    # No earlier comment: --edit-last fails, a new comment is made; the next run edits it.
    stub(bin_dir, "gh", 'case "$*" in *--edit-last*) [ -f "$STUB_HAS_COMMENT" ] || exit 1;; '
                        'esac\ntouch "$STUB_HAS_COMMENT"\n'
                        'for a; do last=$a; done; cmp -s "$last" diff.md || exit 3')
    script, env = github_step("review", "comment", context)
    env |= {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STUB_LOG": str(log),
            "STUB_HAS_COMMENT": str(tmp_path / "commented")}
    for _ in range(2):
        done = sh(script, work, env)
        assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        "gh pr comment 7 --edit-last --body-file diff.md",
        "gh pr comment 7 --body-file diff.md",
        "gh pr comment 7 --edit-last --body-file diff.md",
    ]
    assert env["GH_TOKEN"] == "t0ken"


def test_github_pull_request_job_fails_on_an_invalid_agent(pull_request: Path) -> None:
    work = pull_request
    edit(work, AGENT_YAML, "temperature: 0.4", "temprature: 0.4")
    commit_all(work, "Typo")
    context = {"github.base_ref": "staging"}
    script, env = github_step("review", "validate", context)
    done = sh(script, work, env)
    assert done.returncode == 4
    assert "model.temprature: unknown field (did you mean temperature?)" in done.stdout + \
        done.stderr
    script, env = github_step("review", "diff", context)
    assert sh(script, work, env).returncode == 4


def test_github_push_job_validates(pull_request: Path) -> None:
    script, env = github_step("validate", "validate-staging", {})
    assert sh(script, pull_request, env).returncode == 0


def publish_context(agent: str, reason: str) -> dict[str, str]:
    return {"inputs.agent": agent, "inputs.reason": reason, "github.actor": "octocat",
            "github.actor_id": "583231"}


def test_github_publish_job_against_a_hooked_server(server: Path, tmp_path: Path) -> None:
    # actions/checkout with ref: staging and fetch-depth: 0, in a fresh runner each time.
    script, env = github_step("publish", "publish", publish_context(AGENT, "First release"))
    done = sh(script, clone(server, tmp_path / "run1"), env)
    assert done.returncode == 0, done.stderr
    staging = git(server, "rev-parse", "staging")
    assert git(server, "rev-parse", f"production/{AGENT}") == staging
    assert git(server, "for-each-ref", "--format=%(taggername) %(taggeremail) %(subject)",
               f"refs/tags/{AGENT}/v1") == \
        "octocat <583231+octocat@users.noreply.github.com> First release"
    # A change lands on staging; the next run has only origin's refs to go on.
    work = clone(server, tmp_path / "work")
    edit(work, AGENT_YAML, "temperature: 0.2", "temperature: 0.3")
    commit_all(work)
    git(work, "push", "-q", "origin", "staging")
    script, env = github_step("publish", "publish", publish_context(AGENT, "Warmer; it's fine"))
    done = sh(script, clone(server, tmp_path / "run2"), env)
    assert done.returncode == 0, done.stderr
    assert git(server, "rev-parse", f"production/{AGENT}") == git(server, "rev-parse",
                                                                   "staging")
    assert git(server, "for-each-ref", "--format=%(subject)", f"refs/tags/{AGENT}/v2") == \
        "Warmer; it's fine"


def gitlab_ci(work: Path, **extra: str) -> dict[str, str]:
    return {"CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "staging",
            "CI_MERGE_REQUEST_DIFF_BASE_SHA": git(work, "merge-base", "origin/staging", "HEAD"),
            "CI_API_V4_URL": "https://gitlab.example/api/v4", "CI_PROJECT_ID": "42",
            "CI_MERGE_REQUEST_IID": "7", "AGENTSTAGE_API_TOKEN": "t0ken",
            "GITLAB_USER_NAME": "Ada Lovelace", "GITLAB_USER_EMAIL": "ada@example.com", **extra}


def test_gitlab_merge_request_jobs(pull_request: Path, tmp_path: Path) -> None:
    work = pull_request  # GitLab checks out the branch's own commit
    script, env = gitlab_job("validate", gitlab_ci(work))
    assert sh(script, work, env).returncode == 0
    bin_dir = tmp_path / "bin"
    log = tmp_path / "curl.log"
    # GET lists the notes ($STUB_NOTES); POST/PUT keep the body sent, to check it.
    stub(bin_dir, "curl", 'case "$*" in *--request*) cp note.json "$STUB_LOG.body";; '
                          '*) cat "$STUB_NOTES";; esac')
    notes = tmp_path / "notes.json"
    notes.write_text("[]")
    script, env = gitlab_job("diff", gitlab_ci(work))
    env |= {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STUB_LOG": str(log),
            "STUB_NOTES": str(notes)}
    done = sh(script, work, env)
    assert done.returncode == 0, done.stderr
    diff_md = (work / "diff.md").read_text()
    assert diff_md.startswith(f"**{AGENT}**: 1 change (settings 1)\n")
    assert "hr-helpdesk" not in diff_md
    body = json.loads(Path(f"{log}.body").read_text())["body"]
    assert body == "<!-- agentstage diff -->\n" + diff_md
    url = "https://gitlab.example/api/v4/projects/42/merge_requests/7/notes"
    calls = log.read_text().splitlines()
    assert calls[0].startswith("curl ") and calls[0].endswith(f" {url}?sort=desc&per_page=100")
    assert "--request POST" in calls[1] and calls[1].endswith(f" {url}")
    # The next pipeline finds its note and edits it.
    notes.write_text(json.dumps([{"id": 5, "body": "LGTM"}, {"id": 9, "body": body}]))
    assert sh(script, work, env).returncode == 0
    assert "--request PUT" in log.read_text().splitlines()[-1]
    assert log.read_text().splitlines()[-1].endswith(f" {url}/9")


def test_gitlab_publish_job_against_a_hooked_server(server: Path, tmp_path: Path) -> None:
    work = clone(server, tmp_path / "work")
    edit(work, AGENT_YAML, "temperature: 0.2", "temperature: 0.3")
    commit_all(work)
    git(work, "push", "-q", "origin", "staging")
    runner = clone(server, tmp_path / "runner")
    git(runner, "checkout", "-q", "--detach")  # GitLab checks out a detached commit
    script, env = gitlab_job("publish", gitlab_ci(runner, AGENT=AGENT, REASON="Warmer"))
    assert env["AGENTSTAGE_AUTHOR"] == "Ada Lovelace <ada@example.com>"
    done = sh(script, runner, env)
    assert done.returncode == 0, done.stderr
    assert git(server, "rev-parse", f"production/{AGENT}") == git(server, "rev-parse",
                                                                   "staging")
    assert git(server, "for-each-ref", "--format=%(taggername) %(subject)",
               f"refs/tags/{AGENT}/v1") == "Ada Lovelace Warmer"
    # Without AGENT and REASON the job stops before touching anything.
    script, env = gitlab_job("publish", gitlab_ci(runner))
    done = sh(script, runner, env)
    assert done.returncode == 2
    assert "set AGENT and REASON" in done.stderr
