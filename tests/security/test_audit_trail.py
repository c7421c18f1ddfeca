"""The audit trail of a scripted session, captured by the real middleware and WebSocket hooks.

A person works through the HTTP API and the WebSocket; the audit query (through the queue, the
batched writer and the index) returns every state-changing action, in order, with the right
fields, and no token, password or API key anywhere.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from scripts.localstack.stack import LocalStack
from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api, ensure_user, login


def _entries(admin: Api, expected: int, **params: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={requests.utils.quote(v)}" for k, v in params.items())
    deadline = time.monotonic() + 60
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = admin.get(f"/api/audit?{query}")
        assert response.status_code == 200, response.text
        entries = response.json()["entries"]
        if len(entries) >= expected:
            return entries
        time.sleep(0.5)
    raise AssertionError(f"{len(entries)} of {expected} audit entries arrived: {entries}")


def test_a_scripted_session_is_audited_in_order(stack: LocalStack, admin: Api) -> None:
    ensure_user(stack, "quinn")
    started_ms = int(time.time() * 1000)
    session = login(stack, "quinn")
    quinn = Api(stack.base_url, session["access_token"])
    quinn.session.headers["user-agent"] = "audit-script/1.0"

    prd = quinn.post("/api/prds", {"title": "Audited"}).json()
    path = f"/api/prds/{prd['id']}"
    steps: list[tuple[str, str, int]] = []  # (action, resource, status), in the order performed

    def did(response: requests.Response, action: str, resource: str) -> None:
        steps.append((action, resource, response.status_code))

    steps.append(("POST /api/prds", f"prd/{prd['id']}", 201))
    did(quinn.patch(path, {"title": "Audited, renamed"}), "PATCH /api/prds/{id}", f"prd/{prd['id']}")
    did(quinn.put(f"{path}/members/bob", {"role": "editor"}), "PUT /api/prds/{id}/members/{username}",
        f"prd/{prd['id']}")
    did(quinn.patch(path, {"title": ""}), "PATCH /api/prds/{id}", f"prd/{prd['id']}")  # a refused change: 422
    key = quinn.post("/api/auth/keys", {"name": "audit bot"})
    did(key, "POST /api/auth/keys", f"apikey/{key.json()['id']}")
    did(quinn.delete(f"/api/auth/keys/{key.json()['id']}"), "DELETE /api/auth/keys/{key_id}",
        f"apikey/{key.json()['id']}")
    with YClient(stack.ws_url, prd["id"], session["access_token"], name="quinn") as client:
        client.append("typed live")
        client.flush()
    steps.append(("websocket.connect", f"prd/{prd['id']}", 200))
    steps.append(("websocket.disconnect", f"prd/{prd['id']}", -1))
    # $disconnect runs after the socket closed: let it land before the next action.
    deadline = time.monotonic() + 30
    while not any(e["action"] == "websocket.disconnect"
                  for e in admin.get(f"/api/audit?user=quinn&since={started_ms}").json()["entries"]):
        assert time.monotonic() < deadline, "no websocket.disconnect entry"
        time.sleep(0.3)
    did(quinn.delete(f"{path}/members/bob"), "DELETE /api/prds/{id}/members/{username}", f"prd/{prd['id']}")
    did(quinn.post("/api/auth/logout"), "POST /api/auth/logout", "auth")

    entries = _entries(admin, len(steps) + 1, user="quinn", since=str(started_ms))  # + the sign-in
    login_entries = [e for e in entries if e["action"] == "POST /api/auth/login"]
    assert login_entries and login_entries[0]["status"] == 200, "the sign-in is audited under the person's name"
    work = [e for e in entries if e["action"] != "POST /api/auth/login"]
    assert [(e["action"], e["resource"]) for e in work] == [(a, r) for a, r, _ in steps]
    for entry, (_, _, status) in zip(work, steps, strict=True):
        if status != -1:
            assert entry["status"] == status, entry
        assert entry["actor"] == "quinn"
        assert entry["ip"] == "127.0.0.1"
        assert started_ms <= entry["at"] <= int(time.time() * 1000)
        assert entry["duration_ms"] >= 0
        assert entry["channel"] == ("websocket" if entry["action"].startswith("websocket") else "http")
        if entry["channel"] == "http":
            assert entry["user_agent"] == "audit-script/1.0"
            assert entry["path"].startswith("/api/")
    assert [e["at"] for e in work] == sorted(e["at"] for e in work)
    assert work[1]["changes"] == {"title": "Audited, renamed"}
    assert work[2]["changes"] == {"role": "editor"}
    assert work[3]["status"] == 422

    # Nothing secret anywhere in the trail.
    everything = admin.get(f"/api/audit?user=quinn&since={started_ms}").text
    for secret in (session["access_token"], session["refresh_token"], key.json()["key"], "demo-password"):
        assert secret not in everything
    # The PRD's owner sees its entries (its creation included); others do not.
    owner = Api(stack.base_url, login(stack, "quinn")["access_token"])
    owner_view = _entries(owner, len(steps) - 3, resource=f"prd/{prd['id']}")
    assert owner_view[0]["action"] == "POST /api/prds" and owner_view[0]["actor"] == "quinn"
    bob = Api(stack.base_url, login(stack, "bob")["access_token"])
    assert bob.get(f"/api/audit?resource=prd/{prd['id']}").status_code in (403, 404)
