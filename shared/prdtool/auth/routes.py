"""HTTP routes of authentication: login, refresh, logout, and who am I (functions/auth)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import BadRequest, DomainError, Forbidden, Unauthenticated
from ..http import current_principal
from ..observability import logger
from . import apikeys, provider, revocation
from .authorizer import authenticate, bearer_token
from .principal import Principal
from .tokens import verifier

REFRESH_LIFETIME_SECONDS = 30 * 86400  # the user pool client's refresh token validity

router = APIRouter(prefix="/api/auth", tags=["auth"])


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=256)


class Refresh(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=8192)


class NewApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="What the key is for")
    prds: list[str] = Field(default_factory=list, max_length=apikeys.MAX_SCOPE,
                            description="Limit the key to these PRDs (empty: every PRD of yours)")
    expires_in_days: int | None = Field(default=90, ge=1, le=365, description="null: never expires")


KeyId = Annotated[str, Path(min_length=1, max_length=64)]
Username = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@+-]+$")]


@router.post("/login", summary="Exchange a username and password for tokens")
def login(body: Login, request: Request) -> dict[str, Any]:
    tokens = provider.password_login(body.username.strip(), body.password)
    # The body's username is only a claim until the provider accepts it: a refused sign-in stays
    # "anonymous" in the audit trail (the recorder keeps the name as changes.claimed_username).
    # A successful one is recorded under the name the provider's token carries, not the body's
    # (an alias or another spelling of the same account).
    verified = _verified_username(tokens.access_token)
    if verified:
        request.state.audit_actor = verified
    return tokens.to_json()


def _verified_username(access_token: str) -> str | None:
    """The username of a token the provider has just issued (None if it does not verify)."""
    try:
        return verifier().verify(access_token).username
    except DomainError:
        logger.warning("a freshly issued access token did not verify; the sign-in is audited as anonymous")
        return None


@router.post("/refresh", summary="Exchange a refresh token for a new access token")
def refresh(body: Refresh, request: Request) -> dict[str, Any]:
    tokens = provider.refresh(body.refresh_token)
    # The new access token shares its session (origin_jti) with the refresh token: if that
    # session was logged out, refuse, even though the provider itself still honours it.
    try:
        fresh = authenticate(tokens.access_token)
    except Unauthenticated as exc:
        raise Unauthenticated("the session has ended; sign in again", code="session_revoked") from exc
    request.state.audit_actor = fresh.username
    _revoke_replaced_token(bearer_token(dict(request.headers)), fresh)
    return tokens.to_json()


def _revoke_replaced_token(old_token: str | None, fresh: Principal) -> None:
    """Refreshing retires the access token it replaces (sent as the bearer, expired or not).

    Only a genuine token of the same session is revoked: nobody can revoke someone else's token by
    sending it along with their own refresh token.
    """
    if not old_token or apikeys.looks_like_api_key(old_token):
        return
    try:
        old = verifier().verify_ignoring_expiry(old_token)
    except DomainError:
        return  # not a token of ours: nothing to retire
    if old.origin_jti != fresh.origin_jti or old.jti == fresh.jti or old.username != fresh.username:
        return
    revocation.revoke([revocation.jti_key(old.jti)], expires_at=old.expires_at, reason="refreshed")


@router.post("/logout", status_code=204, summary="Revoke the calling access token and its session")
def logout(caller: Annotated[Principal, Depends(current_principal)]) -> None:
    if caller.via_api_key:
        raise BadRequest("an API key is not a session: revoke it with DELETE /api/auth/keys/{id}",
                         code="api_key_not_allowed")
    # Revoking the session (origin_jti) also refuses its refresh token at /refresh and every
    # access token minted from it; the jti entry covers tokens from providers without origin_jti.
    revocation.revoke(
        [revocation.jti_key(caller.jti), revocation.origin_key(caller.origin_jti)],
        expires_at=caller.expires_at + REFRESH_LIFETIME_SECONDS,  # refresh tokens outlive access tokens
        reason="logout",
    )
    _end_live_sessions(caller.username, origin_jti=caller.origin_jti, reason="signed-out")


def _end_live_sessions(username: str, *, origin_jti: str | None, reason: str, api_key_id: str = "") -> None:
    """Close the WebSocket connections opened with revoked credentials — those of one session
    (``origin_jti``), of one API key (``api_key_id``), or all of them — (best effort: every later
    frame is refused anyway, within ``ws_recheck_seconds``)."""
    from ..collab import live

    try:
        if api_key_id:
            live.end_key_sessions(username, api_key_id)
        else:
            live.end_sessions(username, origin_jti=origin_jti, reason=reason)
    except Exception:
        logger.exception("could not close revoked WebSocket sessions", extra={"username": username})


@router.get("/me", summary="The signed-in user")
def me(caller: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
    return {"username": caller.username, "groups": list(caller.groups), "is_admin": caller.is_admin,
            "expires_at": caller.expires_at, "api_key": caller.api_key_id or None,
            "prds": list(caller.prd_scope) or None}


@router.post("/keys", status_code=201, summary="Create an API key (the key is shown once, in this response)")
def create_api_key(body: NewApiKey, caller: Annotated[Principal, Depends(current_principal)],
                   request: Request) -> dict[str, Any]:
    created = apikeys.create(caller, body.name.strip(), body.prds, body.expires_in_days)
    request.state.audit_resource = f"apikey/{created.record['id']}"
    return {**created.record, "key": created.key}


@router.get("/keys", summary="The caller's API keys (never their secrets)")
def list_api_keys(caller: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
    return {"keys": apikeys.list_keys(caller)}


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke an API key (at once, for every request)")
def revoke_api_key(key_id: KeyId, caller: Annotated[Principal, Depends(current_principal)]) -> None:
    owner = apikeys.revoke(caller, key_id)
    # Connections opened with the key end now, even those that only listen (they send no frame
    # that the per-frame recheck could refuse).
    _end_live_sessions(owner, origin_jti=None, api_key_id=key_id, reason="revoked")


@router.post("/users/{username}/revoke", status_code=204,
             summary="End every session and API key of a person (organisation admins)")
def revoke_user(username: Username, caller: Annotated[Principal, Depends(current_principal)]) -> None:
    if not caller.is_admin:
        raise Forbidden("only organisation administrators may revoke a person's access")
    name = username.lower()
    now = int(time.time())
    # Every token issued up to now is refused; the entry outlives the longest refresh token.
    revocation.revoke([revocation.user_key(name)], expires_at=now + REFRESH_LIFETIME_SECONDS,
                      reason=f"revoked by {caller.username}")
    apikeys.revoke_all_of(name)
    provider.sign_out_everywhere(name)  # refresh tokens die at the provider too
    _end_live_sessions(name, origin_jti=None, reason="access-revoked")
