"""PRD sections for AI jobs: spans, canonical keys, gaps, insertion points and exact text edits."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prdtool.ai import sections
from prdtool.ai.sections import Span
from prdtool.prds import templates

COMPLETE = """# Checkout redesign

## Overview

We are rebuilding the checkout of the web shop so that returning customers can pay in one step. The
current flow loses a fifth of the people who start it, and the holiday season starts in ten weeks, so
this is the most valuable change we can ship this quarter.

## Problem

Customers abandon the checkout because it asks for their address and card on every purchase, even
when they bought last week. Support receives around 300 tickets a month about failed payments, and
the abandonment rate on mobile is 38 percent against 21 percent on desktop.

## Target users

Returning customers on mobile who buy at least twice a year; new customers are not the focus of this
release but must not get a worse flow.

## Goals

- Cut checkout abandonment on mobile from 38 to 25 percent.
- Let returning customers pay in a single step with a saved card.
- Halve payment-related support tickets.

## Non-goals

- A new payment provider: we keep the current one.
- Changes to the basket page or to shipping options.

## User stories

- As a returning customer, I want my saved card to be preselected so that I can pay with one tap.
- As a customer on mobile, I want the address form to autofill so that I do not type on a small screen.
- As a support agent, I want to see why a payment failed so that I can answer quickly.

## Requirements

1. Saved cards are offered to signed-in customers, the most recent one preselected (must).
2. Address fields support browser autofill and postcode lookup (must).
3. A failed payment shows the provider's reason in plain words and offers a retry (must).
4. The page loads in under two seconds on a mid-range phone over 4G (should).
5. The flow meets WCAG 2.1 AA, including screen-reader labels on every field (must).

## Success metrics

- Mobile checkout abandonment: baseline 38 percent, target 25 percent by the end of Q4.
- Payment tickets per month: baseline 300, target 150.
- Guardrail: desktop conversion does not drop.

## Risks and mitigations

- Saved cards raise fraud concerns: we require the card's security code above 200 euros.
- Autofill may fill wrong fields on old browsers: we test the top ten browsers before launch.

## Timeline

- Week 2: design review.
- Week 6: beta for ten percent of mobile traffic.
- Week 9: general availability before the holiday season.

## Open questions

- Do we keep guest checkout on the same page? - Maria - next Friday
- Which browsers drop out of support? - Sam - end of month
"""


def _titles(found: list[Span]) -> list[tuple[str, int]]:
    return [(s.title, s.level) for s in found]


# ----------------------------------------------------------------------------- spans
def test_spans_atx_setext_and_nesting() -> None:
    md = "Intro line\n\nTitle\n=====\n\n## A\n\ntext a\n\n### A1\n\nsub\n\nB section\n---------\n\nb text\n"
    found = sections.spans(md)
    assert _titles(found) == [("Title", 1), ("A", 2), ("A1", 3), ("B section", 2)]
    title, a, a1, b = found
    assert md[title.start : title.body_start] == "Title\n=====\n"
    assert (title.end, a.end, a1.end, b.end) == (len(md), md.index("B section"), md.index("B section"), len(md))
    assert a.body(md) == "\ntext a\n\n### A1\n\nsub\n\n"  # the subsection is part of the section
    assert a1.body(md) == "\nsub\n\n"
    assert b.body(md) == "\nb text\n"
    assert a.key is None and b.key is None


def test_hash_inside_code_fences_and_containers_is_not_a_heading() -> None:
    md = ("## Real\n\n```bash\n# not a heading\n```\n\n~~~\n## nor this\n~~~\n\n"
          "    # indented code\n\n> # quoted\n\n- # in a list\n")
    found = sections.spans(md)
    assert _titles(found) == [("Real", 2)]
    assert found[0].end == len(md)


def test_crlf_offsets_are_string_indexes() -> None:
    md = "# T\r\n\r\n## Goals\r\n\r\nGrow.\r\n\r\nSetext\r\n---\r\nx\r\n"
    found = sections.spans(md)
    assert _titles(found) == [("T", 1), ("Goals", 2), ("Setext", 2)]
    goals, setext = found[1], found[2]
    assert md[goals.start : goals.body_start] == "## Goals\r\n"
    assert goals.body(md) == "\r\nGrow.\r\n\r\n"
    assert md[setext.start : setext.body_start] == "Setext\r\n---\r\n"
    assert setext.body(md) == "x\r\n"


def test_non_ascii_offsets_are_characters_not_bytes() -> None:
    md = "# Café 🚀\n\nÜber naïve — 日本語\n\n## Goals 🎯\n\nMehr Umsatz.\n"
    found = sections.spans(md)
    assert _titles(found) == [("Café 🚀", 1), ("Goals 🎯", 2)]
    assert found[1].start == md.index("## Goals")
    assert found[1].body(md) == "\nMehr Umsatz.\n"
    assert found[1].key == "goals"


def test_empty_document_and_title_only() -> None:
    assert sections.spans("") == []
    assert sections.spans("just text\n") == []
    md = templates.render("blank", "Only a title")
    (title,) = sections.spans(md)
    assert (title.title, title.level, title.start) == ("Only a title", 1, 0)
    assert title.body_start == title.end == len(md)
    assert sections.title_span(md) == title


def test_heading_at_end_without_newline() -> None:
    md = "text\n\n## Last"
    (last,) = sections.spans(md)
    assert (last.start, last.body_start, last.end) == (6, len(md), len(md))
    assert last.body(md) == ""


def test_title_span_only_when_single_h1_first() -> None:
    assert sections.title_span("# A\n\n## B\n") is not None
    assert sections.title_span("# A\n\n# B\n") is None
    assert sections.title_span("## A\n\n# B\n") is None


# ----------------------------------------------------------------------------- canonical
@pytest.mark.parametrize(
    ("title", "key"),
    [
        ("Overview", "overview"), ("Executive summary", "overview"), ("TL;DR", "overview"), ("Background", "overview"),
        ("Introduction", "overview"),
        ("Problem statement", "problem"), ("The Problem", "problem"), ("Pain points", "problem"),
        ("Goals", "goals"), ("Objectives", "goals"), ("Goals & Objectives", "goals"),
        ("Non-goals", "non-goals"), ("Non goals", "non-goals"), ("NON-GOALS", "non-goals"),
        ("Out of scope", "non-goals"), ("Not in scope", "non-goals"),
        ("Target users", "users"), ("Personas", "users"), ("Audience", "users"), ("Customers", "users"),
        ("Who is this for?", "users"),
        ("User stories", "user-stories"), ("Stories", "user-stories"), ("Use cases", "user-stories"),
        ("Requirements", "requirements"), ("Functional requirements", "requirements"),
        ("Non-functional requirements", "requirements"), ("Specification", "requirements"),
        ("Success metrics", "success-metrics"), ("Metrics", "success-metrics"), ("KPIs", "success-metrics"),
        ("Measures of success", "success-metrics"), ("Success criteria", "success-metrics"),
        ("Risks", "risks"), ("Risks and mitigations", "risks"), ("Risks & Mitigations", "risks"),
        ("Assumptions and risks", "risks"),
        ("Timeline", "timeline"), ("Milestones", "timeline"), ("Schedule", "timeline"), ("Roadmap", "timeline"),
        ("Release plan", "timeline"),
        ("Open questions", "open-questions"), ("Questions", "open-questions"),
        ("Unresolved questions", "open-questions"),
        # spelling, numbering, emphasis, emoji and a trailing note do not matter
        ("  success   METRICS ", "success-metrics"), ("3. Goals", "goals"), ("2.1 Non-Goals", "non-goals"),
        ("**Goals**", "goals"), ("🎯 Goals", "goals"), ("Timeline (tentative)", "timeline"), ("Goals:", "goals"),
        ("success-metrics", "success-metrics"),
    ],
)
def test_canonical_synonyms(title: str, key: str) -> None:
    assert sections.canonical(title) == key


@pytest.mark.parametrize("title", ["", "Checkout redesign", "FAQ", "Scope", "Appendix", "🎯", "Goals for Q3 marketing"])
def test_canonical_unknown(title: str) -> None:
    assert sections.canonical(title) is None


def test_schema_titles_and_template_headings_map_to_their_keys() -> None:
    for entry in sections.schema("standard"):
        assert sections.canonical(entry.title) == entry.key
    keys = {s.key for s in sections.schema("standard")}
    for heading, _hint in templates.STANDARD_SECTIONS:
        assert sections.canonical(heading) in keys


# ----------------------------------------------------------------------------- find
def test_find_by_title_then_by_key() -> None:
    md = "# Doc\n\n## Key results\n\nx\n\n## KPIs\n\ny\n\n## Metrics\n\nz\n"
    kpis = sections.find(md, "kpis")
    assert kpis is not None and kpis.title == "KPIs"
    assert sections.find(md, "  METRICS ") is not None and sections.find(md, "  METRICS ").title == "Metrics"  # type: ignore[union-attr]
    by_key = sections.find(md, "Success metrics")  # no such title: the first section with that key
    assert by_key is not None and by_key.title == "KPIs"
    assert sections.find(md, "success-metrics") == by_key
    assert sections.find(md, "Key results") is not None
    assert sections.find(md, "Risks") is None
    assert sections.find(md, "Something else") is None


def test_find_prefers_sections_to_the_document_title() -> None:
    md = "# Roadmap\n\n## Overview\n\nx\n\n## Roadmap\n\nq3\n"
    found = sections.find(md, "roadmap")
    assert found is not None and found.level == 2
    only_title = "# Roadmap\n\n## Overview\n\nx\n"
    title = sections.find(only_title, "Roadmap")
    assert title is not None and title.level == 1  # by exact title, as a last resort
    assert sections.find(only_title, "Timeline") is None  # the title is not a schema section


def test_find_first_of_two_matches() -> None:
    md = "## Goals\n\na\n\n## Goals\n\nb\n"
    found = sections.find(md, "goals")
    assert found is not None and found.body(md) == "\na\n\n"


# ----------------------------------------------------------------------------- schema and gaps
def test_schema_order_and_guidance() -> None:
    keys = [s.key for s in sections.schema("standard")]
    assert keys == ["overview", "problem", "users", "goals", "non-goals", "user-stories", "requirements",
                    "success-metrics", "risks", "timeline", "open-questions"]
    assert sections.schema("blank") == sections.schema("standard") == sections.schema("no-such-template")
    assert set(sections.SCHEMAS) >= set(templates.TEMPLATES)
    for entry in sections.schema("standard"):
        assert entry.guidance and 10 <= entry.min_words <= 40
    assert "metric, baseline, target, date" in sections.guidance("standard", "KPIs")
    assert sections.guidance("standard", "Risks") == sections.guidance("blank", "risks")
    assert sections.guidance("standard", "Appendix") == ""


def test_gaps_on_a_fresh_standard_prd() -> None:
    md = templates.render("standard", "X")
    found = sections.gaps(md)
    assert [(g.key, g.state, g.words) for g in found] == [
        ("overview", "thin", 0), ("problem", "thin", 0), ("users", "missing", 0), ("goals", "thin", 0),
        ("non-goals", "thin", 0), ("user-stories", "thin", 0), ("requirements", "thin", 0),
        ("success-metrics", "thin", 0), ("risks", "missing", 0), ("timeline", "missing", 0),
        ("open-questions", "thin", 0),
    ]
    assert [g.title for g in found if g.state == "missing"] == ["Target users", "Risks and mitigations", "Timeline"]
    assert all(g.min_words > 0 for g in found)


def test_gaps_on_a_blank_prd_are_all_missing() -> None:
    found = sections.gaps(templates.render("blank", "X"), "blank")
    assert [g.state for g in found] == ["missing"] * 11


def test_gaps_on_a_complete_prd() -> None:
    assert sections.gaps(COMPLETE) == []
    assert sections.gaps(COMPLETE.replace("\n", "\r\n")) == []


def test_thin_counts_real_words_only() -> None:
    md = COMPLETE.replace(
        "- Cut checkout abandonment on mobile from 38 to 25 percent.\n"
        "- Let returning customers pay in a single step with a saved card.\n"
        "- Halve payment-related support tickets.\n",
        "What success changes for users and the business.\n\n"
        "<!-- fill this in with care please -->\n\n- Faster checkout\n",
    )
    (gap,) = sections.gaps(md)
    assert (gap.key, gap.title, gap.state, gap.words, gap.min_words) == ("goals", "Goals", "thin", 2, 15)


def test_placeholder_bullets_count_as_nothing() -> None:
    md = COMPLETE.replace("- Do we keep guest checkout on the same page? - Maria - next Friday\n"
                          "- Which browsers drop out of support? - Sam - end of month\n",
                          "* Question  -  owner - due date\n\n- As a <role>, I want <capability> so that <benefit>.\n")
    (gap,) = sections.gaps(md)
    assert (gap.key, gap.state, gap.words) == ("open-questions", "thin", 0)


def test_gaps_count_subsections_and_best_duplicate() -> None:
    md = COMPLETE.replace("## Requirements\n", "## Requirements\n\n### Functional\n\n").replace(
        "## Timeline\n", "## Schedule\n\nTBD\n\n## Timeline\n")
    assert sections.gaps(md) == []


# ----------------------------------------------------------------------------- insertion points
def _drop(md: str, title: str) -> str:
    span = sections.find(md, title)
    assert span is not None
    return md[: span.start] + md[span.end :]


def test_insertion_point_follows_the_schema_order() -> None:
    md = _drop(COMPLETE, "Risks")
    offset, level = sections.insertion_point(md, "risks")
    assert (offset, level) == (md.index("## Timeline"), 2)  # after success metrics, before timeline
    md2 = _drop(_drop(md, "Timeline"), "Success metrics")
    assert sections.insertion_point(md2, "risks") == (md2.index("## Open questions"), 2)  # after requirements
    only_questions = "# T\n\n## Open questions\n\n- q\n"
    assert sections.insertion_point(only_questions, "risks") == (only_questions.index("## Open"), 2)
    assert sections.insertion_point(only_questions, "overview") == (only_questions.index("## Open"), 2)
    assert sections.insertion_point(only_questions, "open-questions") == (len(only_questions), 2)  # nothing else


def test_insertion_point_after_subsections_and_at_neighbour_level() -> None:
    md = "# T\n\n### Success metrics\n\nm\n\n#### Detail\n\nd\n\n### Open questions\n\nq\n"
    assert sections.insertion_point(md, "risks") == (md.index("### Open"), 3)
    fresh = templates.render("standard", "X")
    assert sections.insertion_point(fresh, "users") == (fresh.index("## Goals"), 2)
    assert sections.insertion_point(fresh, "timeline") == (fresh.index("## Open questions"), 2)


def test_insertion_point_without_neighbours() -> None:
    blank = templates.render("blank", "X")
    assert sections.insertion_point(blank, "overview") == (len(blank), 2)  # under the title, never level 1
    assert sections.insertion_point("", "goals") == (0, 2)
    with pytest.raises(ValueError, match="not a section"):
        sections.insertion_point(blank, "appendix")


def test_insert_section_into_fresh_template() -> None:
    md = templates.render("standard", "X")
    new, offset, text = sections.insert_section(md, "risks", "Risks and mitigations", "- Fraud\n- Delays\n")
    assert text == "## Risks and mitigations\n\n- Fraud\n- Delays\n\n"
    assert offset == md.index("## Open questions")
    assert new == md[:offset] + text + md[offset:]
    assert "date.\n\n## Risks and mitigations\n\n- Fraud\n- Delays\n\n## Open questions\n" in new
    span = sections.find(new, "Risks")
    assert span is not None and span.body(new) == "\n- Fraud\n- Delays\n\n"
    assert [g.key for g in sections.gaps(new) if g.state == "missing"] == ["users", "timeline"]


def test_insert_section_at_end_adds_blank_lines() -> None:
    assert sections.insert_section("# X\n", "overview", "Overview", "Hi.")[2] == "\n## Overview\n\nHi.\n"
    assert sections.insert_section("# X", "overview", "Overview", "Hi.")[2] == "\n\n## Overview\n\nHi.\n"
    assert sections.insert_section("# X\n\n", "overview", "Overview", "Hi.")[2] == "## Overview\n\nHi.\n"
    assert sections.insert_section("", "overview", "Overview", "\n\nHi.\n\n")[0] == "## Overview\n\nHi.\n"
    assert sections.insert_section("# X\n", "overview", "Overview", "")[2] == "\n## Overview\n"


def test_insert_section_after_text_without_blank_line() -> None:
    md = "## Goals\n\ng\n## Open questions\n\nq\n"
    new, offset, text = sections.insert_section(md, "risks", "Risks", "r")
    assert new == "## Goals\n\ng\n\n## Risks\n\nr\n\n## Open questions\n\nq\n"
    assert new[:offset] == md[:offset] and new[offset + len(text) :] == md[offset:]


def test_insert_section_crlf() -> None:
    md = "# X\r\n\r\n## Goals\r\n\r\ng\r\n"
    new, _, text = sections.insert_section(md, "risks", "Risks", "line 1\nline 2")
    assert text == "\r\n## Risks\r\n\r\nline 1\r\nline 2\r\n"
    assert new == md + text


def test_insert_section_closes_an_open_fence_at_the_end() -> None:
    md = "# X\n\n## Goals\n\n```\ncode"
    new, offset, text = sections.insert_section(md, "risks", "Risks", "r")
    assert offset == len(md) and new == md + text
    assert _titles(sections.spans(new)) == [("X", 1), ("Goals", 2), ("Risks", 2)]
    assert text == "\n```\n\n## Risks\n\nr\n"


def test_inserted_body_with_an_open_fence_is_closed() -> None:
    md = "## Goals\n\ng\n\n## Open questions\n\nq\n"
    new, _, _ = sections.insert_section(md, "risks", "Risks", "```\nunclosed")
    assert _titles(sections.spans(new)) == [("Goals", 2), ("Risks", 2), ("Open questions", 2)]
    risks = sections.find(new, "Risks")
    assert risks is not None and risks.body(new) == "\n```\nunclosed\n```\n\n"


def test_insert_sections_places_several_in_schema_order() -> None:
    md = templates.render("standard", "X")
    items = [("timeline", "Timeline", "- Q3"), ("users", "Target users", "Shoppers."),
             ("risks", "Risks and mitigations", "- Fraud")]
    new, edits = sections.insert_sections(md, items)
    assert [offset for offset, _ in edits] == [md.index("## Goals"), md.index("## Open questions")]
    assert edits[1][1] == "## Risks and mitigations\n\n- Fraud\n\n## Timeline\n\n- Q3\n\n"
    assert [g.key for g in sections.gaps(new) if g.state == "missing"] == []
    keys = [s.key for s in sections.spans(new)[1:]]
    assert keys == [s.key for s in sections.schema("standard")]
    applied = md
    for offset, text in reversed(edits):
        applied = applied[:offset] + text + applied[offset:]
    assert applied == new


def test_insert_sections_at_the_end() -> None:
    md = "# X\n\n## Overview\n\n```\nopen fence"
    new, edits = sections.insert_sections(md, [("open-questions", "Open questions", "- q"), ("risks", "Risks", "r")])
    assert edits == [(len(md), "\n```\n\n## Risks\n\nr\n\n## Open questions\n\n- q\n")]
    assert _titles(sections.spans(new)) == [("X", 1), ("Overview", 2), ("Risks", 2), ("Open questions", 2)]


# ----------------------------------------------------------------------------- replace_body
def test_replace_body_keeps_one_blank_line_each_side() -> None:
    md = "# T\n\n## Goals\nold\n\n\n\n### Sub\n\nx\n## Next\n\nn\n"
    span = sections.find(md, "Goals")
    assert span is not None
    new, start, end, replacement = sections.replace_body(md, span, "\n\nNew body.\n\n- a\n- b  \n\n")
    assert (start, end) == (span.body_start, span.end)
    assert replacement == "\nNew body.\n\n- a\n- b\n\n"
    assert new == "# T\n\n## Goals\n\nNew body.\n\n- a\n- b\n\n## Next\n\nn\n"
    assert new == md[:start] + replacement + md[end:]


def test_replace_body_at_end_of_document() -> None:
    md = "# T\n\n## Goals\n\nold"
    span = sections.find(md, "Goals")
    assert span is not None
    assert sections.replace_body(md, span, "new")[0] == "# T\n\n## Goals\n\nnew\n"
    bare = "# T\n\n## Goals"
    bare_span = sections.find(bare, "Goals")
    assert bare_span is not None
    assert sections.replace_body(bare, bare_span, "new")[0] == "# T\n\n## Goals\n\nnew\n"
    assert sections.replace_body(bare, bare_span, "")[0] == bare


def test_replace_body_empty() -> None:
    md = "## A\n\nold\n\n## B\n"
    span = sections.find(md, "A")
    assert span is not None
    assert sections.replace_body(md, span, "  \n")[0] == "## A\n\n## B\n"
    last = sections.find(md, "B")
    assert last is not None
    assert sections.replace_body(md, last, "")[0] == md


def test_replace_body_setext_crlf_and_emoji() -> None:
    md = "Titel 🚀\r\n======\r\n\r\nGoals 🎯\r\n---\r\nalt\r\n\r\nÜbrig\r\n---\r\n\r\nbleibt\r\n"
    span = sections.find(md, "Goals 🎯")
    assert span is not None and span.key == "goals"
    new, start, end, replacement = sections.replace_body(md, span, "Neu — ü\n\nZweite Zeile")
    assert replacement == "\r\nNeu — ü\r\n\r\nZweite Zeile\r\n\r\n"
    assert new == md[:start] + replacement + md[end:]
    assert _titles(sections.spans(new)) == [("Titel 🚀", 1), ("Goals 🎯", 2), ("Übrig", 2)]
    again = sections.find(new, "Goals 🎯")
    assert again is not None and again.body(new) == replacement


def test_nest_headings() -> None:
    body = "Intro\n\n# Big #\n\ntext\n\nSetext\n---\n\n```\n# code\n```\n\n## Small\n"
    nested = sections.nest_headings(body, 2)
    assert nested == "Intro\n\n### Big #\n\ntext\n\n#### Setext\n\n```\n# code\n```\n\n#### Small\n"
    assert sections.nest_headings("### Fine\n\nx", 2) == "### Fine\n\nx"
    assert sections.nest_headings("no headings", 1) == "no headings"
    assert sections.nest_headings("# A\n\n## B\n", 5) == "###### A\n\n###### B\n"


# ----------------------------------------------------------------------------- properties
_NEWLINES = st.sampled_from(["\n", "\r\n"])
_HEADINGS = st.sampled_from([
    "# Title", "## Overview", "## Goals", "### Detail 🚀", "## Success metrics", "## Open questions",
    "Requirements\n============", "Risks & mitigations\n---", "## Timeline", "#### Deep", "## Ünïcode — ok",
])
_BLOCKS = st.sampled_from([
    "Some text.", "Ça va — 日本語 🎉", "- item one\n- item two", "> a quote", "```\n# not a heading\n```",
    "    indented code", "1. first\n2. second", "", "   ", "| a | b |", "***",
])
_BODY_BLOCKS = st.sampled_from([
    "New text.", "Nouveau — ü 🚀", "- a\n- b", "### Sub heading", "# Too high", "Setext sub\n---",
    "```\n## code\n```", "    code", "", "> q", "1. x",
])


@st.composite
def _documents(draw: st.DrawFn) -> str:
    newline = draw(_NEWLINES)
    parts = draw(st.lists(st.one_of(_HEADINGS, _BLOCKS), max_size=12))
    separators = st.sampled_from([newline, newline * 2, newline * 3])
    gaps = draw(st.lists(separators, min_size=len(parts), max_size=len(parts)))
    text = "".join(part.replace("\n", newline) + gap for part, gap in zip(parts, gaps, strict=True))
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text


@st.composite
def _bodies(draw: st.DrawFn) -> str:
    parts = draw(st.lists(_BODY_BLOCKS, max_size=5))
    lead = draw(st.sampled_from(["", "\n", "\n\n  \n"]))
    tail = draw(st.sampled_from(["", "\n", "  \n\n"]))
    return lead + "\n\n".join(parts) + tail


def _tidied(body: str, newline: str) -> str:
    """What a body becomes in the document: leading blank lines and trailing whitespace dropped, the
    document's line endings; the rest verbatim."""
    lines = re.split(r"\r\n|\r|\n", body)
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines).rstrip().replace("\n", newline)


def _outside(found: list[Span], lo: int, hi: int) -> list[tuple[str, int]]:
    return [(s.title, s.level) for s in found if s.start < lo or s.start >= hi]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(), _bodies(), st.data())
def test_replace_body_edits_only_its_range(md: str, body: str, data: st.DataObject) -> None:
    found = sections.spans(md)
    if not found:
        return
    span = data.draw(st.sampled_from(found))
    nested = sections.nest_headings(body, span.level)
    new, start, end, replacement = sections.replace_body(md, span, nested)
    assert (start, end) == (span.body_start, span.end)
    assert new[:start] == md[:start] and new[start + len(replacement) :] == md[end:]
    newline = sections._newline(md)
    # Re-parsed: the same headings outside the edit, and the section's body is exactly what was given.
    after = sections.spans(new)
    assert _outside(after, start, start + len(replacement)) == _outside(found, start, end)
    again = next(s for s in after if s.start == span.start)
    assert (again.title, again.level) == (span.title, span.level)
    expected = _tidied(nested, newline)
    tail = newline if end < len(md) else ""
    assert again.body(new) == (newline + expected + newline + tail if expected else tail)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(), _bodies(), st.sampled_from([s.key for s in sections.schema("standard")]))
def test_insert_section_edits_only_at_its_offset(md: str, body: str, key: str) -> None:
    found = sections.spans(md)
    offset, level = sections.insertion_point(md, key)
    nested = sections.nest_headings(body, level)
    new, at, text = sections.insert_section(md, key, "Brand new ✨", nested)
    assert at == offset
    assert new[:offset] == md[:offset] and new[offset + len(text) :] == md[offset:]
    after = sections.spans(new)
    inserted = [s for s in after if offset <= s.start < offset + len(text)]
    assert inserted and (inserted[0].title, inserted[0].level) == ("Brand new ✨", level)
    # A blank line (or the start of the document) before the new heading, one after its body.
    preceding = re.split(r"\r\n|\r|\n", new[: inserted[0].start])
    assert inserted[0].start == 0 or (len(preceding) >= 2 and not preceding[-2].strip() and preceding[-1] == "")
    assert _outside(after, offset, offset + len(text)) == _outside(found, offset, offset)
    newline = sections._newline(md)
    expected = _tidied(nested, newline)
    tail = newline if offset < len(md) else ""
    assert inserted[0].body(new) == (newline + expected + newline + tail if expected else tail)
