"""Pushing a PRD's S3 repository to a push remote: real dulwich client against a real smart-HTTP git
server (dulwich's WSGI app over a bare repository in tmp_path, behind HTTP Basic auth, on loopback);
the S3 side is moto in-process.  No mocks of dulwich; stock git checks what arrived."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import socket
import subprocess
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from dulwich.errors import HookError
from dulwich.hooks import Hook
from dulwich.objects import Commit, ObjectID, Tag
from dulwich.protocol import pkt_line
from dulwich.refs import Ref
from dulwich.repo import Repo
from dulwich.server import BackendRepo, DictBackend
from dulwich.web import make_wsgi_chain
from moto import mock_aws

from prdtool.versions import gitstore
from prdtool.versions.gitstore import MAIN
from prdtool.versions.remote import PushError, PushResult, Remote, push, validate_url
from tests.wsgiserve import serve

BUCKET = "remote-unit-bucket"
PRD = "01jd00000000000000000remote"
USER, PASSWORD = "bot", "s3cret-token"
READ_ONLY = "read-only-token"  # a valid token without write access: the server answers 403
ALICE = "Alice Example <alice@example.com>"
T0 = 1_795_564_800
TAG_NAMES = ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")


# ----------------------------------------------------------------------------- offline, except loopback
@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, loopback_only: None) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def repo(s3: Any) -> Iterator[gitstore.S3Repo]:
    with gitstore.open_repo(s3, BUCKET, PRD) as opened:
        yield opened


def commit_version(repo: gitstore.S3Repo, n: int, parent: bytes | None) -> bytes:
    files = {"prd.md": f"# Checkout redesign v{n}\n".encode(), "CHANGELOG.md": f"- v{n}\n".encode()}
    return gitstore.commit_files(repo, files, message=f"Version {n}", author=ALICE, when=T0 + 60 * n,
                                 parent_expected=parent, tag=TAG_NAMES[n - 1])


def commit_versions(repo: gitstore.S3Repo, count: int, parent: bytes | None = None, start: int = 1) -> list[bytes]:
    commits = []
    for n in range(start, start + count):
        parent = commit_version(repo, n, parent)
        commits.append(parent)
    return commits


def local_refs(repo: gitstore.S3Repo) -> dict[str, str]:
    repo.refs.refresh()
    refs = {name.decode(): sha.decode() for name, sha in repo.refs.as_dict(Ref(b"refs/tags")).items()}
    refs = {f"refs/tags/{name}": sha for name, sha in refs.items()}
    main = repo.refs.read_ref(MAIN)
    assert main is not None
    return {"refs/heads/main": main.decode(), **refs}


# ----------------------------------------------------------------------------- the remote
@dataclass
class GitRemote:
    """A bare repository served over smart HTTP (push enabled) behind Basic auth."""

    bare: Repo
    path: Path
    base: str  # http://127.0.0.1:<port>
    gate: Gate

    @property
    def url(self) -> str:
        return f"{self.base}/prd.git"

    def refs(self) -> dict[str, str]:
        return {name.decode(): sha.decode() for name, sha in self.bare.get_refs().items()
                if name.startswith((b"refs/heads/", b"refs/tags/"))}

    def posts(self) -> int:
        return sum(1 for method, path in self.gate.requests if method == "POST" and path.endswith("git-receive-pack"))


class Gate:
    """WSGI middleware in front of the git app: HTTP Basic auth, a request log and injected failures.

    401 (``WWW-Authenticate: Basic``) unless ``bot:s3cret-token``, 403 for the read-only token; the
    refusal echoes the credentials it got, as careless servers do, to prove they never reach a message.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []  # (method, path) of authorised requests
        self.status: str | None = None  # answer every request with this status instead
        self.fatal: bytes | None = None  # answer receive-pack with this fatal side-band message

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        given = environ.get("HTTP_AUTHORIZATION", "")
        if given != "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
            try:
                echoed = base64.b64decode(given.removeprefix("Basic ")).decode()
            except ValueError:
                echoed = given
            forbidden = echoed.endswith(f":{READ_ONLY}")
            start_response("403 Forbidden" if forbidden else "401 Unauthorized",
                           [("Content-Type", "text/plain"), ("WWW-Authenticate", f'Basic realm="git {echoed}"')])
            return [f"bad credentials {echoed} ({given})\n".encode()]
        self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        if self.status is not None:
            start_response(self.status, [("Content-Type", "text/plain")])
            return [f"{self.status}, says {PASSWORD}\n".encode()]
        if self.fatal is not None and environ["PATH_INFO"].endswith("/git-receive-pack"):
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response("200 OK", [("Content-Type", "application/x-git-receive-pack-result")])
            return [pkt_line(b"\x03" + self.fatal), b"0000"]
        return self.app(environ, start_response)  # type: ignore[no-any-return]


@pytest.fixture
def remote(tmp_path: Path, loopback_only: None) -> Iterator[GitRemote]:
    path = tmp_path / "remote.git"
    bare = Repo.init_bare(str(path), mkdir=True)
    repos: dict[str, BackendRepo] = {"/prd.git": bare}
    gate = Gate(make_wsgi_chain(DictBackend(repos)))  # receive-pack is on by default
    with serve(gate) as base:
        yield GitRemote(bare, path, base, gate)
    bare.close()


def credentials(url: str, password: str = PASSWORD, username: str | None = USER) -> Remote:
    return Remote(url=url, username=username, password=password)


def git(*args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C"}
    done = subprocess.run(["git", *args], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def assert_no_secret(error: PushError, *secrets: str) -> None:
    texts = [str(error), repr(error), error.message, "".join(traceback.format_exception(error))]
    for secret in secrets:
        encoded = base64.b64encode(f"{USER}:{secret}".encode()).decode()
        for text in texts:
            assert secret not in text and encoded not in text, text


# ----------------------------------------------------------------------------- pushing
@needs_git
def test_first_push_sends_everything_then_only_what_is_new_then_nothing(repo: gitstore.S3Repo,
                                                                        remote: GitRemote) -> None:
    commits = commit_versions(repo, 3)
    first = push(repo, credentials(remote.url))
    assert first == PushResult(pushed=local_refs(repo), unchanged=0)
    assert sorted(first.pushed) == ["refs/heads/main", "refs/tags/v1.0.0", "refs/tags/v1.1.0", "refs/tags/v1.2.0"]
    assert remote.refs() == local_refs(repo)
    assert remote.posts() == 1
    log = git("--git-dir", str(remote.path), "log", "--format=%H %s", "main").splitlines()
    assert log == [f"{sha.decode()} Version {n}" for n, sha in reversed(list(enumerate(commits, start=1)))]
    assert git("--git-dir", str(remote.path), "rev-parse", "v1.1.0^{commit}").strip() == commits[1].decode()
    git("--git-dir", str(remote.path), "fsck", "--strict")

    [fourth] = commit_versions(repo, 1, commits[-1], start=4)
    second = push(repo, credentials(remote.url))
    tag_sha = local_refs(repo)["refs/tags/v1.3.0"]
    assert second == PushResult(pushed={"refs/heads/main": fourth.decode(), "refs/tags/v1.3.0": tag_sha},
                                unchanged=3)
    assert remote.refs() == local_refs(repo) and remote.posts() == 2
    assert git("--git-dir", str(remote.path), "log", "--oneline", "main").count("\n") == 4
    git("--git-dir", str(remote.path), "fsck", "--strict")

    third = push(repo, credentials(remote.url))
    assert third == PushResult(pushed={}, unchanged=5)
    assert remote.posts() == 2  # ref advertisement only: no receive-pack request, no pack


def test_a_repository_without_versions_pushes_nothing_and_does_not_call(repo: gitstore.S3Repo,
                                                                        remote: GitRemote) -> None:
    assert push(repo, credentials(remote.url)) == PushResult(pushed={}, unchanged=0)
    assert remote.gate.requests == [] and remote.refs() == {}


def test_wrong_password_is_auth_and_never_shows_the_password(repo: gitstore.S3Repo, remote: GitRemote,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    commit_versions(repo, 1)
    wrong = "gh" + "p_Leaky/Token:%40 é"  # characters that get URL- and base64-encoded on the way
    with pytest.raises(PushError) as refused:
        push(repo, credentials(remote.url, password=wrong))
    assert (refused.value.kind, refused.value.retryable) == ("auth", False)
    assert refused.value.__cause__ is None and refused.value.__context__ is None  # nothing chained
    assert_no_secret(refused.value, wrong, PASSWORD)
    assert wrong not in caplog.text and base64.b64encode(f"{USER}:{wrong}".encode()).decode() not in caplog.text

    with pytest.raises(PushError) as anonymous:
        push(repo, Remote(remote.url, None, None))
    assert anonymous.value.kind == "auth" and "none are configured" in anonymous.value.message

    with pytest.raises(PushError) as forbidden:  # a token that may read but not write: 403
        push(repo, credentials(remote.url, password=READ_ONLY))
    assert (forbidden.value.kind, forbidden.value.retryable) == ("auth", False)
    assert_no_secret(forbidden.value, READ_ONLY)
    assert remote.refs() == {}
    assert "s3cret" not in repr(credentials(remote.url)) and "password" not in repr(credentials(remote.url))


def test_a_remote_main_the_prd_does_not_have_is_rejected_and_left_alone(repo: gitstore.S3Repo,
                                                                          remote: GitRemote) -> None:
    commits = commit_versions(repo, 2)
    push(repo, credentials(remote.url))
    # Someone else commits on the remote's main.
    theirs = Commit()
    parent = remote.bare[ObjectID(commits[-1])]
    assert isinstance(parent, Commit)
    theirs.tree = parent.tree
    theirs.parents = [parent.id]
    theirs.author = theirs.committer = b"Mallory <mallory@example.com>"
    theirs.author_time = theirs.commit_time = T0 + 1000
    theirs.author_timezone = theirs.commit_timezone = 0
    theirs.message = b"Edited on GitHub\n"
    remote.bare.object_store.add_object(theirs)
    remote.bare.refs[Ref(b"refs/heads/main")] = theirs.id
    before, posts = remote.refs(), remote.posts()

    commit_versions(repo, 1, commits[-1], start=3)
    with pytest.raises(PushError) as refused:
        push(repo, credentials(remote.url))
    assert (refused.value.kind, refused.value.retryable) == ("rejected", False)
    assert "commits on main that this PRD does not have" in refused.value.message
    assert remote.refs() == before and remote.refs()["refs/heads/main"] == theirs.id.decode()
    assert remote.posts() == posts  # decided before any pack was sent: not even the new tag went


def test_a_remote_tag_on_another_commit_is_never_overwritten(repo: gitstore.S3Repo, remote: GitRemote) -> None:
    commits = commit_versions(repo, 1)
    push(repo, credentials(remote.url))
    remote.bare.refs[Ref(b"refs/tags/v1.1.0")] = ObjectID(commits[0])  # a lightweight tag someone made there
    commit_versions(repo, 1, commits[0], start=2)
    with pytest.raises(PushError) as refused:
        push(repo, credentials(remote.url))
    assert refused.value.kind == "rejected" and "v1.1.0" in refused.value.message
    assert remote.refs()["refs/tags/v1.1.0"] == commits[0].decode()
    assert remote.refs()["refs/heads/main"] == commits[0].decode()


class RefuseTags(Hook):
    """A server-side ``update`` hook that protects tags (and echoes a secret, as a careless hook might)."""

    def execute(self, ref: bytes, old: bytes, new: bytes) -> tuple[bytes, bytes]:  # type: ignore[override]
        if ref.startswith(b"refs/tags/"):
            split = f"{PASSWORD[:4]}\x1b[0m{PASSWORD[4:]}"  # whole again once the colour code is dropped
            raise HookError(f"tags are protected here (auth was {USER}:{PASSWORD}, {split})\x1b[31m")
        return b"", b""


def test_refs_refused_by_the_remote_are_reported_without_secrets(repo: gitstore.S3Repo, remote: GitRemote) -> None:
    commits = commit_versions(repo, 1)
    remote.bare.hooks["update"] = RefuseTags()
    with pytest.raises(PushError) as refused:
        push(repo, credentials(remote.url))
    error = refused.value
    assert (error.kind, error.retryable) == ("rejected", False)
    assert "refs/tags/v1.0.0" in error.message and "tags are protected here" in error.message
    assert "1 other ref(s) were pushed" in error.message and "\x1b" not in error.message and "[31m" not in error.message
    assert_no_secret(error, PASSWORD)
    assert remote.refs() == {"refs/heads/main": commits[0].decode()}  # not atomic: main went through

    del remote.bare.hooks["update"]
    retried = push(repo, credentials(remote.url))  # a retry sends only what is missing
    assert retried == PushResult(pushed={"refs/tags/v1.0.0": local_refs(repo)["refs/tags/v1.0.0"]}, unchanged=1)
    assert isinstance(remote.bare[retried.pushed["refs/tags/v1.0.0"].encode()], Tag)


def test_an_unknown_repository_is_not_found(repo: gitstore.S3Repo, remote: GitRemote) -> None:
    commit_versions(repo, 1)
    with pytest.raises(PushError) as missing:
        push(repo, credentials(f"{remote.base}/other.git"))
    assert (missing.value.kind, missing.value.retryable) == ("not_found", False)


@pytest.mark.parametrize("status", ["503 Service Unavailable", "502 Bad Gateway", "429 Too Many Requests"])
def test_server_errors_and_throttling_are_retryable(repo: gitstore.S3Repo, remote: GitRemote, status: str) -> None:
    commit_versions(repo, 1)
    remote.gate.status = status
    with pytest.raises(PushError) as unavailable:
        push(repo, credentials(remote.url))
    assert (unavailable.value.kind, unavailable.value.retryable) == ("network", True)
    assert status[:3] in unavailable.value.message
    assert_no_secret(unavailable.value, PASSWORD)


def test_a_fatal_error_while_receiving_is_rejected_with_the_reason(repo: gitstore.S3Repo, remote: GitRemote) -> None:
    commit_versions(repo, 1)
    remote.gate.fatal = f"fatal: pack exceeds maximum allowed size (token {PASSWORD})\n".encode()
    with pytest.raises(PushError) as failed:
        push(repo, credentials(remote.url))
    assert (failed.value.kind, failed.value.retryable) == ("rejected", False)
    assert "pack exceeds maximum allowed size" in failed.value.message
    assert_no_secret(failed.value, PASSWORD)
    assert remote.refs() == {}


def test_nothing_listening_is_a_retryable_network_error(repo: gitstore.S3Repo, loopback_only: None) -> None:
    commit_versions(repo, 1)
    with socket.socket() as probe:  # a port that was free a moment ago and is closed now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PushError) as down:
        push(repo, credentials(f"http://127.0.0.1:{port}/prd.git"))
    assert (down.value.kind, down.value.retryable) == ("network", True)
    assert_no_secret(down.value, PASSWORD)


def test_a_remote_that_never_answers_times_out(repo: gitstore.S3Repo, loopback_only: None) -> None:
    commit_versions(repo, 1)
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/prd.git"
        with pytest.raises(PushError) as slow:
            push(repo, credentials(url), timeout=0.3)
    assert (slow.value.kind, slow.value.retryable) == ("network", True)


# ----------------------------------------------------------------------------- URLs
@pytest.mark.parametrize("url", [
    "https://bot:s3cret-token@github.com/acme/prd.git",
    "https://s3cret-token@github.com/acme/prd.git",
    "ftp://github.com/acme/prd.git",
    "ssh://git@github.com/acme/prd.git",
    "git@github.com:acme/prd.git",
    "github.com/acme/prd.git",
    "https:///acme/prd.git",
    "https://github.com",
    "https://github.com/",
    "https://github.com/acme/prd.git?token=s3cret-token",
    "https://github.com/acme/prd.git#main",
    "https://github.com/acme/../prd.git",
    "https://github.com:99999/acme/prd.git",
    "https://git hub.com/acme/prd.git",
    "https://github.com/acme/prd\n.git",
    "https://github.com/acme/\x00prd.git",
    "https://github.com/" + "a" * 2000 + ".git",
    "",
])
def test_invalid_urls_are_refused_without_repeating_them(url: str) -> None:
    with pytest.raises(PushError) as refused:
        validate_url(url)
    assert (refused.value.kind, refused.value.retryable) == ("invalid", False)
    assert "s3cret" not in str(refused.value) and "github" not in str(refused.value)


def test_push_refuses_an_invalid_url_before_any_request(repo: gitstore.S3Repo) -> None:
    commit_versions(repo, 1)
    with pytest.raises(PushError) as refused:
        push(repo, credentials("https://bot:s3cret-token@127.0.0.1:1/prd.git"))
    assert refused.value.kind == "invalid" and "s3cret" not in repr(refused.value)


@pytest.mark.parametrize(("url", "normalised"), [
    (" HTTPS://GitHub.COM/Acme/PRD.git/ ", "https://github.com/Acme/PRD.git"),
    ("http://127.0.0.1:8080/prd.git", "http://127.0.0.1:8080/prd.git"),
    ("https://[::1]:8443/team/prd", "https://[::1]:8443/team/prd"),
    ("https://bücher.example/prd räume.git".replace(" ", ""), "https://xn--bcher-kva.example/prdr%C3%A4ume.git"),
    ("https://gitlab.example.com/group/sub%20group/prd.git", "https://gitlab.example.com/group/sub%20group/prd.git"),
])
def test_valid_urls_are_normalised(url: str, normalised: str) -> None:
    assert validate_url(url) == normalised
