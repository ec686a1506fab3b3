"""The server's rows of the benchmark: `agentstage serve` through HTTP on the main repository.

    .venv/bin/python bench/serve.py            # on the default size (cached by run.py)
    .venv/bin/python bench/serve.py --quick

Staging-diff, one field edit and a publish, the agents page and one agent's review page,
each timed through HTTP on one kept-alive connection (median of --runs; the server warm,
as it runs), and delivery: `GET /api/v2/agents/{id}/production` with
a matching `If-None-Match` (a 304), loaded by `wrk -t2 -c50` against the server and,
in the same run, against nginx serving the same JSON bytes as a static file with its
own ETag. wrk and nginx are Debian's `wrk` and `nginx-light`; when they are missing and
this runs as root with apt-get, they are installed, else the delivery rows say why they
are missing. run.py calls this unless given --no-serve.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_MS = 25.0
PAGE_TARGET_MS = 100.0  # the review pages (issue 12)
DELIVERY_SHARE = 0.25  # of nginx's requests per second
DELIVERY_P50_MS = 2.0
WRK = ("-t2", "-c50", "-d10s", "--latency")


class Served:
    """`agentstage serve *args` on a free loopback port over *repo*; its access log to *log*."""

    def __init__(self, repo: Path, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "agentstage"), "-C", str(repo), "serve",
             "--port", "0", *args], stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("http://"):
            self.stop()
            raise SystemExit(f"bench: {' '.join(['agentstage serve', *args])} printed "
                             f"{line!r}:\n{log.read_text()[-2000:]}")
        self.url = line
        self.host, _, port = line.removeprefix("http://").rpartition(":")
        self.port = int(port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class Http:
    """One kept-alive connection; request() -> (status, headers, body)."""

    def __init__(self, host: str, port: int) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.host = f"{host}:{port}"

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        data = None if body is None else json.dumps(body).encode()
        sent = {"host": self.host, **(headers or {})}
        if data is not None:
            sent["content-type"] = "application/json"
        self.conn.request(method, path, data, sent)
        r = self.conn.getresponse()
        out = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, out

    def ok(self, method: str, path: str, body: Any = None) -> bytes:
        status, _, out = self.request(method, path, body)
        if status >= 300:
            raise SystemExit(f"bench: {method} {path} answered {status}: {out[:300]!r}")
        return out


def median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def http_rows(c: Http, agent: str, runs: int) -> list[dict[str, Any]]:
    """Median ms of staging-diff, one field edit and a publish (after an untimed edit)."""
    api = f"/api/v2/agents/{agent}"
    step = iter(range(1, 10_000))

    def edit() -> None:
        value = round(0.05 + (next(step) % 90) / 100, 2)
        c.ok("PATCH", f"{api}/fields", {"set": {"model.temperature": value},
                                         "message": "bench edit"})

    def timed(fn: Any, before: Any = None) -> float:
        times = []
        for n in range(runs + 1):
            if before is not None:
                before()
            started = time.perf_counter()
            fn()
            if n:  # the first run warms up
                times.append((time.perf_counter() - started) * 1000)
        return median(times)

    edit()  # something to diff
    figures = {
        "staging-diff": (timed(lambda: c.ok("GET", f"{api}/staging-diff")), TARGET_MS),
        "field edit": (timed(edit), TARGET_MS),
        "publish": (timed(lambda: c.ok("POST", f"{api}/publish", {"reason": "bench"}),
                          before=edit), TARGET_MS),
    }
    edit()  # the review page then shows a change
    figures["agents page (/)"] = (timed(lambda: c.ok("GET", "/")), PAGE_TARGET_MS)
    figures[f"review page (/agents/{agent})"] = (timed(lambda: c.ok("GET", f"/agents/{agent}")),
                                                 PAGE_TARGET_MS)
    return [{"operation": f"HTTP {name}", "agentstage_ms": round(ms, 2), "target_ms": target,
             "met": ms < target} for name, (ms, target) in figures.items()]


def have_tools() -> str | None:
    """None when wrk and nginx are here (installing them when allowed), else why not."""
    missing = [t for t, exe in (("wrk", "wrk"), ("nginx-light", "nginx"))
               if shutil.which(exe) is None and not Path(f"/usr/sbin/{exe}").exists()]
    if not missing:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{' and '.join(missing)} not installed (apt-get install {' '.join(missing)})"
    done = subprocess.run(["apt-get", "install", "-y", "-q", *missing], capture_output=True,
                          text=True, check=False,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
        done = subprocess.run(["apt-get", "install", "-y", "-q", *missing],
                              capture_output=True, text=True, check=False,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return None if done.returncode == 0 else f"apt-get install {' '.join(missing)} failed: " \
        f"{done.stderr.strip()[-300:]}"


NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
        location / {{ default_type application/json; }}
    }}
}}
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wrk(url: str, etag: str, host: str) -> dict[str, float]:
    done = subprocess.run(["wrk", *WRK, "-H", f"If-None-Match: {etag}", "-H", f"Host: {host}",
                           url], capture_output=True, text=True, check=True)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore
    p50 = re.search(r"\n\s+50%\s+([\d.]+)(us|ms|s)", done.stdout)
    assert p50 is not None, done.stdout
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", done.stdout)
    return {"rps": rps, "p50_ms": float(p50.group(1)) * scale,
            "errors": float(non2xx.group(1)) if non2xx else 0.0}


def delivery(server: Served, c: Http, agent: str, tmp: Path) -> dict[str, Any]:
    """304s per second from agentstage and from nginx, side by side in one run."""
    why = have_tools()
    if why is not None:
        return {"skipped": why}
    path = f"/api/v2/agents/{agent}/production"
    status, headers, body = c.request("GET", path)
    if status != 200:
        raise SystemExit(f"bench: GET {path} answered {status}")
    ours = headers["etag"]
    status, _, _ = c.request("GET", path, headers={"if-none-match": ours})
    assert status == 304, status
    www = tmp / "nginx" / "www"
    www.mkdir(parents=True)
    (www / "production.json").write_bytes(body)
    port = free_port()
    conf = tmp / "nginx" / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp / "nginx", port=port,
                                      user="user root;" if os.geteuid() == 0 else ""))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-c", str(conf), "-e", str(tmp / "nginx" / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        theirs = ""
        for _ in range(100):
            try:
                n = Http("127.0.0.1", port)
                _, h, _ = n.request("GET", "/production.json")
                theirs = h["etag"]
                break
            except OSError:
                time.sleep(0.05)
        assert theirs, "nginx did not start"
        status, _, _ = Http("127.0.0.1", port).request(
            "GET", "/production.json", headers={"if-none-match": theirs})
        assert status == 304, status
        us = wrk(f"{server.url}{path}", ours, f"{server.host}:{server.port}")
        them = wrk(f"http://127.0.0.1:{port}/production.json", theirs, f"127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(30)
    share = us["rps"] / them["rps"]
    return {"bytes": len(body), "agentstage": us, "nginx": them, "share": round(share, 3),
            "target_share": DELIVERY_SHARE, "target_p50_ms": DELIVERY_P50_MS,
            "met": share >= DELIVERY_SHARE and us["p50_ms"] < DELIVERY_P50_MS,
            "wrk": " ".join(WRK)}


def measure(repo: Path, agent: str, env: dict[str, str], runs: int, tmp: Path
            ) -> dict[str, Any]:
    server = Served(repo, env, tmp / "serve.log")
    try:
        c = Http(server.host, server.port)
        rows = http_rows(c, agent, runs)
        deliver = delivery(server, c, agent, tmp)
    finally:
        server.stop()
    return {"rows": rows, "delivery": deliver}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| through HTTP (one server process) | agentstage ms | target | met? |",
             "|---|---:|---:|---|"]
    for x in result["rows"]:
        lines.append(f"| {x['operation']} | {x['agentstage_ms']:.1f} | < {x['target_ms']:.0f} ms"
                     f" | {'met' if x['met'] else '**missed**'} |")
    d = result["delivery"]
    lines.append("")
    if "skipped" in d:
        lines.append(f"Delivery: not measured ({d['skipped']}).")
        return "\n".join(lines)
    lines += [f"Delivery, `GET .../production` with a matching `If-None-Match` (304), "
              f"`wrk {d['wrk']}`, {d['bytes']} bytes of JSON:", "",
              "| server | requests/s | p50 ms | non-304 |", "|---|---:|---:|---:|",
              f"| agentstage serve | {d['agentstage']['rps']:,.0f} | "
              f"{d['agentstage']['p50_ms']:.2f} | {d['agentstage']['errors']:.0f} |",
              f"| nginx (static file, 1 worker) | {d['nginx']['rps']:,.0f} | "
              f"{d['nginx']['p50_ms']:.2f} | {d['nginx']['errors']:.0f} |", "",
              f"agentstage answers {d['share']:.0%} of nginx's rate (target at least "
              f"{d['target_share']:.0%}, p50 under {d['target_p50_ms']:.0f} ms): "
              f"{'met' if d['met'] else '**missed**'}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from generate import OUT, Size, ensure
    from run import Repo, env

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 agents, 1,000 commits")
    parser.add_argument("--runs", type=int, default=15, help="runs per HTTP figure")
    parser.add_argument("--out", type=Path, default=OUT / "serve.json")
    a = parser.parse_args(argv)
    size = Size(200, 1000, 100, 50) if a.quick else Size(2000, 20000, 5000, 500)
    cached, meta = ensure(size, log=lambda m: print(m, file=sys.stderr))
    tmp = Path(tempfile.mkdtemp(prefix="agentstage-bench-serve-"))
    try:
        r = Repo(cached, meta, tmp, "serve")
        result = measure(r.path, r.bench, env(), a.runs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["size"] = meta
    print(markdown(result))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
