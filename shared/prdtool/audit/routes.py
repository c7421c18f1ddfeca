"""HTTP routes of the audit trail (mounted by functions/audit)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from ..auth.principal import Principal
from ..errors import BadRequest, Forbidden
from ..http import current_principal
from . import query, verify

router = APIRouter(prefix="/api/audit", tags=["audit"], dependencies=[Depends(current_principal)])

Caller = Annotated[Principal, Depends(current_principal)]


@router.get("", summary="Audit entries by resource, user and time, oldest first "
                        "(org admins: all; a PRD's owner: resource=prd/<id>)")
def search_audit(
    caller: Caller,
    resource: Annotated[str, Query(max_length=300, description='e.g. "prd/<id>", "auth", "user/<name>"')] = "",
    user: Annotated[str, Query(max_length=200, description='actor: a username or "apikey:<keyId>"')] = "",
    since: Annotated[str | None, Query(max_length=40, description="ISO-8601 or epoch ms, inclusive")] = None,
    until: Annotated[str | None, Query(max_length=40, description="ISO-8601 or epoch ms, inclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=query.MAX_LIMIT)] = query.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, description="`next` of the previous page")] = None,
) -> dict[str, Any]:
    query.authorize(caller, resource)
    return query.search(query.AuditQuery(
        resource=resource, user=user, since=query.parse_time(since, "since"),
        until=query.parse_time(until, "until"), limit=limit, cursor=cursor,
    ))


@router.get("/verify", summary="Recompute a date partition's hash chain and report tampering (org admins)")
def verify_audit(
    caller: Caller,
    date: Annotated[str, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="UTC date, YYYY-MM-DD")],
) -> dict[str, Any]:
    if not caller.is_admin:
        raise Forbidden("only org admins may verify the audit trail", code="audit_admins_only")
    try:
        return verify.verify_partition(date)
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_date") from None
