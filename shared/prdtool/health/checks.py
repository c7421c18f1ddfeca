"""Dependency checks: each answers ok / failed with its latency, run concurrently.

Overall status: ``healthy`` when every check passes; ``down`` when a critical dependency fails
(the tables and the user pool: nothing works without them); ``degraded`` otherwise (the product
still serves reads and edits, but e.g. events or background work are affected).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..aws import client
from ..observability import MetricUnit, logger, metrics
from ..settings import Settings, get_settings

CHECK_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    critical: bool
    probe: Callable[[], Any]


def _checks(s: Settings) -> list[Check]:
    ddb, sqs = client("dynamodb"), client("sqs")
    def table(name: str) -> Callable[[], Any]:
        return lambda: ddb.describe_table(TableName=name)

    def queue(url: str) -> Callable[[], Any]:
        return lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])

    checks = [
        Check(f"table:{label}", True, table(name))
        for label, name in (("prds", s.prds_table), ("members", s.members_table), ("docs", s.docs_table),
                            ("connections", s.connections_table), ("revocations", s.revocations_table))
    ]
    # Not critical: without them API keys, rate limits (which fail open) or the audit trail suffer,
    # but people can still sign in, read and edit.
    checks += [
        Check(f"table:{label}", False, table(name))
        for label, name in (("api-keys", s.api_keys_table), ("rate-limits", s.rate_limits_table),
                            ("audit-index", s.audit_index_table))
    ]
    checks.append(Check("bucket:documents", False,
                        lambda: client("s3").list_objects_v2(Bucket=s.documents_bucket, MaxKeys=1)))
    checks.append(Check("bucket:audit", False,
                        lambda: client("s3").list_objects_v2(Bucket=s.audit_bucket, MaxKeys=1)))
    for label, url in (("doc-write", s.doc_write_queue_url), ("audit", s.audit_queue_url),
                       ("search", s.search_queue_url)):
        if url:
            checks.append(Check(f"queue:{label}", False, queue(url)))
    checks.append(Check("event-bus", False, lambda: client("events").describe_event_bus(Name=s.event_bus_name)))
    checks.append(Check("user-pool", True,
                        lambda: client("cognito-idp").describe_user_pool(UserPoolId=s.user_pool_id)))
    return checks


def _run(check: Check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        check.probe()
        result: dict[str, Any] = {"status": "ok"}
    except Exception as exc:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") or type(exc).__name__
        logger.warning("health check failed", extra={"check": check.name, "error": code})
        result = {"status": "failed", "error": str(code)}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    result["critical"] = check.critical
    return result


def run_checks(settings: Settings | None = None) -> dict[str, Any]:
    """Run every check concurrently; the overall status and per-check detail."""
    checks = _checks(settings or get_settings())
    results: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=min(8, len(checks))) as pool:
        futures = {c.name: (c, pool.submit(_run, c)) for c in checks}
        for name, (check, future) in futures.items():
            try:
                results[name] = future.result(timeout=CHECK_TIMEOUT_SECONDS)
            except Exception:
                results[name] = {"status": "failed", "error": "timeout", "critical": check.critical}
    failed = [n for n, r in results.items() if r["status"] != "ok"]
    if any(results[n]["critical"] for n in failed):
        status = "down"
    elif failed:
        status = "degraded"
    else:
        status = "healthy"
    metrics.add_metric(name="HealthChecksFailed", unit=MetricUnit.Count, value=len(failed))
    return {"status": status, "checks": results}
