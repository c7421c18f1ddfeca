"""Cutting versions: the saved document against the last version, a record, a git commit, a notice.

Triggered by the bus (``VersionFunction``): ``prd.created`` makes v1.0.0; each ``prd.updated`` (a
batch of edits folded into the snapshot, about every 5 s while people type) notes its editors and,
once the document is quiet — nothing stored since that compaction — classifies the change since
the last version (:mod:`.changes`).  An insignificant change is saved but not versioned; it counts
toward the next one, as do its editors.  Typing that never pauses is still versioned every
``VERSION_MAX_BATCH_SECONDS``.  People may also save a version by hand, named, with a message.

Order of writes (the outbox of :mod:`.records`): the version's Markdown to S3, the record
(pending) and the head in one conditional transaction, the git commit and its tag, the record's
commit.  A cutter that loses the head race re-reads and decides again; one that dies leaves a
pending record that the next cut finishes first — its tag tells whether the commit landed.
"""

from __future__ import annotations

import atexit
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..aws import client
from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings
from . import records
from .changes import Change, Kind, Thresholds, bump, classify

FIRST_VERSION = "1.0.0"
COMMITTER = "PRD Tool <versions@prdtool.invalid>"
PRD_VERSION_CREATED = "prd.version.created"
_ATTEMPTS = 5


def _identity(username: str) -> str:
    """A git identity for a person: the username, at a domain that can never receive mail."""
    safe = "".join(ch for ch in username if ch.isalnum() or ch in "._-") or "unknown"
    return f"{safe} <{safe}@users.prdtool.invalid>"


@dataclass(frozen=True)
class Saved:
    """The document as saved now: its Markdown and what goes into ``prd.json``."""

    markdown: str
    title: str


def _saved(prd_id: str) -> Saved:
    from ..collab import document, store
    from ..prds.models import PrdModel

    stored = store.read(prd_id)
    try:
        title = str(PrdModel.get(prd_id, consistent_read=True).title)
    except PrdModel.DoesNotExist:
        title = ""
    return Saved(document.markdown_of(stored.doc), title)


def markdown_key(prd_id: str, version: str) -> str:
    return f"versions/{prd_id}/{version}.md"


def read_markdown(key: str) -> str:
    """A version's Markdown by its record's key (in the archive, for an archived version)."""
    from . import maintenance

    if maintenance.is_archive_key(key):
        return str(maintenance.read_archive(key)["markdown"])
    body = client("s3").get_object(Bucket=get_settings().documents_bucket, Key=key)["Body"].read()
    return bytes(body).decode("utf-8")


def consider(prd_id: str, *, editors: list[str], at_ms: int | None = None) -> records.Version | None:
    """A batch of edits was saved: note who made them and cut a version if the document is quiet
    and the change is significant (or typing has gone on for ``version_max_batch_seconds``)."""
    from ..collab import store

    records.note_editors(prd_id, editors)
    head = records.head(prd_id)  # (a pending version is finished by cut, first thing)
    if head.version is not None:
        last = records.get(prd_id, head.version)
        overdue = records.now_ms() - last.created_at >= get_settings().version_max_batch_seconds * 1000
        # One key read, not the whole document: while people type this is asked after every
        # compaction (~every 5 s), and reading and rendering the document only to learn that more
        # was stored since cost 60-180 ms of the function's time each time (docs/benchmarks.md).
        if not overdue and store.has_pending_updates(prd_id):
            return None  # still typing: the compaction of what came since will ask again
    return cut(prd_id, actor=editors[-1] if editors else None)


def cut(prd_id: str, *, actor: str | None = None, name: str | None = None, message: str | None = None,
        restored_from: str | None = None, by_hand: bool = False) -> records.Version | None:
    """Cut the next version if the saved document differs significantly from the last (always when
    ``by_hand``: a person asked to save one).  None when there was nothing to version."""
    thresholds = Thresholds.from_settings(get_settings())
    for _ in range(_ATTEMPTS):
        head = records.head(prd_id)
        if head.pending:
            finish_pending(prd_id, head)
            head = records.head(prd_id)
        saved = _saved(prd_id)
        if head.version is None:
            number, kind = FIRST_VERSION, "initial"
            change = classify("", saved.markdown, thresholds)
            summary = f"Create '{saved.title}'" if saved.title else "Create the PRD"
        else:
            change = classify(read_markdown(head.markdown_key or markdown_key(prd_id, head.version)),
                              saved.markdown, thresholds)
            if not change.significant and not by_hand:
                return None
            level = change.kind if change.significant else Kind.PATCH
            number, kind = bump(head.version, level), level.value
            summary = change.subject() if change.significant else "No change since the last version"
            if restored_from:
                summary = f"Restore v{restored_from}" + (f": {change.subject()}" if change.significant else "")
        authors = tuple(sorted(head.editors_since | ({actor} if actor else set())))
        record = records.Version(
            prd_id, number, kind, (name + ": " + summary) if name else summary,
            tuple(change.details()), authors, records.now_ms(), actor or "system", None, head.commit,
            markdown_key(prd_id, number), records.PENDING, name=name, message=message,
            restored_from=restored_from, words_added=change.added_words, words_removed=change.removed_words)
        client("s3").put_object(Bucket=get_settings().documents_bucket, Key=record.markdown_key,
                                Body=saved.markdown.encode("utf-8"), ContentType="text/markdown; charset=utf-8")
        try:
            records.begin(record, head)
        except records.HeadMoved:
            continue
        commit = _commit(record, saved.markdown, saved.title, change)
        records.finish(prd_id, number, commit)
        done = records.get(prd_id, number)
        _announce(done)
        metrics.add_metric(name="VersionsCreated", unit=MetricUnit.Count, value=1)
        return done
    raise RuntimeError(f"could not cut a version of {prd_id} after {_ATTEMPTS} attempts (the head kept moving)")


def finish_pending(prd_id: str, current: records.Head | None = None) -> None:
    """Finish the versions a cutter left pending (record and head written, commit maybe not), and
    announce them: the cutter died before it could, and search, the push mirror and the editors
    would otherwise never hear of them (an announcement twice is harmless: its consumers are
    idempotent)."""
    for version in records.pending(prd_id, current):
        if version.state != records.PENDING and version.commit:
            records.finish(prd_id, version.version, version.commit)  # landed; only still listed
        else:
            markdown = read_markdown(version.markdown_key)
            records.finish(prd_id, version.version, _commit(version, markdown, None, None))
        logger.info("finished a pending version", extra={"prd_id": prd_id, "version": version.version})
        _announce(records.get(prd_id, version.version))


def _changelog_entry(record: records.Version) -> str:
    day = datetime.fromtimestamp(record.created_at / 1000, UTC).strftime("%Y-%m-%d")
    lines = [f"## [{record.version}] - {day}", "", record.summary]
    lines += [f"- {detail}" for detail in record.details if detail != record.summary]
    if record.message:
        lines += ["", record.message]
    if record.authors:
        lines += ["", "Authors: " + ", ".join(record.authors)]
    return "\n".join(lines) + "\n"


def _commit(record: records.Version, markdown: str, title: str | None, change: Change | None) -> str:
    """Commit the version to the PRD's repository (idempotent: an existing tag is the answer)."""
    from . import gitstore

    settings = get_settings()
    tag = f"v{record.version}"
    for _ in range(_ATTEMPTS):
        with _checked_out(settings.documents_bucket, record.prd_id) as repo:
            parent = gitstore.head(repo)  # reads the refs afresh
            existing = repo.refs.get_peeled(gitstore.Ref(gitstore.TAGS + tag.encode()))
            if existing is not None:
                return existing.decode()
            files = gitstore.read_files(repo, parent) if parent else {}
            previous_log = files.get("CHANGELOG.md", b"# Changelog\n").decode("utf-8")
            head_line, _, rest = previous_log.partition("\n")
            changelog = f"{head_line}\n\n{_changelog_entry(record)}{rest if rest.strip() else ''}"
            meta = {"id": record.prd_id, "version": record.version, "title": title or "",
                    "kind": record.kind, "authors": list(record.authors)}
            body = [*(f"- {line}" for line in record.details if line != record.summary)]
            if record.message:
                body += ["", record.message]
            message = f"{record.summary}\n\n" + ("\n".join(body) + "\n\n" if body else "") + f"Version: {tag}"
            author = _identity(record.authors[0] if record.authors else record.created_by)
            try:
                commit = gitstore.commit_files(
                    repo, {"prd.md": markdown.encode("utf-8"), "CHANGELOG.md": changelog.encode("utf-8"),
                           "prd.json": (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()},
                    message=message, author=author, committer=COMMITTER, when=record.created_at // 1000,
                    parent_expected=parent, co_authors=[_identity(a) for a in record.authors[1:]],
                    tag=tag, tag_message=f"{tag}: {record.summary}")
            except gitstore.RefConflict:
                time.sleep(0.05)
                continue  # another writer moved main or made the tag: look again
            return commit.decode()  # repacking happens after, on prd.version.created (maintenance)
    raise RuntimeError(f"could not commit {tag} of {record.prd_id}: the repository kept changing")


_REPOS_KEPT = 8
_repos: OrderedDict[tuple[Any, str, str], Any] = OrderedDict()  # (S3 client, bucket, PRD) -> S3Repo
_repos_lock = threading.Lock()


@atexit.register
def _close_repos() -> None:
    # dulwich complains from __del__ about packs left open at interpreter exit (tests, benchmarks).
    with _repos_lock:
        while _repos:
            _repos.popitem()[1].close()


@contextmanager
def _checked_out(bucket: str, prd_id: str) -> Iterator[Any]:
    """The PRD's repository, kept open between cuts in this container (its pack list and the packs
    it read stay in memory: a warm cut of the same PRD lists and downloads nothing it already has;
    a pack repacked away meanwhile is noticed on lookup and re-listed).  One user at a time: a
    thread that finds it checked out by another opens its own."""
    from . import gitstore

    s3 = client("s3")  # in the key: a new client (tests reset them) means another S3 altogether
    key = (s3, bucket, prd_id)
    with _repos_lock:
        repo = _repos.pop(key, None)
    if repo is None:
        repo = gitstore.open_repo(s3, bucket, prd_id)
    try:
        yield repo
    except BaseException:
        repo.close()  # whatever it holds may be half-updated
        raise
    with _repos_lock:
        _repos[key] = repo
        while len(_repos) > _REPOS_KEPT:
            _repos.popitem(last=False)[1].close()


def _announce(version: records.Version) -> None:
    """``prd.version.created`` on the bus, and a notice to the PRD's connected editors."""
    from .. import events

    events.publish(PRD_VERSION_CREATED, {"prd_id": version.prd_id, **version.to_json()},
                   actor=version.created_by)
    try:
        from ..collab import relay

        notice = json.dumps({"action": "notice", "type": "version-created", "version": version.version,
                             "tag": f"v{version.version}", "summary": version.summary, "kind": version.kind},
                            separators=(",", ":"))
        relay.broadcast(relay.update_peers(version.prd_id, exclude=None), [notice])
    except Exception:
        logger.exception("could not tell the editors about a new version", extra={"prd_id": version.prd_id})


def on_event(detail_type: str, detail: dict[str, Any]) -> records.Version | None:
    """The bus's ``prd.created`` and ``prd.updated`` events (VersionFunction); ``prd.version.created``
    tidies up after a version (``maintenance``)."""
    prd_id = str(detail.get("prd_id") or "")
    if not prd_id:
        raise ValueError("the event names no prd_id")
    if detail_type == PRD_VERSION_CREATED:
        from . import maintenance

        maintenance.after_version(prd_id)
        return None
    if detail_type == "prd.created":
        source = str(detail.get("source") or "")
        return cut(prd_id, actor=str(detail.get("actor") or "") or None,
                   message=f"Imported from {source}" if source else None)
    editors = [str(e) for e in detail.get("editors") or [] if e]
    return consider(prd_id, editors=editors)
