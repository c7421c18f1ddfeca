"""Every route x every role, against the policy table (``prdtool.auth.policy.POLICY``).

The expected outcome of each call is computed from the policy, not written by hand: allowed is a
2xx, a member without the right is 403, a non-member is 404 (existence is private).  A route that
this file does not classify fails the suite, so a new route cannot ship without a policy decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from prdtool.api import full_app
from prdtool.auth.policy import Action, Role, allowed
from scripts.localstack.stack import LocalStack
from tests.integration.fixtures import Api, ensure_user, login
from tests.integration.test_walking_skeleton import error_of


@dataclass(frozen=True)
class PrdRoute:
    method: str
    path: str  # with {id} (and {username} for member routes)
    action: Action
    body: Callable[[], Any] | None = None
    query: str = ""
    needs_remote: bool = False  # the owner sets a push remote first


# Nothing listens on the discard port: a push there fails at once (recorded; the save is unaffected).
REMOTE = {"url": "http://127.0.0.1:9/matrix.git", "username": "bot", "token": "matrix-token"}


PRD_ROUTES = [
    PrdRoute("GET", "/api/prds/{id}", Action.READ),
    PrdRoute("PATCH", "/api/prds/{id}", Action.EDIT, lambda: {"title": "Renamed by the matrix"}),
    PrdRoute("DELETE", "/api/prds/{id}", Action.DELETE),
    PrdRoute("GET", "/api/prds/{id}/members", Action.READ),
    PrdRoute("PUT", "/api/prds/{id}/members/{username}", Action.MANAGE_MEMBERS, lambda: {"role": "viewer"}),
    PrdRoute("DELETE", "/api/prds/{id}/members/{username}", Action.MANAGE_MEMBERS),
    PrdRoute("GET", "/api/prds/{id}/versions", Action.READ),
    PrdRoute("POST", "/api/prds/{id}/versions", Action.EDIT, lambda: {"name": "Saved by the matrix"}),
    PrdRoute("GET", "/api/prds/{id}/versions/{version}", Action.READ),
    PrdRoute("POST", "/api/prds/{id}/versions/{version}/restore", Action.EDIT),
    PrdRoute("GET", "/api/prds/{id}/diff", Action.READ, query="?from=1.0.0&to=v1.0.0"),
    PrdRoute("GET", "/api/prds/{id}/remote", Action.READ, needs_remote=True),
    PrdRoute("PUT", "/api/prds/{id}/remote", Action.MANAGE_MEMBERS, lambda: REMOTE),
    PrdRoute("DELETE", "/api/prds/{id}/remote", Action.MANAGE_MEMBERS, needs_remote=True),
    PrdRoute("POST", "/api/prds/{id}/remote/push", Action.EDIT, needs_remote=True),
    PrdRoute("POST", "/api/prds/{id}/ai/jobs", Action.RUN_AI, lambda: {"prompt": "Draft it", "section": "Risks"}),
    PrdRoute("GET", "/api/prds/{id}/ai/jobs", Action.READ),
    PrdRoute("POST", "/api/prds/{id}/exports", Action.EXPORT, lambda: {"format": "markdown"}),
]
# Routes about no particular PRD: who may call them.
OTHER_ROUTES = {
    ("POST", "/api/auth/login"): "public",
    ("POST", "/api/auth/refresh"): "public",
    ("GET", "/api/health"): "public",
    ("GET", "/api/config"): "public",
    ("POST", "/api/auth/logout"): "signed-in",
    ("GET", "/api/auth/me"): "signed-in",
    ("POST", "/api/auth/keys"): "signed-in",
    ("GET", "/api/auth/keys"): "signed-in",
    ("DELETE", "/api/auth/keys/{key_id}"): "signed-in (own keys)",
    ("GET", "/api/templates"): "signed-in",
    ("GET", "/api/prds"): "signed-in (own PRDs)",
    ("POST", "/api/prds"): "signed-in",
    ("POST", "/api/auth/users/{username}/revoke"): "admin",
    ("GET", "/api/audit"): "admin, or a PRD's owner for that PRD",
    ("GET", "/api/audit/verify"): "admin",
    # A job's PRD decides (tests/e2e/test_ai.py, tests/unit/test_ai_service.py): readers of the PRD
    # may read a job; its requester or the PRD's owner may decide about it; anyone else gets 404.
    ("GET", "/api/ai/jobs/{job_id}"): "readers of the job's PRD",
    ("POST", "/api/ai/jobs/{job_id}/approve"): "the job's requester or the PRD's owner, with edit rights",
    ("POST", "/api/ai/jobs/{job_id}/reject"): "the job's requester or the PRD's owner",
    ("POST", "/api/ai/jobs/{job_id}/cancel"): "the job's requester or the PRD's owner",
    ("POST", "/api/imports"): "signed-in (not an API key limited to some PRDs)",
    ("GET", "/api/imports/{import_id}"): "the importer (tests/e2e/test_transfers.py)",
    ("POST", "/api/imports/uploads"): "signed-in (not an API key limited to some PRDs)",
    ("POST", "/api/imports/{import_id}/complete"): "the importer (tests/e2e/test_transfers.py)",
    ("GET", "/api/exports/{export_id}"): "the requester, while they may export the PRD",
    # Results only ever hold PRDs the caller reads: a members filter inside the engine's query
    # (tests/e2e/test_search.py, tests/unit/test_search_local.py).
    ("GET", "/api/search"): "signed-in (results: PRDs the caller reads)",
}
CALLERS = ["owner", "editor", "commenter", "viewer", "admin", "outsider"]


def test_every_route_is_classified() -> None:
    schema = full_app().openapi()
    routes = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    classified = {(r.method, r.path) for r in PRD_ROUTES} | set(OTHER_ROUTES)
    assert routes == classified, f"unclassified: {routes - classified}; stale: {classified - routes}"


@pytest.fixture(scope="module")
def callers(stack: LocalStack, admin: Api) -> dict[str, Api]:
    for name in ("vera", "dave", "tom"):
        ensure_user(stack, name)
    return {
        "owner": Api(stack.base_url, login(stack, "alice")["access_token"]),
        "editor": Api(stack.base_url, login(stack, "bob")["access_token"]),
        "commenter": Api(stack.base_url, login(stack, "carol")["access_token"]),
        "viewer": Api(stack.base_url, login(stack, "vera")["access_token"]),
        "admin": admin,
        "outsider": Api(stack.base_url, login(stack, "dave")["access_token"]),
    }


def _fresh_prd(owner: Api) -> str:
    created = owner.post("/api/prds", {"title": "Policy matrix"})
    assert created.status_code == 201, created.text
    prd_id = str(created.json()["id"])
    for username, role in (("bob", "editor"), ("carol", "commenter"), ("vera", "viewer"), ("tom", "editor")):
        assert owner.put(f"/api/prds/{prd_id}/members/{username}", {"role": role}).status_code == 200
    deadline = time.monotonic() + 30  # v1.0.0 is cut by VersionFunction from prd.created
    while not [v for v in owner.get(f"/api/prds/{prd_id}/versions").json()["items"] if v["state"] == "committed"]:
        assert time.monotonic() < deadline, "no v1.0.0 within 30 s"
        time.sleep(0.2)
    return prd_id


ROLE_OF = {"owner": Role.OWNER, "editor": Role.EDITOR, "commenter": Role.COMMENTER, "viewer": Role.VIEWER}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", PRD_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_prd_route_follows_the_policy(route: PrdRoute, caller: str, callers: dict[str, Api]) -> None:
    prd_id = _fresh_prd(callers["owner"])
    if route.needs_remote:
        assert callers["owner"].put(f"/api/prds/{prd_id}/remote", REMOTE).status_code == 200
    # Member routes act on "tom", a member who is not the caller (leaving is always allowed).
    path = route.path.replace("{id}", prd_id).replace("{username}", "tom").replace("{version}", "1.0.0") + route.query
    response = callers[caller].request(route.method, path, json_body=route.body() if route.body else None)
    if caller == "admin":
        expected_ok = allowed(None, route.action, is_admin=True)
    else:
        expected_ok = allowed(ROLE_OF.get(caller), route.action)
    if expected_ok:
        assert 200 <= response.status_code < 300, (caller, route, response.text)
    else:
        expected = 404 if caller == "outsider" else 403
        assert response.status_code == expected, (caller, route, response.text)
        assert error_of(response)["code"] in ("forbidden", "not_found")
        after = callers["owner"].get(f"/api/prds/{prd_id}")
        assert after.status_code == 200 and after.json()["title"] == "Policy matrix", "a refusal changed nothing"


def test_admin_only_routes_refuse_everyone_else(callers: dict[str, Api]) -> None:
    for caller in ("owner", "editor", "viewer", "outsider"):
        assert callers[caller].post("/api/auth/users/nobody/revoke").status_code == 403
        assert callers[caller].get("/api/audit/verify?date=2026-11-26").status_code == 403
        assert callers[caller].get("/api/audit").status_code in (400, 403)


def test_api_keys_act_as_their_owner_and_never_beyond_their_scope(stack: LocalStack,
                                                                   callers: dict[str, Api]) -> None:
    bob = callers["editor"]
    inside, outside = _fresh_prd(callers["owner"]), _fresh_prd(callers["owner"])
    created = bob.post("/api/auth/keys", {"name": "ci bot", "prds": [inside], "expires_in_days": 7})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("prdk_") and "key" not in bob.get("/api/auth/keys").json()["keys"][0]
    as_key = Api(stack.base_url)
    as_key.session.headers["x-api-key"] = key
    assert as_key.get(f"/api/prds/{inside}").status_code == 200
    assert as_key.patch(f"/api/prds/{inside}", {"title": "Edited by a key"}).status_code == 200
    assert as_key.get(f"/api/prds/{outside}").status_code == 404, "outside the key's scope"
    assert {p["id"] for p in as_key.get("/api/prds").json()["items"]} == {inside}
    assert as_key.delete(f"/api/prds/{inside}").status_code == 403, "never more than its owner's role"
    assert as_key.post("/api/prds", {"title": "new"}).status_code == 403, "a scoped key creates nothing"
    assert as_key.post("/api/auth/keys", {"name": "child"}).status_code == 403, "keys do not mint keys"
    assert as_key.post("/api/auth/logout").status_code == 400
    # Revocation takes effect on the very next request.
    assert bob.delete(f"/api/auth/keys/{created.json()['id']}").status_code == 204
    refused = as_key.get(f"/api/prds/{inside}")
    assert refused.status_code == 401 and error_of(refused)["code"] == "api_key_revoked"
    assert callers["outsider"].delete(f"/api/auth/keys/{created.json()['id']}").status_code == 404
    # A key for a PRD its creator cannot read is refused at creation.
    assert callers["outsider"].post("/api/auth/keys", {"name": "x", "prds": [inside]}).status_code == 404
