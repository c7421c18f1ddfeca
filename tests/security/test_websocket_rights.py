"""A WebSocket connection keeps only the rights its user still has, and cannot flood the server."""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.exceptions import ConnectionClosed

from scripts.localstack.stack import LocalStack
from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api, login


def _prd(alice: Api, title: str) -> dict[str, Any]:
    created = alice.post("/api/prds", {"title": title, "markdown": f"# {title}\n\n"})
    assert created.status_code == 201, created.text
    prd = dict(created.json())
    assert alice.put(f"/api/prds/{prd['id']}/members/bob", {"role": "editor"}).status_code == 200
    return prd


def _markdown(alice: Api, prd_id: str) -> str:
    return str(alice.get(f"/api/prds/{prd_id}").json()["markdown"])


def test_a_removed_member_is_disconnected(stack: LocalStack, alice: Api) -> None:
    prd = _prd(alice, "Removal")
    bob = YClient(stack.ws_url, prd["id"], login(stack, "bob")["access_token"], name="bob").connect()
    try:
        assert alice.delete(f"/api/prds/{prd['id']}/members/bob").status_code == 204
        bob.wait_until(lambda: any(n.get("type") == "access-revoked" for n in bob.notices), what="access-revoked")
        assert bob._ws is not None
        deadline = time.monotonic() + 15
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                bob._ws.send(json.dumps({"action": "ping", "id": 1}))
                time.sleep(0.2)
            except ConnectionClosed:
                closed = True
        assert closed, "the server closed the removed member's connection"
    finally:
        bob.close()
    assert alice.get(f"/api/prds/{prd['id']}").status_code == 200


def test_a_frame_flood_is_refused_without_losing_the_session_or_the_document(stack: LocalStack,
                                                                             alice: Api) -> None:
    prd = _prd(alice, "Flood")
    with YClient(stack.ws_url, prd["id"], login(stack, "bob")["access_token"], name="bob") as bob:
        # Far past the burst of 120 frames, in each of the local stack's (up to 4) containers: the
        # bucket is per connection *and container* (docs/architecture.md, "Rate limiting").
        # The server sees the frames at the rate it processes them; 2000 stay over the limit even if
        # that takes ~12 s (4 x (120 + 30/s x 12 s) = 1920).
        for i in range(2000):
            bob.send_raw(json.dumps({"action": "ping", "id": i}))
        bob.wait_until(lambda: any(e.get("code") == "rate_limited" for e in bob.errors), timeout=60,
                       what="rate_limited error")
        time.sleep(2)  # the bucket refills
        bob.append("still here")
        bob.flush(timeout=60)
    assert "still here" in _markdown(alice, prd["id"])


def test_an_api_key_opens_a_websocket_within_its_scope_only(stack: LocalStack, alice: Api, bob: Api) -> None:
    inside, outside = _prd(alice, "Key inside"), _prd(alice, "Key outside")
    key = bob.post("/api/auth/keys", {"name": "sync bot", "prds": [inside["id"]]}).json()["key"]
    with YClient(stack.ws_url, inside["id"], key, name="bot") as bot:
        bot.append("written by a bot")
        bot.flush()
    assert "written by a bot" in _markdown(alice, inside["id"])
    try:
        YClient(stack.ws_url, outside["id"], key, name="bot-outside").connect(timeout=15)
    except Exception as exc:
        assert "403" in str(exc), exc
    else:
        raise AssertionError("a key limited to another PRD opened this one")
