"""Server-side edits reach live editors: store an update, then relay it to every connection.

Used when something other than a WebSocket client changes the document (a rename through the HTTP
API today; AI apply, restore and import into an existing PRD later).  The update must be an edit
of the existing shared types (see ``collab.document``), never a rebuilt document.
"""

from __future__ import annotations

from ..observability import logger
from . import relay, store, writequeue
from .protocol import SyncUpdate, encode_frames, encode_message


def apply_server_update(prd_id: str, update: bytes, *, origin: str) -> None:
    """Store ``update`` durably, then relay it (best effort: a client that misses the relay gets
    it at its next sync, because it is stored first)."""
    _, new = store.append_update(prd_id, update, origin=origin)
    if not new:
        return
    try:
        relay.broadcast(relay.peers(prd_id, exclude=None), encode_frames(encode_message(SyncUpdate(update))))
    except Exception:
        logger.exception("could not relay a server-side edit", extra={"prd_id": prd_id})
    writequeue.notify(prd_id)
