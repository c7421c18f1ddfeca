"""The Lambda authorizer's logic, for the HTTP API (simple responses) and WebSocket ``$connect``.

HTTP API: API Gateway answers a denied request with a bare ``403 {"message":"Forbidden"}`` and
cannot be told to say 401 or to use our error shape.  So the authorizer runs on every request (no
identity source, no result cache) and always *allows*, attaching either the verified principal or
the reason it could not verify one.  The HTTP edge (``prdtool.http``) refuses every protected route
whose context carries no principal, with a JSON 401 that says why.  Verification still happens in
this one place, and no cached authorizer result can outlive a revocation.

WebSocket: the upgrade itself must be refused (DESIGN 3.2), which API Gateway does for us: raising
``Exception("Unauthorized")`` gives 401, a Deny policy gives 403.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import DomainError
from ..observability import logger
from .policy import Action, Role, allowed
from .principal import Principal
from .revocation import ensure_not_revoked
from .tokens import verifier


def authenticate(token: str) -> Principal:
    """Verify an access token or an API key, and refuse it if it (or its session, or its user) was
    revoked.  The deny list is read on every call: verified claims may be cached, revocations not."""
    from . import apikeys

    if apikeys.looks_like_api_key(token):
        return apikeys.authenticate(token)  # revocation is a field of the key's record
    principal = verifier().verify(token)
    ensure_not_revoked(principal)
    return principal


def credential(headers: Mapping[str, str] | None) -> str | None:
    """The caller's credential: ``X-Api-Key``, else the bearer token (an access token or a key)."""
    for name, value in (headers or {}).items():
        if name.lower() == "x-api-key" and value.strip():
            return value.strip()
    return bearer_token(headers)


def bearer_token(headers: Mapping[str, str] | None) -> str | None:
    for name, value in (headers or {}).items():
        if name.lower() == "authorization" and value:
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def authorize_http(event: Mapping[str, Any]) -> dict[str, Any]:
    """HTTP API authorizer (payload 2.0, simple response)."""
    token = credential(event.get("headers"))
    if token is None:
        context = {"auth_error": "missing_token", "auth_message": "sign in first: no bearer token was sent"}
    else:
        try:
            context = authenticate(token).to_context()
        except DomainError as exc:
            context = {"auth_error": exc.code, "auth_message": exc.message}
    return {"isAuthorized": True, "context": context}


class WebSocketDenied(Exception):
    """Raised to make API Gateway refuse the WebSocket upgrade with 401 (message "Unauthorized")."""


def _policy(principal_id: str, effect: str, resource: str, context: dict[str, str]) -> dict[str, Any]:
    return {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context,
    }


def authorize_websocket(
    event: Mapping[str, Any], role_of: Callable[[str, Principal], Role | None]
) -> dict[str, Any]:
    """WebSocket ``$connect`` authorizer (REQUEST type, IAM policy response).

    ``role_of(prd_id, principal)`` is the PRD package's membership lookup.
    """
    query = event.get("queryStringParameters") or {}
    token = query.get("token") or credential(event.get("headers"))
    if not token:
        raise WebSocketDenied("Unauthorized")
    try:
        principal = authenticate(token)
    except DomainError as exc:
        logger.info("websocket connect refused", extra={"reason": exc.code})
        raise WebSocketDenied("Unauthorized") from exc
    resource = str(event.get("methodArn", "*"))
    prd_id = str(query.get("prd") or "")
    role = role_of(prd_id, principal) if prd_id else None
    if not allowed(role, Action.READ, is_admin=principal.is_admin):
        return _policy(principal.username, "Deny", resource, {})
    context = principal.to_context()
    context.update({"prd_id": prd_id, "role": role.value if role else "admin"})
    return _policy(principal.username, "Allow", resource, context)
