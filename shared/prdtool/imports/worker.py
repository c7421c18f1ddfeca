"""The import worker (``ImportWorkerFunction``, an SQS consumer): an upload becomes a PRD.

Reads the upload (bounded), decides its type by content, extracts Markdown with the library made for
it (:mod:`.extract`: mammoth, pdfplumber/pypdf, nh3 + markdownify, markdown-it-py), maps its headings
to the standard PRD sections (:mod:`.mapping`), and creates the PRD — owned by the importer, v1.0.0
naming the source file — under an id chosen and recorded first, so a redelivery finds the PRD rather
than making a second one.  A file that cannot be imported fails the import with the reason, and no
PRD is made.  The importer hears how it went on every WebSocket connection they have open
(``notice`` ``import.done`` / ``import.failed``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .. import transfers
from ..errors import DomainError
from ..observability import logger
from ..settings import get_settings

if TYPE_CHECKING:
    from .extract import Extracted


def handle(import_id: str) -> str:
    return transfers.run(import_id, transfers.IMPORT, lambda t: _draft_missing(_convert(t)),
                         lambda t: _tell(t, "import.done" if t.status == transfers.DONE else "import.failed"),
                         "Imports")


def _draft_missing(transfer: transfers.Transfer) -> transfers.Transfer:
    """Ask the AI to draft the standard sections the import lacks, as a suggestion the importer reviews
    (an AI job like any other: it goes through the same budget and nothing is applied until approved).

    After ``finish``: a redelivery finds the import done and skips, so there is never a second job; a
    crash in between loses the suggestion, not the import.  Why there is none is kept on the import.
    """
    from ..ai import service as ai
    from ..auth.principal import Principal

    missing = [m.get("title") if isinstance(m, dict) else str(m) for m in (transfer.report or {}).get("missing", [])]
    if not missing or not transfer.draft_missing or not get_settings().import_draft_missing or not transfer.prd_id:
        return transfer
    owner = Principal(username=transfer.owner, jti="import", origin_jti="import", expires_at=0)
    prompt = ("This PRD was imported from " + (transfer.filename or "a file") + ". Draft the standard sections it "
              "lacks (" + ", ".join(str(m) for m in missing if m) + ") from what the document already says; "
              "mark anything you had to assume as an open question.")
    try:
        job = ai.create_job(owner, transfer.prd_id, prompt=prompt, mode="fill-gaps", section=None)
        return transfers.annotate(transfer.id, ai_job_id=str(job["jobId"]))
    except DomainError as err:  # no gaps the AI sees, the importer's AI budget spent, the queue down
        logger.info("no AI draft for an import's missing sections",
                    extra={"import_id": transfer.id, "code": err.code})
        return transfers.annotate(transfer.id, ai_note=f"{err.code}: {err.message}"[:500])
    except Exception:
        logger.exception("could not ask for the missing sections", extra={"import_id": transfer.id})
        return transfers.annotate(transfer.id, ai_note="unavailable: the AI drafting service could not be reached")


def _read(key: str, limit: int) -> bytes:
    from ..aws import client

    body = client("s3").get_object(Bucket=get_settings().documents_bucket, Key=key)["Body"]
    data = bytes(body.read(limit + 1))
    body.close()
    return data


def convert(data: bytes, filename: str, *, limit: int) -> tuple[str, Extracted, dict[str, Any]]:
    """The pure part of an import: ``(kind, extracted, report)`` from the upload's bytes (no AWS).

    Raises the extractor's domain errors (413, 415, 422) for a file that cannot be imported."""
    from ..errors import PayloadTooLarge
    from .extract import Limits, extract
    from .mapping import map_sections
    from .sniff import detect

    if len(data) > limit:
        raise PayloadTooLarge(f"the file is larger than {limit:,} bytes", code="file_too_large")
    kind = detect(data, filename)
    extracted = extract(data, kind, filename=filename, limits=Limits(max_bytes=limit))
    return str(kind), extracted, map_sections(extracted.markdown, report=extracted.report).to_report_json()


def _convert(transfer: transfers.Transfer) -> transfers.Transfer:
    from ..auth.principal import Principal
    from ..ids import ulid
    from ..prds.models import PrdModel
    from ..prds.service import create_prd
    from . import service

    limit = get_settings().import_upload_max_bytes  # a presigned upload may be this large
    data = _read(service.source_key(transfer.id), limit)
    filename = transfer.filename or "upload"
    kind, extracted, report = convert(data, filename, limit=limit)
    title = (transfer.title or extracted.title or filename.rsplit(".", 1)[0] or "Imported PRD").strip()[:200]
    prd_id = transfer.prd_id or transfers.note(transfer.id, prd_id=ulid()).prd_id
    assert prd_id is not None
    try:
        PrdModel.get(prd_id, consistent_read=True)  # an earlier attempt made it: done already
    except PrdModel.DoesNotExist:
        owner = Principal(username=transfer.owner, jti="import", origin_jti="import", expires_at=0)
        create_prd(owner, title=title, template="standard", markdown=extracted.markdown, prd_id=prd_id,
                   source=filename)
    return transfers.finish(transfer.id, prd_id=prd_id, title=title, detected=str(kind),
                            report=json.dumps(report, ensure_ascii=False))


def _tell(transfer: transfers.Transfer, kind: str) -> None:
    """The importer's connections, wherever they are, hear how the import went (best effort)."""
    try:
        from ..collab import connections, relay
        from .service import describe

        body = describe(transfer)
        notice = {"action": "notice", "type": kind, "importId": transfer.id, "status": transfer.status,
                  "prdId": body.get("prdId"), "error": body.get("error"), "aiJobId": body.get("aiJobId"),
                  "missing": [m.get("title") if isinstance(m, dict) else m
                              for m in (transfer.report or {}).get("missing", [])]}
        for conn in connections.of_user(transfer.owner):
            relay.send_json(conn.connection_id, notice)
    except Exception:
        logger.exception("could not tell the importer", extra={"import_id": transfer.id})


def on_sqs(event: dict[str, Any]) -> dict[str, Any]:
    """The SQS batch: each record one import (``prdtool.sqsbatch``)."""
    from ..sqsbatch import handle_batch

    return handle_batch(event, field="id", handle=handle, what="import")
