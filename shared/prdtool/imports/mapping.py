"""Which headings of an imported document are which standard PRD sections, and what is missing.

:func:`map_sections` reads the Markdown :func:`prdtool.imports.extract.extract` produced (headings and
sections as :mod:`prdtool.ai.sections` defines them) and returns a :class:`MappingReport`:

- ``sections``: one :class:`SectionMatch` per heading (the document title excluded), in order, with
  the canonical key it means and how sure that is:

  ========== ===========================================================================
  confidence  when
  ========== ===========================================================================
  1.0         the heading *is* the schema's title or key ("Success metrics", "Non-goals")
  0.9         a known synonym (:data:`prdtool.ai.sections.SYNONYMS`: "KPIs", "Out of scope")
  0.6         one section's keywords appear in the heading ("Why we are doing this" → problem)
  0.4         keywords of several sections appear; the first in priority order is taken
  0.0         nothing matches (``key`` None)
  ========== ===========================================================================

  Keyword matches are only tried for headings at the document's section level (the shallowest level
  below the title): a "### Who can restore a cart" inside Requirements is part of Requirements, not
  a Target users section. ``words`` counts the heading's own text (up to the next heading of any
  level), as :func:`prdtool.ai.sections.content_words` counts words.
- ``intro``: the text between the title and the first section: its words and its role —
  ``"overview"`` when the document has no Overview section (the intro is the overview; it counts as
  the overview section in ``missing``), ``"preamble"`` when it has one, ``"none"`` when there is no
  intro text.
- ``missing``: the schema sections that are absent or thin, from :func:`prdtool.ai.sections.gaps`,
  corrected for what only this module knows: keyword-matched headings (confidence ≥ 0.6) and the
  intro standing in as the overview.

:meth:`MappingReport.to_report_json` is the import report of DESIGN §3.3 (``sections``, ``missing``,
``dropped``) plus ``title``, ``intro`` and ``warnings``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from prdtool.ai import sections as prd_sections

from .extract import Fidelity

EXACT, SYNONYM, KEYWORD, AMBIGUOUS = 1.0, 0.9, 0.6, 0.4
#: A keyword match at least this sure counts as the section being present.
PRESENT = KEYWORD

#: Keywords per key, in priority order (the more specific first: "non-goals" before "goals",
#: "user stories" before "users", "success metrics" before "goals").
_KEYWORDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (key, re.compile(pattern, re.IGNORECASE))
    for key, pattern in (
        ("non-goals", r"\bnon[- ]?goals?\b|\bout[- ]of[- ]scope\b|\bnot (?:in scope|doing|building|covered)\b|"
                      r"\bexclusions?\b"),
        ("open-questions", r"\bquestions?\b|\bunknowns?\b|\bunresolved\b|\btbd\b|\bopen issues?\b"),
        ("success-metrics", r"\bmetrics?\b|\bkpis?\b|\bmeasur\w*|\bsuccess\b"),
        ("user-stories", r"\bstor(?:y|ies)\b|\buse[- ]cases?\b|\bscenarios?\b|\bjourneys?\b|\bjobs? to be done\b"),
        ("users", r"\bpersonas?\b|\busers?\b|\baudiences?\b|\bcustomers?\b|\bsegments?\b"),
        ("requirements", r"\brequirements?\b|\bfeatures?\b|\bspec(?:ification)?s?\b|\bfunctional\b|"
                         r"\bcapabilit(?:y|ies)\b|\bmust[- ]haves?\b"),
        ("problem", r"\bproblems?\b|\bpain\b|\bwhy\b|\bchallenges?\b|\bopportunit(?:y|ies)\b|\bmotivation\b"),
        ("goals", r"\bgoals?\b|\bobjectives?\b|\boutcomes?\b|\baims?\b"),
        ("risks", r"\brisks?\b|\bmitigations?\b|\bassumptions?\b|\bdependenc(?:y|ies)\b|\bconcerns?\b"),
        ("timeline", r"\btimelines?\b|\bmilestones?\b|\broadmap\b|\bschedule\b|\bphases?\b|\blaunch\b|\brollout\b|"
                     r"\brelease plan\b"),
        ("overview", r"\boverview\b|\bsummary\b|\bbackground\b|\bcontext\b|\bintroduction\b|\bpurpose\b|"
                     r"\bvision\b"),
    )
)


@dataclass(frozen=True)
class SectionMatch:
    heading: str  # as written (whitespace collapsed)
    level: int
    key: str | None
    confidence: float
    words: int

    def to_json(self) -> dict[str, Any]:
        entry = prd_sections.schema_section("standard", self.key) if self.key else None
        return {"heading": self.heading, "level": self.level, "key": self.key,
                "standardTitle": entry.title if entry is not None else None, "confidence": self.confidence,
                "words": self.words}


@dataclass(frozen=True)
class MappingReport:
    title: str | None
    sections: tuple[SectionMatch, ...]
    intro: dict[str, Any]  # {"words": int, "role": "overview" | "preamble" | "none"}
    missing: tuple[dict[str, Any], ...]  # {"key", "title", "state": "missing" | "thin", "words", "min_words"}
    dropped: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def keys(self) -> dict[str, str]:
        """Heading → canonical key, for the headings that map (confidence ≥ 0.6)."""
        return {s.heading: s.key for s in self.sections if s.key is not None and s.confidence >= PRESENT}

    def to_report_json(self) -> dict[str, Any]:
        """The import report (DESIGN §3.3): ``{"sections", "missing", "dropped"}`` plus ``title``,
        ``intro`` and ``warnings``."""
        return {
            "sections": [s.to_json() for s in self.sections],
            "missing": [dict(m) for m in self.missing],
            "dropped": [dict(d) for d in self.dropped],
            "title": self.title,
            "intro": dict(self.intro),
            "warnings": list(self.warnings),
        }


def match_heading(heading: str, template: str = "standard") -> tuple[str | None, float]:
    """``(key, confidence)`` for one heading by its words alone (see the module docstring)."""
    key = prd_sections.canonical(heading)
    if key is not None:
        entry = prd_sections.schema_section(template, key)
        exact = prd_sections.same_heading(heading, key) or (
            entry is not None and prd_sections.same_heading(heading, entry.title))
        return key, EXACT if exact else SYNONYM
    found = [key for key, pattern in _KEYWORDS if pattern.search(heading)]
    if not found:
        return None, 0.0
    return found[0], KEYWORD if len(found) == 1 else AMBIGUOUS


def map_sections(markdown: str, template: str = "standard", *, report: Fidelity | None = None) -> MappingReport:
    """Map an imported document's headings to the ``template``'s sections (see the module docstring);
    ``report`` (from :func:`~prdtool.imports.extract.extract`) supplies ``dropped`` and ``warnings``."""
    spans = prd_sections.spans(markdown)
    title_span = prd_sections.title_span(markdown)
    body_spans = [span for span in spans if span is not title_span]
    section_level = min((span.level for span in body_spans), default=2)

    matches: list[SectionMatch] = []
    keyword_keys: dict[str, list[prd_sections.Span]] = {}
    for index, span in enumerate(spans):
        if span is title_span:
            continue
        own_end = spans[index + 1].start if index + 1 < len(spans) else len(markdown)
        words = prd_sections.content_words(markdown[span.body_start : own_end])
        key, confidence = match_heading(span.title, template)
        if confidence < SYNONYM and span.level > section_level:
            key, confidence = None, 0.0  # keywords only at the section level
        matches.append(SectionMatch(span.title, span.level, key, confidence, words))
        if key is not None and confidence >= PRESENT and span.key is None:
            keyword_keys.setdefault(key, []).append(span)

    intro_start = title_span.body_start if title_span is not None else 0
    intro_end = body_spans[0].start if body_spans else len(markdown)
    intro_words = prd_sections.content_words(markdown[intro_start:intro_end]) if intro_end > intro_start else 0
    has_overview = any(m.key == "overview" and m.confidence >= PRESENT for m in matches)
    role = "none" if intro_words == 0 else ("preamble" if has_overview else "overview")

    missing: list[dict[str, Any]] = []
    for gap in prd_sections.gaps(markdown, template):
        # candidates the canonical analysis cannot see: keyword-matched headings, the intro as overview
        candidates = [(prd_sections.content_words(span.body(markdown)), span.title)
                      for span in keyword_keys.get(gap.key, [])]
        if gap.key == "overview" and role == "overview":
            candidates.append((intro_words, "(introduction)"))
        if gap.state == "thin":
            candidates.append((gap.words, gap.title))
        if not candidates:
            missing.append({"key": gap.key, "title": gap.title, "state": "missing", "words": 0,
                            "min_words": gap.min_words})
            continue
        words, title = max(candidates, key=lambda item: item[0])
        if words < gap.min_words:
            missing.append({"key": gap.key, "title": title, "state": "thin", "words": words,
                            "min_words": gap.min_words})

    return MappingReport(
        title=title_span.title if title_span is not None else None,
        sections=tuple(matches),
        intro={"words": intro_words, "role": role},
        missing=tuple(missing),
        dropped=tuple(dict(item) for item in (report.dropped if report else [])),
        warnings=tuple(report.warnings if report else ()),
    )
