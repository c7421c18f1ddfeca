"""The WebSocket edge: $connect, $disconnect and $default (DESIGN 3.2, docs/protocol.md).

Per frame, the work is the least that keeps every promise:
- a document update (sync step 2 or update) from an editor is validated, stored with one
  conditional put (idempotent: keyed by its content hash), acknowledged if the client asked, then
  relayed to the PRD's other connections (one strongly consistent query, N-1 posts) — no document
  is loaded on this path;
- sync step 1 loads the document once (snapshot + uncompacted updates) and answers with step 2
  (what the client lacks) and the server's own step 1 (so the client uploads what the server lacks,
  e.g. edits made offline);
- awareness (presence) is relayed, never stored; the client ids a connection announces are
  remembered on its connection item (at most once a second per container), so $disconnect can tell
  the peers that those clients left;
- viewers and commenters may sync and announce presence, but their document updates are refused
  with an error frame, neither stored nor relayed;
- anything malformed is answered with an error frame and changes nothing; the session goes on;
- every frame is held to the caller's *current* rights: the role and the deny list are rechecked at
  most every ``ws_recheck_seconds`` per connection and container (so a demotion or a revocation
  takes effect within seconds even if the push that closes the connection was missed), and a
  connection sending more than ``ws_frame_burst`` frames at once or ``ws_frames_per_second`` on
  average is answered ``rate_limited`` and its extra frames are dropped (a provider resends
  unacknowledged updates, so nothing typed is lost).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pycrdt import Doc

from ..auth.policy import Action, Role, allowed
from ..auth.principal import Principal
from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings
from . import chunks, connections, live, relay, store, writequeue
from .protocol import (
    Awareness,
    AwarenessEntry,
    ErrorCode,
    ProtocolError,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_awareness,
    encode_frames,
    encode_message,
    error_frame,
    parse_frame,
)

# Past this many uncompacted updates, opening the document asks for a compaction right away.
COMPACT_WHEN_PENDING = 500
_AWARENESS_PERSIST_SECONDS = 1.0
_awareness_seen: dict[tuple[str, int], float] = {}


class FrameRejected(Exception):
    """A frame that is well-formed but not acceptable (a bad update, a read-only sender)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def to_frame(self) -> str:
        return error_frame(self.code, self.message)


@dataclass(frozen=True)
class Session:
    """Who is on the other end of a connection, from the $connect authorizer's context."""

    connection_id: str
    prd_id: str
    username: str
    role: Role | None
    is_admin: bool

    @property
    def may_edit(self) -> bool:
        return allowed(self.role, Action.EDIT, is_admin=self.is_admin)

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> Session:
        ctx = event.get("requestContext") or {}
        authorizer = ctx.get("authorizer") or {}
        role_name = str(authorizer.get("role") or "")
        role = Role(role_name) if role_name in Role.__members__.values() else None
        return cls(
            connection_id=str(ctx["connectionId"]),
            prd_id=str(authorizer.get("prd_id") or ""),
            username=str(authorizer.get("username") or ""),
            role=role,
            is_admin=str(authorizer.get("is_admin", "false")).lower() == "true",
        )


class SessionEnded(Exception):
    """The connection's rights are gone (revoked credentials, no role any more): it was closed."""


# connection id -> (monotonic time until which the check holds, current role or None, still valid)
_rechecked: dict[str, tuple[float, Role | None, bool]] = {}
# connection id -> (tokens left, monotonic time of the last refill, monotonic time of the last refusal)
_flood: dict[str, tuple[float, float, float]] = {}


def _current_rights(session: Session, event: Mapping[str, Any]) -> Session:
    """The session with the caller's role as it is now (rechecked every few seconds at most).

    Closes the connection and raises :class:`SessionEnded` when the credentials were revoked or
    the caller lost all access to the PRD.
    """
    now = time.monotonic()
    cached = _rechecked.get(session.connection_id)
    if cached is not None and cached[0] > now:
        _, role, valid = cached
    else:
        authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
        principal = Principal.from_context(authorizer)
        valid = principal is not None and _credentials_valid(principal)
        role = _member_role(session.prd_id, principal) if principal is not None and valid else None
        if len(_rechecked) > 20_000:
            _rechecked.clear()
        _rechecked[session.connection_id] = (now + get_settings().ws_recheck_seconds, role, valid)
    if not valid:
        live.end_session(session.connection_id, "revoked")
        raise SessionEnded
    if role is None and not session.is_admin:
        live.end_access(session.connection_id, session.prd_id)
        raise SessionEnded
    return replace(session, role=role)


def _credentials_valid(principal: Principal) -> bool:
    from ..auth.revocation import ensure_not_revoked
    from ..errors import Unauthenticated

    try:
        ensure_not_revoked(principal)
    except Unauthenticated:
        return False
    return True


def _member_role(prd_id: str, principal: Principal) -> Role | None:
    from ..prds.access import caller_role  # the PRD package's small public lookup

    return caller_role(prd_id, principal)


def _flooding(connection_id: str) -> tuple[bool, bool]:
    """(over the limit, should say so): a token bucket per connection in this container."""
    settings = get_settings()
    now = time.monotonic()
    tokens, last, refused_at = _flood.get(connection_id, (float(settings.ws_frame_burst), now, 0.0))
    tokens = min(float(settings.ws_frame_burst), tokens + (now - last) * settings.ws_frames_per_second)
    if tokens >= 1.0:
        _flood[connection_id] = (tokens - 1.0, now, refused_at)
        return False, False
    tell = now - refused_at >= 1.0  # one error frame a second at most: a flood must not cost a post each
    _flood[connection_id] = (tokens, now, now if tell else refused_at)
    if len(_flood) > 20_000:
        _flood.clear()
    return True, tell


# ----------------------------------------------------------------------------- lifecycle
def on_connect(event: Mapping[str, Any]) -> dict[str, Any]:
    """Register the connection (the authorizer already checked the token and read access).

    Nothing is posted here: the socket is not open until $connect returns.  The client's sync
    step 1 drives the exchange, and since the connection is registered before the client can read
    the document, it either receives a concurrent update's broadcast or finds it stored.
    """
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    principal = Principal.from_context(authorizer)
    session = Session.of(event)
    if principal is None or not session.prd_id:  # only reachable if the route lost its authorizer
        return {"statusCode": 401}
    connections.register_connection(
        connections.Connection(session.connection_id, session.prd_id, session.username,
                               session.role.value if session.role else "admin", origin_jti=principal.origin_jti),
        token_expires_at=principal.expires_at,
    )
    _audit(event, "websocket.connect", session.username, session.prd_id, 200,
           {"role": session.role.value if session.role else "admin"})
    return {"statusCode": 200}


def _audit(event: Mapping[str, Any], action: str, actor: str, prd_id: str, status: int,
           changes: dict[str, Any] | None) -> None:
    """A WebSocket session event in the audit trail (never fails the connection)."""
    try:
        from ..audit.recorder import AuditEntry, record

        ctx = event.get("requestContext") or {}
        identity = ctx.get("identity") or {}
        now_ms = int(time.time() * 1000)
        connected_at = int(ctx.get("connectedAt") or now_ms)
        record(AuditEntry.now(
            actor=actor or "anonymous", action=action,
            resource=f"prd/{prd_id}" if prd_id else "", status=status,
            duration_ms=max(0, now_ms - connected_at) if action == "websocket.disconnect" else 0,
            ip=str(identity.get("sourceIp") or ""), user_agent=str(identity.get("userAgent") or "")[:512],
            path="/ws", request_id=str(ctx.get("requestId") or ""), channel="websocket",
            changes={"connection": str(ctx.get("connectionId") or ""), **(changes or {})},
        ))
    except Exception:
        logger.exception("could not audit a WebSocket session event")


def on_disconnect(event: Mapping[str, Any]) -> dict[str, Any]:
    """Forget the connection and tell the peers that its presence is gone."""
    ctx = event.get("requestContext") or {}
    connection_id = str(ctx["connectionId"])
    gone = connections.remove(connection_id)
    _rechecked.pop(connection_id, None)
    _flood.pop(connection_id, None)
    if gone is not None:
        _announce_departure(gone)
    authorizer = ctx.get("authorizer") or {}
    _audit(event, "websocket.disconnect", str(authorizer.get("username") or (gone.username if gone else "")),
           str(authorizer.get("prd_id") or (gone.prd_id if gone else "")), int(ctx.get("disconnectStatusCode") or 0),
           {"reason": str(ctx.get("disconnectReason") or "")[:200]})
    return {"statusCode": 200}


def _announce_departure(gone: connections.Connection) -> None:
    peers = relay.peers(gone.prd_id, exclude=gone.connection_id)
    if not peers:
        return
    frames: list[str] = []
    if gone.awareness_clients:
        # A null state at the last clock we saw removes the client in y-protocols (it applies a
        # removal whose clock equals its own); peers whose clock ran ahead drop it on their own
        # 30-second awareness timeout.
        removal = encode_awareness([AwarenessEntry(client, clock, None)
                                    for client, clock in gone.awareness_clients.items()])
        frames.extend(encode_frames(encode_message(removal)))
    frames.append(json.dumps({"action": "notice", "type": "peer-left", "username": gone.username,
                              "clients": sorted(gone.awareness_clients)}, separators=(",", ":")))
    relay.broadcast(peers, frames)


# ----------------------------------------------------------------------------- messages
def on_message(event: Mapping[str, Any]) -> dict[str, Any]:
    session = Session.of(event)
    frame_id: Any = None
    over, tell = _flooding(session.connection_id)
    if over:
        metrics.add_metric(name="FramesRateLimited", unit=MetricUnit.Count, value=1)
        if tell:
            relay.send_json(session.connection_id, {
                "action": "error", "code": "rate_limited",
                "message": "too many frames; slow down (unacknowledged updates must be resent)"})
        return {"statusCode": 200}
    try:
        session = _current_rights(session, event)
    except SessionEnded:
        return {"statusCode": 200}
    try:
        frame = parse_frame(event.get("body") or "")
        frame_id = frame.fields.get("id")
        if frame.action == "ping":
            relay.send_json(session.connection_id, {"action": "pong", "id": frame.fields.get("id")})
        elif frame.action == "y":
            message = frame.message
            if frame.chunk is not None:
                assert frame.data is not None
                message = chunks.add_part(session.connection_id, frame.chunk, frame.data)
                if message is None:
                    return {"statusCode": 200}  # waiting for the other parts
            assert message is not None
            handle_message(session, message, ack=frame.fields.get("id"))
        else:
            raise FrameRejected("unknown_action", f"unknown action {frame.action[:64]!r}")
    except (ProtocolError, FrameRejected) as exc:
        metrics.add_metric(name="BadFrames", unit=MetricUnit.Count, value=1)
        reply: dict[str, Any] = json.loads(exc.to_frame())
        if isinstance(frame_id, str | int) and not isinstance(frame_id, bool):
            reply["id"] = frame_id  # lets the client match the refusal to what it sent
        relay.send_json(session.connection_id, reply)
    return {"statusCode": 200}


def handle_message(session: Session, data: bytes, *, ack: Any = None) -> None:
    """Act on one whole y-websocket message from ``session``."""
    message = decode_message(data)
    if isinstance(message, SyncStep1):
        _answer_sync_step1(session, message.state_vector)
    elif isinstance(message, SyncUpdate):
        _accept_update(session, message.update, data, ack=ack)
    elif isinstance(message, SyncStep2):  # a step 2 from one client is an update for the others
        _accept_update(session, message.update, encode_message(SyncUpdate(message.update)), ack=ack)
    elif isinstance(message, Awareness):
        _relay_awareness(session, message, data)
    elif isinstance(message, QueryAwareness):
        # The server keeps no presence: ask the peers, whose answers are relayed to everyone.
        relay.broadcast(relay.peers(session.prd_id, exclude=session.connection_id), encode_frames(data))
    else:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, "this message type is not accepted from clients")


def _answer_sync_step1(session: Session, state_vector: bytes) -> None:
    stored = store.read(session.prd_id)
    try:
        missing = stored.update_since(state_vector)
    except ValueError:
        raise FrameRejected("bad_state_vector", "the state vector of sync step 1 is malformed") from None
    frames = encode_frames(encode_message(SyncStep2(missing)))
    frames += encode_frames(encode_message(SyncStep1(stored.doc.get_state())))
    relay.send(session.connection_id, frames)
    if len(stored.update_sks) >= COMPACT_WHEN_PENDING:
        writequeue.notify(session.prd_id)


def _validate_update(update: bytes) -> None:
    try:
        Doc().apply_update(update)
    except ValueError:
        raise FrameRejected("bad_update", "the update is not a valid Yjs update; nothing was saved") from None


def _is_empty_update(update: bytes) -> bool:
    # No structs and an empty delete set: what a client in sync sends as its step 2.
    return update == b"\x00\x00"


def _accept_update(session: Session, update: bytes, as_update_message: bytes, *, ack: Any) -> None:
    if _is_empty_update(update):
        _ack(session, ack)
        return
    if not session.may_edit:
        role = session.role.value if session.role else "none"
        raise FrameRejected("read_only", f"your role ({role}) may not edit this PRD; the change was not saved")
    _validate_update(update)
    _, new = store.append_update(session.prd_id, update, origin=session.username)
    _ack(session, ack)
    if not new:
        return  # a retry or a resend: already stored and relayed once
    frames = encode_frames(as_update_message)
    relay.broadcast(relay.peers(session.prd_id, exclude=session.connection_id), frames)
    writequeue.notify(session.prd_id)
    metrics.add_metric(name="UpdatesStored", unit=MetricUnit.Count, value=1)


def _ack(session: Session, ack: Any) -> None:
    if isinstance(ack, str | int) and not isinstance(ack, bool):
        relay.send_json(session.connection_id, {"action": "ack", "id": ack})


def _relay_awareness(session: Session, message: Awareness, raw: bytes) -> None:
    entries = message.entries()
    now = time.monotonic()
    due = {e.client_id: e.clock for e in entries
           if now - _awareness_seen.get((session.connection_id, e.client_id), -1e9) >= _AWARENESS_PERSIST_SECONDS}
    if due:
        connections.remember_awareness(session.connection_id, due)
        for client_id in due:
            _awareness_seen[(session.connection_id, client_id)] = now
        if len(_awareness_seen) > 20_000:
            _awareness_seen.clear()
    relay.broadcast(relay.peers(session.prd_id, exclude=session.connection_id), encode_frames(raw))


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
        connection_id = str((event.get("requestContext") or {}).get("connectionId", ""))
        if connection_id:
            try:
                relay.send(connection_id, [error_frame("internal_error", "the server could not handle that frame")])
            except Exception:
                logger.exception("could not report the failure to the client")
        return {"statusCode": 500}
