"""WebSocket API: $connect, $disconnect and $default (no FastAPI on this path: cold starts)."""

from typing import Any

from prdtool.collab.socket import route
from prdtool.observability import lambda_entry


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return route(event)
