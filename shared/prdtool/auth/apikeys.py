"""API keys for programmatic access: created by a signed-in person, shown once, stored hashed.

A key reads ``prdk_<id>_<secret>``: ``id`` (a ULID) finds the stored record with one consistent
``GetItem``, and only the SHA-256 of the whole key is stored, compared in constant time.  A key acts
as its owner, never with more than the owner's roles, optionally limited to some PRDs, and never as
an organisation administrator (an admin's automation gets no admin rights from a leaked key).
Revoking marks the record, so the next request with the key is refused — there is no cache.

Keys are managed by people: a key (scoped or not) cannot create keys, list them or revoke another
key — only revoke itself, so a key found leaked can be retired by whoever holds it.  A leaked
scoped key must not reveal or switch off its owner's other automation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from ..errors import BadRequest, Forbidden, NotFound, Unauthenticated
from ..ids import is_ulid, ulid
from ..observability import logger
from ..storage import register, table_meta
from .principal import Principal

PREFIX = "prdk_"
# Used with fullmatch: with re.match, "$" would also accept a key followed by "\n".
KEY_RE = re.compile(r"prdk_([0-9a-hjkmnp-tv-z]{26})_([A-Za-z0-9_-]{43})")
MAX_KEYS_PER_USER = 50
MAX_SCOPE = 100
_LAST_USED_EVERY_SECONDS = 3600  # last_used_at is refreshed at most hourly per container and key
_last_used_noted: dict[str, float] = {}


class KeysByUser(GlobalSecondaryIndex["ApiKeyModel"]):
    class Meta:
        index_name = "by_user"
        projection = AllProjection()

    username = UnicodeAttribute(hash_key=True)
    created_at = NumberAttribute(range_key=True)


@register
class ApiKeyModel(Model):
    Meta = table_meta("api_keys_table")

    id = UnicodeAttribute(hash_key=True)
    username = UnicodeAttribute()
    name = UnicodeAttribute()
    secret_hash = UnicodeAttribute()  # sha256 hex of the whole key
    hint = UnicodeAttribute()  # the last 4 characters, so people can tell keys apart
    prd_scope = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    plan = UnicodeAttribute(default="")
    created_at = NumberAttribute()  # epoch ms
    expires_at = NumberAttribute(null=True)  # epoch seconds; None: never
    revoked_at = NumberAttribute(null=True)  # epoch ms
    last_used_at = NumberAttribute(null=True)  # epoch ms

    by_user = KeysByUser()


@dataclass(frozen=True)
class NewKey:
    record: dict[str, Any]
    key: str  # the secret: returned once, never stored


def looks_like_api_key(value: str) -> bool:
    return value.startswith(PREFIX)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def to_json(item: ApiKeyModel) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "hint": f"prdk_…{item.hint}",
        "prds": [str(p) for p in item.prd_scope or []],
        "created_at": int(item.created_at),
        "expires_at": int(item.expires_at) if item.expires_at else None,
        "revoked_at": int(item.revoked_at) if item.revoked_at else None,
        "last_used_at": int(item.last_used_at) if item.last_used_at else None,
    }


def create(owner: Principal, name: str, prds: list[str], expires_in_days: int | None) -> NewKey:
    """Create a key for ``owner``; ``prds`` limits it to those PRDs (the owner must be a member)."""
    if owner.via_api_key:
        raise Forbidden("an API key cannot create API keys; sign in as a person", code="api_key_not_allowed")
    if any(not is_ulid(p) for p in prds):
        raise BadRequest("prds must be PRD ids", code="invalid_scope")
    scope = sorted(set(prds))
    if len(scope) > MAX_SCOPE:
        raise BadRequest(f"a key may be limited to at most {MAX_SCOPE} PRDs", code="invalid_scope")
    from ..prds.access import member_role  # the PRD package's small public lookup

    for prd_id in scope:
        if member_role(prd_id, owner.username) is None:
            raise NotFound(f"PRD {prd_id} not found")
    live = [k for k in ApiKeyModel.by_user.query(owner.username) if not k.revoked_at]
    if len(live) >= MAX_KEYS_PER_USER:
        raise BadRequest(f"at most {MAX_KEYS_PER_USER} active keys per person; revoke one first",
                         code="too_many_keys")
    key_id = ulid()
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    now_ms = int(time.time() * 1000)
    item = ApiKeyModel(
        id=key_id, username=owner.username, name=name, secret_hash=_hash(key), hint=key[-4:],
        prd_scope=scope, plan=owner.plan, created_at=now_ms,
        expires_at=int(time.time()) + expires_in_days * 86400 if expires_in_days else None,
    )
    item.save(condition=ApiKeyModel.id.does_not_exist())
    return NewKey(to_json(item), key)


def list_keys(owner: Principal) -> list[dict[str, Any]]:
    """The caller's keys, newest first (never their secrets); refused to a caller using a key."""
    if owner.via_api_key:
        raise Forbidden("an API key cannot list API keys; sign in as a person", code="api_key_not_allowed")
    return [to_json(k) for k in ApiKeyModel.by_user.query(owner.username, scan_index_forward=False)]


def revoke(owner: Principal, key_id: str) -> str:
    """Revoke one of the caller's keys (an admin may revoke anybody's; a key only itself).

    Returns the username the key belongs to (whose connections opened with it must end)."""
    if owner.via_api_key and key_id != owner.api_key_id:
        # Refused before any lookup, so a key cannot tell which other key ids exist either.
        raise Forbidden("an API key may revoke only itself; sign in as a person to manage other keys",
                        code="api_key_not_allowed")
    item = _get(key_id)
    if item is None or (item.username != owner.username and not owner.is_admin):
        raise NotFound("API key not found")
    if not item.revoked_at:
        item.update(actions=[ApiKeyModel.revoked_at.set(int(time.time() * 1000))])
        _tell_open_sessions()
    return str(item.username)


def revoke_all_of(username: str) -> int:
    """Revoke every live key of ``username`` (an administrator ended all their access)."""
    now_ms = int(time.time() * 1000)
    count = 0
    for item in ApiKeyModel.by_user.query(username):
        if not item.revoked_at:
            item.update(actions=[ApiKeyModel.revoked_at.set(now_ms)])
            count += 1
    if count:
        _tell_open_sessions()
    return count


def _tell_open_sessions() -> None:
    """Bump the revocation generation: open connections' rechecks read the keys again."""
    from .revocation import bump_generation  # revocation imports this module lazily too

    bump_generation()


def _get(key_id: str) -> ApiKeyModel | None:
    if not is_ulid(key_id):
        return None
    try:
        return ApiKeyModel.get(key_id, consistent_read=True)
    except ApiKeyModel.DoesNotExist:
        return None


def authenticate(key: str) -> Principal:
    """The principal a key acts as, or :class:`Unauthenticated` saying why not."""
    match = KEY_RE.fullmatch(key)
    if not match:
        raise Unauthenticated("the API key is malformed", code="invalid_api_key")
    item = _get(match.group(1))
    # Compare even when the key is unknown, so timing does not tell which ids exist.
    stored = item.secret_hash if item is not None else _hash("")
    if not hmac.compare_digest(stored, _hash(key)) or item is None:
        raise Unauthenticated("the API key is not valid", code="invalid_api_key")
    now = time.time()
    _ensure_live(item, now)
    _note_use(item, now)
    return Principal(
        username=item.username,
        jti=f"apikey:{item.id}",
        origin_jti=f"apikey:{item.id}",
        expires_at=int(item.expires_at or 0),
        issued_at=int(item.created_at) // 1000,
        api_key_id=item.id,
        prd_scope=tuple(str(p) for p in item.prd_scope or ()),
        plan=item.plan or "",
    )


def ensure_live(key_id: str) -> None:
    """Raise :class:`Unauthenticated` unless the key ``key_id`` is still live (an open WebSocket
    connection opened with a key rechecks it this way)."""
    item = _get(key_id)
    if item is None:
        raise Unauthenticated("the API key has been revoked", code="api_key_revoked")
    _ensure_live(item, time.time())


def _ensure_live(item: ApiKeyModel, now: float) -> None:
    if item.revoked_at:
        raise Unauthenticated("the API key has been revoked", code="api_key_revoked")
    if item.expires_at and now >= int(item.expires_at):
        raise Unauthenticated("the API key has expired", code="api_key_expired")


def _note_use(item: ApiKeyModel, now: float) -> None:
    if now - _last_used_noted.get(item.id, 0.0) < _LAST_USED_EVERY_SECONDS:
        return
    _last_used_noted[item.id] = now
    try:
        item.update(actions=[ApiKeyModel.last_used_at.set(int(now * 1000))])
    except Exception:  # bookkeeping only: never fail the request for it
        logger.warning("could not record an API key's last use", extra={"api_key_id": item.id})
