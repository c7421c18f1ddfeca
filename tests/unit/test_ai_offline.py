"""The offline provider: deterministic, template-guided drafts from the PRD's own text (not a model).

Nothing here sleeps for real or touches the network: ``sleep`` and ``clock`` are injected.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from prdtool.ai.offline import MODEL, NAME, NOTE, OfflineProvider, compose, estimate_tokens, section_kind
from prdtool.ai.providers import Brief, Delta, Done, Provider, ProviderError

PRD = """# Offline drafts for PRD Tool

PRD Tool helps product managers write requirement documents together.

## Problem

Product managers lose hours copying notes between tools. Reviewers can't see what changed.

## Goals

- Cut the time to a first draft from 2 hours to 20 minutes.
- Reviewers approve 80% of PRDs within two days.
- Make drafting feel fast.

## Users

- **Product managers** — write and own PRDs
- **Engineers**: review the requirements

## Requirements

The export must support Markdown and PDF. The import depends on the legacy Confluence API, which may be retired in Q3.
Customer data must stay in the EU region for privacy reasons. Größe-aware sorting for 日本語 titles must work 🚀.

Should the beta include SSO? TODO: confirm pricing with sales.

## Risks

## Open questions
"""

RISK_SENTENCE = "The import depends on the legacy Confluence API, which may be retired in Q3"


def brief(mode: str = "draft", section: str | None = "Risks", **fields: object) -> Brief:
    values: dict[str, object] = {"instruction": "", "document": PRD}
    values.update(fields)
    return Brief(mode=mode, section=section, **values)  # type: ignore[arg-type]


def run(
    provider: OfflineProvider,
    the_brief: Brief | None,
    *,
    max_tokens: int = 4000,
    cancel: Callable[[], bool] | None = None,
    system: str = "You draft PRD sections.",
    prompt: str = "Draft the Risks section of this PRD.",
) -> list[Delta | Done]:
    return list(
        provider.stream(system=system, prompt=prompt, max_tokens=max_tokens, cancel=cancel, brief=the_brief)
    )


def text_of(events: list[Delta | Done]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


class FakeTime:
    """A clock that only moves when slept on (or when the test moves it)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# ----------------------------------------------------------------------------- identity, protocol
def test_names_itself_honestly() -> None:
    provider: Provider = OfflineProvider()  # satisfies the streaming interface
    assert provider.name == NAME == "offline-template"
    assert provider.model == MODEL == "offline-template (deterministic, not a model)"
    text = text_of(run(OfflineProvider(), brief()))
    assert text.splitlines()[0] == NOTE
    assert "no AI model" in NOTE and NOTE.startswith("_") and NOTE.endswith("_")


def test_missing_brief_is_an_invalid_request() -> None:
    stream = OfflineProvider().stream(system="s", prompt="p", max_tokens=100)
    with pytest.raises(ProviderError) as raised:
        next(stream)
    assert raised.value.code == "invalid_request"
    assert not raised.value.retryable
    assert "brief" in raised.value.message and "offline" in raised.value.message


def test_unknown_mode_and_bad_settings_are_refused() -> None:
    with pytest.raises(ProviderError) as raised:
        run(OfflineProvider(), brief(mode="translate"))
    assert raised.value.code == "invalid_request"
    with pytest.raises(ProviderError):
        run(OfflineProvider(), brief(), max_tokens=0)
    with pytest.raises(ValueError):
        OfflineProvider(chunk_words=0)
    with pytest.raises(ValueError):
        OfflineProvider(chunk_delay=-1)


# ----------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("words", [1, 3, 7])
def test_deltas_join_to_the_full_text_in_chunks_of_words(words: int) -> None:
    the_brief = brief(mode="fill-gaps", section=None, gaps=("Risks", "Success metrics"))
    events = run(OfflineProvider(chunk_words=words), the_brief)
    deltas = [e for e in events if isinstance(e, Delta)]
    assert text_of(events) == compose(the_brief)
    assert "\n\n" in text_of(events)  # whitespace is kept exactly
    assert all(len(d.text.split()) == words for d in deltas[:-1])
    assert 1 <= len(deltas[-1].text.split()) <= words
    assert sum(isinstance(e, Done) for e in events) == 1 and isinstance(events[-1], Done)


def test_done_reports_estimated_usage() -> None:
    time = FakeTime()
    events = run(OfflineProvider(clock=time.clock, sleep=time.sleep), brief(), system="a b c", prompt="d e f g h i")
    done = events[-1]
    assert isinstance(done, Done)
    assert done.stop_reason == "end_turn"
    assert done.usage.input_tokens == estimate_tokens("a b c\nd e f g h i") == 12  # ⌈9 * 4/3⌉
    assert done.usage.output_tokens == estimate_tokens(text_of(events)) > 0
    assert done.usage.latency_ms == 0


def test_same_brief_same_output() -> None:
    for the_brief in (brief(), brief(mode="fill-gaps", section=None, gaps=("Overview", "User stories", "Timeline"))):
        time = FakeTime()  # latency is the one thing that may differ: a real clock would measure it
        first = run(OfflineProvider(clock=time.clock), the_brief)
        second = run(OfflineProvider(chunk_words=3, clock=time.clock), the_brief)
        assert first == second


def test_same_output_in_other_processes() -> None:
    """No dependence on hash seeds (set order) or anything else outside the brief."""
    root = Path(__file__).resolve().parents[2]
    script = (
        "import sys; sys.path[:0] = ['shared', '.']\n"
        "from tests.unit.test_ai_offline import brief\n"
        "from prdtool.ai.offline import compose\n"
        "for mode in ('draft', 'rewrite', 'expand', 'summarize'):\n"
        "    for title in ('Risks', 'Users', 'User stories', 'Appendix', 'Requirements'):\n"
        "        sys.stdout.write(compose(brief(mode=mode, section=title, current='a. b. c. a.')))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script], cwd=root, env={"PYTHONHASHSEED": seed}, capture_output=True,
            text=True, check=True, encoding="utf-8",
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1 and NOTE in outputs.pop()


def test_cancel_stops_without_done() -> None:
    polls = 0

    def cancel_after_two() -> bool:
        nonlocal polls
        polls += 1
        return polls > 2

    events = run(OfflineProvider(chunk_words=2), brief(), cancel=cancel_after_two)
    assert len(events) == 2 and all(isinstance(e, Delta) for e in events)
    assert run(OfflineProvider(), brief(), cancel=lambda: True) == []


def test_max_tokens_stops_with_max_tokens() -> None:
    full = compose(brief())
    events = run(OfflineProvider(), brief(), max_tokens=20)
    done = events[-1]
    assert isinstance(done, Done) and done.stop_reason == "max_tokens"
    text = text_of(events)
    assert full.startswith(text) and len(text) < len(full)
    assert len(text.split()) == 15  # the most whole words whose estimate stays within 20 tokens
    assert done.usage.output_tokens == estimate_tokens(text) <= 20
    enough = run(OfflineProvider(), brief(), max_tokens=estimate_tokens(full))[-1]
    assert isinstance(enough, Done) and enough.stop_reason == "end_turn"


def test_chunk_delay_sets_a_fixed_rate_through_the_injected_sleep() -> None:
    time = FakeTime()
    provider = OfflineProvider(chunk_delay=0.05, chunk_words=3, sleep=time.sleep, clock=time.clock)
    stream: Iterator[Delta | Done] = provider.stream(system="", prompt="", max_tokens=4000, brief=brief())
    assert isinstance(next(stream), Delta) and time.sleeps == []  # the first chunk is not delayed
    assert isinstance(next(stream), Delta) and time.sleeps == [pytest.approx(0.05)]
    time.now += 0.03  # the reader took 30 ms: the next chunk is due in 20 ms, not 50
    next(stream)
    assert time.sleeps[-1] == pytest.approx(0.02)
    time.now += 0.2  # a slow reader: no sleep, the stream catches up
    next(stream)
    assert len(time.sleeps) == 2
    rest = list(stream)
    chunks = 4 + sum(isinstance(e, Delta) for e in rest)
    assert isinstance(rest[-1], Done)
    assert time.now == pytest.approx(100 + 0.05 * (chunks - 1))  # the schedule held
    assert rest[-1].usage.latency_ms == round(0.05 * (chunks - 1) * 1000)


def test_no_delay_means_no_sleep() -> None:
    time = FakeTime()
    run(OfflineProvider(sleep=time.sleep, clock=time.clock), brief())
    assert time.sleeps == []


# ----------------------------------------------------------------------------- draft
def test_draft_is_a_body_without_heading_and_quotes_the_request_only_when_given() -> None:
    plain = compose(brief())
    assert not any(line.startswith("#") for line in plain.splitlines())
    assert "> Request:" not in plain
    asked = compose(brief(instruction="  Focus on\n the  migration  "))
    lines = asked.splitlines()
    assert lines[0] == NOTE and lines[2] == "> Request: Focus on the migration"
    assert asked.endswith("\n") and not asked.endswith("\n\n")


def test_draft_risks_pulls_risk_sentences_from_elsewhere_in_the_prd() -> None:
    text = compose(brief())
    assert f"- **Risk:** {RISK_SENTENCE} — *Mitigation:* to be decided (owner, date)" in text
    assert "Customer data must stay in the EU region for privacy reasons" in text
    assert "Make drafting feel fast" not in text  # not a risk
    assert "**Also consider:**" in text and "- [ ] Performance and scale" in text


def test_draft_success_metrics_uses_numbers_from_goals() -> None:
    text = compose(brief(section="Success metrics"))
    metrics = [line for line in text.splitlines() if line.startswith("- **Metric:**")]
    assert "Cut the time to a first draft from 2 hours to 20 minutes" in metrics[0]
    assert "Reviewers approve 80% of PRDs within two days" in metrics[1]
    assert not any("Q3" in line for line in metrics)  # a quarter is a date, not a quantity
    assert "- **Metric for goal:** Make drafting feel fast" in text


def test_draft_user_stories_uses_the_roles_the_prd_mentions() -> None:
    text = compose(brief(section="User stories"))
    assert "- As a product manager, I want _(what they need to do)_ so that _(the benefit)_." in text
    assert "- As an engineer, I want" in text
    assert "- The export must support Markdown and PDF." in text  # a capability to turn into a story


def test_draft_open_questions_collects_questions_and_todo_markers() -> None:
    text = compose(brief(section="Open questions"))
    assert "- Should the beta include SSO? — *Owner:* to be decided — *Due:* to be decided" in text
    assert "- TODO: confirm pricing with sales — *Owner:*" in text


def test_draft_without_material_says_so_and_offers_prompts() -> None:
    text = compose(brief(section="Non-goals", document="# Empty\n", guidance="What this work does not do."))
    assert "_Nothing else in this PRD mentions" in text
    assert "- [ ] What this work does not do" in text


def test_generic_draft_turns_guidance_into_a_checklist_with_related_sentences() -> None:
    text = compose(brief(section="Pricing export", guidance="- Which formats\n- Who pays for the export"))
    assert "- [ ] Which formats\n- [ ] Who pays for the export" in text
    assert "**From elsewhere in this PRD:**\n\n- The export must support Markdown and PDF." in text


def test_template_hints_are_not_material() -> None:
    from prdtool.prds.templates import render

    text = compose(brief(section="Risks", document=render("standard", "Search")))
    assert "Risk:**" not in text  # the template's own hints mention no risk of this PRD
    assert "_Nothing else in this PRD mentions" in text


@pytest.mark.parametrize(
    ("title", "kind"),
    [
        ("Overview", "overview"), ("Executive summary", "overview"), ("Problem statement", "problem"),
        ("Target users", "users"), ("Personas", "users"), ("Goals", "goals"), ("Non-goals", "non-goals"),
        ("Out of scope", "non-goals"), ("User stories", "user stories"), ("Functional requirements", "requirements"),
        ("Success metrics", "success metrics"), ("KPIs", "success metrics"), ("Risks & mitigations", "risks"),
        ("Dependencies", "risks"), ("Timeline", "timeline"), ("Milestones", "timeline"),
        ("OPEN QUESTIONS", "open questions"), ("Appendix", "generic"),
    ],
)
def test_section_kind_by_title_keywords(title: str, kind: str) -> None:
    assert section_kind(title) == kind


# ----------------------------------------------------------------------------- other modes
def test_rewrite_tidies_without_inventing() -> None:
    current = (
        "the export   must support markdown. it must be fast. The export must support Markdown. also handle"
        "  errors\ngracefully\n\n- first item\n- second item\n- first item\n\n```\ncode. stays\n```\n\n"
        "short one. another one\n"
    )
    text = compose(brief(mode="rewrite", section="Requirements", current=current))
    assert text == (
        "- The export must support markdown.\n- It must be fast.\n- Also handle errors gracefully.\n\n"
        "- First item\n- Second item\n\n```\ncode. stays\n```\n\nShort one. Another one.\n"
    )
    words = lambda s: set(re.findall(r"\w+", s.casefold()))  # noqa: E731
    assert words(text) == words(current)  # content preserved, nothing invented
    assert NOTE not in text


def test_rewrite_keeps_list_style_numbers_and_tasks() -> None:
    current = "1. one thing.\n2. two things\n2. one thing.\n\n- [ ] a task\n  continued here\n- [x] done\n"
    text = compose(brief(mode="rewrite", current=current))
    assert text == "1. One thing.\n2. Two things.\n\n- [ ] A task continued here\n- [x] Done\n"


def test_rewrite_or_expand_of_an_empty_section_drafts() -> None:
    assert compose(brief(mode="rewrite", current="  \n")) == compose(brief())
    assert compose(brief(mode="expand")) == compose(brief())


def test_expand_appends_a_checklist_to_the_untouched_body() -> None:
    current = "- Time to first draft\n- **Baseline**: unknown\n"
    text = compose(brief(mode="expand", section="Success metrics", current=current,
                         guidance="How we will know it worked: metric, baseline, target, date."))
    assert text.startswith(current.rstrip() + "\n\n**To flesh out:**\n\n- [ ] ")
    assert "- [ ] How we will know it worked: metric, baseline, target, date\n" in text
    assert "- [ ] A target and a date" in text
    assert "A baseline for each metric" not in text  # the body already covers it
    again = compose(brief(mode="expand", section="Success metrics", current=text,
                          guidance="How we will know it worked: metric, baseline, target, date."))
    assert again == text  # nothing left to add


def test_summarize_takes_first_sentences_capped_at_five() -> None:
    current = (
        "First point here. More detail.\n\nSecond point! Detail.\n\n- third point. x\n- fourth\n- fifth\n"
        "- sixth\n- seventh\n"
    )
    text = compose(brief(mode="summarize", current=current))
    assert text == (
        "**Summary:**\n\n- First point here.\n- Second point!\n- Third point.\n- Fourth.\n- Fifth.\n"
    )


def test_summarize_of_an_empty_section_summarizes_the_document() -> None:
    text = compose(brief(mode="summarize", section="Summary"))
    assert text.startswith("**Summary:**\n\n- PRD Tool helps product managers write requirement documents together.")


def test_fill_gaps_writes_one_section_per_gap_in_order() -> None:
    gaps = ("Success metrics", "Risks", "Non-goals")
    text = compose(brief(mode="fill-gaps", section=None, gaps=gaps))
    assert re.findall(r"^## (.+)$", text, re.MULTILINE) == list(gaps)
    assert not re.search(r"^#(?!# )", text, re.MULTILINE)
    assert text.count(NOTE) == 3
    parts = re.split(r"^## .+\n\n", text, flags=re.MULTILINE)[1:]
    assert parts[1] == compose(brief(section="Risks")) + "\n"
    assert "What this work deliberately does not do" in parts[2]  # the template's guidance for it
    assert compose(brief(mode="fill-gaps", section=None)) == ""


def test_non_ascii_text_is_preserved() -> None:
    the_brief = brief(section="Notes", guidance="Größe, 日本語 🚀")
    events = run(OfflineProvider(chunk_words=1), the_brief)
    text = text_of(events)
    assert text == compose(the_brief)
    assert "Größe-aware sorting for 日本語 titles must work 🚀." in text
    assert "- [ ] Größe, 日本語 🚀" in text
    rewritten = compose(brief(mode="rewrite", current="über alles. naïve café 🚀\n"))
    assert rewritten == "Über alles. Naïve café 🚀.\n"


def test_provider_scaffolding_is_not_material_again() -> None:
    """A PRD that already holds offline drafts: their notes and labels are not read back as content."""
    drafted = PRD.replace("## Risks\n", "## Risks\n\n" + compose(brief()))
    again = compose(brief(section="Open questions", document=drafted))
    assert NOTE not in again.split("\n", 1)[1]
    assert "Risk:" not in again
    summary = compose(brief(mode="summarize", section="Summary", document=drafted))
    assert "Drafted offline" not in summary


def test_draft_without_a_section_title_still_reads_the_introduction() -> None:
    text = compose(brief(section=None, guidance="What it is"))
    assert "PRD Tool helps product managers write requirement documents together." in text
