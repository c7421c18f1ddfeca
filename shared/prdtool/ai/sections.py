"""PRD sections for AI jobs: where a section is, what it is, what is missing, and how to edit it.

A section is a heading and everything after it up to the next heading of the same or a higher level
(so a section includes its subsections).  Headings come from a real CommonMark parser
(markdown-it-py, as in :mod:`prdtool.versions.changes`): a ``#`` inside a code fence is code, and a
setext heading (``Title`` over ``===``/``---``) is a heading.  Only *top-level* headings count: a
heading inside a block quote or a list item is part of that block, not a section boundary (editing
"its body" would break the container).

Offsets are Python ``str`` indexes (characters, not bytes) into the Markdown exactly as given — CRLF
line endings and non-ASCII text included.  Every ``start``/``body_start``/``end`` is the start of a
line or ``len(markdown)``.

The **document title** is the first heading when it is a level-1 heading and no other level-1
heading exists (``# Checkout redesign`` above ``## Overview`` …); it is not a section of the PRD
schema (:func:`gaps` and :func:`insertion_point` ignore it, :func:`find` tries it last).

Edits are returned as exact text edits — ``(start, end, replacement)`` against the old text — so the
caller can apply them to a collaborative document; everything outside ``[start, end)`` stays
byte-identical.  Inserted and replaced sections keep exactly one blank line between the heading and
the body and before the next heading, and use the document's line ending (CRLF when its first line
ends with CRLF).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from prdtool.prds.templates import STANDARD_SECTIONS

# ----------------------------------------------------------------------------- canonical keys
#: Standard section keys and the headings (synonyms) that mean them.  Headings are compared after
#: :func:`_compact` (case, punctuation, spacing, "&"/"and", numbering like "2." and a trailing
#: parenthetical such as "(draft)" ignored), so "Non-goals", "NON GOALS" and "3. Non goals" are the
#: same heading.  Each key's own spelling ("success-metrics") is a synonym too.
#:
#: Decisions: "non-functional requirements" and "specification" are requirements (the standard hint
#: asks for functional *and* non-functional requirements in one section); "goals and non-goals" counts
#: as goals; "FAQ" is not "open questions" (a FAQ holds answers), and "scope" alone is ambiguous
#: (in scope or out of scope?), so neither maps to anything.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "overview": ("overview", "summary", "executive summary", "introduction", "intro", "background",
                 "context", "tl;dr", "tldr", "abstract"),
    "problem": ("problem", "problem statement", "the problem", "pain points", "customer problem",
                "user problem", "problem definition", "why"),
    "goals": ("goals", "objectives", "goals and objectives", "aims", "goals and non-goals"),
    "non-goals": ("non-goals", "non goals", "out of scope", "not in scope", "scope exclusions",
                  "what we are not doing"),
    "users": ("users", "target users", "personas", "user personas", "audience", "target audience",
              "customers", "target customers", "who is this for", "who it is for"),
    "user-stories": ("user stories", "stories", "use cases", "user scenarios", "scenarios",
                     "jobs to be done", "jtbd", "user journeys"),
    "requirements": ("requirements", "functional requirements", "non-functional requirements",
                     "product requirements", "specification", "specifications", "functional specification",
                     "features"),
    "success-metrics": ("success metrics", "metrics", "kpis", "kpi", "measures of success", "success criteria",
                        "measuring success", "how we measure success", "key metrics"),
    "risks": ("risks", "risks and mitigations", "risks & mitigations", "assumptions and risks",
              "risks and assumptions", "risks and dependencies", "dependencies and risks", "risk"),
    "timeline": ("timeline", "milestones", "schedule", "roadmap", "release plan", "rollout plan",
                 "launch plan", "rollout", "phases"),
    "open-questions": ("open questions", "questions", "unresolved questions", "open issues"),
}

_NUMBERING = re.compile(r"^\s*(?:\d+(?:\.\d+)*[.):]?|[A-Za-z][.)]|[ivxIVX]+[.)])\s+")
_PARENTHETICAL = re.compile(r"\s*\([^()]*\)\s*$")
_NOT_ALNUM = re.compile(r"[\W_]+")


def _compact(title: str) -> str:
    """A heading reduced to its letters and digits, for comparison: ``"2. Non-Goals (v1)"`` → ``nongoals``."""
    text = unicodedata.normalize("NFKC", title).strip()
    text = _NUMBERING.sub("", text)
    text = _PARENTHETICAL.sub("", text) or text
    text = text.casefold().replace("&", " and ").replace("+", " and ")
    return _NOT_ALNUM.sub("", text)


_LOOKUP: dict[str, str] = {
    _compact(phrase): key for key, phrases in SYNONYMS.items() for phrase in (key, *phrases)
}


def same_heading(a: str, b: str) -> bool:
    """Whether two headings are the same words (case, punctuation, spacing and numbering ignored)."""
    compact_a, compact_b = _compact(a), _compact(b)
    if compact_a or compact_b:
        return compact_a == compact_b
    return _normal(a) == _normal(b)  # headings without letters or digits (emoji only …)


def canonical(title: str) -> str | None:
    """The standard key a heading means (``"Risks & Mitigations"`` → ``"risks"``), or None."""
    compact = _compact(title)
    return _LOOKUP.get(compact) if compact else None


# ----------------------------------------------------------------------------- spans
@dataclass(frozen=True)
class Span:
    title: str  # the heading's text as written (whitespace collapsed)
    key: str | None  # canonical(title)
    level: int  # 1-6
    start: int  # offset of the heading's first line
    body_start: int  # offset just after the heading line(s) (after the underline of a setext heading)
    end: int  # offset of the next heading of the same or a higher level, or len(markdown)

    def body(self, markdown: str) -> str:
        """The section's text after its heading, subsections included."""
        return markdown[self.body_start : self.end]


@cache
def block_parser() -> Any:
    """markdown-it-py's CommonMark parser, block structure only (inline rules off: headings' inline
    tokens keep their ``content`` but get no children)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").disable("inline")


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _line_starts(text: str) -> list[int]:
    """Offsets of the starts of the lines as markdown-it numbers them (it turns CRLF and CR into LF)."""
    return [0, *(m.end() for m in _LINE_BREAK.finditer(text))]


@dataclass(frozen=True)
class _Parsed:
    spans: tuple[Span, ...]
    open_fence: str | None  # the closing fence the text needs when it ends inside a code fence


@lru_cache(maxsize=4)  # a job parses the same document several times; documents can be megabytes
def _parse(markdown: str) -> _Parsed:
    tokens = block_parser().parse(markdown)
    starts = _line_starts(markdown)

    def offset(line: int) -> int:
        return starts[line] if line < len(starts) else len(markdown)

    found: list[tuple[str, int, int, int]] = []  # (title, level, start, body_start)
    last_top: Any = None
    for index, token in enumerate(tokens):
        if token.level == 0 and token.map is not None:
            last_top = token
        if token.type == "heading_open" and token.level == 0 and token.map is not None:
            content = tokens[index + 1].content if index + 1 < len(tokens) else ""
            found.append((" ".join(content.split()), int(token.tag[1:]), offset(token.map[0]), offset(token.map[1])))
    ends = [len(markdown)] * len(found)
    open_spans: list[int] = []  # indexes of the sections still open, levels increasing
    for position, (_, level, start, _) in enumerate(found):
        while open_spans and found[open_spans[-1]][1] >= level:
            ends[open_spans.pop()] = start
        open_spans.append(position)
    spans = [
        Span(title, canonical(title), level, start, body_start, end)
        for (title, level, start, body_start), end in zip(found, ends, strict=True)
    ]
    open_fence = None
    if last_top is not None and last_top.type == "fence":  # closed by its last line, or by the end of the text
        lines = _LINE_BREAK.split(markdown[offset(last_top.map[0]) : offset(last_top.map[1])].rstrip("\r\n"))
        closer = lines[-1].strip() if len(lines) >= 2 else ""
        marker = last_top.markup
        if not (closer.startswith(marker) and closer == marker[0] * len(closer)):
            open_fence = marker
    return _Parsed(tuple(spans), open_fence)


def spans(markdown: str) -> list[Span]:
    """The document's (top-level) headings, in order, each with the extent of its section."""
    return list(_parse(markdown).spans)


def _title_span(found: tuple[Span, ...] | list[Span]) -> Span | None:
    if found and found[0].level == 1 and not any(s.level == 1 for s in found[1:]):
        return found[0]
    return None


def title_span(markdown: str) -> Span | None:
    """The document title: the first heading, when it is the only level-1 heading; else None."""
    return _title_span(_parse(markdown).spans)


def _sections(markdown: str) -> list[Span]:
    """The spans that are sections (the document title excluded)."""
    found = _parse(markdown).spans
    title = _title_span(found)
    return [s for s in found if s is not title]


def _normal(title: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", title).casefold().split())


def find(markdown: str, name: str) -> Span | None:
    """The section the person means by ``name``: the first whose title is ``name`` (case and spacing
    ignored), else the first whose canonical key is ``name``'s (``"KPIs"`` finds "Success metrics"),
    else the document title if it is ``name``; None when nothing matches."""
    wanted = _normal(name)
    sections = _sections(markdown)
    for span in sections:
        if _normal(span.title) == wanted:
            return span
    key = canonical(name)
    if key is not None:
        for span in sections:
            if span.key == key:
                return span
    title = title_span(markdown)
    if title is not None and _normal(title.title) == wanted:
        return title
    return None


# ----------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class SchemaSection:
    key: str
    title: str  # the title a new section gets
    guidance: str  # what a good section contains (shown to the model and to people)
    min_words: int  # fewer words than this is "thin"


_HINTS: dict[str, str] = {key: hint for heading, hint in STANDARD_SECTIONS if (key := canonical(heading))}

STANDARD_SCHEMA: tuple[SchemaSection, ...] = (
    SchemaSection("overview", "Overview",
                  f"{_HINTS['overview']} State the change, who it is for and why it matters now, so a "
                  "reader who stops here knows what is being built.", 30),
    SchemaSection("problem", "Problem",
                  f"{_HINTS['problem']} Describe the current situation and its cost, not the solution.", 30),
    SchemaSection("users", "Target users",
                  "Who has the problem and who will use the solution: the primary personas or segments, "
                  "their context and what they need; say who is not targeted.", 15),
    SchemaSection("goals", "Goals",
                  f"{_HINTS['goals']} A short list of outcomes, each specific enough that you could tell "
                  "whether it was reached.", 15),
    SchemaSection("non-goals", "Non-goals",
                  f"{_HINTS['non-goals']} List what is out of scope, and why, so nobody assumes it is "
                  "included.", 10),
    SchemaSection("user-stories", "User stories",
                  "User stories in the form 'As a <role>, I want <capability> so that <benefit>.', one "
                  "per bullet, covering the main users and the key journeys.", 20),
    SchemaSection("requirements", "Requirements",
                  f"{_HINTS['requirements']} Number them, mark priority (must / should / could) and "
                  "include non-functional needs such as performance, security and accessibility.", 40),
    SchemaSection("success-metrics", "Success metrics",
                  f"{_HINTS['success-metrics']} Prefer a few measurable metrics, including a guardrail "
                  "metric that must not get worse.", 15),
    SchemaSection("risks", "Risks and mitigations",
                  "What could go wrong — delivery, technical, legal, adoption — and the assumptions the "
                  "plan relies on; give each risk its likelihood, impact and mitigation.", 20),
    SchemaSection("timeline", "Timeline",
                  "Milestones and phases from first release to general availability, with target dates "
                  "or relative durations and their dependencies.", 15),
    SchemaSection("open-questions", "Open questions",
                  "Unresolved questions that block or shape the work, one per bullet: question - owner - "
                  "due date.", 10),
)

#: The schema of each PRD template (``prdtool.prds.templates.TEMPLATES``): both use the standard PRD
#: structure — a blank PRD is measured against the same sections a standard one starts with.
SCHEMAS: dict[str, tuple[SchemaSection, ...]] = {"standard": STANDARD_SCHEMA, "blank": STANDARD_SCHEMA}


def schema(template: str) -> tuple[SchemaSection, ...]:
    """The sections a PRD made from ``template`` should have, in order (unknown → standard)."""
    return SCHEMAS.get(template, STANDARD_SCHEMA)


def schema_section(template: str, key: str) -> SchemaSection | None:
    """The schema entry of ``key`` (a canonical key) in ``template``'s schema, or None."""
    return next((s for s in schema(template) if s.key == key), None)


def guidance(template: str, title: str) -> str:
    """The guidance for the section titled ``title`` (by canonical key; a key works too), or ""."""
    key = canonical(title)
    entry = schema_section(template, key) if key else None
    return entry.guidance if entry else ""


# ----------------------------------------------------------------------------- gaps
@dataclass(frozen=True)
class Gap:
    key: str
    title: str  # missing: the schema's title; thin: the section's title as written in the document
    state: str  # "missing" | "thin"
    words: int  # words of real content (0 when missing, or when the body is only the template's hint)
    min_words: int


_WORD = re.compile(r"\w+")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_ANGLE = re.compile(r"<[^<>\n]{1,60}>")  # <role>-style placeholders and HTML tags are not words
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def _hint_line(line: str) -> str:
    return " ".join(_BULLET.sub("", line).casefold().split())


_HINT_LINES = frozenset(
    normal for _, hint in STANDARD_SECTIONS for line in hint.splitlines() if (normal := _hint_line(line))
)


def content_words(body: str) -> int:
    """Words of real content in a section body: lines that are a template writing hint (bullet marker
    and spacing ignored), HTML comments and ``<placeholder>``/HTML tags do not count."""
    text = _COMMENT.sub(" ", body)
    kept = [line for line in _LINE_BREAK.split(text) if _hint_line(line) not in _HINT_LINES]
    return len(_WORD.findall(_ANGLE.sub(" ", "\n".join(kept))))


def gaps(markdown: str, template: str = "standard") -> list[Gap]:
    """The schema sections the document lacks ("missing") or has with too little content ("thin":
    fewer than ``min_words`` words, a template hint counting as none), in schema order.  When several
    sections map to one key the one with the most words is measured."""
    by_key: dict[str, list[Span]] = {}
    for span in _sections(markdown):
        if span.key is not None:
            by_key.setdefault(span.key, []).append(span)
    found: list[Gap] = []
    for entry in schema(template):
        candidates = by_key.get(entry.key)
        if not candidates:
            found.append(Gap(entry.key, entry.title, "missing", 0, entry.min_words))
            continue
        words, best = max(((content_words(s.body(markdown)), s) for s in candidates), key=lambda item: item[0])
        if words < entry.min_words:
            found.append(Gap(entry.key, best.title, "thin", words, entry.min_words))
    return found


# ----------------------------------------------------------------------------- edits
def _newline(markdown: str) -> str:
    """The document's line ending: CRLF when its first line ends with CRLF, else LF."""
    match = _LINE_BREAK.search(markdown)
    return "\r\n" if match is not None and match.group() == "\r\n" else "\n"


def insertion_point(markdown: str, key: str, template: str = "standard") -> tuple[int, int]:
    """``(offset, level)`` where the missing section ``key`` goes, following the schema's order.

    The offset is the ``end`` of the nearest *preceding* schema section present in the document (after
    its subsections), else the ``start`` of the nearest *following* one, else ``len(markdown)``; it is
    always a line start or ``len(markdown)``.  The level is that neighbour's, or 2 with no neighbour
    (a PRD's sections sit under its level-1 title).  Insert with :func:`section_markdown` (or use
    :func:`insert_section`), which adds the blank lines the surrounding text needs.
    """
    order = [s.key for s in schema(template)]
    if key not in order:
        raise ValueError(f"{key!r} is not a section of the {template!r} template")
    present: dict[str, Span] = {}
    for span in _sections(markdown):
        if span.key is not None and span.key != key:
            present.setdefault(span.key, span)
    index = order.index(key)
    for before in reversed(order[:index]):
        if before in present:
            return present[before].end, present[before].level
    for after in order[index + 1 :]:
        if after in present:
            return present[after].start, present[after].level
    return len(markdown), 2


_TRAILING_BREAK = re.compile(r"(?:\r\n|\r|\n)\Z")
_BLANK_TAIL = re.compile(r"(?:\r\n|\r(?!\n)|\n)[ \t]*(?:\r\n|\r|\n)\Z")  # a line break, then a blank line
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*(?:\r\n|\r|\n))+")


def _separator(before: str, nl: str) -> str:
    """What goes between ``before`` and a new block so that a blank line separates them."""
    if not before:
        return ""
    if not before.endswith(("\n", "\r")):
        return nl if not before.strip() else nl + nl
    if not before.strip() or _BLANK_TAIL.search(before):
        return ""
    return nl


def _tidy(body: str, nl: str) -> str:
    """The body without leading blank lines and trailing whitespace, with ``nl`` line endings, and a
    closing fence appended when it would leave a code fence open (swallowing the next sections)."""
    text = _LEADING_BLANK_LINES.sub("", body).rstrip()
    if not text:
        return ""
    fence = _parse(text).open_fence
    if fence is not None:
        text += "\n" + fence
    return _LINE_BREAK.sub(nl, text) if nl != "\n" or "\r" in text else text


def _heading(title: str, level: int) -> str:
    text = " ".join(title.split())
    text = re.sub(r"(^|\s)(#+)$", lambda m: m.group(1) + "\\" + m.group(2), text)  # not a closing sequence
    return "#" * max(1, min(level, 6)) + (" " + text if text else "")


def section_markdown(title: str, level: int, body: str, *, before: str, after: str, newline: str = "\n") -> str:
    """The text of a new section to insert between ``before`` and ``after`` (the document's text before
    and after a line-start offset): a blank line before it (unless it starts the document), the
    heading, a blank line, the body (tidied as in :func:`replace_body`), and a blank line before
    ``after`` when ``after`` is not empty (the text then ends with a single newline otherwise).  When
    ``before`` ends inside an open code fence (only possible at the end of a document), the fence is
    closed first."""
    nl = newline
    prefix = _separator(before, nl)
    if not after and before:
        fence = _parse(before).open_fence
        if fence is not None:
            prefix = ("" if before.endswith(("\n", "\r")) else nl) + fence + nl + nl
    text = _tidy(body, nl)
    section = _heading(title, level) + nl + (nl + text + nl if text else "")
    return prefix + section + (nl if after else "")


def insert_section(
    markdown: str, key: str, title: str, body: str, template: str = "standard"
) -> tuple[str, int, str]:
    """Insert a new section ``key`` (the caller checked it is missing) titled ``title`` at its
    :func:`insertion_point`.  Returns ``(new_markdown, offset, inserted_text)``: the edit is "insert
    ``inserted_text`` at ``offset``"; ``new_markdown == markdown[:offset] + inserted_text +
    markdown[offset:]``."""
    offset, level = insertion_point(markdown, key, template)
    before, after = markdown[:offset], markdown[offset:]
    text = section_markdown(title, level, body, before=before, after=after, newline=_newline(markdown))
    return before + text + after, offset, text


def insert_sections(
    markdown: str, items: list[tuple[str, str, str]] | tuple[tuple[str, str, str], ...], template: str = "standard"
) -> tuple[str, list[tuple[int, str]]]:
    """Insert several missing sections, ``items`` being ``(key, title, body)``: each goes to its
    :func:`insertion_point` in the original text, and sections that share one are placed in schema
    order with the right blank lines between them (an open fence at the end is closed once).  Returns
    ``(new_markdown, edits)``: one ``(offset, inserted_text)`` per distinct offset of the original
    text, in increasing order — apply them from the last to the first, or use ``new_markdown``."""
    order = {entry.key: index for index, entry in enumerate(schema(template))}
    placed = []
    for key, title, body in items:
        offset, level = insertion_point(markdown, key, template)
        placed.append((offset, order[key], level, title, body))
    placed.sort(key=lambda item: (item[0], item[1]))
    nl = _newline(markdown)
    texts: dict[int, str] = {}
    for offset, _, level, title, body in placed:
        done = texts.get(offset, "")
        before, after = markdown[:offset] + done, markdown[offset:]
        texts[offset] = done + section_markdown(title, level, body, before=before, after=after, newline=nl)
    edits = sorted(texts.items())
    parts: list[str] = []
    position = 0
    for offset, text in edits:
        parts += [markdown[position:offset], text]
        position = offset
    parts.append(markdown[position:])
    return "".join(parts), edits


def replace_body(markdown: str, span: Span, body: str) -> tuple[str, int, int, str]:
    """Replace the body of ``span`` (subsections included) with ``body``.

    Returns ``(new_markdown, start, end, replacement)``: the edit replaces ``markdown[start:end]``
    (``start == span.body_start``, ``end == span.end``) with ``replacement``; nothing else changes.
    The new body is ``body`` without leading blank lines and trailing whitespace, in the document's
    line endings (plus a closing fence if it leaves one open); it follows the heading after exactly
    one blank line and is followed by exactly one blank line before the next heading (or by a single
    newline at the end of the document).  An empty body leaves the heading alone, with a blank line
    before the next heading.  Headings in ``body`` at the section's level or higher would end the
    section early: see :func:`nest_headings`.
    """
    nl = _newline(markdown)
    start, end = span.body_start, span.end
    text = _tidy(body, nl)
    heading_ended = start > span.start and markdown[start - 1] in "\r\n"
    after = markdown[end:]
    if text:
        replacement = (nl if heading_ended else nl + nl) + text + nl + (nl if after else "")
    else:
        replacement = nl if after and heading_ended else (nl + nl if after else "")
    return markdown[:start] + replacement + after, start, end, replacement


def nest_headings(body: str, level: int) -> str:
    """``body`` with its top-level headings shifted down so the highest becomes ``level + 1`` (capped
    at 6) — so that, as the body of a level-``level`` section, its headings are subsections.  Setext
    headings are rewritten as ATX headings; all other text is unchanged.  Returns ``body`` as is when
    no heading needs moving."""
    found = _parse(body).spans
    if not found:
        return body
    shift = level + 1 - min(s.level for s in found)
    if shift <= 0:
        return body
    parts: list[str] = []
    position = 0
    for span in found:
        head = body[span.start : span.body_start]
        ending = _TRAILING_BREAK.search(head)
        newline = ending.group() if ending else ""
        new_level = min(span.level + shift, 6)
        stripped = head.lstrip(" ")
        if stripped.startswith("#"):  # ATX: replace the opening sequence only
            indent = head[: len(head) - len(stripped)]
            new_head = indent + "#" * new_level + stripped.lstrip("#")
        else:  # setext
            new_head = _heading(span.title, new_level) + newline
        parts.append(body[position : span.start] + new_head)
        position = span.body_start
    parts.append(body[position:])
    return "".join(parts)
