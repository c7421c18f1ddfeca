"""`PUT /api/prds/{id}/members/{username}` tells only a PRD's owners whether a username exists.

Everyone else — a viewer, an editor, a stranger, a key scoped to other PRDs — gets one answer for
an existing and an unknown name, because the authorization check runs before any user lookup.
An owner managing members gets a useful 404 (``user_not_found``) for a name that does not exist.
"""

from __future__ import annotations

from typing import Any

import requests

from scripts.localstack.stack import LocalStack
from tests.integration.fixtures import Api
from tests.integration.test_walking_skeleton import error_of

UNKNOWN = "nobody-by-this-name"
EXISTING = "dave"  # a real user of the pool (the dave fixture makes sure) who is a member of nothing


def _answer(response: requests.Response) -> tuple[int, Any]:
    return response.status_code, response.json()


def test_only_owners_learn_whether_a_username_exists(stack: LocalStack, alice: Api, bob: Api, carol: Api,
                                                     dave: Api, shared_prd: dict[str, Any]) -> None:
    prd = shared_prd["id"]
    bob_prd = bob.post("/api/prds", {"title": "Bob's own"}).json()["id"]
    key = bob.post("/api/auth/keys", {"name": "scoped to bob's", "prds": [bob_prd]}).json()["key"]
    outside_scope = Api(stack.base_url, key)

    for name, caller, expected in (("editor", bob, 403), ("viewer", carol, 403), ("stranger", dave, 404),
                                   ("key outside its scope", outside_scope, 404)):
        existing = caller.put(f"/api/prds/{prd}/members/{EXISTING}", {"role": "viewer"})
        unknown = caller.put(f"/api/prds/{prd}/members/{UNKNOWN}", {"role": "viewer"})
        assert _answer(existing) == _answer(unknown), name
        assert existing.status_code == expected and error_of(existing)["code"] in ("forbidden", "not_found"), name
    assert EXISTING not in {m["username"] for m in alice.get(f"/api/prds/{prd}/members").json()["items"]}, \
        "nothing was changed by the refused calls"

    # The owner, legitimately managing members, is told the name does not exist.
    refused = alice.put(f"/api/prds/{prd}/members/{UNKNOWN}", {"role": "viewer"})
    assert refused.status_code == 404 and error_of(refused)["code"] == "user_not_found"
    assert alice.put(f"/api/prds/{prd}/members/{EXISTING}", {"role": "viewer"}).status_code == 200
