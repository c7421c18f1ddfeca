"""Search on the local stack (issue #18): the bus rule → SearchQueue → the indexing worker → the
embedded engine shared by the functions' processes → ``GET /api/search``, with real logins, real Yjs
edits and real versions.  Relevance on the 211-PRD corpus is tests/unit/test_search_local.py; the
worker's failure cases are tests/unit/test_search_indexer.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api

MODES = ("text", "semantic", "hybrid")


def word() -> str:
    """A word no other test's PRD holds (letters only: one token in every analyzer)."""
    return "zq" + "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])


def query(api: Api, params: dict[str, Any]) -> Any:
    return api.get("/api/search?" + urlencode(params))


def search(api: Api, q: str, **params: Any) -> list[dict[str, Any]]:
    response = query(api, {"q": q, **params})
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def until(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)


def found(api: Api, q: str, prd_id: str, **params: Any) -> bool:
    return any(r["prdId"] == prd_id for r in search(api, q, **params))


def new_prd(api: Api, title: str, body: str) -> str:
    created = api.post("/api/prds", {"title": title, "markdown": f"# {title}\n\n{body}"})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_a_new_prd_is_found_in_every_mode_with_its_word_highlighted(alice: Api) -> None:
    secret = word()
    prd_id = new_prd(alice, "Loyalty points", f"## Risks\n\nPoints could be farmed by {secret} bots.\n")
    until(lambda: found(alice, secret, prd_id, mode="text"), "the new PRD is searchable")
    for mode in ("text", "hybrid"):
        hits = search(alice, secret, mode=mode)
        assert hits and hits[0]["prdId"] == prd_id and hits[0]["match"] in ("words", "both"), (mode, hits)
    # by meaning: a made-up word means nothing to the model, the section's own sentence does
    hits = search(alice, f"Points could be farmed by {secret} bots.", mode="semantic")
    assert hits[0]["prdId"] == prd_id and hits[0]["match"] == "meaning", hits
    status = alice.get(f"/api/prds/{prd_id}").json()["search"]
    assert status["indexedAt"] and status["error"] is None
    best = search(alice, secret, mode="text")[0]
    assert (best["title"], best["section"], best["version"]) == ("Loyalty points", "Risks", "")
    assert [s["text"] for s in best["snippet"] if s["highlight"]] == [secret]
    # typing: the prefix of the word finds it already
    assert search(alice, secret[:6], mode="text")[0]["prdId"] == prd_id


def test_only_readers_find_a_prd_and_a_removed_member_stops_finding_it(alice: Api, bob: Api, carol: Api) -> None:
    secret = word()
    prd_id = new_prd(alice, "Salary bands", f"## Problem\n\nBands are {secret} confidential.\n")
    until(lambda: found(alice, secret, prd_id), "alice finds her PRD")
    for mode in MODES:
        assert not found(bob, secret, prd_id, mode=mode) and not found(carol, secret, prd_id, mode=mode)
    assert alice.put(f"/api/prds/{prd_id}/members/carol", {"role": "viewer"}).status_code == 200
    until(lambda: found(carol, secret, prd_id), "a new viewer finds it", timeout=15)
    assert not found(bob, secret, prd_id, mode="hybrid")
    removed_at = time.monotonic()
    assert alice.delete(f"/api/prds/{prd_id}/members/carol").status_code == 204
    until(lambda: all(not found(carol, secret, prd_id, mode=m) for m in MODES), "carol stops finding it",
          timeout=15)
    assert time.monotonic() - removed_at < 15


def test_a_deleted_prd_disappears(alice: Api) -> None:
    secret = word()
    prd_id = new_prd(alice, "Doomed", f"## Goals\n\nRetire the {secret} service.\n")
    until(lambda: found(alice, secret, prd_id), "indexed")
    assert alice.delete(f"/api/prds/{prd_id}").status_code == 204
    until(lambda: all(not found(alice, secret, prd_id, mode=m) for m in MODES), "the deleted PRD is gone",
          timeout=15)


def test_an_edit_is_searchable_and_older_versions_say_what_they_said(
        alice: Api, client_factory: Callable[..., YClient], prd: dict[str, Any]) -> None:
    old, new = word(), word()
    client = client_factory("alice")
    client.append(f"\n## Pricing\n\nA flat {old} fee per order.\n")
    until(lambda: found(alice, old, prd["id"]), "the edit is searchable")
    saved = alice.post(f"/api/prds/{prd['id']}/versions", {"name": "priced"})
    assert saved.status_code == 201, saved.text
    version = saved.json()["version"]
    text = client.content()
    start = text.index(old)
    client.delete(start, len(old))
    client.insert(start, new)
    # (text mode: a semantic ranking always has a nearest section, whatever the words)  The version
    # was indexed moments ago, so this edit waits for the PRD's next indexing slot
    # (SEARCH_INDEX_INTERVAL, 20 s) after the save (about 5 s).
    until(lambda: found(alice, new, prd["id"], mode="text") and not found(alice, old, prd["id"], mode="text"),
          "the current text changed", timeout=45)
    until(lambda: found(alice, old, prd["id"], version=version, mode="text"), f"v{version} is searchable")
    for mode, q in (("text", old), ("hybrid", old), ("semantic", f"A flat {old} fee per order.")):
        hit = search(alice, q, version=version, mode=mode)[0]
        assert (hit["prdId"], hit["version"], hit["section"]) == (prd["id"], version, "Pricing"), mode
    assert {r["version"] for r in search(alice, old, version="*", mode="text") if r["prdId"] == prd["id"]} == {
        version}


@pytest.mark.parametrize(("params", "status", "code"), [
    ({"q": ""}, 422, "empty_query"),
    ({"q": "   "}, 422, "empty_query"),
    ({"q": "x" * 501}, 413, "query_too_long"),
    ({"q": "pricing", "mode": "fuzzy"}, 422, "invalid_mode"),
    ({"q": "pricing", "version": "latest"}, 422, "invalid_version"),
    ({"q": "pricing", "limit": "0"}, 422, "invalid_limit"),
    ({"q": "pricing", "limit": "51"}, 422, "invalid_limit"),
    ({"q": "pricing", "scope": "all"}, 422, "invalid_scope"),
])
def test_bad_searches_get_a_clear_error(bob: Api, params: dict[str, str], status: int, code: str) -> None:
    response = query(bob, params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("q", ['title:(a OR "b', "AND * ~2 \\", "*", "[x TO y]", "a^3 OR b!", "((((", "😀 \x00 ✓",
                               '"unclosed phrase', "-pricing +risks", "/regex.*/"])
def test_engine_syntax_is_text_never_an_error(bob: Api, q: str) -> None:
    for mode in MODES:
        response = query(bob, {"q": q, "mode": mode})
        assert response.status_code == 200, (q, mode, response.text)
        assert isinstance(response.json()["results"], list)


def test_search_needs_a_login(anonymous: Api) -> None:
    response = query(anonymous, {"q": "pricing"})
    assert response.status_code == 401
