"""SQS batches for consumers whose messages each name one piece of work (an AI job, an import, an
export): ``{"<field>": "<id>"}``.  A malformed message is dropped (logged: retrying cannot help); a
message whose handling raises is reported as a partial batch failure, so SQS delivers it again
(``ReportBatchItemFailures`` on the event source mapping)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .observability import logger


def handle_batch(event: dict[str, Any], *, field: str, handle: Callable[[str], str], what: str) -> dict[str, Any]:
    failures = []
    for record in event.get("Records") or []:
        message_id = record.get("messageId", "")
        try:
            item_id = str(json.loads(record.get("body") or "{}").get(field) or "")
        except (ValueError, AttributeError):
            logger.error(f"a malformed {what} message was dropped", extra={"message_id": message_id})
            continue
        try:
            outcome = handle(item_id)
            logger.info(f"{what} handled", extra={"id": item_id, "outcome": outcome})
        except Exception as exc:
            (logger.info if getattr(exc, "expected", False) else logger.exception)(
                f"{what} comes back later" if getattr(exc, "expected", False) else f"{what} could not be handled",
                extra={"id": item_id})
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
