"""Identifiers: ULIDs (time-ordered, 26 Crockford base32 characters) for PRDs, updates, snapshots.

Time ordering keeps DynamoDB range keys in creation order; 80 random bits keep concurrent writers
in different Lambdas from colliding.
"""

from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case (URL friendly)
# Used with fullmatch: with re.match, "$" would also accept a trailing "\n".
ULID_RE = re.compile(r"[0-9a-hjkmnp-tv-z]{26}")


def ulid(at_ms: int | None = None) -> str:
    """A new lower-case ULID; ``at_ms`` fixes the timestamp part (tests, back-dating)."""
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_ulid(value: str) -> bool:
    """True if ``value`` is exactly a lower-case ULID (nothing before or after it, not even a newline)."""
    return ULID_RE.fullmatch(value) is not None
