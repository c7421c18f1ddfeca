"""WebSocket connections of a PRD (ConnectionsTable).

Two items per connection: ``(prd#<id>, conn#<connectionId>)`` so fan-out queries one partition on
the table's key (strongly consistent, unlike an index), and ``(conn#<connectionId>, meta)`` so
``$disconnect`` and ``$default``, which only know the connection id, find the PRD.  ``expires_at``
is a TTL: API Gateway ends a connection after 2 hours at the latest, and a missed ``$disconnect``
must not leave a ghost forever (the daily maintenance sweeps what TTL has not yet removed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from ..storage import register, table_meta

MAX_CONNECTION_SECONDS = 2 * 3600


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


@dataclass(frozen=True)
class Connection:
    connection_id: str
    prd_id: str
    username: str
    role: str


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
        batch.save(ConnectionModel(pk=f"conn#{connection.connection_id}", sk="meta", **common))


def lookup(connection_id: str) -> Connection | None:
    try:
        item = ConnectionModel.get(f"conn#{connection_id}", "meta", consistent_read=True)
    except ConnectionModel.DoesNotExist:
        return None
    return Connection(item.connection_id, item.prd_id, item.username, item.role)


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
