"""Every limit the co-editing server enforces, in one place (docs/protocol.md §6 lists them).

The wire limits of the codec (frame size, chunk count, base64 sizes) live with the codec in
``protocol`` because clients share them; this module holds what the *server* accepts on top of
that, and why each number is what it is.  Each limit answers one attack or failure:

* allocation bombs and deep nesting in updates (an update that decodes but claims huge counts, or
  nests values so deep that the CRDT library overflows its stack — a 100,000-deep ``Any`` array,
  200 KB, kills the process with SIGSEGV in pycrdt 0.14);
* documents that outgrow what AWS can carry (a Lambda response is at most 6 MB, a DynamoDB item
  400 KB: snapshots over 350 KB already go to S3, so the document itself is what must stay
  bounded);
* chunk sets that are never completed (their parts wait in DynamoDB);
* awareness frames that speak for others or carry large states.
"""

from __future__ import annotations

from typing import Final

from .protocol import MAX_FRAME_DATA_CHARS

# --- document updates ------------------------------------------------------------------------------

MAX_UPDATE_BYTES: Final = 1024 * 1024
"""Largest single update (or client sync step 2) accepted: 1 MiB.  A 105,000-character PRD typed
organically is a 377 KB state, so a paste of a whole large document fits; anything bigger is refused
with ``too_large`` (split the paste)."""

MAX_DOCUMENT_BYTES: Final = 3 * 1024 * 1024
"""Largest encoded document state accepted: 3 MiB (about 8x the 105,000-character PRD).  The whole
Markdown must fit in one Lambda response (6 MB, ``GET /api/prds/{id}``) and the state in a handful of
chunked frames; updates that would push the document past it are refused with ``document_full``."""

DOCUMENT_SIZE_RECHECK_SECONDS: Final = 5.0
"""How long a container trusts the document size it read from the head item (the compactor, which
runs every ~5 s, writes it); the bytes it accepts meanwhile are added to it."""

MAX_ANY_DEPTH: Final = 64
"""Deepest nesting of arrays/objects inside an update's ``Any`` values (Y.Array/Y.Map content, a
subdocument's options).  Real content is a few levels deep; pycrdt crashes somewhere past 10,000."""

MAX_JSON_DEPTH: Final = 64
"""Deepest nesting inside JSON-encoded content (embeds, formatting attributes, legacy JSON content)."""

MAX_STRUCTS_PER_UPDATE: Final = 200_000
"""Most structs (items, GC ranges) in one update; a 1 MiB update of single keystrokes holds ~100,000."""

MAX_DELETE_RANGES_PER_UPDATE: Final = 200_000
"""Most delete-set ranges in one update."""

# --- chunked messages --------------------------------------------------------------------------------

MAX_ACCEPTED_CHUNKS: Final = -(-(MAX_UPDATE_BYTES * 4 // 3 + 64) // MAX_FRAME_DATA_CHARS)
"""Most parts a client's chunked message may have: enough for the largest accepted update (15)."""

MAX_OPEN_CHUNK_SETS: Final = 2
"""Incomplete chunk sets one connection may have at once (a sender writes one message's parts back
to back, so a second set only appears when parts were lost); a third is refused with ``chunk_limit``."""

CHUNK_PART_TTL_SECONDS: Final = 60
"""An incomplete set's parts are ignored (and removed) this long after they were stored."""

# --- awareness (presence) ------------------------------------------------------------------------------

MAX_AWARENESS_ENTRIES: Final = 4
"""Most entries one awareness frame may carry from a client (a stock client sends one: its own)."""

MAX_AWARENESS_CLIENTS_PER_CONNECTION: Final = 4
"""Most awareness client ids one connection may speak for (one Y.Doc has one; a few for leeway)."""

MAX_AWARENESS_STATE_BYTES: Final = 4 * 1024
"""Largest awareness state (JSON text) relayed; a cursor and a selection take about 300 bytes."""

AWARENESS_FIELDS: Final = frozenset({"cursor", "selection", "status"})
"""Top-level awareness fields a client may set; ``user`` is set by the server from the verified
identity, and anything else is dropped before relaying."""

MAX_AWARENESS_STATUS_CHARS: Final = 64
"""``status`` (e.g. "typing", "idle") is a short string."""

PEERS_CACHE_SECONDS: Final = 1.0
"""Awareness is relayed to a PRD's connections as a container saw them at most this long ago (one
query per PRD per second per container, not one per cursor move).  Document updates always query."""
