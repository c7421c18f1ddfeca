"""Durable storage of a PRD's Yjs document in DynamoDB (DocsTable), S3 for oversized snapshots.

Items of one PRD (partition ``prd_id``):
- ``head``: which snapshot is current (``snapshot_sk``), with a version number for compare-and-set;
- ``snap#<ulid>``: a compacted state (zlib-compressed V1 update), or a pointer to S3 when it would
  not fit a DynamoDB item;
- ``upd#<ulid>``: one Yjs update each, written once with a condition (append-only, idempotent).

The current document is the current snapshot plus *every* stored update: a compactor writes a new
snapshot, moves ``head`` to it, and only then deletes exactly the updates it folded in, so a reader
at any moment sees either the updates or a snapshot that contains them (Yjs updates are idempotent,
so seeing both is harmless).  Nothing is ever read-modified-written, so concurrent writers in
different Lambdas cannot lose each other's updates (DESIGN 5).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

from pycrdt import Doc
from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from ..aws import client
from ..errors import NotFound
from ..ids import ulid
from ..settings import get_settings
from ..storage import register, table_meta
from . import document

# DynamoDB's item limit is 400 KB; keep a margin for the other attributes.
INLINE_SNAPSHOT_LIMIT = 350_000
HEAD = "head"
SNAPSHOT_PREFIX = "snap#"
UPDATE_PREFIX = "upd#"


@register
class DocItem(Model):
    Meta = table_meta("docs_table")

    prd_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    data = BinaryAttribute(legacy_encoding=False, null=True)
    s3_key = UnicodeAttribute(null=True)
    compression = UnicodeAttribute(null=True)  # "zlib" or absent (raw update)
    snapshot_sk = UnicodeAttribute(null=True)  # on the head item
    version = NumberAttribute(null=True)  # on the head item: compare-and-set counter
    origin = UnicodeAttribute(null=True)  # who produced an update (username or "server")
    created_at = NumberAttribute(default=lambda: int(time.time() * 1000))


@dataclass(frozen=True)
class StoredDoc:
    """The state of a document as read from the store, with the keys that produced it."""

    doc: Doc
    snapshot_sk: str | None
    update_sks: tuple[str, ...]
    head_version: int


def _s3_key(prd_id: str, snapshot_sk: str) -> str:
    return f"docs/{prd_id}/snapshots/{snapshot_sk.removeprefix(SNAPSHOT_PREFIX)}.bin"


def write_snapshot(prd_id: str, state: bytes, *, origin: str = "server") -> str:
    """Store ``state`` as a new snapshot item (S3 body if large); returns its sort key."""
    sk = f"{SNAPSHOT_PREFIX}{ulid()}"
    packed = zlib.compress(state, 6)
    item = DocItem(prd_id=prd_id, sk=sk, compression="zlib", origin=origin)
    if len(packed) > INLINE_SNAPSHOT_LIMIT:
        key = _s3_key(prd_id, sk)
        # Immutable key: written once, never overwritten, so readers never see a torn object.
        client("s3").put_object(Bucket=get_settings().documents_bucket, Key=key, Body=packed)
        item.s3_key = key
    else:
        item.data = packed
    item.save(condition=DocItem.sk.does_not_exist())
    return sk


def create(prd_id: str, state: bytes, *, origin: str) -> None:
    """Store the first state of a new document (snapshot + head)."""
    sk = write_snapshot(prd_id, state, origin=origin)
    DocItem(prd_id=prd_id, sk=HEAD, snapshot_sk=sk, version=1).save(condition=DocItem.sk.does_not_exist())


def append_update(prd_id: str, update: bytes, *, origin: str, update_id: str | None = None) -> str:
    """Append one update (a conditional put: a retry with the same ``update_id`` is a no-op)."""
    sk = f"{UPDATE_PREFIX}{update_id or ulid()}"
    try:
        DocItem(prd_id=prd_id, sk=sk, data=update, origin=origin).save(condition=DocItem.sk.does_not_exist())
    except Exception as exc:
        from ..storage import is_conditional_failure

        if not is_conditional_failure(exc):
            raise
    return sk


def _snapshot_bytes(item: DocItem) -> bytes:
    if item.s3_key:
        raw = client("s3").get_object(Bucket=get_settings().documents_bucket, Key=item.s3_key)["Body"].read()
    else:
        raw = bytes(item.data or b"")
    return zlib.decompress(raw) if item.compression == "zlib" else raw


def read(prd_id: str) -> StoredDoc:
    """The current document: head -> snapshot -> all stored updates (consistent reads)."""
    for _attempt in range(3):
        try:
            head = DocItem.get(prd_id, HEAD, consistent_read=True)
        except DocItem.DoesNotExist as exc:
            raise NotFound("PRD document not found") from exc
        parts: list[bytes] = []
        if head.snapshot_sk:
            try:
                snapshot = DocItem.get(prd_id, head.snapshot_sk, consistent_read=True)
            except DocItem.DoesNotExist:
                continue  # a compactor moved head and removed this snapshot meanwhile: read again
            parts.append(_snapshot_bytes(snapshot))
        update_sks: list[str] = []
        for item in DocItem.query(prd_id, DocItem.sk.startswith(UPDATE_PREFIX), consistent_read=True):
            update_sks.append(item.sk)
            parts.append(bytes(item.data or b""))
        return StoredDoc(
            doc=document.load(parts),
            snapshot_sk=head.snapshot_sk,
            update_sks=tuple(update_sks),
            head_version=int(head.version or 0),
        )
    raise RuntimeError(f"document {prd_id} kept changing under the reader")


def delete_all(prd_id: str) -> int:
    """Remove every item (and S3 snapshot) of a document; returns the number of items removed."""
    removed = 0
    with DocItem.batch_write() as batch:
        for item in DocItem.query(prd_id, consistent_read=True):
            if item.s3_key:
                client("s3").delete_object(Bucket=get_settings().documents_bucket, Key=item.s3_key)
            batch.delete(item)
            removed += 1
    return removed
