"""HTTP routes of authentication: login, refresh, logout, and who am I (functions/auth)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from ..errors import Unauthenticated
from ..http import current_principal
from . import provider, revocation
from .authorizer import authenticate
from .principal import Principal

router = APIRouter(prefix="/api/auth", tags=["auth"])


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=256)


class Refresh(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=8192)


@router.post("/login", summary="Exchange a username and password for tokens")
def login(body: Login) -> dict[str, Any]:
    return provider.password_login(body.username.strip(), body.password).to_json()


@router.post("/refresh", summary="Exchange a refresh token for a new access token")
def refresh(body: Refresh) -> dict[str, Any]:
    tokens = provider.refresh(body.refresh_token)
    # The new access token shares its session (origin_jti) with the refresh token: if that
    # session was logged out, refuse, even though the provider itself still honours it.
    try:
        authenticate(tokens.access_token)
    except Unauthenticated as exc:
        raise Unauthenticated("the session has ended; sign in again", code="session_revoked") from exc
    return tokens.to_json()


@router.post("/logout", status_code=204, summary="Revoke the calling access token and its session")
def logout(caller: Annotated[Principal, Depends(current_principal)]) -> None:
    # Revoking the session (origin_jti) also refuses its refresh token at /refresh and every
    # access token minted from it; the jti entry covers tokens from providers without origin_jti.
    revocation.revoke(
        [revocation.jti_key(caller.jti), revocation.origin_key(caller.origin_jti)],
        expires_at=caller.expires_at + 30 * 86400,  # refresh tokens outlive access tokens
        reason="logout",
    )


@router.get("/me", summary="The signed-in user")
def me(caller: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
    return {"username": caller.username, "groups": list(caller.groups), "is_admin": caller.is_admin,
            "expires_at": caller.expires_at}
