"""Access-token verification against hostile tokens (no network: the JWKS fetch is injected)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt

from prdtool.auth.tokens import TokenVerifier
from prdtool.errors import Unauthenticated

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST"
CLIENT = "client-123"


def _keypair(kid: str) -> tuple[str, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = jwk.construct(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(), "RS256").to_dict()
    public.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return pem, {k: (v.decode() if isinstance(v, bytes) else v) for k, v in public.items()}


PEM, JWK = _keypair("key-1")
OTHER_PEM, OTHER_JWK = _keypair("key-2")


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "uuid-alice", "username": "alice", "client_id": CLIENT, "token_use": "access",
            "iss": ISSUER, "iat": now, "exp": now + 3600, "jti": "jti-1", "origin_jti": "origin-1",
            "cognito:groups": ["admins"]}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], *, pem: str = PEM, kid: str = "key-1", alg: str = "RS256") -> str:
    return jwt.encode(payload, pem, algorithm=alg, headers={"kid": kid})


class FakeJwks:
    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.calls = 0

    def __call__(self, url: str) -> dict[str, Any]:
        self.calls += 1
        return {"keys": self.keys}


@pytest.fixture
def jwks() -> FakeJwks:
    return FakeJwks(JWK)


@pytest.fixture
def verifier(jwks: FakeJwks) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, audience=CLIENT, jwks_url="https://example.invalid/jwks", fetch=jwks)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_token_gives_principal(verifier: TokenVerifier, no_network: None) -> None:
    principal = verifier.verify(sign(claims()))
    assert principal.username == "alice"
    assert principal.jti == "jti-1" and principal.origin_jti == "origin-1"
    assert principal.is_admin and principal.groups == ("admins",)


def test_audience_in_aud_claim_is_accepted(verifier: TokenVerifier) -> None:
    assert verifier.verify(sign(claims(client_id=None, aud=CLIENT))).username == "alice"


@pytest.mark.parametrize(
    ("token_factory", "code"),
    [
        (lambda: b64({"alg": "none", "kid": "key-1"}) + "." + b64(claims()) + ".", "invalid_token"),
        (lambda: sign(claims(exp=int(time.time()) - 120)), "token_expired"),
        (lambda: sign(claims(nbf=int(time.time()) + 600)), "invalid_token"),
        (lambda: sign(claims(iss="https://evil.example.com/pool")), "invalid_token"),
        (lambda: sign(claims(client_id="other-client")), "invalid_token"),
        (lambda: sign(claims(token_use="id")), "invalid_token"),
        (lambda: sign(claims(), pem=OTHER_PEM), "invalid_token"),  # right kid, wrong key
        (lambda: sign(claims(), pem=OTHER_PEM, kid="key-2"), "invalid_token"),  # unknown kid
        (lambda: "not-a-jwt", "invalid_token"),
        (lambda: "", "invalid_token"),
        (lambda: "a" * 20_000, "invalid_token"),
        (lambda: sign(claims(jti=None)), "invalid_token"),
    ],
    ids=["alg-none", "expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "id-token",
         "wrong-signature", "unknown-kid", "garbage", "empty", "oversized", "no-jti"],
)
def test_hostile_tokens_are_refused(verifier: TokenVerifier, token_factory: Any, code: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token_factory())
    assert info.value.code == code
    assert info.value.status == 401


def test_hs256_signed_with_the_public_key_is_refused(verifier: TokenVerifier) -> None:
    public_pem = OTHER_JWK  # any key material: the algorithm alone must be refused
    token = jwt.encode(claims(), json.dumps(public_pem), algorithm="HS256", headers={"kid": "key-1"})
    with pytest.raises(Unauthenticated, match="algorithm"):
        verifier.verify(token)


def test_tampered_payload_is_refused(verifier: TokenVerifier) -> None:
    header, _, signature = sign(claims()).split(".")
    forged = f"{header}.{b64(claims(username='mallory'))}.{signature}"
    with pytest.raises(Unauthenticated, match="signature"):
        verifier.verify(forged)


def test_unknown_kid_refetches_keys_but_not_more_than_once_a_minute(jwks: FakeJwks) -> None:
    now = [1_000.0]
    v = TokenVerifier(issuer=ISSUER, audience=CLIENT, jwks_url="x", fetch=jwks, clock=lambda: now[0])
    token = sign(claims(iat=None, exp=None) | {"exp": 10_000_000_000}, pem=OTHER_PEM, kid="key-2")
    with pytest.raises(Unauthenticated):
        v.verify(token)
    assert jwks.calls == 1
    jwks.keys.append(OTHER_JWK)  # the issuer rotates keys
    with pytest.raises(Unauthenticated):
        v.verify(token)  # within the minute: no refetch (an attacker cannot force fetch storms)
    assert jwks.calls == 1
    now[0] += 61
    assert v.verify(token).username == "alice"
    assert jwks.calls == 2


def test_verified_claims_are_cached_but_never_past_expiry(jwks: FakeJwks) -> None:
    now = [time.time()]
    v = TokenVerifier(issuer=ISSUER, audience=CLIENT, jwks_url="x", fetch=jwks, clock=lambda: now[0],
                      cache_seconds=300)
    token = sign(claims(exp=int(now[0]) + 100))
    first = v.verify(token)
    assert v.verify(token) is first  # served from the cache
    now[0] += 101  # the token's exp has passed on the verifier's clock: the cache may not answer
    assert v.verify(token) is not first  # re-verified (python-jose then judges exp by real time)
    assert jwks.calls == 1


def test_a_token_issued_in_the_future_is_refused(verifier: TokenVerifier) -> None:
    with pytest.raises(Unauthenticated, match="future"):
        verifier.verify(sign(claims(iat=int(time.time()) + 3600)))
    verifier.verify(sign(claims(iat=int(time.time()) + 10)))  # within the clock-skew leeway


def test_an_expired_token_still_names_its_session_for_refresh(verifier: TokenVerifier) -> None:
    now = int(time.time())
    expired = sign(claims(iat=now - 7200, exp=now - 3600, auth_time=now - 9000))
    with pytest.raises(Unauthenticated):
        verifier.verify(expired)
    principal = verifier.verify_ignoring_expiry(expired)
    assert (principal.jti, principal.origin_jti) == ("jti-1", "origin-1")
    assert principal.issued_at == now - 9000, "the session's start (auth_time) is what revoking a person compares"
    with pytest.raises(Unauthenticated):  # everything else is still checked
        verifier.verify_ignoring_expiry(sign(claims(exp=now - 3600), pem=OTHER_PEM))


def test_plan_groups_name_the_rate_limit_plan(verifier: TokenVerifier) -> None:
    principal = verifier.verify(sign(claims(**{"cognito:groups": ["plan-pro", "staff"]})))
    assert principal.plan == "pro" and not principal.is_admin
