"""API keys cannot manage API keys: a leaked key must not list or switch off its owner's other keys.

Keys are for automation; managing keys is for the person (who signs in).  A key may revoke itself,
so whoever finds it leaked can retire it.
"""

from __future__ import annotations

from typing import Any

from scripts.localstack.stack import LocalStack
from tests.integration.fixtures import Api, ensure_user, login
from tests.integration.test_walking_skeleton import error_of


def _person(stack: LocalStack, name: str) -> Api:
    ensure_user(stack, name)
    return Api(stack.base_url, login(stack, name)["access_token"])


def _key(owner: Api, stack: LocalStack, **body: Any) -> tuple[dict[str, Any], Api]:
    created = owner.post("/api/auth/keys", {"name": "bot", **body})
    assert created.status_code == 201, created.text
    as_key = Api(stack.base_url)
    as_key.session.headers["x-api-key"] = created.json()["key"]
    return created.json(), as_key


def test_a_scoped_key_cannot_list_or_revoke_its_owners_keys(stack: LocalStack) -> None:
    owner = _person(stack, "kira")
    prd = owner.post("/api/prds", {"title": "Scoped"}).json()["id"]
    other, other_key = _key(owner, stack)
    scoped, scoped_key = _key(owner, stack, prds=[prd])

    listed = scoped_key.get("/api/auth/keys")
    assert listed.status_code == 403 and error_of(listed)["code"] == "api_key_not_allowed", listed.text
    assert other["id"] not in listed.text and "bot" not in listed.text
    revoked = scoped_key.delete(f"/api/auth/keys/{other['id']}")
    assert revoked.status_code == 403 and error_of(revoked)["code"] == "api_key_not_allowed", revoked.text
    # An id that does not exist gets the very same answer: a key learns nothing about key ids.
    unknown = scoped_key.delete("/api/auth/keys/01jd0000000000000000000000")
    assert (unknown.status_code, error_of(unknown)) == (revoked.status_code, error_of(revoked))
    assert other_key.get("/api/auth/me").status_code == 200, "the other key still works"
    assert {k["id"] for k in owner.get("/api/auth/keys").json()["keys"]} >= {other["id"], scoped["id"]}

    # A key may retire itself (found leaked), and is refused from then on.
    assert scoped_key.delete(f"/api/auth/keys/{scoped['id']}").status_code == 204
    gone = scoped_key.get(f"/api/prds/{prd}")
    assert gone.status_code == 401 and error_of(gone)["code"] == "api_key_revoked"


def test_an_unscoped_key_cannot_manage_keys_either(stack: LocalStack) -> None:
    """Consistent with minting (already refused): key management is for people, scoped key or not."""
    owner = _person(stack, "lena")
    first, first_key = _key(owner, stack)
    second, _ = _key(owner, stack)
    assert first_key.get("/api/auth/keys").status_code == 403
    assert first_key.delete(f"/api/auth/keys/{second['id']}").status_code == 403
    assert first_key.post("/api/auth/keys", {"name": "child"}).status_code == 403
    # The person manages them as before.
    assert owner.delete(f"/api/auth/keys/{second['id']}").status_code == 204
    assert owner.delete(f"/api/auth/keys/{first['id']}").status_code == 204
    assert first_key.get("/api/auth/me").status_code == 401
