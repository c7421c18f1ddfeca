"""Querying the audit index: by resource, by user, or by time, oldest first, with a cursor.

Who may ask what: org admins anything; anyone else only ``resource=prd/<id>`` of a PRD they own
(DESIGN §3.3).  A caller with no role on that PRD gets 404 (whether it exists is private, as in
``auth.policy.require``), any other role 403.  Queries read only DynamoDB (the entry JSON is on
each index item), never S3.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..auth.policy import Role
from ..auth.principal import Principal
from ..errors import BadRequest, Forbidden, NotFound
from ..prds.access import caller_role
from .models import AuditIndexModel, day_pk, resource_pk, user_pk

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Without a resource or a user, entries are read day by day; unbounded, that is the last 30 days.
DEFAULT_WINDOW_DAYS = 30
MAX_WINDOW_DAYS = 400
_PRD_RESOURCE = re.compile(r"prd/(?P<id>[^/]+)")  # fullmatch: "$" would accept a trailing "\n"


@dataclass(frozen=True)
class AuditQuery:
    resource: str = ""
    user: str = ""
    since: int | None = None  # epoch ms, inclusive
    until: int | None = None  # epoch ms, inclusive
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


def parse_time(value: str | None, name: str) -> int | None:
    """Epoch milliseconds from ISO-8601 (``2026-11-25T10:00:00Z``, a date) or epoch ms; 400 otherwise."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise BadRequest(f"{name} must be ISO-8601 or epoch milliseconds, not {value!r}",
                         code="invalid_time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def authorize(caller: Principal, resource: str) -> None:
    """Raise unless ``caller`` may read the audit entries the query asks for."""
    if caller.is_admin:
        return
    match = _PRD_RESOURCE.fullmatch(resource)
    if not match:
        raise Forbidden("only org admins may query the whole audit trail; a PRD's owner may pass "
                        "resource=prd/<id>", code="audit_admins_only")
    prd_id = match.group("id")
    role = caller_role(prd_id, caller)  # an API key's scope, too
    if role is None:
        raise NotFound("PRD not found")
    if role is not Role.OWNER:
        raise Forbidden(f"your role ({role.value}) may not read the audit trail of this PRD; owners may")


def search(q: AuditQuery, *, now_ms: int | None = None) -> dict[str, Any]:
    """``{"entries": [...oldest first], "next": cursor or None}``."""
    if not 1 <= q.limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit")
    until = q.until if q.until is not None else (now_ms if now_ms is not None else int(time.time() * 1000))
    by_day = not q.resource and not q.user
    since = q.since if q.since is not None else (until - DEFAULT_WINDOW_DAYS * 86_400_000 if by_day else 0)
    if since > until:
        raise BadRequest("since is after until", code="invalid_time")
    pks = _partitions(q, since, until)
    start_pk, after_sk = _decode_cursor(q.cursor, pks)
    if start_pk is not None:
        pks = pks[pks.index(start_pk):]
    lower, upper = f"{since:013d}#", f"{until:013d}#~"
    entries: list[dict[str, Any]] = []
    last: tuple[str, str] | None = None
    for pk, sk, item in _items(pks, lower, upper, start_pk, after_sk):
        if q.user and q.resource and item.actor != q.user:
            continue
        if len(entries) == q.limit:  # one more exists: the page is full and there is a next one
            assert last is not None
            return {"entries": entries, "next": _encode_cursor(*last)}
        entries.append(_public(item.entry))
        last = (pk, sk)
    return {"entries": entries, "next": None}


def _partitions(q: AuditQuery, since: int, until: int) -> list[str]:
    if q.resource:
        return [resource_pk(q.resource)]
    if q.user:
        return [user_pk(q.user)]
    first = datetime.fromtimestamp(max(since, 0) / 1000, UTC).date()
    last = datetime.fromtimestamp(until / 1000, UTC).date()
    days = (last - first).days + 1
    if days > MAX_WINDOW_DAYS:
        raise BadRequest(f"a query without resource or user spans at most {MAX_WINDOW_DAYS} days; "
                         "narrow since/until", code="window_too_large")
    return [day_pk((first + timedelta(days=n)).isoformat()) for n in range(days)]


def _items(pks: list[str], lower: str, upper: str, start_pk: str | None,
           after_sk: str | None) -> Iterator[tuple[str, str, AuditIndexModel]]:
    for pk in pks:
        # " " sorts before every character of a sort key, so sk + " " is just past sk.
        low = max(lower, after_sk + " ") if pk == start_pk and after_sk else lower
        if low > upper:
            continue
        for item in AuditIndexModel.query(pk, AuditIndexModel.sk.between(low, upper), scan_index_forward=True,
                                          page_size=200):
            yield pk, str(item.sk), item


def _public(raw: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(raw)
    at = entry.get("at")
    if isinstance(at, int):
        entry["time"] = datetime.fromtimestamp(at / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return entry


def _encode_cursor(pk: str, sk: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": pk, "s": sk}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, pks: list[str]) -> tuple[str | None, str | None]:
    if not cursor:
        return None, None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        pk, sk = data["p"], data["s"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadRequest("cursor is not one this API returned", code="invalid_cursor") from None
    if not isinstance(pk, str) or not isinstance(sk, str) or pk not in pks:
        raise BadRequest("cursor does not belong to this query", code="invalid_cursor")
    return pk, sk
