"""WebSocket connections of a PRD (ConnectionsTable).

Two items per connection: ``(prd#<id>, conn#<connectionId>)`` so fan-out queries one partition on
the table's key (strongly consistent, unlike an index), and ``(conn#<connectionId>, meta)`` so
``$disconnect`` and ``$default``, which only know the connection id, find the PRD.  ``expires_at``
is a TTL: API Gateway ends a connection after 2 hours at the latest, and a missed ``$disconnect``
must not leave a ghost forever (the daily maintenance sweeps what TTL has not yet removed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pynamodb.attributes import MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

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
    # Awareness client ids this connection announced, with the last clock persisted (meta item).
    awareness: MapAttribute[str, Any] = MapAttribute(null=True)
    # Meta items only: the username (index key) and the session the connection was opened with.
    user_key = UnicodeAttribute(null=True)
    origin_jti = UnicodeAttribute(null=True)

    by_user = ConnectionsByUser()


@dataclass(frozen=True)
class Connection:
    connection_id: str
    prd_id: str
    username: str
    role: str
    awareness_clients: dict[int, int] = field(default_factory=dict)
    origin_jti: str = ""


def _prd_pk(prd_id: str) -> str:
    return f"prd#{prd_id}"


def register_connection(connection: Connection, *, token_expires_at: int) -> None:
    now = int(time.time())
    latest = now + MAX_CONNECTION_SECONDS
    expires_at = min(token_expires_at, latest) if token_expires_at else latest
    common: dict[str, Any] = dict(connection_id=connection.connection_id, prd_id=connection.prd_id,
                  username=connection.username, role=connection.role, connected_at=now, expires_at=expires_at)
    with ConnectionModel.batch_write() as batch:
        batch.save(ConnectionModel(pk=_prd_pk(connection.prd_id), sk=f"conn#{connection.connection_id}", **common))
        batch.save(ConnectionModel(pk=f"conn#{connection.connection_id}", sk="meta", awareness={},
                                   user_key=connection.username, origin_jti=connection.origin_jti or None, **common))


def lookup(connection_id: str) -> Connection | None:
    try:
        item = ConnectionModel.get(f"conn#{connection_id}", "meta", consistent_read=True)
    except ConnectionModel.DoesNotExist:
        return None
    clients = {int(k): int(v) for k, v in (item.awareness.as_dict() if item.awareness else {}).items()}
    return Connection(item.connection_id, item.prd_id, item.username, item.role, clients, item.origin_jti or "")


def remember_awareness(connection_id: str, clocks: dict[int, int]) -> None:
    """Record the awareness clients a connection speaks for, keeping each one's highest clock.

    Frames of one connection are handled concurrently by several containers, so a write may
    arrive with an older clock than one already stored: the condition keeps the clock monotonic.
    """
    item = ConnectionModel(pk=f"conn#{connection_id}", sk="meta")
    for client, clock in clocks.items():
        entry = ConnectionModel.awareness[str(client)]
        try:
            item.update(actions=[entry.set(clock)],
                        condition=ConnectionModel.pk.exists() & (entry.does_not_exist() | (entry < clock)))
        except UpdateError as exc:
            if not is_conditional_failure(exc):
                raise
            # the connection is gone, or a newer clock is already stored: nothing to do


def remove(connection_id: str) -> Connection | None:
    """Forget a connection (both items); returns what it was, if known."""
    known = lookup(connection_id)
    with ConnectionModel.batch_write() as batch:
        batch.delete(ConnectionModel(pk=f"conn#{connection_id}", sk="meta"))
        if known:
            batch.delete(ConnectionModel(pk=_prd_pk(known.prd_id), sk=f"conn#{connection_id}"))
    return known


def of_prd(prd_id: str) -> list[Connection]:
    now = int(time.time())
    return [
        Connection(i.connection_id, i.prd_id, i.username, i.role)
        for i in ConnectionModel.query(_prd_pk(prd_id), consistent_read=True)
        if int(i.expires_at) > now
    ]


def of_user(username: str) -> list[Connection]:
    """A person's open connections, on every PRD (the index is eventually consistent: a connection
    opened a moment ago may be missing, which the per-frame recheck in ``socket`` covers)."""
    now = int(time.time())
    return [
        Connection(i.connection_id, i.prd_id, i.username, i.role, origin_jti=i.origin_jti or "")
        for i in ConnectionModel.by_user.query(username)
        if int(i.expires_at) > now
    ]
