"""The event bus publisher: domain events go to one EventBridge bus, subscribers attach by rules.

Events are published after the state change they describe is durable.  Publishing is best effort
from the caller's point of view: a failure is logged and counted (metric ``EventPublishFailed``)
but does not undo or fail the user's request; the change itself is already stored, and consumers
that must not miss anything (versioning, indexing) read the durable state, not only the event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .aws import client
from .observability import MetricUnit, logger, metrics
from .settings import get_settings

SOURCE = "prdtool"

# The event names the product publishes; subscribers match on detail-type.
PRD_CREATED = "prd.created"
PRD_UPDATED = "prd.updated"
PRD_DELETED = "prd.deleted"
PRD_MEMBER_CHANGED = "prd.member.changed"


def publish(detail_type: str, detail: Mapping[str, Any], *, actor: str | None = None) -> bool:
    """Put one event on the bus; returns False (after logging) if it could not be delivered."""
    body = {
        **detail,
        "actor": actor,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "stage": get_settings().stage,
    }
    entry = {
        "Source": SOURCE,
        "DetailType": detail_type,
        "Detail": json.dumps(body, separators=(",", ":"), default=str),
        "EventBusName": get_settings().event_bus_name,
    }
    try:
        response = client("events").put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            raise RuntimeError(response["Entries"][0].get("ErrorMessage", "unknown error"))
    except Exception:
        logger.exception("event publish failed", extra={"detail_type": detail_type})
        metrics.add_metric(name="EventPublishFailed", unit=MetricUnit.Count, value=1)
        return False
    return True
