"""Lambda authorizer for the HTTP API (payload 2.0, simple response) and WebSocket $connect."""

from typing import Any

from prdtool.auth.authorizer import authorize_http, authorize_websocket
from prdtool.observability import lambda_entry
from prdtool.prds.access import role_of


@lambda_entry(flush_metrics=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "methodArn" in event:  # WebSocket REQUEST authorizer (IAM policy response)
        return authorize_websocket(event, role_of)
    return authorize_http(event)
