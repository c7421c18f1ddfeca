"""What the HTTP edge puts in the audit trail for hostile or unusual requests (through mangum, no network).

Every message the recorder would send to the audit queue is captured as JSON, exactly as the writer
will read it, and must be storable (canonical JSON, UTF-8).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter
from pydantic import BaseModel

from prdtool import http
from prdtool.audit import chain, recorder
from prdtool.auth import provider
from prdtool.auth import routes as auth_routes
from prdtool.auth.principal import Principal
from prdtool.errors import Unauthenticated
from prdtool.http import lambda_handler
from prdtool.settings import reset_settings_cache
from tests.events import LambdaContext, load

router = APIRouter(prefix="/api")


class Body(BaseModel):
    name: str
    count: int


@router.post("/things")
def make_thing(body: Body) -> dict[str, Any]:
    return {"name": body.name}


@router.post("/quiet")
def quiet(body: Body) -> dict[str, Any]:
    """Does not echo the body (a lone surrogate in a response is a separate matter)."""
    return {"ok": True}


things = router
auth = auth_routes.router


class Queue:
    """Stands in for SQS: keeps each message body the recorder sends."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send_message(self, QueueUrl: str, MessageBody: str) -> dict[str, Any]:
        self.bodies.append(MessageBody)
        return {"MessageId": str(len(self.bodies))}

    def entries(self) -> list[dict[str, Any]]:
        found = [json.loads(body) for body in self.bodies]
        for item in found:
            chain.canonical(item).decode("utf-8")  # storable: canonical JSON that is UTF-8
            json.dumps(item, allow_nan=False)
        return found


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch, mangum_loop: None, no_network: None) -> Iterator[Queue]:
    captured = Queue()
    monkeypatch.setenv("AUDIT_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/audit")
    reset_settings_cache()
    monkeypatch.setattr(recorder, "quick_client", lambda service: captured)
    monkeypatch.setattr(http, "_rate_limit", lambda principal, request: None)  # no counter table here
    yield captured
    reset_settings_cache()


def call(routes: APIRouter, path: str, body: str | None, *, base64_body: bool = False,
         content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    """POST ``body`` to ``path`` as API Gateway would (a mangum handler made under mangum_loop)."""
    event = load("http-login.json")
    event["rawPath"] = path
    event["routeKey"] = f"POST {path}"
    event["requestContext"]["http"].update(method="POST", path=path)
    event["headers"]["content-type"] = content_type
    event["body"] = body
    event["isBase64Encoded"] = base64_body
    response = lambda_handler(routes)(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"] or "null")


def test_a_body_with_a_utf8_bom_is_audited_as_the_api_decoded_it(queue: Queue) -> None:
    status, body = call(things, "/api/things", "\ufeff" + json.dumps({"name": "hidden?", "count": 1}))
    assert (status, body) == (200, {"name": "hidden?"}), "the API accepts a BOM (json.loads of bytes does)"
    (entry,) = queue.entries()
    assert entry["changes"] == {"name": "hidden?", "count": 1}


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16", "utf-16-be", "utf-32"])
def test_a_utf16_or_utf32_body_is_audited_as_the_api_decoded_it(queue: Queue, encoding: str) -> None:
    raw = json.dumps({"name": "caf\u00e9 \U0001f600", "count": 2}, ensure_ascii=False).encode(encoding)
    status, body = call(things, "/api/things", base64.b64encode(raw).decode(), base64_body=True)
    assert (status, body) == (200, {"name": "caf\u00e9 \U0001f600"})
    (entry,) = queue.entries()
    assert entry["changes"] == {"name": "caf\u00e9 \U0001f600", "count": 2}


def test_an_ascii_utf16_body_sent_as_text_is_audited_decoded(queue: Queue) -> None:
    """ASCII in UTF-16-LE is valid UTF-8 (with NULs), so a gateway may pass it as text, not base64."""
    raw = json.dumps({"name": "sneaky", "count": 3}).encode("utf-16-le").decode("utf-8")
    status, _ = call(things, "/api/things", raw)
    assert status == 200
    assert queue.entries()[0]["changes"] == {"name": "sneaky", "count": 3}


def test_a_body_too_deep_to_parse_is_still_audited(queue: Queue) -> None:
    status, body = call(things, "/api/things", "[" * 2000 + "]" * 2000)
    assert status == 400, body
    (entry,) = queue.entries()
    assert entry["status"] == 400 and entry["changes"] == {"unparsed_bytes": 4000}


def test_a_lone_surrogate_at_login_is_refused_and_audited_as_safe_text(queue: Queue) -> None:
    status, body = call(auth, "/api/auth/login", '{"username": "\\ud800"}')
    assert status == 422, body
    (entry,) = queue.entries()
    assert entry["actor"] == "anonymous" and entry["status"] == 422
    assert entry["changes"] == {"claimed_username": "\\ud800"}


def test_raw_bytes_that_decode_to_a_surrogate_are_audited_as_safe_text(queue: Queue) -> None:
    """``json.loads(bytes)`` decodes with ``surrogatepass``: UTF-8-encoded surrogates become lone ones."""
    raw = b'{"name": "\xed\xa0\x80", "count": 1}'
    status, _ = call(things, "/api/quiet", base64.b64encode(raw).decode(), base64_body=True)
    assert status == 200
    assert queue.entries()[0]["changes"] == {"name": "\\ud800", "count": 1}


def test_a_failed_login_names_no_actor_only_a_claimed_username(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(username: str, password: str) -> provider.Tokens:
        raise Unauthenticated("incorrect username or password", code="invalid_credentials")

    monkeypatch.setattr(provider, "password_login", refuse)
    status, _ = call(auth, "/api/auth/login", json.dumps({"username": "Alice", "password": "guess"}))
    assert status == 401
    (entry,) = queue.entries()
    assert entry["actor"] == "anonymous"
    assert entry["changes"] == {"claimed_username": "Alice", "password": recorder.REDACTED}


def test_a_successful_login_names_the_user_the_provider_vouched_for(queue: Queue,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The body says ``Alice@Example.com`` (an alias); the verified token says ``alice``."""
    monkeypatch.setattr(provider, "password_login",
                        lambda username, password: provider.Tokens("access-token", "refresh-token", 3600))

    class Verifier:
        def verify(self, token: str) -> Principal:
            assert token == "access-token"
            return Principal("alice", "jti", "origin", 2_000_000_000)

    monkeypatch.setattr(auth_routes, "verifier", lambda: Verifier())
    status, _ = call(auth, "/api/auth/login", json.dumps({"username": "Alice@Example.com", "password": "pw"}))
    assert status == 200
    (entry,) = queue.entries()
    assert entry["actor"] == "alice"
    assert "access-token" not in json.dumps(entry) and "refresh-token" not in json.dumps(entry)
