"""Where ``clipper sync`` gets its manifests: a git repository, fetched with the system ``git`` into a
private state directory, each revision checked out into a work tree of its own.

Layout of the state directory (mode 0700, one per repository, ref and path):

* ``repo.git``: a bare repository; every fetch names the URL and the ref explicitly (no remote is
  configured) and stores the tip at ``refs/clipper-sync/target``;
* ``trees/<sha12>``: a detached work tree per revision in use (the one being synced and the last
  good one), so the last good revision's files stay as they were while a newer one is tried;
* ``no-hooks/``: an empty directory that ``core.hooksPath`` points at.

Security, by default:

* transports are limited to ``file:git:http:https:ssh`` (``GIT_ALLOW_PROTOCOL``): ``ext::`` (runs a
  command), ``fd::`` and any other ``<transport>::`` address are refused before git runs, and git
  itself refuses them (submodules included); a URL or ref starting with ``-`` is refused (no option
  injection), and URLs and refs are passed after ``--`` / ``--end-of-options``;
* credentials never appear in arguments, process listings or messages: a URL with a user name or
  password in it is refused; an https token is read by a ``GIT_ASKPASS`` helper (a script in the state
  directory that holds no secret) from a file (``--token-file``) or an environment variable
  (``--token-env``), and never over plain http; an ssh key is given by path in ``GIT_SSH_COMMAND``.
  The user's credential helpers are not asked, so a token is never stored in them. Any message that
  came from git is stripped of the token before it is shown;
* no repository hook runs (``core.hooksPath`` is an empty directory), ``core.fsmonitor`` is off, no
  submodule is fetched, and symbolic links are checked out as plain files (``core.symlinks=false``),
  so nothing in the repository can point the manifests' directory, or a file in it, outside the tree;
* the manifests' directory (``--path``) is relative, has no ``..`` and resolves inside the work tree;
* git never prompts (``GIT_TERMINAL_PROMPT=0``, ssh ``BatchMode``) and every call has a timeout.

Signature verification (:meth:`GitSource.verify`) imports the trusted keys into a private
``GNUPGHOME`` created for the check and runs ``git verify-commit``: an unsigned commit, a bad
signature or a signer whose key is not among the trusted ones is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from reconciler.errors import ReconcilerError

#: the transports git may use (``GIT_ALLOW_PROTOCOL``)
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
#: where the fetched tip of the ref is kept in the bare repository
TARGET_REF = "refs/clipper-sync/target"
#: default seconds for one git command (a fetch of a large repository included)
GIT_TIMEOUT_S = 120.0

_SCHEMES = {"file", "git", "http", "https", "ssh"}
# environment variables that would point git at another repository or index than ours
_GIT_LOCATION_VARS = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX", "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_ASKPASS", "SSH_ASKPASS", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_ALLOW_PROTOCOL", "GIT_PROTOCOL_FROM_USER",
)  # fmt: skip
_SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_HEX_RE = re.compile(r"[0-9a-f]{7,64}")
_SCP_RE = re.compile(r"^(?:[A-Za-z0-9._~-]+@)?[A-Za-z0-9.-]+:(?!//)")
_ASKPASS = """#!/bin/sh
# clipper sync's GIT_ASKPASS helper: answers git's prompts. It holds no secret: the token comes from
# the file named in CLIPPER_SYNC_TOKEN_FILE or from CLIPPER_SYNC_TOKEN, in git's environment.
case "$1" in
  Username*) printf '%s\\n' "$CLIPPER_SYNC_USERNAME" ;;
  *) if [ -n "$CLIPPER_SYNC_TOKEN_FILE" ]; then head -n 1 -- "$CLIPPER_SYNC_TOKEN_FILE"
     else printf '%s\\n' "$CLIPPER_SYNC_TOKEN"; fi ;;
esac
"""


class GitSourceError(ReconcilerError):
    """The repository, the ref or the path cannot be used (a message for people, without secrets)."""


class SignatureError(GitSourceError):
    """A revision is not signed by one of the trusted keys."""


@dataclass(frozen=True)
class Credentials:
    """How to authenticate; never the secret itself, only where to read it."""

    token_file: Path | None = None  # https: a file whose first line is the token
    token_env: str | None = None  # https: the name of an environment variable holding the token
    username: str = "git"  # https: the user name sent with the token
    ssh_key: Path | None = None  # ssh: a private key file
    known_hosts: Path | None = None  # ssh: the only known hosts to accept (strict checking)

    @property
    def has_token(self) -> bool:
        return self.token_file is not None or self.token_env is not None

    def token(self) -> str | None:
        """The token, to scrub it from messages (it is never passed to git on a command line)."""
        if self.token_file is not None:
            try:
                lines = self.token_file.read_text().splitlines()
            except OSError:
                return None
            return lines[0].strip() if lines else None
        if self.token_env is not None:
            return os.environ.get(self.token_env) or None
        return None


def validate_url(url: str) -> str:
    """The URL git may fetch (a local path made absolute), or a :class:`GitSourceError` saying why not."""
    if not url or url != url.strip() or any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise GitSourceError(f"repository URL {url!r} is empty or contains whitespace or control characters")
    if url.startswith("-"):
        raise GitSourceError(f"repository URL {url!r} starts with '-' (it would be read as an option)")
    if "::" in url.split("/", 1)[0] or re.match(r"^[A-Za-z0-9+.-]+::", url):
        raise GitSourceError(
            f"repository URL {url!r} uses a '<transport>::' address (such as ext::, which runs a command): "
            f"refused; allowed transports: {ALLOWED_PROTOCOLS.replace(':', ', ')}"
        )
    if "://" in url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise GitSourceError(f"repository URL scheme {scheme!r} is not allowed "
                                 f"(allowed: {ALLOWED_PROTOCOLS.replace(':', ', ')})")  # fmt: skip
        if parts.password is not None or (parts.username is not None and scheme in ("http", "https")):
            raise GitSourceError(
                "repository URL contains credentials: they would show in process listings and logs; "
                "give the URL without them and the token with --token-file or --token-env"
            )
        if scheme != "file" and not parts.hostname:
            raise GitSourceError(f"repository URL {url!r} has no host")
        if (parts.hostname or "").startswith("-") or (parts.username or "").startswith("-"):
            raise GitSourceError(f"repository URL {url!r}: a host or user starting with '-' is refused")
        return url
    if _SCP_RE.match(url) and not os.path.exists(url):  # user@host:path (ssh)
        return url
    path = Path(url).expanduser()
    if not path.exists():
        raise GitSourceError(f"repository {url!r} is neither a URL (file://, https://, ssh://, git://, "
                             "user@host:path) nor an existing local directory")  # fmt: skip
    return str(path.resolve())


def validate_ref(ref: str) -> str:
    """A branch, tag, ``HEAD`` or commit id that is safe to pass to git, or a :class:`GitSourceError`."""
    bad = (
        not ref
        or ref.startswith(("-", "/", "."))
        or ref.endswith(("/", ".", ".lock"))
        or ".." in ref
        or "@{" in ref
        or "//" in ref
        or "/." in ref
        or any(ord(c) <= 32 or ord(c) == 127 or c in "~^:?*[\\" for c in ref)
    )
    if bad:
        raise GitSourceError(
            f"ref {ref!r} is not a valid branch, tag or commit id"
            + (" (it starts with '-' and would be read as an option)" if ref.startswith("-") else "")
        )
    return ref


def validate_path(path: str) -> PurePosixPath:
    """The manifests' directory inside the repository: relative, without ``..``."""
    p = PurePosixPath(path.strip() or ".")
    if p.is_absolute() or ".." in p.parts or "\\" in path or any(ord(c) < 32 for c in path):
        raise GitSourceError(
            f"--path {path!r} must be a relative directory inside the repository, without '..'"
        )
    return p


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def default_state_dir(home: Path, url: str, ref: str, path: str) -> Path:
    """``<home>/sync/<repository name>-<hash of URL, ref and path>``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
    name = name.removesuffix(".git") or "repo"
    return home / "sync" / f"{name[:40]}-{_key(url, ref, path)}"


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700); refuse one that another user owns or others may write to."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise GitSourceError(f"state directory {path} belongs to another user (uid {st.st_uid})")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


class GitSource:
    """One repository, ref and manifests' directory, fetched into ``state_dir``."""

    def __init__(self, url: str, ref: str, path: str, state_dir: Path, creds: Credentials | None = None,
                 timeout_s: float = GIT_TIMEOUT_S) -> None:  # fmt: skip
        self.url = validate_url(url)
        self.ref = validate_ref(ref)
        self.path = validate_path(path)
        self.creds = creds or Credentials()
        self.timeout_s = timeout_s
        if shutil.which("git") is None:
            raise GitSourceError("git is not installed (apt-get install git)")
        scheme = urlsplit(self.url).scheme.lower() if "://" in self.url else ""
        if self.creds.has_token and scheme != "https":
            raise GitSourceError("a token is sent over https only (the repository URL is not https://)")
        if self.creds.token_file is not None and not self.creds.token_file.is_file():
            raise GitSourceError(f"token file {self.creds.token_file} does not exist")
        if self.creds.token_env is not None and not os.environ.get(self.creds.token_env):
            raise GitSourceError(f"environment variable {self.creds.token_env} (--token-env) is not set")
        for what, f in (("ssh key", self.creds.ssh_key), ("known hosts file", self.creds.known_hosts)):
            if f is not None and not f.is_file():
                raise GitSourceError(f"{what} {f} does not exist")
        self.state_dir = private_dir(state_dir)
        self.git_dir = self.state_dir / "repo.git"
        self.trees = self.state_dir / "trees"
        self.no_hooks = private_dir(self.state_dir / "no-hooks")

    # -- running git ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
        env.update(GIT_ALLOW_PROTOCOL=ALLOWED_PROTOCOLS, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
        c = self.creds
        if c.has_token:
            helper = self.state_dir / "askpass.sh"
            if not helper.is_file() or helper.read_text() != _ASKPASS:
                helper.write_text(_ASKPASS)
            os.chmod(helper, 0o700)
            env["GIT_ASKPASS"] = str(helper)
            env["CLIPPER_SYNC_USERNAME"] = c.username
            if c.token_file is not None:
                env["CLIPPER_SYNC_TOKEN_FILE"] = str(c.token_file.resolve())
            else:  # the environment of git and its helper only, as it is already in ours
                env["CLIPPER_SYNC_TOKEN"] = c.token() or ""
        ssh = ["ssh", "-o", "BatchMode=yes"]
        if c.ssh_key is not None:
            ssh += ["-i", str(c.ssh_key.resolve()), "-o", "IdentitiesOnly=yes"]
        if c.known_hosts is not None:
            ssh += ["-o", f"UserKnownHostsFile={c.known_hosts.resolve()}", "-o", "StrictHostKeyChecking=yes"]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        return env

    def _config(self) -> list[str]:
        """``-c`` options of every git command: no hooks, no fsmonitor, no submodules, no helpers."""
        settings = {
            "core.hooksPath": str(self.no_hooks),
            "core.fsmonitor": "false",
            "core.symlinks": "false",
            "credential.helper": "",
            "submodule.recurse": "false",
            "fetch.recurseSubmodules": "false",
            "protocol.allow": "never",  # GIT_ALLOW_PROTOCOL overrides it: only those transports
            "http.lowSpeedLimit": "1000",
            "http.lowSpeedTime": "30",
            "advice.detachedHead": "false",
        }
        return [arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")]

    def scrub(self, text: str) -> str:
        """``text`` without the token (git may echo what it was given)."""
        token = self.creds.token()
        return text.replace(token, "***") if token else text

    def git(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
        """Run git on the state directory's repository; a failure is a :class:`GitSourceError`."""
        cmd = ["git", *self._config(), f"--git-dir={self.git_dir}", *args]
        try:
            proc = subprocess.run(cmd, cwd=cwd or self.state_dir, env={**self._env(), **(env or {})},
                                  capture_output=True, text=True, timeout=self.timeout_s,
                                  stdin=subprocess.DEVNULL)  # fmt: skip
        except subprocess.TimeoutExpired as e:
            raise GitSourceError(f"git {args[0]} did not finish within {self.timeout_s:g} s") from e
        except OSError as e:
            raise GitSourceError(f"cannot run git: {e}") from e
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            detail = "; ".join(lines[-3:]) or f"exit status {proc.returncode}"
            raise GitSourceError(self.scrub(f"git {args[0]} failed: {detail}"))
        return proc.stdout

    def _init(self) -> None:
        if (self.git_dir / "HEAD").is_file():
            return
        tmp = Path(tempfile.mkdtemp(prefix="repo.", dir=self.state_dir))
        subprocess.run(["git", "init", "-q", "--bare", str(tmp)], check=True, capture_output=True,
                       env=self._env(), timeout=self.timeout_s)  # fmt: skip
        # persisted too, for the git commands the reconciler runs in the work trees (rev-parse, status)
        for k, v in (("core.hooksPath", str(self.no_hooks)), ("core.symlinks", "false"),
                     ("core.fsmonitor", "false"), ("gc.auto", "0")):  # fmt: skip
            subprocess.run(["git", f"--git-dir={tmp}", "config", k, v], check=True, capture_output=True,
                           env=self._env(), timeout=self.timeout_s)  # fmt: skip
        os.replace(tmp, self.git_dir)

    # -- fetching and checking out ---------------------------------------------------------------

    def fetch(self) -> str:
        """Fetch the ref's tip from the repository; returns its commit id (a force-push included)."""
        self._init()
        common = [
            "fetch",
            "--quiet",
            "--force",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
        ]
        try:
            self.git(*common, "--", self.url, f"+{self.ref}:{TARGET_REF}")
        except GitSourceError as first:
            if not _HEX_RE.fullmatch(self.ref):
                raise GitSourceError(f"cannot fetch {self.ref!r} from {self.url}: {first}") from None
            # a commit id the server does not let us ask for directly: fetch the branches and tags
            self.git(*common, "--prune", "--", self.url, "+refs/heads/*:refs/clipper-sync/heads/*",
                     "+refs/tags/*:refs/clipper-sync/tags/*")  # fmt: skip
            try:
                sha = self.git(
                    "rev-parse", "--verify", "--quiet", "--end-of-options", f"{self.ref}^{{commit}}"
                )
            except GitSourceError:
                raise GitSourceError(
                    f"commit {self.ref} is not in {self.url} (not on any branch or tag)"
                ) from None
            self.git("update-ref", TARGET_REF, sha.strip())
        return self.resolve(TARGET_REF)

    def resolve(self, rev: str) -> str:
        return self.git("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}").strip()

    def tree_for(self, sha: str) -> Path:
        return self.trees / sha[:12]

    def checkout(self, sha: str) -> Path:
        """A work tree of ``sha`` (created once; each revision keeps its own); returns the manifests'
        directory inside it, checked to stay inside."""
        if not _SHA_RE.fullmatch(sha):
            raise GitSourceError(f"not a commit id: {sha!r}")
        tree = self.tree_for(sha)
        if not tree.is_dir() or _head_of(tree) != sha:
            private_dir(self.trees)
            if tree.exists():
                self._remove_tree(tree)
            self.git("worktree", "prune")
            self.git("worktree", "add", "--quiet", "--detach", "--force", "--", str(tree), sha)
        return self.manifests_dir(tree)

    def manifests_dir(self, tree: Path) -> Path:
        root = tree.resolve()
        where = (root / self.path).resolve()
        if not where.is_relative_to(root):
            raise GitSourceError(f"--path {self.path} leads outside the repository")
        if not where.exists():
            raise GitSourceError(f"--path {self.path} does not exist in the repository at this revision")
        if not where.is_dir() and not where.is_file():
            raise GitSourceError(f"--path {self.path} is neither a directory nor a file")
        return where

    def _remove_tree(self, tree: Path) -> None:
        try:
            self.git("worktree", "remove", "--force", "--force", str(tree))
        except GitSourceError:
            shutil.rmtree(tree, ignore_errors=True)

    def keep_only(self, shas: set[str]) -> None:
        """Remove the work trees of every revision but ``shas``."""
        keep = {s[:12] for s in shas}
        if self.trees.is_dir():
            for tree in self.trees.iterdir():
                if tree.name not in keep:
                    self._remove_tree(tree)
        if self.git_dir.is_dir():
            self.git("worktree", "prune")

    # -- signatures ------------------------------------------------------------------------------

    def verify(self, sha: str, keys: list[Path]) -> str:
        """Check that ``sha`` carries a good signature by one of the keys in ``keys`` (files with
        OpenPGP public keys, armored or binary; a directory: every file in it); returns the signer's
        fingerprint. Anything else is a :class:`SignatureError`."""
        gpg = shutil.which("gpg")
        if gpg is None:
            raise GitSourceError("gpg is not installed (apt-get install gnupg): cannot verify signatures")
        files = [
            f for k in keys for f in (sorted(p for p in k.iterdir() if p.is_file()) if k.is_dir() else [k])
        ]
        if not files:
            raise SignatureError(f"no trusted keys in {', '.join(map(str, keys))}")
        home = Path(tempfile.mkdtemp(prefix="gnupg.", dir=self.state_dir))
        try:
            imported = subprocess.run([gpg, "--homedir", str(home), "--batch", "--no-autostart",
                                       "--status-fd", "1", "--import", "--", *map(str, files)],
                                      capture_output=True, text=True, timeout=self.timeout_s)  # fmt: skip
            if "IMPORT_OK" not in imported.stdout:
                raise SignatureError(f"no OpenPGP public key could be read from {', '.join(map(str, files))}")
            out = subprocess.run(
                ["git", *self._config(), "-c", f"gpg.program={gpg}", f"--git-dir={self.git_dir}",
                 "verify-commit", "--raw", "--end-of-options", sha],
                capture_output=True, text=True, timeout=self.timeout_s, stdin=subprocess.DEVNULL,
                env={**self._env(), "GNUPGHOME": str(home)},
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            raise GitSourceError(f"verifying the signature did not finish within {self.timeout_s:g} s") from e
        finally:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # agents started for the check
                subprocess.run(
                    ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=30
                )
            shutil.rmtree(home, ignore_errors=True)
        status = out.stderr
        fingerprint = re.search(r"^\[GNUPG:\] VALIDSIG (\S+)", status, re.M)
        if out.returncode == 0 and fingerprint:
            return fingerprint.group(1)
        short = sha[:12]
        if not status.strip():
            raise SignatureError(f"revision {short} is not signed")
        if m := re.search(r"^\[GNUPG:\] (?:NO_PUBKEY|ERRSIG) (\S+)", status, re.M):
            raise SignatureError(
                f"revision {short} is signed by an unknown key {m.group(1)} (not a trusted key)"
            )
        if re.search(r"^\[GNUPG:\] BADSIG", status, re.M):
            raise SignatureError(
                f"revision {short} has a bad signature (the commit was altered after signing)"
            )
        if m := re.search(r"^\[GNUPG:\] (EXPSIG|EXPKEYSIG|REVKEYSIG)", status, re.M):
            raise SignatureError(f"revision {short}'s signature is not valid ({m.group(1)})")
        raise SignatureError(f"revision {short}'s signature could not be verified")


def _head_of(tree: Path) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30, env={**{k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS},
                                                   "GIT_CEILING_DIRECTORIES": str(tree.parent)})  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None
