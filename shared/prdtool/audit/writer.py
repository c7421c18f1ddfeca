"""The audit queue's consumer: append each batch to its date partitions in S3, then index it.

Per partition (UTC date) and batch, one object ``audit/date=<date>/<seq>.jsonl.gz`` (see
:mod:`.chain`).  Writers are serialised per partition without a lock service: object ``seq`` is
written with ``IfNoneMatch='*'``, so of two writers that chose the same ``seq`` exactly one
succeeds; the other (HTTP 412) reads the object it lost to, chains after its last hash and tries
``seq + 1`` (bounded).  The chain head in DynamoDB (last seq, last hash) saves reading S3 to find
the end, and lets the verifier detect a truncated tail; it only ever moves forward.

Idempotency: the entry id is the key.  Before appending, entries already indexed are dropped, and
so are entries found in an object lost to in a race; index items are keyed by id, so writing one
twice changes nothing.  A crash between the S3 write and the index write makes a redelivery
append those entries again: the chain stays valid, the verifier counts the duplicates, and the
index (what queries read) still holds each entry once.

Order: entries are sorted by ``(at, id)`` within a batch; queries read the index, whose sort key
is ``<at>#<id>``, so results are in time order whatever order batches were chained in.

One bad entry never holds back the rest (partial batch response, ``batchItemFailures``; the event
source mapping has ``FunctionResponseTypes: [ReportBatchItemFailures]``):

* Every message is parsed, sanitised again (:func:`.recorder.sanitise`: UTF-8-safe text, JSON-safe
  numbers, bounded depth and field lengths, redaction) and put through :func:`check_storable` — the
  chain's own encode/decode/hash round trip and the index's key and item limits — *before* any
  write.  So an entry that reaches S3 is one that hashes, verifies and can be indexed and served.
* **Decision: a message that can never be stored fails alone; it is not stored in a sanitised
  form.**  That is a message that is not JSON, not an entry, has no ULID id or an impossible time —
  nothing any producer of ours sends (the recorder sanitises first, and whatever a hostile request
  carries is made storable, not rejected).  Without a valid id and time it has no idempotent place
  in the chain: a "sanitised" stand-in would get a fresh id on every redelivery and could not be
  told from a forged entry.  So it is reported failed (``AuditMessagesRejected`` is counted and the
  message logged), is retried alone, and after ``maxReceiveCount`` rests in the dead-letter queue —
  its exact bytes kept for forensics, the alarm raised — while the rest of its batch is stored and
  deleted from the queue.
* Failures after that are per partition (S3 or DynamoDB unavailable, too many racing writers): the
  messages of that date are retried, the others are not.  Should the index still refuse one entry
  (a ``ValidationException``: the pre-flight missed a limit), the object is already written and
  chained; the entries are indexed one by one and only the refused ones are reported failed.  A
  redelivery appends such an entry again (a duplicate the verifier counts, as after a crash), never
  a second index item.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.exceptions import PutError

from ..aws import client
from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings
from ..storage import is_conditional_failure
from . import chain
from .models import HEAD_SK, AuditHeadModel, AuditIndexModel, day_pk, head_pk, resource_pk, sort_key, user_pk
from .recorder import AuditEntry, sanitise

MAX_ATTEMPTS = 25  # objects lost to concurrent writers before a partition's batch is retried later
_CONFLICT_BACKOFF_SECONDS = 0.05
_LIST_AFTER_CONFLICTS = 3


class PartitionBusy(RuntimeError):
    """Too many concurrent writers on one partition: the batch is retried by SQS."""


# DynamoDB's limits on an index item (keys in UTF-8 bytes); the entry JSON is far below the 400 KB
# item limit once sanitised (changes are bounded to 8 KB), this only guards against a bug.
MAX_PK_BYTES = 2048
MAX_SK_BYTES = 1024
MAX_ENTRY_BYTES = 64 * 1024


@dataclass
class AppendResult:
    day: str
    appended: int = 0
    skipped: int = 0  # already indexed (redelivered) or found in an object lost to in a race
    key: str | None = None
    conflicts: int = 0
    failed_ids: set[str] = field(default_factory=set)  # stored in S3, but the index refused them


@dataclass
class BatchOutcome:
    appended: int = 0
    skipped: int = 0
    objects: list[str] = field(default_factory=list)
    failed_ids: set[str] = field(default_factory=set)


def parse_message(body: str) -> AuditEntry:
    """An entry from a queue message (sanitised again: the writer trusts no producer)."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("an audit message must be a JSON object")
    return sanitise(AuditEntry.from_dict(data))


def check_storable(entry: AuditEntry) -> None:
    """ValueError unless ``entry`` can be chained, read back, verified, indexed and served.

    Runs the functions the store and the verifier use (chain link, canonical line, JSON read back,
    hash check; the index's keys and item) on the entry alone, so a failure here is this entry's,
    found before it could fail a write shared with other entries.  About 0.1 ms an entry.
    """
    day = chain.partition_of(entry.at)
    (stored,) = chain.link([entry.to_dict()], chain.genesis(day))
    read_back = json.loads(chain.canonical(stored).decode("utf-8"))  # one line of an object, as decode reads it
    if read_back.get("id") != entry.id or read_back.get("hash") != chain.entry_hash(read_back):
        raise ValueError("the entry does not survive the chain's write/read/verify round trip")
    json.dumps(read_back, allow_nan=False)  # GET /api/audit answers standard JSON
    for pk, sk in _view_keys(entry):
        if len(pk.encode()) > MAX_PK_BYTES or len(sk.encode()) > MAX_SK_BYTES:
            raise ValueError("an index key of the entry exceeds DynamoDB's key size")
    if len(_index_json(entry).encode()) > MAX_ENTRY_BYTES:
        raise ValueError("the entry is too large to index")


def handle_sqs_batch(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Consume an SQS batch; returns the partial-batch response (``batchItemFailures``).

    A message that cannot be stored fails alone (after ``maxReceiveCount`` it rests in the DLQ,
    which is alarmed); a partition that cannot be written fails the messages of that partition
    only.  See the module docstring for why such a message is not stored in a sanitised form.
    """
    failures: list[str] = []
    by_message: dict[str, AuditEntry] = {}
    for item in records:
        message_id = str(item.get("messageId", ""))
        try:
            entry = parse_message(str(item.get("body", "")))
            check_storable(entry)
        except Exception as exc:  # whatever is wrong with this message, it must not fail the others
            logger.error("audit message rejected", extra={"message_id": message_id,
                                                          "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            metrics.add_metric(name="AuditMessagesRejected", unit=MetricUnit.Count, value=1)
            failures.append(message_id)
            continue
        by_message[message_id] = entry
    outcome = write_entries(by_message.values())
    failures.extend(mid for mid, entry in by_message.items() if entry.id in outcome.failed_ids)
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in failures]}


def write_entries(entries: Iterable[AuditEntry]) -> BatchOutcome:
    """Append ``entries`` to their date partitions and index them; failures are per partition
    (and per entry where the index refuses one)."""
    partitions: dict[str, dict[str, AuditEntry]] = defaultdict(dict)
    outcome = BatchOutcome()
    for entry in entries:
        try:
            day = chain.partition_of(entry.at)
        except (ValueError, OverflowError, OSError):  # a time no date can hold (handle_sqs_batch refuses it)
            logger.error("audit entry with an impossible time", extra={"id": entry.id})
            outcome.failed_ids.add(entry.id)
            continue
        partitions[day][entry.id] = entry  # one per id, even within a batch
    for day, items in sorted(partitions.items()):
        try:
            result = append_partition(day, list(items.values()))
        except Exception:
            logger.exception("audit partition write failed", extra={"date": day, "entries": len(items)})
            outcome.failed_ids.update(items)
            continue
        outcome.appended += result.appended
        outcome.skipped += result.skipped
        outcome.failed_ids.update(result.failed_ids)
        if result.key:
            outcome.objects.append(result.key)
    metrics.add_metric(name="AuditEntriesWritten", unit=MetricUnit.Count, value=outcome.appended)
    if outcome.skipped:
        metrics.add_metric(name="AuditEntriesSkipped", unit=MetricUnit.Count, value=outcome.skipped)
    return outcome


def append_partition(day: str, entries: Sequence[AuditEntry]) -> AppendResult:
    """Append ``entries`` (all of date ``day``) as one new object of the partition, then index them."""
    result = AppendResult(day=day)
    pending = sorted({e.id: e for e in entries}.values(), key=lambda e: (e.at, e.id))
    fresh = _not_yet_indexed(day, pending)
    result.skipped = len(pending) - len(fresh)
    if not fresh:
        return result
    s3 = client("s3")
    bucket = get_settings().audit_bucket
    seq, prev = read_head(day)
    for _ in range(MAX_ATTEMPTS):
        seq += 1
        key = chain.object_key(day, seq)
        stored = chain.link((e.to_dict() for e in fresh), prev)
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=chain.encode(stored), IfNoneMatch="*",
                          ContentType="application/gzip", Metadata={"entries": str(len(stored))})
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            if status == 409 or code == "ConditionalRequestConflict":
                seq -= 1  # a concurrent conditional write to this key is in flight: try it again
                result.conflicts += 1
                time.sleep(_CONFLICT_BACKOFF_SECONDS * result.conflicts)
                continue
            if status != 412 and code != "PreconditionFailed":
                raise
            result.conflicts += 1
            taken_ids, prev = _object_tail(bucket, key)
            ours = [e for e in fresh if e.id in taken_ids]
            if ours:
                # Already in that object: a racing redelivery wrote them, or our own put succeeded
                # and its response was lost (the SDK's retry then got 412). Either way they are
                # stored: make sure they are indexed and the head knows the object.
                _advance_head(day, seq, prev)
                result.failed_ids |= _index(key, ours)
                fresh = [e for e in fresh if e.id not in taken_ids]
                result.skipped += len(ours)
            if not fresh:
                return result
            if result.conflicts == _LIST_AFTER_CONFLICTS:
                # The head lags far behind (lost, or many writers): jump near the end. The next
                # attempt loses to the last object, reads it and chains after it.
                seq = max(seq, _last_seq(bucket, day, after=key) - 1)
            continue
        _advance_head(day, seq, stored[-1]["hash"])
        result.failed_ids |= _index(key, fresh)
        result.appended, result.key = len(fresh), key
        if result.conflicts:
            metrics.add_metric(name="AuditWriteConflicts", unit=MetricUnit.Count, value=result.conflicts)
        return result
    raise PartitionBusy(f"audit partition {day}: lost {MAX_ATTEMPTS} races for the next object")


def read_head(day: str) -> tuple[int, str]:
    """``(last seq, last hash)`` of a partition's chain head, or ``(0, genesis)``."""
    try:
        head = AuditHeadModel.get(head_pk(day), HEAD_SK, consistent_read=True)
    except AuditHeadModel.DoesNotExist:
        return 0, chain.genesis(day)
    return int(head.last_seq), str(head.last_hash)


def _advance_head(day: str, seq: int, last_hash: str) -> None:
    """Move the head to ``seq`` unless a faster writer already moved it further."""
    head = AuditHeadModel(head_pk(day), HEAD_SK, last_seq=seq, last_hash=last_hash,
                          updated_at=int(time.time()), expires_at=_expires_at(time.time() * 1000))
    try:
        head.save(condition=AuditHeadModel.pk.does_not_exist() | (AuditHeadModel.last_seq < seq))
    except PutError as exc:
        if not is_conditional_failure(exc):
            raise


def _object_tail(bucket: str, key: str) -> tuple[set[str], str]:
    """The entry ids of an existing object and the hash to chain after it."""
    body = client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        items = chain.decode(body)
    except ValueError:
        items = []
    if items and isinstance(items[-1].get("hash"), str):
        return {str(i.get("id", "")) for i in items}, str(items[-1]["hash"])
    # Unreadable (tampered with): chain on from its bytes, so the partition keeps accepting
    # entries; the verifier reports the object.
    logger.error("audit object unreadable; chaining after its content hash", extra={"key": key})
    return set(), hashlib.sha256(body).hexdigest()


def _last_seq(bucket: str, day: str, *, after: str) -> int:
    """The highest object seq of a partition after key ``after`` (0 if none)."""
    last = 0
    paginator = client("s3").get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=chain.partition_prefix(day), StartAfter=after):
        for obj in page.get("Contents", []):
            parsed = chain.parse_key(obj["Key"])
            if parsed:
                last = max(last, parsed[1])
    return last


def _not_yet_indexed(day: str, entries: Sequence[AuditEntry]) -> list[AuditEntry]:
    keys = [(day_pk(day), sort_key(e.at, e.id)) for e in entries]
    found = {str(item.sk) for item in AuditIndexModel.batch_get(keys, consistent_read=True,
                                                                  attributes_to_get=["pk", "sk"])}
    return [e for e in entries if sort_key(e.at, e.id) not in found]


def _expires_at(at_ms: float) -> int:
    return int(at_ms // 1000) + get_settings().audit_retention_days * 86400


def _view_keys(entry: AuditEntry) -> list[tuple[str, str]]:
    """The index keys of one entry: by user, by resource (if any), and by day — always last."""
    pks = [user_pk(entry.actor), *([resource_pk(entry.resource)] if entry.resource else []),
           day_pk(chain.partition_of(entry.at))]
    return [(pk, sort_key(entry.at, entry.id)) for pk in pks]


def _index_json(entry: AuditEntry) -> str:
    return json.dumps(entry.to_dict(), sort_keys=True, separators=(",", ":"), default=str)


def _views(key: str, entry: AuditEntry) -> list[AuditIndexModel]:
    """The index items of one entry (in :func:`_view_keys` order: the day item last)."""
    data = _index_json(entry)
    return [AuditIndexModel(pk, sk, entry=data, actor=entry.actor, object_key=key, expires_at=_expires_at(entry.at))
            for pk, sk in _view_keys(entry)]


def _write_views(items: Sequence[Sequence[AuditIndexModel]]) -> None:
    """Write the index items of some entries.

    The day items go last, in a second batch: the idempotency check reads them, so an entry
    counts as indexed only once all of its items are written, even if this call dies halfway.
    """
    for day_items_last in (False, True):
        with AuditIndexModel.batch_write() as batch:
            for views in items:
                for item in views[-1:] if day_items_last else views[:-1]:
                    batch.save(item)


def _refused(exc: PutError) -> bool:
    """DynamoDB refused an item itself (not a throttle or an outage, which the retry is for)."""
    return exc.cause_response_code == "ValidationException"


def _index(key: str, entries: Sequence[AuditEntry]) -> set[str]:
    """Index ``entries`` (stored in object ``key``); returns the ids of those the index refused.

    One ``BatchWriteItem`` refuses all its items for one invalid item, so after such a refusal the
    entries are indexed one by one and only the refused ones are returned (their messages fail
    alone).  Any other error propagates: the partition's messages are retried.
    """
    views = {entry.id: _views(key, entry) for entry in entries}
    try:
        _write_views(list(views.values()))
        return set()
    except PutError as exc:
        if not _refused(exc):
            raise
        logger.warning("the audit index refused a batch; indexing entry by entry", extra={"object": key})
    refused: set[str] = set()
    for entry_id, entry_views in views.items():
        try:
            _write_views([entry_views])
        except PutError as exc:
            if not _refused(exc):
                raise
            logger.error("the audit index refused an entry", extra={"id": entry_id, "object": key,
                                                                   "error": str(exc)[:300]})
            refused.add(entry_id)
    return refused
