"""Daily garbage collection: what DynamoDB TTL has not removed yet, and purged PRDs.

TTL deletion is lazy in AWS (up to days) and absent in the local emulation, so readers already
ignore expired items; this sweep keeps tables small.  Soft-deleted PRDs past their grace period
are purged with their members and document (DynamoDB items and S3 snapshots).
"""

from __future__ import annotations

import time
from typing import Any

from ..auth.revocation import RevocationModel
from ..collab import store
from ..collab.connections import ConnectionModel
from ..observability import MetricUnit, logger, metrics
from ..prds.models import MemberModel, PrdModel

STALE_CONNECTION_GRACE_SECONDS = 3600  # seed flow 4.2: sessions stale for more than an hour


def sweep_connections(now: int) -> int:
    removed = 0
    with ConnectionModel.batch_write() as batch:
        for item in ConnectionModel.scan(ConnectionModel.expires_at < now - STALE_CONNECTION_GRACE_SECONDS):
            batch.delete(item)
            removed += 1
    return removed


def sweep_revocations(now: int) -> int:
    removed = 0
    with RevocationModel.batch_write() as batch:
        for item in RevocationModel.scan(RevocationModel.expires_at < now):
            batch.delete(item)
            removed += 1
    return removed


def purge_prds(now: int) -> int:
    purged = 0
    for prd in PrdModel.scan(PrdModel.purge_at < now):
        store.delete_all(prd.id)
        with MemberModel.batch_write() as batch:
            for member in MemberModel.query(prd.id):
                batch.delete(member)
        prd.delete(condition=PrdModel.purge_at < now)  # not if it was restored meanwhile
        purged += 1
    return purged


def run(now: int | None = None) -> dict[str, Any]:
    at = int(time.time()) if now is None else now
    report = {
        "stale_connections": sweep_connections(at),
        "expired_revocations": sweep_revocations(at),
        "purged_prds": purge_prds(at),
    }
    for name, value in report.items():
        metrics.add_metric(name=f"Gc_{name}", unit=MetricUnit.Count, value=value)
    logger.info("garbage collection done", extra=report)
    return report
