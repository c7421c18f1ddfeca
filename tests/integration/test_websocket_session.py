"""WebSocket session through the local gateway: the upgrade is refused without read access."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from scripts.localstack.stack import LocalStack
from tests.integration.fixtures import Api

pytestmark = pytest.mark.integration


def ws_url(stack: LocalStack, prd_id: str, token: str | None) -> str:
    query = f"prd={prd_id}" + (f"&token={token}" if token is not None else "")
    return f"{stack.ws_url}?{query}"


def refused_status(url: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        connect(url, open_timeout=20).close()
    return int(info.value.response.status_code)


def test_upgrade_without_token_is_401(stack: LocalStack, shared_prd: dict[str, Any]) -> None:
    assert refused_status(ws_url(stack, shared_prd["id"], None)) == 401
    assert refused_status(ws_url(stack, shared_prd["id"], "forged.token.value")) == 401


def test_upgrade_without_read_access_is_403(stack: LocalStack, dave: Api, shared_prd: dict[str, Any]) -> None:
    assert refused_status(ws_url(stack, shared_prd["id"], dave.token)) == 403
    assert refused_status(ws_url(stack, "01jd0000000000000000000000", dave.token)) == 403


def answer(ws: Any) -> dict[str, Any]:
    """The next frame that answers the client, past unsolicited notices (a PRD created a moment ago
    gets its v1.0.0 and a ``version-created`` notice whenever VersionFunction gets to it)."""
    while True:
        frame: dict[str, Any] = json.loads(ws.recv(timeout=20))
        if frame.get("action") != "notice":
            return frame


def test_a_viewer_connects_pings_and_bad_frames_get_error_frames(
    stack: LocalStack, carol: Api, shared_prd: dict[str, Any]
) -> None:
    with connect(ws_url(stack, shared_prd["id"], carol.token), open_timeout=20) as ws:
        ws.send(json.dumps({"action": "ping", "id": 7}))
        assert answer(ws) == {"action": "pong", "id": 7}
        for frame, code in (("not json", "invalid_json"), ("[1]", "invalid_frame"),
                            (json.dumps({"action": "dance"}), "unknown_action")):
            ws.send(frame)
            reply = answer(ws)
            assert reply["action"] == "error" and reply["code"] == code
        ws.send(json.dumps({"action": "ping", "id": 8}))  # the session survived the bad frames
        assert answer(ws)["id"] == 8
