"""After a version: keep the PRD's repository compact and its old versions in cold storage.

Runs on ``prd.version.created`` (VersionFunction, a second EventBridge rule), never on the cut's
own path, so a cut's time does not depend on how much history there is to tidy:

- **Repack**: each commit writes a small pack; past ``REPACK_THRESHOLD`` packs, the small ones are
  merged into one deltified pack (geometrically: see ``S3ObjectStore.repack_if_needed``).
- **Archival**: only the newest ``VERSION_HOT_COUNT`` (50) versions keep their Markdown in S3
  Standard under ``versions/<prdId>/`` and their full record in DynamoDB.  Each older one moves to
  ``archive/versions/<prdId>/<version>.json.gz`` (gzip of ``{"markdown", "details", "message"}``,
  storage class ``VERSION_ARCHIVE_STORAGE_CLASS``, Glacier Instant Retrieval by default: cheaper to
  keep, still read in milliseconds); its record keeps number, summary, authors, commit and times,
  and points at the archive.  Reading, diffing or restoring an archived version reads the archive.
  The git history is never touched: every version stays complete there.

Order per version makes a crash harmless: write the archive, then repoint the record (conditional
on its old key), then delete the old object.  Archivers may run at once (one per new version): each
version is repointed by exactly one of them, and one that finds the old object gone checks that
the record was repointed.  A crash before the repoint leaves an archive object
that the next run overwrites with the same bytes; after it, at most an orphaned Standard object.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from ..aws import client
from ..observability import logger
from ..settings import get_settings
from . import records

ARCHIVE_PREFIX = "archive/versions/"
ARCHIVE_SUFFIX = ".json.gz"


def archive_key(prd_id: str, version: str) -> str:
    return f"{ARCHIVE_PREFIX}{prd_id}/{version}{ARCHIVE_SUFFIX}"


def is_archive_key(key: str) -> bool:
    return key.startswith(ARCHIVE_PREFIX) and key.endswith(ARCHIVE_SUFFIX)


def read_archive(key: str) -> dict[str, Any]:
    """An archived version's ``markdown``, ``details`` and ``message``."""
    body = client("s3").get_object(Bucket=get_settings().documents_bucket, Key=key)["Body"].read()
    found = json.loads(gzip.decompress(body))
    if not isinstance(found, dict) or not isinstance(found.get("markdown"), str):
        raise ValueError(f"{key} is not a version archive")
    return found


def after_version(prd_id: str) -> dict[str, int]:
    """What ``prd.version.created`` triggers: repack if needed, then archive beyond the hot count.
    Each part is independent: a failing repack does not stop archival (and is logged)."""
    merged = 0
    try:
        merged = repack(prd_id)
    except Exception:
        logger.exception("repack failed (the next version tries again)", extra={"prd_id": prd_id})
    return {"repacked_objects": merged, "archived": archive(prd_id)}


def repack(prd_id: str) -> int:
    from . import gitstore

    with gitstore.open_repo(client("s3"), get_settings().documents_bucket, prd_id) as repo:
        return repo.object_store.repack_if_needed()


def archive(prd_id: str, *, keep: int | None = None) -> int:
    """Move the versions beyond the newest ``keep`` (default ``VERSION_HOT_COUNT``) to the archive;
    returns how many moved."""
    settings = get_settings()
    keep = settings.version_hot_count if keep is None else keep
    head = records.head(prd_id)
    # ``counter`` counts every version begun; pending ones are the newest, never archived here.
    excess = head.counter - head.archived_count - max(keep, 1)
    if excess <= 0:
        return 0
    moved = 0
    candidates = records.oldest_unarchived(prd_id, head, excess)
    for version in candidates:
        if version.state != records.COMMITTED:
            break  # never archive past a version still being made
        if version.archived_at is None:
            _archive_one(version, settings.documents_bucket, settings.version_archive_storage_class)
        moved += 1
    if moved:
        records.advance_archived(prd_id, head, count=moved, through=candidates[moved - 1].version)
        logger.info("archived old versions", extra={"prd_id": prd_id, "count": moved})
    return moved


def _archive_one(version: records.Version, bucket: str, storage_class: str) -> None:
    s3 = client("s3")
    old_key = version.markdown_key
    try:
        markdown = s3.get_object(Bucket=bucket, Key=old_key)["Body"].read().decode("utf-8")
    except s3.exceptions.NoSuchKey:
        if records.get(version.prd_id, version.version).archived_at is not None:
            return  # another archiver moved it meanwhile (its last step deletes the Standard copy)
        raise
    body = json.dumps({"version": version.version, "markdown": markdown, "details": list(version.details),
                       "message": version.message}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    key = archive_key(version.prd_id, version.version)
    # mtime=0: the same version always gives the same bytes.
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body, mtime=0), ContentType="application/gzip",
                  StorageClass=storage_class)
    if records.mark_archived(version.prd_id, version.version, old_key=old_key, archive_key=key,
                             at_ms=records.now_ms()):
        s3.delete_object(Bucket=bucket, Key=old_key)
