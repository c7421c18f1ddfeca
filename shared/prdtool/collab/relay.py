"""Fan-out: post frames to the WebSocket connections of a PRD, concurrently.

API Gateway's management API takes one connection per call, so a broadcast to N peers is N
``PostToConnection`` calls; they run on a small thread pool kept warm with the container instead
of one after another.  A connection that is gone (``GoneException``) is forgotten and does not fail
the sender — unless it connected moments ago: API Gateway answers 410 to posts to a connection
whose ``$connect`` has run (so it is registered) but whose handshake has not completed, and
forgetting it then would leave a new editor that never receives an update.  It misses nothing by
being skipped: the update was stored before the relay, and the client's sync exchange, which it
starts once the socket is open, reads it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..aws import credentials
from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings
from . import connections
from .poster import ConnectionsApi

_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fanout")
# A connection younger than this that answers 410 may still be completing its handshake: kept.
# (A $connect that succeeded is followed by the handshake at once; a client that vanished within
# this window is forgotten by its $disconnect, or by the first 410 after it.)
GONE_GRACE_SECONDS = 30


def _management() -> ConnectionsApi:
    """The management API of the WebSocket API (one per container: it keeps connections alive)."""
    settings = get_settings()
    return _connections_api(settings.websocket_callback_url, settings.region)


@cache
def _connections_api(endpoint: str, region: str) -> ConnectionsApi:
    return ConnectionsApi(endpoint, region, credentials(), max_connections=_pool._max_workers + 4)


def _error_code(exc: BaseException) -> str:
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


def send(connection_id: str, frames: Sequence[str]) -> bool:
    """Post ``frames`` in order to one connection; False (and the connection forgotten) if gone."""
    api = _management()
    try:
        for frame in frames:
            api.post(connection_id, frame.encode())
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
            api.post(connection_id, json.dumps(notice, separators=(",", ":")).encode())
        api.delete(connection_id)
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
    targets = list(targets)
    ids = [target.connection_id for target in targets]
    if not ids:
        return Broadcast(0, 0, 0)
    cutoff = time.time() - GONE_GRACE_SECONDS
    young = {t.connection_id for t in targets if t.connected_at > cutoff}
    outcomes = _management().post_each(ids, [frame.encode() for frame in frames], _pool)
    sent = failed = 0
    gone: list[str] = []
    for connection_id, error in outcomes.items():
        if error is None:
            sent += 1
        elif _error_code(error) == "GoneException":
            gone.append(connection_id)
        else:
            failed += 1
            logger.error("post to a peer failed", extra={"connection_id": connection_id, "error": repr(error)})
    for removal in [_pool.submit(connections.remove, connection_id) for connection_id in gone
                    if connection_id not in young]:
        try:
            removal.result()
        except Exception:
            logger.exception("could not forget a closed connection")
    if failed:
        metrics.add_metric(name="FanoutFailed", unit=MetricUnit.Count, value=failed)
    return Broadcast(sent, len(gone), failed)


# Connections this container already told that their credentials expired (id -> when), so a busy
# PRD does not close the same connection on every broadcast while its $disconnect is under way.
_expiring: dict[str, float] = {}
# PRD id -> (monotonic time of the query, its connections): the awareness relay's view of the peers.
_peers_seen: dict[str, tuple[float, list[connections.Connection]]] = {}

SESSION_EXPIRED_NOTICE = {"action": "notice", "type": "session-expired",
                          "message": "your access token expired; reconnect with a fresh one"}


def peers(prd_id: str, *, exclude: str | None) -> list[connections.Connection]:
    """The PRD's other connections (a strongly consistent query on the table's key).

    Connections whose credentials expired are left out — they receive nothing after the moment
    of expiry — and are told so and closed in the background.
    """
    found = connections.of_prd(prd_id, include_expired=True)
    live = _live(found)
    _peers_seen[prd_id] = (time.monotonic(), live)
    if len(_peers_seen) > 10_000:
        _peers_seen.clear()
    return [c for c in live if c.connection_id != exclude]


# PRD id -> (roster version, its connections as queried under that version).
_rosters: dict[str, tuple[str, list[connections.Connection]]] = {}


def update_peers(prd_id: str, *, exclude: str | None) -> list[connections.Connection]:
    """The PRD's other connections, for relaying a document update that is already stored.

    As complete as :func:`peers`, for one read of one item while the PRD's connections stay the
    same: the roster version is read (strongly consistent) before the list is reused or queried
    again, so a connection registered before that read is in the list, and one registered after
    it reads the stored update in its own sync (``connections``' docstring).  The presence on the
    returned connections may be stale; use :func:`peers` where it matters.
    """
    version = connections.roster_version(prd_id)
    cached = _rosters.get(prd_id)
    if version is not None and cached is not None and cached[0] == version:
        found = cached[1]
    else:
        found = connections.of_prd(prd_id, include_expired=True)  # queried after the version read
        if version is not None:
            if len(_rosters) > 10_000:
                _rosters.clear()
            _rosters[prd_id] = (version, found)
    return [c for c in _live(found) if c.connection_id != exclude]


def _live(found: list[connections.Connection]) -> list[connections.Connection]:
    """``found`` without the connections whose credentials expired; those are told so and closed
    in the background (once per container every 10 s, while their ``$disconnect`` is under way)."""
    now = time.time()
    expired = [c for c in found if c.expires_at <= now and _expiring.get(c.connection_id, 0.0) < now - 10]
    for conn in expired:
        _expiring[conn.connection_id] = now
        _pool.submit(_close_quietly, conn.connection_id, SESSION_EXPIRED_NOTICE)
    if len(_expiring) > 10_000:
        _expiring.clear()
    return [c for c in found if c.expires_at > now]


def recent_peers(prd_id: str, *, exclude: str | None, max_age: float) -> list[connections.Connection]:
    """The PRD's other connections as this container last saw them, if no older than ``max_age``
    seconds (else queried again).  For presence only: a connection opened in that window misses a
    cursor move or two, never a document update."""
    seen = _peers_seen.get(prd_id)
    if seen is None or time.monotonic() - seen[0] > max_age:
        return peers(prd_id, exclude=exclude)
    now = time.time()
    return [c for c in seen[1] if c.connection_id != exclude and c.expires_at > now]


def _close_quietly(connection_id: str, notice: Mapping[str, Any]) -> None:
    try:
        close(connection_id, notice)
    except Exception:
        logger.exception("could not close a connection", extra={"connection_id": connection_id})
