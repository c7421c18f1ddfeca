"""Open WebSockets lose their rights at the moment the rights go: deleted PRD, lowered role,
revoked API key, expired token.  Each ends (or downgrades) the session with a notice, then a close,
and nothing sent after the change is stored."""

from __future__ import annotations

import time
from typing import Any

import pytest

from scripts.localstack.stack import LocalStack
from tests.e2e.storage import bound_to
from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api, login
from tests.security import forge


def _prd(alice: Api, title: str, *, bob_role: str = "editor") -> dict[str, Any]:
    created = alice.post("/api/prds", {"title": title, "markdown": f"# {title}\n\n"})
    assert created.status_code == 201, created.text
    prd = dict(created.json())
    assert alice.put(f"/api/prds/{prd['id']}/members/bob", {"role": bob_role}).status_code == 200
    return prd


def _stored_markdown(stack: LocalStack, prd_id: str) -> str:
    """What the document store holds (also for a deleted PRD, which the API no longer shows)."""
    from prdtool.collab import document, store

    with bound_to(stack):
        return document.markdown_of(store.read(prd_id).doc)


def _closed(client: YClient, timeout: float = 15) -> bool:
    """Whether the server closed the client's socket (the reader thread ends when it does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client._reader is not None and not client._reader.is_alive():
            return True
        time.sleep(0.05)
    return False


def _notice(client: YClient, kind: str) -> dict[str, Any]:
    client.wait_until(lambda: any(n.get("type") == kind for n in client.notices), what=f"{kind} notice")
    return next(n for n in client.notices if n.get("type") == kind)


def test_deleting_a_prd_closes_its_sessions_and_stores_nothing_after(stack: LocalStack, alice: Api) -> None:
    prd = _prd(alice, "Deleted while open")
    bob = YClient(stack.ws_url, prd["id"], login(stack, "bob")["access_token"], name="bob").connect()
    try:
        bob.append("kept ")
        bob.flush()
        assert alice.delete(f"/api/prds/{prd['id']}").status_code == 204
        assert _notice(bob, "prd-deleted")["prd"] == prd["id"]
        bob.append("after the delete")  # whatever reaches the server now must not be stored
        assert _closed(bob), "the server closed the connection to the deleted PRD"
    finally:
        bob.close()
    time.sleep(1)
    stored = _stored_markdown(stack, prd["id"])
    assert "kept" in stored
    assert "after the delete" not in stored


def test_a_lowered_role_closes_the_editing_session_at_once(stack: LocalStack, alice: Api) -> None:
    prd = _prd(alice, "Lowered")
    bob = YClient(stack.ws_url, prd["id"], login(stack, "bob")["access_token"], name="bob").connect()
    try:
        bob.append("before ")
        bob.flush()
        assert alice.put(f"/api/prds/{prd['id']}/members/bob", {"role": "viewer"}).status_code == 200
        assert _notice(bob, "role-changed")["role"] == "viewer"
        bob.append("after")  # sent right after the change: no waiting for a recheck window
        assert _closed(bob), "a session that lost the right to edit is closed (the client reconnects as viewer)"
    finally:
        bob.close()
    markdown = str(alice.get(f"/api/prds/{prd['id']}").json()["markdown"])
    assert "before" in markdown
    assert "after" not in markdown
    # Reconnecting gives a read-only session: updates are refused.
    with YClient(stack.ws_url, prd["id"], login(stack, "bob")["access_token"], name="bob-again") as again:
        again.append("as a viewer")
        again.wait_until(lambda: any(e.get("code") == "read_only" for e in again.errors), what="read_only")
    assert "as a viewer" not in str(alice.get(f"/api/prds/{prd['id']}").json()["markdown"])


def test_a_revoked_api_key_ends_its_listening_sessions(stack: LocalStack, alice: Api, bob: Api) -> None:
    prd = _prd(alice, "Key revoked")
    created = bob.post("/api/auth/keys", {"name": "listener", "prds": [prd["id"]]})
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    listener = YClient(stack.ws_url, prd["id"], key, name="listener").connect()
    try:
        time.sleep(1.5)  # the sync handshake is over: from now on the listener sends nothing
        assert bob.delete(f"/api/auth/keys/{key_id}").status_code == 204
        # The key's socket only listens: it must be told and closed without sending anything.
        assert _notice(listener, "session-ended")["reason"] == "revoked"
        assert _closed(listener)
        with YClient(stack.ws_url, prd["id"], login(stack, "alice")["access_token"], name="alice") as writer:
            writer.append("secret after revocation")
            writer.flush()
        time.sleep(1)
        assert "secret after revocation" not in listener.content()
    finally:
        listener.close()


def test_an_expired_token_ends_the_session(stack: LocalStack, alice: Api) -> None:
    prd = _prd(alice, "Expiring")
    lifetime = 8
    def short_lived() -> str:
        return forge.sign(forge.claims_for(stack, "bob", exp=int(time.time()) + lifetime))

    bob = YClient(stack.ws_url, prd["id"], short_lived(), name="bob-expiring").connect()
    listener = YClient(stack.ws_url, prd["id"], short_lived(), name="bob-listening").connect()
    try:
        bob.append("while valid ")
        bob.flush()
        time.sleep(lifetime + 1)
        # The listener sends nothing: it must not receive edits made after its token expired.
        with YClient(stack.ws_url, prd["id"], login(stack, "alice")["access_token"], name="alice") as writer:
            writer.append("after expiry")
            writer.flush()
        assert _notice(listener, "session-expired")
        assert _closed(listener)
        assert "after expiry" not in listener.content()
        # The sender's next frame is refused by closing: nothing it sends is stored.
        bob.append("sent with an expired token")
        assert _notice(bob, "session-expired")
        assert _closed(bob)
    finally:
        bob.close()
        listener.close()
    markdown = str(alice.get(f"/api/prds/{prd['id']}").json()["markdown"])
    assert "while valid" in markdown
    assert "sent with an expired token" not in markdown


@pytest.mark.parametrize("role", ["viewer"])
def test_a_raised_role_keeps_the_session(stack: LocalStack, alice: Api, role: str) -> None:
    prd = _prd(alice, "Raised", bob_role=role)
    with YClient(stack.ws_url, prd["id"], login(stack, "bob")["access_token"], name="bob") as bob:
        assert alice.put(f"/api/prds/{prd['id']}/members/bob", {"role": "editor"}).status_code == 200
        assert _notice(bob, "role-changed")["role"] == "editor"
        assert not _closed(bob, timeout=1)
        bob.append("now an editor")
        bob.flush(timeout=30)
    assert "now an editor" in str(alice.get(f"/api/prds/{prd['id']}").json()["markdown"])


def test_a_role_change_whose_notice_was_missed_is_told_by_the_recheck(stack: LocalStack, alice: Api) -> None:
    """A notice sent while the client was reconnecting reaches nobody; the recheck tells it."""
    from prdtool.prds.models import MemberModel

    prd = _prd(alice, "Missed notice", bob_role="viewer")
    with YClient(stack.ws_url, prd["id"], login(stack, "bob")["access_token"], name="bob") as bob:
        with bound_to(stack):  # the change without any notice, as if it had been lost
            MemberModel(prd["id"], "bob").update(actions=[MemberModel.role.set("editor")])
        time.sleep(5.5)  # past the longest a container trusts its last check (ws_recheck_seconds)
        bob.send_raw('{"action":"ping","id":1}')
        assert _notice(bob, "role-changed")["role"] == "editor"
        bob.append("told by the recheck")
        bob.flush(timeout=30)
    assert "told by the recheck" in str(alice.get(f"/api/prds/{prd['id']}").json()["markdown"])
