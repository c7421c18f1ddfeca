"""The search engine interface, and the parts of ranking and filtering every engine shares.

Two engines implement :class:`SearchEngine`: :class:`prdtool.search.local.LocalSearchEngine` (tantivy +
numpy, embedded, for the local stack and tests) and, in AWS, an OpenSearch engine (next increment).
``tests/contract/test_search_engine.py`` holds both to the same behaviour.

Semantics every engine keeps:

- ``upsert_prd`` *replaces* a PRD's current sections, ``add_version`` *replaces* one version's
  sections: both are idempotent, so an indexing worker may apply an event twice or out of a retry.
- Permission (:class:`Filters`) is part of the engine's query — a term filter on ``members`` (and on
  ``prd_id`` for an API key's scope) applied *before* ranking, in text and vector search alike.  A
  PRD the caller may not read is never scored, so it can neither appear nor push a readable PRD out
  of the top ``limit``.
- Results are **one hit per PRD version**: its best section (so ten sections of one PRD cannot fill
  a page).  Text mode ranks by BM25, semantic mode by cosine similarity, hybrid mode by reciprocal
  rank fusion (:func:`reciprocal_rank_fusion`, k = 60) of the two section rankings, fused *before*
  the per-PRD collapse so a section that both rankings like wins over two different ones.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .model import ANY_VERSION, SearchHit, SearchQuery, SectionDoc

#: The constant of reciprocal rank fusion (Cormack et al. 2009; OpenSearch's default too).
RRF_K = 60
#: Sections fetched from each ranking per requested hit, before fusion and the per-PRD collapse.
CANDIDATES_PER_HIT = 5
MIN_CANDIDATES = 50


@runtime_checkable
class SearchEngine(Protocol):
    """What the indexing worker and the search route need from an engine."""

    name: str  # "tantivy+numpy (embedded)", "opensearch", … — logged and shown in health/stats

    def upsert_prd(self, sections: Sequence[SectionDoc]) -> None:
        """Replace the PRD's current (``version == ""``) sections with ``sections`` (one PRD, at least
        one section: :func:`prdtool.search.model.section_docs` always gives one)."""
        ...

    def add_version(self, sections: Sequence[SectionDoc]) -> None:
        """Index (or re-index) one version of a PRD: every section has the same ``prd_id`` and the
        same non-empty ``version``; the version's previous sections are replaced."""
        ...

    def delete_prd(self, prd_id: str) -> None:
        """Remove the PRD and all its versions (idempotent)."""
        ...

    def set_members(self, prd_id: str, members: Iterable[str]) -> None:
        """Who may find the PRD from now on (every version); a removed member stops finding it as soon
        as this returns (local engine) or after the engine's refresh interval (OpenSearch: ~1 s)."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Group the changes made inside the block (one commit / one bulk request): they become
        searchable together when it ends, and none is kept if it raises.  The indexing worker wraps
        each SQS batch in one; outside a batch every change is its own."""
        ...

    def search(self, query: SearchQuery) -> list[SearchHit]:
        """At most ``query.limit`` hits, best first, only from PRDs the caller may read."""
        ...

    def count(self) -> int:
        """Section documents indexed (all PRDs, all versions)."""
        ...

    def stats(self) -> dict[str, object]:
        """Engine name, documents, PRDs, vectors, size on disk … (for health and benchmarks)."""
        ...


# ----------------------------------------------------------------------------- filters
@dataclass(frozen=True)
class Filters:
    """The restrictions of a query, as every engine must apply them inside its query."""

    readers: frozenset[str] | None  # the PRD must list one of these as a member; None: no restriction
    prd_ids: frozenset[str] | None  # an API key's scope; None: any PRD
    versions: frozenset[str] | None  # "" = current; None: any version
    owner: str | None
    updated_after: int | None  # epoch ms, exclusive
    section_terms: frozenset[str] | None  # see model.section_terms

    def admits(self, doc: SectionDoc) -> bool:
        """The reference semantics (what an engine's query must be equivalent to), for tests and for
        engines that filter in their own code before ranking."""
        return (
            (self.readers is None or not self.readers.isdisjoint(doc.members))
            and (self.prd_ids is None or doc.prd_id in self.prd_ids)
            and (self.versions is None or doc.version in self.versions)
            and (self.owner is None or doc.owner == self.owner)
            and (self.updated_after is None or doc.updated_at > self.updated_after)
            and (self.section_terms is None or not self.section_terms.isdisjoint(doc.section_terms))
        )


def filters_of(query: SearchQuery) -> Filters:
    if query.version is None:
        versions: frozenset[str] | None = frozenset({""})
    elif query.version == ANY_VERSION:
        versions = None
    else:
        versions = frozenset({query.version})
    terms = query.section_terms
    return Filters(
        readers=None if query.sees_everything else frozenset({query.username}),
        prd_ids=frozenset(query.prd_scope) if query.prd_scope else None,
        versions=versions,
        owner=query.owner,
        updated_after=query.updated_after,
        section_terms=frozenset(terms) if terms else None,
    )


def candidates(limit: int) -> int:
    """How many sections to take from a ranking for ``limit`` hits (before the per-PRD collapse)."""
    return max(MIN_CANDIDATES, limit * CANDIDATES_PER_HIT)


# ----------------------------------------------------------------------------- ranking
def reciprocal_rank_fusion[K: Hashable](rankings: Sequence[Sequence[K]], k: int = RRF_K) -> list[tuple[K, float]]:
    """Fuse rankings (each best first, without duplicates) by reciprocal rank: an item scores the sum
    of ``1 / (k + rank)`` (rank from 1) over the rankings it appears in.  Best first; ties keep the
    order of first appearance (earlier ranking, better rank)."""
    scores: dict[K, float] = {}
    for ranking in rankings:
        seen: set[K] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: position for position, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))


def label_matches(hits: Sequence[SearchHit], text_keys: Iterable[str], vector_keys: Iterable[str]) -> list[SearchHit]:
    """Each hit's ``match``: found by the text ranking ("words"), only by the vector ranking
    ("meaning"), or both — from the section keys each ranking returned."""
    from dataclasses import replace

    words, meaning = set(text_keys), set(vector_keys)
    return [replace(hit, match="both" if hit.key in words and hit.key in meaning
                    else "meaning" if hit.key in meaning and hit.key not in words else "words") for hit in hits]


def best_per_group[T](ranked: Iterable[T], group: Callable[[T], Hashable], limit: int) -> list[T]:
    """The first (best) item of each group, in ranked order, at most ``limit``."""
    seen: set[Hashable] = set()
    kept: list[T] = []
    for item in ranked:
        key = group(item)
        if key in seen:
            continue
        seen.add(key)
        kept.append(item)
        if len(kept) >= limit:
            break
    return kept


def check_prd_sections(sections: Sequence[SectionDoc], *, version: bool) -> str:
    """The PRD id of a batch given to ``upsert_prd`` (``version=False``) or ``add_version``; raises
    ValueError when the batch is empty, mixes PRDs or versions, or has the wrong kind of version."""
    if not sections:
        raise ValueError("no sections: a PRD always has at least one (see model.section_docs)")
    prd_id, ver = sections[0].prd_id, sections[0].version
    if any(s.prd_id != prd_id or s.version != ver for s in sections):
        raise ValueError("sections of several PRDs or versions in one call")
    if version and not ver:
        raise ValueError("add_version needs sections with a version")
    if not version and ver:
        raise ValueError("upsert_prd takes the current sections (version ''); use add_version")
    if len({s.index for s in sections}) != len(sections):
        raise ValueError("two sections with the same index")
    return prd_id
