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

import hashlib
import time
import zlib
from dataclasses import dataclass, field

from pycrdt import Doc, merge_updates
from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from .. import dynamo
from ..aws import client
from ..errors import NotFound
from ..ids import ulid
from ..settings import get_settings
from ..storage import is_conditional_failure, register, table_meta
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
    state_bytes = NumberAttribute(null=True)  # on the head item: size of the snapshot it names
    origin = UnicodeAttribute(null=True)  # who produced an update (username or "server")
    created_at = NumberAttribute(default=lambda: int(time.time() * 1000))


@dataclass(frozen=True)
class StoredDoc:
    """The state of a document as read from the store, with the keys that produced it."""

    doc: Doc
    snapshot_sk: str | None
    update_sks: tuple[str, ...]
    head_version: int
    update_origins: tuple[str, ...] = ()
    last_update_at: int = 0  # epoch ms of the newest stored update (0 if none)
    s3_keys: tuple[str, ...] = ()  # S3 bodies of the snapshot and updates read
    updates: tuple[bytes, ...] = ()  # the uncompacted updates themselves

    def update_since(self, state_vector: bytes | None = None) -> bytes:
        """Everything a peer at ``state_vector`` lacks (all of it when None), losing nothing.

        ``Doc.get_update`` leaves out what the document cannot integrate yet: an update whose
        predecessor from the same client has not arrived (frames of one connection can be stored
        out of order by concurrent invocations) and deletions of items not seen yet.  Merging the
        raw stored updates back in keeps those until their predecessors arrive; when nothing is
        pending the merge adds nothing (the integrated state already covers every update).
        """
        missing = self.doc.get_update(state_vector) if state_vector is not None else self.doc.get_update()
        return merge_updates(missing, *self.updates) if self.updates else missing


@dataclass(frozen=True)
class Compaction:
    """What one compaction did."""

    prd_id: str
    folded: int  # updates folded into the new snapshot
    snapshot_sk: str | None
    snapshot_bytes: int
    editors: tuple[str, ...] = field(default_factory=tuple)
    last_update_at: int = 0


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
    DocItem(prd_id=prd_id, sk=HEAD, snapshot_sk=sk, version=1, state_bytes=len(state)).save(
        condition=DocItem.sk.does_not_exist())


def document_bytes(prd_id: str) -> int:
    """The encoded size of the document at its last compaction (0 if unknown); one GetItem."""
    try:
        head = DocItem.get(prd_id, HEAD, attributes_to_get=["state_bytes"])
    except DocItem.DoesNotExist:
        return 0
    return int(head.state_bytes or 0)


def update_key(update: bytes) -> str:
    """The sort key of an update: its content hash, so storing the same bytes twice (a Lambda retry,
    a client resending after a reconnect) writes one item."""
    return f"{UPDATE_PREFIX}{hashlib.sha256(update).hexdigest()[:32]}"


def append_update(prd_id: str, update: bytes, *, origin: str) -> tuple[str, bool]:
    """Append one update with a conditional put; returns its key and whether it was new.

    Updates too large for an item (a big paste) go to S3 under their content hash first.
    """
    sk = update_key(update)
    item = DocItem(prd_id=prd_id, sk=sk, origin=origin)
    if len(update) > INLINE_SNAPSHOT_LIMIT:
        key = f"docs/{prd_id}/updates/{sk.removeprefix(UPDATE_PREFIX)}.bin"
        client("s3").put_object(Bucket=get_settings().documents_bucket, Key=key, Body=zlib.compress(update, 6))
        item.s3_key, item.compression = key, "zlib"
    else:
        item.data = update
    # The keystroke path: the lean JSON call (prdtool.dynamo), not Model.save (the same item).
    return sk, dynamo.put_new(DocItem.Meta.table_name, item.serialize(), "sk")


def _item_bytes(item: DocItem) -> bytes:
    if item.s3_key:
        raw = client("s3").get_object(Bucket=get_settings().documents_bucket, Key=item.s3_key)["Body"].read()
    else:
        raw = bytes(item.data or b"")
    return zlib.decompress(raw) if item.compression == "zlib" else raw


#: Updates per ``Query`` page when the compactor reads them (``read(page_size=...)``).  A busy PRD
#: gathers 500-1,000 updates between compactions; read as one page, that one request held the local
#: stack's DynamoDB (moto serves one request at a time) for 26-98 ms, and every keystroke queued
#: behind it.  A page of 100 holds it ~5-10 ms (with ``moto_fast.fast_string_comparisons``).  In AWS
#: it costs the background compactor a few more round trips; interactive reads (a document's open)
#: still take whole pages.
COMPACTION_PAGE_SIZE = 100


def read(prd_id: str, *, page_size: int | None = None) -> StoredDoc:
    """The current document: every stored update, then head, then the snapshot it names.

    This order needs no extra read to be safe against a concurrent compactor, which moves
    ``head`` *before* deleting the updates it folded in: updates queried before the head is read
    are either still there or inside the snapshot the head then names.  If that snapshot was
    deleted in between by a later compaction, read again.  ``page_size``: updates per query page
    (DynamoDB's 1 MB pages if None).
    """
    for _attempt in range(5):
        parts: list[bytes] = []
        update_sks: list[str] = []
        origins: list[str] = []
        blobs: list[str] = []
        last_at = 0
        # Arrival order (created_at) is close to causal order, which keeps merging cheap; keys
        # are content hashes, so the query's own order is random.
        # (the lean JSON call, prdtool.dynamo: a compaction reads 500-1,000 updates, and botocore's
        # parsing of them cost the doc writer more CPU than the rest of the compaction)
        items = sorted((DocItem.from_raw_data(raw) for raw in dynamo.query(
                            DocItem.Meta.table_name, "#p = :p AND begins_with(#s, :s)", {"#p": "prd_id", "#s": "sk"},
                            {":p": {"S": prd_id}, ":s": {"S": UPDATE_PREFIX}}, page_size=page_size)),
                       key=lambda i: int(i.created_at or 0))
        for item in items:
            update_sks.append(item.sk)
            origins.append(item.origin or "")
            last_at = max(last_at, int(item.created_at or 0))
            parts.append(_item_bytes(item))
            if item.s3_key:
                blobs.append(item.s3_key)
        try:
            head = DocItem.get(prd_id, HEAD, consistent_read=True)
        except DocItem.DoesNotExist as exc:
            raise NotFound("PRD document not found") from exc
        if head.snapshot_sk:
            try:
                snapshot = DocItem.get(prd_id, head.snapshot_sk, consistent_read=True)
            except DocItem.DoesNotExist:
                continue  # compacted twice meanwhile: read again
            parts.insert(0, _item_bytes(snapshot))
            if snapshot.s3_key:
                blobs.append(snapshot.s3_key)
        return StoredDoc(
            doc=document.load(parts),
            snapshot_sk=head.snapshot_sk,
            update_sks=tuple(update_sks),
            head_version=int(head.version or 0),
            update_origins=tuple(origins),
            last_update_at=last_at,
            s3_keys=tuple(blobs),
            updates=tuple(parts[1:] if head.snapshot_sk else parts),
        )
    raise RuntimeError(f"document {prd_id} kept changing under the reader")


def compact(prd_id: str) -> Compaction:
    """Fold every stored update into a new snapshot; safe against concurrent writers and compactors.

    1. read the snapshot and all updates; 2. write the new snapshot under a new key; 3. move
    ``head`` to it with a compare-and-set on its version; 4. only then delete exactly the items
    read (and their S3 bodies).  A crash after 2 leaves an unreferenced snapshot, after 3 leaves
    updates that are also in the snapshot: both harmless (the daily GC removes strays).
    A lost compare-and-set means another compactor won: ours is discarded and nothing is lost.
    """
    stored = read(prd_id, page_size=COMPACTION_PAGE_SIZE)
    if not stored.update_sks:
        return Compaction(prd_id, 0, stored.snapshot_sk, 0)
    state = stored.update_since(None)  # lossless: keeps updates still waiting for a predecessor
    new_sk = write_snapshot(prd_id, state)
    head = DocItem(prd_id=prd_id, sk=HEAD)
    try:
        # The version moves with every head change, so this compare-and-set admits one winner.
        head.update(actions=[DocItem.snapshot_sk.set(new_sk), DocItem.version.set(stored.head_version + 1),
                             DocItem.state_bytes.set(len(state))],
                    condition=DocItem.version == stored.head_version)
    except UpdateError as exc:
        _delete_items(prd_id, [new_sk], [])
        if is_conditional_failure(exc):
            return Compaction(prd_id, 0, stored.snapshot_sk, 0)
        raise
    obsolete = list(stored.update_sks) + ([stored.snapshot_sk] if stored.snapshot_sk else [])
    _delete_items(prd_id, obsolete, list(stored.s3_keys))
    editors = tuple(dict.fromkeys(o for o in stored.update_origins if o and o != "server"))
    return Compaction(prd_id, len(stored.update_sks), new_sk, len(state), editors, stored.last_update_at)


def _delete_items(prd_id: str, sort_keys: list[str], s3_keys: list[str]) -> None:
    # (the lean JSON call, as in read(): a compaction deletes every update it folded in)
    dynamo.batch_delete(DocItem.Meta.table_name, [{"prd_id": {"S": prd_id}, "sk": {"S": sk}} for sk in sort_keys])
    bucket = get_settings().documents_bucket
    for key in s3_keys:
        client("s3").delete_object(Bucket=bucket, Key=key)


def has_pending_updates(prd_id: str) -> bool:
    """Whether any update waits to be compacted (one query of one key: cheap however many wait)."""
    found = DocItem.query(prd_id, DocItem.sk.startswith(UPDATE_PREFIX), consistent_read=True, limit=1,
                          attributes_to_get=["prd_id", "sk"])
    return next(iter(found), None) is not None


def pending_updates(prd_id: str) -> int:
    """How many updates wait to be compacted (one query, keys only)."""
    return DocItem.count(prd_id, DocItem.sk.startswith(UPDATE_PREFIX), consistent_read=True)


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
