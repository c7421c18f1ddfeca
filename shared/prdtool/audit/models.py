"""The audit index (DynamoDB): entries by user, by resource and by day, plus each day's chain head.

One table, ``pk``/``sk``:

* ``user#<actor>`` / ``res#<resource>`` / ``day#<YYYY-MM-DD>``, sk ``<at, 13 digits>#<id>`` — one
  item per entry and view, holding the entry's JSON and the S3 object it is stored in, so queries
  read no S3.  The sort key orders by time, then id (ULIDs are time-ordered too); writing the same
  entry twice writes the same keys, so a redelivered batch indexes nothing new.
* ``head#<YYYY-MM-DD>`` / ``head`` — the partition's chain head: last object seq and last hash.  A
  hint for writers and the reference that detects a truncated tail.

Items expire with the retention (``expires_at``, DynamoDB TTL); the S3 objects by lifecycle.
"""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from ..storage import register, table_meta

HEAD_SK = "head"


@register
class AuditIndexModel(Model):
    Meta = table_meta("audit_index_table")

    pk = UnicodeAttribute(hash_key=True)  # "user#<actor>" | "res#<resource>" | "day#<date>"
    sk = UnicodeAttribute(range_key=True)  # "<at:013d>#<id>"
    entry = UnicodeAttribute()  # the stored entry's JSON (redacted; without prev/hash)
    actor = UnicodeAttribute()  # for filtering a resource's entries by user
    object_key = UnicodeAttribute()  # the S3 object holding the entry
    expires_at = NumberAttribute()  # TTL (epoch seconds)


@register
class AuditHeadModel(Model):
    """The chain head of one date partition (same table, ``pk = head#<date>``, ``sk = head``)."""

    Meta = table_meta("audit_index_table")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default=HEAD_SK)
    last_seq = NumberAttribute()
    last_hash = UnicodeAttribute()
    entries = NumberAttribute(default=0)
    updated_at = NumberAttribute()
    expires_at = NumberAttribute()


def sort_key(at_ms: int, entry_id: str) -> str:
    return f"{at_ms:013d}#{entry_id}"


def user_pk(actor: str) -> str:
    return f"user#{actor}"


def resource_pk(resource: str) -> str:
    return f"res#{resource}"


def day_pk(day: str) -> str:
    return f"day#{day}"


def head_pk(day: str) -> str:
    return f"head#{day}"
