"""PRD git repositories on S3 (moto in-process, real boto3 and dulwich code paths; stock git for clone/fsck)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from dulwich.objects import Commit, Tag
from dulwich.refs import Ref
from dulwich.server import DictBackend
from dulwich.web import make_wsgi_chain
from moto import mock_aws
from moto.s3.responses import S3Response

from prdtool.versions import gitstore
from prdtool.versions.gitstore import MAIN, RefConflict
from tests.wsgiserve import serve

BUCKET = "gitstore-unit-bucket"
PRD = "01jd0000000000000000000git"
PREFIX = gitstore.repo_prefix(PRD)
ALICE, BOB, CAROL = "Alice Example <alice@example.com>", "Bob Example <bob@example.com>", "Carol <carol@example.com>"
T0 = 1_795_564_800  # 2026-11-25T00:00:00Z
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")


def serialised(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def locked(self: Any) -> Any:
        with _moto_lock:
            return method(self)

    return locked


_moto_lock = threading.Lock()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, no_network: None) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # S3 checks and stores a conditional put atomically; moto 5.2.5 does it in two unlocked steps
    # (without this, 4 racing writers here lost 1 commit in 40: two "winners" of one IfMatch).  Same
    # fix as the local stack's (scripts/localstack/moto_main.py), extended to reads: moto closes the
    # buffer of an object it replaces, so a GET racing the put that replaces refs.json can fail.
    monkeypatch.setattr(S3Response, "put_object", serialised(S3Response.put_object))
    monkeypatch.setattr(S3Response, "get_object", serialised(S3Response.get_object))
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def client() -> Any:
    """Another S3 client (inside the test's mock), as a second Lambda container would have."""
    return boto3.client("s3", region_name="us-east-1")


def version_files(n: int, label: str = "") -> dict[str, bytes]:
    return {
        "prd.md": f"# Checkout redesign {label}v{n}\n\nGoal: fewer steps — ünïcode ✓\n".encode(),
        "CHANGELOG.md": "".join(f"- {label}v{k}\n" for k in range(1, n + 1)).encode(),
        "prd.json": json.dumps({"version": n, "label": label}).encode(),
    }


def commit_version(repo: gitstore.S3Repo, n: int, parent: bytes | None, by: str = ALICE, **extra: Any) -> bytes:
    return gitstore.commit_files(repo, version_files(n), message=f"Version {n}", author=by, when=T0 + 60 * n,
                                 parent_expected=parent, **extra)


def commit_versions(repo: gitstore.S3Repo, count: int, parent: bytes | None = None, start: int = 1) -> list[bytes]:
    commits = []
    for n in range(start, start + count):
        parent = commit_version(repo, n, parent, tag=f"v{n}")
        commits.append(parent)
    return commits


def pack_keys(s3: Any) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}objects/pack/").get("Contents", [])
    return sorted(item["Key"].rsplit("/", 1)[-1] for item in listed)


def refs_document(s3: Any) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}refs.json")["Body"].read())


class S3Calls:
    """Counts the S3 operations a client makes (botocore's event hooks: every real call passes there)."""

    def __init__(self, s3: Any) -> None:
        self.counts: Counter[str] = Counter()
        s3.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1

    def take(self) -> Counter[str]:
        taken, self.counts = self.counts, Counter()
        return taken


# ----------------------------------------------------------------------------- git, the command
def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "LC_ALL": "C"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done


def export_bare(s3: Any, dest: Path) -> Path:
    """Copy the S3 repository, byte for byte, into a bare repository on disk (tests only) for ``git fsck``."""
    git("init", "--quiet", "--bare", str(dest))
    for name in pack_keys(s3):
        body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}objects/pack/{name}")["Body"].read()
        (dest / "objects" / "pack" / name).write_bytes(body)
    document = refs_document(s3)
    refs = {name: value for name, value in document["refs"].items() if name != "HEAD"}
    (dest / "packed-refs").write_text("".join(f"{sha} {name}\n" for name, sha in sorted(refs.items())))
    (dest / "HEAD").write_text(document["refs"]["HEAD"] + "\n")
    return dest


# ----------------------------------------------------------------------------- versions
def test_versions_read_back_with_tags_log_order_and_co_authors(s3: Any) -> None:
    with gitstore.open_repo(s3, BUCKET, PRD) as writer:
        assert gitstore.head(writer) is None and gitstore.history(writer) == []
        first = commit_version(writer, 1, None, tag="v1", tag_message="First review")
        second = commit_version(writer, 2, first, tag="v2", co_authors=[BOB, CAROL, BOB, ALICE])
        third = commit_version(writer, 3, second)  # a version needs no tag
        fourth = commit_version(writer, 4, third, tag="v4", committer=BOB)
    commits = [first, second, third, fourth]

    with gitstore.open_repo(client(), BUCKET, PRD) as reader:  # a cold instance: everything from S3
        assert gitstore.head(reader) == fourth
        log = gitstore.history(reader)
        assert [c.id for c in log] == commits[::-1]
        assert [c.parents for c in log] == [[third], [second], [first], []]
        for n, commit_id in enumerate(commits, start=1):
            assert gitstore.read_files(reader, commit_id) == version_files(n)
        assert log[-1].message == b"Version 1\n"
        assert log[-2].message == (b"Version 2\n\nCo-authored-by: Bob Example <bob@example.com>\n"
                                   b"Co-authored-by: Carol <carol@example.com>\n")  # no repeat, not the author
        assert (log[0].author, log[0].committer) == (ALICE.encode(), BOB.encode())
        assert (log[0].author_time, log[0].commit_time, log[0].author_timezone) == (T0 + 240, T0 + 240, 0)

        assert reader.refs.read_ref(Ref(b"HEAD")) == b"ref: refs/heads/main"
        assert reader.refs[Ref(b"HEAD")] == fourth
        assert sorted(reader.refs.keys(Ref(b"refs/tags"))) == [b"v1", b"v2", b"v4"]
        for name, commit_id, message in ((b"v1", first, b"First review\n"), (b"v2", second, b"v2\n"),
                                         (b"v4", fourth, b"v4\n")):
            tag = reader[reader.refs[Ref(b"refs/tags/" + name)]]
            assert isinstance(tag, Tag)
            assert (tag.name, tag.object, tag.message, tag.tagger) == (
                name, (Commit, commit_id), message, (BOB if name == b"v4" else ALICE).encode())
            assert reader.refs.get_peeled(Ref(b"refs/tags/" + name)) == commit_id  # recorded, no object read
        assert reader.refs.get_peeled(Ref(b"HEAD")) == fourth
    assert refs_document(s3)["format"] == 1
    assert len(pack_keys(s3)) == 8  # one pack (+ index) per commit


def test_a_stale_writer_gets_ref_conflict_and_succeeds_on_the_new_head(s3: Any) -> None:
    with gitstore.open_repo(s3, BUCKET, PRD) as one, gitstore.open_repo(client(), BUCKET, PRD) as other:
        base = commit_version(one, 1, None, tag="v1")
        seen_by_other = gitstore.head(other)
        assert seen_by_other == base
        moved = commit_version(one, 2, base, tag="v2")
        packs_before = pack_keys(s3)

        with pytest.raises(RefConflict) as refused:
            commit_version(other, 2, seen_by_other, by=BOB)  # Bob's version 2 is not Alice's
        assert (refused.value.ref, refused.value.expected, refused.value.actual) == (MAIN, base, moved)
        assert refused.value.status == 409 and refused.value.code == "ref_conflict"
        assert pack_keys(s3) == packs_before  # refused before anything was written

        with pytest.raises(RefConflict) as taken:  # a tag name is never moved
            commit_version(other, 3, refused.value.actual, by=BOB, tag="v2")
        assert taken.value.ref == b"refs/tags/v2"
        assert gitstore.head(other) == moved and pack_keys(s3) == packs_before

        retried = commit_version(other, 3, refused.value.actual, by=BOB, tag="v3")
        assert [c.id for c in gitstore.history(one)] == [moved, base]  # one's snapshot of the refs ...
        one.refs.refresh()
        assert [c.id for c in gitstore.history(one)] == [retried, moved, base]  # ... until it reads them again


def test_the_swap_refuses_a_writer_that_lost_the_race_after_writing_its_pack(s3: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Both writers pass the early check; the other one moves main while this one uploads its pack."""
    with gitstore.open_repo(s3, BUCKET, PRD) as one, gitstore.open_repo(client(), BUCKET, PRD) as other:
        base = commit_version(one, 1, None, tag="v1")
        winner: list[bytes] = []
        upload = gitstore.S3ObjectStore.add_objects

        def upload_then_lose(store: gitstore.S3ObjectStore, *args: Any, **kwargs: Any) -> Any:
            pack = upload(store, *args, **kwargs)
            if store is one.object_store and not winner:
                winner.append(commit_version(other, 2, base, tag="v2"))  # lands between pack and swap
            return pack

        monkeypatch.setattr(gitstore.S3ObjectStore, "add_objects", upload_then_lose)
        with pytest.raises(RefConflict) as lost:
            commit_version(one, 2, base, by=BOB, tag="v2-mine")
        assert (lost.value.ref, lost.value.actual) == (MAIN, winner[0])
        assert "refs/tags/v2-mine" not in refs_document(s3)["refs"]  # all or nothing: no tag either
        assert len(pack_keys(s3)) == 6  # the loser's pack stays, unreferenced
        assert [c.id for c in gitstore.history(other)] == [winner[0], base]


def test_a_swap_whose_answer_was_lost_is_not_committed_twice(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 stored the refs but the answer never came: botocore retries the same conditional put and
    gets 412.  The writer sees its own commit on a fresh read and reports success (no duplicate)."""
    with gitstore.open_repo(s3, BUCKET, PRD) as repo:
        first = commit_version(repo, 1, None, tag="v1")
        write = gitstore.S3RefsContainer._write

        def stored_then_412(refs: gitstore.S3RefsContainer, *args: Any) -> str:
            write(refs, *args)
            return write(refs, *args)  # the retry: same IfMatch, now stale

        with monkeypatch.context() as patched:
            patched.setattr(gitstore.S3RefsContainer, "_write", stored_then_412)
            second = commit_version(repo, 2, first, tag="v2")
        assert [c.id for c in gitstore.history(repo)] == [second, first]
        assert commit_version(repo, 2, first, tag="v2") == second  # the same call again: already done
        assert len(pack_keys(s3)) == 4 and gitstore.head(repo) == second


def test_two_writers_in_parallel_lose_no_commit(s3: Any) -> None:
    per_writer = 6
    clients = {label: client() for label in ("a", "b")}  # created up front: boto3 client creation is not thread-safe
    # Hold each writer's first refs swap until both are there: both built on the same head, so one must lose.
    both_ready = threading.Barrier(2, timeout=20)
    for s3_client in clients.values():
        held: list[bool] = []

        def hold_first_swap(params: dict[str, Any], held: list[bool] = held, **_: Any) -> None:
            if params.get("Key", "").endswith("refs.json") and not held:
                held.append(True)
                both_ready.wait()

        s3_client.meta.events.register("before-parameter-build.s3.PutObject", hold_first_swap)
    conflicts: Counter[str] = Counter()
    failures: list[BaseException] = []

    def write(label: str) -> None:
        try:
            with gitstore.open_repo(clients[label], BUCKET, PRD) as repo:
                for n in range(1, per_writer + 1):
                    parent = gitstore.head(repo)
                    while True:
                        try:
                            gitstore.commit_files(repo, version_files(n, label), message=f"{label}{n}",
                                                  author=ALICE, when=T0 + n, parent_expected=parent, tag=f"{label}{n}")
                            break
                        except RefConflict as exc:  # the other writer got there first: rebuild on its head
                            conflicts[label] += 1
                            parent = exc.actual
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(label,)) for label in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sum(conflicts.values()) >= 1, "the held swaps make one writer lose at least once"

    with gitstore.open_repo(client(), BUCKET, PRD) as reader:
        log = gitstore.history(reader)
        messages = [c.message.decode().strip() for c in log]
        expected = {f"{label}{n}" for label in clients for n in range(1, per_writer + 1)}
        assert len(log) == 2 * per_writer and set(messages) == expected  # every commit landed, once
        assert all(len(c.parents) == 1 for c in log[:-1]) and log[-1].parents == []  # linear
        for label in clients:  # each writer's own versions appear in its order
            assert [m for m in reversed(messages) if m.startswith(label)] == [f"{label}{n}"
                                                                               for n in range(1, per_writer + 1)]
        by_message = {c.message.decode().strip(): c.id for c in log}
        tags = reader.refs.as_dict(Ref(b"refs/tags"))
        assert sorted(tags) == sorted(name.encode() for name in expected)
        for name, tag_id in tags.items():
            tag = reader[tag_id]
            assert isinstance(tag, Tag) and tag.object == (Commit, by_message[name.decode()])
        document = refs_document(s3)
        assert document["refs"]["HEAD"] == "ref: refs/heads/main"
        assert document["refs"]["refs/heads/main"] == log[0].id.decode()


# ----------------------------------------------------------------------------- crash safety
@needs_git
def test_a_commit_killed_between_pack_and_ref_leaves_a_sound_repository(s3: Any, monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    with gitstore.open_repo(s3, BUCKET, PRD) as repo:
        first, second = commit_versions(repo, 2)

    def killed(*args: Any, **kwargs: Any) -> str:
        raise SystemExit("the Lambda timed out here")

    with monkeypatch.context() as patched, gitstore.open_repo(client(), BUCKET, PRD) as dying:
        patched.setattr(gitstore.S3RefsContainer, "_write", killed)
        with pytest.raises(SystemExit):
            commit_version(dying, 3, second, tag="v3")
    assert len(pack_keys(s3)) == 6  # the third pack was uploaded ...
    assert refs_document(s3)["refs"]["refs/heads/main"] == second.decode()  # ... the ref never moved

    with gitstore.open_repo(client(), BUCKET, PRD) as after:  # readable as before
        assert gitstore.head(after) == second
        assert [c.id for c in gitstore.history(after)] == [second, first]
        assert gitstore.read_files(after, second) == version_files(2)
        third = commit_version(after, 3, second, tag="v3")  # and the next commit simply works
        assert [c.id for c in gitstore.history(after)] == [third, second, first]
        assert gitstore.read_files(after, third) == version_files(3)

    bare = export_bare(s3, tmp_path / "exported.git")  # every pack on S3, the stray one included
    checked = git("--git-dir", str(bare), "fsck", "--strict")
    assert "error" not in checked.stdout + checked.stderr and "missing" not in checked.stdout + checked.stderr
    assert git("--git-dir", str(bare), "rev-parse", "v3^{commit}").stdout.strip() == third.decode()
    with gitstore.open_repo(client(), BUCKET, PRD) as served, serve(make_wsgi_chain(DictBackend({"/": served}))) as url:
        git("clone", "--quiet", url, str(tmp_path / "clone"))
    git("fsck", "--strict", cwd=tmp_path / "clone")
    assert git("log", "--format=%s", cwd=tmp_path / "clone").stdout.split("\n")[:3] == [
        "Version 3", "Version 2", "Version 1"]


# ----------------------------------------------------------------------------- repack
def test_repack_merges_all_packs_and_stale_readers_still_read_everything(s3: Any) -> None:
    with gitstore.open_repo(s3, BUCKET, PRD) as writer:
        commits = commit_versions(writer, 12)
    assert len(pack_keys(s3)) == 24

    stale_client = client()
    stale_calls = S3Calls(stale_client)
    with gitstore.open_repo(stale_client, BUCKET, PRD) as stale, \
            gitstore.open_repo(client(), BUCKET, PRD) as warm, \
            gitstore.open_repo(client(), BUCKET, PRD) as packer:
        assert len(stale.object_store.packs) == 12  # listed before the repack ...
        assert gitstore.read_files(stale, commits[-1]) == version_files(12)  # ... newest pack loaded, others not
        for n, commit_id in enumerate(commits, start=1):  # every pack fully in memory before the repack
            assert gitstore.read_files(warm, commit_id) == version_files(n)

        merged = packer.object_store.repack()
        assert merged == 12 * 6  # per version: 3 blobs, a tree, a commit, a tag
        assert len(pack_keys(s3)) == 2 and len(packer.object_store.packs) == 1

        stale_calls.take()
        for n, commit_id in enumerate(commits, start=1):
            assert gitstore.read_files(stale, commit_id) == version_files(n)
            assert gitstore.read_files(warm, commit_id) == version_files(n)
        assert stale_calls.take()["ListObjectsV2"] == 1  # vanished packs: evicted, one re-list
        assert [c.id for c in gitstore.history(stale)] == commits[::-1]

        assert packer.object_store.repack() == 0  # one pack: nothing to do
        more = commit_versions(packer, 2, commits[-1], start=13)
        assert packer.object_store.repack_if_needed(max_packs=3) == 0 and len(pack_keys(s3)) == 6
        # Geometric: the big pack (12 versions) is more than twice the two new ones, so it stays.
        assert packer.object_store.repack_if_needed(max_packs=2) == 2 * 6
        assert len(pack_keys(s3)) == 4
        assert packer.object_store.repack() == merged + 2 * 6  # a full repack still merges everything
        assert len(pack_keys(s3)) == 2

    with gitstore.open_repo(client(), BUCKET, PRD) as fresh:
        assert [c.id for c in gitstore.history(fresh)] == (commits + more)[::-1]
        for n, commit_id in enumerate(commits + more, start=1):
            assert gitstore.read_files(fresh, commit_id) == version_files(n)


# ----------------------------------------------------------------------------- cost
def test_list_calls_per_commit_do_not_grow_with_history(s3: Any) -> None:
    """Each commit opens the repository afresh, as a Lambda invocation would; no timing, only calls."""
    calls = S3Calls(s3)
    per_commit: list[Counter[str]] = []
    parent: bytes | None = None
    for n in range(1, 41):
        calls.take()
        with gitstore.open_repo(s3, BUCKET, PRD) as repo:
            parent = commit_version(repo, n, gitstore.head(repo), tag=f"v{n}")
        per_commit.append(calls.take())
    early, late = per_commit[1:5], per_commit[-4:]
    assert all(c["ListObjectsV2"] == 0 for c in early + late)  # a commit never lists packs
    assert all(c == early[0] for c in early + late), (early, late)  # nor does anything else grow
    assert early[0] == Counter({"GetObject": 2, "PutObject": 3})  # head(), the commit's refs read; pack, idx, refs
    with gitstore.open_repo(s3, BUCKET, PRD) as repo:
        assert gitstore.head(repo) == parent


# ----------------------------------------------------------------------------- stock git over smart HTTP
@needs_git
def test_stock_git_clones_fetches_and_cannot_push(s3: Any, tmp_path: Path) -> None:
    with gitstore.open_repo(s3, BUCKET, PRD) as writer:
        commits = commit_versions(writer, 3)
        writer.object_store.repack()
        commits.append(commit_version(writer, 4, commits[-1], tag="v4", tag_message="Approved\n\nBy the board.",
                                      co_authors=[BOB]))
        commits.append(commit_version(writer, 5, commits[-1]))  # the clone spans the repacked pack and two more

    clone = tmp_path / "clone"
    with gitstore.open_repo(client(), BUCKET, PRD) as served, serve(make_wsgi_chain(DictBackend({"/": served}))) as url:
        git("clone", "--quiet", url, str(clone))
        log = git("log", "--format=%H|%s|%an <%ae>|%at|%(trailers:key=Co-authored-by,valueonly,separator=%x2C)",
                  cwd=clone).stdout.splitlines()
        assert log == [f"{c.decode()}|Version {n}|{ALICE}|{T0 + 60 * n}|{BOB if n == 4 else ''}"
                       for n, c in reversed(list(enumerate(commits, start=1)))]
        assert git("tag", "--list", cwd=clone).stdout.split() == ["v1", "v2", "v3", "v4"]
        assert git("cat-file", "tag", "v4", cwd=clone).stdout.endswith("\n\nApproved\n\nBy the board.\n")
        assert git("rev-parse", "v2^{commit}", cwd=clone).stdout.strip() == commits[1].decode()
        assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=clone).stdout.strip() == "main"
        assert git("show", "v1:prd.json", cwd=clone).stdout == version_files(1)["prd.json"].decode()
        for name, content in version_files(5).items():
            assert (clone / name).read_bytes() == content
        git("fsck", "--strict", cwd=clone)

        with gitstore.open_repo(client(), BUCKET, PRD) as other:  # a new version, then an incremental fetch
            sixth = commit_version(other, 6, commits[-1], tag="v6")
        served.refs.refresh()  # the served instance cached the refs of the clone's request
        git("pull", "--quiet", "--ff-only", cwd=clone)
        assert git("rev-parse", "HEAD", cwd=clone).stdout.strip() == sixth.decode()
        assert (clone / "prd.md").read_bytes() == version_files(6)["prd.md"]
        git("fsck", "--strict", cwd=clone)

    with gitstore.open_repo(client(), BUCKET, PRD) as served, serve(gitstore.wsgi_app(served)) as url:
        git("clone", "--quiet", url, str(tmp_path / "again"))
        (tmp_path / "again" / "prd.md").write_text("vandalised\n")
        git("-c", "user.name=M", "-c", "user.email=m@example.com", "commit", "--quiet", "-am", "x",
            cwd=tmp_path / "again")
        pushed = git("push", "origin", "main", cwd=tmp_path / "again", check=False)
        assert pushed.returncode != 0 and "403" in pushed.stderr
    assert refs_document(s3)["refs"]["refs/heads/main"] == sixth.decode()


# ----------------------------------------------------------------------------- the refs container
def test_refs_compare_and_swap_decides_on_fresh_state_and_loses_no_other_ref(s3: Any) -> None:
    with gitstore.open_repo(s3, BUCKET, PRD) as repo:
        first, second, third = commit_versions(repo, 3)
    main, tag = MAIN, Ref(b"refs/tags/extra")
    one = gitstore.S3RefsContainer(client(), BUCKET, PREFIX)
    other = gitstore.S3RefsContainer(client(), BUCKET, PREFIX)
    assert one[main] == third and other[main] == third  # both cache this snapshot

    assert other.set_if_equals(main, third, second)
    assert one.add_if_new(tag, first)  # one's cache is stale: the put loses, is retried on fresh refs ...
    assert refs_document(s3)["refs"]["refs/heads/main"] == second.decode()  # ... and other's move survives
    assert not one.set_if_equals(main, third, first)  # decided on what S3 holds, not on the cache
    assert other.set_if_equals(main, second, third)
    assert one.set_if_equals(Ref(b"HEAD"), third, first)  # cache says second is wrong; fresh says right; via HEAD
    assert one.read_ref(Ref(b"HEAD")) == b"ref: refs/heads/main" and one[main] == first
    assert one.get_peeled(main) is None  # unknown after a plain set: dulwich peels by reading the object

    assert not other.add_if_new(tag, second)
    assert not other.remove_if_equals(tag, second)
    assert other.remove_if_equals(tag, first)
    assert tag not in gitstore.S3RefsContainer(client(), BUCKET, PREFIX)
    other.set_symbolic_ref(Ref(b"refs/heads/current"), main)
    assert gitstore.S3RefsContainer(client(), BUCKET, PREFIX)[Ref(b"refs/heads/current")] == first
    assert other.get_symrefs() == {Ref(b"HEAD"): main, Ref(b"refs/heads/current"): main}

    with pytest.raises(RefConflict) as conflict:
        other.apply([gitstore.RefUpdate(Ref(b"refs/tags/new"), first, None),
                     gitstore.RefUpdate(main, second, third)])
    assert conflict.value.ref == main
    assert Ref(b"refs/tags/new") not in gitstore.S3RefsContainer(client(), BUCKET, PREFIX)  # all or nothing


def test_bad_input_is_refused_before_anything_is_written(s3: Any) -> None:
    calls = S3Calls(s3)
    with gitstore.open_repo(s3, BUCKET, PRD) as repo:
        for files, kwargs in (
            ({"docs/prd.md": b"x"}, {}),
            ({".git": b"x"}, {}),
            (version_files(1), {"author": "alice"}),
            (version_files(1), {"co_authors": ["bob@example.com"]}),
            (version_files(1), {"tag": "bad tag"}),
        ):
            with pytest.raises(ValueError):
                gitstore.commit_files(repo, files, **{"message": "m", "author": ALICE, "when": T0,
                                                      "parent_expected": None, **kwargs})
    assert calls.take()["PutObject"] == 0 and pack_keys(s3) == []
