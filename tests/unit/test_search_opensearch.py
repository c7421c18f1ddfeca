"""The OpenSearch engine (``prdtool.search.opensearch``) through the real opensearch-py client, against a
recording stand-in at the connection level (no OpenSearch can run here).

:class:`FakeOpenSearch` answers in OpenSearch's documented JSON shapes (bulk ``items`` with
``status``/``result``/``error``, ``_msearch`` ``responses``, ``index_not_found_exception``…): it keeps
the documents the engine writes and evaluates the engine's own filter clauses (``term``, ``terms``,
``range``) for lookups and for the final read of hits; text and vector *rankings* are canned per test.
With ``serverless=True`` it refuses what an OpenSearch Serverless vector collection refuses (a
document id on index, a ``refresh`` parameter) and names documents itself.

The tests assert the wire: the index mapping, the bulk NDJSON of each change, the query bodies of each
mode (filters inside ``bool`` and inside ``knn``, user text only as match/term text), the fusion of
canned rankings, snippets from highlights, and how failures surface.  The same engine against a real
endpoint is ``tests/contract/test_search_engine.py`` with ``PRDTOOL_CONTRACT_OPENSEARCH_URL``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from opensearchpy import Connection, OpenSearch
from opensearchpy.exceptions import ConnectionError as TransportConnectionError

from prdtool.errors import DependencyFailed
from prdtool.search.engine import SearchEngine, candidates
from prdtool.search.model import Mode, PrdMeta, SearchQuery, SectionDoc, leading_snippet, section_docs
from prdtool.search.opensearch import (
    MARK_OFF,
    MARK_ON,
    BulkError,
    IndexMismatch,
    OpenSearchEngine,
    analyze,
    index_body,
)

INDEX = "t-sections"
SHARDS = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}


# ----------------------------------------------------------------------------- the stand-in
@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    body: Any  # a JSON document, a list of them (NDJSON), or None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _admits(source: dict[str, Any], clause: dict[str, Any]) -> bool:
    """The engine's filter clauses, evaluated on a stored document."""
    ((kind, spec),) = clause.items()
    if kind == "bool":
        return all(_admits(source, inner) for inner in spec.get("filter", []))
    ((name, wanted),) = spec.items()
    values = _as_list(source.get(name))
    if kind == "term":
        return (wanted["value"] if isinstance(wanted, dict) else wanted) in values
    if kind == "terms":
        return any(value in wanted for value in values)
    if kind == "range":
        return all(value > wanted["gt"] for value in values)
    raise AssertionError(f"the fake does not evaluate {kind}")


def _project(source: dict[str, Any], wanted: Any) -> dict[str, Any]:
    if wanted is True:
        return dict(source)
    names = wanted["includes"] if isinstance(wanted, dict) else wanted
    return {name: source[name] for name in names if name in source}


class FakeOpenSearch:
    """One index's worth of OpenSearch, recording every request."""

    def __init__(self, *, serverless: bool = False) -> None:
        self.serverless = serverless
        self.calls: list[Call] = []
        self.created: dict[str, Any] | None = None  # the body the index was created with
        self.docs: dict[str, dict[str, Any]] = {}  # _id -> _source
        self.rankings: dict[str, list[tuple[str, float]]] = {"text": [], "vector": []}
        self.highlights: dict[str, dict[str, list[str]]] = {}  # key -> highlight of its hit
        self.item_results: dict[str, dict[str, Any]] = {}  # _id or key -> a bulk item's result
        self.answer_with: Callable[[Call], tuple[int, Any] | None] = lambda call: None
        self.down = False
        self._ids = 0

    # -- what tests read
    def requests(self, path_end: str) -> list[Call]:
        return [call for call in self.calls if call.path.endswith(path_end)]

    def bulk_actions(self) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
        """The last bulk request as (op, metadata, source) triples."""
        return _pairs(self.requests("/_bulk")[-1].body)

    def search_bodies(self) -> list[dict[str, Any]]:
        """The bodies of every _msearch, metadata lines left out."""
        return [body for call in self.requests("/_msearch") for body in call.body[1::2]]

    def keys(self) -> list[str]:
        return sorted(source["key"] for source in self.docs.values())

    # -- answering
    def handle(self, method: str, path: str, params: dict[str, str], body: Any) -> tuple[int, Any]:
        call = Call(method, path, params, body)
        self.calls.append(call)
        if self.down:
            raise TransportConnectionError("N/A", "connection refused", OSError("connection refused"))
        forced = self.answer_with(call)
        if forced is not None:
            return forced
        if self.created is None and path != f"/{INDEX}":
            return 404, {"error": {"root_cause": [{"type": "index_not_found_exception",
                                                   "reason": f"no such index [{INDEX}]"}],
                                   "type": "index_not_found_exception", "reason": f"no such index [{INDEX}]",
                                   "index": INDEX}, "status": 404}
        if path == f"/{INDEX}" and method == "PUT":
            self.created = body
            return 200, {"acknowledged": True, "shards_acknowledged": True, "index": INDEX}
        if path == f"/{INDEX}" and method == "DELETE":
            self.created, self.docs = None, {}
            return 200, {"acknowledged": True}
        if path == f"/{INDEX}/_mapping":
            assert self.created is not None
            return 200, {INDEX: {"mappings": self.created["mappings"]}}
        if path == "/_bulk":
            return self._bulk(params, body)
        if path == f"/{INDEX}/_search":
            return 200, self._search(body)
        if path == f"/{INDEX}/_msearch":
            return 200, {"took": 2, "responses": [self._ranked(query) for query in body[1::2]]}
        if path == f"/{INDEX}/_count":
            return 200, {"count": len(self.docs), "_shards": SHARDS}
        if path == f"/_cat/indices/{INDEX}":
            size = str(1000 * len(self.docs))
            return 200, [{"health": "green", "status": "open", "index": INDEX, "uuid": "u1", "pri": "1",
                          "rep": "0", "docs.count": str(len(self.docs)), "docs.deleted": "0",
                          "store.size": size, "pri.store.size": size}]
        raise AssertionError(f"unexpected request {method} {path}")

    def _bulk(self, params: dict[str, str], body: list[dict[str, Any]]) -> tuple[int, Any]:
        if self.serverless and "refresh" in params:
            return 400, {"error": {"type": "illegal_argument_exception", "reason": "refresh is not supported"},
                         "status": 400}
        items = []
        for op, meta, source in _pairs(body):
            assert meta["_index"] == INDEX
            doc_id = meta.get("_id")
            injected = self.item_results.get(doc_id or (source or {}).get("key", ""))
            if injected is not None:
                items.append({op: {"_index": INDEX, "_id": doc_id or "generated", **injected}})
                continue
            if op == "index" and self.serverless and doc_id is not None:
                items.append({op: {"_index": INDEX, "_id": doc_id, "status": 400, "error": {
                    "type": "illegal_argument_exception",
                    "reason": "Document ID is not supported in create/index operation request"}}})
                continue
            if op == "index":
                if doc_id is None:
                    self._ids += 1
                    doc_id = f"gen{self._ids}"
                created = doc_id not in self.docs
                self.docs[doc_id] = source or {}
                items.append({op: {"_index": INDEX, "_id": doc_id, "_version": 1,
                                   "result": "created" if created else "updated", "_shards": SHARDS,
                                   "_seq_no": len(self.docs), "_primary_term": 1, "status": 201 if created else 200}})
            else:
                assert op == "delete" and doc_id is not None
                found = self.docs.pop(doc_id, None) is not None
                items.append({op: {"_index": INDEX, "_id": doc_id, "_version": 2,
                                   "result": "deleted" if found else "not_found", "_shards": SHARDS,
                                   "_seq_no": 1, "_primary_term": 1, "status": 200 if found else 404}})
        errors = any("error" in item[op] for item in items for op in item)
        return 200, {"took": 3, "errors": errors, "items": items}

    def _hits(self, hits: list[dict[str, Any]]) -> dict[str, Any]:
        return {"took": 1, "timed_out": False, "_shards": SHARDS,
                "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": None, "hits": hits}}

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        if "aggs" in body:  # stats
            answer = self._hits([])
            answer["hits"]["total"]["value"] = len(self.docs)
            answer["aggregations"] = {"prds": {"value": len({s["prd_id"] for s in self.docs.values()})}}
            return answer
        clauses = body["query"]["bool"]["filter"]
        hits = [{"_index": INDEX, "_id": doc_id, "_score": 0.0, "_source": _project(source, body["_source"]),
                 "sort": [source["key"]]}
                for doc_id, source in self.docs.items() if all(_admits(source, c) for c in clauses)]
        if body.get("sort") == [{"key": "asc"}]:
            hits.sort(key=lambda hit: hit["sort"][0])
            if "search_after" in body:
                hits = [hit for hit in hits if hit["sort"][0] > body["search_after"][0]]
        return self._hits(hits[: body["size"]])

    def _ranked(self, body: dict[str, Any]) -> dict[str, Any]:
        query = body["query"]
        if "knn" in query or "must" in query.get("bool", {}):
            canned = self.rankings["vector" if "knn" in query else "text"]
            hits = [{"_index": INDEX, "_id": key, "_score": score, "_source": {"key": key}} for key, score in canned]
        else:  # the final read of the hits kept
            clauses = query["bool"]["filter"]
            hits = [{"_index": INDEX, "_id": doc_id, "_score": 0.0, "_source": _project(source, body["_source"]),
                     **({"highlight": self.highlights[source["key"]]} if source["key"] in self.highlights else {})}
                    for doc_id, source in self.docs.items() if all(_admits(source, c) for c in clauses)]
        answer = self._hits(hits)
        answer["status"] = 200
        return answer


def _pairs(lines: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    out: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
    position = 0
    while position < len(lines):
        ((op, meta),) = lines[position].items()
        position += 1
        source = None
        if op != "delete":
            source = lines[position]
            position += 1
        out.append((op, meta, source))
    return out


class FakeConnection(Connection):
    """The transport's connection class: hands each request to the stand-in, raises what a real
    connection raises for an error status."""

    def __init__(self, server: FakeOpenSearch, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = server

    def perform_request(self, method: str, url: str, params: Any = None, body: bytes | None = None,
                        timeout: Any = None, ignore: Any = (), headers: Any = None) -> Any:
        decoded = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in (params or {}).items()}
        parsed: Any = None
        if body:
            text = body.decode("utf-8")
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
        status, payload = self.server.handle(method, url, decoded, parsed)
        raw = json.dumps(payload)
        if not 200 <= status < 300 and status not in ignore:
            self._raise_error(status, raw, "application/json")
        return status, {"content-type": "application/json"}, raw


class FakeEmbedder:
    """Deterministic unit vectors of 4 values from a hash of the text."""

    model_id = "fake/4"
    dim = 4

    def _vector(self, text: str) -> np.ndarray:
        if not text.strip():
            return np.zeros(self.dim, dtype=np.float32)
        raw = np.frombuffer(hashlib.sha256(text.encode("utf-8")).digest()[: self.dim], dtype=np.uint8)
        vector = raw.astype(np.float32) + 1.0
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(f"query: {text}")

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(text) for text in texts]) if texts else np.zeros((0, self.dim), np.float32)


# ----------------------------------------------------------------------------- fixtures and helpers
def client_for(server: FakeOpenSearch) -> OpenSearch:
    return OpenSearch(hosts=[{"host": "fake", "port": 9200}], connection_class=FakeConnection, server=server,
                      max_retries=0)


def make(server: FakeOpenSearch, **options: Any) -> OpenSearchEngine:
    if server.serverless:
        options.setdefault("service", "aoss")
    return OpenSearchEngine(client_for(server), index_prefix="t", embedder=FakeEmbedder(), **options)


@pytest.fixture
def server() -> FakeOpenSearch:
    return FakeOpenSearch()


@pytest.fixture
def engine(server: FakeOpenSearch) -> OpenSearchEngine:
    return make(server)


def prd(prd_id: str, markdown: str, *, members: Sequence[str] = ("alice", "bob"), version: str = "",
        owner: str = "alice", updated_at: int = 1_000) -> list[SectionDoc]:
    title = markdown.splitlines()[0].lstrip("# ").strip()
    return section_docs(PrdMeta(prd_id, title, owner, frozenset(members), updated_at=updated_at), markdown,
                        version=version)


FOUR = "# Checkout\n\n## Problem\n\nCards are declined.\n\n## Risks\n\nChargebacks.\n\n## Timeline\n\nQ3.\n"
TWO = "# Checkout\n\n## Problem\n\nNothing about cards now.\n"


def query(text: str, mode: Mode = Mode.TEXT, user: str = "bob", **options: Any) -> SearchQuery:
    return SearchQuery(text=text, mode=mode, username=user, **options)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def texts(value: Any) -> Iterator[str]:
    """The strings a query looks for: the ``query`` of match queries, the ``value`` of term queries."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("query", "value") and isinstance(item, str):
                yield item
            else:
                yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


def names(value: Any) -> Iterator[str]:
    """Every key of a JSON body, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from names(item)
    elif isinstance(value, list):
        for item in value:
            yield from names(item)


# ----------------------------------------------------------------------------- the index
def test_the_engine_implements_the_interface_and_sends_nothing_until_used(server: FakeOpenSearch) -> None:
    engine = make(server)
    assert isinstance(engine, SearchEngine) and engine.name == "opensearch"
    assert server.calls == []


def test_the_index_is_made_on_first_use_with_its_mapping(server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    assert engine.count() == 0
    assert [(c.method, c.path) for c in server.calls] == [
        ("GET", f"/{INDEX}/_mapping"), ("PUT", f"/{INDEX}"), ("POST", f"/{INDEX}/_count")]
    body = server.created
    assert body is not None
    settings, mappings = body["settings"], body["mappings"]
    assert settings["index"]["knn"] is True
    analyzers = settings["analysis"]["analyzer"]
    assert analyzers["prd_fold"]["filter"][-2:] == ["lowercase", "asciifolding"]
    assert analyzers["prd_stem"]["filter"][-1] == "prd_english"
    assert settings["analysis"]["filter"]["prd_english"] == {"type": "stemmer", "language": "porter2"}
    assert settings["analysis"]["tokenizer"][analyzers["prd_cjk"]["tokenizer"]] == {
        "type": "ngram", "min_gram": 1, "max_gram": 2}
    assert mappings["dynamic"] == "strict"
    assert mappings["_meta"] == {"prdtool": {"schema": 1, "embedder": "fake/4", "dim": 4}}
    fields = mappings["properties"]
    assert fields["embedding"] == {"type": "knn_vector", "dimension": 4, "method": {
        "name": "hnsw", "engine": "faiss", "space_type": "innerproduct",
        "parameters": {"m": 16, "ef_construction": 128}}}
    for name in ("title", "heading", "text"):
        assert fields[name] == {"type": "text", "analyzer": "prd_fold", "copy_to": "stem"}
    assert fields["stem"]["analyzer"] == "prd_stem" and fields["cjk_body"]["analyzer"] == "prd_cjk"
    for name in ("key", "prd_id", "version", "owner", "members", "status", "section_terms"):
        assert fields[name] == {"type": "keyword"}
    assert fields["updated_at"] == {"type": "long"}

    engine.count()  # known now: no second look
    assert [c.path for c in server.calls[3:]] == [f"/{INDEX}/_count"]
    other = make(server)
    other.ensure_index()
    other.ensure_index()
    assert [(c.method, c.path) for c in server.calls[4:]] == [("GET", f"/{INDEX}/_mapping")] * 2  # no PUT


def test_two_processes_creating_the_index_at_once_both_go_on(server: FakeOpenSearch) -> None:
    engine = make(server)
    raced = False

    def already_exists(call: Call) -> tuple[int, Any] | None:
        nonlocal raced
        if call.method == "PUT" and not raced:  # the other process created it between our look and our PUT
            raced = True
            server.created = index_body(FakeEmbedder())
            return 400, {"error": {"root_cause": [], "type": "resource_already_exists_exception",
                                   "reason": f"index [{INDEX}/u1] already exists", "index": INDEX}, "status": 400}
        return None

    server.answer_with = already_exists
    engine.ensure_index()
    assert [(c.method, c.path) for c in server.calls] == [
        ("GET", f"/{INDEX}/_mapping"), ("PUT", f"/{INDEX}"), ("GET", f"/{INDEX}/_mapping")]


@pytest.mark.parametrize(("meta", "dim", "found"), [
    ({"schema": 1, "embedder": "bedrock/amazon.titan-embed-text-v2:0/512"}, 4, "titan"),
    ({"schema": 1, "embedder": "fake/4"}, 512, "512-dim"),
    ({"schema": 0, "embedder": "fake/4"}, 4, "schema 0"),
])
def test_an_index_made_for_another_model_is_refused(server: FakeOpenSearch, meta: dict[str, Any], dim: int,
                                                     found: str) -> None:
    server.created = {"mappings": {"_meta": {"prdtool": meta}, "properties": {"embedding": {"dimension": dim}}}}
    engine = make(server)
    with pytest.raises(IndexMismatch) as caught:
        engine.search(query("anything"))
    assert found in str(caught.value) and "'fake/4'" in str(caught.value) and "re-index" in str(caught.value)
    with pytest.raises(IndexMismatch):
        engine.upsert_prd(prd("p", FOUR))
    assert server.requests("/_bulk") == [] and server.requests("/_msearch") == []


def test_drop_indexes_deletes_the_index_and_the_next_use_makes_it_again(server: FakeOpenSearch,
                                                                         engine: OpenSearchEngine) -> None:
    engine.upsert_prd(prd("p", FOUR))
    engine.drop_indexes()
    engine.drop_indexes()  # already gone: fine
    assert [c.method for c in server.requests(f"/{INDEX}") if c.method == "DELETE"] == ["DELETE", "DELETE"]
    assert engine.count() == 0
    assert server.created is not None


# ----------------------------------------------------------------------------- writes
def test_an_upsert_is_one_bulk_of_documents_named_by_their_keys(server: FakeOpenSearch,
                                                                 engine: OpenSearchEngine) -> None:
    sections = prd("p1", "# Checkout 微信\n\n## Problem\n\nCards are declined.\n\n## 需求\n\n我们需要微信支付。\n")
    blank = SectionDoc(prd_id="p1", version="", index=3, heading="Empty", level=2, text="", title="Checkout 微信",
                       owner="alice", members=frozenset({"alice", "bob"}), embedding=np.zeros(4, dtype=np.float32))
    engine.upsert_prd([*sections, blank])
    lookup = server.requests("/_search")[0].body
    assert lookup["query"] == {"bool": {"filter": [{"term": {"prd_id": "p1"}}]}}
    bulk = server.requests("/_bulk")
    assert len(bulk) == 1 and bulk[0].params == {"refresh": "wait_for"}
    actions = server.bulk_actions()
    assert [(op, meta) for op, meta, _ in actions] == [
        ("index", {"_index": INDEX, "_id": f"p1/-/{n}"}) for n in range(4)]
    problem = actions[1][2]
    assert problem is not None
    assert {k: v for k, v in problem.items() if k != "embedding"} == {
        "key": "p1/-/1", "prd_id": "p1", "version": "", "index": 1, "heading": "Problem", "level": 2,
        "text": "Cards are declined.", "title": "Checkout 微信", "owner": "alice", "members": ["alice", "bob"],
        "status": "draft", "tags": [], "updated_at": 1_000, "section_terms": ["problem"],
        "cjk_head": "Checkout 微信\nProblem"}
    expected = FakeEmbedder().embed_passages([sections[1].passage()])[0]
    assert problem["embedding"] == pytest.approx([float(v) for v in expected])
    cjk = actions[2][2]
    assert cjk is not None and cjk["cjk_body"] == "我们需要微信支付。" and len(cjk["embedding"]) == 4
    assert "embedding" not in (actions[3][2] or {})  # a zero vector is left out (never scored)
    assert server.keys() == ["p1/-/0", "p1/-/1", "p1/-/2", "p1/-/3"]


def test_an_upsert_replaces_the_current_sections_and_leaves_versions_alone(server: FakeOpenSearch,
                                                                           engine: OpenSearchEngine) -> None:
    engine.upsert_prd(prd("p", FOUR))
    engine.add_version(prd("p", FOUR, version="1.0.0"))
    engine.upsert_prd(prd("p", TWO))
    assert [(op, meta.get("_id")) for op, meta, _ in server.bulk_actions()] == [
        ("index", "p/-/0"), ("index", "p/-/1"), ("delete", "p/-/2"), ("delete", "p/-/3")]
    assert server.keys() == ["p/-/0", "p/-/1", *[f"p/1.0.0/{n}" for n in range(4)]]
    engine.add_version(prd("p", TWO, version="v1.0.0"))
    assert [(op, meta.get("_id")) for op, meta, _ in server.bulk_actions()] == [
        ("index", "p/1.0.0/0"), ("index", "p/1.0.0/1"), ("delete", "p/1.0.0/2"), ("delete", "p/1.0.0/3")]
    lookups = server.requests("/_search")
    assert lookups[-1].body["_source"] == {"includes": ["version"]}  # what the write replaces


def test_new_members_reach_every_version(server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    engine.upsert_prd(prd("p", TWO))
    engine.add_version(prd("p", TWO, version="1.0.0"))
    before = {s["key"]: s for s in server.docs.values()}
    engine.upsert_prd(prd("p", TWO, members=["alice"]))
    written = {meta["_id"]: source for op, meta, source in server.bulk_actions() if op == "index"}
    assert sorted(written) == ["p/-/0", "p/-/1", "p/1.0.0/0", "p/1.0.0/1"]
    assert all(source is not None and source["members"] == ["alice"] for source in written.values())
    version_doc = written["p/1.0.0/1"]
    assert version_doc == {**before["p/1.0.0/1"], "members": ["alice"]}  # everything else kept, vector included


def test_delete_prd_removes_every_document_once(server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    engine.upsert_prd(prd("p", FOUR))
    engine.add_version(prd("p", TWO, version="1.0.0"))
    engine.upsert_prd(prd("q", TWO))
    engine.delete_prd("p")
    assert sorted(meta["_id"] for op, meta, _ in server.bulk_actions() if op == "delete") == [
        "p/-/0", "p/-/1", "p/-/2", "p/-/3", "p/1.0.0/0", "p/1.0.0/1"]
    assert {op for op, _, _ in server.bulk_actions()} == {"delete"}
    bulks = len(server.requests("/_bulk"))
    engine.delete_prd("p")  # nothing left: no request
    assert len(server.requests("/_bulk")) == bulks
    assert server.keys() == ["q/-/0", "q/-/1"]


def test_set_members_rewrites_every_version_and_ignores_unknown_prds(server: FakeOpenSearch,
                                                                      engine: OpenSearchEngine) -> None:
    engine.upsert_prd(prd("p", TWO))
    engine.add_version(prd("p", TWO, version="1.0.0"))
    engine.set_members("p", ["carol", "alice", "carol"])
    actions = server.bulk_actions()
    assert [(op, meta["_id"]) for op, meta, _ in actions] == [
        ("index", "p/-/0"), ("index", "p/-/1"), ("index", "p/1.0.0/0"), ("index", "p/1.0.0/1")]
    assert all(source is not None and source["members"] == ["alice", "carol"] for _, _, source in actions)
    bulks = len(server.requests("/_bulk"))
    engine.set_members("p", ["alice", "carol"])  # nothing changes
    engine.set_members("unknown", ["alice"])
    assert len(server.requests("/_bulk")) == bulks


def test_a_batch_is_one_bulk_request_at_its_end_and_nothing_if_it_raises(server: FakeOpenSearch,
                                                                         engine: OpenSearchEngine) -> None:
    engine.upsert_prd(prd("gone", TWO))
    before = len(server.requests("/_bulk"))
    with engine.batch():
        engine.upsert_prd(prd("a", FOUR))
        engine.set_members("a", ["carol"])  # sees the upsert above, not yet written
        engine.upsert_prd(prd("b", TWO))
        engine.delete_prd("gone")
        engine.upsert_prd(prd("gone", TWO, members=["dave"]))  # deleted and made again in one batch
        assert len(server.requests("/_bulk")) == before
    assert len(server.requests("/_bulk")) == before + 1
    by_key = {s["key"]: s for s in server.docs.values()}
    assert sorted(by_key) == ["a/-/0", "a/-/1", "a/-/2", "a/-/3", "b/-/0", "b/-/1", "gone/-/0", "gone/-/1"]
    assert by_key["a/-/2"]["members"] == ["carol"] and by_key["gone/-/0"]["members"] == ["dave"]

    with pytest.raises(RuntimeError, match="half-way"), engine.batch():
        engine.delete_prd("a")
        raise RuntimeError("failed half-way")
    assert len(server.requests("/_bulk")) == before + 1 and len(server.docs) == 8
    with engine.batch():  # a later batch is not haunted by the one that failed
        engine.upsert_prd(prd("c", TWO))
    assert [op for op, _, _ in server.bulk_actions()] == ["index", "index"]


def test_serverless_names_documents_itself_and_gets_no_refresh() -> None:
    server = FakeOpenSearch(serverless=True)
    engine = make(server)
    engine.upsert_prd(prd("p", FOUR))
    first = server.bulk_actions()
    assert [(op, meta) for op, meta, _ in first] == [("index", {"_index": INDEX})] * 4
    stored = sorted(server.docs)
    engine.upsert_prd(prd("p", TWO))
    assert [(op, meta.get("_id")) for op, meta, _ in server.bulk_actions()] == [
        ("index", None), ("index", None), *[("delete", doc_id) for doc_id in stored]]
    assert server.keys() == ["p/-/0", "p/-/1"]
    assert all("refresh" not in call.params for call in server.calls)
    with pytest.raises(ValueError, match="refresh"):
        make(FakeOpenSearch(serverless=True), refresh=True)


def test_serverless_duplicates_of_a_section_are_all_replaced() -> None:
    server = FakeOpenSearch(serverless=True)
    engine = make(server)
    engine.upsert_prd(prd("p", TWO))
    server.docs["late"] = dict(server.docs["gen1"])  # a write the previous lookup did not see yet
    engine.set_members("p", ["erin"])
    written = [source for op, _, source in server.bulk_actions() if op == "index"]
    assert sorted(s["key"] for s in written if s) == ["p/-/0", "p/-/1"]  # once each
    assert server.keys() == ["p/-/0", "p/-/1"]


def test_refused_bulk_items_raise_with_the_first_reason(server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    server.item_results["p/-/1"] = {"status": 400, "error": {
        "type": "mapper_parsing_exception", "reason": "failed to parse field [embedding] of type [knn_vector]",
        "index": INDEX, "shard": "0", "index_uuid": "u1"}}
    with pytest.raises(BulkError) as caught:
        engine.upsert_prd(prd("p", FOUR))
    assert str(caught.value) == ("OpenSearch refused 1 of 4 bulk actions; the first (index p/-/1, status 400): "
                                 "mapper_parsing_exception: failed to parse field [embedding] of type [knn_vector]")


def test_bulk_items_rejected_for_load_are_503_and_deleting_the_gone_is_done(server: FakeOpenSearch,
                                                                              engine: OpenSearchEngine) -> None:
    engine.upsert_prd(prd("p", FOUR))
    server.item_results["p/-/3"] = {"status": 404, "result": "not_found", "_version": 1}  # deleted meanwhile
    engine.upsert_prd(prd("p", TWO))
    rejected = {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"}}
    server.item_results = {"q/-/0": rejected, "q/-/1": rejected}
    with pytest.raises(DependencyFailed) as caught:
        engine.upsert_prd(prd("q", TWO))
    assert caught.value.status == 503 and caught.value.code == "search_unavailable"
    assert "es_rejected_execution_exception" in caught.value.message


# ----------------------------------------------------------------------------- failures
def test_an_unreachable_opensearch_is_a_503(server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    engine.ensure_index()
    server.down = True
    for action in (lambda: engine.search(query("checkout")), lambda: engine.upsert_prd(prd("p", TWO)),
                   engine.count, lambda: engine.delete_prd("p")):
        with pytest.raises(DependencyFailed) as caught:
            action()
        assert caught.value.status == 503 and caught.value.code == "search_unavailable"
        assert "ConnectionError" in caught.value.message and "fake" not in caught.value.message


def test_server_errors_are_503_and_refused_searches_say_why(server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    engine.ensure_index()
    server.answer_with = lambda call: (503, {"error": {"type": "cluster_block_exception", "reason": "blocked"},
                                             "status": 503})
    with pytest.raises(DependencyFailed, match="503"):
        engine.search(query("checkout"))
    server.answer_with = lambda call: (200, {"took": 1, "responses": [
        {"error": {"root_cause": [], "type": "search_phase_execution_exception", "reason": "all shards failed"},
         "status": 500}]})
    with pytest.raises(DependencyFailed):
        engine.search(query("checkout"))
    server.answer_with = lambda call: (200, {"took": 1, "responses": [
        {"error": {"root_cause": [], "type": "parsing_exception", "reason": "unknown query [knn]"}, "status": 400}]})
    with pytest.raises(RuntimeError, match=r"parsing_exception: unknown query \[knn\]"):
        engine.search(query("checkout"))


# ----------------------------------------------------------------------------- queries
def ranking_bodies(server: FakeOpenSearch) -> list[dict[str, Any]]:
    """The bodies that rank (text or knn), not the final read of the hits."""
    return [body for body in server.search_bodies() if "knn" in body["query"] or "must" in body["query"]["bool"]]


def test_a_text_query_is_match_queries_with_the_filters_beside_them(server: FakeOpenSearch,
                                                                    engine: OpenSearchEngine) -> None:
    engine.search(query('"is declined" card chargebakcs slott', limit=7))
    (body,) = ranking_bodies(server)
    assert body["size"] == candidates(7) and body["_source"] == ["key"]
    assert body["query"]["bool"]["filter"] == [{"terms": {"members": ["bob"]}}, {"terms": {"version": [""]}}]
    (scoring,) = body["query"]["bool"]["must"]
    (phrase,) = scoring["bool"]["must"]
    assert phrase == {"bool": {"should": [
        {"match_phrase": {"title": {"query": "is declined", "boost": pytest.approx(1.8)}}},
        {"match_phrase": {"heading": {"query": "is declined", "boost": pytest.approx(1.8)}}},
        {"match_phrase": {"text": {"query": "is declined", "boost": 1.5}}}]}}
    card, chargebacks, slott = scoring["bool"]["should"]
    assert card == {"dis_max": {"tie_breaker": 0.1, "queries": [
        {"match": {"title": {"query": "card", "boost": 1.2}}}, {"match": {"heading": {"query": "card", "boost": 1.2}}},
        {"match": {"text": {"query": "card", "boost": 1.0}}}, {"match": {"stem": {"query": "card", "boost": 0.6}}}]}}
    assert {"match": {"text": {"query": "chargebakcs", "fuzziness": 2, "prefix_length": 0, "fuzzy_transpositions": True,
                               "max_expansions": 10, "boost": 0.4}}} in chargebacks["dis_max"]["queries"]
    assert {"match_bool_prefix": {"heading": {"query": "slott", "max_expansions": 10,
                                              "boost": 0.6}}} in slott["dis_max"]["queries"]
    assert not any("match_bool_prefix" in q for q in chargebacks["dis_max"]["queries"])  # only the last word


def test_a_section_must_match_enough_of_the_words(server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    engine.search(query("pickers walk twice as far "))
    (body,) = ranking_bodies(server)
    (scoring,) = body["query"]["bool"]["must"]
    assert len(scoring["bool"]["should"]) == 4 and scoring["bool"]["minimum_should_match"] == 2  # "as" is a stopword
    engine.search(query("the"))  # stopwords count when there is nothing else
    assert ranking_bodies(server)[-1]["query"]["bool"]["must"][0]["dis_max"]["queries"][0] == {
        "match": {"title": {"query": "the", "boost": 1.2}}}


def test_cjk_runs_are_bigram_terms(server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    terms = analyze(query('微信支付 "支付宝"').parsed())
    assert terms.cjk == (("微信", "信支", "支付"),) and terms.cjk_phrases == (("支付", "付宝"),)
    engine.search(query('微信支付 "支付宝"'))
    (body,) = ranking_bodies(server)
    scoring = body["query"]["bool"]["must"][0]
    (strict,) = scoring["bool"]["must"]
    assert strict["bool"]["minimum_should_match"] == 2
    assert strict["bool"]["should"][0] == {"bool": {"should": [
        {"term": {"cjk_head": {"value": "支付", "boost": 1.5}}},
        {"term": {"cjk_body": {"value": "支付", "boost": 1.0}}}]}}
    (loose,) = scoring["bool"]["should"]
    assert loose["bool"]["minimum_should_match"] == 3  # three quarters of three, rounded up


HOSTILE = r'title:(a OR "b` AND * ~2 \ [x TO y] <b>z</b> /re.*/ *:*'


@pytest.mark.parametrize("mode", list(Mode))
def test_operators_are_only_ever_match_text(server: FakeOpenSearch, engine: OpenSearchEngine, mode: Mode) -> None:
    engine.upsert_prd(prd("p", FOUR))
    server.rankings = {"text": [("p/-/1", 1.0)], "vector": [("p/-/2", 1.5)]}  # so the hits' highlight is asked too
    engine.search(query(HOSTILE, mode))
    bodies = server.search_bodies()
    used = set(names(bodies))
    assert not used & {"query_string", "simple_query_string", "regexp", "wildcard", "script", "script_score",
                       "fuzzy", "prefix", "intervals"}
    sent = {text for body in bodies for text in texts(body)}  # what match/term queries were given to look for
    assert sent and not any(set(text) & set('():"*~\\[]<>/`') for text in sent), sent
    assert HOSTILE not in json.dumps(bodies, ensure_ascii=False)
    if mode is not Mode.SEMANTIC:
        (ranking, *_) = ranking_bodies(server)
        words = [q["match"]["title"]["query"] for clause in ranking["query"]["bool"]["must"][0]["bool"]["should"]
                 for q in clause["dis_max"]["queries"][:1]]
        assert words == ["title", "b", "2", "x", "y", "z", "re"]  # a, or, and, to: stopwords


def test_a_semantic_query_carries_the_filters_inside_knn(server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    engine.search(query("buyers who stop before paying", Mode.SEMANTIC, owner="bob", section="KPIs",
                        updated_after=5, version="*", prd_scope=("p2", "p1"), limit=3))
    (body,) = ranking_bodies(server)
    knn = body["query"]["knn"]["embedding"]
    expected = FakeEmbedder().embed_query("buyers who stop before paying")
    assert knn["vector"] == pytest.approx([float(v) for v in expected]) and knn["k"] == candidates(3)
    assert body["size"] == candidates(3)
    assert knn["filter"] == {"bool": {"filter": [
        {"terms": {"members": ["bob"]}}, {"terms": {"prd_id": ["p1", "p2"]}}, {"term": {"owner": "bob"}},
        {"range": {"updated_at": {"gt": 5}}}, {"terms": {"section_terms": ["kpis", "success-metrics"]}}]}}
    engine.search(query("anything", Mode.SEMANTIC, user="root", is_admin=True, all_prds=True, version="*"))
    assert "filter" not in ranking_bodies(server)[-1]["query"]["knn"]["embedding"]  # every PRD, every version


def test_hybrid_sends_both_rankings_in_one_request_and_fuses_them_before_the_collapse(
        server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    for prd_id in ("a", "b", "c"):
        engine.upsert_prd(prd(prd_id, FOUR))
    server.rankings = {"text": [("a/-/0", 3.0), ("b/-/1", 2.0), ("a/-/2", 1.0)],
                       "vector": [("b/-/1", 1.9), ("c/-/0", 1.5), ("a/-/0", 0.9)]}
    searches = len(server.requests("/_msearch"))
    hits = engine.search(query("cards declined", Mode.HYBRID))
    assert [(h.prd_id, h.section_index) for h in hits] == [("b", 1), ("a", 0), ("c", 0)]  # a/-/2 collapsed into a
    assert [h.score for h in hits] == pytest.approx([1 / 62 + 1 / 61, 1 / 61 + 1 / 63, 1 / 62])
    first, final = server.requests("/_msearch")[searches:]
    assert len(first.body) == 4  # the text and the knn search, one round trip
    read = final.body[1]
    assert read["query"]["bool"]["filter"] == [{"terms": {"key": ["b/-/1", "a/-/0", "c/-/0"]}},
                                               {"terms": {"members": ["bob"]}}, {"terms": {"version": [""]}}]
    assert hits[0].title == "Checkout" and hits[0].section == "Problem" and hits[0].updated_at == 1_000


def test_semantic_scores_are_cosines_and_unreadable_hits_are_dropped(server: FakeOpenSearch,
                                                                      engine: OpenSearchEngine) -> None:
    engine.upsert_prd(prd("a", TWO))
    engine.upsert_prd(prd("private", TWO, members=["alice"]))
    server.rankings["vector"] = [("a/-/1", 1.8), ("private/-/1", 1.2), ("a/-/0", 0.5)]
    hits = engine.search(query("cards", Mode.SEMANTIC, limit=5))
    assert [(h.prd_id, h.score) for h in hits] == [("a", pytest.approx(0.8))]  # bob is not a member of "private"
    server.rankings["vector"] = [("a/-/0", 0.5)]
    assert engine.search(query("cards", Mode.SEMANTIC))[0].score == pytest.approx(-1.0)  # 1 / (1 - ip)


def test_snippets_come_from_highlights_with_private_markers(server: FakeOpenSearch,
                                                            engine: OpenSearchEngine) -> None:
    markdown = ("# Checkout\n\n## Problem\n\nShoppers abandon the basket when their card is declined at the final "
                "step.\n\n## 需求\n\n我们需要支持微信支付。\n\n## Plain\n\nNothing to see.\n")
    engine.upsert_prd(prd("p", markdown))
    server.rankings["text"] = [("p/-/1", 2.0)]
    server.highlights["p/-/1"] = {"text": [f"their {MARK_ON}card{MARK_OFF} is {MARK_ON}declined{MARK_OFF} at the"]}
    (hit,) = engine.search(query("card declined"))
    assert hit.snippet == (("… ", False), ("their ", False), ("card", True), (" is ", False), ("declined", True),
                           (" at the", False), (" …", False))
    highlight = server.search_bodies()[-1]["highlight"]
    assert highlight["pre_tags"] == [MARK_ON] and highlight["post_tags"] == [MARK_OFF]
    assert highlight["type"] == "unified" and highlight["number_of_fragments"] == 1
    assert set(highlight["fields"]) == {"text"}  # no CJK in the query: no bigram highlighting

    server.rankings["text"] = [("p/-/2", 2.0)]
    # overlapping grams come as adjacent marked spans (the passage formatter never repeats a character)
    server.highlights["p/-/2"] = {"cjk_body": [f"我们需要支持{MARK_ON}微{MARK_OFF}{MARK_ON}信{MARK_OFF}支付。"],
                                  "text": ["ignored"]}
    (hit,) = engine.search(query("微信"))
    assert hit.snippet == (("我们需要支持", False), ("微信", True), ("支付。", False))
    assert set(server.search_bodies()[-1]["highlight"]["fields"]) == {"cjk_body"}

    server.rankings["vector"] = [("p/-/3", 1.5)]
    (hit,) = engine.search(query("unrelated meaning", Mode.SEMANTIC))
    assert hit.snippet == leading_snippet("Nothing to see.")


# ----------------------------------------------------------------------------- counts, stats, vectors
def test_count_and_stats(server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    engine.upsert_prd(prd("a", FOUR))
    engine.add_version(prd("a", TWO, version="1.0.0"))
    engine.upsert_prd(prd("b", TWO))
    assert engine.count() == 8
    assert engine.stats() == {"engine": "opensearch", "documents": 8, "prds": 2, "bytes": 8000, "index": INDEX,
                              "serverless": False, "embedder": "fake/4", "dim": 4}
    aggregation = server.requests("/_search")[-1].body
    assert aggregation["size"] == 0 and aggregation["aggs"]["prds"]["cardinality"]["field"] == "prd_id"
    assert server.requests(f"/_cat/indices/{INDEX}")[-1].params == {"format": "json", "bytes": "b"}


def test_stored_vectors_are_found_by_passage(server: FakeOpenSearch, engine: OpenSearchEngine) -> None:
    sections = prd("p", TWO)
    engine.upsert_prd(sections)
    found = engine.stored_vectors("p", [""])
    embedded = FakeEmbedder().embed_passages([s.passage() for s in sections])
    for section, vector in zip(sections, embedded, strict=True):
        digest = hashlib.sha256(section.passage().encode("utf-8")).hexdigest()
        np.testing.assert_allclose(found[digest], vector)
    assert engine.stored_vectors("p", ["9.9.9"]) == {}
    assert engine.stored_vectors("p").keys() == found.keys()


# ----------------------------------------------------------------------------- connecting
class _Session:
    region_name = None

    def get_credentials(self) -> Any:
        from botocore.credentials import Credentials

        return Credentials("AKIDEXAMPLE", "secret", "token")


def test_an_aws_endpoint_is_signed_for_its_service(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from opensearchpy import AWSV4SignerAuth, RequestsHttpConnection

    monkeypatch.setattr(boto3, "Session", _Session)
    domain = OpenSearchEngine("https://search-prd-abc.eu-west-1.es.amazonaws.com", index_prefix="t",
                              embedder=FakeEmbedder(), refresh=True)
    (connection,) = domain._client.transport.connection_pool.connections
    assert isinstance(connection, RequestsHttpConnection) and connection.host == "https://search-prd-abc.eu-west-1.es.amazonaws.com:443"
    auth = connection.session.auth
    assert isinstance(auth, AWSV4SignerAuth) and auth.service == "es" and auth.signer.region == "eu-west-1"
    assert domain.serverless is False
    collection = OpenSearchEngine("https://abc123.us-east-1.aoss.amazonaws.com", index_prefix="t",
                                  embedder=FakeEmbedder(), service="aoss", region="us-east-1")
    (connection,) = collection._client.transport.connection_pool.connections
    assert connection.session.auth.service == "aoss" and collection.serverless is True
    with pytest.raises(ValueError, match="signed for 'aoss'"):
        OpenSearchEngine("https://abc123.us-east-1.aoss.amazonaws.com", index_prefix="t", embedder=FakeEmbedder())


def test_other_endpoints_use_the_url_as_given() -> None:
    engine = OpenSearchEngine("https://user:pa55@search.internal:9200", index_prefix="t", embedder=FakeEmbedder())
    (connection,) = engine._client.transport.connection_pool.connections
    assert connection.headers["authorization"] == "Basic dXNlcjpwYTU1" and engine.serverless is False
    for endpoint in ("search.internal:9200", "ftp://search.internal"):
        with pytest.raises(ValueError, match="http"):
            OpenSearchEngine(endpoint, index_prefix="t", embedder=FakeEmbedder())
    with pytest.raises(ValueError, match="index name"):
        OpenSearchEngine("http://localhost:9200", index_prefix="PRD Tool", embedder=FakeEmbedder())


def test_a_long_question_stays_under_lucenes_clause_limit() -> None:
    """Lucene refuses more than 1,024 leaf clauses after rewriting; a 500-character question of words or
    of CJK is cut to its first words and bigrams, with fuzzy and prefix expansions bounded."""
    from prdtool.search.model import parse_text
    from prdtool.search.opensearch import MAX_EXPANSIONS, MAX_QUERY_GRAMS, MAX_QUERY_WORDS, analyze, text_query

    words = " ".join(f"requirement{n}x" for n in range(60))[:500]
    terms = analyze(parse_text(words))
    assert len(terms.words) == MAX_QUERY_WORDS
    body = json.dumps(text_query(terms))
    leaves = body.count('"match"') + body.count('"match_bool_prefix"') * MAX_EXPANSIONS
    leaves += body.count('"fuzziness"') * (MAX_EXPANSIONS - 1)
    assert leaves <= 1024
    cjk = analyze(parse_text("我们需要支持微信支付和支付宝" * 35))
    assert sum(len(run) for run in cjk.cjk) <= MAX_QUERY_GRAMS


def test_a_prd_with_more_documents_than_a_page_is_read_page_by_page(server: FakeOpenSearch, engine: OpenSearchEngine,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A PRD's documents are looked up with search_after (no 10,000 limit): a change replaces them all."""
    from prdtool.search import opensearch

    monkeypatch.setattr(opensearch, "PRD_PAGE", 2)
    engine.upsert_prd(prd("p", "# P\n\n" + "".join(f"## S{n}\n\nText {n}.\n\n" for n in range(5))))
    for version in ("1.0.0", "1.1.0"):
        engine.add_version(prd("p", "# P\n\n## Only\n\nOne.\n", version=version))
    assert len(server.docs) == 6 + 2 * 2  # "# P" and five sections; "# P" and "## Only" per version
    engine.set_members("p", ["zed"])
    assert {tuple(d["members"]) for d in server.docs.values()} == {("zed",)}
    lookups = [r for r in server.requests("/_search") if r.body and "search_after" in r.body]
    assert lookups, "the lookup read more than one page"
    engine.delete_prd("p")
    assert server.docs == {}
