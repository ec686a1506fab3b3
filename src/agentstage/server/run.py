"""Binding and running the server: refuse what is unsafe, print the URL, stop on SIGTERM."""

from __future__ import annotations

import ipaddress
import logging
import re
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from agentstage.errors import UsageError, warn

if TYPE_CHECKING:
    from agentstage.server.auth import Auth
    from agentstage.store import Store

HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")

AUTH_MODES = ("none", "tokens", "header:NAME")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_auth(store: Store, mode: str, author: str | None, tokens: str | None) -> Auth:
    """The Auth for --auth *mode*, or a usage error naming what is wrong."""
    from agentstage.agents import resolve_identity
    from agentstage.server.auth import Auth
    from agentstage.tokens import TokenFile, default_path

    if mode == "none":
        return Auth("none", fixed=resolve_identity(store, author))  # fails now, not later
    if mode == "tokens":
        file = TokenFile(tokens or default_path(store.git_dir))
        if not file.entries():
            warn(f"no tokens in {file.path} yet: every request gets 401 until an admin runs "
                 "'agentstage token create NAME'")
        return Auth("tokens", tokens=file)
    if mode.startswith("header:") and HEADER_NAME.fullmatch(mode[7:]):
        return Auth("header", header=mode[7:])
    raise UsageError(f"--auth {mode!r} is not one of none, tokens, header:NAME",
                     hint="e.g. --auth tokens, or --auth header:X-Forwarded-User behind an "
                          "authenticating proxy")


def serve(repo: str | None, host: str, port: int, auth: str, author: str | None,
          allowed_hosts: Sequence[str] = (), tokens: str | None = None,
          remote: str | None = None) -> int:
    """Serve the repository around *repo* until SIGTERM or SIGINT; 0 after a clean stop."""
    import uvicorn

    from agentstage.server.app import create_app
    from agentstage.server.metrics import access as access_lines
    from agentstage.store import Store

    if auth == "none" and not is_loopback(host):
        raise UsageError(f"--auth none on {host}, which is not a loopback address: anyone who "
                         "reaches it could edit and publish as you",
                         hint="use --auth tokens, or --auth header:NAME behind an "
                              "authenticating proxy, or serve on 127.0.0.1 (the default)")
    if tokens is not None and auth != "tokens":
        raise UsageError("--tokens names the tokens file of --auth tokens",
                         hint="add --auth tokens, or leave --tokens out")
    store = Store.open(repo)
    where = str(store.workdir or store.git_dir)
    who = make_auth(store, auth, author, tokens)
    if remote is not None:
        from agentstage.replica import check

        for line in check(store, remote):  # before binding: a usage error changes nothing
            print(f"agentstage: {line}", file=sys.stderr, flush=True)
    bind = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="pick another --port (0 takes a free one)") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    bound = sock.getsockname()[1]
    shown = f"[{bind}]" if family == socket.AF_INET6 else bind
    hosts = {bind.lower(), "localhost", *(h.lower() for h in allowed_hosts)}
    app = create_app(where, who, hosts=hosts, remote=remote)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            server_header=False, timeout_graceful_shutdown=30)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    access = logging.getLogger("agentstage.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    print(f"http://{shown}:{bound}", flush=True)
    acting = f"as {who.fixed}" if who.fixed else "for each request's identity"
    following = f", following {remote}" if remote else ""
    print(f"agentstage: serving {where} {acting} (--auth {who.describe}{following}); stop "
          "with Ctrl-C or SIGTERM", file=sys.stderr, flush=True)
    # uvicorn finishes the requests in flight on SIGTERM or SIGINT, then raises the signal
    # again to whatever handler was there before it: these make that a clean exit 0.
    for name in (signal.SIGTERM, signal.SIGINT):
        signal.signal(name, lambda _signum, _frame: None)
    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            app.state.events.stop_soon()  # open event streams end: they do not hold the exit

    try:
        Server(config).run(sockets=[sock])
    finally:
        if app.state.replica is not None:
            app.state.replica.stop()
        app.state.events.close()
        access_lines.flush()
    print("agentstage: stopped", file=sys.stderr, flush=True)
    return 0
