"""Imports over HTTP: take the upload, check what it is, queue it (``ImportWorkerFunction`` converts).

``POST /api/imports`` (multipart, the file in ``file``, optional ``title``) stores the upload under
``imports/<id>/source`` and queues the import: 202 with the import id.  The type is decided by the
content (:mod:`.sniff`) right away, so an unsupported or mislabelled file is refused at once (415,
422) rather than after a round trip through the queue.  ``GET /api/imports/{id}``: the owner only.
"""

from __future__ import annotations

import json
from typing import Any

from .. import transfers
from ..auth.principal import Principal
from ..errors import Conflict, DependencyFailed, DomainError, Forbidden, NotFound, PayloadTooLarge, Unprocessable
from ..observability import logger
from ..settings import get_settings


def source_key(import_id: str) -> str:
    return f"imports/{import_id}/source"


def _may_create(principal: Principal) -> None:
    if principal.prd_scope:
        raise Forbidden("this API key is limited to some PRDs and may not create new ones", code="api_key_scope")


def _too_large(size: int, limit: int, how: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"the file has {size:,} bytes; {how} take at most {limit:,}", code="file_too_large")


def _queue(transfer_id: str) -> None:
    from ..aws import client

    try:
        client("sqs").send_message(QueueUrl=get_settings().import_queue_url,
                                   MessageBody=json.dumps({"id": transfer_id}))
    except Exception as exc:
        logger.exception("could not queue an import", extra={"import_id": transfer_id})
        transfers.fail(transfer_id, "unavailable", "the import could not be queued; try again")
        raise DependencyFailed("the import queue is unavailable; try again in a moment") from exc


def start(principal: Principal, *, filename: str, data: bytes, title: str | None,
          draft_missing: bool = True) -> dict[str, Any]:
    """A direct (multipart) upload: checked, stored and queued at once."""
    from ..aws import client
    from .sniff import detect

    settings = get_settings()
    _may_create(principal)
    if len(data) > settings.import_max_bytes:
        raise _too_large(len(data), settings.import_max_bytes,
                         "direct uploads (larger files: POST /api/imports/uploads)")
    if not data:
        raise Unprocessable("the file is empty", code="empty_file")
    kind = detect(data, filename)
    transfer = transfers.new(transfers.IMPORT, principal.username, filename=filename[:255], title=title,
                             size=len(data), detected=str(kind), draft_missing=draft_missing)
    try:
        client("s3").put_object(Bucket=settings.documents_bucket, Key=source_key(transfer.id), Body=data)
    except Exception as exc:
        logger.exception("could not store an upload", extra={"import_id": transfer.id})
        transfers.fail(transfer.id, "unavailable", "the upload could not be stored; try again")
        raise DependencyFailed("the document store is unavailable; try again in a moment") from exc
    _queue(transfer.id)
    return {"importId": transfer.id, "status": transfer.status, "detected": str(kind)}


def create_upload(principal: Principal, *, filename: str, size: int | None, title: str | None,
                  draft_missing: bool = True) -> dict[str, Any]:
    """A large file: an import waiting for its upload, and the presigned S3 POST form to send it with.

    S3 itself refuses a file over the limit (the form's ``content-length-range``; exactly ``size``
    bytes when the size was declared) or sent after the form expired; ``complete_upload`` checks again.
    """
    from ..aws import presigner

    settings = get_settings()
    _may_create(principal)
    limit = settings.import_upload_max_bytes
    if size is not None and size > limit:
        raise _too_large(size, limit, "imports")
    if size is not None and size <= 0:
        raise Unprocessable("the file is empty", code="empty_file")
    transfer = transfers.new(transfers.IMPORT, principal.username, status=transfers.UPLOADING,
                             filename=filename[:255], title=title, size=size, draft_missing=draft_missing)
    expires_in = settings.import_upload_seconds
    low, high = (size, size) if size is not None else (1, limit)
    form = presigner().generate_presigned_post(
        settings.documents_bucket, source_key(transfer.id), ExpiresIn=expires_in,
        Conditions=[["content-length-range", low, high]])
    return {"importId": transfer.id, "status": transfer.status,
            "upload": {"url": form["url"], "fields": form["fields"], "method": "POST", "fileField": "file",
                       "expiresAt": int(transfers.now_ms() / 1000) + expires_in, "maxBytes": high}}


def complete_upload(principal: Principal, import_id: str) -> dict[str, Any]:
    """The upload is in S3: check it like a direct upload and queue it (again: the same answer)."""
    from ..aws import client
    from .sniff import detect

    found = _own(principal, import_id)
    if found.status != transfers.UPLOADING:
        if found.status == transfers.FAILED:
            raise Conflict(f"this import failed: {found.error_message}", code="import_failed")
        return {"importId": found.id, "status": found.status, "detected": found.detected}
    settings = get_settings()
    s3, key = client("s3"), source_key(found.id)
    try:
        size = int(s3.head_object(Bucket=settings.documents_bucket, Key=key)["ContentLength"])
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        raise Conflict("the file has not been uploaded yet: POST it with the upload form first",
                       code="upload_missing") from None

    def refuse(err: DomainError) -> DomainError:
        transfers.fail(found.id, err.code, err.message)
        s3.delete_object(Bucket=settings.documents_bucket, Key=key)
        return err

    if size > settings.import_upload_max_bytes:  # S3 enforces it; a second look costs nothing
        raise refuse(_too_large(size, settings.import_upload_max_bytes, "imports"))
    if size == 0:
        raise refuse(Unprocessable("the file is empty", code="empty_file"))
    filename = found.filename or "upload"
    whole = size <= settings.import_max_bytes
    data = s3.get_object(Bucket=settings.documents_bucket, Key=key,
                         Range=f"bytes=0-{(size if whole else 4096) - 1}")["Body"].read()
    if not whole:
        data = _whole_characters(data)
    kind: str | None = None
    if whole or not (data.startswith(b"PK\x03\x04") or b"%PDF-" in data):
        try:  # a large Word or PDF file is left to the worker, which reads all of it; anything else:
            kind = str(detect(data, filename))  # an image, say, is named now (415)
        except DomainError as err:
            raise refuse(err) from None
        if not whole:  # text this long is more than a PRD's Markdown may be (the extractor's cap)
            raise refuse(_too_large(size, settings.import_max_bytes, "Markdown and HTML files"))
    queued = transfers.uploaded(found.id, size=size, **({"detected": kind} if kind else {}))
    _queue(queued.id)
    return {"importId": queued.id, "status": queued.status, "detected": kind}


def _whole_characters(head: bytes) -> bytes:
    """The first bytes of a file, less a UTF-8 sequence cut at the end (so text still reads as text)."""
    end = len(head)
    while end > 0 and len(head) - end < 4 and head[end - 1] & 0xC0 == 0x80:
        end -= 1
    if end > 0 and head[end - 1] >= 0xC0:
        return head[: end - 1]
    return head if end == len(head) or end == 0 else head[:end]


def describe(transfer: transfers.Transfer) -> dict[str, Any]:
    report = transfer.report or {"sections": [], "missing": [], "dropped": []}
    body: dict[str, Any] = {"importId": transfer.id, "status": transfer.status, "filename": transfer.filename,
                            "detected": transfer.detected, "report": report, "createdAt": transfer.created_at,
                            "updatedAt": transfer.updated_at}
    if transfer.prd_id and transfer.status == transfers.DONE:
        body["prdId"] = transfer.prd_id
    if transfer.error is not None:
        body["error"] = transfer.error
    # The AI draft of the missing sections: started (aiJobId), skipped (aiNote says why), pending (the
    # import is done and the worker is asking now), or off (not asked for, or nothing missing).
    if transfer.ai_job_id:
        body["aiJobId"], body["aiDraft"] = transfer.ai_job_id, "started"
    elif transfer.ai_note:
        body["aiNote"], body["aiDraft"] = transfer.ai_note, "skipped"
    elif (transfer.status in (transfers.UPLOADING, transfers.QUEUED, transfers.RUNNING, transfers.DONE)
          and transfer.draft_missing and get_settings().import_draft_missing
          and (transfer.status != transfers.DONE or report.get("missing"))):
        body["aiDraft"] = "pending"
    else:
        body["aiDraft"] = "off"
    return body


def _own(principal: Principal, import_id: str) -> transfers.Transfer:
    found = transfers.get(import_id, transfers.IMPORT)
    if found.owner != principal.username and not principal.is_admin:
        raise NotFound("import not found", code="import_not_found")  # someone else's: it does not exist
    return found


def get(principal: Principal, import_id: str) -> dict[str, Any]:
    return describe(_own(principal, import_id))
