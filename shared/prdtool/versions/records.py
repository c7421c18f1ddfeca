"""Version records of a PRD (VersionsTable): what each version is, and the PRD's version head.

Items of one PRD (partition ``prd_id``):

- ``v#<major>.<minor>.<patch>`` (each part zero-padded to 6 digits, so the sort key orders
  versions numerically): one version — number, kind, summary, authors, time, the git commit and
  the S3 key of its Markdown, ``state`` ``pending`` until its commit landed;
- ``head``: the latest version (number, commit, Markdown key) plus ``editors_since`` — the people
  whose saved edits are not in a version yet — and a compare-and-set counter.

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
    # the head item
    counter = NumberAttribute(null=True)
    editors_since = UnicodeSetAttribute(null=True)


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

    @classmethod
    def of(cls, item: VersionItem) -> Version:
        return cls(item.prd_id, str(item.version), str(item.kind), str(item.summary or ""),
                   tuple(str(d) for d in item.details or ()), tuple(str(a) for a in item.authors or ()),
                   int(item.created_at or 0),
                   str(item.created_by or ""), item.commit, item.parent_commit, str(item.markdown_key or ""),
                   str(item.state or COMMITTED), item.name, item.message, item.restored_from,
                   int(item.words_added or 0), int(item.words_removed or 0))

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "tag": f"v{self.version}", "kind": self.kind, "summary": self.summary,
                "details": list(self.details), "authors": list(self.authors), "created_at": self.created_at,
                "created_by": self.created_by, "commit": self.commit, "name": self.name, "message": self.message,
                "restored_from": self.restored_from, "words_added": self.words_added,
                "words_removed": self.words_removed, "state": self.state}


@dataclass(frozen=True)
class Head:
    version: str | None  # None before the first version
    commit: str | None
    markdown_key: str | None
    counter: int
    editors_since: frozenset[str]


def head(prd_id: str) -> Head:
    try:
        item = VersionItem.get(prd_id, HEAD, consistent_read=True)
    except VersionItem.DoesNotExist:
        return Head(None, None, None, 0, frozenset())
    return Head(item.version, item.commit, item.markdown_key, int(item.counter or 0),
                frozenset(item.editors_since or ()))


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
               VersionItem.counter.set(expected.counter + 1), VersionItem.commit.remove()]
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
    try:
        VersionItem(prd_id=prd_id, sk=HEAD).update(actions=[VersionItem.commit.set(commit)],
                                                   condition=VersionItem.version == version)
    except Exception as exc:
        from ..storage import is_conditional_failure

        if not is_conditional_failure(exc):
            raise


def get(prd_id: str, version: str) -> Version:
    try:
        return Version.of(VersionItem.get(prd_id, version_sk(version), consistent_read=True))
    except (VersionItem.DoesNotExist, ValueError):
        raise NotFound(f"this PRD has no version {version[:40]!r}", code="version_not_found") from None


def pending(prd_id: str) -> list[Version]:
    """Versions whose commit has not landed yet, oldest first."""
    return [Version.of(i) for i in VersionItem.query(prd_id, VersionItem.sk.startswith(VERSION_PREFIX),
                                                     filter_condition=VersionItem.state == PENDING,
                                                     consistent_read=True)]


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
