"""Daily garbage collection: what DynamoDB TTL has not removed yet, and purged PRDs; and the
verification of yesterday's audit chain.

TTL deletion is lazy in AWS (up to days) and absent in the local emulation, so readers already
ignore expired items; this sweep keeps tables small.  Soft-deleted PRDs past their grace period
are purged with their members and document (DynamoDB items and S3 snapshots).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from ..auth.ratelimit import RateLimitModel
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


def _sweep_expired(model: Any, now: int) -> int:
    """Delete the items of a TTL table whose ``expires_at`` has passed."""
    removed = 0
    with model.batch_write() as batch:
        for item in model.scan(model.expires_at < now):
            batch.delete(item)
            removed += 1
    return removed


def sweep_revocations(now: int) -> int:
    return _sweep_expired(RevocationModel, now)


def sweep_rate_limits(now: int) -> int:
    """Counters of subjects that have not been seen since their day window ended."""
    return _sweep_expired(RateLimitModel, now)


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


def verify_audit(now: int) -> int:
    """Problems in yesterday's audit partition (the verifier logs them and emits AuditVerifyFailed,
    which is alarmed)."""
    from ..audit import verify as audit_verify

    return len(audit_verify.verify_previous_day(datetime.fromtimestamp(now, UTC))["problems"])


def run(now: int | None = None) -> dict[str, Any]:
    at = int(time.time()) if now is None else now
    report = {
        "stale_connections": sweep_connections(at),
        "expired_revocations": sweep_revocations(at),
        "expired_rate_limits": sweep_rate_limits(at),
        "purged_prds": purge_prds(at),
        "audit_problems": verify_audit(at),
    }
    for name, value in report.items():
        metrics.add_metric(name=f"Gc_{name}", unit=MetricUnit.Count, value=value)
    logger.info("garbage collection done", extra=report)
    return report
