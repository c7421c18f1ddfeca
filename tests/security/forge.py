"""Tokens signed with the local identity provider's own key (moto ships its private JWK).

They verify exactly like the provider's tokens, so the hostile suite can vary one claim at a time
(issuer, audience, expiry, not-before, token use) and show the API checks each one itself.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from pathlib import Path
from typing import Any

import moto
from jose import jwt

from scripts.localstack.stack import LocalStack

_PRIVATE_JWK = Path(moto.__file__).parent / "cognitoidp" / "resources" / "jwks-private.json.gz"


def private_jwk() -> dict[str, Any]:
    with gzip.open(_PRIVATE_JWK) as handle:
        key: dict[str, Any] = json.load(handle)
    return key


def public_jwk() -> dict[str, Any]:
    return {k: v for k, v in private_jwk().items() if k in ("kty", "n", "e", "kid", "alg", "use")}


def issuer(stack: LocalStack) -> str:
    pool = next(iter(stack.manifest["user_pools"].values()))  # type: ignore[index]
    return f"https://cognito-idp.{stack.manifest['region']}.amazonaws.com/{pool}"  # type: ignore[index]


def client_id(stack: LocalStack) -> str:
    return str(stack.manifest["functions"]["AuthFunction"]["environment"]["USER_POOL_CLIENT_ID"])  # type: ignore[index]


def claims_for(stack: LocalStack, username: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()), "iss": issuer(stack), "client_id": client_id(stack), "token_use": "access",
        "username": username, "jti": str(uuid.uuid4()), "origin_jti": str(uuid.uuid4()),
        "iat": now, "auth_time": now, "exp": now + 3600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims: dict[str, Any], *, kid: str | None = None, algorithm: str = "RS256", key: Any = None) -> str:
    jwk = private_jwk()
    return str(jwt.encode(claims, key if key is not None else jwk, algorithm=algorithm,
                          headers={"kid": kid if kid is not None else jwk["kid"]}))


def sign_hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """HS256 by hand (python-jose refuses to use a public key as an HMAC secret — attackers do not)."""
    import hashlib
    import hmac

    signing_input = f"{b64({'alg': 'HS256', 'kid': kid, 'typ': 'JWT'})}.{b64(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def with_claims(token: str, **claims: Any) -> str:
    """The same token with its payload changed and its signature kept (a tampered token)."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded.update(claims)
    return f"{header}.{b64(decoded)}.{signature}"
