"""Signed publishes: a publish tag signed as `git tag -s` signs it, checked as `git tag -v`
checks it.

The signature is appended to the tag object's bytes (the payload), so `git tag -v` verifies
a publish with no help from agentstage. The format, key and programs come from git's own
settings: `gpg.format` (openpgp or ssh), `user.signingkey`, `gpg.program` (or
`gpg.openpgp.program`), `gpg.ssh.program`, `gpg.ssh.defaultKeyCommand`. SSH signatures are
checked against git's allowed-signers format (`gpg.ssh.allowedSignersFile`, or the
policy's `signing.allowed_signers`); OpenPGP ones against the gpg keyring. Each check costs
a subprocess or two, so results are cached by tag object id (an object never changes) and
the list of signers they were checked against.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from agentstage.errors import UsageError
from agentstage.store import Identity, Lru, Store

SIGN_CONFIG = "agentstage.sign"
SSH_BEGIN = "-----BEGIN SSH SIGNATURE-----"
# git's markers (gpg-interface.c): a signature starts at the last line beginning with one
SIGNATURE_STARTS = {
    "-----BEGIN PGP SIGNATURE-----": "openpgp",
    "-----BEGIN PGP MESSAGE-----": "openpgp",
    SSH_BEGIN: "ssh",
    "-----BEGIN SIGNED MESSAGE-----": "x509",
}
FORMATS = ("openpgp", "ssh")
TIMEOUT = 60.0  # seconds for a signing or verifying program (a passphrase may be typed)
MAX_ALLOWED_SIGNERS = 1024 * 1024
SETUP_HINT = ("sign with SSH: git config gpg.format ssh && git config user.signingkey "
              "~/.ssh/id_ed25519.pub; or with gpg: git config user.signingkey KEYID "
              "(see 'Signed publishes' in the README)")

_CHECKED: Lru[tuple[str, str], dict[str, Any]] = Lru(10_000)


_MARKERS = tuple(m.encode() for m in SIGNATURE_STARTS)
_BEGIN = b"-----BEGIN "  # how every marker starts


def split_signature(data: bytes) -> tuple[bytes, bytes]:
    """(payload, signature) of a tag object's bytes, as git splits them: the signature
    starts at the last line that begins with a signature marker; b"" when unsigned.
    Searched from the end, so an unsigned record costs one search, not a walk of its
    lines."""
    end = len(data)
    while (at := data.rfind(_BEGIN, 0, end)) >= 0:
        if (at == 0 or data[at - 1] == 0x0A) and data.startswith(_MARKERS, at):
            return data[:at], data[at:]
        end = at + len(_BEGIN) - 1  # the occurrences that start before this one
    return data, b""


def strip_signature(message: str) -> str:
    """A tag message without the signature git appends to it."""
    return split_signature(message.encode())[0].decode()


def signature_format(signature: bytes) -> str | None:
    for marker, kind in SIGNATURE_STARTS.items():
        if signature.startswith(marker.encode()):
            return kind
    return None


def has_signature_line(text: str) -> str | None:
    """The first line of *text* that git would read as the start of a signature."""
    return next((line for line in text.splitlines()
                 if line.startswith(tuple(SIGNATURE_STARTS))), None)


# -- signing ----------------------------------------------------------------------------------


class SigningKey(NamedTuple):
    """What signs, as git's config says: the format, the program, and the key (a file, a
    literal SSH public key, or a gpg key id or user id)."""

    format: str
    program: str
    key: str
    literal: bool = False


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "yes", "on", "1")


def wants_signing(store: Store, sign: bool | None) -> bool:
    """--sign / --no-sign, else `git config agentstage.sign`."""
    return sign if sign is not None else _is_true(store.config(SIGN_CONFIG))


def _program(store: Store, names: Sequence[str], default: str) -> str:
    name = next((n for n in names if store.config(n)), names[-1])
    configured = store.config(name)
    program = os.path.expanduser(configured or default)
    if shutil.which(program) is None:
        where = f" (git config {name})" if configured else ""
        raise UsageError(f"cannot sign: {program}{where} is not installed or not executable",
                         hint=f"install it, or point git config {name} at it")
    return program


def signing_key(store: Store, who: Identity) -> SigningKey:
    """The key a publish is signed with, checked before anything is written: a usage
    error says what is missing (no key, an unknown format, a key file that is not
    there, a gpg key not in the keyring)."""
    kind = (store.config("gpg.format") or "openpgp").strip().lower()
    if kind not in FORMATS:
        raise UsageError(f"cannot sign: gpg.format is {kind!r}; agentstage signs with "
                         "openpgp or ssh", hint="git config gpg.format ssh (or openpgp)")
    configured = (store.config("user.signingkey") or "").strip()
    if kind == "ssh":
        program = _program(store, ["gpg.ssh.program"], "ssh-keygen")
        if not configured:
            configured = _default_ssh_key(store)
        if configured.startswith("key::"):
            return SigningKey(kind, program, configured[5:].strip(), literal=True)
        if configured.startswith("ssh-"):
            return SigningKey(kind, program, configured, literal=True)
        path = Path(os.path.expanduser(configured))
        if not path.is_absolute():
            path = (store.workdir or store.git_dir) / path
        if not path.is_file():
            raise UsageError(f"cannot sign: user.signingkey {configured!r} is not an SSH key "
                             "file (gpg.format is ssh)",
                             hint="git config user.signingkey ~/.ssh/id_ed25519.pub (a key "
                                  "file, or 'key::ssh-ed25519 AAAA...' with ssh-agent)")
        return SigningKey(kind, program, str(path))
    program = _program(store, ["gpg.openpgp.program", "gpg.program"], "gpg")
    key = configured or str(who)
    try:
        done = subprocess.run([program, "--batch", "--list-secret-keys", key],
                              capture_output=True, check=False, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot sign: {program} did not run: {exc}") from None
    if done.returncode != 0:
        whose = "user.signingkey " + repr(configured) if configured else \
            f"{who} (user.signingkey is not set)"
        raise UsageError(f"cannot sign: gpg has no secret key for {whose}",
                         hint="git config user.signingkey KEYID (gpg --list-secret-keys shows "
                              "them), or sign with SSH: git config gpg.format ssh")
    return SigningKey(kind, program, key)


def _default_ssh_key(store: Store) -> str:
    command = store.config("gpg.ssh.defaultKeyCommand")
    if not command:
        raise UsageError("cannot sign: no SSH signing key (gpg.format is ssh, user.signingkey "
                         "is not set)", hint=SETUP_HINT)
    try:
        done = subprocess.run(command, shell=True, capture_output=True, text=True,
                              check=False, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot sign: gpg.ssh.defaultKeyCommand did not run: {exc}") \
            from None
    first = next((line.strip() for line in done.stdout.splitlines() if line.strip()), "")
    if done.returncode != 0 or not first.startswith(("ssh-", "key::")):
        raise UsageError("cannot sign: gpg.ssh.defaultKeyCommand gave no SSH key",
                         hint=SETUP_HINT)
    return first


def sign(key: SigningKey, payload: bytes) -> bytes:
    """The armored signature of *payload*, as git makes it (appended to a tag's bytes)."""
    with tempfile.TemporaryDirectory(prefix="agentstage-sign-") as tmp:
        if key.format == "ssh":
            keyfile = key.key
            if key.literal:
                keyfile = os.path.join(tmp, "key.pub")
                Path(keyfile).write_text(key.key + "\n")
            args = [key.program, "-Y", "sign", "-n", "git", "-f", keyfile]
            if key.literal:
                args.append("-U")
            data = os.path.join(tmp, "payload")
            Path(data).write_bytes(payload)
            done = _run([*args, data], None)
            signature = Path(data + ".sig").read_bytes() if done.returncode == 0 and \
                os.path.exists(data + ".sig") else b""
            ok = signature.startswith(SSH_BEGIN.encode())
        else:
            done = _run([key.program, "--status-fd=2", "-bsau", key.key], payload)
            signature = done.stdout.replace(b"\r", b"")
            ok = done.returncode == 0 and b"\n[GNUPG:] SIG_CREATED " in b"\n" + done.stderr
    if not ok:
        said = _last_line(done.stderr)
        raise UsageError(f"cannot sign: {os.path.basename(key.program)} failed" +
                         (f": {said}" if said else ""), hint=SETUP_HINT)
    return signature if signature.endswith(b"\n") else signature + b"\n"


def _run(args: list[str], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(args, input=stdin, capture_output=True, check=False,
                              timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(args, 127, b"", str(exc).encode())


def _last_line(data: bytes) -> str:
    from agentstage.escape import terminal

    lines = [line for line in data.decode(errors="replace").splitlines()
             if line.strip() and not line.startswith("[GNUPG:]")]
    return terminal(lines[-1].strip()) if lines else ""


# -- checking ---------------------------------------------------------------------------------


def unsigned() -> dict[str, Any]:
    return {"signed": False, "format": None, "signer": None, "key": None, "verified": None,
            "reason": None}


def ssh_key_id(signature: bytes) -> str | None:
    """`ED25519 SHA256:...` of the key an SSH signature names (read from the signature, so
    known before and without any check), None when it cannot be read."""
    body = b"".join(line.strip() for line in signature.splitlines()[1:]
                    if not line.startswith(b"-----"))
    try:
        blob = base64.b64decode(body, validate=True)
        if not blob.startswith(b"SSHSIG"):
            return None
        (size,) = struct.unpack(">I", blob[10:14])
        public = blob[14:14 + size]
        (kind_size,) = struct.unpack(">I", public[:4])
        kind = public[4:4 + kind_size].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        return None
    digest = base64.b64encode(hashlib.sha256(public).digest()).decode().rstrip("=")
    label = kind.removeprefix("ssh-").removeprefix("sk-").split("@")[0].split("-")[0].upper()
    return f"{label} SHA256:{digest}"


TAGGER_TIME_RE = re.compile(rb"^tagger .*> (\d{1,12}) [+-]\d{4}$", re.MULTILINE)


def _verify_time(payload: bytes) -> list[str]:
    """`-Overify-time=` at the tagger's time, as git passes it (allowed signers may carry
    valid-after and valid-before)."""
    header = payload.split(b"\n\n", 1)[0]
    found = TAGGER_TIME_RE.search(header)
    if found is None:
        return []
    try:
        when = datetime.fromtimestamp(int(found[1]))
    except (OverflowError, OSError, ValueError):
        return []
    return [f"-Overify-time={when.strftime('%Y%m%d%H%M%S')}"]


class Checker:
    """Checks publish tags' signatures against one list of allowed SSH signers (git's
    allowed-signers format; None: none known, so SSH signatures cannot be checked) and
    the gpg keyring. *source* says where the list came from, for the reasons."""

    def __init__(self, store: Store, allowed: bytes | None, source: str,
                 required: bool = False) -> None:
        self.store, self.allowed, self.source, self.required = store, allowed, source, required
        ssh = store.config("gpg.ssh.program") or "ssh-keygen"
        gpg = store.config("gpg.openpgp.program") or store.config("gpg.program") or "gpg"
        self.ssh, self.gpg = os.path.expanduser(ssh), os.path.expanduser(gpg)
        self._digest = hashlib.sha256(b"\0".join([
            allowed if allowed is not None else b"-", ssh.encode(), gpg.encode(),
            b"required" if required else b""])).hexdigest()

    @classmethod
    def for_history(cls, store: Store) -> Checker:
        """The signers this machine knows: the policy's `signing.allowed_signers` when it
        lists some, else git's `gpg.ssh.allowedSignersFile`."""
        from agentstage.errors import AgentstageError
        from agentstage.meta import META_REF, read_policy

        try:
            policy = read_policy(store)
        except AgentstageError:
            policy = None
        signing = policy.signing if policy is not None else None
        required = signing is not None and signing.required
        if signing is not None and signing.allowed_signers:
            return cls(store, allowed_signers_text(signing.allowed_signers),
                       f"the policy's allowed signers ({META_REF})", required)
        configured = store.config("gpg.ssh.allowedSignersFile")
        if configured:
            path = Path(os.path.expanduser(configured))
            if not path.is_absolute():
                path = (store.workdir or store.git_dir) / path
            try:
                with path.open("rb") as file:
                    data = file.read(MAX_ALLOWED_SIGNERS)
                return cls(store, data, f"gpg.ssh.allowedSignersFile ({configured})",
                           required)
            except OSError:
                pass
        return cls(store, None, "", required)

    def check(self, oid: str | None) -> dict[str, Any]:
        """The signature field of a history entry for the tag object *oid*."""
        if oid is None:
            return unsigned()
        key = (oid, self._digest)
        found = _CHECKED.get(key)
        if found is None:
            raw = self.store.tag_bytes(oid)
            found = self.check_bytes(raw) if raw is not None else unsigned()
            _CHECKED.put(key, found)
        return dict(found)

    def check_bytes(self, raw: bytes) -> dict[str, Any]:
        payload, signature = split_signature(raw)
        if not signature:
            out = unsigned()
            if self.required:
                out.update(verified=False, reason="not signed, and the policy requires "
                           "signed publishes")
            return out
        kind = signature_format(signature)
        out = {"signed": True, "format": kind, "signer": None, "key": None,
               "verified": None, "reason": None}
        if kind == "ssh":
            out.update(self._ssh(payload, signature))
        elif kind == "openpgp":
            out.update(self._gpg(payload, signature))
        else:
            out["reason"] = f"a {kind} signature, which agentstage does not check"
        return out

    def _ssh(self, payload: bytes, signature: bytes) -> dict[str, Any]:
        key = ssh_key_id(signature)
        out: dict[str, Any] = {"key": key, "signer": key}
        if key is None:
            return {**out, "verified": False, "reason": "the SSH signature cannot be read"}
        if self.allowed is None:
            return {**out, "reason": "no allowed signers to check it against (git config "
                    "gpg.ssh.allowedSignersFile, or the policy's signing.allowed_signers)"}
        when = _verify_time(payload)
        with tempfile.TemporaryDirectory(prefix="agentstage-verify-") as tmp:
            allowed, sig = os.path.join(tmp, "allowed_signers"), os.path.join(tmp, "sig")
            Path(allowed).write_bytes(self.allowed)
            Path(sig).write_bytes(signature)
            found = _run([self.ssh, "-Y", "find-principals", "-f", allowed, "-s", sig, *when],
                         None)
            if found.returncode == 127:
                return {**out, "reason": f"{self.ssh} cannot run: {_last_line(found.stderr)}"}
            principals = [p for p in found.stdout.decode(errors="replace").splitlines()
                          if p.strip()] if found.returncode == 0 else []
            if not principals:
                return {**out, "verified": False,
                        "reason": f"signed by {key}, which is not in {self.source}"}
            said = ""
            for principal in principals:
                done = _run([self.ssh, "-Y", "verify", "-n", "git", "-f", allowed, "-I",
                             principal, "-s", sig, *when], payload)
                if done.returncode == 0:
                    return {**out, "signer": principal, "verified": True}
                said = said or _last_line(done.stderr)
        return {**out, "signer": principals[0], "verified": False,
                "reason": "the signature does not verify: the tag was changed after it was "
                          f"signed, or the key may not sign git tags ({said or 'refused'})"}

    def _gpg(self, payload: bytes, signature: bytes) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="agentstage-verify-") as tmp:
            sig = os.path.join(tmp, "sig.asc")
            Path(sig).write_bytes(signature)
            done = _run([self.gpg, "--batch", "--keyid-format=long", "--status-fd=1",
                         "--verify", sig, "-"], payload)
        if done.returncode == 127:
            return {"reason": f"{self.gpg} cannot run, so OpenPGP signatures are not checked"}
        status: dict[str, str] = {}
        for line in done.stdout.decode(errors="replace").splitlines():
            if line.startswith("[GNUPG:] "):
                word, _, rest = line[9:].partition(" ")
                status.setdefault(word, rest)
        for word, verified in (("GOODSIG", True), ("BADSIG", False), ("EXPKEYSIG", False),
                               ("REVKEYSIG", False), ("EXPSIG", False)):
            if word in status:
                keyid, _, uid = status[word].partition(" ")
                reason = None if verified else {
                    "BADSIG": "the signature does not verify: the tag was changed after it "
                              "was signed", "EXPKEYSIG": "the key has expired",
                    "REVKEYSIG": "the key was revoked",
                    "EXPSIG": "the signature has expired"}[word]
                return {"key": keyid, "signer": uid or keyid,
                        "verified": verified and done.returncode == 0, "reason": reason}
        missing = status.get("ERRSIG", "").partition(" ")[0] or None
        return {"key": missing, "signer": missing,
                "reason": f"no public key{' ' + missing if missing else ''} in the gpg "
                          "keyring to check it"}


def allowed_signers_text(lines: Sequence[str]) -> bytes:
    return "".join(line.strip() + "\n" for line in lines).encode()


def push_refusal(store: Store, required: bool, allowed: Sequence[str], oid: str) \
        -> str | None:
    """Why the server's policy refuses publish tag object *oid*'s signature (None: it does
    not): unsigned when signatures are required, or a signature that does not verify
    against the policy's allowed signers, or a signer not among them."""
    if not required and not allowed:
        return None
    raw = store.tag_bytes(oid)
    if raw is None:
        return None  # not a tag: the other rules say so
    from agentstage.policy import META_REF

    checker = Checker(store, allowed_signers_text(allowed) if allowed else None,
                      f"the policy's allowed signers ({META_REF})", required)
    key = (oid, checker._digest)
    result = _CHECKED.get(key)
    if result is None:
        result = checker.check_bytes(raw)
        _CHECKED.put(key, result)
    if not result["signed"]:
        if not required:
            return None
        return ("not signed: the server's policy requires signed publishes; publish with "
                "--sign (or git config agentstage.sign true) and a key among the policy's "
                "allowed signers")
    if result["format"] != "ssh":  # whatever this server's gpg keyring would say
        return (f"its {result['format'] or 'unknown'} signature cannot be checked: the "
                "policy's allowed signers are SSH keys (sign with git config gpg.format ssh)")
    if result["verified"] is True:
        return None
    return f"its signature is refused: {result['reason']}"
