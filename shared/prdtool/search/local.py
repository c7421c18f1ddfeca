"""The embedded search engine: tantivy (BM25 text search) + numpy (brute-force cosine over vectors).

It serves the local stack and the tests, where no OpenSearch can run; AWS uses OpenSearch behind the
same :class:`~prdtool.search.engine.SearchEngine` interface.  It says so in the log once per process.

**Text.**  One tantivy document per section (see :mod:`.model`).  Analyzers (registered again after
every ``Index.open()``: tantivy does not store custom analyzers with the index):

- ``prd_fold``: simple tokenizer, lowercase, ASCII folding (``résumé`` = ``resume``, ``Straße`` =
  ``strasse``) — fields ``title``, ``heading``, ``body``: exact terms, phrases, prefixes, typos,
  snippets;
- ``prd_stem``: the same plus the English stemmer — field ``stem`` (title, heading, body and tags) so
  ``retries`` finds ``retry``;
- ``prd_cjk``: character uni- and bigrams — fields ``cjk_head``/``cjk_body``, filled only for text
  with Chinese/Japanese/Korean characters (which have no spaces between words): ``微信`` is found in
  ``我们需要微信支付``.

The user's text never goes through tantivy's query parser (where ``abc*`` is the term "abc", ``word~1``
a phrase, and ``title:`` or an unbalanced ``(`` a syntax error): :func:`prdtool.search.model.parse_text`
splits it into words and quoted phrases, the analyzers turn those into terms, and the query is built
from ``Query`` objects — term queries with field boosts (title and heading 1.2, body 1), a stemmed term,
``fuzzy_term_query`` for typos (edit distance 1 from 5 letters, 2 from 9), a prefix query for the last
word and for ``word*``, ``phrase_query`` for quoted text (required), bigram queries for CJK.  The
filters (:class:`~prdtool.search.engine.Filters`: members, API-key scope, version, owner, updated
after, section) are required clauses with zero score in the same boolean query.

Ranking details (the OpenSearch engine mirrors them): each word is a disjunction-max over its
fields and forms (so a common word repeated in a short section's title, heading and body does not
outweigh a rare one); a section must match one of a one- or two-word query and half (rounded up) of
a longer one (:func:`enough`); quoted phrases are required; stopwords (English, German, French)
count only in a query made of nothing else.

**Vectors** live beside the index in ``vectors.npz`` (float32 matrix + row metadata + each PRD's
members) and are searched by brute force (0.4 ms per query at 10k sections): the same filters become
a numpy mask computed *before* ranking, so a vector the caller may not read is never scored.  The
file is rewritten whole on every change (4 MB for the 2,000-section test corpus; ~150 MB at 100k
sections): group changes with :meth:`LocalSearchEngine.batch` — the indexing worker does per SQS
batch, a re-index per few hundred PRDs.  Fine for the local stack; an append-only segment layout is
the next step if it must hold 10k PRDs with per-change latency in milliseconds.

**Several processes** (the local stack runs each Lambda in its own processes) share one directory:

- writers serialise on ``write.lock`` (``fcntl.flock``), then take tantivy's own writer lock for the
  length of one change or batch (``Index.writer()`` … ``commit()`` … ``wait_merging_threads()``,
  which releases it — tantivy refuses a second writer, in this process or another, with
  ``LockBusy``); a writer first reloads ``vectors.npz`` if another process replaced it;
- ``vectors.npz`` is written to a temporary file, fsynced, and swapped in with ``os.replace`` (atomic
  on POSIX), *before* the tantivy commit: a crash in between leaves the two stores disagreeing about
  that one PRD until the (idempotent) change is applied again — which the indexing worker does, since
  its message is not deleted;
- readers call ``Index.reload()`` before each search (cheap when nothing changed) and reload
  ``vectors.npz`` when its ``(mtime, size, inode)`` changed, so a removed member stops finding a PRD
  on the next search in every process.

``path=None`` keeps everything in memory (tests).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import tantivy
from tantivy import Filter, Occur, Query, TextAnalyzer, TextAnalyzerBuilder, Tokenizer

from ..observability import logger
from .analysis import (
    CJK_BOOSTS,
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
    split_cjk,
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
    segments_from_ranges,
)

ENGINE_NAME = "embedded tantivy + numpy (local stack, not OpenSearch)"
SCHEMA_VERSION = 1
FOLD, STEM, CJK = "prd_fold", "prd_stem", "prd_cjk"
WRITER_HEAP = 50_000_000
#: Field boosts of an exact term; a stemmed match, a typo and a prefix weigh less than an exact one.
BOOSTS = {"title": 1.2, "heading": 1.2, "body": 1.0}

_announced = False
_TANTIVY_VERSION = metadata.version("tantivy")


# ----------------------------------------------------------------------------- analyzers and schema
@dataclass(frozen=True)
class _Analyzers:
    fold: TextAnalyzer
    stem: TextAnalyzer
    cjk: TextAnalyzer


_analyzers_cache: list[_Analyzers] = []


def analyzers() -> _Analyzers:
    if not _analyzers_cache:
        def base() -> TextAnalyzerBuilder:
            return (TextAnalyzerBuilder(Tokenizer.simple()).filter(Filter.remove_long(40))
                    .filter(Filter.lowercase()).filter(Filter.ascii_fold()))

        _analyzers_cache.append(_Analyzers(
            fold=base().build(),
            stem=base().filter(Filter.stemmer("english")).build(),
            cjk=TextAnalyzerBuilder(Tokenizer.ngram(1, 2)).filter(Filter.lowercase()).build(),
        ))
    return _analyzers_cache[0]


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    for name in ("key", "prd_id", "version", "owner", "status"):
        builder.add_text_field(name, stored=True, tokenizer_name="raw")
    for name in ("members", "tags"):
        builder.add_text_field(name, stored=True, tokenizer_name="raw")  # multi-valued
    builder.add_text_field("section_terms", stored=False, tokenizer_name="raw")
    builder.add_integer_field("updated_at", stored=True, indexed=True, fast=True)
    builder.add_integer_field("section_index", stored=True)
    builder.add_integer_field("level", stored=True)
    for name in ("title", "heading", "body"):
        builder.add_text_field(name, stored=True, tokenizer_name=FOLD)
    builder.add_text_field("stem", stored=False, tokenizer_name=STEM)
    builder.add_text_field("cjk_head", stored=False, tokenizer_name=CJK)
    builder.add_text_field("cjk_body", stored=False, tokenizer_name=CJK)
    return builder.build()


def _register(index: tantivy.Index) -> None:
    found = analyzers()
    index.register_tokenizer(FOLD, found.fold)
    index.register_tokenizer(STEM, found.stem)
    index.register_tokenizer(CJK, found.cjk)


def _document(doc: SectionDoc) -> tantivy.Document:
    fields: dict[str, Any] = {
        "key": doc.key, "prd_id": doc.prd_id, "version": doc.version, "owner": doc.owner,
        "status": doc.status, "members": sorted(doc.members), "tags": list(doc.tags),
        "section_terms": list(doc.section_terms), "updated_at": int(doc.updated_at),
        "section_index": int(doc.index), "level": int(doc.level),
        "title": doc.title, "heading": doc.heading, "body": doc.text,
        "stem": "\n".join((doc.title, doc.heading, doc.text, " ".join(doc.tags))),
    }
    if has_cjk(doc.title) or has_cjk(doc.heading):
        fields["cjk_head"] = f"{doc.title}\n{doc.heading}"
    if has_cjk(doc.text):
        fields["cjk_body"] = doc.text
    if not fields["members"]:
        del fields["members"]
    if not fields["tags"]:
        del fields["tags"]
    return tantivy.Document(**fields)


def _first(stored: dict[str, list[Any]], name: str, default: Any = "") -> Any:
    values = stored.get(name) or []
    return values[0] if values else default


def _section_of(stored: dict[str, list[Any]]) -> SectionDoc:
    """A stored tantivy document back as a SectionDoc (no embedding)."""
    return SectionDoc(
        prd_id=_first(stored, "prd_id"), version=_first(stored, "version"),
        index=int(_first(stored, "section_index", 0)), heading=_first(stored, "heading"),
        level=int(_first(stored, "level", 0)), text=_first(stored, "body"), title=_first(stored, "title"),
        owner=_first(stored, "owner"), members=frozenset(stored.get("members") or ()),
        status=_first(stored, "status"), tags=tuple(stored.get("tags") or ()),
        updated_at=int(_first(stored, "updated_at", 0)),
    )


# ----------------------------------------------------------------------------- query building
@dataclass(frozen=True)
class _Term:
    text: str  # folded by prd_fold
    prefix: bool  # also match words that start with it
    fuzzy: int  # the edit distance tolerated (0: exact only)


@dataclass(frozen=True)
class _Terms:
    """What a query's text asks for, after analysis."""

    words: tuple[_Term, ...]  # optional, scored; at least "enough" of them must match (see text_query)
    cjk: tuple[tuple[str, ...], ...]  # uni/bigrams of each CJK run among the words (optional, like words)
    phrases: tuple[tuple[str, ...], ...]  # folded words of each quoted phrase (required)
    cjk_phrases: tuple[tuple[str, ...], ...]  # uni/bigrams of CJK runs inside quotes (required)

    @property
    def empty(self) -> bool:
        return not (self.words or self.phrases or self.cjk or self.cjk_phrases)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(t.text for t in self.words if t.prefix)

    @property
    def fuzzy(self) -> tuple[tuple[str, int], ...]:
        return tuple((t.text, t.fuzzy) for t in self.words if t.fuzzy)

    def highlight_terms(self) -> set[str]:
        return {t.text for t in self.words} | {word for phrase in self.phrases for word in phrase}


def analyze(parsed: ParsedText) -> _Terms:
    fold = analyzers().fold
    found: dict[str, bool] = {}  # folded word -> prefix
    cjk: list[tuple[str, ...]] = []
    for word in parsed.words:
        latin, runs = split_cjk(word.text)
        tokens = fold.analyze(latin)
        for position, token in enumerate(tokens):
            prefix = word.prefix and position == len(tokens) - 1 and len(token) >= 2 and not runs
            found[token] = found.get(token, False) or prefix
        cjk.extend(grams(run) for run in runs)
    if cjk or any(token not in STOPWORDS for token in found):  # stopwords count only when alone
        found = {token: prefix for token, prefix in found.items() if token not in STOPWORDS}
    words = tuple(_Term(token, prefix, fuzzy_distance(token)) for token, prefix in found.items())
    phrases: list[tuple[str, ...]] = []
    cjk_phrases: list[tuple[str, ...]] = []
    for phrase in parsed.phrases:
        latin, runs = split_cjk(phrase)
        phrase_words = tuple(fold.analyze(latin))
        if phrase_words:
            phrases.append(phrase_words)
        cjk_phrases.extend(grams(run) for run in runs)
    return _Terms(words, tuple(cjk), tuple(phrases), tuple(cjk_phrases))


def _any_field(queries: Sequence[Query]) -> Query:
    return queries[0] if len(queries) == 1 else Query.boolean_query([(Occur.Should, q) for q in queries])


def _cjk_query(schema: tantivy.Schema, grams: Sequence[str], *, strict: bool) -> Query:
    """A CJK run: its bigrams (all of them when ``strict``, else three quarters) in a head or body field."""
    clauses = [
        (Occur.Should, _any_field([Query.boost_query(Query.term_query(schema, field, gram), boost)
                                   for field, boost in CJK_BOOSTS.items()]))
        for gram in dict.fromkeys(grams)
    ]
    need = len(clauses) if strict else max(1, (3 * len(clauses) + 3) // 4)
    return Query.boolean_query(clauses, need)


def _phrase(schema: tantivy.Schema, words: Sequence[str]) -> Query:
    per_field: list[Query] = []
    for field, boost in BOOSTS.items():
        if len(words) == 1:  # tantivy panics on a one-word PhraseQuery (a BaseException, not an error)
            inner = Query.term_query(schema, field, words[0])
        else:
            inner = Query.phrase_query(schema, field, list(words))
        per_field.append(Query.boost_query(inner, boost * PHRASE_BOOST))
    return _any_field(per_field)


def _word(schema: tantivy.Schema, term: _Term) -> Query:
    """One word in any text field: exact (BM25, boosted by field), stemmed, within its typo distance,
    or as a prefix.  The best of these counts (plus a tenth of the others: a disjunction-max, like
    OpenSearch's ``best_fields``) — summing them would let a common word that sits in a short
    section's title, heading and body outweigh a rare word of the query."""
    alternatives = [Query.boost_query(Query.term_query(schema, field, term.text), boost)
                    for field, boost in BOOSTS.items()]
    alternatives += [Query.boost_query(Query.term_query(schema, "stem", stemmed), STEM_BOOST)
                     for stemmed in analyzers().stem.analyze(term.text)]
    if term.fuzzy:
        alternatives += [Query.boost_query(Query.fuzzy_term_query(schema, field, term.text, term.fuzzy, True),
                                           FUZZY_BOOST) for field in BOOSTS]
    if term.prefix:
        alternatives += [Query.boost_query(Query.fuzzy_term_query(schema, field, term.text, 0, True, True),
                                           PREFIX_BOOST) for field in BOOSTS]
    return Query.disjunction_max_query(alternatives, TIE_BREAKER)


def text_query(schema: tantivy.Schema, terms: _Terms) -> Query | None:
    """The scoring part of a text search, or None when the text holds nothing searchable."""
    if terms.empty:
        return None
    optional = [_word(schema, term) for term in terms.words]
    optional += [_cjk_query(schema, grams, strict=False) for grams in terms.cjk]
    required = [_phrase(schema, words) for words in terms.phrases]
    required += [_cjk_query(schema, grams, strict=True) for grams in terms.cjk_phrases]
    top: list[tuple[Occur, Query]] = [(Occur.Must, q) for q in required]
    if optional:
        if required:  # the phrases decide what matches; the other words only add to the score
            top.append((Occur.Should, _any_field(optional)))
        elif len(optional) == 1:
            top.append((Occur.Must, optional[0]))
        else:
            top.append((Occur.Must, Query.boolean_query([(Occur.Should, q) for q in optional],
                                                        enough(len(optional)))))
    return top[0][1] if len(top) == 1 else Query.boolean_query(top)


def filter_query(schema: tantivy.Schema, filters: Filters) -> Query | None:
    parts: list[Query] = []
    if filters.readers is not None:
        parts.append(Query.term_set_query(schema, "members", sorted(filters.readers)))
    if filters.prd_ids is not None:
        parts.append(Query.term_set_query(schema, "prd_id", sorted(filters.prd_ids)))
    if filters.versions is not None:
        parts.append(Query.term_set_query(schema, "version", sorted(filters.versions)))
    if filters.owner is not None:
        parts.append(Query.term_query(schema, "owner", filters.owner))
    if filters.updated_after is not None:
        parts.append(Query.range_query(schema, "updated_at", tantivy.FieldType.Integer,
                                       lower_bound=int(filters.updated_after), include_lower=False))
    if filters.section_terms is not None:
        parts.append(Query.term_set_query(schema, "section_terms", sorted(filters.section_terms)))
    if not parts:
        return None
    combined = parts[0] if len(parts) == 1 else Query.boolean_query([(Occur.Must, p) for p in parts])
    return Query.const_score_query(combined, 0.0)


def _within(a: str, b: str, limit: int) -> bool:
    """Damerau (optimal string alignment) distance of a and b is at most ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return False
        previous2, previous = previous, current
    return previous[-1] <= limit


# ----------------------------------------------------------------------------- vectors
@dataclass(frozen=True)
class _Rows:
    """An immutable snapshot of the vector store, as searches read it."""

    keys: tuple[str, ...]
    matrix: np.ndarray  # (n, dim) float32
    prd: np.ndarray  # int32 codes into prd_ids
    version: np.ndarray
    owner: np.ndarray
    updated: np.ndarray  # int64
    section_a: np.ndarray  # codes into terms (-1: none)
    section_b: np.ndarray
    prd_ids: dict[str, int]
    versions: dict[str, int]
    owners: dict[str, int]
    terms: dict[str, int]
    readers: dict[str, frozenset[int]]  # username -> codes of the PRDs they may read

    def mask(self, filters: Filters) -> np.ndarray:
        keep = np.ones(len(self.keys), dtype=bool)

        def codes(table: dict[str, int], values: Iterable[str]) -> np.ndarray:
            return np.array([table[v] for v in values if v in table], dtype=np.int32)

        if filters.readers is not None:
            allowed: set[int] = set()
            for reader in filters.readers:
                allowed |= self.readers.get(reader, frozenset())
            keep &= np.isin(self.prd, np.fromiter(allowed, dtype=np.int32, count=len(allowed)))
        if filters.prd_ids is not None:
            keep &= np.isin(self.prd, codes(self.prd_ids, filters.prd_ids))
        if filters.versions is not None:
            keep &= np.isin(self.version, codes(self.versions, filters.versions))
        if filters.owner is not None:
            keep &= self.owner == self.owners.get(filters.owner, -2)
        if filters.updated_after is not None:
            keep &= self.updated > filters.updated_after
        if filters.section_terms is not None:
            wanted = codes(self.terms, filters.section_terms)
            keep &= np.isin(self.section_a, wanted) | np.isin(self.section_b, wanted)
        return keep


@dataclass
class _Row:
    vector: np.ndarray
    prd_id: str
    version: str
    owner: str
    updated_at: int
    section_terms: tuple[str, ...]


class VectorStore:
    """Section vectors with the metadata their filters need, and each PRD's members; one file,
    replaced atomically.  Not thread-safe by itself: the engine holds its lock around changes."""

    def __init__(self, path: Path | None, model_id: str, dim: int) -> None:
        self.path = path
        self.model_id = model_id
        self.dim = dim
        self.by_prd: dict[str, dict[str, _Row]] = {}  # prd_id -> section key -> row
        self.members: dict[str, frozenset[str]] = {}
        self._loaded_state: tuple[int, int, int] | None = None
        self._snapshot: _Rows | None = None
        self.refresh()

    # -- persistence
    def _state(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    @property
    def size(self) -> int:
        return sum(len(rows) for rows in self.by_prd.values())

    def refresh(self, *, force: bool = False) -> bool:
        """Reload from disk if another process replaced the file (or ``force``: to drop changes made
        in memory and not saved); True when something was loaded."""
        state = self._state()
        if self.path is None or (state == self._loaded_state and not force):
            return False
        if state is None:  # nothing saved yet
            self.by_prd, self.members, self._loaded_state, self._snapshot = {}, {}, None, None
            return True
        with np.load(self.path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))
            matrix = np.asarray(data["vectors"], dtype=np.float32)
        if meta.get("model") != self.model_id or int(meta.get("dim", 0)) != self.dim:
            logger.warning("search vectors were made by another model: ignored until the PRDs are re-indexed",
                           extra={"stored_model": meta.get("model"), "model": self.model_id})
            meta["rows"] = []
        by_prd: dict[str, dict[str, _Row]] = {}
        for position, (key, prd_id, version, owner, updated, terms) in enumerate(meta["rows"]):
            by_prd.setdefault(prd_id, {})[key] = _Row(matrix[position], prd_id, version, owner, int(updated),
                                                      tuple(terms))
        self.by_prd = by_prd
        self.members = {prd: frozenset(users) for prd, users in meta.get("members", {}).items()}
        self._loaded_state = state
        self._snapshot = None
        return True

    def save(self) -> None:
        self._snapshot = None
        if self.path is None:
            return
        rows = [(key, row) for group in self.by_prd.values() for key, row in group.items()]
        matrix = (np.stack([row.vector for _, row in rows]).astype(np.float32, copy=False) if rows
                  else np.zeros((0, self.dim), dtype=np.float32))
        meta = {
            "model": self.model_id, "dim": self.dim, "schema": SCHEMA_VERSION,
            "rows": [[key, r.prd_id, r.version, r.owner, r.updated_at, list(r.section_terms)] for key, r in rows],
            "members": {prd: sorted(users) for prd, users in self.members.items()},
        }
        blob = np.frombuffer(json.dumps(meta, separators=(",", ":")).encode("utf-8"), dtype=np.uint8)
        handle, temporary = tempfile.mkstemp(prefix=".vectors-", suffix=".npz", dir=self.path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, vectors=matrix, meta=blob)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        self._loaded_state = self._state()

    def checkpoint(self) -> tuple[dict[str, dict[str, _Row]], dict[str, frozenset[str]]]:
        """A copy of the state to go back to (the in-memory store has no file to reload)."""
        return {prd: dict(group) for prd, group in self.by_prd.items()}, dict(self.members)

    def restore(self, state: tuple[dict[str, dict[str, _Row]], dict[str, frozenset[str]]]) -> None:
        self.by_prd, self.members = state
        self._snapshot = None

    # -- changes (the caller saves)
    def replace(self, prd_id: str, version: str, sections: Sequence[SectionDoc]) -> None:
        group = self.by_prd.setdefault(prd_id, {})
        for key in [k for k, r in group.items() if r.version == version]:
            del group[key]
        for section in sections:
            if section.embedding is None:
                continue
            vector = np.asarray(section.embedding, dtype=np.float32).reshape(-1)
            if vector.shape[0] != self.dim:
                raise ValueError(f"a {vector.shape[0]}-dim embedding in a {self.dim}-dim store")
            group[section.key] = _Row(vector, prd_id, version, section.owner, int(section.updated_at),
                                      section.section_terms)
        self._snapshot = None

    def delete(self, prd_id: str) -> None:
        self.by_prd.pop(prd_id, None)
        self.members.pop(prd_id, None)
        self._snapshot = None

    def set_members(self, prd_id: str, members: frozenset[str]) -> None:
        self.members[prd_id] = members
        self._snapshot = None

    # -- reads
    def snapshot(self) -> _Rows:
        snapshot = self._snapshot
        if snapshot is not None:
            return snapshot
        pairs = [(key, row) for group in self.by_prd.values() for key, row in group.items()]
        keys = tuple(key for key, _ in pairs)
        rows = [row for _, row in pairs]
        prd_ids: dict[str, int] = {}
        versions: dict[str, int] = {}
        owners: dict[str, int] = {}
        terms: dict[str, int] = {}

        def code(table: dict[str, int], value: str) -> int:
            return table.setdefault(value, len(table))

        section_a = [code(terms, r.section_terms[0]) if r.section_terms else -1 for r in rows]
        section_b = [code(terms, r.section_terms[1]) if len(r.section_terms) > 1 else -1 for r in rows]
        prd_codes = [code(prd_ids, r.prd_id) for r in rows]
        readers: dict[str, set[int]] = {}
        for prd_id, users in self.members.items():
            if prd_id in prd_ids:
                for user in users:
                    readers.setdefault(user, set()).add(prd_ids[prd_id])
        snapshot = _Rows(
            keys=keys,
            matrix=(np.stack([r.vector for r in rows]) if rows else np.zeros((0, self.dim), dtype=np.float32)),
            prd=np.array(prd_codes, dtype=np.int32),
            version=np.array([code(versions, r.version) for r in rows], dtype=np.int32),
            owner=np.array([code(owners, r.owner) for r in rows], dtype=np.int32),
            updated=np.array([r.updated_at for r in rows], dtype=np.int64),
            section_a=np.array(section_a, dtype=np.int32), section_b=np.array(section_b, dtype=np.int32),
            prd_ids=prd_ids, versions=versions, owners=owners, terms=terms,
            readers={user: frozenset(codes) for user, codes in readers.items()},
        )
        self._snapshot = snapshot
        return snapshot

    def search(self, vector: np.ndarray, filters: Filters, limit: int) -> list[tuple[str, float]]:
        """The ``limit`` most similar sections among those the filters admit (masked before scoring)."""
        rows = self.snapshot()
        if not rows.keys or not np.any(vector):
            return []
        allowed = np.flatnonzero(rows.mask(filters))
        if allowed.size == 0:
            return []
        query = np.asarray(vector, dtype=np.float32)
        # Copying the admitted rows pays off only for a selective filter; otherwise score every row
        # and pick (docs/benchmarks.md: 30 of 38 ms at 98k admitted rows was the copy).
        selective = allowed.size * 4 < len(rows.keys)
        scores = rows.matrix[allowed] @ query if selective else (rows.matrix @ query)[allowed]
        take = min(limit, scores.size)
        top = np.argpartition(-scores, take - 1)[:take]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(rows.keys[allowed[i]], float(scores[i])) for i in top]


# ----------------------------------------------------------------------------- the engine
@dataclass(frozen=True)
class _Candidate:
    key: str
    score: float
    address: Any = None  # tantivy DocAddress when it came from the text search

    @property
    def group(self) -> tuple[str, str]:
        prd_id, version, _ = self.key.rsplit("/", 2)
        return prd_id, version


class LocalSearchEngine:
    """The embedded engine (see the module documentation).  ``path``: a directory (created if needed)
    holding ``text/`` (the tantivy index), ``vectors.npz``, ``engine.json`` and ``write.lock``; None
    keeps everything in memory."""

    name = ENGINE_NAME

    def __init__(self, path: str | Path | None, embedder: Embedder, *, writer_heap: int = WRITER_HEAP) -> None:
        self.embedder = embedder
        self._heap = writer_heap
        self._lock = threading.RLock()
        self._writer: tantivy.IndexWriter | None = None  # open during a change or a batch
        self._staged: dict[str, tuple[bool, dict[str, list[SectionDoc]]]] = {}  # see _prd_sections
        self._schema = _schema()
        self.path = Path(path) if path is not None else None
        if self.path is None:
            self._index = tantivy.Index(self._schema)
            vectors_path = None
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            text = self.path / "text"
            with self._file_lock():
                self._check_marker()
                text.mkdir(exist_ok=True)
                if tantivy.Index.exists(str(text)):
                    self._index = tantivy.Index.open(str(text))
                else:
                    self._index = tantivy.Index(self._schema, path=str(text))
            vectors_path = self.path / "vectors.npz"
        _register(self._index)  # after every open: analyzers are not stored with the index
        self._index.config_reader("manual")
        self._vectors = VectorStore(vectors_path, embedder.model_id, embedder.dim)
        self._announce()

    # -- set-up
    def _check_marker(self) -> None:
        assert self.path is not None
        marker = self.path / "engine.json"
        wanted = {"engine": "tantivy+numpy", "schema": SCHEMA_VERSION, "tantivy": _TANTIVY_VERSION}
        if marker.exists():
            found = json.loads(marker.read_text())
            if found.get("schema") != SCHEMA_VERSION:
                raise RuntimeError(f"the search index in {self.path} has schema {found.get('schema')}, this code "
                                   f"needs {SCHEMA_VERSION}: delete the directory and re-index")
        else:
            marker.write_text(json.dumps(wanted))

    def _announce(self) -> None:
        global _announced
        if not _announced:
            _announced = True
            logger.info("search engine: embedded tantivy + numpy, not OpenSearch (the local stand-in)",
                        extra={"search_path": str(self.path) if self.path else ":memory:",
                               "embedder": self.embedder.model_id, "tantivy": _TANTIVY_VERSION})

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        if self.path is None:
            yield
            return
        with open(self.path / "write.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[tantivy.IndexWriter]:
        """One change (or every change of a :meth:`batch`): both locks, fresh vectors, one tantivy
        writer; at the end the vectors are saved, then the text index is committed, and the writer is
        released.  On an error nothing is kept: the writer rolls back and the vectors are reloaded."""
        with self._lock:
            if self._writer is not None:  # inside batch(): the outermost block commits
                yield self._writer
                return
            with self._file_lock():
                self._vectors.refresh()
                self._index.reload()
                saved = self._vectors.checkpoint() if self.path is None else None
                writer = self._index.writer(self._heap, 1)
                self._writer = writer
                try:
                    yield writer
                    self._vectors.save()
                    writer.commit()
                except BaseException:
                    writer.rollback()
                    if saved is not None:
                        self._vectors.restore(saved)
                    else:
                        self._vectors.refresh(force=True)
                    raise
                finally:
                    self._writer = None
                    self._staged.clear()
                    writer.wait_merging_threads()  # releases tantivy's lock for other processes
                self._index.reload()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group changes into one commit and one vectors write (an SQS batch of the indexing worker; a
        full re-index): visible together when the block ends, none of them if it raises."""
        with self._writing():
            yield

    # -- reads of stored documents
    def _stored(self, query: Query, limit: int | None = None) -> list[dict[str, list[Any]]]:
        searcher = self._index.searcher()
        count = limit if limit is not None else max(1, searcher.num_docs)
        return [searcher.doc(address).to_dict() for _, address in searcher.search(query, count).hits]

    def _prd_sections(self, prd_id: str) -> list[SectionDoc]:
        """The PRD's sections (every version) as they stand, changes of the open batch included (the
        index's reader sees only what was committed)."""
        wiped, staged = self._staged.get(prd_id, (False, {}))
        by_version: dict[str, list[SectionDoc]] = {}
        if not wiped:
            for stored in self._stored(Query.term_query(self._schema, "prd_id", prd_id)):
                section = _section_of(stored)
                by_version.setdefault(section.version, []).append(section)
        by_version.update(staged)
        return [section for sections in by_version.values() for section in sections]

    def _stage(self, prd_id: str, version: str | None, sections: Sequence[SectionDoc]) -> None:
        """Remember a change for :meth:`_prd_sections` until the commit (``version=None``: the PRD was
        deleted)."""
        if version is None:
            self._staged[prd_id] = (True, {})
        else:
            wiped, staged = self._staged.get(prd_id, (False, {}))
            self._staged[prd_id] = (wiped, {**staged, version: list(sections)})

    # -- changes
    def _replace(self, sections: Sequence[SectionDoc], *, version: bool) -> None:
        prd_id = check_prd_sections(sections, version=version)
        sections = embed_sections(sections, self.embedder)
        members = frozenset(sections[0].members)
        ver = sections[0].version
        with self._writing() as writer:
            known = self._vectors.members.get(prd_id)
            if known is not None and known != members:  # members are PRD-wide: other versions follow
                others: dict[str, list[SectionDoc]] = {}
                for other in self._prd_sections(prd_id):
                    if other.version != ver:
                        others.setdefault(other.version, []).append(other.with_members(members))
                for other_version, docs in others.items():
                    for doc in docs:
                        writer.delete_documents_by_term("key", doc.key)
                        writer.add_document(_document(doc))
                    self._stage(prd_id, other_version, docs)
            writer.delete_documents_by_query(Query.boolean_query([
                (Occur.Must, Query.term_query(self._schema, "prd_id", prd_id)),
                (Occur.Must, Query.term_query(self._schema, "version", ver)),
            ]))
            current = [section.with_members(members) for section in sections]
            for section in current:
                writer.add_document(_document(section))
            self._stage(prd_id, ver, current)
            self._vectors.replace(prd_id, ver, sections)
            self._vectors.set_members(prd_id, members)

    def upsert_prd(self, sections: Sequence[SectionDoc]) -> None:
        self._replace(sections, version=False)

    def add_version(self, sections: Sequence[SectionDoc]) -> None:
        self._replace(sections, version=True)

    def delete_prd(self, prd_id: str) -> None:
        with self._writing() as writer:
            writer.delete_documents_by_term("prd_id", prd_id)
            self._stage(prd_id, None, ())
            self._vectors.delete(prd_id)

    def set_members(self, prd_id: str, members: Iterable[str]) -> None:
        wanted = frozenset(members)
        with self._writing() as writer:
            sections = self._prd_sections(prd_id)
            if not sections and prd_id not in self._vectors.members:
                return  # not indexed (yet), or deleted: the next upsert brings its members
            changed: dict[str, list[SectionDoc]] = {}
            for section in sections:
                writer.delete_documents_by_term("key", section.key)
                writer.add_document(_document(section.with_members(wanted)))
                changed.setdefault(section.version, []).append(section.with_members(wanted))
            for version, docs in changed.items():
                self._stage(prd_id, version, docs)
            self._vectors.set_members(prd_id, wanted)

    def stored_vectors(self, prd_id: str, versions: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The vectors of the PRD's indexed sections (of these versions, "" = current; None: every
        version) by sha256 of their passage text, so the indexing worker embeds only what changed."""
        wanted = None if versions is None else set(versions)
        self._refresh()
        with self._lock:
            rows = self._vectors.by_prd.get(prd_id, {})
            found: dict[str, np.ndarray] = {}
            for section in self._prd_sections(prd_id):
                row = rows.get(section.key)
                if row is not None and (wanted is None or section.version in wanted):
                    found[hashlib.sha256(section.passage().encode("utf-8")).hexdigest()] = row.vector
            return found

    # -- search
    def _refresh(self) -> None:
        with self._lock:
            self._index.reload()
            self._vectors.refresh()

    def _text_ranking(self, searcher: tantivy.Searcher, terms: _Terms, filters: Filters,
                      count: int) -> list[_Candidate]:
        scoring = text_query(self._schema, terms)
        if scoring is None:
            return []
        restrict = filter_query(self._schema, filters)
        query = scoring if restrict is None else Query.boolean_query([(Occur.Must, scoring), (Occur.Must, restrict)])
        hits = searcher.search(query, count).hits
        if not hits:
            return []
        keys = [searcher.doc(address).get_first("key") for _, address in hits]
        return [_Candidate(str(key), float(score), address) for (score, address), key in zip(hits, keys, strict=True)]

    def _vector_ranking(self, text: str, filters: Filters, count: int) -> list[_Candidate]:
        vector = self.embedder.embed_query(text)
        return [_Candidate(key, score) for key, score in self._vectors.search(vector, filters, count)]

    def search(self, query: SearchQuery) -> list[SearchHit]:
        started = time.perf_counter()
        self._refresh()
        searcher = self._index.searcher()  # one view of the index for the whole search (doc addresses)
        filters = filters_of(query)
        terms = analyze(query.parsed())
        count = candidates(query.limit)
        text = self._text_ranking(searcher, terms, filters, count) if query.mode is not Mode.SEMANTIC else []
        semantic = self._vector_ranking(query.text, filters, count) if query.mode is not Mode.TEXT else []
        if query.mode is Mode.TEXT:
            ranked = text
        elif query.mode is Mode.SEMANTIC:
            ranked = semantic
        else:
            by_key = {c.key: c for c in semantic}
            by_key.update({c.key: c for c in text})  # keep the text candidate (it has an address)
            fused = reciprocal_rank_fusion([[c.key for c in text], [c.key for c in semantic]])
            ranked = [_Candidate(key, score, by_key[key].address) for key, score in fused]
        best = best_per_group(ranked, lambda c: c.group, query.limit)
        hits = label_matches(self._hits(searcher, best, terms), (c.key for c in text), (c.key for c in semantic))
        logger.debug("search", extra={"mode": query.mode.value, "hits": len(hits),
                                      "ms": round((time.perf_counter() - started) * 1000, 2)})
        return hits

    # -- hits and snippets
    def _hits(self, searcher: tantivy.Searcher, best: Sequence[_Candidate], terms: _Terms) -> list[SearchHit]:
        if not best:
            return []
        docs: list[SectionDoc] = []
        kept: list[_Candidate] = []
        for candidate in best:
            if candidate.address is not None:
                stored = searcher.doc(candidate.address).to_dict()
            else:
                found = searcher.search(Query.term_query(self._schema, "key", candidate.key), 1).hits
                if not found:  # vectors ahead of text (another process mid-change): skip it
                    continue
                stored = searcher.doc(found[0][1]).to_dict()
            docs.append(_section_of(stored))
            kept.append(candidate)
        snippets = self._snippets(searcher, docs, terms)
        return [
            SearchHit(prd_id=doc.prd_id, title=doc.title, version=doc.version, section=doc.heading,
                      section_index=doc.index, score=candidate.score, snippet=snippet, updated_at=doc.updated_at)
            for doc, candidate, snippet in zip(docs, kept, snippets, strict=True)
        ]

    def _snippets(self, searcher: tantivy.Searcher, docs: Sequence[SectionDoc],
                  terms: _Terms) -> list[tuple[Segment, ...]]:
        """Snippets from tantivy's SnippetGenerator.  It highlights only plain terms (not the matches of
        fuzzy or prefix queries), so the highlight query is built from the words of these sections that
        the query matched, found with the same analyzer; its HTML is never used: the fragment and the
        highlighted byte ranges become plain-text segments."""
        fold = analyzers().fold
        wanted, prefixes, fuzzy = terms.highlight_terms(), terms.prefixes, terms.fuzzy
        matched: set[str] = set()
        seen: set[str] = set()
        for doc in docs:
            for word in {token.text for token in fold.pre_tokenize(doc.text).tokens} - seen:
                seen.add(word)
                if (word in wanted or any(word.startswith(p) for p in prefixes)
                        or any(_within(word, term, d) for term, d in fuzzy)):
                    matched.add(word)
        generator = None
        if matched:
            highlight = _any_field([Query.term_query(self._schema, "body", w) for w in sorted(matched)])
            generator = tantivy.SnippetGenerator.create(searcher, highlight, self._schema, "body")
            generator.set_max_num_chars(SNIPPET_CHARS)
        grams = sorted({g for run in (*terms.cjk, *terms.cjk_phrases) for g in run})
        cjk_generator = None
        if grams:
            highlight = _any_field([Query.term_query(self._schema, "cjk_body", g) for g in grams])
            cjk_generator = tantivy.SnippetGenerator.create(searcher, highlight, self._schema, "cjk_body")
            cjk_generator.set_max_num_chars(SNIPPET_CHARS)
        out: list[tuple[Segment, ...]] = []
        for doc in docs:
            snippet: tuple[Segment, ...] = ()
            if cjk_generator is not None and has_cjk(doc.text):
                snippet = _segments(cjk_generator.snippet_from_doc(tantivy.Document(cjk_body=[doc.text])), doc.text)
            if not snippet and generator is not None:
                snippet = _segments(generator.snippet_from_doc(tantivy.Document(body=[doc.text])), doc.text)
            out.append(snippet or leading_snippet(doc.text))
        return out

    # -- counts
    def count(self) -> int:
        self._refresh()
        return int(self._index.searcher().num_docs)

    def stats(self) -> dict[str, object]:
        self._refresh()
        size = 0
        if self.path is not None:
            size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return {
            "engine": self.name, "documents": int(self._index.searcher().num_docs),
            "prds": len(self._vectors.members), "vectors": self._vectors.size,
            "embedder": self.embedder.model_id, "bytes": size,
            "path": str(self.path) if self.path else ":memory:",
        }


def _segments(snippet: tantivy.Snippet, text: str) -> tuple[Segment, ...]:
    """A tantivy snippet as plain-text segments: its fragment with the highlighted byte ranges (UTF-8
    offsets, converted to characters), "…" where the fragment cuts the text."""
    fragment = snippet.fragment()
    if not fragment or not snippet.highlighted():
        return ()
    raw = fragment.encode("utf-8")

    def chars(offset: int) -> int:
        return len(raw[:offset].decode("utf-8", errors="ignore"))

    ranges = [(chars(r.start), chars(r.end)) for r in snippet.highlighted()]
    segments = list(segments_from_ranges(fragment, ranges))
    window = snippet.fragment_range()
    if window.start > 0:
        segments.insert(0, ("… ", False))
    if window.end < len(text.encode("utf-8")):
        segments.append((" …", False))
    return tuple((" ".join(part.split("\n")), marked) for part, marked in segments)
