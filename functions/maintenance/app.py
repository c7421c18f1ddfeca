"""Scheduled maintenance: daily garbage collection (EventBridge schedule)."""

from typing import Any

from prdtool.maintenance import gc
from prdtool.observability import lambda_entry


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    task = event.get("task", "gc") if isinstance(event, dict) else "gc"
    if task != "gc":
        raise ValueError(f"unknown maintenance task {task!r}")
    return gc.run()
