"""Version records of a PRD (VersionsTable): what each version is, and the PRD's version head.

Items of one PRD (partition ``prd_id``):

- ``v#<major>.<minor>.<patch>`` (each part zero-padded to 6 digits, so the sort key orders
  versions numerically): one version — number, kind, summary, authors, time, the git commit and
  the S3 key of its Markdown, ``state`` ``pending`` until its commit landed;
- ``remote``: the PRD's push remote and the state of its pushes (``prdtool.versions.mirror``);
- ``head``: the latest version (number, commit, Markdown key) plus ``editors_since`` — the people
  whose saved edits are not in a version yet — ``pending_versions`` (those whose commit has not
  landed; normally none) and a compare-and-set counter.

Cutting a version is an outbox: the record is written ``pending`` together with moving the head
(one transaction, conditional on the head's counter, so two cutters never both win), then the git
commit is made, then the record is marked ``committed``.  A cutter that dies in between leaves a
pending record, which the next cut finishes first (the commit is idempotent: its tag says whether
it landed), so neither a version nor a commit is lost or made twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from ..errors import NotFound
from ..ids import ulid
from ..storage import connection, register, table_meta
from .changes import parse_version

HEAD = "head"
VERSION_PREFIX = "v#"
PENDING = "pending"
COMMITTED = "committed"


def version_sk(version: str) -> str:
    major, minor, patch = parse_version(version)
    return f"{VERSION_PREFIX}{major:06d}.{minor:06d}.{patch:06d}"


@register
class VersionItem(Model):
    Meta = table_meta("versions_table")

    prd_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    version = UnicodeAttribute(null=True)
    kind = UnicodeAttribute(null=True)  # major | minor | patch | initial | manual | restore
    summary = UnicodeAttribute(null=True)
    details = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]
    authors = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]
    created_at = NumberAttribute(null=True)  # epoch ms
    created_by = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)  # a version saved by hand may be named
    message = UnicodeAttribute(null=True)
    restored_from = UnicodeAttribute(null=True)
    commit = UnicodeAttribute(null=True)  # hex sha of the git commit
    parent_commit = UnicodeAttribute(null=True)
    markdown_key = UnicodeAttribute(null=True)  # S3 key of the version's Markdown
    words_added = NumberAttribute(null=True)
    words_removed = NumberAttribute(null=True)
    state = UnicodeAttribute(null=True)  # pending | committed
    archived_at = NumberAttribute(null=True)  # epoch ms: moved to cold storage (markdown_key is the archive)
    # the head item
    counter = NumberAttribute(null=True)
    editors_since = UnicodeSetAttribute(null=True)
    pending_versions = UnicodeSetAttribute(null=True)
    archived_count = NumberAttribute(null=True)  # the oldest versions in cold storage ...
    archived_through = UnicodeAttribute(null=True)  # ... up to this sort key
    # the remote item (prdtool.versions.mirror): where versions are pushed, and how that went
    remote_url = UnicodeAttribute(null=True)
    remote_username = UnicodeAttribute(null=True)
    remote_secret = UnicodeAttribute(null=True)  # the Secrets Manager name of the token, never the token
    push_state = UnicodeAttribute(null=True)  # never | ok | failing (retried) | failed (needs a person)
    push_error = UnicodeAttribute(null=True)
    push_error_kind = UnicodeAttribute(null=True)
    push_attempts = NumberAttribute(null=True)  # failed attempts since the last success
    push_attempted_at = NumberAttribute(null=True)
    pushed_at = NumberAttribute(null=True)
    pushed_version = UnicodeAttribute(null=True)


@dataclass(frozen=True)
class Version:
    prd_id: str
    version: str
    kind: str
    summary: str
    details: tuple[str, ...]
    authors: tuple[str, ...]
    created_at: int
    created_by: str
    commit: str | None
    parent_commit: str | None
    markdown_key: str
    state: str
    name: str | None = None
    message: str | None = None
    restored_from: str | None = None
    words_added: int = 0
    words_removed: int = 0
    archived_at: int | None = None

    @classmethod
    def of(cls, item: VersionItem) -> Version:
        return cls(item.prd_id, str(item.version), str(item.kind), str(item.summary or ""),
                   tuple(str(d) for d in item.details or ()), tuple(str(a) for a in item.authors or ()),
                   int(item.created_at or 0),
                   str(item.created_by or ""), item.commit, item.parent_commit, str(item.markdown_key or ""),
                   str(item.state or COMMITTED), item.name, item.message, item.restored_from,
                   int(item.words_added or 0), int(item.words_removed or 0),
                   int(item.archived_at) if item.archived_at is not None else None)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "tag": f"v{self.version}", "kind": self.kind, "summary": self.summary,
                "details": list(self.details), "authors": list(self.authors), "created_at": self.created_at,
                "created_by": self.created_by, "commit": self.commit, "name": self.name, "message": self.message,
                "restored_from": self.restored_from, "words_added": self.words_added,
                "words_removed": self.words_removed, "state": self.state, "archived": self.archived_at is not None}


@dataclass(frozen=True)
class Head:
    version: str | None  # None before the first version
    commit: str | None
    markdown_key: str | None
    counter: int
    editors_since: frozenset[str]
    pending: frozenset[str] = frozenset()
    archived_count: int = 0
    archived_through: str | None = None


def head(prd_id: str) -> Head:
    try:
        item = VersionItem.get(prd_id, HEAD, consistent_read=True)
    except VersionItem.DoesNotExist:
        return Head(None, None, None, 0, frozenset())
    return Head(item.version, item.commit, item.markdown_key, int(item.counter or 0),
                frozenset(item.editors_since or ()), frozenset(item.pending_versions or ()),
                int(item.archived_count or 0), item.archived_through)


def note_editors(prd_id: str, editors: list[str]) -> None:
    """Remember who edited since the last version (called for each saved batch of edits)."""
    if not editors:
        return
    VersionItem(prd_id=prd_id, sk=HEAD).update(actions=[VersionItem.editors_since.add(set(editors))])


class HeadMoved(Exception):
    """Another cutter moved the head first: read it again and decide afresh."""


def begin(record: Version, expected: Head) -> None:
    """Write ``record`` as pending and make it the head, if the head is still ``expected``."""
    item = VersionItem(
        prd_id=record.prd_id, sk=version_sk(record.version), version=record.version, kind=record.kind,
        summary=record.summary, details=list(record.details), authors=list(record.authors),
        created_at=record.created_at, created_by=record.created_by, name=record.name, message=record.message,
        restored_from=record.restored_from, commit=None, parent_commit=record.parent_commit,
        markdown_key=record.markdown_key, words_added=record.words_added, words_removed=record.words_removed,
        state=PENDING)
    head_item = VersionItem(prd_id=record.prd_id, sk=HEAD)
    condition = (VersionItem.counter.does_not_exist() if expected.counter == 0
                 else VersionItem.counter == expected.counter)
    actions: list[Any] = [VersionItem.version.set(record.version), VersionItem.markdown_key.set(record.markdown_key),
               VersionItem.counter.set(expected.counter + 1), VersionItem.commit.remove(),
               VersionItem.pending_versions.add({record.version})]
    if expected.editors_since:
        actions.append(VersionItem.editors_since.delete(set(expected.editors_since)))
    try:
        with TransactWrite(connection=connection(), client_request_token=ulid()) as tx:
            tx.save(item, condition=VersionItem.sk.does_not_exist())
            tx.update(head_item, actions=actions, condition=condition)
    except TransactWriteError as exc:
        # A condition failed (someone moved the head, or the version exists) or another
        # transaction on the same items won: either way, read again and decide afresh.
        if exc.cause_response_code == "TransactionCanceledException":
            raise HeadMoved(record.version) from exc
        raise


def finish(prd_id: str, version: str, commit: str) -> None:
    """The version's commit landed: record it, on the version and on the head (if still the head)."""
    VersionItem(prd_id=prd_id, sk=version_sk(version)).update(
        actions=[VersionItem.commit.set(commit), VersionItem.state.set(COMMITTED)])
    head_item = VersionItem(prd_id=prd_id, sk=HEAD)
    try:
        head_item.update(actions=[VersionItem.commit.set(commit), VersionItem.pending_versions.delete({version})],
                         condition=VersionItem.version == version)
    except Exception as exc:
        from ..storage import is_conditional_failure

        if not is_conditional_failure(exc):
            raise
        # A later version is the head already (this one was finished late): only unlist it.
        head_item.update(actions=[VersionItem.pending_versions.delete({version})])


def get(prd_id: str, version: str) -> Version:
    try:
        return Version.of(VersionItem.get(prd_id, version_sk(version), consistent_read=True))
    except (VersionItem.DoesNotExist, ValueError):
        raise NotFound(f"this PRD has no version {version[:40]!r}", code="version_not_found") from None


def pending(prd_id: str, current: Head | None = None) -> list[Version]:
    """Versions the head lists as pending (``current``, or the head read afresh), oldest first, so
    finding none costs no more than reading the head.  One may be ``committed`` already (its cutter
    died between marking it and unlisting it): :func:`finish` it again to unlist it."""
    listed = (current or head(prd_id)).pending
    return [get(prd_id, version) for version in sorted(listed, key=parse_version)]


def page(prd_id: str, *, limit: int = 50, before: str | None = None) -> tuple[list[Version], str | None]:
    """Versions newest first, ``limit`` at a time; the cursor for the next page (a version number)."""
    # One condition per sort key: "v#" <= sk <= before's key, without ``before`` itself.
    condition = (VersionItem.sk.between(VERSION_PREFIX, version_sk(before)) if before
                 else VersionItem.sk.startswith(VERSION_PREFIX))
    items = [i for i in VersionItem.query(prd_id, condition, scan_index_forward=False, limit=limit + 2)
             if not before or i.sk != version_sk(before)][: limit + 1]
    versions = [Version.of(i) for i in items[:limit]]
    return versions, (versions[-1].version if len(items) > limit else None)


def now_ms() -> int:
    return int(time.time() * 1000)


# -- archival (cold storage of old versions: see prdtool.versions.maintenance) ----------------------

def oldest_unarchived(prd_id: str, current: Head, limit: int) -> list[Version]:
    """Up to ``limit`` of the oldest versions not archived yet (after the head's ``archived_through``)."""
    if limit <= 0:
        return []
    condition = (VersionItem.sk > current.archived_through if current.archived_through
                 else VersionItem.sk.startswith(VERSION_PREFIX))
    return [Version.of(item) for item in VersionItem.query(prd_id, condition, limit=limit, consistent_read=True)
            if item.sk.startswith(VERSION_PREFIX)][:limit]


def mark_archived(prd_id: str, version: str, *, old_key: str, archive_key: str, at_ms: int) -> bool:
    """Point a version at its archive (and drop what moved there); False if it moved already."""
    try:
        VersionItem(prd_id=prd_id, sk=version_sk(version)).update(
            actions=[VersionItem.markdown_key.set(archive_key), VersionItem.archived_at.set(at_ms),
                     VersionItem.details.remove()],
            condition=VersionItem.markdown_key == old_key)
    except Exception as exc:
        from ..storage import is_conditional_failure

        if not is_conditional_failure(exc):
            raise
        return False
    return True


def advance_archived(prd_id: str, current: Head, *, count: int, through: str) -> None:
    """Record on the head that ``count`` more of the oldest versions are archived, through ``through``
    (a no-op when another archiver recorded it first)."""
    condition = (VersionItem.archived_count.does_not_exist() if current.archived_count == 0
                 else VersionItem.archived_count == current.archived_count)
    try:
        VersionItem(prd_id=prd_id, sk=HEAD).update(
            actions=[VersionItem.archived_count.set(current.archived_count + count),
                     VersionItem.archived_through.set(version_sk(through))],
            condition=condition)
    except Exception as exc:
        from ..storage import is_conditional_failure

        if not is_conditional_failure(exc):
            raise
