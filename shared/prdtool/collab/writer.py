"""The write-queue consumer: fold a PRD's recent edits into its snapshot and record the change."""

from __future__ import annotations

from typing import Any

from ..observability import MetricUnit, logger, metrics
from ..prds.service import record_content_change
from . import store


def save(prd_id: str) -> dict[str, Any]:
    """Compact ``prd_id`` and, if anything changed, update its metadata and publish ``prd.updated``."""
    result = store.compact(prd_id)
    recorded = False
    if result.folded:
        recorded = record_content_change(prd_id, editors=result.editors, at_ms=result.last_update_at,
                                         updates=result.folded)
        metrics.add_metric(name="UpdatesCompacted", unit=MetricUnit.Count, value=result.folded)
    logger.info("document saved", extra={"prd_id": prd_id, "folded": result.folded,
                                         "snapshot_bytes": result.snapshot_bytes, "recorded": recorded})
    return {"prd_id": prd_id, "folded": result.folded, "snapshot_bytes": result.snapshot_bytes,
            "editors": list(result.editors)}
