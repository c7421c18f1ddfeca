"""The identity provider adapter (Cognito user pool): password login, refresh, user lookup.

Only this module talks to ``cognito-idp``.  Another OIDC provider would replace it (and the
issuer/audience settings) without touching the routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..aws import client
from ..errors import DependencyFailed, Forbidden, RateLimited, Unauthenticated
from ..observability import logger
from ..settings import get_settings


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_in": self.expires_in,
            "token_type": self.token_type,
        }


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _initiate(flow: str, parameters: dict[str, str]) -> dict[str, Any]:
    settings = get_settings()
    try:
        response: dict[str, Any] = client("cognito-idp").initiate_auth(
            AuthFlow=flow, ClientId=settings.user_pool_client_id, AuthParameters=parameters
        )
    except Exception as exc:
        code = _error_code(exc)
        if code in ("NotAuthorizedException", "UserNotFoundException"):
            # One message for both: never tell an attacker which usernames exist.
            message = "incorrect username or password" if flow == "USER_PASSWORD_AUTH" else "the session has ended"
            raise Unauthenticated(message, code="invalid_credentials") from exc
        if code == "PasswordResetRequiredException":
            raise Forbidden("a password reset is required for this account", code="password_reset_required") from exc
        if code == "UserNotConfirmedException":
            raise Forbidden("this account is not confirmed yet", code="user_not_confirmed") from exc
        if code in ("TooManyRequestsException", "LimitExceededException", "TooManyFailedAttemptsException"):
            raise RateLimited("too many sign-in attempts; wait a minute and try again") from exc
        logger.exception("identity provider call failed", extra={"flow": flow, "code": code})
        raise DependencyFailed("the identity provider is unavailable; try again shortly") from exc
    if "AuthenticationResult" not in response:
        challenge = response.get("ChallengeName", "unknown")
        raise Forbidden(f"sign-in needs a further step ({challenge}) that this client does not support",
                        code="challenge_required")
    return dict(response["AuthenticationResult"])


def password_login(username: str, password: str) -> Tokens:
    result = _initiate("USER_PASSWORD_AUTH", {"USERNAME": username, "PASSWORD": password})
    return Tokens(result["AccessToken"], result["RefreshToken"], int(result.get("ExpiresIn", 3600)))


def refresh(refresh_token: str) -> Tokens:
    result = _initiate("REFRESH_TOKEN_AUTH", {"REFRESH_TOKEN": refresh_token})
    # Cognito returns a new refresh token only when rotation is on; keep the old one otherwise.
    return Tokens(result["AccessToken"], result.get("RefreshToken") or refresh_token,
                  int(result.get("ExpiresIn", 3600)))


def revoke_refresh_token(refresh_token: str) -> None:
    """Ask the provider to revoke a refresh token (best effort: our deny list is authoritative)."""
    settings = get_settings()
    try:
        client("cognito-idp").revoke_token(Token=refresh_token, ClientId=settings.user_pool_client_id)
    except Exception as exc:  # e.g. the local emulator does not implement RevokeToken
        logger.warning("provider token revocation failed; relying on the deny list", extra={"code": _error_code(exc)})


def user_exists(username: str) -> bool:
    settings = get_settings()
    try:
        client("cognito-idp").admin_get_user(UserPoolId=settings.user_pool_id, Username=username)
    except Exception as exc:
        if _error_code(exc) == "UserNotFoundException":
            return False
        raise DependencyFailed("the user directory is unavailable; try again shortly") from exc
    return True


def sign_out_everywhere(username: str) -> None:
    """Invalidate every refresh token of ``username`` at the provider (an admin revoked them)."""
    settings = get_settings()
    try:
        client("cognito-idp").admin_user_global_sign_out(UserPoolId=settings.user_pool_id, Username=username)
    except Exception as exc:
        if _error_code(exc) == "UserNotFoundException":
            return
        raise DependencyFailed("the identity provider is unavailable; try again shortly") from exc
