"""Signed publishes (DESIGN.md section 10) with real keys made here: `ssh-keygen -t
ed25519` (and gpg when installed). `git tag -v` verifies what agentstage signed; the server
hook refuses unsigned, unknown-signer and tampered publish tags over a real `git push`;
history, the API and the pages show the signer; doctor reports what does not verify; a
signing failure writes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import commit_all, git, hooked_server, tree_state
from test_serve import Server, server_env

AGENT = "billing-support"
AGENT_YAML = Path("agents") / AGENT / "agent.yaml"
EMAIL = "test@example.com"


def ssh_key(where: Path, name: str = "key") -> Path:
    """A new ed25519 key pair without a passphrase: the private key's path."""
    key = where / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True)
    return key


def allowed_line(key: Path, email: str = EMAIL) -> str:
    return f'{email} namespaces="git" {key.with_suffix(".pub").read_text().strip()}'


def use_ssh(repo: Path, key: Path) -> None:
    git(repo, "config", "gpg.format", "ssh")
    git(repo, "config", "user.signingkey", str(key))


def edit(repo: Path, old: str = "temperature: 0.2", new: str = "temperature: 0.3") -> str:
    path = repo / AGENT_YAML
    path.write_text(path.read_text().replace(old, new, 1))
    return commit_all(repo, f"{old} -> {new}")


def tag_v(repo: Path, tag: str, allowed: Path | None = None) -> subprocess.CompletedProcess[str]:
    config = ["-c", f"gpg.ssh.allowedSignersFile={allowed}"] if allowed else []
    return subprocess.run(["git", "-C", str(repo), *config, "tag", "-v", tag],
                          capture_output=True, text=True, check=False)


# -- signing ----------------------------------------------------------------------------------


def test_publish_sign_is_verified_by_git_tag_v(run: Any, repo: Path, tmp_path: Path) -> None:
    key = ssh_key(tmp_path)
    use_ssh(repo, key)
    edit(repo)
    done = run("publish", AGENT, "-m", "Warmer", "--sign", repo=repo)
    assert done.code == 0, done.err
    raw = git(repo, "cat-file", "tag", f"{AGENT}/v1")
    assert raw.splitlines()[-1] == "-----END SSH SIGNATURE-----"
    assert "-----BEGIN SSH SIGNATURE-----" in raw
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(allowed_line(key) + "\n")
    checked = tag_v(repo, f"{AGENT}/v1", allowed)
    assert checked.returncode == 0, checked.stderr
    assert f'Good "git" signature for {EMAIL} with ED25519 key' in checked.stderr
    # production moved as for any publish; the record reads back despite the signature
    assert git(repo, "rev-parse", f"production/{AGENT}") == git(repo, "rev-parse", "staging")
    entry = run("history", AGENT, "--format", "json", repo=repo).json()[0]
    assert entry["reason"] == "Warmer" and entry["verified"] is True
    assert entry["signature"]["signed"] is True


def test_history_shows_the_signer_and_whether_it_verifies(
        run: Any, repo: Path, tmp_path: Path) -> None:
    key = ssh_key(tmp_path)
    use_ssh(repo, key)
    assert run("publish", AGENT, "-m", "one", "--sign", repo=repo).code == 0
    edit(repo)
    assert run("publish", AGENT, "-m", "two", repo=repo).code == 0  # unsigned
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(key.with_suffix(".pub"))],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    # no allowed signers known: signed, by this key, not checked (null)
    entries = run("history", AGENT, "--format", "json", repo=repo).json()
    assert entries[1]["signature"] == {
        "signed": True, "format": "ssh", "signer": f"ED25519 {fingerprint}",
        "key": f"ED25519 {fingerprint}", "verified": None,
        "reason": entries[1]["signature"]["reason"]}
    assert "no allowed signers" in entries[1]["signature"]["reason"]
    assert entries[0]["signature"] == {"signed": False, "format": None, "signer": None,
                                       "key": None, "verified": None, "reason": None}
    # with git's allowed signers: the signer's name, verified
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(allowed_line(key, "alice@example.com") + "\n")
    git(repo, "config", "gpg.ssh.allowedSignersFile", str(allowed))
    entries = run("history", AGENT, "--format", "json", repo=repo).json()
    assert entries[1]["signature"]["signer"] == "alice@example.com"
    assert entries[1]["signature"]["verified"] is True
    text = run("history", AGENT, repo=repo).out
    assert "one (signed by alice@example.com)" in text
    assert "two" in text and text.count("signed by") == 1
    # a key not in the list: signed, does not verify, and the reason names the key
    allowed.write_text(allowed_line(ssh_key(tmp_path, "other"), "bob@example.com") + "\n")
    signature = run("history", AGENT, "--format", "json", repo=repo).json()[1]["signature"]
    assert signature["verified"] is False
    assert signature["signer"] == f"ED25519 {fingerprint}"
    assert f"signed by ED25519 {fingerprint}, which is not in" in signature["reason"]
    assert "BAD SIGNATURE by ED25519" in run("history", AGENT, repo=repo).out


def test_git_config_agentstage_sign_and_no_sign(run: Any, repo: Path, tmp_path: Path) -> None:
    use_ssh(repo, ssh_key(tmp_path))
    git(repo, "config", "agentstage.sign", "true")
    assert run("publish", AGENT, "-m", "signed by config", repo=repo).code == 0
    edit(repo)
    assert run("publish", AGENT, "-m", "not this one", "--no-sign", repo=repo).code == 0
    assert "SSH SIGNATURE" in git(repo, "cat-file", "tag", f"{AGENT}/v1")
    assert "SSH SIGNATURE" not in git(repo, "cat-file", "tag", f"{AGENT}/v2")


@pytest.mark.parametrize(("config", "says"), [
    ({"gpg.format": "ssh"}, "cannot sign: no SSH signing key"),
    ({"gpg.format": "ssh", "user.signingkey": "/nowhere/id_ed25519"},
     "user.signingkey '/nowhere/id_ed25519' is not an SSH key file"),
    ({"gpg.format": "x509"}, "gpg.format is 'x509'; agentstage signs with openpgp or ssh"),
    ({"gpg.format": "ssh", "user.signingkey": "KEY", "gpg.ssh.program": "/no/ssh-keygen"},
     "/no/ssh-keygen (git config gpg.ssh.program) is not installed"),
    ({"gpg.program": "/no/gpg"}, "/no/gpg (git config gpg.program) is not installed"),
])
def test_a_signing_failure_is_a_usage_error_and_writes_nothing(
        run: Any, repo: Path, config: dict[str, str], says: str) -> None:
    for key, value in config.items():
        git(repo, "config", key, value)
    edit(repo)
    before = tree_state(repo)
    objects = git(repo, "count-objects", "-v")
    done = run("publish", AGENT, "-m", "go", "--sign", repo=repo)
    assert done.code == 2, done.err
    assert says in done.err, done.err
    assert "Traceback" not in done.err
    assert tree_state(repo) == before and git(repo, "count-objects", "-v") == objects
    git(repo, "config", "agentstage.sign", "true")  # retire signs by the config, and stops
    assert run("retire", AGENT, "-m", "gone", repo=repo).code == 2  # before its commit
    assert tree_state(repo) == before


def test_a_key_that_fails_to_sign_writes_nothing(run: Any, repo: Path, tmp_path: Path) -> None:
    """A file that is not a key passes the first checks; ssh-keygen refuses it at signing
    time, before the tag object is written."""
    bogus = tmp_path / "not-a-key"
    bogus.write_text("nothing here\n")
    use_ssh(repo, bogus)
    edit(repo)
    before = tree_state(repo)
    done = run("publish", AGENT, "-m", "go", "--sign", repo=repo)
    assert done.code == 2 and "cannot sign: ssh-keygen failed" in done.err, done.err
    assert tree_state(repo) == before
    assert subprocess.run(["git", "-C", str(repo), "fsck", "--lost-found", "--no-progress"],
                          capture_output=True, text=True, check=True).stdout.count("tag") == 0


def test_a_reason_with_a_signature_line_is_refused(run: Any, repo: Path) -> None:
    edit(repo)
    before = tree_state(repo)
    done = run("publish", AGENT, "-m", "why\n-----BEGIN PGP SIGNATURE-----\nx", repo=repo)
    assert done.code == 2 and "a line git reads as a signature" in done.err
    assert tree_state(repo) == before


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")
def test_openpgp_signing_with_gpg(run: Any, repo: Path) -> None:
    made = subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                           f"Test Author <{EMAIL}>", "ed25519", "sign", "never"],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"gpg cannot make a key here: {made.stderr}")
    edit(repo)
    done = run("publish", AGENT, "-m", "gpg signed", "--sign", repo=repo)
    assert done.code == 0, done.err
    assert "-----BEGIN PGP SIGNATURE-----" in git(repo, "cat-file", "tag", f"{AGENT}/v1")
    checked = tag_v(repo, f"{AGENT}/v1")
    assert checked.returncode == 0 and "Good signature" in checked.stderr, checked.stderr
    signature = run("history", AGENT, "--format", "json", repo=repo).json()[0]["signature"]
    assert signature["format"] == "openpgp" and signature["verified"] is True
    assert signature["signer"] == f"Test Author <{EMAIL}>"


# -- the server hook ------------------------------------------------------------------------


def push(repo: Path, *refspecs: str, user: str = "alice") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REMOTE_USER": user}
    return subprocess.run(["git", "-C", str(repo), "push", "--atomic", "--porcelain", "origin",
                           *refspecs], capture_output=True, text=True, check=False, env=env)


@pytest.fixture
def signed_server(run: Any, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A hooked bare server whose policy requires signatures by alice's key, a clone of
    it set to sign with that key, and the key."""
    _source, server = hooked_server(tmp_path, run)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(server), str(clone))
    alice = ssh_key(tmp_path, "alice")
    policy = tmp_path / "policy.yaml"
    policy.write_text('admins: [alice]\neditors: ["*"]\npublishers: {"*": [alice]}\n'
                      "signing:\n  required: true\n  allowed_signers:\n"
                      f"    - '{allowed_line(alice)}'\n")
    assert run("policy", "set", str(policy), repo=clone).code == 0
    done = push(clone, "refs/meta/agentstage")
    assert done.returncode == 0, done.stderr
    use_ssh(clone, alice)
    return server, clone, alice


def test_the_hook_accepts_a_publish_signed_by_an_allowed_signer(
        run: Any, signed_server: tuple[Path, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, clone, alice = signed_server
    edit(clone)
    monkeypatch.setenv("REMOTE_USER", "alice")
    done = run("publish", AGENT, "-m", "signed", "--sign", repo=clone)
    assert done.code == 0, done.err
    assert git(server, "rev-parse", f"production/{AGENT}") == git(clone, "rev-parse", "staging")
    allowed = tmp_path / "allowed"
    allowed.write_text(allowed_line(alice) + "\n")
    assert tag_v(server, f"{AGENT}/v1", allowed).returncode == 0
    # the server's own history checks it against the policy's signers
    signature = run("history", AGENT, "--format", "json", repo=server).json()[0]["signature"]
    assert signature["verified"] is True and signature["signer"] == EMAIL
    assert run("doctor", repo=server).code == 0


def test_the_hook_refuses_an_unsigned_publish(
        run: Any, signed_server: tuple[Path, Path, Path]) -> None:
    server, clone, _alice = signed_server
    edit(clone)
    assert push(clone, "staging").returncode == 0
    before = tree_state(server)
    assert run("publish", AGENT, "-m", "unsigned", "--no-push", repo=clone).code == 0
    done = push(clone, f"production/{AGENT}", f"refs/tags/{AGENT}/v1")
    assert done.returncode != 0 and "pre-receive hook declined" in done.stdout + done.stderr
    assert f"refs/tags/{AGENT}/v1: not signed: the server's policy requires signed " \
           "publishes" in done.stderr, done.stderr
    assert tree_state(server) == before


def test_the_hook_refuses_an_unknown_signer(
        run: Any, signed_server: tuple[Path, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, clone, _alice = signed_server
    mallory = ssh_key(tmp_path, "mallory")
    use_ssh(clone, mallory)
    edit(clone)
    before = tree_state(server)
    monkeypatch.setenv("REMOTE_USER", "alice")
    done = run("publish", AGENT, "-m", "not alice's key", "--sign", repo=clone)
    assert done.code == 7, done.err
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(mallory) + ".pub"],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    assert f"refs/tags/{AGENT}/v1: its signature is refused: signed by ED25519 " \
           f"{fingerprint}, which is not in the policy's allowed signers" in done.err, done.err
    assert tree_state(server) == before


def test_the_hook_refuses_a_tampered_tag(
        run: Any, signed_server: tuple[Path, Path, Path]) -> None:
    """A signed publish whose message was changed afterwards (the signature kept): git
    takes the object, the signature no longer covers it."""
    server, clone, _alice = signed_server
    edit(clone)
    assert push(clone, "staging").returncode == 0
    assert run("publish", AGENT, "-m", "the real reason", "--sign", "--no-push",
               repo=clone).code == 0
    raw = git(clone, "cat-file", "tag", f"{AGENT}/v1") + "\n"
    forged = raw.replace("the real reason", "a better reason", 1)
    oid = subprocess.run(["git", "-C", str(clone), "mktag"], input=forged, capture_output=True,
                         text=True, check=True).stdout.strip()
    git(clone, "update-ref", f"refs/tags/{AGENT}/v1", oid)
    assert run("history", AGENT, "--format", "json", repo=clone).json()[0][
        "reason"] == "a better reason"
    before = tree_state(server)
    done = push(clone, f"production/{AGENT}", f"refs/tags/{AGENT}/v1")
    assert done.returncode != 0
    assert f"refs/tags/{AGENT}/v1: its signature is refused: the signature does not verify: " \
           "the tag was changed after it was signed" in done.stderr, done.stderr
    assert tree_state(server) == before
    # doctor in the clone (which reads the policy's signers) names it
    report = run("doctor", "--format", "json", repo=clone).json()
    found = [f for f in report["findings"] if f["kind"] == "bad-signature"]
    assert [f["where"] for f in found] == [f"refs/tags/{AGENT}/v1"]
    assert "does not verify" in found[0]["message"]


def test_policy_signing_entries_are_checked(run: Any, repo: Path, tmp_path: Path) -> None:
    for text, says in [
        ("signing: {required: true}\n",
         "signing.allowed_signers: required signatures need at least one allowed signer"),
        ("signing: {allowed_signers: ['bob ssh-ed25519 AAAA']}\n",
         "signing.allowed_signers.0: the key of 'bob' is not a ssh-ed25519 key"),
        ("signing: {allowed_signers: ['just-a-name']}\n",
         "is not an allowed-signers line"),
        ("signing: {required: true, sign: true}\n",
         "signing.sign: unknown field (expected required, allowed_signers)"),
    ]:
        policy = tmp_path / "policy.yaml"
        policy.write_text("admins: [alice]\n" + text)
        done = run("policy", "set", str(policy), repo=repo)
        assert done.code == 4 and says in done.err, (text, done.err)


# -- the API and the pages ------------------------------------------------------------------


def test_api_and_pages_show_the_signer(run: Any, repo: Path, tmp_path: Path) -> None:
    key = ssh_key(tmp_path)
    use_ssh(repo, key)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(allowed_line(key, "alice@example.com") + "\n")
    git(repo, "config", "gpg.ssh.allowedSignersFile", str(allowed))
    edit(repo)
    assert run("publish", AGENT, "-m", "signed", "--sign", repo=repo).code == 0
    server = Server(repo, server_env(tmp_path / "home"), "--auth", "header:X-Agentstage-User")
    try:
        with server.client(headers={"X-Agentstage-User": "Vera <vera@example.com>"}) as http:
            for path in (f"/api/v2/agents/{AGENT}/publishes", "/api/v2/publishes"):
                got = http.get(path)
                assert got.status_code == 200, got.text
                signature = got.json()["publishes"][0]["signature"]
                assert signature["signer"] == "alice@example.com", path
                assert signature["verified"] is True
            one = http.get(f"/api/v2/agents/{AGENT}/publishes/1").json()
            assert one["signature"]["verified"] is True
            page = http.get(f"/agents/{AGENT}/history")
            assert page.status_code == 200
            assert "signed by alice@example.com" in page.text
            assert "signature verified" in page.text
            entry = http.get(f"/agents/{AGENT}/history/1")
            assert entry.status_code == 200
            assert "alice@example.com" in entry.text and "verified" in entry.text
    finally:
        server.stop()
