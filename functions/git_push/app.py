"""Push a PRD's repository to its remote (issue #14): after each version, and when the remote changes.

A failure that may pass raises (Lambda's asynchronous retries, with backoff); one that needs a person
is recorded on the PRD and published as prd.remote.push_failed (prdtool.versions.mirror)."""

from typing import Any

from prdtool.observability import lambda_entry
from prdtool.versions import mirror


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    state = mirror.on_event(str(event.get("detail-type") or ""), dict(event.get("detail") or {}))
    return {"state": state["state"] if state else None}
