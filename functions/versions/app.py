"""Versions (issue #14): prd.created and prd.updated from the bus become versions when significant;
prd.version.created tidies up after one (repack, archival: prdtool.versions.maintenance)."""

from typing import Any

from prdtool.observability import lambda_entry
from prdtool.versions import service


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # An EventBridge rule target: one event per invocation, retried by Lambda's async retries.
    version = service.on_event(str(event.get("detail-type") or ""), dict(event.get("detail") or {}))
    return {"version": version.version if version else None}
