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
from typing import TYPE_CHECKING, Any

from ..auth.policy import Action, Role, allowed
from ..auth.principal import Principal
from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings
from . import chunks, connections, limits, live, presence, relay, writequeue
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
from .updates import UnsafeUpdate, inspect_update

if TYPE_CHECKING:
    from ..auth.revocation import RecheckCache

# Not imported here: pycrdt and ``store`` (which imports it), about 25 ms of this handler's ~200 ms
# of import (pycrdt loads anyio too; more on a loaded machine).  Only frames that carry or ask for
# a document need them (sync step 1 and updates); $connect, $disconnect, pings and presence never
# do.  The first such frame in a container imports them; Python caches the modules for the rest.

# Past this many uncompacted updates, opening the document asks for a compaction right away.
COMPACT_WHEN_PENDING = 500
_PRESENCE_PERSIST_SECONDS = 1.0
# Container state, each bounded (cleared past 20,000 entries) and rebuilt from the tables if lost:
# (connection, client id) -> when its presence was last recorded
_presence_saved: dict[tuple[str, int], float] = {}
# connection id -> the awareness client ids it speaks for / was refused (with when)
_speaks_for: dict[str, set[int]] = {}
_refused_clients: dict[tuple[str, int], float] = {}
# PRD id -> (monotonic time until which it is trusted, document bytes known)
_document_bytes: dict[str, tuple[float, int]] = {}


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
    expires_at: int = 0  # epoch seconds when the credentials expire (0: never, an API key without expiry)

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
            expires_at=int(authorizer.get("expires_at", 0) or 0),
        )


class SessionEnded(Exception):
    """The connection's rights are gone (revoked credentials, no role any more): it was closed."""


# connection id -> (monotonic time until which the check holds, current role or None, verdict)
_rechecked: dict[str, tuple[float, Role | None, str]] = {}
# connection id -> (tokens left, monotonic time of the last refill, monotonic time of the last refusal)
_flood: dict[str, tuple[float, float, float]] = {}
# connection id -> the role this container last told it about (role-changed), when not its initial one
_role_told: dict[str, Role] = {}


def _current_rights(session: Session, event: Mapping[str, Any]) -> Session:
    """The session with the caller's role as it is now (rechecked every few seconds at most).

    Closes the connection and raises :class:`SessionEnded` when the access token expired (checked
    on every frame: it costs nothing), the credentials were revoked, the PRD was deleted or the
    caller lost all access to it.
    """
    if session.expires_at and time.time() >= session.expires_at:
        live.expire_session(session.connection_id)
        raise SessionEnded
    now = time.monotonic()
    cached = _rechecked.get(session.connection_id)
    if cached is not None and cached[0] > now:
        _, role, verdict = cached
    else:
        authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
        principal = Principal.from_context(authorizer)
        role, verdict = None, "revoked"
        revocations = _revocations()
        if principal is not None and revocations.valid(principal):
            connected_at = int((event.get("requestContext") or {}).get("connectedAt") or 0)
            role, verdict = _member_role(session.prd_id, principal, connected_at)
        if len(_rechecked) > 20_000:
            _rechecked.clear()
        # Held no longer than the revocation generation it rests on (the bound stays ws_recheck_seconds).
        until = min(now + get_settings().ws_recheck_seconds, revocations.valid_until())
        _rechecked[session.connection_id] = (until, role, verdict)
    if verdict == "revoked":
        live.end_session(session.connection_id, "revoked")
        raise SessionEnded
    if verdict == "deleted":
        live.end_prd(session.connection_id, session.prd_id)
        raise SessionEnded
    if role is None and not session.is_admin:
        live.end_access(session.connection_id, session.prd_id)
        raise SessionEnded
    if role != session.role and _role_told.get(session.connection_id) != role and role is not None:
        # The role changed since the connection opened and its client may not know: a notice sent
        # while it was reconnecting (a lowered role closes the connection) reached nobody.
        _role_told[session.connection_id] = role
        if len(_role_told) > 20_000:
            _role_told.clear()
        relay.send_json(session.connection_id, {"action": "notice", "type": "role-changed", "role": role.value})
    return replace(session, role=role)


def _revocations() -> RecheckCache:
    """This container's view of revoked credentials (one generation read per recheck interval)."""
    global _revocation_cache
    seconds = get_settings().ws_recheck_seconds
    if _revocation_cache is None or _revocation_cache.recheck_seconds != seconds:
        from ..auth.revocation import RecheckCache

        _revocation_cache = RecheckCache(seconds)
    return _revocation_cache


_revocation_cache: RecheckCache | None = None


# PRD id -> (monotonic time until which it holds, epoch ms when it was read, the PRD is live,
# {username: role}): one read of the PRD and one of its members per PRD and container every
# ws_recheck_seconds, shared by all of the PRD's connections in the container (not two reads per
# connection).  A connection opened after the read refreshes it: its authorizer saw newer rights.
_prd_rights: dict[str, tuple[float, int, bool, dict[str, Role]]] = {}


def _member_role(prd_id: str, principal: Principal, connected_at_ms: int = 0) -> tuple[Role | None, str]:
    """(the caller's role, "ok"), or (None, "deleted") when the PRD no longer exists."""
    from ..prds.access import live_roles  # the PRD package's small public lookup

    now = time.monotonic()
    known = _prd_rights.get(prd_id)
    if known is None or known[0] <= now or known[1] <= connected_at_ms:
        if len(_prd_rights) > 10_000:
            _prd_rights.clear()
        read_at = int(time.time() * 1000)
        live, roles = live_roles(prd_id)
        known = _prd_rights[prd_id] = (now + get_settings().ws_recheck_seconds, read_at, live, roles)
    if not known[2]:
        return None, "deleted"
    return (known[3].get(principal.username) if principal.may_reach(prd_id) else None), "ok"


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
    origin = live.key_origin(principal.api_key_id) if principal.api_key_id else principal.origin_jti
    connections.register_connection(
        connections.Connection(session.connection_id, session.prd_id, session.username,
                               session.role.value if session.role else "admin", origin_jti=origin),
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
    _speaks_for.pop(connection_id, None)
    _role_told.pop(connection_id, None)
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
        _accept_update(session, message.update, encode_message(SyncUpdate(message.update)), ack=ack, step2=True)
    elif isinstance(message, Awareness):
        _relay_awareness(session, message)
    elif isinstance(message, QueryAwareness):
        _answer_presence_query(session)
    else:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, "this message type is not accepted from clients")


def _answer_sync_step1(session: Session, state_vector: bytes) -> None:
    from . import store  # lazy: pycrdt (see the imports)

    stored = store.read(session.prd_id)
    try:
        missing = stored.update_since(state_vector)
    except ValueError:
        raise FrameRejected("bad_state_vector", "the state vector of sync step 1 is malformed") from None
    frames = encode_frames(encode_message(SyncStep2(missing)))
    frames += encode_frames(encode_message(SyncStep1(stored.doc.get_state())))
    if session.role is not None:
        # The role this connection has now: a client told "viewer" that reconnects after being made
        # an editor again would otherwise stay read-only (its new connection is an editor's from the
        # start, so no role-changed notice ever comes).
        frames.append(json.dumps({"action": "notice", "type": "role", "role": session.role.value},
                                 separators=(",", ":")))
    relay.send(session.connection_id, frames)
    if len(stored.update_sks) >= COMPACT_WHEN_PENDING:
        writequeue.notify(session.prd_id)


def _validate_update(update: bytes) -> None:
    """Refuse what is malformed, beyond the limits, or dangerous to apply (see ``updates``)."""
    try:
        inspect_update(update)
    except UnsafeUpdate as exc:
        raise FrameRejected(exc.code, f"{exc.message}; nothing was saved") from None
    from pycrdt import Doc  # lazy: see the imports

    try:
        Doc().apply_update(update)
    except ValueError:
        raise FrameRejected("bad_update", "the update is not a valid Yjs update; nothing was saved") from None


def _ensure_room(prd_id: str, size: int) -> None:
    """Refuse an update that would take the document past :data:`limits.MAX_DOCUMENT_BYTES`.

    The size comes from the head item (the compactor records it), read at most every few seconds
    per container; what this container accepts meanwhile is added to it.  Other containers' bytes
    since the last compaction are not seen, so the document can overshoot by a few seconds of
    traffic, never by more.
    """
    from . import store  # lazy: pycrdt (see the imports)

    now = time.monotonic()
    known = _document_bytes.get(prd_id)
    if known is None or known[0] <= now:
        if len(_document_bytes) > 20_000:
            _document_bytes.clear()
        known = (now + limits.DOCUMENT_SIZE_RECHECK_SECONDS, store.document_bytes(prd_id))
    if known[1] + size > limits.MAX_DOCUMENT_BYTES:
        _document_bytes[prd_id] = known
        raise FrameRejected("document_full", f"this PRD has reached its size limit ({limits.MAX_DOCUMENT_BYTES} "
                                             "bytes); nothing was saved — remove content or split the PRD")
    _document_bytes[prd_id] = (known[0], known[1] + size)


def _is_empty_update(update: bytes) -> bool:
    # No structs and an empty delete set: what a client in sync sends as its step 2.
    return update == b"\x00\x00"


def _only_known_deletions(prd_id: str, update: bytes) -> bool:
    """Does this update (no structs, only a delete set) delete nothing the document still has?

    A client's sync step 2 carries its whole delete set whenever its document has deletions, so a
    client that is merely in sync (a viewer too) answers the server's step 1 with them: that is no
    edit, and must neither be refused as one (the viewer's client would resend it forever) nor stored
    and credited to an author.  Checked on a copy of the document (once per connection: a step 2)."""
    from pycrdt import Doc

    from . import store

    current = store.read(prd_id).doc.get_update()
    copy: Doc[Any] = Doc()
    copy.apply_update(current)
    copy.apply_update(update)
    return copy.get_update() == current


def _accept_update(session: Session, update: bytes, as_update_message: bytes, *, ack: Any,
                   step2: bool = False) -> None:
    if _is_empty_update(update) or (step2 and update[:1] == b"\x00" and _only_known_deletions(session.prd_id, update)):
        _ack(session, ack)  # (an update's first varint counts the clients whose structs follow: 0, none)
        return
    if not session.may_edit:
        role = session.role.value if session.role else "none"
        raise FrameRejected("read_only", f"your role ({role}) may not edit this PRD; the change was not saved")
    _validate_update(update)
    _ensure_room(session.prd_id, len(update))
    from . import store  # lazy: pycrdt (see the imports)

    _, new = store.append_update(session.prd_id, update, origin=session.username)
    _ack(session, ack)
    if not new:
        return  # a retry or a resend: already stored and relayed once
    frames = encode_frames(as_update_message)
    relay.broadcast(relay.update_peers(session.prd_id, exclude=session.connection_id), frames)
    writequeue.notify(session.prd_id)
    metrics.add_metric(name="UpdatesStored", unit=MetricUnit.Count, value=1)


def _ack(session: Session, ack: Any) -> None:
    if isinstance(ack, str | int) and not isinstance(ack, bool):
        relay.send_json(session.connection_id, {"action": "ack", "id": ack})


def _relay_awareness(session: Session, message: Awareness) -> None:
    """Relay presence bound to the connection: only client ids it holds, identity from the token.

    Entries for client ids another person holds are dropped (one ``awareness_client`` error frame
    says which); every state is rebuilt by :func:`presence.bind`.  The states are recorded on the
    connection's item at most once a second (one write for all of them), and relayed to the
    peers as this container last saw them (one query per PRD per second, not one per cursor move).
    """
    entries = message.entries()
    if len(entries) > limits.MAX_AWARENESS_ENTRIES:
        raise FrameRejected("bad_awareness", f"an awareness frame may carry at most {limits.MAX_AWARENESS_ENTRIES} "
                                             "entries: your own clients")
    bound: list[AwarenessEntry] = []
    refused: list[int] = []
    for entry in entries:
        if _may_speak_for(session, entry.client_id):
            bound.append(AwarenessEntry(entry.client_id, entry.clock, presence.bind(entry.state, session.username)))
        else:
            refused.append(entry.client_id)
    if refused:
        relay.send_json(session.connection_id, {
            "action": "error", "code": "awareness_client",
            "message": f"awareness client ids {refused[:4]} belong to another connection; their states were dropped"})
    if not bound:
        return
    payload = encode_awareness(bound)
    _record_presence(session, bound)
    relay.broadcast(relay.recent_peers(session.prd_id, exclude=session.connection_id,
                                       max_age=limits.PEERS_CACHE_SECONDS), encode_frames(encode_message(payload)))


def _may_speak_for(session: Session, client_id: int) -> bool:
    """Whether the connection holds ``client_id`` (claimed on first use, one write per container)."""
    held = _speaks_for.setdefault(session.connection_id, set())
    if client_id in held:
        return True
    now = time.monotonic()
    if now - _refused_clients.get((session.connection_id, client_id), -1e9) < 30.0:
        return False
    if len(held) >= limits.MAX_AWARENESS_CLIENTS_PER_CONNECTION:
        return False
    expires_at = session.expires_at or int(time.time()) + connections.MAX_CONNECTION_SECONDS
    if connections.claim_client(session.prd_id, client_id, connection_id=session.connection_id,
                                username=session.username, expires_at=expires_at):
        held.add(client_id)
        if len(_speaks_for) > 20_000:
            _speaks_for.clear()
        return True
    if len(_refused_clients) > 20_000:
        _refused_clients.clear()
    _refused_clients[(session.connection_id, client_id)] = now
    return False


def _record_presence(session: Session, entries: list[AwarenessEntry]) -> None:
    now = time.monotonic()
    due = {e.client_id: (e.clock, None if e.state is None else json.dumps(e.state, separators=(",", ":")))
           for e in entries
           if e.state is None or now - _presence_saved.get((session.connection_id, e.client_id), -1e9)
           >= _PRESENCE_PERSIST_SECONDS}
    if not due:
        return
    connections.remember_presence(session.prd_id, session.connection_id, due)
    for client_id in due:
        _presence_saved[(session.connection_id, client_id)] = now
    if len(_presence_saved) > 20_000:
        _presence_saved.clear()


def _answer_presence_query(session: Session) -> None:
    """Answer query-awareness with the presence the peers last recorded (one query, no relaying
    of the question to every peer and their answers to everyone)."""
    entries = [AwarenessEntry(client_id, clock, json.loads(state))
               for peer in relay.peers(session.prd_id, exclude=session.connection_id)
               for client_id, (clock, state) in peer.presence.items() if state is not None]
    if entries:
        relay.send(session.connection_id, encode_frames(encode_message(encode_awareness(entries))))


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
