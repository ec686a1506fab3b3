"""The approval commands: `approve` and `approvals` (four eyes, README: Trust)."""

from __future__ import annotations

from typing import Any

import click

from agentstage.cli import Context, cli, emit, format_option, pass_ctx
from agentstage.errors import UsageError


@cli.command()
@click.argument("agent")
@click.option("-m", "--message", "note", help="A note kept with the approval.")
@click.option("--push", "remote", metavar="REMOTE",
              help="Push the approval to REMOTE (default: the remote staging tracks, if any).")
@click.option("--no-push", "no_push", is_flag=True,
              help="Approve in this repository only, even when staging tracks a remote.")
@format_option("text", "json")
@pass_ctx
def approve(obj: Context, agent: str, note: str | None, remote: str | None, no_push: bool,
            fmt: str) -> None:
    """Approve the agent's content staged now (four eyes).

    The approval names the exact tree of agents/AGENT on staging: any later change
    to the agent voids it. It counts toward a publish by anyone but you, when the
    policy requires approvals (approvals: {"*": 0, AGENT: N}). It is kept in git as
    refs/meta/agentstage-approvals/AGENT/<tree>/<id> and, in a clone, pushed to the
    remote at once (the server's hook checks that you may approve: the agent's
    publishers and the admins).

    \b
    Examples:
      agentstage approve support-bot -m "Checked the new persona"
      agentstage approve support-bot --no-push
    """
    from agentstage import approvals
    from agentstage.escape import terminal

    if remote and no_push:
        raise UsageError("--push and --no-push contradict each other", hint="pass one of them")
    result = approvals.approve(obj.store, agent, note, obj.author, push=remote,
                               local_only=no_push)

    def text() -> str:
        a = result["approval"]
        head = (f"approved {agent} as staged ({result['staging']['tree'][:12]}, staging "
                f"{result['staging']['commit'][:12]}) by {a['approver']} <{a['email']}>"
                if result["created"] else
                f"{agent} as staged ({result['staging']['tree'][:12]}) was already approved "
                f"by {a['approver']} <{a['email']}> at {a['time']}")
        lines = [terminal(head)]
        if result.get("pushed"):
            lines.append(terminal(f"pushed to {result['pushed']}"))
        elif result.get("local_only"):
            lines.append(terminal("approved in this clone only (--no-push); share it with: "
                                  f"{result['push_command']}"))
        return "\n".join(lines)

    emit(fmt, result, text)


@cli.command(name="approvals")
@click.argument("agent")
@format_option("text", "json")
@pass_ctx
def approvals_cmd(obj: Context, agent: str, fmt: str) -> None:
    """What is approved of an agent, by whom, and whether it is current.

    An approval is current when it names the agent's content staged now; the ones
    of earlier content are void and kept as the record. Shows how many approvals
    the policy requires and who may approve.

    \b
    Examples:
      agentstage approvals support-bot
      agentstage approvals support-bot --format json
    """
    from agentstage import approvals

    result = approvals.status(obj.store, agent)
    emit(fmt, result, lambda: _status_text(result))


def _status_text(result: dict[str, Any]) -> str:
    from agentstage.escape import terminal

    current = result["approved_by"]
    need = result["required"]
    lines = [f"{result['agent']} as staged ({result['staging']['tree'][:12]}): "
             f"{len(current)} current approval{'s' if len(current) != 1 else ''}, "
             f"the policy requires {need}" + (" (the publisher's own does not count)"
                                              if need else "")]
    for a in result["approvals"]:
        state = "current" if a["current"] else f"void (of {a['tree'][:12]})"
        note = f": {a['note']}" if a["note"] else ""
        lines.append(f"  {a['time']}  {a['approver']} <{a['email']}>  {state}{note}")
    if need:
        lines.append(f"who may approve: {', '.join(result['who_may_approve'])}")
    lines += [f"warning: {p}" for p in result["problems"]]
    return "\n".join(terminal(line) for line in lines)
