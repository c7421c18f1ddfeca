"""Prompts for AI jobs: a :class:`~prdtool.ai.providers.Brief` rendered for a model, within its context.

The texts are versioned files, ``prompts/<version>/<name>.md`` next to this module (they ship inside
the ``prdtool`` package), rendered with :class:`string.Template`: ``system.md`` is the system
prompt, and each mode has its own user prompt (``draft.md``, ``rewrite.md``, ``expand.md``,
``summarize.md``, ``fill-gaps.md``) with the placeholders ``$section`` (the target's title),
``$level``/``$subheading_level``/``$subheading`` (its heading level, the level of its subsections and
that level's ``###`` marker), ``$instruction``, ``$guidance``, ``$outline`` (every heading of the
document), ``$document`` (the document, possibly shortened), ``$current`` (the target's current
body) and ``$gaps`` (fill-gaps: the sections to draft, with their guidance).  Substituted values are
never re-expanded, so a ``$`` in a document is text.

Prompt-injection hygiene: the document, the instruction and every other value sit between tags and
the system prompt says what is in them is data; a value's text that would close or open one of those
tags (``</document>``) has its ``<`` replaced by U+2039 (a single angle quotation mark).

**Token estimate.**  ``estimate_tokens(text) = ceil((len(text) + 2 * non_ascii_characters) / 3)``:
three characters of ASCII text per token (real tokenizers average about four for English prose and
Markdown, so this over-estimates), and one token per non-ASCII character (CJK text, emoji and
accented letters can take a token or more each, where ``len/3`` would under-estimate badly).

**Bounding.**  ``estimate_tokens(system) + estimate_tokens(prompt) <= context_tokens -
max_output_tokens`` always holds (``ValueError`` when even the fixed text cannot fit).  What is kept,
in order of priority:

1. the task text, the instruction and the guidance (the instruction is cut only if it would take
   more than half of the room);
2. the target section — its heading and a marker in the document, its text in ``$current``;
3. the outline (every heading);
4. the target's neighbours, whole: the previous sibling section with its subsections (or, when the
   target is a first child, the text just before it: its parent's heading and introduction) and the
   next section (with its subsections when it is a sibling; its own text only when it is of a higher
   level);
5. the document's beginning (title and introduction), then the other sections (heading to next
   heading of any level), nearest to the target first, those before it first at equal distance.
   A section that does not fit is left out — smaller, farther ones may still go in; each run of
   left-out text is one ``[… N sections omitted …]`` line.

When 2 to 4 do not all fit, the outline keeps what the target and the neighbours leave, but at least
a quarter of the room (the headings around the target's, "[… N headings …]" for the others); the
target's text keeps what the outline leaves (cut in the middle, marked ``[… truncated …]``), and the
neighbours what is left (cut likewise, or left out).

The section-mode prompts ask for the new body of the target only (Markdown, no heading, no preamble,
no code fence, subsections one level deeper than the target); the fill-gaps prompt for one
``## Title`` section per gap, in order, and nothing else.  :func:`clean` and :func:`parse_fill_gaps`
read the answers.

For fill-gaps (no target) the document is kept from its beginning; for a section that does not exist
yet (draft), the target is where :func:`prdtool.ai.sections.insertion_point` would insert it.
``truncated`` is true when anything was cut or left out.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template

from prdtool.ai import sections
from prdtool.ai.providers import Brief

PROMPT_VERSION = "v1"
MODES = ("draft", "rewrite", "expand", "summarize", "fill-gaps")
SECTION_MODES = ("draft", "rewrite", "expand", "summarize")
TRUNCATED = "[… truncated …]"
TARGET_MARKER = "[… the section to write: its current text is given in <current_section> …]"
MISSING_MARKER = "[… the section to write: it does not exist yet and will be inserted here …]"
_MARKER_UNITS = 96  # upper bound of an omission marker's cost, separators included (each run of kept
# text has at most one marker after it, so a chunk joining a kept neighbour costs no marker)


@dataclass(frozen=True)
class Prompt:
    system: str
    prompt: str
    version: str  # PROMPT_VERSION of the templates used
    estimated_tokens: int  # estimate_tokens(system) + estimate_tokens(prompt)
    truncated: bool  # part of the document (or of the instruction) was cut or left out


# ----------------------------------------------------------------------------- templates
@cache
def template(name: str, version: str = PROMPT_VERSION) -> str:
    """The text of ``prompts/<version>/<name>.md`` (``system`` or a mode)."""
    return (resources.files("prdtool.ai") / "prompts" / version / f"{name}.md").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- tokens
def _units(text: str) -> int:
    """Cost in thirds of an estimated token: 1 per ASCII character, 3 per other character."""
    return len(text) + 2 * (len(text) - len(text.encode("ascii", "ignore")))


def estimate_tokens(text: str) -> int:
    """A conservative token count (see the module docstring): ``ceil(units / 3)``."""
    return -(-_units(text) // 3)


def _head(text: str, units: int) -> str:
    """A prefix of ``text`` costing at most ``units``, ending at a line break when one is near."""
    if units <= 0:
        return ""
    candidate = text[:units]
    excess = _units(candidate) - units
    if excess > 0:  # every character costs at least one unit
        candidate = candidate[: len(candidate) - excess]
    if len(candidate) < len(text):
        cut = candidate.rfind("\n")
        if cut >= len(candidate) * 3 // 4:
            candidate = candidate[: cut + 1]
    return candidate


def _tail(text: str, units: int) -> str:
    """A suffix of ``text`` costing at most ``units``, starting after a line break when one is near."""
    if units <= 0:
        return ""
    candidate = text[-units:]
    excess = _units(candidate) - units
    if excess > 0:
        candidate = candidate[excess:]
    if len(candidate) < len(text):
        cut = candidate.find("\n")
        if 0 <= cut <= len(candidate) // 4:
            candidate = candidate[cut + 1 :]
    return candidate


def _cut(text: str, units: int) -> str:
    """``text`` if it costs at most ``units``; else its beginning and end around ``[… truncated …]``."""
    if _units(text) <= units:
        return text
    marker = f"\n\n{TRUNCATED}\n\n"
    room = units - _units(marker)
    if room <= 0:
        return TRUNCATED if _units(TRUNCATED) <= units else ""
    head = _head(text, room * 2 // 3).rstrip()
    tail = _tail(text, room - _units(head)).lstrip()
    return head + marker + tail


# ----------------------------------------------------------------------------- data hygiene
_TAGS = re.compile(r"<(/?\s*)(document|outline|current_section|section_guidance|gaps|instruction)\b", re.IGNORECASE)


def _data(text: str) -> str:
    """Text to put between tags: anything that looks like one of our tags is defused."""
    return _TAGS.sub(lambda m: "\u2039" + m.group(1) + m.group(2), text)


# ----------------------------------------------------------------------------- outline
_TARGET_NOTE = "   \u2190 the section to write"
_MISSING_NOTE = "   \u2190 missing: the section to write goes here"


def _outline(
    found: list[sections.Span], target: sections.Span | None, missing: tuple[int, int, str] | None
) -> tuple[list[str], int]:
    """The outline's lines (one per heading, indented by level, the target marked) and the index of
    the target's line (0 without a target)."""
    entries: list[tuple[int, int, str]] = [
        (s.start, s.level, s.title + (_TARGET_NOTE if s is target else "")) for s in found
    ]
    focus = next((index for index, s in enumerate(found) if s is target), 0)
    if missing is not None:
        offset, level, title = missing
        focus = bisect.bisect_left([e[0] for e in entries], offset)
        entries.insert(focus, (offset, level, title + _MISSING_NOTE))
    if not entries:
        return [], 0
    top = min(level for _, level, _ in entries)
    return [f"{'  ' * (level - top)}- {_data(text)}" for _, level, text in entries], focus


def _cut_outline(lines: list[str], focus: int, units: int) -> str:
    """The outline within ``units``: whole if it fits, else the headings around ``focus`` (the
    target's), with ``[… N headings …]`` for those left out before and after."""
    text = "\n".join(lines)
    if _units(text) <= units or not lines:
        return text
    reserve = 2 * _units("[… 1000000 headings …]\n")
    lo, hi = focus, focus  # lines[lo:hi] are kept
    used = reserve
    while True:
        grown = False
        for index in (hi, lo - 1):  # after first, then before: the outline reads top-down to the target
            if 0 <= index < len(lines) and not lo <= index < hi and used + _units(lines[index]) + 1 <= units:
                used += _units(lines[index]) + 1
                lo, hi = min(lo, index), max(hi, index + 1)
                grown = True
        if not grown:
            break
    kept = lines[lo:hi]
    if lo:
        kept.insert(0, f"[… {lo} heading{'s' if lo != 1 else ''} …]")
    if hi < len(lines):
        kept.append(f"[… {len(lines) - hi} more heading{'s' if len(lines) - hi != 1 else ''} …]")
    return "\n".join(kept) if used <= units else ""


# ----------------------------------------------------------------------------- build
def _placeholder(value: str, empty: str) -> str:
    return value if value.strip() else empty


def build(brief: Brief, *, context_tokens: int = 100_000, max_output_tokens: int = 2048) -> Prompt:
    """The prompt for ``brief``, bounded to ``context_tokens - max_output_tokens`` (module docstring).

    Raises ``ValueError`` for an unknown mode, a section mode without a section, or a context window
    too small for the fixed text of the prompt.
    """
    if brief.mode not in MODES:
        raise ValueError(f"unknown mode {brief.mode!r} (expected one of {', '.join(MODES)})")
    section_title = " ".join((brief.section or "").split())
    if brief.mode in SECTION_MODES and not section_title:
        raise ValueError(f"mode {brief.mode!r} needs a target section")
    system = template("system")
    budget = 3 * (context_tokens - max_output_tokens - estimate_tokens(system))  # in units
    doc = brief.document
    found = sections.spans(doc)
    truncated = False

    # The target, or where a missing target goes.
    target: sections.Span | None = None
    missing: tuple[int, int, str] | None = None
    level = 2
    if brief.mode in SECTION_MODES:
        target = sections.find(doc, section_title)
        if target is not None:
            level, region = target.level, (target.start, target.end)
            section_title = target.title or section_title
        else:
            key = sections.canonical(section_title)
            if key is not None and sections.schema_section("standard", key) is not None:
                offset, level = sections.insertion_point(doc, key)
            else:
                offset = len(doc)
            missing = (offset, level, section_title)
            region = (offset, offset)
    else:
        region = (0, 0)
    current = brief.current if brief.current.strip() or target is None else target.body(doc)
    guidance = brief.guidance or (sections.guidance("standard", section_title) if section_title else "")
    gap_titles = brief.gaps or (
        tuple(g.title for g in sections.gaps(doc)) if brief.mode == "fill-gaps" else ()
    )
    gap_lines = []
    for number, title in enumerate(gap_titles, 1):
        hint = sections.guidance("standard", title)
        gap_lines.append(f"{number}. {' '.join(title.split())}" + (f" — {hint}" if hint else ""))

    text = Template(template(brief.mode))
    sub_level = min(level + 1, 6)
    values = {
        "section": _data(section_title),
        "level": str(level),
        "subheading_level": str(sub_level),
        "subheading": "#" * sub_level,
        "guidance": _data(_placeholder(guidance, "(none)")),
        "gaps": _data("\n".join(gap_lines) or "(none)"),
    }

    def render(instruction: str, outline: str, document: str, current_text: str) -> str:
        return text.substitute(values, instruction=instruction, outline=outline, document=document,
                               current=current_text)

    # 1. The fixed text and the instruction (cut only if it would take more than half of the room).
    instruction = _data(_placeholder(brief.instruction.strip(), "(none)"))
    fixed = _units(render("", "", "", ""))
    if budget - fixed - _units(instruction) < (budget - fixed) // 2:
        instruction = _cut(instruction, (budget - fixed) // 2)
        truncated = True
    left = budget - _units(render(instruction, "", "", ""))
    if left < 0:
        raise ValueError("the model's context window is too small for this prompt")

    # 2. The target (a heading and a marker in the document, its text in $current) and the outline.
    bounds = sorted({0, len(doc), *(s.start for s in found)})
    chunks = [(a, b) for a, b in itertools.pairwise(bounds) if a < b]
    chunk_starts = [a for a, _ in chunks]
    starts = [s.start for s in found]
    rs, re_ = region
    lo = bisect.bisect_left(chunk_starts, rs)  # chunks[lo:hi] are the target's
    hi = bisect.bisect_left(chunk_starts, re_) if re_ > rs else lo
    taken = [lo <= index < hi for index in range(len(chunks))]
    segments: list[tuple[int, int, str]] = []  # (start, end, text) of the document's kept parts
    if target is not None:
        heading = _data(doc[target.start : target.body_start]).rstrip("\r\n")
        segments.append((target.start, target.end, f"{heading}\n\n{TARGET_MARKER}\n\n"))
    elif missing is not None:
        gap = sections._separator(doc[max(0, rs - 8) : rs], "\n")  # a blank line before the heading
        segments.append((rs, rs, f"{gap}{'#' * level} {_data(section_title)}\n\n{MISSING_MARKER}\n\n"))
    left -= sum(_units(t) for _, _, t in segments) + 2 * _MARKER_UNITS

    # 3. The neighbours: the previous sibling (or the text just before) and the section that follows.
    neighbours: list[tuple[int, int, str]] = []
    if brief.mode in SECTION_MODES:
        before = [s for s in found if s.end == rs and s.start < rs and s.level >= level]
        if before:
            first = min(s.start for s in before)
            neighbours.append((first, rs, _data(doc[first:rs])))
        elif lo > 0:
            a, b = chunks[lo - 1]
            neighbours.append((a, b, _data(doc[a:b])))
        after = next((s for s in found if s.start == re_ and s.start < len(doc)), None)
        if after is not None:
            # A following section of a higher level (the target ends its parent) comes without its
            # subsections, which are the parent's whole next part.
            end = after.end if after.level >= level else chunks[hi][1]
            neighbours.append((after.start, end, _data(doc[after.start : end])))
    neighbour_units = sum(_units(t) + _MARKER_UNITS for _, _, t in neighbours)

    # The outline and the target's text; when they and the neighbours do not all fit, the outline gets
    # what the target and the neighbours leave (at least a quarter of the room, when it needs it),
    # the target's text what the outline leaves, and the neighbours the rest.
    outline_lines, focus = _outline(found, target, missing)
    outline = "\n".join(outline_lines) or "(no headings)"
    current_text = _data(_placeholder(_strip_blank_lines(current), "(empty)")) if brief.mode in SECTION_MODES else ""
    room = max(left, 0)
    if _units(outline) + _units(current_text) + neighbour_units > room:
        truncated = True
        outline_room = max(room // 4, room - _units(current_text) - neighbour_units)
        outline = _cut_outline(outline_lines, focus, min(_units(outline), outline_room))
        current_text = _cut(current_text, room - _units(outline))
    left -= _units(outline) + _units(current_text)
    for a, b, piece in neighbours:
        cost = _units(piece) + _MARKER_UNITS
        if cost > left:
            truncated = True
            if left <= _MARKER_UNITS + 300:
                continue
            piece = _cut(piece, left - _MARKER_UNITS)
            cost = _units(piece) + _MARKER_UNITS
        segments.append((a, b, piece))
        left -= cost
        for index in range(bisect.bisect_left(chunk_starts, a), bisect.bisect_left(chunk_starts, b)):
            taken[index] = True

    # 4. The rest: the beginning first, then nearest to the target first (before it, then after it).
    def priority(index: int) -> tuple[int, int, int]:
        if index == 0:
            return (0, 0, 0)
        return (1, lo - index, 0) if index < lo else (1, index - hi + 1, 1)

    added: list[tuple[int, int, str]] = []
    for index in sorted(range(len(chunks)), key=priority):
        if taken[index]:
            continue
        a, b = chunks[index]
        piece = _data(doc[a:b])
        # A chunk next to a kept one adds no omission marker; a lone one may add one.
        joins = (index > 0 and taken[index - 1]) or (index + 1 < len(chunks) and taken[index + 1])
        cost = _units(piece) + (0 if joins else _MARKER_UNITS)
        if cost <= left:
            segments.append((a, b, piece))
            added.append(segments[-1])
            taken[index] = True
            left -= cost
        elif doc[a:b].strip():
            truncated = True

    def document() -> str:
        parts: list[str] = []
        position = 0
        for a, b, piece in sorted(segments, key=lambda segment: (segment[0], segment[1])):
            if a > position and doc[position:a].strip():
                parts.append(_omitted(starts, position, a))
            parts.append(piece)
            position = max(position, b)
        if position < len(doc) and doc[position:].strip():
            parts.append(_omitted(starts, position, len(doc)))
        return "".join(parts).rstrip() or "(empty document)"

    prompt = render(instruction, outline, document(), current_text)
    while _units(prompt) > budget and added:  # a safety net: the accounting above is an upper bound
        segments.remove(added.pop())
        prompt = render(instruction, outline, document(), current_text)
    if _units(prompt) > budget:
        raise ValueError("the model's context window is too small for this prompt")
    return Prompt(system, prompt, PROMPT_VERSION, estimate_tokens(system) + estimate_tokens(prompt), truncated)


def _omitted(starts: list[int], a: int, b: int) -> str:
    count = bisect.bisect_left(starts, b) - bisect.bisect_left(starts, a)
    what = f"{count} section{'s' if count != 1 else ''}" if count else "text"
    return f"\n[… {what} omitted …]\n\n"


# ----------------------------------------------------------------------------- answers
_LEADING_BLANK = re.compile(r"\A(?:[ \t]*(?:\r\n|\r|\n))+")
_TRAILING_BLANK = re.compile(r"(?:(?:\r\n|\r|\n)[ \t]*)+\Z")
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _strip_blank_lines(text: str) -> str:
    text = _TRAILING_BLANK.sub("", _LEADING_BLANK.sub("", text))
    return text if text.strip() else ""


def _unwrap_fence(text: str) -> str:
    """The content of ``text`` when all of it is one closed code fence (no info string, or
    ``markdown``/``md``); else ``text``."""
    top = [t for t in sections.block_parser().parse(text) if t.level == 0 and t.map is not None]
    if len(top) != 1 or top[0].type != "fence" or top[0].info.strip().lower() not in ("", "markdown", "md"):
        return text
    lines = _LINES.findall(text)
    marker = top[0].markup
    closer = lines[-1].strip() if len(lines) >= 2 else ""
    if not (closer.startswith(marker) and closer == marker[0] * len(closer)):
        return text  # not closed: the answer was cut off, or the fence is not a wrapper
    return "".join(lines[1:-1])


def clean(output: str, section: str | None = None) -> str:
    """A model's answer for one section, tidied conservatively: leading and trailing blank lines
    removed, a code fence wrapping the whole answer (no info string, ``markdown`` or ``md``) removed,
    and — when ``section`` is given — a first line that is a heading repeating ``section``'s title
    (case, punctuation and numbering ignored) removed.  Nothing else changes: text in the middle is
    returned as is."""
    text = _strip_blank_lines(_unwrap_fence(_strip_blank_lines(output)))
    if section is not None and text:
        found = sections.spans(text)
        if found and found[0].start == 0 and sections.same_heading(found[0].title, section):
            text = _strip_blank_lines(text[found[0].body_start :])
    return text


def parse_fill_gaps(output: str) -> list[tuple[str, str]]:
    """``(title, body)`` per section of a fill-gaps answer, in order: the sections are the top-level
    headings of the highest level used (``##`` as asked, or whatever level the model used throughout);
    deeper headings stay in their section's body; text before the first heading is dropped."""
    text = clean(output)
    found = sections.spans(text)
    if not found:
        return []
    top = min(s.level for s in found)
    return [(s.title, _strip_blank_lines(s.body(text))) for s in found if s.level == top]
