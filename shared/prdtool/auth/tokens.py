"""Access-token verification: RS256 JWTs from the OIDC issuer (Cognito by default).

What is checked, and why each check is explicit:
- the algorithm is RS256 (``alg: none`` and HS256-signed-with-the-public-key are refused before
  any key is used);
- the ``kid`` names a key of the issuer's JWKS (fetched once per container, refetched at most once
  a minute when an unknown ``kid`` appears, so key rotation works without a deploy);
- the signature, ``exp``, ``nbf`` and ``iat`` (python-jose), and the issuer;
- the audience: Cognito access tokens carry ``client_id`` and no ``aud`` — and python-jose skips
  the audience check silently when ``aud`` is absent — so ``client_id``/``aud`` is compared here;
- ``token_use`` is ``access`` when present (an ID token is not an access token).

Verified claims are cached per token for at most ``auth_claims_cache_seconds`` (never past the
token's expiry); revocation is checked separately on every request (see ``authorizer``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import DependencyFailed, Unauthenticated
from ..observability import logger
from ..settings import Settings, get_settings
from .principal import Principal, plan_of

# python-jose (and the cryptography backend it loads, ~35 ms of import together) is imported by
# the first verification, not here: most routes of the functions that import this module never
# verify a token themselves (the auth function's /me, /keys and /logout trust the authorizer's
# context; only /login and /refresh verify), and the authorizer verifies none for an API key.

JwksFetcher = Callable[[str], dict[str, Any]]

_MAX_TOKEN_CHARS = 16_384  # far above any real JWT; refuses pathological inputs before parsing
_JWKS_REFRESH_INTERVAL = 60.0
_LEEWAY_SECONDS = 30  # clock skew tolerated on exp, nbf and iat


def fetch_jwks(url: str) -> dict[str, Any]:
    """Fetch a JWKS document over HTTPS (or the local emulator's HTTP)."""
    import requests

    try:
        response = requests.get(url, timeout=5)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
    except Exception as exc:
        raise DependencyFailed("the identity provider's signing keys could not be fetched") from exc
    if not isinstance(document.get("keys"), list):
        raise DependencyFailed("the identity provider returned a malformed key set")
    return document


class TokenVerifier:
    """Verifies access tokens against one issuer; safe to share between threads."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        admin_group: str = "admins",
        cache_seconds: int = 300,
        fetch: JwksFetcher = fetch_jwks,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("TokenVerifier needs an issuer and an audience")
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.jwks_url = jwks_url
        self.admin_group = admin_group
        self.cache_seconds = cache_seconds
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._keys_fetched_at = -_JWKS_REFRESH_INTERVAL
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> TokenVerifier:
        s = settings or get_settings()
        return cls(
            issuer=s.auth_issuer,
            audience=s.auth_audience or s.user_pool_client_id,
            jwks_url=s.jwks_url,
            admin_group=s.admin_group,
            cache_seconds=s.auth_claims_cache_seconds,
        )

    # ------------------------------------------------------------------ keys
    def _key_for(self, kid: str) -> dict[str, Any]:
        with self._lock:
            key = self._keys.get(kid)
            now = self._clock()
            if key is None and now - self._keys_fetched_at >= _JWKS_REFRESH_INTERVAL:
                document = self._fetch(self.jwks_url)
                self._keys = {k["kid"]: k for k in document["keys"] if isinstance(k, dict) and "kid" in k}
                self._keys_fetched_at = now
                key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated("the token was signed with an unknown key", code="invalid_token")
        return key

    # ------------------------------------------------------------------ verify
    def verify(self, token: str) -> Principal:
        """Return the token's principal, or raise :class:`Unauthenticated` saying why not."""
        if not token or len(token) > _MAX_TOKEN_CHARS:
            raise Unauthenticated("a valid access token is required", code="invalid_token")
        cache_key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._cache.get(cache_key)
        if cached and cached[0] > now:
            return cached[1]

        principal = self._verify_uncached(token)
        expires = min(now + self.cache_seconds, float(principal.expires_at))
        with self._lock:
            if len(self._cache) > 10_000:  # bound memory in a long-lived container
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[cache_key] = (expires, principal)
        return principal

    def verify_ignoring_expiry(self, token: str) -> Principal:
        """Verify everything but ``exp`` (never cached): which session an old access token belongs to,
        so that refreshing can revoke it even when it has already expired."""
        if not token or len(token) > _MAX_TOKEN_CHARS:
            raise Unauthenticated("a valid access token is required", code="invalid_token")
        return self._verify_uncached(token, verify_exp=False)

    def _verify_uncached(self, token: str, *, verify_exp: bool = True) -> Principal:
        from jose import jwt  # lazy: see the note under the imports
        from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

        try:
            header = jwt.get_unverified_header(token)
        except JWTError as exc:
            raise Unauthenticated("the access token is malformed", code="invalid_token") from exc
        if header.get("alg") != "RS256":
            raise Unauthenticated("the token's signing algorithm is not accepted", code="invalid_token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("the token names no signing key", code="invalid_token")
        key = self._key_for(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                issuer=self.issuer,
                # (python-jose turns require_exp into verify_exp: both follow ``verify_exp``.)
                options={"verify_aud": False, "verify_at_hash": False, "leeway": _LEEWAY_SECONDS,
                         "require_exp": verify_exp, "verify_exp": verify_exp},
            )
        except ExpiredSignatureError as exc:
            raise Unauthenticated("the access token has expired", code="token_expired") from exc
        except JWTClaimsError as exc:
            raise Unauthenticated(f"the access token is not valid here: {exc}", code="invalid_token") from exc
        except JWTError as exc:
            raise Unauthenticated("the access token's signature is not valid", code="invalid_token") from exc
        if not isinstance(claims.get("exp"), int | float):
            raise Unauthenticated("the access token has no valid expiry", code="invalid_token")
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        issued = claims.get("iat")
        # python-jose checks that iat is a number, not that it is in the past.
        if isinstance(issued, int | float) and issued > self._clock() + _LEEWAY_SECONDS:
            raise Unauthenticated("the access token claims to be issued in the future", code="invalid_token")
        token_use = claims.get("token_use")
        if token_use is not None and token_use != "access":
            raise Unauthenticated("an access token is required, not an ID token", code="invalid_token")
        audiences = claims.get("aud")
        aud_list = [audiences] if isinstance(audiences, str) else list(audiences or [])
        if claims.get("client_id") != self.audience and self.audience not in aud_list:
            raise Unauthenticated("the access token was issued for another application", code="invalid_token")
        username = claims.get("username") or claims.get("cognito:username") or claims.get("sub")
        jti = claims.get("jti")
        if not isinstance(username, str) or not username or not isinstance(jti, str) or not jti:
            raise Unauthenticated("the access token lacks a subject or id", code="invalid_token")
        groups = tuple(str(g) for g in claims.get("cognito:groups") or claims.get("groups") or [])
        principal = Principal(
            username=username.lower(),
            jti=jti,
            origin_jti=str(claims.get("origin_jti") or jti),
            expires_at=int(claims["exp"]),
            groups=groups,
            is_admin=self.admin_group in groups,
            # When the person signed in (Cognito keeps auth_time across refreshes), else when issued.
            issued_at=int(claims.get("auth_time") or claims.get("iat") or 0),
            plan=plan_of(groups),
        )
        logger.debug("token verified", extra={"username": principal.username})
        return principal


_verifier: TokenVerifier | None = None


def verifier() -> TokenVerifier:
    """The process-wide verifier (its JWKS and claims caches live as long as the container)."""
    global _verifier
    if _verifier is None:
        _verifier = TokenVerifier.from_settings()
    return _verifier


def reset_verifier() -> None:
    global _verifier
    _verifier = None
