"""What is searched and how it is asked, independent of the engine (OpenSearch in AWS, tantivy locally).

**Documents.**  A PRD is indexed as one :class:`SectionDoc` per section: the heading and its own text up
to the next heading of any level (so a subsection is its own document, and the parent's document holds
only the text above it).  Content before the first heading is a section with an empty heading and
level 0.  The current document has ``version == ""``; each version of the PRD (``"1.2.0"``) is indexed
again as its own set of sections, so "what did 1.2.0 say about pricing" is a query, not a git checkout.
Every section carries the PRD's metadata (title, owner, members, status, tags, ``updated_at``) so an
engine can filter on it in the query itself, and one embedding (a unit vector of the embedder's size:
384 floats locally) computed from :meth:`SectionDoc.passage` by an
:class:`~prdtool.search.embeddings.Embedder`.

**Members** are the usernames that may read the PRD (every role: owner, editor, commenter, viewer).
Permission is a filter inside the engine's query, never a pass over its results: a hit the caller may
not read is never ranked, counted or returned.  Org admins do **not** bypass membership in search: an
admin finds PRDs they are a member of, like anyone else, unless they ask for ``all_prds`` (as
``GET /api/prds?scope=all`` does for the list).  An API key limited to some PRDs (``prd_scope``)
narrows the search to those PRDs.

**Queries.**  Whatever the person types is text.  :func:`parse_text` turns it into words and quoted
phrases and nothing else: ``AND``, ``title:``, ``*``, ``~``, ``(``, ``\\`` and ``[`` are characters of
words (which an engine's analyzer then keeps or drops), never query syntax, so no input reaches an
engine's query parser as syntax.  The only markup understood is ``"a quoted phrase"`` (the words next to
each other, required) and a trailing ``*`` on a word (a prefix); the last word of the text is also
matched as a prefix (search as you type).

**Scores** are only comparable within one response: BM25 in text mode, cosine similarity in semantic
mode, reciprocal-rank-fusion score in hybrid mode.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..errors import PayloadTooLarge, Unprocessable

#: Dimensions of the local model's embeddings (multilingual-e5-small).  Titan v2 in AWS cannot give
#: 384 (only 256/512/1024): an engine takes its size from its embedder, not from this constant.
EMBEDDING_DIM = 384
#: A query longer than this (characters, after trimming) is refused with 413 ``query_too_long``.
MAX_QUERY_CHARS = 500
DEFAULT_LIMIT = 10
MAX_LIMIT = 50
#: The largest ``updated_after`` (epoch ms): 2**53, beyond which the engines' 64-bit fields and JSON's
#: numbers disagree (year 285,000 or so).
MAX_EPOCH_MS = 2**53
#: ``SearchQuery.version`` that searches the current document and every version.
ANY_VERSION = "*"
#: Characters of a section's text that go into its embedding (the rest is still searchable as text).
PASSAGE_CHARS = 2000
#: A heading longer than this is compared by its start in ``section=`` filters (OpenSearch refuses a
#: keyword over 32,766 bytes, which would make the whole PRD unindexable).
SECTION_TERM_CHARS = 200
#: The snippet's target length in characters.
SNIPPET_CHARS = 180


class Mode(StrEnum):
    TEXT = "text"
    SEMANTIC = "semantic"
    HYBRID = "hybrid"


if TYPE_CHECKING:  # numpy is not needed to build queries or read hits (the search route in AWS)
    import numpy as np

    Vector = np.ndarray  # shape (dim,), float32, unit length


# ----------------------------------------------------------------------------- documents
@dataclass(frozen=True)
class PrdMeta:
    """A PRD's searchable metadata, shared by all its sections and versions."""

    prd_id: str
    title: str
    owner: str
    members: frozenset[str]
    status: str = "draft"
    tags: tuple[str, ...] = ()
    updated_at: int = 0  # epoch milliseconds


@dataclass(frozen=True)
class Section:
    """One section of a Markdown document, before it becomes a search document."""

    index: int  # position in the document, from 0
    heading: str  # "" for the content before the first heading
    level: int  # 1-6; 0 for the content before the first heading
    text: str  # the section's own text (up to the next heading of any level), trimmed


@dataclass(frozen=True)
class SectionDoc:
    """One search document: a section of a PRD (current or one version) with the PRD's metadata."""

    prd_id: str
    version: str  # "" = the current document, else "1.2.0"
    index: int
    heading: str
    level: int
    text: str
    title: str
    owner: str
    members: frozenset[str]
    status: str = "draft"
    tags: tuple[str, ...] = ()
    updated_at: int = 0
    embedding: Vector | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        """Unique per section of a PRD version: ``<prd_id>/<version or "-">/<index>``."""
        return f"{self.prd_id}/{self.version or '-'}/{self.index}"

    @property
    def section_terms(self) -> tuple[str, ...]:
        """The values a ``section=`` filter matches (see :func:`section_terms`)."""
        return section_terms(self.heading)

    def passage(self) -> str:
        """The text embedded for this section (see :func:`passage_text`)."""
        return passage_text(self.title, self.heading, self.text)

    def with_members(self, members: Iterable[str]) -> SectionDoc:
        return _replace(self, members=frozenset(members))

    def with_embedding(self, embedding: Vector | None) -> SectionDoc:
        return _replace(self, embedding=embedding)


def _replace(doc: SectionDoc, **changes: Any) -> SectionDoc:
    from dataclasses import replace

    return replace(doc, **changes)


def passage_text(title: str, heading: str, text: str) -> str:
    """What a section's embedding is computed from: its heading and the start of its text — not the
    PRD's title, which would pull every section of a PRD toward the same point (on the relevance
    corpus, paraphrases found their section in the top 3 for 8 of 10 queries without the title and for
    5 of 10 with it).  A section without text (a bare heading, an empty PRD) is its title and heading."""
    heading, body = heading.strip()[:SECTION_TERM_CHARS], text.strip()[:PASSAGE_CHARS]
    if not body:
        return "\n".join(part for part in (title.strip(), heading) if part)
    return f"{heading}\n{body}" if heading else body


def split_sections(markdown: str) -> list[Section]:
    """The document's sections, in order: the text before the first heading (heading "", level 0,
    only when it holds text), then each top-level heading with its own text up to the next heading
    (of any level).  Headings come from markdown-it-py through :mod:`prdtool.ai.sections` (a ``#`` in
    a code fence is code; setext headings count)."""
    from ..ai.sections import spans  # CommonMark headings: one parser for the whole product

    found = spans(markdown)
    sections: list[Section] = []
    first = found[0].start if found else len(markdown)
    preamble = markdown[:first].strip()
    if preamble:
        sections.append(Section(0, "", 0, preamble))
    for position, span in enumerate(found):
        end = found[position + 1].start if position + 1 < len(found) else len(markdown)
        sections.append(Section(len(sections), span.title, span.level, markdown[span.body_start:end].strip()))
    return sections


def section_docs(meta: PrdMeta, markdown: str, *, version: str = "") -> list[SectionDoc]:
    """The search documents of one PRD version (``""``: current), at least one (an empty document is
    one empty section, so the PRD is still found by its title) — without embeddings (see
    :func:`prdtool.search.embeddings.embed_sections`)."""
    version = normalize_version(version) if version else ""
    sections = split_sections(markdown) or [Section(0, "", 0, "")]  # an empty PRD is still found by title
    return [
        SectionDoc(
            prd_id=meta.prd_id, version=version, index=s.index, heading=s.heading, level=s.level, text=s.text,
            title=meta.title, owner=meta.owner, members=frozenset(meta.members), status=meta.status,
            tags=tuple(meta.tags), updated_at=meta.updated_at,
        )
        for s in sections
    ]


def _normal(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def section_terms(heading: str) -> tuple[str, ...]:
    """What a ``section=`` filter compares: the heading with case and spacing normalised, and its
    standard key when it has one (``"KPIs"`` and ``"Success metrics"`` are both ``success-metrics``)."""
    from ..ai.sections import canonical

    terms = [_normal(heading)[:SECTION_TERM_CHARS]]  # a keyword, not prose: an engine refuses immense terms
    key = canonical(heading) if heading else None
    if key and key not in terms:
        terms.append(key)
    return tuple(terms)


def normalize_version(version: str) -> str:
    """``"v1.2.0"`` → ``"1.2.0"``; anything that is not a version raises 422 ``invalid_version``."""
    from ..versions.changes import parse_version

    try:
        major, minor, patch = parse_version(version)
    except ValueError as exc:
        raise Unprocessable("version must look like 1.2.0 (or v1.2.0), or be *", code="invalid_version") from exc
    return f"{major}.{minor}.{patch}"


# ----------------------------------------------------------------------------- queries
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class SearchQuery:
    """A validated search.  Construction validates: an empty query is 422 ``empty_query``, one longer
    than :data:`MAX_QUERY_CHARS` is 413 ``query_too_long``, a bad mode/version/limit is 422.

    ``version``: None = the current documents only; ``"1.2.0"`` (or ``"v1.2.0"``) = that version;
    ``"*"`` = the current documents and every version.  ``section`` keeps hits whose heading is that
    section (case-insensitive, or the same standard section: "KPIs" = "Success metrics").
    ``updated_after`` (epoch ms) keeps PRDs updated strictly after it.
    """

    text: str
    username: str
    mode: Mode = Mode.HYBRID
    section: str | None = None
    owner: str | None = None
    updated_after: int | None = None
    version: str | None = None
    limit: int = DEFAULT_LIMIT
    is_admin: bool = False
    all_prds: bool = False  # an org admin's explicit "search every PRD"; ignored for anyone else
    prd_scope: tuple[str, ...] = ()  # an API key's PRDs (empty: not limited)

    def __post_init__(self) -> None:
        text = _CONTROL.sub(" ", unicodedata.normalize("NFC", self.text or "")).strip()
        if not text:
            raise Unprocessable("the search query is empty", code="empty_query")
        if len(text) > MAX_QUERY_CHARS:
            raise PayloadTooLarge(f"the search query is longer than {MAX_QUERY_CHARS} characters",
                                  code="query_too_long")
        object.__setattr__(self, "text", text)
        try:
            object.__setattr__(self, "mode", Mode(self.mode))
        except ValueError as exc:
            raise Unprocessable("mode must be text, semantic or hybrid", code="invalid_mode") from exc
        if not self.username:
            raise ValueError("a search needs the caller's username")
        if self.version is not None and self.version != ANY_VERSION:
            object.__setattr__(self, "version", normalize_version(self.version))
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or not 1 <= self.limit <= MAX_LIMIT:
            raise Unprocessable(f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit")
        if self.updated_after is not None and (isinstance(self.updated_after, bool)
                                               or not 0 <= self.updated_after <= MAX_EPOCH_MS):
            raise Unprocessable("updated_after must be epoch milliseconds", code="invalid_updated_after")
        for name in ("section", "owner"):
            value = getattr(self, name)
            if value is not None:
                value = value.strip()
                if len(value) > 200:
                    raise Unprocessable(f"{name} is too long", code=f"invalid_{name}")
                object.__setattr__(self, name, value or None)

    @property
    def sees_everything(self) -> bool:
        """An org admin who explicitly asked for every PRD."""
        return self.is_admin and self.all_prds

    @property
    def section_terms(self) -> tuple[str, ...] | None:
        return section_terms(self.section) if self.section else None

    def parsed(self) -> ParsedText:
        return parse_text(self.text)


@dataclass(frozen=True)
class Word:
    text: str  # as typed (operators and punctuation included: the engine's analyzer decides)
    prefix: bool  # the last word of the query, or a word that ended with "*"


@dataclass(frozen=True)
class ParsedText:
    words: tuple[Word, ...]
    phrases: tuple[str, ...]  # quoted text, to match as consecutive words


_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "\uff02": '"'})


def parse_text(text: str) -> ParsedText:
    """Words and quoted phrases of a query; nothing else has meaning.  An unclosed quote is a
    character like any other (its words are plain words).  The last word is a prefix when the text
    does not end with a space or a closing quote, and any word ending in ``*`` is a prefix."""
    text = text.translate(_QUOTES)
    phrases: list[str] = []
    rest: list[str] = []
    parts = text.split('"')
    closed = len(parts) % 2 == 1  # an odd number of parts: every quote is closed
    for position, part in enumerate(parts):
        inside = position % 2 == 1 and (closed or position < len(parts) - 1)
        if inside:
            if part.strip():
                phrases.append(" ".join(part.split()))
            rest.append(" ")
        else:
            rest.append(part)
    plain = "".join(rest)
    raw = plain.split()
    typing = bool(raw) and not plain[-1:].isspace()  # a closed phrase at the end leaves a space
    words: list[Word] = []
    for position, item in enumerate(raw):
        star = item.endswith("*") and len(item.rstrip("*")) >= 2
        last = typing and position == len(raw) - 1
        words.append(Word(item.rstrip("*") if star else item, prefix=star or last))
    return ParsedText(tuple(words), tuple(phrases))


# ----------------------------------------------------------------------------- results
Segment = tuple[str, bool]  # (text, highlighted)


@dataclass(frozen=True)
class SearchHit:
    """One result: the best-matching section of one PRD version."""

    prd_id: str
    title: str
    version: str  # "" = current
    section: str  # the section's heading ("" for the text before the first heading)
    section_index: int
    score: float
    snippet: tuple[Segment, ...]  # plain text segments; highlighted ones matched the query
    updated_at: int
    #: Why it was found: "words" (the text ranking), "meaning" (only the vector ranking: it shares no
    #: word with the query — a semantic ranking always has a nearest section, so a client should say
    #: "closest by meaning" rather than "matches" when every hit is one), or "both".
    match: str = "words"

    @property
    def key(self) -> str:
        return f"{self.prd_id}/{self.version or '-'}/{self.section_index}"

    @property
    def snippet_text(self) -> str:
        return "".join(text for text, _ in self.snippet)

    def to_json(self) -> dict[str, Any]:
        """The HTTP shape (DESIGN 3.3): the snippet is a list of ``{"text", "highlight"}`` — plain text
        for the client to render as text nodes, never HTML."""
        return {
            "prdId": self.prd_id, "title": self.title, "section": self.section, "sectionIndex": self.section_index,
            "version": self.version, "score": round(float(self.score), 6), "updatedAt": self.updated_at,
            "snippet": [{"text": text, "highlight": marked} for text, marked in self.snippet],
            "match": self.match,
        }


def segments_from_ranges(text: str, ranges: Sequence[tuple[int, int]]) -> tuple[Segment, ...]:
    """Cut ``text`` into plain/highlighted segments; ``ranges`` are character offsets, may overlap
    (CJK n-grams do) and come in any order.  Adjacent segments of the same kind are merged."""
    merged: list[list[int]] = []
    for start, end in sorted((max(0, a), min(len(text), b)) for a, b in ranges):
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    segments: list[Segment] = []
    position = 0
    for start, end in merged:
        if start > position:
            segments.append((text[position:start], False))
        segments.append((text[start:end], True))
        position = end
    if position < len(text):
        segments.append((text[position:], False))
    return tuple(segments)


def leading_snippet(text: str, limit: int = SNIPPET_CHARS) -> tuple[Segment, ...]:
    """The start of a section's text, cut at a word boundary, without highlights (a semantic hit
    that shares no word with the query)."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return ((flat, False),) if flat else ()
    cut = flat.rfind(" ", 0, limit)
    return ((flat[: cut if cut > limit // 2 else limit] + " …", False),)
