"""Reassembly of chunked frames on the server (DESIGN 3.2).

Consecutive frames of one connection may reach different Lambda containers, so the parts of a
chunked message are kept in the connections table (``conn#<id>`` / ``chunk#<chunkId>#<i>``, each
with a one-minute TTL) until all of them are there.  After storing a part, one consistent query
tells whether the set is complete; if two containers both see it complete, both process the
message, which is harmless (updates are stored under their content hash and applying one twice
is a no-op).  Incomplete sets are simply never processed: they expire (and the daily sweep
removes them where TTL has not yet).
"""

from __future__ import annotations

import time

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from ..storage import register, table_meta
from . import limits
from .protocol import ChunkInfo, ErrorCode, ProtocolError, join_chunk_parts

PART_TTL_SECONDS = limits.CHUNK_PART_TTL_SECONDS


@register
class ChunkPart(Model):
    """A part of a chunked message (same table and keys as ``connections.ConnectionModel``)."""

    Meta = table_meta("connections_table")

    pk = UnicodeAttribute(hash_key=True)  # conn#<connectionId>
    sk = UnicodeAttribute(range_key=True)  # chunk#<chunkId>#<i:03d>
    data = UnicodeAttribute()
    n = NumberAttribute()
    expires_at = NumberAttribute()


def _set_id(part: ChunkPart) -> str:
    return str(part.sk).split("#")[1]


def add_part(connection_id: str, chunk: ChunkInfo, data: str) -> bytes | None:
    """Store one part; the whole decoded message once every part has arrived, else None."""
    if chunk.n > limits.MAX_ACCEPTED_CHUNKS:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"a chunked message may have at most {limits.MAX_ACCEPTED_CHUNKS} "
                                                 "parts here (the largest update accepted); nothing was kept")
    pk = f"conn#{connection_id}"
    prefix = f"chunk#{chunk.id}#"
    now = int(time.time())
    ChunkPart(pk=pk, sk=f"{prefix}{chunk.i:03d}", data=data, n=chunk.n, expires_at=now + PART_TTL_SECONDS).save()
    # Every part of this connection: the stale ones go, and the open sets are counted.
    every = list(ChunkPart.query(pk, ChunkPart.sk.startswith("chunk#"), consistent_read=True))
    stale = [p for p in every if int(p.expires_at) < now]
    fresh = [p for p in every if int(p.expires_at) >= now]
    if stale:
        _discard(stale)
    parts = [p for p in fresh if _set_id(p) == chunk.id]
    if len({_set_id(p) for p in fresh}) > limits.MAX_OPEN_CHUNK_SETS:
        _discard(parts)
        raise ProtocolError(ErrorCode.CHUNK_LIMIT, f"more than {limits.MAX_OPEN_CHUNK_SETS} incomplete chunked "
                                                   "messages at once; this one was dropped")
    if any(int(p.n) != chunk.n for p in parts):
        _discard(parts)
        raise ProtocolError(ErrorCode.BAD_CHUNK, f"the parts of chunk {chunk.id} disagree on their count")
    if len(parts) < chunk.n:
        return None
    _discard(parts)
    return join_chunk_parts([p.data for p in sorted(parts, key=lambda p: p.sk)])


def _discard(parts: list[ChunkPart]) -> None:
    with ChunkPart.batch_write() as batch:
        for part in parts:
            batch.delete(part)
