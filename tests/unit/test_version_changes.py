"""Change classification between versions (prdtool.versions.changes): sections, kind, words."""

from __future__ import annotations

from dataclasses import replace

import pytest

from prdtool.settings import Settings
from prdtool.versions.changes import Kind, Thresholds, bump, classify, parse_version, sections

BASE = """# Checkout redesign

Owner: Dana.

## Goals

Cut checkout abandonment by a fifth for returning customers on mobile devices this quarter.

## Risks

Payment provider limits may slow the rollout in two markets.

## Open questions

- Who signs off the copy?
"""


def test_sections_follow_the_markdown_parser_not_the_hash_signs() -> None:
    text = BASE + "\n```\n# not a heading\n```\n\nSetext heading\n--------------\n\nbody\n"
    found = sections(text)
    assert [(s.level, s.title) for s in found] == [
        (1, "Checkout redesign"), (2, "Goals"), (2, "Risks"), (2, "Open questions"), (2, "Setext heading")]
    assert "# not a heading" in found[3].body  # inside the code block, part of the section before
    assert found[4].words == ("body",)
    intro = sections("Some preface.\n\n# Title\n")
    assert (intro[0].level, intro[0].title, intro[0].label) == (0, "", "the introduction")


@pytest.mark.parametrize("edited", [
    BASE,
    BASE.replace("quarter.", "quarter.   "),  # trailing spaces
    BASE + "\n\n\n",  # blank lines at the end
    BASE.replace("for returning customers on", "for returning customers\non"),  # a soft line break
])
def test_what_does_not_show_is_not_a_version(edited: str) -> None:
    change = classify(BASE, edited)
    assert change.kind is Kind.NONE and not change.significant
    assert change.summary() == "No visible change"


def test_a_typo_is_a_patch_and_says_where() -> None:
    change = classify(BASE, BASE.replace("abandonment", "abandonmnet"))
    assert change.kind is Kind.PATCH
    assert change.summary() == "Fix 'Goals' (+1 -1 words)"
    assert (change.added_words, change.removed_words) == (1, 1)


def test_formatting_that_shows_is_a_patch_without_words() -> None:
    change = classify(BASE, BASE.replace("a fifth", "*a fifth*"))
    assert change.kind is Kind.PATCH
    assert change.summary() == "Fix 'Goals' (formatting)"


def test_more_than_a_few_words_is_minor() -> None:
    change = classify(BASE, BASE.replace("two markets.", "two markets, and legal review of the new consent "
                                                          "screen could take a month."))
    assert change.kind is Kind.MINOR
    assert change.summary() == "Edit 'Risks' (+12 words)"


def test_a_rewritten_section_is_minor_and_named_so() -> None:
    rewritten = BASE.replace(
        "Cut checkout abandonment by a fifth for returning customers on mobile devices this quarter.",
        "Make paying feel instant: one tap with a saved card, no account wall, receipts by email.")
    change = classify(BASE, rewritten)
    assert change.kind is Kind.MINOR
    assert change.summary().startswith("Rewrite 'Goals' (+")


@pytest.mark.parametrize(("edited", "summary"), [
    (BASE + "\n## Metrics\n\nConversion on mobile.\n", "Add section 'Metrics'"),
    (BASE.replace("## Risks\n\nPayment provider limits may slow the rollout in two markets.\n\n", ""),
     "Remove section 'Risks'"),
    (BASE.replace("## Goals", "## Objectives"), "Rename 'Goals' to 'Objectives'"),
    (BASE.replace("## Risks", "### Risks"), "Move 'Risks'"),
])
def test_structure_is_major(edited: str, summary: str) -> None:
    change = classify(BASE, edited)
    assert change.kind is Kind.MAJOR
    assert change.summary() == summary


def test_a_moved_section_is_the_one_out_of_order() -> None:
    goals = ("## Goals\n\nCut checkout abandonment by a fifth for returning customers on mobile devices "
             "this quarter.\n\n")
    moved = BASE.replace(goals, "") + "\n" + goals
    change = classify(BASE, moved)
    assert change.kind is Kind.MAJOR
    assert change.summary() == "Move 'Goals'"


def test_a_new_heading_over_new_text_is_a_removal_and_an_addition_not_a_rename() -> None:
    edited = BASE.replace("## Risks\n\nPayment provider limits may slow the rollout in two markets.",
                          "## Timeline\n\nBeta in March, everyone by June.")
    change = classify(BASE, edited)
    assert change.kind is Kind.MAJOR
    assert change.summary() == "Remove section 'Risks'; add section 'Timeline'"


def test_structure_comes_first_then_edits_in_document_order() -> None:
    edited = BASE.replace("abandonment", "abandonmnet") + "\n## Metrics\n\nConversion on mobile.\n"
    assert classify(BASE, edited).summary() == "Add section 'Metrics'; fix 'Goals' (+1 -1 words)"


def test_whitespace_in_a_code_block_shows() -> None:
    with_code = BASE + "\n```\nif ok:\n    go()\n```\n"
    assert classify(with_code, with_code.replace("    go()", "  go()")).kind is Kind.PATCH


def test_a_heading_in_a_code_block_is_content_not_structure() -> None:
    with_code = BASE + "\n```\nlog line\n```\n"
    change = classify(with_code, with_code.replace("log line", "# log line"))
    assert change.kind is Kind.PATCH


def test_the_subject_fits_a_commit_line_and_counts_the_rest() -> None:
    edited = BASE + "".join(f"\n## Appendix section number {n}\n\ntext {n}\n" for n in range(6))
    change = classify(BASE, edited)
    subject = change.subject()
    assert len(subject) <= 72
    assert subject.startswith("Add section 'Appendix section number 0'") and subject.endswith(" more")
    assert len(change.details()) == 6


def test_thresholds_are_configurable() -> None:
    edited = BASE.replace("two markets.", "two markets, possibly three.")
    assert classify(BASE, edited).kind is Kind.PATCH  # 2 words added
    strict = Thresholds.from_settings(replace(Settings(), version_patch_max_words=1))
    assert classify(BASE, edited, strict).kind is Kind.MINOR
    loose_rename = Thresholds.from_settings(replace(Settings(), version_rename_percent=101))
    assert classify(BASE, BASE.replace("## Goals", "## Objectives"), loose_rename).summary() == (
        "Remove section 'Goals'; add section 'Objectives'")


@pytest.mark.parametrize(("version", "kind", "after"), [
    ("1.2.3", Kind.MAJOR, "2.0.0"), ("v1.2.3", Kind.MINOR, "1.3.0"), ("1.2.3", Kind.PATCH, "1.2.4"),
    ("1.2.3", Kind.NONE, "1.2.3"),
])
def test_versions_bump_by_kind(version: str, kind: Kind, after: str) -> None:
    assert bump(version, kind) == after


@pytest.mark.parametrize("bad", ["1.2", "v1.2.3.4", "latest", "1.2.x", ""])
def test_a_malformed_version_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a version"):
        parse_version(bad)
    assert parse_version(" v10.0.1 ") == (10, 0, 1)


def test_a_diff_marks_a_last_line_without_a_line_break_as_git_does() -> None:
    """difflib alone glues an unterminated last line to the next one ("-old+old words")."""
    from prdtool.versions.api import _unified

    out = _unified("a\nold", "a\nold words\nmore\n", fromfile="v1/prd.md", tofile="v2/prd.md")
    assert out.splitlines() == ["--- v1/prd.md", "+++ v2/prd.md", "@@ -1,2 +1,3 @@", " a", "-old",
                                "\\ No newline at end of file", "+old words", "+more"]
    both = _unified("x\ny", "x\nz")
    assert both.endswith("-y\n\\ No newline at end of file\n+z\n\\ No newline at end of file\n")
    assert _unified("same\n", "same\n") == ""
