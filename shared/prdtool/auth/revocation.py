"""The token deny list: revoked access tokens (by ``jti``) and sessions (by ``origin_jti``).

Cognito cannot revoke an access JWT (it stays valid until it expires), so logout and refresh write
our own deny-list entries, each expiring with the token it refuses (DynamoDB TTL).  Checking a
token costs one ``BatchGetItem`` for both keys.  TTL deletion is lazy (and not emulated locally),
so expired entries are ignored on read and swept by the daily maintenance.

Every revocation — of a token, a session, a person or an API key — also adds one to a counter, the
*generation* (one item of the same table).  A long-lived holder of credentials, an open WebSocket
connection, must learn of a revocation within seconds; rechecking every connection's entries every
few seconds cost one ``BatchGetItem`` per connection and container (at 50 editors and 8 containers,
up to 80 a second — most of the DynamoDB reads of a busy PRD).  :class:`RecheckCache` reads the
generation instead, once per container and recheck interval, and reads a connection's entries
again only when the generation moved (or the verdict is older than ``VERDICT_MAX_AGE_SECONDS``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

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
    generation = NumberAttribute(null=True)  # only on the generation item


GENERATION_KEY = "generation"
# The generation item never expires (its TTL attribute far in the future: not swept, not deleted).
_NEVER = 253402300799  # 9999-12-31T23:59:59Z
# A cached "not revoked" is read again after this long even if the generation did not move: the
# bound on how long a revocation whose generation bump failed (after its entries were written) can
# go unseen by open connections (their closing by ``live`` normally ends them at once anyway).
VERDICT_MAX_AGE_SECONDS = 120.0


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
    bump_generation()  # after the entries: whoever sees the new generation finds them


def bump_generation() -> None:
    """Tell every :class:`RecheckCache` that some credentials were revoked (entries already written)."""
    RevocationModel(key=GENERATION_KEY).update(actions=[
        RevocationModel.generation.add(1),
        RevocationModel.revoked_at.set(int(time.time())),
        RevocationModel.expires_at.set(_NEVER),
    ])


def current_generation() -> int:
    """The revocation counter (a strongly consistent read; 0 before any revocation)."""
    try:
        item = RevocationModel.get(GENERATION_KEY, consistent_read=True, attributes_to_get=["generation"])
    except RevocationModel.DoesNotExist:
        return 0
    return int(item.generation or 0)


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


class RecheckCache:
    """Whether open sessions' credentials are still valid, for a container serving many of them.

    :meth:`valid` answers as :func:`ensure_not_revoked` would have at most ``recheck_seconds``
    ago: the generation is read (strongly consistent) at most once per ``recheck_seconds`` per
    container, and a principal's entries (or API key) are read again only when the generation
    moved since they were last read, or after ``VERDICT_MAX_AGE_SECONDS``.  Sound because
    :func:`revoke` (and an API key's revocation) write what they refuse *before* bumping the
    generation, and a verdict is filed under the generation read *before* its entries were.

    :meth:`valid_until` is the monotonic time the answer holds to (the next generation read is due
    then): a caller that caches the answer per connection must not keep it longer.
    """

    def __init__(self, recheck_seconds: float, *, max_age: float = VERDICT_MAX_AGE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.recheck_seconds = recheck_seconds
        self.max_age = max_age
        self._clock = clock
        self._generation: tuple[float, int] | None = None  # (read at, value)
        # principal's identity -> (generation it was read under, read at, valid)
        self._verdicts: dict[tuple[str, ...], tuple[int, float, bool]] = {}

    def generation(self) -> tuple[int, float]:
        """(the generation, when it was read), read again if it is ``recheck_seconds`` old."""
        now = self._clock()
        known = self._generation
        if known is None or now - known[0] >= self.recheck_seconds:
            known = self._generation = (now, current_generation())
        return known[1], known[0]

    def valid_until(self) -> float:
        return (self._generation[0] if self._generation else self._clock()) + self.recheck_seconds

    def valid(self, principal: Principal) -> bool:
        """False if the principal's credentials were revoked (as of the last generation read)."""
        generation, _ = self.generation()
        identity = (principal.api_key_id, principal.jti, principal.origin_jti, principal.username,
                    str(principal.issued_at))
        now = self._clock()
        known = self._verdicts.get(identity)
        if known is not None and known[0] == generation and now - known[1] < self.max_age:
            return known[2]
        try:
            ensure_not_revoked(principal)
            verdict = True
        except Unauthenticated:
            verdict = False
        if len(self._verdicts) > 20_000:
            self._verdicts.clear()
        self._verdicts[identity] = (generation, now, verdict)
        return verdict
