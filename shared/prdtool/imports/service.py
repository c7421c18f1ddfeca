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
from ..errors import DependencyFailed, Forbidden, PayloadTooLarge, Unprocessable
from ..observability import logger
from ..settings import get_settings


def source_key(import_id: str) -> str:
    return f"imports/{import_id}/source"


def start(principal: Principal, *, filename: str, data: bytes, title: str | None) -> dict[str, Any]:
    from ..aws import client
    from .sniff import detect

    settings = get_settings()
    if principal.prd_scope:
        raise Forbidden("this API key is limited to some PRDs and may not create new ones", code="api_key_scope")
    if len(data) > settings.import_max_bytes:
        raise PayloadTooLarge(f"the file has {len(data):,} bytes; imports take at most "
                              f"{settings.import_max_bytes:,}", code="file_too_large")
    if not data:
        raise Unprocessable("the file is empty", code="empty_file")
    kind = detect(data, filename)
    transfer = transfers.new(transfers.IMPORT, principal.username, filename=filename[:255], title=title,
                             size=len(data), detected=str(kind))
    try:
        client("s3").put_object(Bucket=settings.documents_bucket, Key=source_key(transfer.id), Body=data)
        client("sqs").send_message(QueueUrl=settings.import_queue_url, MessageBody=json.dumps({"id": transfer.id}))
    except Exception as exc:
        logger.exception("could not queue an import", extra={"import_id": transfer.id})
        transfers.fail(transfer.id, "unavailable", "the import could not be queued; try again")
        raise DependencyFailed("the import queue is unavailable; try again in a moment") from exc
    return {"importId": transfer.id, "status": transfer.status, "detected": str(kind)}


def describe(transfer: transfers.Transfer) -> dict[str, Any]:
    report = transfer.report or {"sections": [], "missing": [], "dropped": []}
    body: dict[str, Any] = {"importId": transfer.id, "status": transfer.status, "filename": transfer.filename,
                            "detected": transfer.detected, "report": report, "createdAt": transfer.created_at,
                            "updatedAt": transfer.updated_at}
    if transfer.prd_id and transfer.status == transfers.DONE:
        body["prdId"] = transfer.prd_id
    if transfer.error is not None:
        body["error"] = transfer.error
    return body


def get(principal: Principal, import_id: str) -> dict[str, Any]:
    found = transfers.get(import_id, transfers.IMPORT)
    if found.owner != principal.username and not principal.is_admin:
        from ..errors import NotFound

        raise NotFound("import not found", code="import_not_found")  # someone else's: it does not exist
    return describe(found)
