"""The HTTP edge through mangum with real API Gateway v2 events: errors are JSON, never traces."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from prdtool.auth.principal import Principal
from prdtool.errors import Conflict
from prdtool.http import current_principal, lambda_handler
from prdtool.prds.routes import router as prds_router
from prdtool.settings import reset_settings_cache
from tests.events import LambdaContext, load

router = APIRouter(prefix="/api")


class Body(BaseModel):
    name: str
    count: int


@router.post("/things")
def make_thing(body: Body) -> dict[str, Any]:
    return {"name": body.name}


@router.get("/boom")
def boom() -> None:
    raise RuntimeError("secret internal detail /etc/passwd")


@router.get("/conflict")
def conflict() -> None:
    raise Conflict("already decided", code="already_decided")


@router.get("/me")
def me(principal: Principal = Depends(current_principal)) -> dict[str, Any]:
    return {"username": principal.username}


handler = lambda_handler(router)


@pytest.fixture(autouse=True)
def event_loop_for_mangum(mangum_loop: None) -> None:
    """Every test here goes through mangum (tests/conftest.py: ``mangum_loop``)."""


def call(method: str, path: str, body: str | None = None, **extra: Any) -> tuple[int, dict[str, Any], dict[str, Any]]:
    event = load("http-login.json")
    event["rawPath"] = path
    event["routeKey"] = f"{method} {path}"
    event["requestContext"]["http"].update(method=method, path=path)
    event["body"] = body
    event.update(extra)
    response = handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"] or "null"), response.get("headers", {})


def test_valid_request_passes(no_network: None) -> None:
    status, body, _ = call("POST", "/api/things", json.dumps({"name": "a", "count": 1}))
    assert (status, body) == (200, {"name": "a"})


@pytest.mark.parametrize("payload", ["{not json", "{\"name\": \"a\",", "\x00\x01"])
def test_malformed_json_is_400(payload: str) -> None:
    status, body, _ = call("POST", "/api/things", payload)
    assert status == 400
    assert body["error"]["code"] == "invalid_json"


def test_schema_violation_is_422_with_fields() -> None:
    status, body, _ = call("POST", "/api/things", json.dumps({"name": "a", "count": "many"}))
    assert status == 422
    assert body["error"]["details"][0]["field"] == "count"


def test_oversized_body_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "1000")
    reset_settings_cache()
    try:
        big = json.dumps({"name": "x" * 2000, "count": 1})
        status, body, _ = call("POST", "/api/things", big)
        assert status == 413 and body["error"]["code"] == "payload_too_large"
        encoded = base64.b64encode(big.encode()).decode()
        status, _, _ = call("POST", "/api/things", encoded, isBase64Encoded=True)
        assert status == 413
    finally:
        monkeypatch.delenv("MAX_BODY_BYTES")
        reset_settings_cache()


def test_unhandled_error_is_500_without_details() -> None:
    status, body, _ = call("GET", "/api/boom")
    assert status == 500
    assert body == {"error": {"code": "internal_error",
                              "message": "something went wrong on our side; it has been logged"}}


def test_domain_error_keeps_its_code_and_status() -> None:
    status, body, _ = call("GET", "/api/conflict")
    assert (status, body["error"]["code"]) == (409, "already_decided")


def test_unknown_path_is_json_404() -> None:
    status, body, _ = call("GET", "/api/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_principal_comes_from_the_authorizer_context() -> None:
    context = load("http-get-prd.json")["requestContext"]
    context["http"].update(path="/api/me", method="GET")
    status, body, _ = call("GET", "/api/me", requestContext=context)
    assert (status, body) == (200, {"username": "alice"})


def test_protected_routes_refuse_a_request_the_authorizer_could_not_verify(no_network: None) -> None:
    response = lambda_handler(prds_router)(load("http-no-token.json"), LambdaContext())
    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"] == {"code": "missing_token",
                                                     "message": "sign in first: no bearer token was sent"}
    assert response["headers"]["www-authenticate"].startswith("Bearer")
