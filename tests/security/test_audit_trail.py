"""The audit trail of a scripted session, captured by the real middleware and WebSocket hooks.

A person works through the HTTP API and the WebSocket; the audit query (through the queue, the
batched writer and the index) returns every state-changing action, in order, with the right
fields, and no token, password or API key anywhere.
"""

from __future__ import annotations

import json
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


# ----------------------------------------------------------------------------- hostile input (hardening item 1)
def _anonymous_entries(admin: Api, since_ms: int, predicate: Any, expected: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        entries = admin.get(f"/api/audit?user=anonymous&since={since_ms}&limit=1000").json()["entries"]
        found = [e for e in entries if predicate(e)]
        if len(found) >= expected:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{len(found)} of {expected} anonymous audit entries arrived: {found}")


def test_a_lone_surrogate_cannot_hold_back_other_peoples_entries(stack: LocalStack, admin: Api) -> None:
    """``{"username": "\\ud800"}`` is valid JSON but not UTF-8: refused (422), audited as safe text,
    and the entries batched with it are stored at once, not after the queue's visibility timeout."""
    ensure_user(stack, "ruth")
    ruth = Api(stack.base_url, login(stack, "ruth")["access_token"])
    started_ms = int(time.time() * 1000)
    created: list[str] = []
    # Interleaved, within the writer's 5 s batching window, so bad and good entries share batches.
    for n in range(3):
        bad = requests.post(f"{stack.base_url}/api/auth/login", data='{"username": "\\ud800"}',
                            headers={"content-type": "application/json"}, timeout=30)
        assert bad.status_code == 422, bad.text
        for _ in range(2):
            created.append(ruth.post("/api/prds", {"title": f"Batched with a surrogate {n}"}).json()["id"])
    for prd_id in created:  # each within a minute, far below the queue's 180 s visibility timeout
        (entry,) = _entries(admin, 1, resource=f"prd/{prd_id}")
        assert entry["action"] == "POST /api/prds" and entry["actor"] == "ruth"
    bad_entries = _anonymous_entries(admin, started_ms, lambda e: e["action"] == "POST /api/auth/login"
                                     and e["status"] == 422 and "\\ud800" in json.dumps(e["changes"]), expected=3)
    assert all(e["changes"] == {"claimed_username": "\\ud800"} for e in bad_entries), bad_entries
    day = time.strftime("%Y-%m-%d", time.gmtime(started_ms / 1000))
    verified = admin.get(f"/api/audit/verify?date={day}").json()
    assert verified["ok"] is True, verified["problems"]


def test_a_failed_login_is_anonymous_with_the_name_only_claimed(stack: LocalStack, admin: Api) -> None:
    started_ms = int(time.time() * 1000)
    refused = requests.post(f"{stack.base_url}/api/auth/login",
                            json={"username": "alice", "password": "not-her-password"}, timeout=30)
    assert refused.status_code == 401
    (entry,) = _anonymous_entries(admin, started_ms, lambda e: e["action"] == "POST /api/auth/login"
                                  and e["status"] == 401 and e["changes"].get("claimed_username") == "alice")
    assert entry["actor"] == "anonymous" and entry["changes"] == {"claimed_username": "alice",
                                                                  "password": "[redacted]"}
    as_alice = admin.get(f"/api/audit?user=alice&since={started_ms}").json()["entries"]
    assert not [e for e in as_alice if e["action"] == "POST /api/auth/login" and e["status"] == 401], \
        "a failed sign-in is not recorded as alice's action"


def test_bodies_in_other_encodings_are_audited_as_the_api_decoded_them(stack: LocalStack, admin: Api) -> None:
    """The API reads a UTF-8 BOM and UTF-16 JSON (json.loads of bytes); the trail must read the same."""
    ensure_user(stack, "sven")
    sven = Api(stack.base_url, login(stack, "sven")["access_token"])
    prd = sven.post("/api/prds", {"title": "Encodings"}).json()["id"]
    titles = {"utf-8-sig": "Renamed behind a BOM", "utf-16-le": "Renamed in UTF-16 \u00e9\u00e8",
              "utf-16": "Renamed in UTF-16 with a BOM \u2603"}
    for encoding, title in titles.items():
        body = json.dumps({"title": title}, ensure_ascii=False).encode(encoding)
        changed = sven.request("PATCH", f"/api/prds/{prd}", data=body, headers={"content-type": "application/json"})
        assert changed.status_code == 200, (encoding, changed.text)
        assert sven.get(f"/api/prds/{prd}").json()["title"] == title, "the API decoded it"
    entries = _entries(admin, 1 + len(titles), resource=f"prd/{prd}")
    patches = [e for e in entries if e["action"] == "PATCH /api/prds/{id}"]
    assert [e["changes"] for e in patches] == [{"title": t} for t in titles.values()]
