"""Fan-out: post frames to the WebSocket connections of a PRD, concurrently.

API Gateway's management API takes one connection per call, so a broadcast to N peers is N
``PostToConnection`` calls; they run on a small thread pool kept warm with the container instead
of one after another.  A connection that is gone (``GoneException``) is forgotten and does not fail
the sender.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..aws import client
from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings
from . import connections

_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fanout")


def _management() -> Any:
    return client("apigatewaymanagementapi", endpoint_url=get_settings().websocket_callback_url)


def _error_code(exc: Exception) -> str:
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


def send(connection_id: str, frames: Sequence[str]) -> bool:
    """Post ``frames`` in order to one connection; False (and the connection forgotten) if gone."""
    api = _management()
    try:
        for frame in frames:
            api.post_to_connection(ConnectionId=connection_id, Data=frame.encode())
    except Exception as exc:
        if _error_code(exc) == "GoneException":
            connections.remove(connection_id)
            return False
        raise
    return True


def send_json(connection_id: str, frame: Mapping[str, Any]) -> bool:
    return send(connection_id, [json.dumps(frame, separators=(",", ":"))])


def close(connection_id: str, notice: Mapping[str, Any] | None = None) -> None:
    """Tell a connection why (optional), then close it; a gone connection is simply forgotten."""
    api = _management()
    try:
        if notice is not None:
            api.post_to_connection(ConnectionId=connection_id, Data=json.dumps(notice, separators=(",", ":")).encode())
        api.delete_connection(ConnectionId=connection_id)
    except Exception as exc:
        if _error_code(exc) != "GoneException":
            raise
        connections.remove(connection_id)


@dataclass(frozen=True)
class Broadcast:
    sent: int
    gone: int
    failed: int


def broadcast(targets: Iterable[connections.Connection], frames: Sequence[str]) -> Broadcast:
    """Send ``frames`` to every target concurrently; a failure on one peer never stops the others."""
    futures = [_pool.submit(send, target.connection_id, frames) for target in targets]
    sent = gone = failed = 0
    for future in futures:
        try:
            if future.result():
                sent += 1
            else:
                gone += 1
        except Exception:
            failed += 1
            logger.exception("post to a peer failed")
    if failed:
        metrics.add_metric(name="FanoutFailed", unit=MetricUnit.Count, value=failed)
    return Broadcast(sent, gone, failed)


def peers(prd_id: str, *, exclude: str | None) -> list[connections.Connection]:
    """The PRD's other connections (a strongly consistent query on the table's key)."""
    return [c for c in connections.of_prd(prd_id) if c.connection_id != exclude]
