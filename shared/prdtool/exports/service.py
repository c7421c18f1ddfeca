"""Exports over HTTP: ask for a file of a PRD (a version, or now), follow it, download it.

``POST /api/prds/{id}/exports {"format", "version"?}`` (anyone who may read the PRD may export it:
the policy's ``export`` right) records the export and queues it for ``ExportWorkerFunction``: 202
with the export id.  ``GET /api/exports/{id}`` (the requester): status, and when done a download
link valid until the file's 24 hours are up (presigned S3 GET).
"""

from __future__ import annotations

import json
from typing import Any

from .. import transfers
from ..auth.policy import Action
from ..auth.principal import Principal
from ..errors import DependencyFailed, NotFound
from ..observability import logger
from ..prds.access import authorize
from ..settings import get_settings

FORMATS = ("pdf", "docx", "html", "markdown", "confluence")


def start(principal: Principal, prd_id: str, *, fmt: str, version: str | None) -> dict[str, Any]:
    from ..aws import client
    from ..versions import records
    from ..versions.changes import parse_version

    authorize(prd_id, principal, Action.EXPORT)
    if fmt == "confluence":
        confluence_configured()
    if version is not None:
        parse_version(version.removeprefix("v"))
        version = records.get(prd_id, version.removeprefix("v")).version  # 404 for an unknown one
    transfer = transfers.new(transfers.EXPORT, principal.username, prd_id=prd_id, format=fmt, version=version)
    try:
        client("sqs").send_message(QueueUrl=get_settings().export_queue_url,
                                   MessageBody=json.dumps({"id": transfer.id}))
    except Exception as exc:
        logger.exception("could not queue an export", extra={"export_id": transfer.id})
        transfers.fail(transfer.id, "unavailable", "the export could not be queued; try again")
        raise DependencyFailed("the export queue is unavailable; try again in a moment") from exc
    return {"exportId": transfer.id, "status": transfer.status, "format": fmt, "version": version}


def confluence_configured() -> None:
    """422 unless this deployment has a Confluence site (the secret exists; its value is the worker's)."""
    from ..aws import client
    from ..errors import Unprocessable

    not_configured = Unprocessable("publishing to Confluence is not configured for this deployment: an "
                                   "administrator stores the site in Secrets Manager (docs/import-export.md)",
                                   code="confluence_not_configured")
    name = get_settings().confluence_secret_id
    if not name:
        raise not_configured
    secrets = client("secretsmanager")
    try:
        secrets.describe_secret(SecretId=name)
    except secrets.exceptions.ResourceNotFoundException:
        raise not_configured from None


def link(transfer: transfers.Transfer) -> tuple[str, int] | None:
    """A presigned GET of the exported file, valid until the file's expiry (None once it passed)."""
    from ..aws import presigner

    if transfer.status != transfers.DONE or not transfer.object_key or not transfer.file_expires_at:
        return None
    remaining = transfer.file_expires_at - int(transfers.now_ms() / 1000)
    if remaining <= 0:
        return None
    filename = transfer.filename or transfer.object_key.rsplit("/", 1)[-1]
    url = presigner().generate_presigned_url(
        "get_object", ExpiresIn=remaining,
        Params={"Bucket": get_settings().documents_bucket, "Key": transfer.object_key,
                "ResponseContentDisposition": f'attachment; filename="{filename}"'})
    return str(url), transfer.file_expires_at


def describe(transfer: transfers.Transfer) -> dict[str, Any]:
    body: dict[str, Any] = {"exportId": transfer.id, "status": transfer.status, "prdId": transfer.prd_id,
                            "format": transfer.format, "version": transfer.version, "filename": transfer.filename,
                            "warnings": list(transfer.warnings), "createdAt": transfer.created_at}
    found = link(transfer)
    if transfer.format == "confluence":
        if transfer.page_url:
            body.update(url=transfer.page_url, pageId=transfer.page_id, pageVersion=transfer.page_version)
    elif found is not None:
        body["url"], expires = found
        body["expiresAt"] = expires
    elif transfer.status == transfers.DONE:
        body["expired"] = True
    if transfer.error is not None:
        body["error"] = transfer.error
    return body


def get(principal: Principal, export_id: str) -> dict[str, Any]:
    found = transfers.get(export_id, transfers.EXPORT)
    if found.owner != principal.username and not principal.is_admin:
        raise NotFound("export not found", code="export_not_found")
    assert found.prd_id is not None
    authorize(found.prd_id, principal, Action.EXPORT)  # still allowed to read it?
    return describe(found)
