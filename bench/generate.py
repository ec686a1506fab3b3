"""Synthetic agents repositories for the benchmark, written by one `git fast-import`.

A repository of N agents (each the five files of sample-repo/agents/billing-support,
with values varied), M staging commits (the first adds every agent; each later one
changes one field in one file of one agent), T publish tags (annotated, with the
publish record agentstage writes) of which one "hot" agent holds H, and
`production/<id>` at each published agent's newest tag.

Two agents have fixed roles: HOT (the H publishes) and BENCH (the agent the benchmark
diffs, publishes, reverts and restores): BENCH is published at commit 0 (v1) and at
1/4, 1/2 and 3/4 of the history (v2-v4, each changing a different field), and the
last commit changes a fourth field, so staging differs from production, v4 reverts
cleanly and v2 restores. Repositories are cached under bench/out/repos/, keyed by size.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agentstage.config import load_agent
from agentstage.publishing import RECORD_MARKER
from agentstage.semdiff import diff_configs

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "sample-repo" / "agents" / "billing-support"
OUT = ROOT / "bench" / "out"
GENERATOR_VERSION = 2  # bump when the repositories change shape: the cache key holds it

FILES = ("agent.yaml", "instructions.yaml", "knowledge.yaml", "tools.yaml", "guardrails.yaml")
START = 1_735_689_600  # 2025-01-01T00:00:00Z
STEP = 300  # seconds between staging commits
PEOPLE = (
    ("Alice Martin", "alice@example.com"), ("Bob Chen", "bob@example.com"),
    ("Carla Diaz", "carla@example.com"), ("Dev Patel", "dev@example.com"),
    ("Emma Stone", "emma@example.com"), ("Farid Haddad", "farid@example.com"),
    ("Grace Kim", "grace@example.com"), ("Hugo Laurent", "hugo@example.com"),
)
PREFIXES = ("billing", "hr", "sales", "it-help", "legal", "travel", "claims", "onboarding")
PROVIDERS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4"),
             ("mistral", "mistral-large"))
ACCESS = ("private", "team", "organization", "public")

# The varied fields: (parameter, file, field path in the `show` shape, text in the template)
SUBSTITUTIONS = {
    "agent.yaml": [("name: Billing Support Bot", "name: @name@"),
                   ("provider: openai", "provider: @provider@"),
                   ("name: gpt-4o", "name: @model@"),
                   ("temperature: 0.2", "temperature: @temperature@"),
                   ("max_tokens: 1024", "max_tokens: @max_tokens@"),
                   ("access: team", "access: @access@"),
                   ("  - tier-1", "  - @tier@")],
    "instructions.yaml": [("You are the billing support assistant for Acme Cloud.",
                           "You are @name@ for Acme Cloud (revision @rev@).")],
    "knowledge.yaml": [("top_k: 5", "top_k: @top_k@")],
    "tools.yaml": [("max_results: 20", "max_results: @max_results@")],
    "guardrails.yaml": [("threshold: 0.7", "threshold: @threshold@")],
}
PARAMS = {  # parameter -> the file it lives in
    "temperature": "agent.yaml", "max_tokens": "agent.yaml", "rev": "instructions.yaml",
    "top_k": "knowledge.yaml", "max_results": "tools.yaml", "threshold": "guardrails.yaml",
}


def value(param: str, k: int) -> Any:
    """The k-th value of a varied parameter; consecutive values always differ."""
    if param == "temperature":
        return round(0.05 + (k * 37 % 150) / 100, 2)
    if param == "threshold":
        return round(0.5 + (k * 7 % 49) / 100, 2)
    return {"max_tokens": 512 + 64 * k, "rev": k + 1, "top_k": 3 + k % 17,
            "max_results": 10 + k % 41}[param]


@dataclass(frozen=True)
class Size:
    agents: int
    commits: int
    tags: int
    hot: int

    @property
    def key(self) -> str:
        return f"a{self.agents}-c{self.commits}-t{self.tags}-h{self.hot}-g{GENERATOR_VERSION}"


def scaled(agents: int, commits: int, tags: int, hot: int) -> Size:
    """The size of a scaling point: tags capped at a quarter of the commits, the hot
    agent's publishes at half the tags (the default 2,000/20,000/5,000/500 is unchanged)."""
    tags = min(tags, commits // 4)
    return Size(agents, commits, tags, min(hot, tags // 2))


@dataclass
class Agent:
    id: str
    name: str
    provider: str
    model: str
    access: str
    tier: str
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PARAMS, 0))
    version: int = 0
    published: dict[str, Any] | None = None  # the `show` shape at the newest publish
    published_mark: int | None = None

    def params(self) -> dict[str, str]:
        out = {"name": self.name, "provider": self.provider, "model": self.model,
               "access": self.access, "tier": self.tier}
        out.update({p: str(value(p, k)) for p, k in self.counters.items()})
        return out


class Templates:
    """The template's files with placeholders, and its `show` shape to patch per agent."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        for name in FILES:
            text = (TEMPLATE / name).read_text()
            for old, new in SUBSTITUTIONS[name]:
                if text.count(old) != 1:
                    raise SystemExit(f"bench: template {name} no longer holds {old!r} once")
                text = text.replace(old, new)
            self.files[name] = text
        sample = Agent("sample", "SENTINEL", "p", "m", "team", "tier-1")
        self.shape = load_agent("sample", self.render_all(sample)).as_dict()
        self.persona = self.shape["instructions"][0]["text"]

    def render(self, name: str, agent: Agent) -> bytes:
        text = self.files[name]
        for key, val in agent.params().items():
            text = text.replace(f"@{key}@", val)
        return text.encode()

    def render_all(self, agent: Agent) -> dict[str, bytes]:
        return {name: self.render(name, agent) for name in FILES}

    def config(self, agent: Agent) -> dict[str, Any]:
        """The agent's `show` shape, built without parsing YAML (checked against the loader
        for a sample of publishes)."""
        c = copy.deepcopy(self.shape)
        v = {p: value(p, k) for p, k in agent.counters.items()}
        c["name"] = agent.name
        c["model"].update(provider=agent.provider, name=agent.model,
                          temperature=v["temperature"], max_tokens=v["max_tokens"])
        c["access"] = agent.access
        c["tags"][2] = agent.tier
        c["instructions"][0]["text"] = self.persona.replace("SENTINEL", agent.name).replace(
            "(revision 1)", f"(revision {v['rev']})")
        c["knowledge"][0]["settings"]["top_k"] = v["top_k"]
        c["tools"][0]["actions"][1]["config"]["max_results"] = v["max_results"]
        c["guardrails"][3]["config"]["threshold"] = v["threshold"]
        return c


class Stream:
    """A git fast-import process: commands in on stdin, get-mark answers on stdout."""

    def __init__(self, repo: Path) -> None:
        self.proc = subprocess.Popen(
            ["git", "-C", str(repo), "fast-import", "--quiet", "--done"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=1 << 20)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.out: IO[bytes] = self.proc.stdin
        self.answers: IO[bytes] = self.proc.stdout
        self.write(b"feature done\nfeature get-mark\n")

    def write(self, data: bytes) -> None:
        self.out.write(data)

    def data(self, payload: bytes) -> None:
        self.out.write(b"data %d\n" % len(payload))
        self.out.write(payload)
        self.out.write(b"\n")

    def oids(self, marks: list[int]) -> dict[int, str]:
        """The object ids of *marks*, asked in chunks that fit in a pipe's buffer (fast-import
        blocks writing answers nobody reads yet)."""
        out: dict[int, str] = {}
        for start in range(0, len(marks), 500):
            chunk = marks[start:start + 500]
            self.out.write(b"".join(b"get-mark :%d\n" % m for m in chunk))
            self.out.flush()
            for m in chunk:
                out[m] = self.answers.readline().decode().strip()
        return out

    def close(self) -> None:
        self.out.write(b"done\n")
        self.out.close()
        if self.proc.wait() != 0:
            raise SystemExit("bench: git fast-import failed")


def schedule(size: Size, rng: random.Random) -> tuple[list[int], set[tuple[int, int]]]:
    """Which agent each commit touches (commit 0 adds all of them: -1), and the publishes
    as (commit, agent). HOT is agent 0, BENCH agent 1."""
    m = size.commits
    touch: list[int] = [-1] + [-2] * (m - 1)
    bench_at = sorted({max(1, m * q // 4) for q in (1, 2, 3)} | {m - 1})
    for i in bench_at:
        touch[i] = 1
    free = [i for i in range(1, m) if touch[i] == -2]
    hot_at = sorted(rng.sample(free, min(len(free) - 1,
                                         max(size.hot * 3 // 2, (m - 1) // 10))))
    for i in hot_at:
        touch[i] = 0
    others = list(range(2, size.agents)) or [1]
    for i in range(1, m):
        if touch[i] == -2:
            touch[i] = rng.choice(others)
    hot_events = [0, *hot_at]
    step = max(1, len(hot_events) // max(1, size.hot))
    publishes = {(i, 0) for i in hot_events[::step][: size.hot]}
    publishes |= {(0, 1)} | {(i, 1) for i in bench_at[:-1]}
    candidates = [(0, a) for a in range(2, size.agents)]
    candidates += [(i, touch[i]) for i in range(1, m) if touch[i] >= 2]
    rest = max(0, size.tags - len(publishes))
    publishes |= set(rng.sample(candidates, min(rest, len(candidates))))
    return touch, publishes


def build(size: Size, dest: Path) -> dict[str, Any]:
    """Write the repository at *dest* (a bare repository) and return its description."""
    rng = random.Random(size.key)
    templates = Templates()
    agents = []
    for n in range(size.agents):
        provider, model = PROVIDERS[n % len(PROVIDERS)]
        ident = f"{PREFIXES[n % len(PREFIXES)]}-{n:04d}"
        agents.append(Agent(ident, f"{ident.replace('-', ' ').title()} Assistant", provider,
                            model, ACCESS[n % len(ACCESS)], f"tier-{1 + n % 3}"))
    touch, publishes = schedule(size, rng)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "staging", str(dest)], check=True)
    stream = Stream(dest)
    checked = 0
    # (agent, version, commit mark, previous publish's mark, changes, tagger, time): written
    # after the commits, once fast-import has told the commits' ids, so that producing the
    # stream and importing it overlap
    pending: list[tuple[str, int, int, int | None, list[Any], tuple[str, str], int]] = []

    def publish(agent: Agent, mark: int, when: int) -> None:
        nonlocal checked
        current = templates.config(agent)
        changes = [c.as_json() for c in diff_configs(agent.published, current)]
        if not changes:
            return
        if checked < 12:  # the hand-built shape must be what the loader reads
            loaded = load_agent(agent.id, templates.render_all(agent)).as_dict()
            if loaded != current:
                raise SystemExit(f"bench: generated config of {agent.id} does not load back")
            checked += 1
        agent.version += 1
        who = PEOPLE[rng.randrange(len(PEOPLE))]
        pending.append((agent.id, agent.version, mark, agent.published_mark, changes, who,
                        when + 60))
        agent.published, agent.published_mark = current, mark

    for i, which in enumerate(touch):
        who = PEOPLE[i % len(PEOPLE)]
        when = START + i * STEP
        mark = i + 1
        if which == -1:
            changed = [(a, name) for a in agents for name in FILES]
            message = f"Add {len(agents)} agents"
        else:
            agent = agents[which]
            if which == 1:  # BENCH: a different field at each of its commits
                param = ("temperature", "top_k", "max_results", "threshold")[
                    min(3, sum(1 for t in touch[:i] if t == 1))]
            else:
                param = rng.choice(tuple(PARAMS))
            agent.counters[param] += 1
            changed = [(agent, PARAMS[param])]
            message = f"{agent.id}: set {param} to {value(param, agent.counters[param])}"
        stream.write(f"commit refs/heads/staging\nmark :{mark}\n"
                     f"committer {who[0]} <{who[1]}> {when} +0000\n".encode())
        stream.data(message.encode())
        for agent, name in changed:
            stream.write(f"M 100644 inline agents/{agent.id}/{name}\n".encode())
            stream.data(templates.render(name, agent))
        stream.write(b"\n")
        for n in range(len(agents)) if which == -1 else [which]:
            if (i, n) in publishes:
                publish(agents[n], mark, when)
    oids = stream.oids(sorted({p[2] for p in pending}))
    for ident, version, mark, before, changes, who, when in pending:
        record = {"agent": ident, "version": version,
                  "previous": f"{ident}/v{version - 1}" if version > 1 else None,
                  "staging_commit": oids[mark],
                  "production_before": oids[before] if before else None,
                  "reverts": [], "restores": [], "changes": changes}
        more = f" and {len(changes) - 1} more fields" if len(changes) > 1 else ""
        reason = f"{changes[0]['path']}{more} for {ident}"
        message = f"{reason}\n\n{RECORD_MARKER}\n{json.dumps(record, sort_keys=True)}\n"
        stream.write(f"tag {ident}/v{version}\nfrom :{mark}\n"
                     f"tagger {who[0]} <{who[1]}> {when} +0000\n".encode())
        stream.data(message.encode())
    for agent in agents:
        if agent.published_mark:
            stream.write(f"reset refs/heads/production/{agent.id}\n"
                         f"from :{agent.published_mark}\n\n".encode())
    stream.close()
    subprocess.run(["git", "-C", str(dest), "pack-refs", "--all"], check=True)
    subprocess.run(["git", "-C", str(dest), "commit-graph", "write", "--reachable"],
                   check=True, capture_output=True)
    for key, val in (("user.name", "Bench Runner"), ("user.email", "bench@example.com")):
        subprocess.run(["git", "-C", str(dest), "config", key, val], check=True)
    return {"size": size.__dict__, "hot": agents[0].id, "hot_versions": agents[0].version,
            "bench": agents[1].id, "bench_versions": agents[1].version,
            "tags": len(pending), "commits": len(touch),
            "author_filter": PEOPLE[0][0].split()[0].lower()}


def ensure(size: Size, log: Any = print) -> tuple[Path, dict[str, Any]]:
    """The cached repository of *size* (made when missing) and its description."""
    home = OUT / "repos" / size.key
    meta_file = home / "meta.json"
    if meta_file.exists():
        return home / "repo.git", json.loads(meta_file.read_text())
    (OUT / "repos").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{size.key}-", dir=OUT / "repos"))
    started = time.perf_counter()
    try:
        meta = build(size, work / "repo.git")
        meta["generated_in_s"] = round(time.perf_counter() - started, 2)
        (work / "meta.json").write_text(json.dumps(meta, indent=2))
        if home.exists():
            shutil.rmtree(home)
        work.rename(home)
    finally:
        if work.exists():
            shutil.rmtree(work)
    log(f"generated {size.key} in {meta['generated_in_s']} s "
        f"({meta['tags']} tags, {meta['hot']} has {meta['hot_versions']})")
    return home / "repo.git", meta


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Generate one benchmark repository.")
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--commits", type=int, default=20000)
    parser.add_argument("--tags", type=int, default=5000)
    parser.add_argument("--hot-publishes", type=int, default=500)
    a = parser.parse_args()
    path, info = ensure(Size(a.agents, a.commits, a.tags, a.hot_publishes))
    print(path)
    print(json.dumps(info, indent=2))
