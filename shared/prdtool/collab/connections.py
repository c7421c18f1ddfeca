"""WebSocket connections of a PRD (ConnectionsTable).

Two items per connection: ``(prd#<id>, conn#<connectionId>)`` so fan-out queries one partition on
the table's key (strongly consistent, unlike an index), and ``(conn#<connectionId>, meta)`` so
``$disconnect`` and ``$default``, which only know the connection id, find the PRD.  ``expires_at``
is a TTL: API Gateway ends a connection after 2 hours at the latest, and a missed ``$disconnect``
must not leave a ghost forever (the daily maintenance sweeps what TTL has not yet removed).  A
connection opened with an access token expires with the token: it receives nothing after that and
its next frame closes it.

Presence: the PRD item of a connection also holds the last awareness state it announced per client
id (``aw``: client id -> ``"<clock> <state JSON>"``, written at most once a second per container), so
the same query that lists a PRD's peers answers a newcomer's "who is here" (query-awareness) and
``$disconnect`` knows which clients left at which clock.  Client ids are claimed per PRD
(``(aw#<prdId>, <clientId>)``): a connection may only speak for client ids that no one else holds.

Roster: ``(prd#<id>, roster)`` holds a fresh random version each time a connection of the PRD is
registered or removed.  The fan-out of a document update reads that one item (strongly
consistent) instead of querying every connection item: while the version is the one a container
saw with its last query, the list it got then is still the PRD's list.  A connection registers its
items before the version changes, and its sync step 1 reads the document only after ``$connect``
returns, so an update stored before a sender's version read is either relayed to the newcomer
(the sender saw the new version) or read by the newcomer's sync (the version changed after it).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from pynamodb.attributes import MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from .. import dynamo
from ..storage import is_conditional_failure, register, table_meta

MAX_CONNECTION_SECONDS = 2 * 3600


class ConnectionsByUser(GlobalSecondaryIndex["ConnectionModel"]):
    """Sparse index of the meta items: a person's open connections (to end revoked sessions)."""

    class Meta:
        index_name = "by_user"
        projection = AllProjection()

    user_key = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


@register
class ConnectionModel(Model):
    Meta = table_meta("connections_table")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    connection_id = UnicodeAttribute()
    prd_id = UnicodeAttribute()
    username = UnicodeAttribute()
    role = UnicodeAttribute()
    connected_at = NumberAttribute()
    expires_at = NumberAttribute()  # TTL (epoch seconds)
    # PRD items: the last awareness state per client id, "<clock> <state JSON>".
    aw: MapAttribute[str, Any] = MapAttribute(null=True)
    # Meta items only: the username (index key) and the session the connection was opened with
    # (the token's origin_jti, or "key#<id>" for an API key).
    user_key = UnicodeAttribute(null=True)
    origin_jti = UnicodeAttribute(null=True)

    by_user = ConnectionsByUser()


@register
class AwarenessClaim(Model):
    """Which connection (and person) speaks for an awareness client id on a PRD."""

    Meta = table_meta("connections_table")

    pk = UnicodeAttribute(hash_key=True)  # aw#<prdId>
    sk = UnicodeAttribute(range_key=True)  # the client id, in decimal
    connection_id = UnicodeAttribute()
    username = UnicodeAttribute()
    expires_at = NumberAttribute()  # TTL


@register
class RosterModel(Model):
    """Changes whenever the set of a PRD's connections changes (see the module's docstring)."""

    Meta = table_meta("connections_table")

    pk = UnicodeAttribute(hash_key=True)  # prd#<prdId>
    sk = UnicodeAttribute(range_key=True)  # "roster"
    version = UnicodeAttribute()
    expires_at = NumberAttribute()  # TTL: outlives the longest connection by an hour


ROSTER_SK = "roster"


def roster_version(prd_id: str) -> str | None:
    """The PRD's current roster version (one strongly consistent read of one small item)."""
    # Read on every relayed edit: the lean JSON call (prdtool.dynamo), not Model.get.
    found = dynamo.get(RosterModel.Meta.table_name, {"pk": {"S": _prd_pk(prd_id)}, "sk": {"S": ROSTER_SK}},
                       attributes=("version",))
    return str(found["version"]["S"]) if found and "version" in found else None


def _roster_changed(prd_id: str) -> None:
    # A random version, not a counter: an expired roster starting again at 1 could match a
    # container's hours-old list.
    RosterModel(pk=_prd_pk(prd_id), sk=ROSTER_SK, version=uuid.uuid4().hex,
                expires_at=int(time.time()) + MAX_CONNECTION_SECONDS + 3600).save()


@dataclass(frozen=True)
class Connection:
    connection_id: str
    prd_id: str
    username: str
    role: str
    # client id -> (clock, state JSON or None when removed), as last recorded
    presence: dict[int, tuple[int, str | None]] = field(default_factory=dict)
    origin_jti: str = ""
    expires_at: int = 0
    connected_at: int = 0  # epoch seconds of its $connect

    @property
    def awareness_clients(self) -> dict[int, int]:
        """Client id -> the last clock recorded for it."""
        return {client: clock for client, (clock, _) in self.presence.items()}


def _prd_pk(prd_id: str) -> str:
    return f"prd#{prd_id}"


def register_connection(connection: Connection, *, token_expires_at: int) -> None:
    now = int(time.time())
    latest = now + MAX_CONNECTION_SECONDS
    expires_at = min(token_expires_at, latest) if token_expires_at else latest
    common: dict[str, Any] = dict(connection_id=connection.connection_id, prd_id=connection.prd_id,
                  username=connection.username, role=connection.role, connected_at=now, expires_at=expires_at)
    with ConnectionModel.batch_write() as batch:
        batch.save(ConnectionModel(pk=_prd_pk(connection.prd_id), sk=f"conn#{connection.connection_id}", aw={},
                                   **common))
        batch.save(ConnectionModel(pk=f"conn#{connection.connection_id}", sk="meta",
                                   user_key=connection.username, origin_jti=connection.origin_jti or None, **common))
    _roster_changed(connection.prd_id)  # after the items: see the module's docstring


def _presence(item: ConnectionModel) -> dict[int, tuple[int, str | None]]:
    out: dict[int, tuple[int, str | None]] = {}
    for client, packed in (item.aw.as_dict() if item.aw else {}).items():
        clock, _, state = str(packed).partition(" ")
        out[int(client)] = (int(clock), None if state in ("", "null") else state)
    return out


def _connection(item: ConnectionModel) -> Connection:
    return Connection(item.connection_id, item.prd_id, item.username, item.role, _presence(item),
                      item.origin_jti or "", int(item.expires_at), int(item.connected_at or 0))


def lookup(connection_id: str) -> Connection | None:
    try:
        item = ConnectionModel.get(f"conn#{connection_id}", "meta", consistent_read=True)
    except ConnectionModel.DoesNotExist:
        return None
    return _connection(item)


def remember_presence(prd_id: str, connection_id: str, states: dict[int, tuple[int, str | None]]) -> None:
    """Record the latest awareness state of a connection's clients: one write for all of them.

    Frames of one connection may be handled by several containers, so an older state can land after
    a newer one; that only makes a newcomer's first view or a departure notice a moment stale (the
    next live frame corrects it), which is not worth a conditional write per client.
    """
    item = ConnectionModel(pk=_prd_pk(prd_id), sk=f"conn#{connection_id}")
    actions = [ConnectionModel.aw[str(client)].set(f"{clock} {state or 'null'}")
               for client, (clock, state) in states.items()]
    try:
        item.update(actions=actions, condition=ConnectionModel.pk.exists() & ConnectionModel.aw.exists())
    except UpdateError as exc:
        if not is_conditional_failure(exc):
            raise
        # the connection is gone: nothing to remember


def claim_client(prd_id: str, client_id: int, *, connection_id: str, username: str, expires_at: int) -> bool:
    """Make ``connection_id`` the speaker for awareness client ``client_id`` on a PRD.

    True when the id was free, expired, or already held by the same person (a reconnect of the
    same editor, whose old connection may not have been cleaned up yet); False when someone else
    holds it.  One conditional write.
    """
    now = int(time.time())
    claim = AwarenessClaim(pk=f"aw#{prd_id}", sk=str(client_id), connection_id=connection_id,
                           username=username, expires_at=expires_at)
    try:
        claim.save(condition=AwarenessClaim.pk.does_not_exist() | (AwarenessClaim.username == username)
                   | (AwarenessClaim.expires_at < now))
    except PutError as exc:
        if is_conditional_failure(exc):
            return False
        raise
    return True


def remove(connection_id: str) -> Connection | None:
    """Forget a connection (both items, its chunk parts); returns what it was, with its presence."""
    known = lookup(connection_id)
    prd_item: ConnectionModel | None = None
    if known is not None:
        try:
            prd_item = ConnectionModel.get(_prd_pk(known.prd_id), f"conn#{connection_id}", consistent_read=True)
        except ConnectionModel.DoesNotExist:
            prd_item = None
    parts = list(ConnectionModel.query(f"conn#{connection_id}", ConnectionModel.sk.startswith("chunk#"),
                                       attributes_to_get=["pk", "sk"]))
    with ConnectionModel.batch_write() as batch:
        batch.delete(ConnectionModel(pk=f"conn#{connection_id}", sk="meta"))
        if known:
            batch.delete(ConnectionModel(pk=_prd_pk(known.prd_id), sk=f"conn#{connection_id}"))
        for part in parts:
            batch.delete(ConnectionModel(pk=part.pk, sk=part.sk))
    if known is not None:
        _roster_changed(known.prd_id)
    if known is not None and prd_item is not None:
        known = replace(known, presence=_presence(prd_item))
    return known


def of_prd(prd_id: str, *, include_expired: bool = False) -> list[Connection]:
    """The PRD's open connections (one strongly consistent query on the table's key), with their
    presence; those whose credentials expired are left out unless ``include_expired``."""
    now = int(time.time())
    return [
        _connection(i)
        for i in ConnectionModel.query(_prd_pk(prd_id), ConnectionModel.sk.startswith("conn#"), consistent_read=True)
        if include_expired or int(i.expires_at) > now
    ]


def of_user(username: str) -> list[Connection]:
    """A person's open connections, on every PRD (the index is eventually consistent: a connection
    opened a moment ago may be missing, which the per-frame recheck in ``socket`` covers)."""
    now = int(time.time())
    return [_connection(i) for i in ConnectionModel.by_user.query(username) if int(i.expires_at) > now]
