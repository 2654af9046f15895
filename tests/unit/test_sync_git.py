"""``clipper sync``'s git source (reconciler/gitsource.py) against real repositories made with ``git init``
in a temporary directory: fetching branches, tags, commit ids and force-pushes, private work trees,
and the security defaults (transports, option injection, hooks, symbolic links, credentials,
signatures)."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from clipper.net import free_port
from reconciler.gitsource import (
    Credentials,
    GitSource,
    GitSourceError,
    SignatureError,
    validate_path,
    validate_ref,
    validate_url,
)

GIT = ["-c", "user.email=t@example", "-c", "user.name=t", "-c", "commit.gpgsign=false"]


def git(where: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", "-C", str(where), *GIT, *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()  # fmt: skip


def commit(
    work: Path, files: dict[str, str], message: str, *extra: str, env: dict[str, str] | None = None
) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git(work, "add", "-A", env=env)
    git(work, "commit", "-q", *extra, "-m", message, env=env)
    return git(work, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path):
    """A bare repository (the remote) and a clone to commit and push from."""
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    git(work, "checkout", "-q", "-b", "main")
    return bare, work


def source(tmp_path: Path, url: str, ref: str = "main", path: str = ".", **kw) -> GitSource:
    return GitSource(url, ref, path, tmp_path / "state", **kw)


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh",
        "fd::3",
        "-uupload-pack=touch /tmp/pwned",
        "--upload-pack=x",
        "ftp://example.com/r.git",
        "https://user:secret@example.com/r.git",
        "https://token@example.com/r.git",
        "ssh://-oProxyCommand=touch%20x/r.git",
        "https://example.com/r.git\n",
        "",
    ],
)
def test_dangerous_or_credential_bearing_urls_are_refused(url):
    with pytest.raises(GitSourceError):
        validate_url(url)


def test_allowed_urls(tmp_path):
    assert validate_url("https://example.com/org/r.git") == "https://example.com/org/r.git"
    assert validate_url("ssh://git@example.com/org/r.git") == "ssh://git@example.com/org/r.git"
    assert validate_url("git@example.com:org/r.git") == "git@example.com:org/r.git"
    assert validate_url(f"file://{tmp_path}") == f"file://{tmp_path}"
    assert validate_url(str(tmp_path)) == str(tmp_path.resolve())


@pytest.mark.parametrize("ref", ["-b", "--upload-pack=x", "a..b", "a b", "a:b", "refs/heads/", "x@{1}", "~1"])
def test_refs_that_are_options_or_not_refs_are_refused(ref):
    with pytest.raises(GitSourceError) as e:
        validate_ref(ref)
    if ref.startswith("-"):
        assert "option" in str(e.value)


@pytest.mark.parametrize("ref", ["main", "HEAD", "release/1.2", "v1.0.0", "refs/heads/main", "a" * 40])
def test_valid_refs(ref):
    assert validate_ref(ref) == ref


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "/etc", "a/../.."])
def test_a_path_leaving_the_repository_is_refused(path):
    with pytest.raises(GitSourceError, match="relative directory inside the repository"):
        validate_path(path)


def test_fetch_branch_tag_commit_force_push_and_private_work_trees(origin, tmp_path):
    bare, work = origin
    c1 = commit(work, {"deploy/a.yaml": "one\n"}, "one")
    git(work, "tag", "v1")
    c2 = commit(work, {"deploy/a.yaml": "two\n"}, "two")
    git(work, "push", "-q", "origin", "main", "v1")

    s = source(tmp_path, f"file://{bare}", "main", "deploy")
    assert s.fetch() == c2
    d2 = s.checkout(c2)
    assert (d2 / "a.yaml").read_text() == "two\n"
    assert d2.is_relative_to(tmp_path / "state" / "trees")
    for p in (tmp_path / "state", tmp_path / "state" / "trees"):
        assert p.stat().st_mode & 0o777 == 0o700

    # the last good revision's tree stays as it was while another is checked out
    d1 = s.checkout(c1)
    assert (d1 / "a.yaml").read_text() == "one\n" and (d2 / "a.yaml").read_text() == "two\n"
    s.keep_only({c2})
    assert not d1.exists() and d2.exists()

    # a tag and a commit id (a local path as the URL)
    assert source(tmp_path, str(bare), "v1").fetch() == c1
    assert source(tmp_path, str(bare), c1).fetch() == c1
    assert source(tmp_path, str(bare), c1[:10]).fetch() == c1

    # force-push: main goes back to c1 and gets another commit on top
    git(work, "reset", "-q", "--hard", c1)
    c3 = commit(work, {"deploy/a.yaml": "three\n"}, "three")
    git(work, "push", "-q", "--force", "origin", "main")
    assert s.fetch() == c3
    assert (s.checkout(c3) / "a.yaml").read_text() == "three\n"

    with pytest.raises(GitSourceError, match="cannot fetch 'nope'"):
        source(tmp_path, str(bare), "nope").fetch()
    with pytest.raises(GitSourceError, match="not in"):
        source(tmp_path, str(bare), "f" * 40).fetch()
    missing = source(tmp_path, str(bare), "main", "elsewhere")
    with pytest.raises(GitSourceError, match="does not exist in the repository"):
        missing.checkout(missing.fetch())


def test_ext_transport_is_refused_by_git_itself(tmp_path):
    """Even past the URL check, git is only allowed file, git, http, https and ssh."""
    marker = tmp_path / "pwned"
    s = source(tmp_path, str(tmp_path))
    s.url = f"ext::sh -c touch% {marker}"
    with pytest.raises(GitSourceError):
        s.fetch()
    assert not marker.exists()


def test_no_hook_runs_not_even_a_global_hooks_path(origin, tmp_path):
    bare, work = origin
    c1 = commit(work, {"a.yaml": "x\n"}, "one")
    git(work, "push", "-q", "origin", "main")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "hook-ran"
    for name in ("post-checkout", "reference-transaction", "post-index-change"):
        (hooks / name).write_text(f"#!/bin/sh\necho {name} >> {marker}\n")
        (hooks / name).chmod(0o755)
    config = tmp_path / "gitconfig"
    config.write_text(f"[core]\n\thooksPath = {hooks}\n")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(config)}
    # the hooks are live: a plain clone runs them
    subprocess.run(["git", "clone", "-q", str(bare), str(tmp_path / "plain")], env=env, check=True)
    assert marker.exists()
    marker.unlink()

    old = os.environ.get("GIT_CONFIG_GLOBAL")
    os.environ["GIT_CONFIG_GLOBAL"] = str(config)
    try:
        s = source(tmp_path, str(bare))
        s.checkout(s.fetch())
        assert s.fetch() == c1
    finally:
        if old is None:
            del os.environ["GIT_CONFIG_GLOBAL"]
        else:
            os.environ["GIT_CONFIG_GLOBAL"] = old
    assert not marker.exists()


def test_symbolic_links_cannot_lead_outside_the_work_tree(origin, tmp_path):
    bare, work = origin
    secret = tmp_path / "secret.yaml"
    secret.write_text("SECRET\n")
    (work / "deploy").mkdir()
    (work / "deploy" / "all.yaml").symlink_to(secret)
    (work / "outside").symlink_to(tmp_path)
    c1 = commit(work, {}, "links")
    git(work, "push", "-q", "origin", "main")

    s = source(tmp_path, str(bare), "main", "deploy")
    where = s.checkout(s.fetch())
    link = where / "all.yaml"
    assert not link.is_symlink() and link.read_text() != "SECRET\n"
    # the link to a directory is a plain file: it cannot be the manifests' directory's way out
    out = source(tmp_path, str(bare), "main", "outside/secret.yaml")
    with pytest.raises(GitSourceError):
        out.checkout(c1)
    # the reconciler's own git calls see a clean work tree (its revision is not "-dirty")
    from reconciler.gitinfo import git_commit

    assert git_commit([link]) == c1[:12]


class _AskForPassword(BaseHTTPRequestHandler):
    """A git server that asks for a password: answers 401 to everything, noting the credentials it
    got and the command line of every process on the machine while git waits for its answers."""

    seen: list[str] = []
    command_lines: list[str] = []

    def do_GET(self):  # noqa: N802
        auth = self.headers.get("Authorization")
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                type(self).command_lines.append(cmdline.read_bytes().decode(errors="replace"))
            except OSError:
                pass
        if auth:
            type(self).seen.append(base64.b64decode(auth.split()[1]).decode())
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="r"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("given", ["file", "env"])
def test_the_token_never_appears_in_messages_or_command_lines(tmp_path, monkeypatch, given):
    token = f"tok-{given}-" + "s3cr3t" * 4
    if given == "file":
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        creds = Credentials(token_file=token_file, username="robot")
    else:
        monkeypatch.setenv("DEPLOY_TOKEN", token)
        creds = Credentials(token_env="DEPLOY_TOKEN", username="robot")

    # nothing listens on the port: the error names the failure, never the token
    port = free_port()
    s = GitSource(
        f"https://127.0.0.1:{port}/org/repo.git", "main", ".", tmp_path / "state", creds, timeout_s=60
    )
    with pytest.raises(GitSourceError) as e:
        s.fetch()
    assert token not in str(e.value) and "cannot fetch" in str(e.value)
    assert token not in (tmp_path / "state" / "askpass.sh").read_text()

    # a server asking for a password gets the token through the askpass helper, and no process
    # command line (ps) holds it meanwhile. git talks plain http to it: the URL check that refuses
    # tokens over http is passed by naming it https first.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AskForPassword)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s = GitSource(f"https://127.0.0.1:{server.server_port}/r.git", "main", ".", tmp_path / "s2", creds,
                      timeout_s=60)  # fmt: skip
        s.url = f"http://127.0.0.1:{server.server_port}/r.git"
        with pytest.raises(GitSourceError) as e:
            s.fetch()
    finally:
        server.shutdown()
    assert f"robot:{token}" in _AskForPassword.seen
    assert _AskForPassword.command_lines and not [c for c in _AskForPassword.command_lines if token in c]
    assert token not in str(e.value)


def test_ssh_takes_the_key_by_path_and_never_prompts(tmp_path):
    key, hosts = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    hosts.write_text("")
    s = GitSource(
        "git@127.0.0.1:org/r.git", "main", ".", tmp_path / "s", Credentials(ssh_key=key, known_hosts=hosts)
    )
    command = s._env()["GIT_SSH_COMMAND"]
    assert f"-i {key}" in command and "BatchMode=yes" in command and "IdentitiesOnly=yes" in command
    assert f"UserKnownHostsFile={hosts}" in command and "StrictHostKeyChecking=yes" in command
    assert "secret" not in command
    with pytest.raises(GitSourceError, match="ssh key .* does not exist"):
        GitSource("git@h:r.git", "main", ".", tmp_path / "s", Credentials(ssh_key=tmp_path / "missing"))


def test_a_token_is_never_sent_over_plain_http(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("t\n")
    with pytest.raises(GitSourceError, match="https only"):
        GitSource("http://example.com/r.git", "main", ".", tmp_path / "s", Credentials(token_file=token_file))


# -- signatures ----------------------------------------------------------------------------------


def gpg_key(tmp_path: Path, name: str) -> tuple[dict[str, str], str]:
    """A throwaway key without passphrase in a GNUPGHOME of its own; returns the env and fingerprint."""
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"g{os.getpid()}{name}"  # short: gpg-agent's socket
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example>",
                    "ed25519", "sign", "never"], env=env, check=True, capture_output=True)  # fmt: skip
    out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
    return env, fpr


@pytest.fixture
def signers(tmp_path):
    made: list[dict[str, str]] = []

    def make(name: str) -> tuple[dict[str, str], str]:
        env, fpr = gpg_key(tmp_path, name)
        made.append(env)
        return env, fpr

    yield make
    import shutil

    for env in made:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True)
        shutil.rmtree(env["GNUPGHOME"], ignore_errors=True)


def test_signature_verification_accepts_signed_and_refuses_unsigned_or_unknown(origin, tmp_path, signers):
    bare, work = origin
    trusted_env, trusted = signers("trusted")
    other_env, other = signers("other")
    keyring = tmp_path / "keys" / "trusted.asc"
    keyring.parent.mkdir()
    keyring.write_text(subprocess.run(["gpg", "--armor", "--export", trusted], env=trusted_env, check=True,
                                      capture_output=True, text=True).stdout)  # fmt: skip

    signed = commit(work, {"a.yaml": "1\n"}, "signed", "-S", f"--gpg-sign={trusted}", env=trusted_env)
    unsigned = commit(work, {"a.yaml": "2\n"}, "unsigned")
    by_other = commit(work, {"a.yaml": "3\n"}, "other", f"--gpg-sign={other}", env=other_env)
    git(work, "push", "-q", "origin", "main")
    s = source(tmp_path, str(bare))
    assert s.fetch() == by_other

    assert s.verify(signed, [keyring]) == trusted
    assert s.verify(signed, [keyring.parent]) == trusted  # a directory of keys
    with pytest.raises(SignatureError, match=f"revision {unsigned[:12]} is not signed"):
        s.verify(unsigned, [keyring])
    with pytest.raises(SignatureError, match="unknown key"):
        s.verify(by_other, [keyring])
    garbage = tmp_path / "garbage.asc"
    garbage.write_text("not a key\n")
    with pytest.raises(SignatureError, match="no OpenPGP public key"):
        s.verify(signed, [garbage])
    # nothing of the check is left behind (a private GNUPGHOME per check)
    assert not list((tmp_path / "state").glob("gnupg.*"))
