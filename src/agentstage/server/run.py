"""Binding and running the server: refuse what is unsafe, print the URL, stop on SIGTERM."""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Sequence

from agentstage.errors import UsageError

AUTH_MODES = ("none",)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(repo: str | None, host: str, port: int, auth: str, author: str | None,
          allowed_hosts: Sequence[str] = ()) -> int:
    """Serve the repository around *repo* until SIGTERM or SIGINT; 0 after a clean stop."""
    import uvicorn

    from agentstage.agents import resolve_identity
    from agentstage.server.app import create_app
    from agentstage.server.auth import Auth
    from agentstage.store import Store

    if auth not in AUTH_MODES:
        raise UsageError(f"--auth {auth} is not available yet", hint="use --auth none on a "
                         "loopback address; tokens and header: come next")
    if not is_loopback(host):
        raise UsageError(f"--auth none on {host}, which is not a loopback address: anyone who "
                         "reaches it could edit and publish as you",
                         hint="serve on 127.0.0.1 (the default) and put an authenticating "
                              "proxy in front of it")
    store = Store.open(repo)
    where = str(store.workdir or store.git_dir)
    who = resolve_identity(store, author)  # fails now, not at the first request
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
    app = create_app(where, Auth("none", author), hosts=hosts)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            server_header=False, timeout_graceful_shutdown=30)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    access = logging.getLogger("agentstage.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    print(f"http://{shown}:{bound}", flush=True)
    print(f"agentstage: serving {where} as {who} (--auth none); stop with Ctrl-C or SIGTERM",
          file=sys.stderr, flush=True)
    # uvicorn finishes the requests in flight on SIGTERM or SIGINT, then raises the signal
    # again to whatever handler was there before it: these make that a clean exit 0.
    for name in (signal.SIGTERM, signal.SIGINT):
        signal.signal(name, lambda _signum, _frame: None)
    uvicorn.Server(config).run(sockets=[sock])
    print("agentstage: stopped", file=sys.stderr, flush=True)
    return 0
