"""The token deny list: revoked access tokens (by ``jti``) and sessions (by ``origin_jti``).

Cognito cannot revoke an access JWT (it stays valid until it expires), so logout and refresh write
our own deny-list entries, each expiring with the token it refuses (DynamoDB TTL).  Checking a
token costs one ``BatchGetItem`` for both keys.  TTL deletion is lazy (and not emulated locally),
so expired entries are ignored on read and swept by the daily maintenance.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from ..errors import Unauthenticated
from ..storage import register, table_meta
from .principal import Principal


@register
class RevocationModel(Model):
    Meta = table_meta("revocations_table")

    key = UnicodeAttribute(hash_key=True)  # "jti#<jti>" | "origin#<origin_jti>" | "user#<username>"
    expires_at = NumberAttribute()  # TTL attribute (epoch seconds)
    reason = UnicodeAttribute(null=True)
    revoked_at = NumberAttribute()


def jti_key(jti: str) -> str:
    return f"jti#{jti}"


def origin_key(origin_jti: str) -> str:
    return f"origin#{origin_jti}"


def user_key(username: str) -> str:
    """A user-wide entry: every token of the user issued at or before ``revoked_at`` is refused."""
    return f"user#{username}"


def revoke(keys: Iterable[str], *, expires_at: int, reason: str) -> None:
    """Deny every token matching one of ``keys`` until ``expires_at`` (plus a safety margin)."""
    now = int(time.time())
    # Keep entries a little past expiry so clock skew between services cannot reopen a window.
    ttl = max(expires_at, now) + 300
    with RevocationModel.batch_write() as batch:
        for key in keys:
            batch.save(RevocationModel(key=key, expires_at=ttl, reason=reason, revoked_at=now))


def revoked_reason(jti: str, origin_jti: str, username: str, issued_at: int) -> str | None:
    """Why a token is refused (its id, its session, or its user was revoked), else None.

    One ``BatchGetItem`` for all three keys; this is the check every request and WebSocket
    message makes, so it is never cached for long (see ``auth.authorizer``).
    """
    keys = [k for k in (jti_key(jti), origin_key(origin_jti), user_key(username)) if not k.endswith("#")]
    now = int(time.time())
    for item in RevocationModel.batch_get(keys):
        if int(item.expires_at) <= now:
            continue
        if str(item.key).startswith("user#"):
            if issued_at <= int(item.revoked_at):
                return "user"
            continue
        return "session" if str(item.key).startswith("origin#") else "token"
    return None


_REVOKED_MESSAGES = {
    "token": "the access token has been revoked",
    "session": "the session has ended (signed out); sign in again",
    "user": "your access was revoked by an administrator; sign in again",
}


def ensure_not_revoked(principal: Principal) -> None:
    """Raise :class:`Unauthenticated` if the principal's credentials were revoked since they were
    verified: an API key by its record, a token by the deny list.  Used by the authorizer on every
    request and by the WebSocket on its periodic recheck of an open connection."""
    if principal.api_key_id:
        from . import apikeys

        apikeys.ensure_live(principal.api_key_id)
        return
    reason = revoked_reason(principal.jti, principal.origin_jti, principal.username, principal.issued_at)
    if reason:
        raise Unauthenticated(_REVOKED_MESSAGES[reason], code="token_revoked")
