"""The command line: arguments in, values out. Errors become exit codes in `main` only."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from agentstage import __version__
from agentstage.errors import AgentstageError, UsageError

if TYPE_CHECKING:
    from agentstage.store import Store

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = """\b
Exit codes:
  0 done                 4 invalid configuration
  1 diff --exit-code     5 conflict (a ref moved, not a fast-forward, revert conflict)
    found differences    6 not found (agent, tag, ref, repository)
  2 usage error          7 refused by policy
  3 nothing to publish  70 internal error (please report it)"""


class Context:
    def __init__(self, repo: str | None, author: str | None) -> None:
        self.repo = repo
        self.author = author
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            from agentstage.store import Store

            self._store = Store.open(self.repo)
        return self._store


pass_ctx = click.make_pass_decorator(Context)
COLOR_KEY = "agentstage.color"  # in click's ctx.meta: the --color choice


def use_color() -> bool:
    """Colour in text output: as --color says; with auto (the default) on a terminal,
    unless NO_COLOR is set to something (an empty NO_COLOR does not count: no-color.org)."""
    ctx = click.get_current_context(silent=True)
    mode = ctx.meta.get(COLOR_KEY, "auto") if ctx is not None else "auto"
    if mode != "auto":
        return bool(mode == "always")
    return not os.environ.get("NO_COLOR") and sys.stdout.isatty()


def format_option(*choices: str) -> Callable[[F], F]:
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default="text",
                        show_default=True, help="Output for people (text) or programs (json).")


def emit(fmt: str, value: Any, text: Callable[[], str]) -> None:
    if fmt == "json":
        click.echo(json.dumps(value, indent=2, sort_keys=False))
    else:
        out = text()
        if out:
            click.echo(out.rstrip("\n"))


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  agentstage init my-agents && cd my-agents
  agentstage new support-bot --name "Support Bot"
  agentstage set support-bot model.temperature=0.4 -m "Warmer replies"
  agentstage diff support-bot
  agentstage publish support-bot -m "Warmer replies for tier-1"
  agentstage history --author alice --since 2026-11-01
  agentstage revert support-bot v3 --preview

""" + EXIT_CODES,
)
@click.version_option(__version__, "--version", prog_name="agentstage")
@click.option("-C", "--repo", metavar="PATH", help="Repository to use (default: the one around "
              "the current directory). Bare repositories work too.")
@click.option("--author", metavar='"NAME <EMAIL>"',
              help="Who makes the change (default: $AGENTSTAGE_AUTHOR, else git's user.name "
                   "and user.email).")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Colour in text output; auto: on a terminal, unless "
              "NO_COLOR is set (and not empty).")
@click.pass_context
def cli(ctx: click.Context, repo: str | None, author: str | None, color: str) -> None:
    """Staging and Production for AI agent configurations, with git as the only store.

    Each agent is a directory agents/<id>/ of YAML files. Edits land on the
    `staging` branch; `publish` fast-forwards `production/<id>` and records who,
    when, why and what changed in an annotated tag `<id>/vN`.
    """
    ctx.obj = Context(repo, author)
    ctx.meta[COLOR_KEY] = color
    if color != "auto":  # click.echo would strip colour from a pipe on its own
        ctx.color = color == "always"


# -- repository and agents ---------------------------------------------------------------


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--bare", is_flag=True, help="Make a bare repository (for a git server).")
@format_option("text", "json")
@pass_ctx
def init(obj: Context, path: Path | None, bare: bool, fmt: str) -> None:
    """Make a repository, or adopt an existing one: a `staging` branch with `agents/`.

    \b
    Examples:
      agentstage init my-agents
      agentstage init --bare /srv/git/agents.git
      cd existing-repo && agentstage init
    """
    from agentstage.editing import init_repo

    target = path or Path(obj.repo or ".")
    result = init_repo(target, bare=bare, author=obj.author)
    emit(fmt, result, lambda: f"{result['path']}: " + "; ".join(result["actions"]))


@cli.command()
@click.argument("agent")
@click.option("--name", required=True, help="Display name of the agent.")
@click.option("--model", "model", default="gpt-4o", show_default=True, help="Model name.")
@click.option("--provider", default="openai", show_default=True, help="Model provider.")
@click.option("-m", "--message", help="Commit message.")
@format_option("text", "json")
@pass_ctx
def new(obj: Context, agent: str, name: str, model: str, provider: str, message: str | None,
        fmt: str) -> None:
    """Add an agent on staging (one commit) with a starter agent.yaml and instructions.yaml.

    \b
    Example:
      agentstage new support-bot --name "Support Bot" --model gpt-4o
    """
    from agentstage.editing import new_agent

    result = new_agent(obj.store, agent, name, model, provider, message, obj.author)
    emit(fmt, result, lambda: f"created {agent} on staging ({result['commit'][:12]})")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--ref", metavar="REF", help="Validate the agents at a git ref (branch, tag, "
              "commit) instead of files on disk; PATHS then name agent ids.")
@format_option("text", "json")
@pass_ctx
def validate(obj: Context, paths: tuple[Path, ...], ref: str | None, fmt: str) -> None:
    """Check agent directories on disk, or at a ref. Reports every problem at once.

    With no PATH, checks every agent of the repository around the current
    directory. A PATH may be an agent directory, an agents/ directory, or a
    repository root.

    \b
    Examples:
      agentstage validate
      agentstage validate agents/support-bot
      agentstage validate --ref staging
      agentstage -C server.git validate --ref production/support-bot support-bot
    """
    from agentstage.validation import validate_disk, validate_ref

    if ref is not None:
        results = validate_ref(obj.store, ref, [str(p) for p in paths])
    else:
        results = validate_disk(list(paths), obj.repo)
    from agentstage.validation import raise_if_invalid, render_results

    emit(fmt, {"valid": all(r["valid"] for r in results), "agents": results},
         lambda: render_results(results))
    raise_if_invalid(results)


@cli.command()
@click.argument("file", required=False)
@click.option("--write", "out_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Write one <file>.schema.json per agent file into DIR.")
def schema(file: str | None, out_dir: Path | None) -> None:
    """Print the JSON Schema of the agent files, for editors' YAML language servers.

    With FILE (agent.yaml, instructions.yaml, knowledge.yaml, tools.yaml,
    guardrails.yaml) prints that file's schema; without, an object of all five.

    \b
    Examples:
      agentstage schema agent.yaml > agent.schema.json
      agentstage schema --write .schemas
    """
    from agentstage.model import AGENT_FILES, json_schema

    schemas = json_schema()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, value in schemas.items():
            target = out_dir / (name.removesuffix(".yaml") + ".schema.json")
            target.write_text(json.dumps(value, indent=2) + "\n")
            click.echo(str(target))
        return
    if file is not None:
        if file not in schemas:
            raise UsageError(f"no agent file {file!r}",
                             hint=f"choose one of {', '.join(AGENT_FILES)}")
        click.echo(json.dumps(schemas[file], indent=2))
    else:
        click.echo(json.dumps(schemas, indent=2))


@cli.command(name="agents")
@format_option("text", "json")
@pass_ctx
def agents_cmd(obj: Context, fmt: str) -> None:
    """List agents: production version, and whether staging differs from it.

    \b
    Example:
      agentstage agents
    """
    from agentstage.agents import agents_table
    from agentstage.render import agents_text

    rows = agents_table(obj.store)
    emit(fmt, rows, lambda: agents_text(rows, use_color()))


@cli.command()
@click.argument("agent")
@click.option("--env", default=None, metavar="staging|production|vN",
              help="Which configuration: staging, production, or a publish (vN). Default: the "
                   "work tree of a checkout, else staging.")
@format_option("text", "json")
@pass_ctx
def show(obj: Context, agent: str, env: str | None, fmt: str) -> None:
    """Show the whole configuration of one agent in one environment or publish.

    \b
    Examples:
      agentstage show support-bot
      agentstage show support-bot --env production --format json
      agentstage show support-bot --env v2
    """
    from agentstage.agents import show_config
    from agentstage.ids import check_agent_id

    check_agent_id(agent)
    if env is not None:
        _check_env(env)
    if env is None and obj.store.workdir is not None:
        from agentstage.config import agent_dir, load_agent, read_agent_dir
        from agentstage.worktree import AGENT_LINK, opened_dir

        workdir = obj.store.workdir
        directory = workdir / agent_dir(agent)
        with opened_dir(workdir, agent_dir(agent), last_link=AGENT_LINK) as found:
            if found is None:
                from agentstage.errors import NotFound

                raise NotFound(f"no agent directory {directory}",
                               hint="list agents with 'agentstage agents'")
        config = load_agent(agent, read_agent_dir(directory, agent_dir(agent),
                                                  workdir)).as_dict()
        where = f"the work tree ({agent_dir(agent)}), uncommitted changes included"
    else:
        config = show_config(obj.store, agent, env or "staging")
        where = env or "staging (a bare repository has no work tree)"
    # the first line says which configuration this is; JSON stays the bare show shape
    emit(fmt, config, lambda: f"# {agent}: {where}\n" + _yaml_dump(config))


ENV_ALIASES = {"prod": "production", "prd": "production", "live": "production",
               "stage": "staging", "stg": "staging", "draft": "staging"}


def _check_env(env: str) -> None:
    """A usage error for an environment that is close to a real one (`prod`, `Staging`);
    other values are read as a publish (vN), which says what it expects."""
    import difflib

    folded = env.strip().lower()
    close = difflib.get_close_matches(folded, ["staging", "production"], n=1, cutoff=0.75)
    meant = ENV_ALIASES.get(folded) or (close[0] if close else None)
    if meant is not None and meant != env:
        raise UsageError(f"unknown environment {env!r}: --env takes staging, production or a "
                         "publish vN", hint=f"did you mean --env {meant}?")


def _yaml_dump(value: Any) -> str:
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import LiteralScalarString

    def blocks(v: Any) -> Any:  # long texts as `|` blocks, the way people write them
        if isinstance(v, dict):
            return {k: blocks(x) for k, x in v.items()}
        if isinstance(v, list):
            return [blocks(x) for x in v]
        return LiteralScalarString(v) if isinstance(v, str) and "\n" in v.rstrip("\n") else v

    from agentstage.escape import terminal

    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(blocks(value), out)
    # the literal blocks keep their line breaks; every control and invisible character in
    # them (and any ruamel printed raw) is shown escaped
    return terminal(out.getvalue(), newlines=True)


# -- edits -------------------------------------------------------------------------------


@cli.command(name="set")
@click.argument("agent")
@click.argument("assignments", nargs=-1, required=True, metavar="PATH=VALUE...")
@click.option("-m", "--message", help="Commit message (default: names the fields).")
@format_option("text", "json")
@pass_ctx
def set_cmd(obj: Context, agent: str, assignments: tuple[str, ...], message: str | None,
            fmt: str) -> None:
    """Edit fields on staging without a checkout: one commit, comments and layout kept.

    VALUE is YAML 1.2: 0.3 is a number, '0.3' a string, [a, b] a list, false a
    boolean; @FILE reads text from a file. Text with ': ' or ' #' in it needs YAML
    quotes inside the shell's. Paths name list entries by id, never by position.

    \b
    Examples:
      agentstage set support-bot model.temperature=0.4 -m "Warmer"
      agentstage set support-bot "name='Support: billing'"
      agentstage set support-bot 'tools[web-search].enabled=false'
      agentstage set support-bot 'instructions[persona].text=@persona.txt'
      agentstage set support-bot 'guardrails[toxicity]={enabled: true, config: {threshold: 0.8}}'
    """
    from agentstage.edit import explain_invalid, parse_assignment
    from agentstage.editing import set_fields
    from agentstage.errors import InvalidConfig

    edits = [parse_assignment(a) for a in assignments]
    try:
        result = set_fields(obj.store, agent, edits, message, obj.author)
    except InvalidConfig as exc:
        raise explain_invalid(exc, assignments, edits) from None
    emit(fmt, result, lambda: _edit_text(result))


@cli.command()
@click.argument("agent")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("-m", "--message", help="Commit message (default: names the fields).")
@format_option("text", "json")
@pass_ctx
def unset(obj: Context, agent: str, paths: tuple[str, ...], message: str | None,
          fmt: str) -> None:
    """Remove fields or list entries on staging without a checkout: one commit.

    A mapping left empty goes too (no `config: {}` stays behind); a PATH that is not
    set changes nothing, and with nothing to change no commit is made (exit 0).

    \b
    Examples:
      agentstage unset support-bot model.max_tokens
      agentstage unset support-bot 'tools[web-search]'
    """
    from agentstage.edit import Edit
    from agentstage.editing import set_fields
    from agentstage.fieldpath import parse_path

    edits = [Edit(parse_path(p), remove=True) for p in paths]
    result = set_fields(obj.store, agent, edits, message, obj.author)
    emit(fmt, result, lambda: _edit_text(result, paths))


def _edit_text(result: dict[str, Any], unset: Sequence[str] = ()) -> str:
    if not result["commit"] and unset:
        return (f"{result['agent']}: no change ({', '.join(unset)}"
                f" {'is' if len(unset) == 1 else 'are'} not set on staging)")
    if not result["commit"]:
        return f"{result['agent']}: no change (staging already has these values)"
    n = len(result["changes"])
    if not n:  # e.g. `config: {}` removed: the file changed, the configuration did not
        return (f"{result['agent']}: staged a change to the files that changes no field"
                f" ({result['commit'][:12]})")
    return f"{result['agent']}: staged {n} field change{'s' if n != 1 else ''} " \
           f"({result['commit'][:12]})"


def value_width(full: bool) -> int | None:
    """The width text diffs fit values to: the terminal's; None (nothing is cut) with
    --full or when stdout is not a terminal, as git does not cut what it pipes."""
    if full or not sys.stdout.isatty():
        return None
    import shutil

    return shutil.get_terminal_size().columns


# -- diff, publish, history --------------------------------------------------------------


@cli.command()
@click.argument("agents", nargs=-1)
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are differences, like git.")
@click.option("--base", metavar="REV", help="Compare two revisions instead (with --head): every "
              "agent that differs between them, e.g. for a pull request.")
@click.option("--head", metavar="REV", help="The new side with --base (default: staging).")
@click.option("--full", is_flag=True, help="Print every value whole (on a terminal, long values "
              "are cut to fit its width).")
@format_option("text", "json", "markdown", "html")
@pass_ctx
def diff(obj: Context, agents: tuple[str, ...], exit_code: bool, base: str | None,
         head: str | None, full: bool, fmt: str) -> None:
    """Staging against production: only the fields that differ, production beside staging.

    With no AGENT, every agent whose staging differs from production. On a terminal,
    long values are cut to fit its width; piped or with --full, nothing is cut.
    --format html writes the review as one self-contained page (for a CI artifact).

    \b
    Examples:
      agentstage diff support-bot
      agentstage diff support-bot --format json
      agentstage diff --base origin/staging --head HEAD --format markdown
      agentstage diff --base origin/staging --head HEAD --format html > review.html
    """
    from agentstage import render
    from agentstage.publishing import diff_agent, diff_revs

    store = obj.store
    if base is not None or head is not None:
        if base is None:
            raise UsageError("--head needs --base", hint="e.g. --base staging --head HEAD")
        from agentstage.ids import check_agent_id

        for agent in agents:
            check_agent_id(agent)
        results = diff_revs(store, base, head or "staging", agents)
    elif agents:
        results = [diff_agent(store, a) for a in agents]
    else:
        from agentstage.agents import agents_table

        _warn_bad_agent_dirs(store)
        results = [diff_agent(store, row["agent"]) for row in agents_table(store)
                   if row["staging_differs"]]
    color = use_color()
    revs = base is not None  # two revisions: always a list, any number of agents
    if fmt == "json":
        click.echo(json.dumps(results[0] if len(agents) == 1 and not revs else results, indent=2))
    elif fmt == "html":
        from agentstage.html import diff_document

        title = f"Review of {head or 'staging'} against {base}" if revs else None
        click.echo(diff_document(results, ("Base", "Head") if revs else
                                 ("Production", "Staging"), title), nl=False)
    elif fmt == "markdown":
        if revs:
            rerun = f"agentstage diff --base {base} --head {head or 'staging'}"
            click.echo(render.diffs_markdown(results, sides=("Base", "Head"), rerun=rerun))
        else:
            click.echo(render.diffs_markdown(results))
    else:
        sides = ("base", "head") if revs else render.PRODUCTION_STAGING
        width = value_width(full)
        text = "\n".join(render.diff_text(r, color, sides, width) for r in results)
        nothing = (f"no agent differs between {base} and {head or 'staging'}" if revs
                   else "no agent differs between staging and production")
        click.echo(text.rstrip("\n") if results else nothing)
    if exit_code and any(r["has_changes"] for r in results):
        raise click.exceptions.Exit(1)


def _warn_bad_agent_dirs(store: Store) -> None:
    """A directory under agents/ on staging whose name is not an agent id is not an agent
    (it is never diffed or published): say so, and go on with the others."""
    from agentstage.agents import staging_head
    from agentstage.errors import warn
    from agentstage.ids import AGENT_ID_RULE, is_agent_id, suggest_agent_id

    for name in store.list_agents(staging_head(store)):
        if not is_agent_id(name):
            warn(f"agents/{name}: skipped: directory name {name!r} is not a valid agent id "
                 f"(an agent id is {AGENT_ID_RULE}); rename it, e.g. to "
                 f"{suggest_agent_id(name)!r}")


@cli.command()
@click.argument("agents", nargs=-1, required=True)
@click.option("-m", "--message", "reason", help="Why this goes live (recorded); required, except "
              "with --dry-run.")
@click.option("--dry-run", is_flag=True, help="Show what would be published; change nothing.")
@click.option("--push", "remote", metavar="REMOTE",
              help="Push production and the tag to REMOTE atomically (its hooks run); a "
                   "refusal puts the local refs back (exit 7). Default: the remote staging "
                   "tracks, if any.")
@click.option("--no-push", "no_push", is_flag=True,
              help="Publish in this repository only, even when staging tracks a remote.")
@click.option("--allow-empty", is_flag=True,
              help="Publish even when staging differs from production only in comments or "
                   "layout (no field changes).")
@click.option("--sign/--no-sign", default=None,
              help="Sign the tag as git tag -s does (gpg.format, user.signingkey), so git tag "
                   "-v verifies it. Default: git config agentstage.sign.")
@click.option("--skip-unchanged", is_flag=True,
              help="With several agents: leave out those with nothing to publish instead of "
                   "refusing all (exit 3).")
@format_option("text", "json")
@pass_ctx
def publish(obj: Context, agents: tuple[str, ...], reason: str | None, dry_run: bool,
            remote: str | None, no_push: bool, allow_empty: bool, sign: bool | None,
            skip_unchanged: bool, fmt: str) -> None:
    """Make staging live for one agent, or for several at once (all or none).

    production/AGENT fast-forwards to staging and an annotated tag AGENT/vN
    records who, when, why and what changed. Refused when staging is identical
    to production or differs only in comments (exit 3), invalid (4), or
    production is not an ancestor of staging (5).

    Several agents (publish A B ... -m WHY) are a release: every one is checked
    first and any refusal refuses all (naming the agent; --skip-unchanged leaves
    out those with nothing to publish), then all tags and production refs are
    written together and pushed in one atomic push; each record names the
    release's tags. --format json prints {"release", "publishes", "skipped"}.

    In a clone whose staging tracks a remote, the remote is fetched first; a
    staging that is behind it or has diverged is refused (5, with the git pull to
    run), and the publish is pushed there in one atomic push (production, tag,
    and staging when it is ahead). --no-push keeps it local, and says so.

    \b
    Examples:
      agentstage publish support-bot -m "Warmer replies for tier-1"
      agentstage publish support-bot --dry-run
      agentstage publish support-bot -m "Warmer replies" --push origin
      agentstage publish support-bot -m "Try it here first" --no-push
      agentstage publish support-bot billing-bot -m "New refund policy, both bots"
    """
    if len(agents) > 1:
        _publish_many(obj, agents, reason, dry_run, remote, no_push, fmt, sign,
                      allow_empty=allow_empty, skip_unchanged=skip_unchanged)
        return
    _publish(obj, agents[0], reason, dry_run, remote, no_push, fmt, allow_empty=allow_empty,
             sign=sign)


def _publish_many(obj: Context, agents: tuple[str, ...], reason: str | None, dry_run: bool,
                  remote: str | None, no_push: bool, fmt: str, sign: bool | None,
                  **options: bool) -> None:
    from agentstage import publishing, render
    from agentstage.errors import warn

    if remote and no_push:
        raise UsageError("--push and --no-push contradict each other",
                         hint="pass one of them")
    out = publishing.publish_many(obj.store, agents, reason, obj.author, dry_run, push=remote,
                                  local_only=no_push, sign=sign, **options)
    for result in out["publishes"]:
        for line in result.get("repaired", []):
            warn(line)

    def text() -> str:
        color = use_color()
        verb = "Would publish" if out.get("dry_run") else "Published"
        lines = [f"{verb} together: {', '.join(out['release'])}"]
        lines += [f"left out (nothing to publish): {a}" for a in out["skipped"]]
        body = "\n".join(render.publish_text(r, color) for r in out["publishes"])
        return "\n".join(lines) + "\n\n" + body + _pushed_text(out)

    emit(fmt, out, text)


def _publish(obj: Context, agent: str, reason: str | None, dry_run: bool, remote: str | None,
             no_push: bool, fmt: str, sign: bool | None = None, **options: bool) -> None:
    from agentstage import publishing, render
    from agentstage.errors import warn

    if remote and no_push:
        raise UsageError("--push and --no-push contradict each other",
                         hint="pass one of them")
    result = publishing.publish(obj.store, agent, reason, obj.author, dry_run, push=remote,
                                local_only=no_push, sign=sign, **options)
    for line in result.get("repaired", []):
        warn(line)
    emit(fmt, result, lambda: render.publish_text(result, use_color()) + _pushed_text(result))


def _pushed_text(result: dict[str, Any]) -> str:
    if result.get("pushed"):
        also = " (with staging, which was ahead)" if result.get("pushed_staging") else ""
        return f"\npushed to {result['pushed']}{also}"
    if result.get("local_only"):
        return ("\npublished in this clone only (--no-push): the team does not see it yet; "
                f"share it with: {result['push_command']}")
    return ""


@cli.command()
@click.argument("agent")
@click.option("-m", "--message", "reason", help="Why it leaves production (recorded).")
@click.option("--dry-run", is_flag=True, help="Show what would be retired; change nothing.")
@click.option("--push", "remote", metavar="REMOTE",
              help="Push to REMOTE (default: the remote staging tracks, if any).")
@click.option("--no-push", "no_push", is_flag=True, help="Retire in this repository only.")
@format_option("text", "json")
@pass_ctx
def retire(obj: Context, agent: str, reason: str | None, dry_run: bool, remote: str | None,
           no_push: bool, fmt: str) -> None:
    """Take an agent out of production, recorded like a publish.

    The agent's directory is removed from staging (one commit, unless it is gone
    already) and that is published: production/AGENT fast-forwards to a commit
    without the agent, and the tag AGENT/vN records who retired it, when and why.
    `agents` then lists it as retired. Adding it on staging again and publishing
    brings it back.

    \b
    Examples:
      agentstage retire old-bot -m "Replaced by support-bot"
      agentstage retire old-bot --dry-run
    """
    _publish(obj, agent, reason, dry_run, remote, no_push, fmt, retire=True)


@cli.command()
@click.argument("agent", required=False)
@click.option("--author", "who", metavar="TEXT", help="Only publishes by this person (part of "
              "the name or email, any case).")
@click.option("--since", metavar="DATE", help="Only publishes at or after DATE (ISO date or "
              "datetime).")
@click.option("--until", metavar="DATE", help="Only publishes at or before DATE (a date "
              "includes the whole day).")
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="At most N entries.")
@format_option("text", "json")
@pass_ctx
def history(obj: Context, agent: str | None, who: str | None, since: str | None,
            until: str | None, limit: int | None, fmt: str) -> None:
    """Publish history, newest first: who published, when, why, and what changed.

    \b
    Examples:
      agentstage history support-bot
      agentstage history --author alice --since 2026-11-01 --until 2026-11-30
      agentstage history support-bot --limit 5 --format json
    """
    from agentstage import publishing, render

    entries = publishing.history(obj.store, agent, who, since, until, limit)
    emit(fmt, entries, lambda: render.history_text(entries, use_color()))


def _rollback_command(name: str) -> Callable[..., None]:
    verb = {"revert": "Undo on staging the changes that publish TAG introduced.",
            "restore": "Set staging's agent back to the snapshot publish TAG made."}[name]

    @click.argument("agent")
    @click.argument("tag")
    @click.option("--preview", is_flag=True, help="Show what changes in staging and, after the "
                  "next publish, in production; write nothing.")
    @click.option("--full", is_flag=True, help="With --preview: print every value whole.")
    @click.option("-m", "--message", help="Why (added to the commit message).")
    @format_option("text", "json", "markdown")
    @pass_ctx
    def command(obj: Context, agent: str, tag: str, preview: bool, full: bool,
                message: str | None, fmt: str) -> None:
        from agentstage import render, rollback

        result = getattr(rollback, name)(obj.store, agent, tag, preview, message, obj.author)
        if preview:
            if fmt == "markdown":
                click.echo(render.preview_markdown(result))
            else:
                emit(fmt, result,
                     lambda: render.preview_text(result, use_color(), value_width(full)))
            if result.get("conflicts"):  # printed, and still an error: nothing would apply
                error = rollback.conflict_error(agent, result["tag"], result["conflicts"])
                error.payload = None  # the preview above is the JSON of this outcome
                raise error
        else:
            emit(fmt, result, lambda: f"{agent}: {name.rstrip('e')}ed {result['tag']} on staging "
                 f"({result['commit'][:12]}); production is unchanged until you publish")

    command.__doc__ = f"""{verb}

    Production never moves: publish afterwards to make it live. TAG is vN or
    AGENT/vN. {'A field edited since that publish is a conflict (exit 5, with --preview too).'
               if name == 'revert' else 'Other agents are untouched.'}

    \b
    Examples:
      agentstage {name} support-bot v3 --preview
      agentstage {name} support-bot v3 -m "v3 broke refunds"
    """
    return cli.command(name=name)(command)


_rollback_command("revert")
_rollback_command("restore")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
def textconv(file: Path) -> None:
    """Print one agent file as field-level lines, for git's diff driver (textconv).

    Each field is one line, `path: value`, with list entries named by id; long
    texts are one line per line of text. The file's kind is read from its
    content, so git's temporary copies work; a file that is not YAML is printed
    unchanged.

    \b
    Examples:
      echo 'agents/*/*.yaml diff=agentstage' >> .gitattributes
      git config diff.agentstage.textconv "agentstage textconv"
      git diff staging~1 -- agents/support-bot
      agentstage textconv agents/support-bot/tools.yaml
    """
    from agentstage.textconv import convert

    if str(file) == "-":
        raw = sys.stdin.buffer.read()
    else:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            from agentstage.errors import NotFound

            raise NotFound(f"cannot read {file}: {exc.strerror}") from None
    click.echo(convert(raw, None if str(file) == "-" else str(file)), nl=False)


@cli.command()
@click.option("--repair", is_flag=True, help="Fix what can be fixed safely, and say what was done.")
@click.option("--lock-age", type=click.FloatRange(min=0), default=600.0, show_default=True,
              metavar="SECONDS", help="A .lock file older than this counts as stale.")
@format_option("text", "json")
@pass_ctx
def doctor(obj: Context, repair: bool, lock_age: float, fmt: str) -> None:
    """Check the repository: production against its tags, version gaps, stale locks,
    invalid configurations on staging and in production, refs that are not
    fast-forward descendants. Exits 1 when a problem is left.

    --repair completes interrupted publishes (a tag whose production move is
    missing) and removes stale lock files; the rest it reports, with what to do.

    \b
    Examples:
      agentstage doctor
      agentstage doctor --repair --format json
    """
    from agentstage.doctor import doctor as run_doctor

    report = run_doctor(obj.store, repair, lock_age, obj.author)
    emit(fmt, report, lambda: _doctor_text(report))
    if not report["healthy"]:
        raise click.exceptions.Exit(1)


def _doctor_text(report: dict[str, Any]) -> str:
    if not report["findings"]:
        return "healthy: production, tags, locks and configurations agree"
    lines = []
    one = _one_line
    for f in report["findings"]:
        state = "repaired" if f["repaired"] else ("repairable" if f["repairable"] else
                                                  f.get("severity", "problem"))
        lines.append(f"{state:10} {one(f['kind'])}: {one(f['where'])}: {one(f['message'])}")
        if f["repairable"] and not f["repaired"]:
            lines.append(f"{'':10} run 'agentstage doctor --repair' to {one(f['repair'])}")
        elif f.get("fix") and not f["repaired"]:
            lines.append(f"{'':10} fix: {one(f['fix'])}")
    left = sum(not f["repaired"] and f.get("severity", "problem") == "problem"
               for f in report["findings"])
    plural = "s" if left != 1 else ""
    if left:
        lines.append(f"{left} problem{plural} left")
    elif any(f["repaired"] for f in report["findings"]):
        lines.append("healthy after repair")
    else:
        lines.append("healthy, with the warnings above")
    return "\n".join(lines)


def _one_line(value: Any) -> str:
    """A finding's part (it may quote ref and directory names), escaped to stay on its line."""
    from agentstage.escape import terminal

    return terminal(str(value))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; with --auth none only a loopback address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8377, show_default=True,
              help="Port to listen on; 0 takes a free one (the printed URL names it).")
@click.option("--auth", default="none", show_default=True, metavar="none|tokens|header:NAME",
              help="Who requests act as. none: the CLI's identity (--author, "
                   "$AGENTSTAGE_AUTHOR, git config), on loopback only. tokens: "
                   "'Authorization: Bearer TOKEN' (see 'agentstage token'). header:NAME: the "
                   "identity an authenticating proxy puts in the header NAME.")
@click.option("--tokens", "tokens", metavar="FILE",
              help="The tokens file of --auth tokens [default: agentstage-tokens.json in "
                   "the git directory].")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Another Host name to answer for (e.g. the public name a reverse proxy "
                   "forwards); repeatable.")
@click.option("--remote", metavar="NAME",
              help="Serve a clone of the git remote NAME: every write is pushed there before "
                   "it is answered, and the clone follows it every second (README: Running "
                   "several servers).")
@pass_ctx
def serve(obj: Context, host: str, port: int, auth: str, tokens: str | None,
          allowed_hosts: tuple[str, ...], remote: str | None) -> None:
    """Serve the repository over HTTP: the JSON API under /api/v2 (edit staging, review,
    publish, history, revert and restore), the delivery API agent runtimes read production
    from, /openapi.json with /docs, and /healthz.

    Prints the URL it listens on; stops cleanly on SIGTERM or Ctrl-C. Every write is one
    commit on staging by the request's identity, as the CLI's commands make; the policy
    (refs/meta/agentstage) decides who may edit and who may publish.

    \b
    Examples:
      agentstage serve
      agentstage -C /srv/agents serve --port 8080
      agentstage serve --host 0.0.0.0 --auth tokens --allowed-host agents.example.com
      agentstage serve --auth header:X-Forwarded-User --allowed-host agents.example.com
      agentstage -C /srv/replica.git serve --remote origin --auth tokens
      curl -s http://127.0.0.1:8377/api/v2/agents/support-bot/staging-diff
    """
    from agentstage.server.run import serve as run_server

    run_server(obj.repo, host, port, auth, obj.author, allowed_hosts, tokens, remote)


@cli.group()
def token() -> None:
    """API tokens for 'agentstage serve --auth tokens'.

    A token acts as the identity NAME, the name the policy (refs/meta/agentstage) knows the
    person by. Only its hash is kept, in agentstage-tokens.json in the git directory (or
    --tokens FILE, to share one file between servers), never in history. A running server
    honours a new or revoked token within a second.

    \b
    Examples:
      agentstage token create alice --email alice@example.com --expires 90
      agentstage token list
      agentstage token revoke alice
      curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8377/api/v2/agents
    """


def _token_file(obj: Context, path: str | None) -> Any:
    from agentstage.store import Store
    from agentstage.tokens import TokenFile, default_path

    return TokenFile(path or default_path(Store.open(obj.repo).git_dir))


_tokens_option = click.option("--tokens", "path", metavar="FILE",
                              help="The tokens file [default: agentstage-tokens.json in the "
                                   "git directory].")


@token.command("create")
@click.argument("name")
@click.option("--email", help="The email its commits are authored with [default: the "
                              "policy's users entry for NAME, else NAME@agentstage.invalid].")
@click.option("--expires", type=click.IntRange(1, None), metavar="DAYS",
              help="Days until it stops working [default: never].")
@_tokens_option
@format_option("text", "json")
@pass_ctx
def token_create(obj: Context, name: str, email: str | None, expires: int | None,
                 path: str | None, fmt: str) -> None:
    """Make a token for the identity NAME and print it, alone on stdout, once.

    \b
    Examples:
      agentstage token create alice --email alice@example.com
      TOKEN=$(agentstage token create ci-bot --expires 30)
    """
    from agentstage.server.auth import identity_for

    file = _token_file(obj, path)
    if email is None:
        email = _policy_email(obj, name) or identity_for(name).email
    secret, entry = file.create(name, email, expires)
    if fmt == "json":
        emit(fmt, {"token": secret, **entry.public(0)}, str)
        return
    click.echo(secret)
    expiry = f", expires {entry.expires}" if entry.expires else ""
    click.echo(f"token {entry.id} for {entry.name} <{entry.email}>{expiry}; it is shown only "
               "this once", err=True)


def _policy_email(obj: Context, name: str) -> str | None:
    from agentstage.policy import META_REF, load_policy
    from agentstage.store import Store

    store = Store.open(obj.repo)
    policy = load_policy(store, store.ref(META_REF))
    return policy.users[name][0] if policy is not None and name in policy.users else None


@token.command("list")
@_tokens_option
@format_option("text", "json")
@pass_ctx
def token_list(obj: Context, path: str | None, fmt: str) -> None:
    """The tokens: id, identity, created, expiry (never the secrets, which are not kept).

    \b
    Examples:
      agentstage token list
      agentstage token list --format json
    """
    import time

    now = time.time()
    rows = [e.public(now) for e in _token_file(obj, path).entries()]

    def text() -> str:
        if not rows:
            return "no tokens (agentstage token create NAME makes one)"
        return "\n".join(
            f"{r['id']}  {_one_line(r['name'])} <{_one_line(r['email'])}>  created "
            f"{r['created']}  " + ("expired" if r["expired"] else
                                  f"expires {r['expires']}" if r["expires"] else "no expiry")
            for r in rows)

    emit(fmt, rows, text)


@token.command("revoke")
@click.argument("name")
@_tokens_option
@format_option("text", "json")
@pass_ctx
def token_revoke(obj: Context, name: str, path: str | None, fmt: str) -> None:
    """Revoke every token of the identity NAME (or the one token with that id); a running
    server refuses them within a second.

    \b
    Examples:
      agentstage token revoke alice
      agentstage token revoke 3f9c0a1b2c4d
    """
    gone = _token_file(obj, path).revoke(name)
    emit(fmt, {"revoked": [e.id for e in gone]},
         lambda: "\n".join(f"revoked {e.id} ({_one_line(e.name)})" for e in gone))


# -- entry point -------------------------------------------------------------------------


# click 8.2+ raises this for a group run without a subcommand; 8.1 printed the help itself
NO_ARGS_IS_HELP: tuple[type[Exception], ...] = tuple(
    e for e in [getattr(click.exceptions, "NoArgsIsHelpError", None)] if e is not None)


def _wants_json(args: Sequence[str]) -> bool:
    pairs = zip(args, [*args[1:], ""], strict=False)
    return "--format=json" in args or any(a == "--format" and b == "json" for a, b in pairs)


def _say(prefix: str, message: str) -> None:
    """An `error:`/`hint:` line on stderr, escaped (see escape.message)."""
    from agentstage.escape import message as escaped

    click.echo(prefix + escaped(message), err=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # pydantic looks for plugins among every installed package's entry points the first
    # time a model is built: about 90 ms of each command's start, for nothing we use.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        code = cli.main(args=args, prog_name="agentstage", standalone_mode=False)
        if isinstance(code, int):  # click returns the code of an Exit in this mode
            return code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except NO_ARGS_IS_HELP as exc:  # `agentstage`, `agentstage hooks`: help, as git does
        ctx = getattr(exc, "ctx", None)
        click.echo(ctx.get_help() if ctx is not None else str(exc))
        return 0
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except click.ClickException as exc:
        _say("error: ", exc.format_message())
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            _say("hint: ", f"see '{ctx.command_path} --help'")
        return 2
    except AgentstageError as exc:
        if exc.payload is not None and _wants_json(args):
            click.echo(json.dumps(exc.payload, indent=2))
        _say("error: ", exc.message)
        if exc.hint:
            _say("hint: ", exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    except Exception as exc:
        if os.environ.get("AGENTSTAGE_DEBUG") == "1":
            raise
        _say("error: ", f"internal error: {type(exc).__name__}: {exc}")
        click.echo("hint: this is a bug in agentstage; please report it with the command you "
                   "ran (AGENTSTAGE_DEBUG=1 shows the traceback)", err=True)
        return 70
    return 0

import agentstage.cli_approvals  # noqa: E402  (registers approve/approvals)
import agentstage.cli_hooks  # noqa: E402,F401  (registers hooks/policy commands)
