"""Server-side edits reach live editors: store an update, then relay it to every connection.

Used when something other than a WebSocket client changes the document (a rename through the HTTP
API today; AI apply, restore and import into an existing PRD later).  The update must be an edit
of the existing shared types (see ``collab.document``), never a rebuilt document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..auth.policy import Action, Role, allowed
from ..observability import logger
from . import connections, relay, writequeue
from .protocol import SyncUpdate, encode_frames, encode_message

# ``store`` (and with it pycrdt, ~25 ms of import) is imported by apply_server_update only: the
# WebSocket handler imports this module to close sessions, which never touches a document.


def apply_server_update(prd_id: str, update: bytes, *, origin: str) -> None:
    """Store ``update`` durably, then relay it (best effort: a client that misses the relay gets
    it at its next sync, because it is stored first)."""
    from . import store  # lazy: see the imports

    _, new = store.append_update(prd_id, update, origin=origin)
    if not new:
        return
    try:
        relay.broadcast(relay.update_peers(prd_id, exclude=None), encode_frames(encode_message(SyncUpdate(update))))
    except Exception:
        logger.exception("could not relay a server-side edit", extra={"prd_id": prd_id})
    writequeue.notify(prd_id)


def end_session(connection_id: str, reason: str) -> None:
    """Close one connection whose credentials were revoked, telling it why (``session-ended``)."""
    relay.close(connection_id, {"action": "notice", "type": "session-ended", "reason": reason})


def end_access(connection_id: str, prd_id: str) -> None:
    """Close one connection whose user lost all access to the PRD (``access-revoked``)."""
    relay.close(connection_id, {"action": "notice", "type": "access-revoked", "prd": prd_id})


def expire_session(connection_id: str) -> None:
    """Close one connection whose access token expired (``session-expired``: reconnect with a new one)."""
    relay.close(connection_id, relay.SESSION_EXPIRED_NOTICE)


def end_prd(connection_id: str, prd_id: str) -> None:
    """Close one connection to a PRD that was deleted (``prd-deleted``)."""
    relay.close(connection_id, {"action": "notice", "type": "prd-deleted", "prd": prd_id})


def _close_each(targets: Iterable[connections.Connection], notice: Mapping[str, Any], failure: str) -> int:
    """Tell each connection why, then close it; one that cannot be closed is logged, not fatal
    (its next frame is refused anyway). Returns how many were closed."""
    closed = 0
    for conn in targets:
        try:
            relay.close(conn.connection_id, notice)
            closed += 1
        except Exception:
            logger.exception(failure, extra={"connection_id": conn.connection_id})
    return closed


def prd_deleted(prd_id: str) -> int:
    """Close every connection to a deleted PRD, telling each why; returns how many were closed."""
    return _close_each(connections.of_prd(prd_id, include_expired=True),
                       {"action": "notice", "type": "prd-deleted", "prd": prd_id},
                       "could not close a connection to a deleted PRD")


def key_origin(api_key_id: str) -> str:
    """What a connection opened with an API key records as its session (see ``end_key_sessions``)."""
    return f"key#{api_key_id}"


def end_key_sessions(username: str, api_key_id: str) -> int:
    """Close the WebSocket connections opened with a revoked API key."""
    return end_sessions(username, origin_jti=key_origin(api_key_id), reason="revoked")


def end_sessions(username: str, *, origin_jti: str | None, reason: str) -> int:
    """Close ``username``'s WebSocket connections (only those of one session, if ``origin_jti``):
    their credentials were revoked."""
    targets = [c for c in connections.of_user(username)
               if not (origin_jti and c.origin_jti and c.origin_jti != origin_jti)]
    return _close_each(targets, {"action": "notice", "type": "session-ended", "reason": reason},
                       "could not close a revoked connection")


def role_changed(prd_id: str, username: str, role: str | None) -> None:
    """Tell ``username``'s connections to a PRD that their role changed; close them if it is gone.

    A connection that loses the right to edit is told (``role-changed``) and closed, so that no
    update it sends after the change is stored; its client reconnects with the new role.  A
    connection that gains rights is only told (the server picks the new role up within
    ``ws_recheck_seconds``).  The per-frame recheck covers a notice that never arrived.
    """
    may_edit = role is not None and allowed(Role(role), Action.EDIT)
    for conn in connections.of_prd(prd_id, include_expired=True):
        if conn.username != username:
            continue
        try:
            if role is None:
                end_access(conn.connection_id, prd_id)
            elif not may_edit:
                relay.close(conn.connection_id, {"action": "notice", "type": "role-changed", "role": role})
            else:
                relay.send_json(conn.connection_id, {"action": "notice", "type": "role-changed", "role": role})
        except Exception:
            logger.exception("could not tell a connection about its new role",
                             extra={"connection_id": conn.connection_id})
