"""Import mapping: which headings are which standard PRD sections (with a confidence), where the
intro goes, what is missing or thin, and the import report's JSON shape (DESIGN §3.3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prdtool.imports.extract import Fidelity
from prdtool.imports.mapping import AMBIGUOUS, EXACT, KEYWORD, SYNONYM, map_sections, match_heading

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
FILLER = " ".join(["word"] * 40)


@pytest.mark.parametrize(("heading", "key", "confidence"), [
    ("Success metrics", "success-metrics", EXACT),
    ("Non-goals", "non-goals", EXACT),
    ("3. NON GOALS", "non-goals", EXACT),
    ("Target users", "users", EXACT),
    ("Users", "users", EXACT),
    ("Risks and mitigations", "risks", EXACT),
    ("KPIs", "success-metrics", SYNONYM),
    ("Out of scope", "non-goals", SYNONYM),
    ("Problem statement", "problem", SYNONYM),
    ("Risks & Mitigations", "risks", EXACT),  # "&" is "and": the schema title
    ("Measures of success", "success-metrics", SYNONYM),
    ("Background", "overview", SYNONYM),
    ("Why we are doing this", "problem", KEYWORD),
    ("How we will measure it", "success-metrics", KEYWORD),
    ("Customer personas", "users", KEYWORD),
    ("Launch milestones", "timeline", KEYWORD),
    ("Things we still need to settle: questions", "open-questions", KEYWORD),
    ("Goals and success metrics", "success-metrics", AMBIGUOUS),
    ("Appendix", None, 0.0),
    ("Glossary", None, 0.0),
])
def test_match_heading(heading: str, key: str | None, confidence: float) -> None:
    assert match_heading(heading) == (key, confidence)


def test_confidence_ordering_is_documented() -> None:
    assert EXACT > SYNONYM > KEYWORD > AMBIGUOUS > 0.0


DOCUMENT = f"""# Checkout v2

We are rebuilding checkout for returning customers. {FILLER}

## Why we are doing this

{FILLER}

## KPIs

- Conversion from cart to order: 60% by Q3, up from 52%, measured weekly in the funnel dashboard.

## Non-goals

Nothing about guest checkout. Gift cards stay as they are.

## Appendix

### Who can restore a cart

{FILLER}

### Open questions

- Does legal need to review the retention period?
"""


def test_map_sections_reports_each_heading() -> None:
    report = map_sections(DOCUMENT)
    rows = [(s.heading, s.level, s.key, s.confidence) for s in report.sections]
    assert rows == [
        ("Why we are doing this", 2, "problem", KEYWORD),
        ("KPIs", 2, "success-metrics", SYNONYM),
        ("Non-goals", 2, "non-goals", EXACT),
        ("Appendix", 2, None, 0.0),
        # keywords are not tried below the section level ("who" is not a keyword anyway) …
        ("Who can restore a cart", 3, None, 0.0),
        # … but an exact title or synonym is a section wherever it is
        ("Open questions", 3, "open-questions", EXACT),
    ]
    assert report.title == "Checkout v2"
    words = {s.heading: s.words for s in report.sections}
    assert words["Why we are doing this"] == 40
    assert words["Appendix"] == 0  # its own text only; the subsections count for themselves
    assert words["Non-goals"] == 10
    assert report.keys()["Why we are doing this"] == "problem"


def test_intro_becomes_the_overview_when_there_is_none() -> None:
    report = map_sections(DOCUMENT)
    assert report.intro == {"words": 47, "role": "overview"}
    missing = {m["key"]: m for m in report.missing}
    assert "overview" not in missing  # 47 words of intro ≥ 30
    assert "problem" not in missing  # the keyword-matched section has 40 words
    assert missing["users"] == {"key": "users", "title": "Target users", "state": "missing", "words": 0,
                                "min_words": 15}
    assert "non-goals" not in missing  # 10 words, the minimum
    assert missing["open-questions"] == {"key": "open-questions", "title": "Open questions", "state": "thin",
                                         "words": 8, "min_words": 10}


def test_thin_sections_and_a_short_intro() -> None:
    markdown = "# T\n\nShort intro.\n\n## Goals\n\nGrow.\n\n## Overview of risks\n\nNone.\n"
    report = map_sections(markdown)
    missing = {m["key"]: m for m in report.missing}
    assert report.intro == {"words": 2, "role": "overview"}
    assert missing["overview"] == {"key": "overview", "title": "(introduction)", "state": "thin", "words": 2,
                                   "min_words": 30}
    assert missing["goals"] == {"key": "goals", "title": "Goals", "state": "thin", "words": 1, "min_words": 15}
    # "Overview of risks": keywords of risks and overview → ambiguous, below the presence threshold
    assert [(s.key, s.confidence) for s in report.sections][1] == ("risks", AMBIGUOUS)
    assert missing["risks"]["state"] == "missing"


def test_intro_is_a_preamble_when_an_overview_exists() -> None:
    markdown = f"# T\n\nA line before.\n\n## Overview\n\n{FILLER}\n"
    report = map_sections(markdown)
    assert report.intro == {"words": 3, "role": "preamble"}
    assert "overview" not in {m["key"] for m in report.missing}


def test_no_headings_at_all() -> None:
    report = map_sections(f"Just some notes. {FILLER}\n")
    assert report.sections == ()
    assert report.title is None
    assert report.intro["role"] == "overview"
    assert {m["key"] for m in report.missing} == {
        "problem", "users", "goals", "non-goals", "user-stories", "requirements", "success-metrics", "risks",
        "timeline", "open-questions"}


def test_several_level_one_headings_are_all_sections() -> None:
    report = map_sections("# Problem\n\nx\n\n# Goals\n\ny\n")
    assert report.title is None
    assert [(s.heading, s.level, s.key) for s in report.sections] == [("Problem", 1, "problem"),
                                                                      ("Goals", 1, "goals")]


def test_report_json_shape_with_fidelity() -> None:
    fidelity = Fidelity()
    fidelity.drop("image", "images (pictures are not imported)", 2)
    fidelity.drop("image", "images (pictures are not imported)")
    fidelity.warn("headings were inferred from font sizes")
    body = map_sections(DOCUMENT, report=fidelity).to_report_json()
    assert set(body) == {"sections", "missing", "dropped", "title", "intro", "warnings"}
    assert body["dropped"] == [{"kind": "image", "detail": "images (pictures are not imported)", "count": 3}]
    assert body["warnings"] == ["headings were inferred from font sizes"]
    assert set(body["sections"][0]) == {"heading", "level", "key", "standardTitle", "confidence", "words"}
    named = {s["key"]: s["standardTitle"] for s in body["sections"] if s["key"]}
    assert named and all(title for title in named.values())  # the standard section's own title
    assert set(body["missing"][0]) == {"key", "title", "state", "words", "min_words"}
    json.dumps(body)  # serialisable as is


def test_fixture_prd_maps_every_section() -> None:
    markdown = (FIXTURES / "prd.md").read_text(encoding="utf-8")
    report = map_sections(markdown)
    assert [(s.heading, s.key, s.confidence) for s in report.sections] == [
        ("Problem", "problem", EXACT), ("Goals", "goals", EXACT), ("Non-goals", "non-goals", EXACT),
        ("User stories", "user-stories", EXACT), ("Requirements", "requirements", EXACT),
        ("Success metrics", "success-metrics", EXACT), ("Open questions", "open-questions", EXACT),
    ]
    assert report.intro["role"] == "overview" and report.intro["words"] > 30
    assert [(m["key"], m["state"]) for m in report.missing] == [("users", "missing"), ("risks", "missing"),
                                                                ("timeline", "missing")]
