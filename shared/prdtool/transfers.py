"""Imports and exports (TransfersTable): one item per file coming in or going out.

An import: ``queued`` (the upload is in S3 under ``imports/<id>/``) → ``running`` → ``done`` (the PRD it
made and the report) or ``failed`` (a message a person can act on).  An export: ``queued`` →
``running`` → ``done`` (the file under ``exports/<id>/``, kept 24 h) or ``failed``.  Transitions are
conditional on the status, so a redelivered message never works on a transfer twice at once, and the
PRD an import makes has its id chosen before it is created (a retry finds it rather than making a
second one).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.models import Model

from .errors import Conflict, NotFound
from .ids import is_ulid, ulid
from .storage import is_conditional_failure, register, table_meta

UPLOADING, QUEUED, RUNNING, DONE, FAILED = "uploading", "queued", "running", "done", "failed"
IMPORT, EXPORT = "import", "export"
RETENTION_DAYS = 30  # the records (not the files: exports 24 h, uploads 7 days by lifecycle rules)


@register
class TransferItem(Model):
    Meta = table_meta("transfers_table")

    id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()  # import | export
    owner = UnicodeAttribute()  # who asked
    status = UnicodeAttribute()
    created_at = NumberAttribute()  # epoch ms
    updated_at = NumberAttribute()
    filename = UnicodeAttribute(null=True)  # import: as uploaded; export: as downloaded
    title = UnicodeAttribute(null=True)
    source_key = UnicodeAttribute(null=True)  # import: the upload in S3
    size = NumberAttribute(null=True)
    detected = UnicodeAttribute(null=True)  # import: docx | pdf | html | markdown
    prd_id = UnicodeAttribute(null=True)  # import: the PRD made (chosen before); export: the PRD
    report = UnicodeAttribute(null=True)  # import: the report, JSON
    format = UnicodeAttribute(null=True)  # export
    version = UnicodeAttribute(null=True)  # export: the version exported
    object_key = UnicodeAttribute(null=True)  # export: the file in S3
    warnings = UnicodeAttribute(null=True)  # export: JSON list
    file_expires_at = NumberAttribute(null=True)  # export: epoch s the link (and the file) end
    error_code = UnicodeAttribute(null=True)
    error_message = UnicodeAttribute(null=True)
    attempts = NumberAttribute(null=True)
    page_id = UnicodeAttribute(null=True)  # export to Confluence: the page (and, on a link item, its PRD's page)
    page_url = UnicodeAttribute(null=True)
    page_version = NumberAttribute(null=True)
    draft_missing = BooleanAttribute(null=True)  # import: ask the AI to draft the missing sections
    ai_job_id = UnicodeAttribute(null=True)  # import: the AI job drafting the missing sections
    ai_note = UnicodeAttribute(null=True)  # import: why no such job was started
    expires_at = NumberAttribute(null=True)  # TTL, epoch s


@dataclass(frozen=True)
class Transfer:
    id: str
    kind: str
    owner: str
    status: str
    created_at: int
    updated_at: int
    filename: str | None = None
    title: str | None = None
    source_key: str | None = None
    size: int | None = None
    detected: str | None = None
    prd_id: str | None = None
    report: dict[str, Any] | None = None
    format: str | None = None
    version: str | None = None
    object_key: str | None = None
    warnings: tuple[str, ...] = ()
    file_expires_at: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    page_id: str | None = None
    page_url: str | None = None
    page_version: int | None = None
    draft_missing: bool = False
    ai_job_id: str | None = None
    ai_note: str | None = None

    @classmethod
    def of(cls, item: TransferItem) -> Transfer:
        return cls(id=item.id, kind=item.kind, owner=item.owner, status=item.status,
                   created_at=int(item.created_at), updated_at=int(item.updated_at), filename=item.filename,
                   title=item.title, source_key=item.source_key,
                   size=int(item.size) if item.size is not None else None, detected=item.detected,
                   prd_id=item.prd_id, report=json.loads(item.report) if item.report else None,
                   format=item.format, version=item.version, object_key=item.object_key,
                   warnings=tuple(json.loads(item.warnings)) if item.warnings else (),
                   file_expires_at=int(item.file_expires_at) if item.file_expires_at is not None else None,
                   error_code=item.error_code, error_message=item.error_message,
                   attempts=int(item.attempts or 0), ai_job_id=item.ai_job_id, ai_note=item.ai_note,
                   draft_missing=bool(item.draft_missing), page_id=item.page_id, page_url=item.page_url,
                   page_version=int(item.page_version) if item.page_version is not None else None)

    @property
    def error(self) -> dict[str, str] | None:
        return {"code": self.error_code, "message": self.error_message or ""} if self.error_code else None


def now_ms() -> int:
    return int(time.time() * 1000)


def new(kind: str, owner: str, *, status: str = QUEUED, **fields: Any) -> Transfer:
    now = now_ms()
    item = TransferItem(id=ulid(), kind=kind, owner=owner, status=status, created_at=now, updated_at=now,
                        attempts=0, expires_at=now // 1000 + RETENTION_DAYS * 86_400, **fields)
    item.save(condition=TransferItem.id.does_not_exist())
    return Transfer.of(item)


def get(transfer_id: str, kind: str) -> Transfer:
    """The transfer of this kind, or 404 (an import id is not an export)."""
    if not is_ulid(transfer_id):
        raise NotFound(f"{kind} not found", code=f"{kind}_not_found")
    try:
        found = Transfer.of(TransferItem.get(transfer_id, consistent_read=True))
    except DoesNotExist:
        raise NotFound(f"{kind} not found", code=f"{kind}_not_found") from None
    if found.kind != kind:
        raise NotFound(f"{kind} not found", code=f"{kind}_not_found")
    return found


def _update(transfer_id: str, actions: list[Any], condition: Any) -> Transfer:
    item = TransferItem(id=transfer_id)
    try:
        item.update(actions=[*actions, TransferItem.updated_at.set(now_ms())],
                    condition=TransferItem.id.exists() & condition)
    except UpdateError as exc:
        if is_conditional_failure(exc):
            raise Conflict("the transfer is not in the state this step needs", code="transfer_state") from None
        raise
    return Transfer.of(item)


def uploaded(transfer_id: str, **fields: Any) -> Transfer:
    """uploading → queued: the presigned upload arrived and passed the first checks."""
    return _update(transfer_id, [TransferItem.status.set(QUEUED)]
                   + [getattr(TransferItem, name).set(value) for name, value in fields.items()],
                   TransferItem.status == UPLOADING)


def start(transfer_id: str, *, stale_before: int, **fields: Any) -> Transfer:
    """queued → running (or take over a run that has not moved since ``stale_before``, epoch ms)."""
    actions = [TransferItem.status.set(RUNNING), TransferItem.attempts.add(1)]
    actions += [getattr(TransferItem, name).set(value) for name, value in fields.items()]
    return _update(transfer_id, actions, (TransferItem.status == QUEUED)
                   | ((TransferItem.status == RUNNING) & (TransferItem.updated_at < stale_before)))


def note(transfer_id: str, **fields: Any) -> Transfer:
    """Record progress while running (e.g. the PRD id chosen before it is created)."""
    return _update(transfer_id, [getattr(TransferItem, name).set(value) for name, value in fields.items()],
                   TransferItem.status == RUNNING)


def finish(transfer_id: str, **fields: Any) -> Transfer:
    actions = [TransferItem.status.set(DONE)]
    actions += [getattr(TransferItem, name).set(value) for name, value in fields.items()]
    return _update(transfer_id, actions, TransferItem.status == RUNNING)


def fail(transfer_id: str, code: str, message: str) -> Transfer:
    return _update(transfer_id, [TransferItem.status.set(FAILED), TransferItem.error_code.set(code),
                                 TransferItem.error_message.set(message)],
                   TransferItem.status.is_in(UPLOADING, QUEUED, RUNNING))


def annotate(transfer_id: str, **fields: Any) -> Transfer:
    """Add to a finished transfer what happened after it (an import's AI job for the missing sections)."""
    return _update(transfer_id, [getattr(TransferItem, name).set(value) for name, value in fields.items()],
                   TransferItem.status == DONE)


# A PRD's Confluence page: one item per PRD (``confluence#<prdId>``, never a ULID, so never a transfer),
# so that every export after the first updates the page the first one created.
def _page_key(prd_id: str) -> str:
    return f"confluence#{prd_id}"


def confluence_page(prd_id: str) -> tuple[str, str | None] | None:
    """``(page id, page url)`` of the PRD's Confluence page, or None before its first publication."""
    try:
        item = TransferItem.get(_page_key(prd_id), consistent_read=True)
    except DoesNotExist:
        return None
    return (str(item.page_id), item.page_url) if item.page_id else None


def remember_confluence_page(prd_id: str, *, owner: str, page_id: str, page_url: str, version: int) -> None:
    now = now_ms()
    TransferItem(id=_page_key(prd_id), kind="confluence-page", owner=owner, status=DONE, created_at=now,
                 updated_at=now, prd_id=prd_id, page_id=page_id, page_url=page_url, page_version=version).save()


STALE_MS = 15 * 60 * 1000  # a run that has not moved for this long lost its worker (Lambda's limit)


def run(transfer_id: str, kind: str, work: Callable[[Transfer], Transfer], tell: Callable[[Transfer], None],
        metric: str) -> str:
    """One queued transfer, as its worker runs it (the import and export workers share this):
    skip what does not exist, is finished or is being run by another delivery; ``work`` it; fail it
    with the domain error's reason (or an internal error, logged); tell the owner either way.  Metrics
    ``<metric>Done`` / ``<metric>Failed``.  Returns what happened, for the batch's log."""
    from .errors import DomainError
    from .observability import MetricUnit, logger, metrics

    try:
        found = get(transfer_id, kind)
    except DomainError:
        logger.warning("a transfer on the queue does not exist", extra={"transfer_id": transfer_id, "kind": kind})
        return "missing"
    if found.status in (DONE, FAILED):
        return "skipped"
    try:
        running = start(transfer_id, stale_before=now_ms() - STALE_MS)
    except Conflict:
        return "skipped"  # another delivery is on it
    try:
        done = work(running)
    except DomainError as err:
        failed = fail(transfer_id, err.code, err.message)
    except Exception:
        logger.exception("a transfer failed", extra={"transfer_id": transfer_id, "kind": kind})
        failed = fail(transfer_id, "internal_error",
                      f"the {kind} failed on our side; it has been logged. Please try again")
    else:
        tell(done)
        metrics.add_metric(name=f"{metric}Done", unit=MetricUnit.Count, value=1)
        return "done"
    tell(failed)
    metrics.add_metric(name=f"{metric}Failed", unit=MetricUnit.Count, value=1)
    return "failed"
