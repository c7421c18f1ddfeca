"""Oversized and malformed bodies on every kind of state-changing route: a clear JSON error, no
stack trace, and nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.fixtures import Api
from tests.integration.test_walking_skeleton import error_of

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def prd(alice: Api) -> dict[str, Any]:
    created = alice.post("/api/prds", {"title": "Body target"})
    assert created.status_code == 201
    return dict(created.json())


def _routes(prd_id: str) -> list[tuple[str, str]]:
    return [("POST", "/api/prds"), ("PATCH", f"/api/prds/{prd_id}"), ("PUT", f"/api/prds/{prd_id}/members/bob"),
            ("POST", "/api/auth/keys"), ("POST", "/api/auth/login"), ("POST", "/api/auth/refresh")]


HOSTILE_BODIES: list[tuple[str, str | bytes, set[int]]] = [
    ("truncated JSON", '{"title": "x', {400}),
    ("not JSON at all", "title=x&role=owner", {400}),
    ("invalid UTF-8", b'{"title": "\xff\xfe"}', {400, 422}),
    ("JSON null", "null", {422}),
    ("a JSON string", '"owner"', {422}),
    ("deeply nested", "[" * 5000 + "]" * 5000, {400, 422}),
    ("wrong types", '{"title": 42, "role": ["owner"], "name": {}, "username": 1, "password": 2,'
                    ' "refresh_token": null}', {422}),
    ("unknown fields", '{"title": "x", "role": "owner", "is_admin": true, "owner": "mallory"}', {422}),
    ("a thousand fields", json.dumps({f"f{i}": i for i in range(1000)}), {422}),
]


@pytest.mark.parametrize(("name", "body", "statuses"), HOSTILE_BODIES, ids=[b[0] for b in HOSTILE_BODIES])
def test_malformed_bodies_get_json_errors_and_change_nothing(alice: Api, prd: dict[str, Any], name: str,
                                                               body: str | bytes, statuses: set[int]) -> None:
    before = alice.get(f"/api/prds/{prd['id']}").json()
    count = len(alice.get("/api/prds").json()["items"])
    for method, path in _routes(prd["id"]):
        response = alice.request(method, path, data=body)
        assert response.status_code in statuses, (name, method, path, response.status_code, response.text)
        error = error_of(response)
        assert error["message"] and "Traceback" not in response.text
    after = alice.get(f"/api/prds/{prd['id']}").json()
    assert (after["title"], after["markdown"]) == (before["title"], before["markdown"])
    assert len(alice.get("/api/prds").json()["items"]) == count
    assert {m["username"]: m["role"] for m in alice.get(f"/api/prds/{prd['id']}/members").json()["items"]}.get(
        "bob") != "owner"


@pytest.mark.parametrize("size", [2 * MIB + 1, 10 * MIB + 1], ids=["over the app limit", "over API Gateway's"])
def test_oversized_bodies_are_413_everywhere(alice: Api, prd: dict[str, Any], size: int) -> None:
    payload = json.dumps({"title": "x", "markdown": "a" * size})
    for method, path in _routes(prd["id"]):
        response = alice.request(method, path, data=payload)
        assert response.status_code == 413, (method, path, response.status_code)
        if size < 10 * MIB:  # API Gateway's own refusal is not ours to shape
            assert error_of(response)["code"] == "payload_too_large"
