"""Hostile tokens and credentials against the running product (local stack, real authorizer).

Each forged token differs from a valid one in exactly one respect, and every one of them is a JSON
401 that names no internals, on the HTTP API and at the WebSocket upgrade alike.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from scripts.localstack.stack import LocalStack
from tests.integration.fixtures import Api, ensure_user, login
from tests.integration.test_walking_skeleton import error_of
from tests.security import forge


def _public_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from jose.backends.cryptography_backend import CryptographyRSAKey

    key = CryptographyRSAKey(forge.public_jwk(), "RS256")
    pem: bytes = key.prepared_key.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem


def hostile_tokens(stack: LocalStack, real: str) -> dict[str, str]:
    now = int(time.time())
    good = forge.claims_for(stack, "alice")
    return {
        "alg none": f"{forge.b64({'alg': 'none', 'kid': forge.private_jwk()['kid']})}.{forge.b64(good)}.",
        "HS256 signed with the public key": forge.sign_hs256(good, _public_pem(), forge.private_jwk()["kid"]),
        "unknown kid": forge.sign(good, kid="no-such-key"),
        "expired": forge.sign({**good, "iat": now - 7200, "exp": now - 3600}),
        "not yet valid": forge.sign({**good, "nbf": now + 3600}),
        "issued in the future": forge.sign({**good, "iat": now + 3600}),
        "wrong issuer": forge.sign({**good, "iss": "https://evil.example.com/pool"}),
        "wrong audience": forge.sign({**good, "client_id": "another-app"}),
        "no audience": forge.sign(forge.claims_for(stack, "alice", client_id=None)),
        "id token": forge.sign({**good, "token_use": "id", "aud": good["client_id"]}),
        "no expiry": forge.sign(forge.claims_for(stack, "alice", exp=None)),
        "no jti": forge.sign(forge.claims_for(stack, "alice", jti=None)),
        "tampered payload": forge.with_claims(real, username="bob"),
        "signature of another token": real.rsplit(".", 1)[0] + "." + forge.sign(good).rsplit(".", 1)[1],
        "garbage": "not-a-jwt",
        "huge": "a" * 8_000,  # (the gateway itself refuses header lines over 8 KiB)
        "malformed API key": "prdk_nope",
        "unknown API key": "prdk_01jd0000000000000000000000_" + "A" * 43,
    }


def test_a_genuine_forged_token_is_accepted(stack: LocalStack) -> None:
    """The control: a token signed by the provider's key with correct claims works, so the
    refusals below are caused by the one claim each changes."""
    token = forge.sign(forge.claims_for(stack, "alice"))
    response = Api(stack.base_url, token).get("/api/auth/me")
    assert response.status_code == 200 and response.json()["username"] == "alice"


def test_every_hostile_token_is_refused_over_http(stack: LocalStack, alice: Api) -> None:
    assert alice.token
    for name, token in hostile_tokens(stack, alice.token).items():
        for method, path in (("GET", "/api/prds"), ("POST", "/api/prds"), ("GET", "/api/auth/me")):
            response = alice.request(method, path, token=token, json_body={"title": "x"} if method == "POST" else None)
            assert response.status_code == 401, (name, path, response.text)
            error = error_of(response)
            assert error["code"] in ("invalid_token", "token_expired", "invalid_api_key"), (name, error)
            assert "Traceback" not in response.text and "jose" not in response.text.lower()


def test_every_hostile_token_is_refused_at_the_websocket_upgrade(stack: LocalStack, alice: Api) -> None:
    prd = alice.post("/api/prds", {"title": "Upgrade target"}).json()
    assert alice.token
    for name, token in hostile_tokens(stack, alice.token).items():
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{stack.ws_url}?prd={prd['id']}&token={requests.utils.quote(token)}", open_timeout=15).close()
        assert refused.value.response.status_code == 401, name


def test_user_a_token_on_user_b_prd_reveals_nothing(stack: LocalStack, alice: Api, dave: Api) -> None:
    prd = alice.post("/api/prds", {"title": "Alice's secret plan"}).json()
    missing = dave.get("/api/prds/01jd0000000000000000000000")
    for method, path, body in (("GET", f"/api/prds/{prd['id']}", None),
                               ("PATCH", f"/api/prds/{prd['id']}", {"title": "mine now"}),
                               ("DELETE", f"/api/prds/{prd['id']}", None),
                               ("GET", f"/api/prds/{prd['id']}/members", None),
                               ("PUT", f"/api/prds/{prd['id']}/members/dave", {"role": "owner"})):
        response = dave.request(method, path, json_body=body)
        assert response.status_code == 404, (method, path, response.text)
        assert error_of(response) == error_of(missing), "a real id must look exactly like a missing one"
    assert prd["id"] not in {p["id"] for p in dave.get("/api/prds").json()["items"]}
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{stack.ws_url}?prd={prd['id']}&token={dave.token}", open_timeout=15).close()
    assert refused.value.response.status_code == 403
    assert alice.get(f"/api/prds/{prd['id']}").json()["title"] == "Alice's secret plan"


def test_refresh_retires_the_access_token_it_replaces(stack: LocalStack) -> None:
    tokens = login(stack, "bob")
    old = tokens["access_token"]
    response = requests.post(f"{stack.base_url}/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]},
                             headers={"authorization": f"Bearer {old}"}, timeout=30)
    assert response.status_code == 200, response.text
    fresh = response.json()["access_token"]
    refused = Api(stack.base_url, old).get("/api/auth/me")
    assert refused.status_code == 401 and error_of(refused)["code"] == "token_revoked"
    assert Api(stack.base_url, fresh).get("/api/auth/me").status_code == 200


def test_refresh_cannot_be_used_to_revoke_someone_elses_token(stack: LocalStack, alice: Api) -> None:
    bob = login(stack, "bob")
    response = requests.post(f"{stack.base_url}/api/auth/refresh", json={"refresh_token": bob["refresh_token"]},
                             headers={"authorization": f"Bearer {alice.token}"}, timeout=30)
    assert response.status_code == 200
    assert alice.get("/api/auth/me").status_code == 200, "alice's token is not bob's to retire"


def test_logout_refuses_the_token_on_every_route_and_closes_its_websockets(stack: LocalStack, alice: Api) -> None:
    carol = login(stack, "carol")
    api = Api(stack.base_url, carol["access_token"])
    prd = alice.post("/api/prds", {"title": "Watched"}).json()
    assert alice.put(f"/api/prds/{prd['id']}/members/carol", {"role": "viewer"}).status_code == 200
    with connect(f"{stack.ws_url}?prd={prd['id']}&token={carol['access_token']}", open_timeout=15) as ws:
        assert api.post("/api/auth/logout").status_code == 204
        frames = _frames_until_closed(ws)
    assert any(f.get("type") == "session-ended" for f in frames), frames
    for method, path in (("GET", "/api/prds"), ("GET", f"/api/prds/{prd['id']}"), ("POST", "/api/auth/logout"),
                         ("GET", "/api/auth/keys")):
        response = api.request(method, path)
        assert response.status_code == 401 and error_of(response)["code"] == "token_revoked", (path, response.text)


def _frames_until_closed(ws: Any, timeout: float = 20) -> list[dict[str, Any]]:
    import json

    from websockets.exceptions import ConnectionClosed

    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            frames.append(json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic()))))
    except ConnectionClosed:
        return frames
    raise AssertionError(f"the connection was not closed within {timeout} s; frames: {frames}")


def test_an_admin_revokes_every_session_and_key_of_a_person(stack: LocalStack, admin: Api, dave: Api) -> None:
    ensure_user(stack, "erin")
    victim = login(stack, "erin")
    other_session = login(stack, "erin")["access_token"]
    key = Api(stack.base_url, victim["access_token"]).post("/api/auth/keys", {"name": "ci"}).json()["key"]
    assert Api(stack.base_url, key).get("/api/prds").status_code == 200

    assert dave.post("/api/auth/users/erin/revoke").status_code == 403, "only admins may revoke people"
    assert admin.post("/api/auth/users/erin/revoke").status_code == 204
    for credential in (victim["access_token"], key, other_session):
        response = Api(stack.base_url, credential).get("/api/prds")
        assert response.status_code == 401, response.text
    again = requests.post(f"{stack.base_url}/api/auth/refresh", json={"refresh_token": victim["refresh_token"]},
                          timeout=30)
    assert again.status_code == 401, "the refresh token died with the sessions"
    time.sleep(1.1)  # a login in the same second as the revocation is refused too (iat <= revoked_at)
    assert Api(stack.base_url, login(stack, "erin")["access_token"]).get("/api/prds").status_code == 200
