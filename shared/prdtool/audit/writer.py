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


@dataclass
class AppendResult:
    day: str
    appended: int = 0
    skipped: int = 0  # already indexed (redelivered) or found in an object lost to in a race
    key: str | None = None
    conflicts: int = 0


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


def handle_sqs_batch(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Consume an SQS batch; returns the partial-batch response (``batchItemFailures``).

    A message that is not an entry fails alone (after ``maxReceiveCount`` it rests in the DLQ,
    which is alarmed); a partition that cannot be written fails the messages of that partition.
    """
    failures: list[str] = []
    by_message: dict[str, AuditEntry] = {}
    for item in records:
        message_id = str(item.get("messageId", ""))
        try:
            by_message[message_id] = parse_message(str(item.get("body", "")))
        except (ValueError, TypeError) as exc:
            logger.error("audit message rejected", extra={"message_id": message_id, "error": str(exc)})
            failures.append(message_id)
    outcome = write_entries(by_message.values())
    failures.extend(mid for mid, entry in by_message.items() if entry.id in outcome.failed_ids)
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in failures]}


def write_entries(entries: Iterable[AuditEntry]) -> BatchOutcome:
    """Append ``entries`` to their date partitions and index them; failures are per partition."""
    partitions: dict[str, dict[str, AuditEntry]] = defaultdict(dict)
    for entry in entries:
        partitions[chain.partition_of(entry.at)][entry.id] = entry  # one per id, even within a batch
    outcome = BatchOutcome()
    for day, items in sorted(partitions.items()):
        try:
            result = append_partition(day, list(items.values()))
        except Exception:
            logger.exception("audit partition write failed", extra={"date": day, "entries": len(items)})
            outcome.failed_ids.update(items)
            continue
        outcome.appended += result.appended
        outcome.skipped += result.skipped
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
                _index(key, ours)
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
        _index(key, fresh)
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


def _index(key: str, entries: Sequence[AuditEntry]) -> None:
    """Index ``entries`` by user and resource, then by day.

    The day items go last, in a second batch: the idempotency check reads them, so an entry
    counts as indexed only once all of its items are written, even if this call dies halfway.
    """
    items = []
    for entry in entries:
        data = json.dumps(entry.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        pks = [user_pk(entry.actor), *([resource_pk(entry.resource)] if entry.resource else []),
               day_pk(chain.partition_of(entry.at))]
        items.append([AuditIndexModel(pk, sort_key(entry.at, entry.id), entry=data, actor=entry.actor,
                                      object_key=key, expires_at=_expires_at(entry.at)) for pk in pks])
    for day_items_last in (False, True):
        with AuditIndexModel.batch_write() as batch:
            for views in items:
                for item in views[-1:] if day_items_last else views[:-1]:
                    batch.save(item)
