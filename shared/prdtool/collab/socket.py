"""The WebSocket edge: $connect, $disconnect and $default (DESIGN 3.2).

This part handles the session (registration, ping, error frames for bad input); Yjs sync over
``{"action": "y"}`` frames is built on it (issue #3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..auth.principal import Principal
from ..aws import client
from ..observability import logger
from ..settings import get_settings
from . import connections

MAX_FRAME_CHARS = 128 * 1024


def _management() -> Any:
    return client("apigatewaymanagementapi", endpoint_url=get_settings().websocket_callback_url)


def post(connection_id: str, frame: Mapping[str, Any]) -> bool:
    """Send one JSON frame; False (and the connection forgotten) when it is gone."""
    try:
        _management().post_to_connection(ConnectionId=connection_id,
                                          Data=json.dumps(frame, separators=(",", ":")).encode())
    except Exception as exc:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
        if code == "GoneException":
            connections.remove(connection_id)
            return False
        raise
    return True


def error_frame(code: str, message: str) -> dict[str, str]:
    return {"action": "error", "code": code, "message": message}


def on_connect(event: Mapping[str, Any]) -> dict[str, Any]:
    ctx = event.get("requestContext") or {}
    authorizer = ctx.get("authorizer") or {}
    principal = Principal.from_context(authorizer)
    prd_id = str(authorizer.get("prd_id") or "")
    if principal is None or not prd_id:  # only reachable if the route lost its authorizer
        return {"statusCode": 401}
    connections.register_connection(
        connections.Connection(str(ctx["connectionId"]), prd_id, principal.username,
                               str(authorizer.get("role") or "viewer")),
        token_expires_at=principal.expires_at,
    )
    return {"statusCode": 200}


def on_disconnect(event: Mapping[str, Any]) -> dict[str, Any]:
    connections.remove(str((event.get("requestContext") or {})["connectionId"]))
    return {"statusCode": 200}


def on_message(event: Mapping[str, Any]) -> dict[str, Any]:
    connection_id = str((event.get("requestContext") or {})["connectionId"])
    body = event.get("body") or ""
    if len(body) > MAX_FRAME_CHARS:
        post(connection_id, error_frame("frame_too_large", "frames are limited to 128 KB"))
        return {"statusCode": 200}
    try:
        frame = json.loads(body)
    except ValueError:
        post(connection_id, error_frame("invalid_json", "every frame must be a JSON object"))
        return {"statusCode": 200}
    if not isinstance(frame, dict) or not isinstance(frame.get("action"), str):
        post(connection_id, error_frame("invalid_frame", "a frame needs a string \"action\""))
        return {"statusCode": 200}
    action = frame["action"]
    if action == "ping":
        post(connection_id, {"action": "pong", "id": frame.get("id")})
    elif action == "y":
        post(connection_id, error_frame("unsupported", "document sync over this socket is not enabled yet"))
    else:
        post(connection_id, error_frame("unknown_action", f"unknown action {action[:64]!r}"))
    return {"statusCode": 200}


def route(event: Mapping[str, Any]) -> dict[str, Any]:
    route_key = (event.get("requestContext") or {}).get("routeKey")
    if route_key == "$connect":
        return on_connect(event)
    if route_key == "$disconnect":
        return on_disconnect(event)
    try:
        return on_message(event)
    except Exception:
        logger.exception("websocket message failed")
        return {"statusCode": 500}
