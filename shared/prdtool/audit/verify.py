"""Verifying a date partition of the audit trail: recompute its hash chain from S3.

Detects a modified entry (hash mismatch), a deleted, inserted or reordered entry or object (broken
link, missing seq), an unreadable object, a truncated tail (the DynamoDB chain head records more
than S3 holds), and an indexed entry missing from S3.  Reads happen in the order the writer writes
in reverse (index, then head, then S3), so a write in flight never looks like tampering.

Called by ``GET /api/audit/verify`` and by the daily maintenance; a failed verification is
logged with its problems and counted (metric ``AuditVerifyFailed``, alarmed in the template).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from ..aws import client
from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings
from . import chain
from .models import HEAD_SK, AuditHeadModel, AuditIndexModel, day_pk, head_pk

MAX_LISTED_MISSING = 20


def verify_partition(day: str) -> dict[str, Any]:
    """``{"date", "ok", "entries", "objects", "duplicates", "problems": [{"object", "line", "problem"}]}``.

    ``day`` is ``YYYY-MM-DD`` (ValueError otherwise).  An empty partition with no head is ok.
    """
    day = chain.parse_date(day)
    indexed = _indexed_ids(day)
    head_seq, head_hash = _head(day)
    report = chain.check_objects(day, _read_objects(day))
    chain.check_head(report, head_seq, head_hash)
    missing = sorted(indexed - report.ids)
    for entry_id in missing[:MAX_LISTED_MISSING]:
        report.problem("", 0, f"entry {entry_id} is indexed but missing from the partition (deleted)")
    if len(missing) > MAX_LISTED_MISSING:
        report.problem("", 0, f"{len(missing) - MAX_LISTED_MISSING} more indexed entries are missing")
    ok = not report.problems
    result = {"date": day, "ok": ok, "entries": report.entries, "objects": report.objects,
              "duplicates": report.duplicates, "problems": report.problems}
    _emit(result)
    return result


def verify_previous_day(now: datetime | None = None) -> dict[str, Any]:
    """Verify yesterday's partition (UTC): the last one no writer appends to any more."""
    moment = now or datetime.now(UTC)
    return verify_partition((moment.astimezone(UTC).date() - timedelta(days=1)).isoformat())


def _emit(result: dict[str, Any]) -> None:
    from aws_lambda_powertools.metrics import single_metric

    # Flushed at once, whichever handler calls this (the API's does not flush shared metrics).
    with single_metric(name="AuditVerifyFailed", unit=MetricUnit.Count, value=0 if result["ok"] else 1,
                       namespace=metrics.namespace):
        pass
    if result["ok"]:
        logger.info("audit partition verified", extra={k: v for k, v in result.items() if k != "problems"})
    else:
        logger.error("audit partition failed verification", extra=result)


def _indexed_ids(day: str) -> set[str]:
    return {str(item.sk).partition("#")[2]
            for item in AuditIndexModel.query(day_pk(day), attributes_to_get=["pk", "sk"], page_size=1000)}


def _head(day: str) -> tuple[int, str]:
    try:
        head = AuditHeadModel.get(head_pk(day), HEAD_SK, consistent_read=True)
    except AuditHeadModel.DoesNotExist:
        return 0, ""
    return int(head.last_seq), str(head.last_hash)


def _read_objects(day: str) -> list[tuple[str, bytes | None]]:
    s3 = client("s3")
    bucket = get_settings().audit_bucket
    keys = [obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=chain.partition_prefix(day))
            for obj in page.get("Contents", [])]

    def read(key: str) -> tuple[str, bytes | None]:
        try:
            return key, s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception:
            logger.exception("audit object could not be read", extra={"key": key})
            return key, None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(read, keys))
