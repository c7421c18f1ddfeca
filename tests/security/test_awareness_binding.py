"""Presence is bound to the connection: names and colours come from the verified identity, a
connection speaks only for its own client ids, and frames are capped."""

from __future__ import annotations

from typing import Any

from prdtool.collab.presence import PALETTE
from prdtool.collab.protocol import AwarenessEntry, encode_awareness, encode_message
from scripts.localstack.stack import LocalStack
from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api, login


def _shared(alice: Api, title: str) -> str:
    created = alice.post("/api/prds", {"title": title, "markdown": f"# {title}\n"})
    assert created.status_code == 201, created.text
    prd_id = str(created.json()["id"])
    assert alice.put(f"/api/prds/{prd_id}/members/bob", {"role": "editor"}).status_code == 200
    return prd_id


def _awareness(client: YClient, entries: list[AwarenessEntry], ack: str | None = None) -> None:
    client._send(encode_message(encode_awareness(entries)), ack_id=ack)


def test_a_spoofed_name_and_a_style_injection_never_reach_a_peer(stack: LocalStack, alice: Api) -> None:
    prd_id = _shared(alice, "Spoofing")
    with YClient(stack.ws_url, prd_id, login(stack, "alice")["access_token"], name="alice") as a, \
            YClient(stack.ws_url, prd_id, login(stack, "bob")["access_token"], name="bob") as b:
        evil: dict[str, Any] = {"user": {"name": "alice", "color": "red;background:url(//evil)"},
                                "cursor": {"anchor": 3}, "onclick": "steal()"}
        _awareness(b, [AwarenessEntry(b.doc.client_id, 1, evil)])
        a.wait_until(lambda: b.doc.client_id in a.awareness, what="bob's presence")
        seen = a.awareness[b.doc.client_id]
        assert seen["user"]["name"] == "bob"
        assert seen["user"]["color"] in PALETTE
        assert seen["user"]["colorLight"] == seen["user"]["color"] + "33"
        assert seen["cursor"] == {"anchor": 3}  # the fields a client may set survive
        assert "onclick" not in seen


def test_a_connection_cannot_speak_for_another_client(stack: LocalStack, alice: Api) -> None:
    prd_id = _shared(alice, "Hijack")
    with YClient(stack.ws_url, prd_id, login(stack, "alice")["access_token"], name="alice") as a, \
            YClient(stack.ws_url, prd_id, login(stack, "bob")["access_token"], name="bob") as b, \
            YClient(stack.ws_url, prd_id, login(stack, "alice")["access_token"], name="watcher") as c:
        a.set_presence({"cursor": {"anchor": 1}})
        c.wait_until(lambda: a.doc.client_id in c.awareness, what="alice's presence")
        # bob tries to remove alice's presence (a null state at a newer clock) and to move her cursor
        _awareness(b, [AwarenessEntry(a.doc.client_id, 50, None)])
        _awareness(b, [AwarenessEntry(a.doc.client_id, 51, {"cursor": {"anchor": 99}})])
        b.wait_until(lambda: sum(e.get("code") == "awareness_client" for e in b.errors) >= 2,
                     what="awareness_client errors")
        _awareness(b, [AwarenessEntry(b.doc.client_id, 1, {"status": "marker"})])
        c.wait_until(lambda: c.awareness.get(b.doc.client_id, {}).get("status") == "marker", what="bob's marker")
        assert c.awareness[a.doc.client_id]["cursor"] == {"anchor": 1}
        # A newcomer asks who is here (query awareness): the server answers from what it recorded.
        with YClient(stack.ws_url, prd_id, login(stack, "alice")["access_token"], name="newcomer") as d:
            d.send_raw('{"action":"y","data":"Aw=="}')
            d.wait_until(lambda: a.doc.client_id in d.awareness and b.doc.client_id in d.awareness,
                         what="both presences")
            assert d.awareness[a.doc.client_id]["cursor"] == {"anchor": 1}
            assert d.awareness[a.doc.client_id]["user"]["name"] == "alice"
            assert d.awareness[b.doc.client_id]["user"]["name"] == "bob"


def test_awareness_frames_are_capped(stack: LocalStack, alice: Api) -> None:
    prd_id = _shared(alice, "Caps")
    with YClient(stack.ws_url, prd_id, login(stack, "bob")["access_token"], name="bob") as b:
        many = [AwarenessEntry(b.doc.client_id + k + 1, 1, {"cursor": None}) for k in range(5)]
        _awareness(b, many, ack="many")
        b.wait_until(lambda: any(e.get("id") == "many" and e.get("code") == "bad_awareness" for e in b.errors),
                     what="bad_awareness for 5 entries")
        huge = {"cursor": {"anchor": "x" * 8000}}
        with YClient(stack.ws_url, prd_id, login(stack, "alice")["access_token"], name="alice") as a:
            _awareness(b, [AwarenessEntry(b.doc.client_id, 2, huge)])
            a.wait_until(lambda: b.doc.client_id in a.awareness, what="bob's presence")
            assert a.awareness[b.doc.client_id] == {"user": a.awareness[b.doc.client_id]["user"]}
            assert a.awareness[b.doc.client_id]["user"]["name"] == "bob"
