"""The export worker (``ExportWorkerFunction``, an SQS consumer): a PRD becomes a file.

Reads the Markdown of the version asked for (or of the document now, which is then named by the
latest version), renders it (:mod:`.render`: HTML, Word with python-docx, PDF with Typst, Markdown),
stores it under ``exports/<id>/`` (a lifecycle rule deletes it after a day) and tells the requester's
connections to that PRD: ``{"action": "notice", "type": "export.ready", "exportId", "url", "expiresAt"}``
with a presigned link valid for ``EXPORT_LINK_SECONDS`` (24 h).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from .. import transfers
from ..errors import Conflict
from ..observability import logger
from ..settings import get_settings


def handle(export_id: str) -> str:
    return transfers.run(export_id, transfers.EXPORT, _render, _tell, "Exports")


def _slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-")[:80] or "prd"


def _render(transfer: transfers.Transfer) -> transfers.Transfer:
    from ..aws import client
    from ..collab import document, store
    from ..prds.models import MemberModel, PrdModel
    from ..versions import records, service
    from .render import ExportMeta, render

    assert transfer.prd_id is not None and transfer.format is not None
    settings = get_settings()
    prd = PrdModel.get(transfer.prd_id, consistent_read=True)
    if transfer.version:
        record = records.get(transfer.prd_id, transfer.version)
        markdown = service.read_markdown(record.markdown_key)
        version, when, authors = record.version, record.created_at, list(record.authors)
    else:
        markdown = document.markdown_of(store.read(transfer.prd_id).doc)
        head = records.head(transfer.prd_id)
        version = head.version or "0.0.0"
        when = transfers.now_ms()
        authors = sorted({m.username for m in MemberModel.query(transfer.prd_id) if m.role in ("owner", "editor")})
    meta = ExportMeta(title=str(prd.title), version=version,
                      date=datetime.fromtimestamp(when / 1000, UTC).date().isoformat(), authors=authors,
                      prd_id=transfer.prd_id)
    if transfer.format == "confluence":
        return _publish(transfer, markdown, meta)
    rendered = render(markdown, transfer.format, meta=meta)
    filename = f"{_slug(str(prd.title))}-v{version}.{rendered.extension}"
    key = f"exports/{transfer.id}/{filename}"
    client("s3").put_object(Bucket=settings.documents_bucket, Key=key, Body=rendered.data,
                            ContentType=rendered.content_type)
    expires = int(transfers.now_ms() / 1000) + settings.export_link_seconds
    return transfers.finish(transfer.id, object_key=key, filename=filename, version=version,
                            file_expires_at=expires, warnings=json.dumps(list(rendered.warnings)))


def _publish(transfer: transfers.Transfer, markdown: str, meta: Any) -> transfers.Transfer:
    """Publish to the organisation's Confluence space: the PRD's page is created by its first export
    and updated (a new page version) by every later one."""
    from ..aws import client
    from .confluence import ConfluenceSite, publish, to_storage

    assert transfer.prd_id is not None
    name = get_settings().confluence_secret_id
    secrets = client("secretsmanager")
    try:
        site = ConfluenceSite.from_secret(str(secrets.get_secret_value(SecretId=name)["SecretString"]))
    except secrets.exceptions.ResourceNotFoundException:
        from ..errors import Unprocessable

        raise Unprocessable("publishing to Confluence is not configured for this deployment",
                            code="confluence_not_configured") from None
    storage, warnings = to_storage(markdown, meta)
    message = f"PRD Tool: {meta.version_label}, exported by {transfer.owner}"
    linked = transfers.confluence_page(transfer.prd_id)
    try:
        page = publish(site, title=meta.title, storage=storage, page_id=linked[0] if linked else None, message=message)
    except Conflict as err:  # the title is taken: by this PRD's page, if another export just created it?
        linked = transfers.confluence_page(transfer.prd_id) if err.code == "confluence_title_taken" else None
        if linked is None:
            raise
        page = publish(site, title=meta.title, storage=storage, page_id=linked[0], message=message)
    transfers.remember_confluence_page(transfer.prd_id, owner=transfer.owner, page_id=page.page_id,
                                       page_url=page.url, version=page.version)
    return transfers.finish(transfer.id, version=meta.version, page_id=page.page_id, page_url=page.url,
                            page_version=page.version, warnings=json.dumps(list(warnings)))


def _tell(transfer: transfers.Transfer) -> None:
    try:
        from ..collab import connections, relay
        from .service import describe

        body = describe(transfer)
        notice: dict[str, Any] = {"action": "notice", "type": "export.ready" if transfer.status == transfers.DONE
                                  else "export.failed", "exportId": transfer.id, "format": transfer.format,
                                  "url": body.get("url"), "expiresAt": body.get("expiresAt"),
                                  "filename": body.get("filename"), "warnings": body.get("warnings", []),
                                  "pageId": body.get("pageId"), "pageVersion": body.get("pageVersion"),
                                  "error": body.get("error")}
        for conn in connections.of_prd(transfer.prd_id or ""):
            if conn.username == transfer.owner:
                relay.send_json(conn.connection_id, notice)
    except Exception:
        logger.exception("could not tell the requester about an export", extra={"export_id": transfer.id})


def on_sqs(event: dict[str, Any]) -> dict[str, Any]:
    """The SQS batch: each record one export (``prdtool.sqsbatch``)."""
    from ..sqsbatch import handle_batch

    return handle_batch(event, field="id", handle=handle, what="export")
