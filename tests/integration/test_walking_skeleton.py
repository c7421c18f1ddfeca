"""The walking skeleton end to end, through the local stack: real gateway, handlers, moto.

Mirrors the acceptance of issue #2: health, login, create, share, per-role enforcement, outsiders,
missing and forged tokens, malformed and oversized bodies.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests

from scripts.localstack.stack import LocalStack
from tests.integration.fixtures import Api, cognito, login
from tests.security.forge import b64, with_claims

pytestmark = pytest.mark.integration


def error_of(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    assert "Traceback" not in response.text
    return dict(body["error"])


def test_health_is_healthy(anonymous: Api) -> None:
    response = anonymous.get("/api/health")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "healthy", report
    assert {"table:prds", "table:members", "table:docs", "bucket:documents", "user-pool", "event-bus"} <= set(
        report["checks"])
    assert all(check["status"] == "ok" for check in report["checks"].values())


def test_config_names_the_local_urls(stack: LocalStack, anonymous: Api) -> None:
    config = anonymous.get("/api/config").json()
    assert config["wsUrl"].startswith("ws://") and config["wsUrl"].endswith("/ws")
    assert config["auth"]["clientId"]
    assert config["limits"] == {"aiPromptChars": 4000, "importDirectBytes": 4 * 1024 * 1024,
                                "importUploadBytes": 20 * 1024 * 1024}


def test_demo_data_is_seeded(alice: Api, bob: Api, carol: Api) -> None:
    for api, role in ((alice, "owner"), (bob, "editor"), (carol, "viewer")):
        titles = {p["title"]: p["role"] for p in api.get("/api/prds").json()["items"]}
        assert titles.get("Sample PRD: Team Calendar Sync") == role


def test_login_refuses_bad_credentials_without_revealing_which(anonymous: Api) -> None:
    wrong_password = anonymous.post("/api/auth/login", {"username": "alice", "password": "nope-nope-nope"})
    no_such_user = anonymous.post("/api/auth/login", {"username": "zed", "password": "demo-password"})
    assert wrong_password.status_code == no_such_user.status_code == 401
    assert error_of(wrong_password) == error_of(no_such_user)


def test_the_acceptance_story(alice: Api, bob: Api, carol: Api, dave: Api, anonymous: Api) -> None:
    created = alice.post("/api/prds", {"title": "Team calendar sync", "template": "standard"})
    assert created.status_code == 201, created.text
    prd = created.json()
    prd_id = prd["id"]
    assert prd["role"] == "owner" and "## Goals" in prd["markdown"]

    assert alice.put(f"/api/prds/{prd_id}/members/bob", {"role": "editor"}).json()["role"] == "editor"
    assert alice.put(f"/api/prds/{prd_id}/members/carol", {"role": "viewer"}).json()["role"] == "viewer"
    members = {m["username"]: m["role"] for m in alice.get(f"/api/prds/{prd_id}/members").json()["items"]}
    assert members == {"alice": "owner", "bob": "editor", "carol": "viewer"}

    # carol reads but cannot change or delete
    assert carol.get(f"/api/prds/{prd_id}").status_code == 200
    for response in (carol.patch(f"/api/prds/{prd_id}", {"title": "mine now"}),
                     carol.delete(f"/api/prds/{prd_id}"),
                     carol.put(f"/api/prds/{prd_id}/members/carol", {"role": "owner"})):
        assert response.status_code == 403, response.text
        assert error_of(response)["code"] == "forbidden"

    # bob edits but cannot delete or manage members
    renamed = bob.patch(f"/api/prds/{prd_id}", {"title": "Team calendar sync v2", "status": "in_review"})
    assert renamed.status_code == 200, renamed.text
    assert bob.delete(f"/api/prds/{prd_id}").status_code == 403
    assert bob.put(f"/api/prds/{prd_id}/members/dave", {"role": "viewer"}).status_code == 403
    current = alice.get(f"/api/prds/{prd_id}").json()
    assert current["title"] == "Team calendar sync v2" and current["status"] == "in_review"
    assert current["meta"]["title"] == "Team calendar sync v2"  # mirrored into Y.Map("meta")
    assert current["updated_by"] == "bob"

    # an outsider sees nothing, not even that it exists
    assert dave.get(f"/api/prds/{prd_id}").status_code == 404
    assert dave.patch(f"/api/prds/{prd_id}", {"title": "x"}).status_code == 404
    assert prd_id not in {p["id"] for p in dave.get("/api/prds").json()["items"]}

    # no token at all
    response = anonymous.get(f"/api/prds/{prd_id}")
    assert response.status_code == 401 and error_of(response)["code"] == "missing_token"

    # the owner deletes; it is gone for everyone
    assert alice.delete(f"/api/prds/{prd_id}").status_code == 204
    for api in (alice, bob, carol):
        assert api.get(f"/api/prds/{prd_id}").status_code == 404
        assert prd_id not in {p["id"] for p in api.get("/api/prds").json()["items"]}


def test_created_markdown_is_returned_verbatim(alice: Api) -> None:
    markdown = "# Émoji ✓ PRD\n\n## Problem\n\nTabs\tand\r\nCRLF, quotes \"'`, and <html>.\n"
    created = alice.post("/api/prds", {"title": "Unicode", "markdown": markdown})
    assert created.status_code == 201
    assert alice.get(f"/api/prds/{created.json()['id']}").json()["markdown"] == markdown


def test_last_owner_cannot_leave_or_be_demoted(alice: Api, shared_prd: dict[str, Any]) -> None:
    prd_id = shared_prd["id"]
    demote = alice.put(f"/api/prds/{prd_id}/members/alice", {"role": "editor"})
    assert demote.status_code == 409 and error_of(demote)["code"] == "last_owner"
    leave = alice.delete(f"/api/prds/{prd_id}/members/alice")
    assert leave.status_code == 409
    # with a second owner, the first may step down
    assert alice.put(f"/api/prds/{prd_id}/members/bob", {"role": "owner"}).status_code == 200
    assert alice.put(f"/api/prds/{prd_id}/members/alice", {"role": "editor"}).status_code == 200


def test_sharing_with_an_unknown_user_is_404(alice: Api, shared_prd: dict[str, Any]) -> None:
    response = alice.put(f"/api/prds/{shared_prd['id']}/members/nobody-here", {"role": "viewer"})
    assert response.status_code == 404 and error_of(response)["code"] == "user_not_found"


def test_members_may_leave(carol: Api, shared_prd: dict[str, Any]) -> None:
    assert carol.delete(f"/api/prds/{shared_prd['id']}/members/carol").status_code == 204
    assert carol.get(f"/api/prds/{shared_prd['id']}").status_code == 404


@pytest.mark.parametrize("prd_id", ["01jd0000000000000000000000", "not-a-ulid", "..%2F..%2Fetc", "x" * 64])
def test_unknown_prd_ids_are_404(alice: Api, prd_id: str) -> None:
    response = alice.get(f"/api/prds/{prd_id}")
    assert response.status_code == 404


# ------------------------------------------------------------------ hostile input
def test_forged_tokens_are_401(stack: LocalStack, alice: Api) -> None:
    real = alice.token
    assert real
    header = json.loads(base64.urlsafe_b64decode(real.split(".")[0] + "=="))
    forged = {
        "alg-none": f"{b64({'alg': 'none', 'kid': header['kid']})}.{real.split('.')[1]}.",
        "tampered-payload": with_claims(real, username="carol"),
        "expired-claim": with_claims(real, exp=1_000_000_000),
        "wrong-signature": real[:-8] + ("A" * 8 if not real.endswith("A" * 8) else "B" * 8),
        "garbage": "definitely.not.ajwt",
    }
    for name, token in forged.items():
        response = alice.get("/api/prds", token=token)
        assert response.status_code == 401, (name, response.text)
        assert error_of(response)["code"] in ("invalid_token", "token_expired"), name
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_token_for_another_app_client_is_401(stack: LocalStack) -> None:
    """Wrong audience: a genuine token of the same pool, issued to a different app client."""
    idp = cognito(stack)
    pool = next(iter(stack.manifest["user_pools"].values()))
    other = idp.create_user_pool_client(UserPoolId=pool, ClientName="some-other-app",
                                        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])
    result = idp.initiate_auth(ClientId=other["UserPoolClient"]["ClientId"], AuthFlow="USER_PASSWORD_AUTH",
                               AuthParameters={"USERNAME": "alice", "PASSWORD": "demo-password"})
    response = Api(stack.base_url).get("/api/prds", token=result["AuthenticationResult"]["AccessToken"])
    assert response.status_code == 401 and "another application" in error_of(response)["message"]
    id_token = idp.initiate_auth(ClientId=stack.manifest["functions"]["AuthFunction"]["environment"]
                                 ["USER_POOL_CLIENT_ID"], AuthFlow="USER_PASSWORD_AUTH",
                                 AuthParameters={"USERNAME": "alice", "PASSWORD": "demo-password"}
                                 )["AuthenticationResult"]["IdToken"]
    response = Api(stack.base_url).get("/api/prds", token=id_token)
    assert response.status_code == 401, "an ID token is not an access token"


def test_refresh_then_logout_revokes_the_session(stack: LocalStack) -> None:
    tokens = login(stack, "bob")
    api = Api(stack.base_url, tokens["access_token"])
    refreshed = api.post("/api/auth/refresh", {"refresh_token": tokens["refresh_token"]}, token="")
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()["access_token"]
    assert api.get("/api/auth/me").json()["username"] == "bob"

    assert api.post("/api/auth/logout").status_code == 204
    for token in (tokens["access_token"], second):  # every access token of the session
        response = api.get("/api/prds", token=token)
        assert response.status_code == 401 and error_of(response)["code"] == "token_revoked"
    again = api.post("/api/auth/refresh", {"refresh_token": tokens["refresh_token"]}, token="")
    assert again.status_code == 401 and error_of(again)["code"] == "session_revoked"
    assert Api(stack.base_url, login(stack, "bob")["access_token"]).get("/api/prds").status_code == 200


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ("{\"title\": ", 400, "invalid_json"),
        ("[1, 2, 3]", 422, "validation_error"),
        ("{\"title\": \"\"}", 422, "validation_error"),
        ("{\"title\": \"a\", \"template\": \"nope\"}", 422, "validation_error"),
        ("{\"title\": \"a\", \"unexpected\": 1}", 422, "validation_error"),
        ("{\"title\": \"line\\nbreak\"}", 422, "validation_error"),
        ("{\"title\": \"" + "t" * 201 + "\"}", 422, "validation_error"),
        ("\u0000\u0001", 400, "invalid_json"),
    ],
)
def test_malformed_bodies(alice: Api, payload: str, status: int, code: str) -> None:
    response = alice.request("POST", "/api/prds", data=payload.encode())
    assert response.status_code == status, response.text
    assert error_of(response)["code"] == code


def test_bodies_over_the_api_limit_are_413(alice: Api) -> None:
    over_app_limit = json.dumps({"title": "big", "markdown": "x" * (2 * 1024 * 1024 + 10)})
    response = alice.request("POST", "/api/prds", data=over_app_limit)
    assert response.status_code == 413 and error_of(response)["code"] == "payload_too_large"
    over_gateway_limit = b"{" + b" " * (10 * 1024 * 1024 + 1) + b"}"
    assert alice.request("POST", "/api/prds", data=over_gateway_limit).status_code == 413


def test_wrong_methods_and_paths(alice: Api) -> None:
    assert alice.request("PUT", "/api/prds").status_code in (404, 405)
    assert alice.get("/api/definitely-not-a-route").status_code == 404
