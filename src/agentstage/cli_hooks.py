"""The hook and policy commands: `hook`, `hooks install|uninstall`, `policy show|set`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from agentstage.cli import Context, cli, emit, format_option, pass_ctx
from agentstage.errors import PolicyDenied


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", type=click.Choice(["pre-commit", "pre-receive", "post-receive"]))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def hook(obj: Context, name: str, args: tuple[str, ...]) -> None:
    """Run a git hook (the installed hook scripts call this; you rarely do).

    \b
    pre-commit   validate the agents the commit touches, as staged in the index
    pre-receive  on a server: refuse a push that breaks a rule (exit 7)
    post-receive on a server, after a push landed: record who pushed each publish
                 (a note on its tag under refs/notes/agentstage-pushers), then deliver
                 it to the policy's webhooks in the background

    A hook that was installed before agentstage's (kept as NAME.local) runs first;
    when it fails, so does this (post-receive records the pusher all the same).

    \b
    Example (what hooks/pre-commit runs):
      agentstage hook pre-commit
    """
    from agentstage import hooks

    store = obj.store
    stdin = sys.stdin.buffer.read() if name in ("pre-receive", "post-receive") else None
    code = hooks.run_kept(store, name, args, stdin)
    if name == "post-receive":  # the push has landed whatever the kept hook says
        from agentstage.escape import terminal
        from agentstage.policy import pusher

        done = hooks.post_receive(store, (stdin or b"").decode(errors="replace"))
        for tag in done.noted:
            click.echo(terminal(f"agentstage: {tag} recorded as pushed by {pusher(store)}"),
                       err=True)
        if done.delivering:
            click.echo(terminal(f"agentstage: delivering {', '.join(done.delivering)} to the "
                                "webhooks (agentstage webhooks log)"), err=True)
        if done.problem:
            click.echo(terminal(f"agentstage: webhooks not delivered: {done.problem}"),
                       err=True)
        raise click.exceptions.Exit(code)
    if code != 0:
        raise click.exceptions.Exit(code)
    if name == "pre-commit":
        from agentstage.validation import raise_if_invalid, render_results

        results = hooks.check_staged(store)
        if not all(r["valid"] for r in results):
            click.echo(render_results(results), err=True)
        raise_if_invalid(results)
        return
    refusals = hooks.pre_receive(store, (stdin or b"").decode(errors="replace"), os.environ)
    if refusals:
        lines = [line for r in refusals for line in r.lines()]
        # main prints "error: " before the first line; the other refusals get their own
        text = "\n".join(f"error: {line}" if n and not line.startswith("  ") else line
                         for n, line in enumerate(lines))
        raise PolicyDenied(text, hint="nothing was pushed: the push is all or nothing")


@cli.group()
def hooks() -> None:
    """Install or remove agentstage's git hooks in a repository.

    Hooks already there are kept (as NAME.local) and still run first.

    \b
    Examples:
      agentstage hooks install
      agentstage -C /srv/git/agents.git hooks install --server
    """


@hooks.command()
@click.option("--server", is_flag=True, help="Install the server hooks (pre-receive, "
              "post-receive) into a bare repository instead of the checkout's pre-commit, "
              "and set receive.fsckObjects.")
@format_option("text", "json")
@pass_ctx
def install(obj: Context, server: bool, fmt: str) -> None:
    """Install the pre-commit hook into a checkout, or with --server the server hooks.

    With --server it also sets receive.fsckObjects=true (git refuses malformed pushed
    objects itself), and exits 5 after installing when a symbolic ref is named like a
    protected ref or points at one, with the command that removes it.

    \b
    Examples:
      agentstage hooks install
      agentstage -C /srv/git/agents.git hooks install --server
    """
    from agentstage import hooks as hooks_mod

    result = hooks_mod.install(obj.store, server)
    emit(fmt, result, lambda: _hooks_text(result))
    if result.get("symrefs"):
        from agentstage.errors import Conflict

        found = result["symrefs"]
        raise Conflict(
            "the hooks are installed, but a push through a symbolic ref reaches a protected "
            "ref under another name: " + ", ".join(f"{s['ref']} -> {s['target']}" for s in found),
            hint="remove it: " + "; ".join(s["fix"] for s in found))


@hooks.command()
@format_option("text", "json")
@pass_ctx
def uninstall(obj: Context, fmt: str) -> None:
    """Remove agentstage's hooks only, putting back any hook install kept.

    \b
    Example:
      agentstage hooks uninstall
    """
    from agentstage import hooks as hooks_mod

    result = hooks_mod.uninstall(obj.store)
    emit(fmt, result, lambda: _hooks_text(result))


def _hooks_text(result: dict[str, Any]) -> str:
    rows = result["hooks"] or [{"hook": "(none)", "action": "no agentstage hook found"}]
    text = "\n".join(f"{r['hook']}: {r['action']}" for r in rows) + \
        f"\n(in {result['hooks_dir']})"
    for setting in result.get("settings", []):
        text += f"\ngit config {setting['key']} {setting['value']}: {setting['action']}" \
            f"\n  why: {setting['why']}"
    return text


@cli.group()
def policy() -> None:
    """Show or set the server policy (policy.yaml on refs/meta/agentstage).

    \b
    admins: [alice]          # may change the policy
    editors: ["*"]           # may push staging; "*" is any authenticated pusher
    publishers:              # may publish; keys are agent ids or "*"
      "*": [alice]
      support-bot: [bob]
    users:                   # optional: a publish must be tagged with the pusher's email
      alice: alice@example.com
      bob: [bob@example.com, bob@home.example]
    webhooks:                # optional: POST each publish, signed (README: Trust)
      - {url: "https://ci.example.com/hook", events: [publish], secret_env: HOOK_SECRET}

    A list left out names nobody. Without a policy anyone who can push may edit
    and publish. The pusher's name comes from the variable named by the server's
    git config agentstage.identity (default REMOTE_USER).

    \b
    Examples:
      agentstage policy show
      agentstage policy set policy.yaml -m "Bob publishes support-bot"
    """


@policy.command(name="show")
@format_option("text", "json")
@pass_ctx
def policy_show(obj: Context, fmt: str) -> None:
    """Print the policy in force.

    \b
    Example:
      agentstage policy show --format json
    """
    from agentstage.policy import show_policy

    result = show_policy(obj.store)
    emit(fmt, result, lambda: (result["text"] or "no policy: anyone who can push may edit "
                               "and publish\n") + f"# identity from ${result['identity_variable']}")


@policy.command(name="set")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-m", "--message", help="Commit message.")
@format_option("text", "json")
@pass_ctx
def policy_set(obj: Context, file: Path, message: str | None, fmt: str) -> None:
    """Commit FILE as the policy on refs/meta/agentstage (checked first).

    In a clone, push it afterwards (git push origin refs/meta/agentstage): the
    server accepts it from an admin only. Run it on the server repository itself
    (-C) to bootstrap.

    \b
    Examples:
      agentstage policy set policy.yaml -m "Bob publishes support-bot"
      git push origin refs/meta/agentstage
    """
    from agentstage.agents import resolve_identity
    from agentstage.policy import set_policy

    store = obj.store
    result = set_policy(store, file.read_bytes(), resolve_identity(store, obj.author), message)
    emit(fmt, result, lambda: (f"policy set ({result['commit'][:12]}); push it with: git push "
                               "REMOTE refs/meta/agentstage") if result["changed"]
         else "policy unchanged")


@cli.group()
def webhooks() -> None:
    """Deliver publishes to the webhooks of the policy, and read the delivery log.

    The policy lists them (webhooks: [{url, events: [publish], secret_env}]); the
    server's post-receive hook and `agentstage serve` deliver each publish once, signed
    with the secret in the environment variable secret_env (README: Trust).

    \b
    Examples:
      agentstage webhooks log
      agentstage webhooks deliver support-bot/v3
    """


@webhooks.command(name="log")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Show this many records, newest first.")
@format_option("text", "json")
@pass_ctx
def webhooks_log(obj: Context, limit: int, fmt: str) -> None:
    """Show the delivery log (each claim and attempt), newest first.

    The log is agentstage-webhooks.log in the git directory of the server repository.

    \b
    Examples:
      agentstage -C /srv/git/agents.git webhooks log
      agentstage webhooks log --format json --limit 10
    """
    from agentstage.escape import terminal
    from agentstage.webhooks import read_log, text_of

    records = read_log(obj.store.git_dir, limit)
    emit(fmt, records, lambda: "\n".join(terminal(text_of(r)) for r in records)
         or "no deliveries yet")


@webhooks.command(name="deliver")
@click.argument("tags", nargs=-1, required=True, metavar="TAG...")
@click.option("--once", is_flag=True, help="Skip a webhook that this publish was already "
              "delivered (or handed) to, as the server hook and serve do.")
@click.option("--by", default="cli", hidden=True, help="Who delivers, for the log.")
@format_option("text", "json")
@pass_ctx
def webhooks_deliver(obj: Context, tags: tuple[str, ...], once: bool, by: str,
                     fmt: str) -> None:
    """Deliver the publishes TAG... to the policy's webhooks now (again, without --once).

    Each attempt is logged; exits 5 when a webhook did not take a delivery. The
    server's post-receive hook runs this in the background after each push.

    \b
    Example:
      agentstage webhooks deliver support-bot/v3
    """
    from agentstage.errors import AgentstageError, Conflict
    from agentstage.escape import terminal
    from agentstage.webhooks import EVENT, append, deliver_publish, entry_of, hooks_for

    store = obj.store
    found = hooks_for(store)
    results: list[dict[str, Any]] = []
    for tag in tags:
        try:
            entry = entry_of(store, tag)
        except AgentstageError as exc:
            if not once:
                raise
            # the server hook's background delivery: logged, and the other tags still go
            append(store.git_dir, {"tag": tag, "event": EVENT, "attempt": 0,
                                   "outcome": "failed", "by": by, "error": exc.message})
            results.append({"tag": tag, "url": None, "delivered": False, "error": exc.message})
            continue
        results += deliver_publish(store, entry, by, once, found)
    emit(fmt, results, lambda: "\n".join(terminal(_delivered_text(r)) for r in results)
         or "no webhooks in the policy")
    if any(r["delivered"] is False for r in results):
        raise Conflict("a webhook did not take the delivery",
                       hint="see 'agentstage webhooks log' for each attempt")


def _delivered_text(result: dict[str, Any]) -> str:
    if result.get("error"):
        return f"{result['tag']}: {result['error']}"
    said = {True: "delivered", False: "failed", None: "skipped (already delivered)"}
    return f"{result['tag']} -> {result['url']}: {said[result['delivered']]}"
