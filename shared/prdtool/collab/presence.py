"""Awareness states as the server relays them: identity from the verified user, the rest bounded.

A client's awareness state is whatever JSON it sends, and peers render it (names in the presence
list, colours in CSS of remote cursors).  So the server never relays it as sent: ``user`` is
replaced by the identity the server vouches for (the username from the verified token, a colour
from a fixed palette), only the fields of :data:`limits.AWARENESS_FIELDS` are kept, and a state
whose JSON is larger than :data:`limits.MAX_AWARENESS_STATE_BYTES` loses its optional fields.

The palette and the hash are those of the web client (``web/src/presence.ts``), so a person has
the same colour everywhere; a test keeps the two in step.
"""

from __future__ import annotations

import json
from typing import Any

from . import limits

# Dark enough for white text (WCAG AA 4.5:1): remote cursor labels are white on these.
PALETTE = ("#1d4ed8", "#b91c1c", "#047857", "#7e22ce", "#a16207", "#0e7490", "#be185d", "#4d7c0f")


def identity(username: str) -> dict[str, str]:
    """The ``user`` field of a person's awareness state: name, colour, light colour."""
    h = 0
    for ch in username:
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF  # as the web client's `(hash * 31 + codePoint) >>> 0`
    color = PALETTE[h % len(PALETTE)]
    return {"name": username, "color": color, "colorLight": f"{color}33"}


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8",
                                                                                                    "surrogatepass"))


def bind(state: Any, username: str) -> dict[str, Any] | None:
    """The state to relay for ``username``'s client: ``None`` stays ``None`` (the client left)."""
    if state is None:
        return None
    bound: dict[str, Any] = {}
    if isinstance(state, dict):
        for key in sorted(limits.AWARENESS_FIELDS & state.keys()):
            value = state[key]
            if key == "status" and not (isinstance(value, str) and len(value) <= limits.MAX_AWARENESS_STATUS_CHARS):
                continue
            bound[key] = value
    bound["user"] = identity(username)
    try:
        too_big = _size(bound) > limits.MAX_AWARENESS_STATE_BYTES
    except (TypeError, ValueError, RecursionError):
        too_big = True
    if too_big:
        bound = {"user": bound["user"]}
    return bound
