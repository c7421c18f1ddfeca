"""The AWS search engine: OpenSearch (BM25 text search, faiss k-NN vectors) behind the same
:class:`~prdtool.search.engine.SearchEngine` interface as the embedded engine, ranking the same way.

**Targets.**  On an OpenSearch Service *domain* (OpenSearch 2.9 or later: faiss efficient k-NN
filtering) the engine keeps every guarantee of the interface.  It also runs on an OpenSearch
*Serverless* vector search collection, with weaker guarantees that come from what Serverless does not
offer (its API table, "Supported operations and plugins in Amazon OpenSearch Serverless"):

- a vector search collection refuses custom document ids (``PUT <index>/_doc/<id>``, ``_create``,
  ``_update`` are for search collections only): documents get server-generated ids, so a replace
  deletes the old documents by the ids a search found and indexes new ones (on a domain ``_id`` is
  :attr:`SectionDoc.key` and a replace overwrites);
- no ``refresh`` (neither the API nor the parameter) and no ``_delete_by_query``/``_update_by_query``
  (404), no ``_stats``; writes become searchable after Serverless's own delay.  A change finds the
  documents to replace with a search, so a change made within that delay of an earlier one to the
  same PRD misses the earlier one's documents: stale sections (or, after ``set_members``, documents
  with the old members — a removed member could still find them) remain until the PRD's next change.
  ``refresh=True`` is refused there for that reason, and the contract suite needs a domain.

On a domain every bulk request waits for a refresh (``refresh=wait_for``, at most the index's 1 s
refresh interval) whatever ``refresh`` says: the same lookup-by-search must see the previous change,
or a member removed a second after an edit would keep finding that edit's documents.

**Index.**  One index ``<prefix>-sections``, one document per :class:`SectionDoc` (fields ``key``,
``prd_id``, ``version``, ``index``, ``heading``, ``level``, ``text``, ``title``, ``owner``,
``members``, ``status``, ``tags``, ``updated_at``, ``section_terms``, ``embedding``), strict mapping,
created on first use (:meth:`OpenSearchEngine.ensure_index`: nothing is sent from the constructor, so
making an engine in a Lambda's init never fails on the network).  The embedder's ``model_id``,
``dim`` and the schema version are recorded in the mapping's ``_meta`` and checked when the index is
first used: vectors of another model are refused (:class:`IndexMismatch`), not silently compared.

Analyzers mirror the embedded engine's (:mod:`.local`): ``prd_fold`` (letters, digits and marks,
lowercase, ASCII folding: ``résumé`` = ``resume``, ``Straße`` = ``strasse``) on ``title``, ``heading``,
``text``; ``prd_stem`` (the same plus the Snowball English stemmer) on ``stem``, copied from title,
heading, text and tags; ``prd_cjk`` (character uni- and bigrams) on ``cjk_head``/``cjk_body``, filled
only for text with Chinese/Japanese/Korean characters, so ``微信`` is found in ``我们需要微信支付``.
Embeddings are a faiss HNSW ``knn_vector`` with ``innerproduct`` on unit vectors (= cosine; faiss is
what Serverless vector collections use, and cosine on faiss needs 2.19); an all-zero vector (a blank
passage, or ``SEARCH_EMBEDDER=none``) is left out, so such a section is found by its words only.

**Queries.**  The user's text never reaches a query parser: it is split by
:func:`prdtool.search.model.parse_text` and :func:`analyze` into words, CJK runs and quoted phrases,
each sent as the text of a ``match``/``match_phrase``/``match_bool_prefix`` query or a ``term``,
never ``query_string`` (where ``title:``, ``AND`` or an unbalanced ``(`` would be syntax).  As in the
embedded engine: each word is a ``dis_max`` over title and heading (boost 1.2), text (1.0), the
stemmed field (0.6), its typos (edit distance 1 from 5 letters, 2 from 9; 0.4) and, for the last word
and ``word*``, its prefix (0.6); a section must match :func:`enough` of the words; phrases are
required; stopwords count only in a query made of nothing else.  The permission and other filters
(:func:`prdtool.search.engine.filters_of`) are ``bool.filter`` clauses of the text query and the
``filter`` *inside* the ``knn`` clause, so a PRD the caller may not read is never scored.

Text and vector rankings come from one ``_msearch`` and are fused in Python
(:func:`~prdtool.search.engine.reciprocal_rank_fusion`) before the per-PRD collapse, like the
embedded engine, with no search pipeline.  The hits kept are then read in one more search (their
fields, and snippets from the ``unified`` highlighter with private markers that become
``(text, highlighted)`` segments).  Scores: BM25, cosine similarity (from faiss's inner-product score),
or the fusion score.

Connection failures, timeouts, 429 and 5xx become :class:`~prdtool.errors.DependencyFailed` (503,
``search_unavailable``); a bulk request's refused documents raise :class:`BulkError` with the first
reason (or ``DependencyFailed`` when all were rejected for load).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opensearchpy import AWSV4SignerAuth, OpenSearch, RequestsHttpConnection, helpers
from opensearchpy.exceptions import ConnectionError as TransportConnectionError
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

from ..errors import DependencyFailed
from ..observability import logger
from .analysis import (
    CJK_BOOSTS,
    CJK_RUN,
    FUZZY_BOOST,
    PHRASE_BOOST,
    PREFIX_BOOST,
    STEM_BOOST,
    STOPWORDS,
    TIE_BREAKER,
    enough,
    fuzzy_distance,
    grams,
    has_cjk,
)
from .embeddings import Embedder, embed_sections
from .engine import (
    Filters,
    best_per_group,
    candidates,
    check_prd_sections,
    filters_of,
    label_matches,
    reciprocal_rank_fusion,
)
from .model import (
    SNIPPET_CHARS,
    Mode,
    ParsedText,
    SearchHit,
    SearchQuery,
    SectionDoc,
    Segment,
    leading_snippet,
    passage_text,
    segments_from_ranges,
)

if TYPE_CHECKING:
    import numpy as np

ENGINE_NAME = "opensearch"
SCHEMA_VERSION = 1
FOLD, STEM, CJK = "prd_fold", "prd_stem", "prd_cjk"
#: Field boosts of a word, and the weights of its other forms — the embedded engine's (local.py).
BOOSTS = {"title": 1.2, "heading": 1.2, "text": 1.0}
#: Caps that keep a query under Lucene's 1,024 clauses: words (each up to 4 exact/stemmed clauses and
#: 2 x 3 fuzzy/prefix ones of at most MAX_EXPANSIONS terms), CJK bigrams (2 clauses each), phrases.
MAX_QUERY_WORDS = 12
MAX_QUERY_GRAMS = 64
MAX_QUERY_PHRASES = 8
MAX_EXPANSIONS = 10
#: Highlight markers: Unicode noncharacters, reserved for internal use, so text never holds them.
MARK_ON, MARK_OFF = "\ufdd0", "\ufdd1"
#: Documents of a PRD read per request when a change looks them up (paged with ``search_after``).
PRD_PAGE = 1_000
BULK_ACTIONS = 500
BULK_BYTES = 5 * 1024 * 1024  # well under Serverless's and a small domain's request limits
BULK_TIMEOUT = 60  # seconds: a bulk request waits for a refresh on a domain
#: Fields a lookup reads to decide what a change replaces (the full source when it rewrites).
_LIGHT = ("key", "version", "members")
#: Fields a hit needs.
_HIT_FIELDS = ["key", "prd_id", "version", "index", "heading", "title", "text", "updated_at"]
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

#: Letters ASCII folding spells differently from their decomposition (Lucene's ASCIIFoldingFilter).
_FOLD_EXTRA = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d",
                             "þ": "th", "\u0131": "i", "\u017f": "s"})  # dotless i, long s
_MAX_TOKEN = 39  # the analyzers drop longer tokens (the embedded engine's remove_long(40))


class IndexMismatch(RuntimeError):
    """The index was made for another embedding model, dimension or schema."""


class BulkError(RuntimeError):
    """OpenSearch refused documents of a bulk request; the message gives the first reason."""


def index_body(embedder: Embedder) -> dict[str, Any]:
    """Settings and mappings of ``<prefix>-sections``."""
    keyword = {"type": "keyword"}
    return {
        "settings": {
            "index": {"knn": True},
            "analysis": {
                "tokenizer": {
                    "prd_words": {"type": "pattern", "pattern": "[^\\p{L}\\p{N}\\p{M}]+"},
                    "prd_grams": {"type": "ngram", "min_gram": 1, "max_gram": 2},
                },
                "filter": {
                    "prd_long": {"type": "length", "max": _MAX_TOKEN},
                    "prd_english": {"type": "stemmer", "language": "porter2"},
                },
                "analyzer": {
                    FOLD: {"type": "custom", "tokenizer": "prd_words",
                           "filter": ["prd_long", "lowercase", "asciifolding"]},
                    STEM: {"type": "custom", "tokenizer": "prd_words",
                           "filter": ["prd_long", "lowercase", "asciifolding", "prd_english"]},
                    CJK: {"type": "custom", "tokenizer": "prd_grams", "filter": ["lowercase"]},
                },
            },
        },
        "mappings": {
            "dynamic": "strict",
            "_meta": {"prdtool": {"schema": SCHEMA_VERSION, "embedder": embedder.model_id, "dim": embedder.dim}},
            "properties": {
                "key": keyword, "prd_id": keyword, "version": keyword, "owner": keyword, "status": keyword,
                "members": keyword, "section_terms": keyword,
                "tags": {"type": "keyword", "copy_to": "stem"},
                "index": {"type": "integer"}, "level": {"type": "integer"}, "updated_at": {"type": "long"},
                "title": {"type": "text", "analyzer": FOLD, "copy_to": "stem"},
                "heading": {"type": "text", "analyzer": FOLD, "copy_to": "stem"},
                "text": {"type": "text", "analyzer": FOLD, "copy_to": "stem"},
                "stem": {"type": "text", "analyzer": STEM},
                "cjk_head": {"type": "text", "analyzer": CJK},
                "cjk_body": {"type": "text", "analyzer": CJK},
                "embedding": {
                    "type": "knn_vector", "dimension": embedder.dim,
                    "method": {"name": "hnsw", "engine": "faiss", "space_type": "innerproduct",
                               "parameters": {"m": 16, "ef_construction": 128}},
                },
            },
        },
    }


def _document(doc: SectionDoc, dim: int) -> dict[str, Any]:
    """A section as the index stores it (``_source``)."""
    source: dict[str, Any] = {
        "key": doc.key, "prd_id": doc.prd_id, "version": doc.version, "index": int(doc.index),
        "heading": doc.heading, "level": int(doc.level), "text": doc.text, "title": doc.title,
        "owner": doc.owner, "members": sorted(doc.members), "status": doc.status, "tags": list(doc.tags),
        "updated_at": int(doc.updated_at), "section_terms": list(doc.section_terms),
    }
    if doc.embedding is not None:
        vector = [float(value) for value in doc.embedding.ravel()]
        if len(vector) != dim:
            raise ValueError(f"a {len(vector)}-dim embedding for a {dim}-dim index")
        if any(vector):
            source["embedding"] = vector
    if has_cjk(doc.title) or has_cjk(doc.heading):
        source["cjk_head"] = f"{doc.title}\n{doc.heading}"
    if has_cjk(doc.text):
        source["cjk_body"] = doc.text
    return source


# ----------------------------------------------------------------------------- query text
@dataclass(frozen=True)
class _Word:
    text: str  # one token as typed: the index's analyzer folds it
    prefix: bool
    fuzzy: int


@dataclass(frozen=True)
class _Terms:
    """What a query's text asks for (see local.py's ``_Terms``)."""

    words: tuple[_Word, ...]  # optional, scored; at least enough() of them (and the CJK runs) must match
    cjk: tuple[tuple[str, ...], ...]  # uni/bigrams of each CJK run among the words
    phrases: tuple[str, ...]  # quoted text without its CJK runs (required)
    cjk_phrases: tuple[tuple[str, ...], ...]  # uni/bigrams of the CJK runs inside quotes (required)


def _tokens(text: str) -> list[str]:
    """Runs of letters, digits and marks — the ``prd_words`` tokenizer — without the long ones."""
    tokens: list[str] = []
    current: list[str] = []
    for char in f"{text} ":
        if unicodedata.category(char)[0] in "LNM":
            current.append(char)
        elif current:
            if len(current) <= _MAX_TOKEN:
                tokens.append("".join(current))
            current = []
    return tokens


def fold(token: str) -> str:
    """Lowercase without accents, as ``prd_fold`` makes it (near enough to decide stopwords, repeats
    and typo distance; the index's analyzer, not this, decides what matches)."""
    decomposed = unicodedata.normalize("NFKD", token.lower().translate(_FOLD_EXTRA))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def analyze(parsed: ParsedText) -> _Terms:
    found: dict[str, _Word] = {}  # folded token -> the word sent
    cjk: list[tuple[str, ...]] = []
    for word in parsed.words:
        runs = CJK_RUN.findall(word.text)
        tokens = _tokens(CJK_RUN.sub(" ", word.text))
        for position, token in enumerate(tokens):
            folded = fold(token)
            prefix = word.prefix and position == len(tokens) - 1 and len(folded) >= 2 and not runs
            known = found.get(folded)
            if known is None:
                found[folded] = _Word(token, prefix, fuzzy_distance(folded))
            elif prefix and not known.prefix:
                found[folded] = _Word(known.text, True, known.fuzzy)
        cjk.extend(grams(run) for run in runs)
    if cjk or any(folded not in STOPWORDS for folded in found):  # stopwords count only when alone
        found = {folded: word for folded, word in found.items() if folded not in STOPWORDS}
    phrases: list[str] = []
    cjk_phrases: list[tuple[str, ...]] = []
    for phrase in parsed.phrases:
        latin = " ".join(CJK_RUN.sub(" ", phrase).split())
        if _tokens(latin):
            phrases.append(latin)
        cjk_phrases.extend(grams(run) for run in CJK_RUN.findall(phrase))
    # Lucene refuses a query of more than 1,024 leaf clauses after rewriting (fuzzy and prefix terms
    # expand): a long question keeps its first words and CJK bigrams (the embedded engine has no such
    # limit, so only queries beyond these caps rank differently there).
    words = tuple(found.values())[:MAX_QUERY_WORDS]
    budget, kept_cjk = MAX_QUERY_GRAMS, []
    for run_grams in cjk:
        if budget <= 0:
            break
        kept_cjk.append(run_grams[:budget])
        budget -= len(run_grams)
    return _Terms(words, tuple(kept_cjk), tuple(phrases[:MAX_QUERY_PHRASES]), tuple(cjk_phrases[:MAX_QUERY_PHRASES]))


# ----------------------------------------------------------------------------- query building
def _word_query(word: _Word) -> dict[str, Any]:
    """One word in any text field: exact, stemmed, within its typo distance or as a prefix; the best
    of these counts, plus a tenth of the others (``dis_max``, like the embedded engine)."""
    alternatives: list[dict[str, Any]] = [{"match": {name: {"query": word.text, "boost": boost}}}
                                          for name, boost in BOOSTS.items()]
    alternatives.append({"match": {"stem": {"query": word.text, "boost": STEM_BOOST}}})
    if word.fuzzy:
        alternatives += [{"match": {name: {"query": word.text, "fuzziness": word.fuzzy, "prefix_length": 0,
                                           "fuzzy_transpositions": True, "max_expansions": MAX_EXPANSIONS,
                                           "boost": FUZZY_BOOST}}}
                         for name in BOOSTS]
    if word.prefix:
        alternatives += [{"match_bool_prefix": {name: {"query": word.text, "max_expansions": MAX_EXPANSIONS,
                                                       "boost": PREFIX_BOOST}}}
                         for name in BOOSTS]
    return {"dis_max": {"queries": alternatives, "tie_breaker": TIE_BREAKER}}


def _cjk_query(grams: Sequence[str], *, strict: bool) -> dict[str, Any]:
    """A CJK run: its bigrams (all when ``strict``, else three quarters) in the head or body field."""
    clauses = [{"bool": {"should": [{"term": {name: {"value": gram, "boost": boost}}}
                                    for name, boost in CJK_BOOSTS.items()]}}
               for gram in dict.fromkeys(grams)]
    need = len(clauses) if strict else max(1, (3 * len(clauses) + 3) // 4)
    return {"bool": {"should": clauses, "minimum_should_match": need}}


def _phrase_query(phrase: str) -> dict[str, Any]:
    return {"bool": {"should": [{"match_phrase": {name: {"query": phrase, "boost": boost * PHRASE_BOOST}}}
                                for name, boost in BOOSTS.items()]}}


def text_query(terms: _Terms) -> dict[str, Any] | None:
    """The scoring part of a text search, or None when the text holds nothing searchable."""
    optional = [_word_query(word) for word in terms.words] + [_cjk_query(g, strict=False) for g in terms.cjk]
    required = [_phrase_query(p) for p in terms.phrases] + [_cjk_query(g, strict=True) for g in terms.cjk_phrases]
    if required:  # the phrases decide what matches; the other words only add to the score
        return {"bool": {"must": required, "should": optional}} if optional else {"bool": {"must": required}}
    if not optional:
        return None
    if len(optional) == 1:
        return optional[0]
    return {"bool": {"should": optional, "minimum_should_match": enough(len(optional))}}


def filter_clauses(filters: Filters) -> list[dict[str, Any]]:
    """The restrictions of a query as filter clauses (no score), for ``bool.filter`` and ``knn.filter``."""
    clauses: list[dict[str, Any]] = []
    if filters.readers is not None:
        clauses.append({"terms": {"members": sorted(filters.readers)}})
    if filters.prd_ids is not None:
        clauses.append({"terms": {"prd_id": sorted(filters.prd_ids)}})
    if filters.versions is not None:
        clauses.append({"terms": {"version": sorted(filters.versions)}})
    if filters.owner is not None:
        clauses.append({"term": {"owner": filters.owner}})
    if filters.updated_after is not None:
        clauses.append({"range": {"updated_at": {"gt": int(filters.updated_after)}}})
    if filters.section_terms is not None:
        clauses.append({"terms": {"section_terms": sorted(filters.section_terms)}})
    return clauses


def _highlight(terms: _Terms) -> dict[str, Any] | None:
    """Snippet settings: the words and phrases in ``text``, the CJK bigrams in ``cjk_body`` (each field
    with its own highlight query, so a Latin word never lights up bigrams); None when nothing can."""
    fields: dict[str, Any] = {}
    marks: list[dict[str, Any]] = []
    for word in terms.words:
        options: dict[str, Any] = {"query": word.text}
        if word.fuzzy:
            options |= {"fuzziness": word.fuzzy, "prefix_length": 0}
        marks.append({"match": {"text": options}})
        if word.prefix:
            marks.append({"match_bool_prefix": {"text": {"query": word.text}}})
    marks += [{"match_phrase": {"text": {"query": phrase}}} for phrase in terms.phrases]
    if marks:
        fields["text"] = {"highlight_query": {"bool": {"should": marks}}}
    grams = sorted({gram for run in (*terms.cjk, *terms.cjk_phrases) for gram in run})
    if grams:
        fields["cjk_body"] = {"highlight_query": {"bool": {"should": [{"term": {"cjk_body": g}} for g in grams]}}}
    if not fields:
        return None
    return {"type": "unified", "pre_tags": [MARK_ON], "post_tags": [MARK_OFF], "fragment_size": SNIPPET_CHARS,
            "number_of_fragments": 1, "no_match_size": 0, "fields": fields}


def _snippet(highlight: dict[str, list[str]], text: str) -> tuple[Segment, ...]:
    """The first highlighted fragment (CJK first, as the embedded engine) as plain-text segments, "…"
    where it cuts the text; the start of the text when nothing is highlighted (a semantic hit)."""
    for name in ("cjk_body", "text"):
        fragments = highlight.get(name) or []
        if fragments:
            segments = _segments(fragments[0], text)
            if segments:
                return segments
    return leading_snippet(text)


def _segments(fragment: str, text: str) -> tuple[Segment, ...]:
    plain: list[str] = []
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for char in fragment:
        if char == MARK_ON:
            start = len(plain) if start is None else start
        elif char == MARK_OFF:
            if start is not None:
                ranges.append((start, len(plain)))
            start = None
        else:
            plain.append(char)
    if not ranges:
        return ()
    flat = "".join(plain)
    segments = list(segments_from_ranges(flat, ranges))
    at = text.find(flat)
    if at > 0 and text[:at].strip():
        segments.insert(0, ("… ", False))
    if at >= 0 and text[at + len(flat):].strip():
        segments.append((" …", False))
    return tuple((" ".join(part.split("\n")), marked) for part, marked in segments)


def _cosine(score: float) -> float:
    """The inner product behind faiss's ``innerproduct`` score (``1 + ip`` when positive, else
    ``1 / (1 - ip)``): the cosine similarity of unit vectors."""
    return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score


# ----------------------------------------------------------------------------- connection
def _region_of(host: str) -> str | None:
    """``search-x.eu-west-1.es.amazonaws.com`` / ``id.eu-west-1.aoss.amazonaws.com`` → ``eu-west-1``."""
    labels = host.split(".")
    return labels[-4] if len(labels) >= 5 else None


def connect(endpoint: str, *, service: str = "es", region: str | None = None) -> tuple[OpenSearch, bool]:
    """A client for ``endpoint`` and whether it is Serverless.  An AWS endpoint
    (``*.es.amazonaws.com``, ``*.aoss.amazonaws.com``) gets SigV4 signing with the process's AWS
    credentials, for the service its host names (``service`` must agree: a mismatch would only show
    as 403s); any other URL is used as it is (``https://user:password@host`` for basic auth)."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"an OpenSearch endpoint is an http(s) URL, not {endpoint!r}")
    options: dict[str, Any] = {"timeout": 10, "max_retries": 2, "retry_on_timeout": True}
    if not host.endswith(".amazonaws.com"):  # Serverless is only ever *.aoss.amazonaws.com
        return OpenSearch(hosts=[endpoint], **options), False
    signing = "aoss" if host.endswith(".aoss.amazonaws.com") else "es"
    if parts.scheme != "https":
        raise ValueError("an AWS OpenSearch endpoint is https")
    if service != signing:
        raise ValueError(f"{host} is signed for {signing!r}, not {service!r} (SEARCH_SERVICE)")
    import boto3

    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise ValueError("no AWS credentials to sign OpenSearch requests with")
    where = region or _region_of(host) or session.region_name
    if not where:
        raise ValueError(f"no AWS region for {host}")
    client = OpenSearch(hosts=[{"host": host, "port": parts.port or 443}], use_ssl=True, verify_certs=True,
                        http_auth=AWSV4SignerAuth(credentials, where, signing),
                        connection_class=RequestsHttpConnection, pool_maxsize=16, **options)
    return client, signing == "aoss"


def _unavailable(what: str, status: object) -> DependencyFailed:
    return DependencyFailed(f"search is unavailable right now (OpenSearch {what}: {status}); try again shortly",
                            code="search_unavailable")


def _retryable(status: object) -> bool:
    return isinstance(status, int) and (status == 429 or status >= 500)


def _bulk_error(failed: Sequence[dict[str, Any]], total: int) -> Exception:
    op, info = next(iter(failed[0].items()))
    error = info.get("error")
    reason = f"{error.get('type')}: {error.get('reason')}" if isinstance(error, dict) else str(error)
    message = (f"OpenSearch refused {len(failed)} of {total} bulk actions; the first ({op} {info.get('_id')}, "
               f"status {info.get('status')}): {reason}")
    if all(_retryable(next(iter(item.values())).get("status")) for item in failed):
        return DependencyFailed(message, code="search_unavailable")
    return BulkError(message)


# ----------------------------------------------------------------------------- the engine
@dataclass(frozen=True)
class _Candidate:
    key: str
    score: float

    @property
    def group(self) -> tuple[str, str]:
        prd_id, version, _ = self.key.rsplit("/", 2)
        return prd_id, version


@dataclass
class _Change:
    """What the open batch writes for one PRD: the documents some of its versions must have after it
    (each replaces the version's stored documents), and whether every stored document goes."""

    wiped: bool = False
    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class OpenSearchEngine:
    """The OpenSearch engine (see the module documentation).  ``endpoint_or_client``: an endpoint URL
    (see :func:`connect`) or a ready :class:`opensearchpy.OpenSearch` (then ``service="aoss"`` says it
    is Serverless).  ``refresh=True``: every write is searchable when it returns — what a domain always
    does, and what Serverless cannot (refused)."""

    name = ENGINE_NAME

    def __init__(self, endpoint_or_client: str | OpenSearch, *, index_prefix: str, embedder: Embedder,
                 refresh: bool = False, service: str = "es", region: str | None = None) -> None:
        if service not in ("es", "aoss"):
            raise ValueError(f"service is es (a domain) or aoss (Serverless), not {service!r}")
        index = f"{index_prefix}-sections"
        if not _INDEX_NAME.match(index):
            raise ValueError(f"{index!r} is not an OpenSearch index name (lowercase letters, digits, . _ -)")
        if isinstance(endpoint_or_client, str):
            self._client, self.serverless = connect(endpoint_or_client, service=service, region=region)
        else:
            self._client, self.serverless = endpoint_or_client, service == "aoss"
        if refresh and self.serverless:
            raise ValueError("OpenSearch Serverless cannot make a write searchable on demand (no refresh): "
                             "refresh=True needs an OpenSearch domain")
        self.embedder = embedder
        self.index = index
        self._lock = threading.RLock()
        self._ready = False
        self._changes: dict[str, _Change] | None = None  # open during a change or a batch

    # -- set-up
    @contextlib.contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Requests to OpenSearch: unreachable, throttled or failing → 503 ``search_unavailable``."""
        try:
            yield
        except TransportConnectionError as exc:
            raise _unavailable(what, type(exc).__name__) from exc
        except TransportError as exc:
            if _retryable(exc.status_code):
                raise _unavailable(what, exc.status_code) from exc
            raise

    def ensure_index(self) -> None:
        """Create the index if it does not exist (idempotent, safe when two processes race) and check
        that an existing one was made for this embedder; called on first use."""
        with self._lock, self._calls("index set-up"):
            try:
                found = self._client.indices.get_mapping(index=self.index)
            except NotFoundError:
                try:
                    self._client.indices.create(index=self.index, body=index_body(self.embedder))
                except RequestError as exc:
                    if exc.error != "resource_already_exists_exception":
                        raise
                else:
                    self._announce("created")
                    self._ready = True
                    return
                found = self._client.indices.get_mapping(index=self.index)
            self._check(found)
            self._announce("opened")
            self._ready = True

    def _check(self, found: dict[str, Any]) -> None:
        first: dict[str, Any] = next(iter(found.values()), {})
        mappings = first.get("mappings", {})
        meta = mappings.get("_meta", {}).get("prdtool", {})
        dim = mappings.get("properties", {}).get("embedding", {}).get("dimension")
        if (meta.get("schema"), meta.get("embedder"), dim) != (SCHEMA_VERSION, self.embedder.model_id,
                                                               self.embedder.dim):
            raise IndexMismatch(
                f"the search index {self.index} holds {dim}-dim vectors of {meta.get('embedder')!r} (schema "
                f"{meta.get('schema')}); this engine embeds with {self.embedder.model_id!r} ({self.embedder.dim} "
                f"dimensions, schema {SCHEMA_VERSION}): vectors of different models cannot be compared — drop the "
                "index and re-index every PRD (prdtool.search.indexer.reindex)")

    def _announce(self, how: str) -> None:
        logger.info(f"search engine: OpenSearch, index {how}",
                    extra={"index": self.index, "serverless": self.serverless, "embedder": self.embedder.model_id})

    def _ensure(self) -> None:
        if not self._ready:
            self.ensure_index()

    def drop_indexes(self) -> None:
        """Delete the index (tests, or before a re-index with another embedder)."""
        with self._lock, self._calls("index deletion"):
            with contextlib.suppress(NotFoundError):
                self._client.indices.delete(index=self.index)
            self._ready = False

    # -- reads of stored documents
    def _stored(self, prd_id: str, fields: Sequence[str] | None,
                versions: Iterable[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``(_id, _source)`` of the PRD's documents as the index has them (``fields``: None = all), read
        a page at a time in ``key`` order (``search_after``: no limit on how many a PRD has)."""
        clauses: list[dict[str, Any]] = [{"term": {"prd_id": prd_id}}]
        if versions is not None:
            clauses.append({"terms": {"version": sorted(versions)}})
        found: list[tuple[str, dict[str, Any]]] = []
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"size": PRD_PAGE, "query": {"bool": {"filter": clauses}}, "sort": [{"key": "asc"}],
                                    "_source": True if fields is None else {"includes": list(fields)}}
            if after is not None:
                body["search_after"] = after
            with self._calls("lookup"):
                hits = self._client.search(index=self.index, body=body)["hits"]["hits"]
            found += [(str(hit["_id"]), hit.get("_source") or {}) for hit in hits]
            if len(hits) < PRD_PAGE:
                return found
            after = hits[-1]["sort"]

    def _view(self, prd_id: str, fields: Sequence[str] | None,
              versions: Iterable[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """The PRD's documents by version as they stand, the open batch's changes included (one per
        section key: Serverless may briefly hold two)."""
        wanted = None if versions is None else set(versions)
        change = self._changes.get(prd_id) if self._changes is not None else None
        by_version: dict[str, dict[str, dict[str, Any]]] = {}
        if change is None or not change.wiped:
            for _, source in self._stored(prd_id, fields, wanted):
                by_version.setdefault(str(source.get("version", "")), {})[str(source.get("key"))] = source
        view = {version: list(docs.values()) for version, docs in by_version.items()}
        if change is not None:
            view.update({v: docs for v, docs in change.versions.items() if wanted is None or v in wanted})
        return view

    def _rewritten(self, prd_id: str, versions: Sequence[str], members: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The documents of these versions with other members (all their fields, vectors included)."""
        return {version: [{**doc, "members": members} for doc in docs]
                for version, docs in self._view(prd_id, None, versions).items()}

    def stored_vectors(self, prd_id: str, versions: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The vectors of the PRD's indexed sections (of these versions, "" = current; None: every
        version) by sha256 of their passage text, so the indexing worker embeds only what changed."""
        import numpy as np

        self._ensure()
        found: dict[str, np.ndarray] = {}
        for _, source in self._stored(prd_id, ("title", "heading", "text", "embedding"),
                                      None if versions is None else set(versions)):
            if source.get("embedding"):
                passage = passage_text(source.get("title", ""), source.get("heading", ""), source.get("text", ""))
                digest = hashlib.sha256(passage.encode("utf-8")).hexdigest()
                found[digest] = np.asarray(source["embedding"], dtype=np.float32)
        return found

    # -- changes
    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, _Change]]:
        """One change, or every change of a :meth:`batch`: collected per PRD, written in one bulk
        request at the end; nothing is written if it raises."""
        with self._lock:
            if self._changes is not None:  # inside batch(): the outermost block writes
                yield self._changes
                return
            self._changes = {}
            try:
                yield self._changes
                self._write(self._changes)
            finally:
                self._changes = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group changes into one bulk request (an SQS batch of the indexing worker): searchable
        together when the block ends (on a domain), none of them sent if it raises."""
        with self._changing():
            yield

    def _write(self, changes: dict[str, _Change]) -> None:
        """The bulk actions of the changes: each PRD's new documents, then deletes of its stored
        documents that they replace and do not overwrite (all of them on Serverless: ids are the
        server's there)."""
        writes: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        for prd_id, change in changes.items():
            overwritten: set[str] = set()
            for docs in change.versions.values():
                for doc in docs:
                    action = {"_op_type": "index", "_index": self.index, "_source": doc}
                    if not self.serverless:
                        action["_id"] = doc["key"]
                        overwritten.add(doc["key"])
                    writes.append(action)
            for doc_id, source in self._stored(prd_id, ("version",)):
                if (change.wiped or source.get("version") in change.versions) and doc_id not in overwritten:
                    deletes.append({"_op_type": "delete", "_index": self.index, "_id": doc_id})
        self._bulk(writes + deletes)

    def _bulk(self, actions: list[dict[str, Any]]) -> None:
        if not actions:
            return
        options: dict[str, Any] = {} if self.serverless else {"refresh": "wait_for"}
        with self._calls("bulk"):
            _, errors = helpers.bulk(self._client, actions, chunk_size=BULK_ACTIONS, max_chunk_bytes=BULK_BYTES,
                                     raise_on_error=False, request_timeout=BULK_TIMEOUT, **options)
        failed = [item for item in errors if not ("delete" in item and item["delete"].get("status") == 404)]
        if failed:  # a delete of a document already gone is done; anything else is not
            raise _bulk_error(failed, len(actions))

    def _replace(self, sections: Sequence[SectionDoc], *, version: bool) -> None:
        prd_id = check_prd_sections(sections, version=version)
        self._ensure()
        sections = embed_sections(sections, self.embedder)
        members = sorted(sections[0].members)
        ver = sections[0].version
        documents = [_document(section.with_members(members), self.embedder.dim) for section in sections]
        with self._changing() as changes:
            others = [v for v, docs in self._view(prd_id, _LIGHT).items()  # members are PRD-wide
                      if v != ver and any(sorted(doc.get("members") or ()) != members for doc in docs)]
            rewritten = self._rewritten(prd_id, others, members) if others else {}
            change = changes.setdefault(prd_id, _Change())
            change.versions.update(rewritten)
            change.versions[ver] = documents

    def upsert_prd(self, sections: Sequence[SectionDoc]) -> None:
        self._replace(sections, version=False)

    def add_version(self, sections: Sequence[SectionDoc]) -> None:
        self._replace(sections, version=True)

    def delete_prd(self, prd_id: str) -> None:
        self._ensure()
        with self._changing() as changes:
            changes[prd_id] = _Change(wiped=True)

    def set_members(self, prd_id: str, members: Iterable[str]) -> None:
        wanted = sorted(set(members))
        self._ensure()
        with self._changing() as changes:
            stale = [v for v, docs in self._view(prd_id, _LIGHT).items()
                     if any(sorted(doc.get("members") or ()) != wanted for doc in docs)]
            if stale:  # nothing indexed (yet), or deleted: the next upsert brings its members
                changes.setdefault(prd_id, _Change()).versions.update(self._rewritten(prd_id, stale, wanted))

    # -- search
    def _msearch(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        if not bodies:
            return []
        lines: list[dict[str, Any]] = []
        for body in bodies:
            lines += [{}, body]
        with self._calls("search"):
            responses = self._client.msearch(index=self.index, body=lines)["responses"]
        for response in responses:
            if "error" in response:
                status, error = response.get("status"), response["error"]
                if _retryable(status):
                    raise _unavailable("search", status)
                reason = f"{error.get('type')}: {error.get('reason')}" if isinstance(error, dict) else error
                raise RuntimeError(f"OpenSearch refused a search ({status}): {reason}")
        return list(responses)

    def search(self, query: SearchQuery) -> list[SearchHit]:
        started = time.perf_counter()
        self._ensure()
        restrict = filter_clauses(filters_of(query))
        terms = analyze(query.parsed())
        count = candidates(query.limit)
        scoring = text_query(terms)
        bodies: list[dict[str, Any]] = []
        kinds: list[str] = []
        if query.mode is not Mode.SEMANTIC and scoring is not None:
            bodies.append({"size": count, "_source": ["key"], "track_total_hits": False,
                           "query": {"bool": {"must": [scoring], "filter": restrict}}})
            kinds.append("text")
        if query.mode is not Mode.TEXT:
            vector = [float(value) for value in self.embedder.embed_query(query.text).ravel()]
            if any(vector):
                knn: dict[str, Any] = {"vector": vector, "k": count}
                if restrict:
                    knn["filter"] = {"bool": {"filter": restrict}}
                bodies.append({"size": count, "_source": ["key"], "track_total_hits": False,
                               "query": {"knn": {"embedding": knn}}})
                kinds.append("vector")
        rankings: dict[str, list[_Candidate]] = {"text": [], "vector": []}
        for kind, response in zip(kinds, self._msearch(bodies), strict=True):
            rankings[kind] = [_Candidate(str(hit["_source"]["key"]), float(hit["_score"]) if kind == "text"
                                         else _cosine(float(hit["_score"]))) for hit in response["hits"]["hits"]]
        if query.mode is Mode.TEXT:
            ranked = rankings["text"]
        elif query.mode is Mode.SEMANTIC:
            ranked = rankings["vector"]
        else:
            fused = reciprocal_rank_fusion([[c.key for c in rankings["text"]], [c.key for c in rankings["vector"]]])
            ranked = [_Candidate(key, score) for key, score in fused]
        hits = label_matches(self._hits(best_per_group(ranked, lambda c: c.group, query.limit), terms, restrict),
                             (c.key for c in rankings["text"]), (c.key for c in rankings["vector"]))
        logger.debug("search", extra={"mode": query.mode.value, "hits": len(hits),
                                      "ms": round((time.perf_counter() - started) * 1000, 2)})
        return hits

    def _hits(self, best: Sequence[_Candidate], terms: _Terms,
              restrict: list[dict[str, Any]]) -> list[SearchHit]:
        """The kept candidates' fields and snippets, read again under the same filters (a PRD whose
        members changed since the ranking is not shown)."""
        if not best:
            return []
        keys = [candidate.key for candidate in best]
        body: dict[str, Any] = {"size": 2 * len(keys), "_source": _HIT_FIELDS,  # Serverless may hold two a key
                                "query": {"bool": {"filter": [{"terms": {"key": keys}}, *restrict]}}}
        highlight = _highlight(terms)
        if highlight is not None:
            body["highlight"] = highlight
        found: dict[str, dict[str, Any]] = {}
        for hit in self._msearch([body])[0]["hits"]["hits"]:
            found.setdefault(str(hit["_source"]["key"]), hit)
        hits: list[SearchHit] = []
        for candidate in best:
            hit = found.get(candidate.key)
            if hit is None:  # deleted, or no longer readable, since the ranking
                continue
            source = hit["_source"]
            text = str(source.get("text", ""))
            hits.append(SearchHit(
                prd_id=str(source["prd_id"]), title=str(source.get("title", "")), version=str(source["version"]),
                section=str(source.get("heading", "")), section_index=int(source.get("index", 0)),
                score=candidate.score, snippet=_snippet(hit.get("highlight") or {}, text),
                updated_at=int(source.get("updated_at", 0)),
            ))
        return hits

    # -- counts
    def count(self) -> int:
        self._ensure()
        with self._calls("count"):
            return int(self._client.count(index=self.index)["count"])

    def stats(self) -> dict[str, object]:
        """Documents, PRDs (a ``cardinality`` aggregation: exact below 40,000), index size from
        ``_cat/indices`` (which Serverless has, unlike ``_stats``)."""
        self._ensure()
        body = {"size": 0, "track_total_hits": True,
                "aggs": {"prds": {"cardinality": {"field": "prd_id", "precision_threshold": 40_000}}}}
        with self._calls("stats"):
            found = self._client.search(index=self.index, body=body)
            rows = self._client.cat.indices(index=self.index, format="json", bytes="b")
        row: dict[str, Any] = rows[0] if rows else {}
        size = row.get("pri.store.size") or row.get("store.size")
        return {
            "engine": self.name, "documents": int(found["hits"]["total"]["value"]),
            "prds": int(found["aggregations"]["prds"]["value"]), "bytes": int(size) if size else None,
            "index": self.index, "serverless": self.serverless, "embedder": self.embedder.model_id,
            "dim": self.embedder.dim,
        }
