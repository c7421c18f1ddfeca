"""What changed between two versions of a PRD, and how much that is worth: major, minor or patch.

A PRD is Markdown; its sections come from a real CommonMark parser (markdown-it-py), so a ``#`` in
a code block or a setext heading (``Title`` over ``---``) is what a reader sees, not what a regular
expression guesses.  A section is a heading and everything up to the next heading of any level;
the text before the first heading is a section without a title.

Classification against the last version (issue #14, DESIGN 1.3):

* **major** — the structure changed: a section added, removed, renamed or moved (a heading whose
  level changes moves the section in the outline).  A section is *renamed* when its heading is new
  but its text is mostly the old section's (word similarity ≥ ``rename_similarity``), else it is a
  removal plus an addition.  *Moved* sections are the ones outside the longest run kept in order.
* **minor** — the content changed: more than ``patch_max_words`` words added or removed in all, or
  any section *rewritten* (more than ``rewrite_ratio`` of its old words removed or replaced).
* **patch** — a small fix: a typo, a few words, formatting or whitespace that shows.
* **none** — insignificant: the rendered document looks the same (trailing spaces, a line break
  that CommonMark folds, an extra blank line; whitespace in code blocks counts).  Saved, not
  versioned; it counts toward the next version.

Words are ``\\w+`` runs, so ``*bold*`` → ``**bold**`` changes no word (a patch, since it renders
differently).  Thresholds are settings (``Thresholds.from_settings``, docs/versions.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from enum import StrEnum
from functools import cache
from typing import Any

_WORD = re.compile(r"\w+")
_STRUCTURAL = frozenset({"added", "removed", "renamed", "moved"})
SUBJECT_MAX = 72  # git's convention for a commit's first line


class Kind(StrEnum):
    NONE = "none"
    PATCH = "patch"
    MINOR = "minor"
    MAJOR = "major"


@dataclass(frozen=True)
class Thresholds:
    """Where patch ends and minor begins, and what counts as a rename or a rewrite."""

    patch_max_words: int = 5  # words added + removed, in all, that are still a fix
    rewrite_ratio: float = 0.5  # share of a section's old words removed beyond which it is rewritten
    rename_similarity: float = 0.6  # word similarity of a new heading's text to an old section's

    @classmethod
    def from_settings(cls, settings: Any) -> Thresholds:
        """``VERSION_PATCH_MAX_WORDS``, ``VERSION_REWRITE_PERCENT``, ``VERSION_RENAME_PERCENT``."""
        return cls(patch_max_words=settings.version_patch_max_words,
                   rewrite_ratio=settings.version_rewrite_percent / 100,
                   rename_similarity=settings.version_rename_percent / 100)


@dataclass(frozen=True)
class Section:
    level: int  # 1-6; 0 for the text before the first heading
    title: str  # the heading's text as written ("" before the first heading)
    body: str  # the Markdown source after the heading, up to the next heading
    words: tuple[str, ...] = field(repr=False)

    @property
    def label(self) -> str:
        return f"'{self.title}'" if self.title else "the introduction"


@dataclass(frozen=True)
class SectionChange:
    """One line of what changed: ``action`` is added, removed, renamed, moved, rewritten, edited or
    fixed (moves and renames may carry word counts of their own edits)."""

    action: str
    section: Section
    old: Section | None = None
    added_words: int = 0
    removed_words: int = 0

    def describe(self) -> str:
        words = _counts(self.added_words, self.removed_words)
        if self.action == "added":
            return f"Add section {self.section.label}"
        if self.action == "removed":
            return f"Remove section {self.section.label}"
        if self.action == "renamed":
            assert self.old is not None
            return f"Rename {self.old.label} to {self.section.label}" + (f" ({words})" if words else "")
        if self.action == "moved":
            return f"Move {self.section.label}" + (f" ({words})" if words else "")
        if self.action == "rewritten":
            return f"Rewrite {self.section.label} ({words})"
        if self.action == "edited":
            return f"Edit {self.section.label} ({words})"
        return f"Fix {self.section.label}" + (f" ({words})" if words else " (formatting)")


@dataclass(frozen=True)
class Change:
    kind: Kind
    changes: tuple[SectionChange, ...]
    added_words: int
    removed_words: int

    @property
    def significant(self) -> bool:
        return self.kind is not Kind.NONE

    def summary(self) -> str:
        """What changed, in words: ``Add section 'Risks'; rewrite 'Goals' (+120 words)``."""
        parts = [c.describe() for c in self.changes]
        if not parts:
            return "No visible change"
        return parts[0] + "".join(f"; {p[0].lower()}{p[1:]}" for p in parts[1:])

    def subject(self) -> str:
        """:meth:`summary` cut to a commit subject line (the rest goes in :meth:`details`)."""
        parts = [c.describe() for c in self.changes]
        if not parts:
            return "No visible change"
        subject = parts[0][: SUBJECT_MAX - 1] + "…" if len(parts[0]) > SUBJECT_MAX else parts[0]
        for shown in range(1, len(parts)):
            longer = f"{subject}; {parts[shown][0].lower()}{parts[shown][1:]}"
            rest = len(parts) - shown - 1
            if len(longer) + (len(f" and {rest} more") if rest else 0) > SUBJECT_MAX:
                return f"{subject} and {len(parts) - shown} more"
            subject = longer
        return subject

    def details(self) -> list[str]:
        """One line per change, for the commit body and the changelog."""
        return [c.describe() for c in self.changes]


def _counts(added: int, removed: int) -> str:
    parts = ([f"+{added}"] if added else []) + ([f"-{removed}"] if removed else [])
    if not parts:
        return ""
    total = added + removed
    return " ".join(parts) + (" word" if total == 1 else " words")


@cache
def _parser() -> Any:
    from markdown_it import MarkdownIt  # lazy: only the versioning functions parse Markdown

    return MarkdownIt("commonmark")


def sections(markdown: str) -> list[Section]:
    """The document's sections in order (the untitled introduction first, when there is text)."""
    lines = markdown.splitlines(keepends=True)
    tokens = _parser().parse(markdown)
    headings: list[tuple[int, int, int, str]] = []  # (first line, line after, level, title)
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.map is not None:
            title = tokens[index + 1].content.strip() if index + 1 < len(tokens) else ""
            headings.append((token.map[0], token.map[1], int(token.tag[1:]), title))
    found: list[Section] = []
    starts = [h[0] for h in headings] + [len(lines)]
    intro = "".join(lines[: starts[0]])
    if intro.strip():
        found.append(_section(0, "", intro))
    for position, (_first, after, level, title) in enumerate(headings):
        found.append(_section(level, title, "".join(lines[after : starts[position + 1]])))
    return found


def _section(level: int, title: str, body: str) -> Section:
    return Section(level, title, body, tuple(_WORD.findall(body)))


def _word_changes(old: Sequence[str], new: Sequence[str]) -> tuple[int, int]:
    """(words added, words removed) from ``old`` to ``new``."""
    added = removed = 0
    for tag, i1, i2, j1, j2 in SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            removed += i2 - i1
        if tag in ("replace", "insert"):
            added += j2 - j1
    return added, removed


def _similarity(old: Sequence[str], new: Sequence[str]) -> float:
    if not old and not new:
        return 1.0
    return SequenceMatcher(a=old, b=new, autojunk=False).ratio()


def _kept_in_order(pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """The longest subsequence of (old index, new index) pairs, in old order, whose new indexes
    increase: the sections that stayed in place; the others moved."""
    ordered = sorted(pairs)
    best: list[list[tuple[int, int]]] = []
    for pair in ordered:
        chain = max((c for c in best if c[-1][1] < pair[1]), key=len, default=[])
        best.append([*chain, pair])
    longest: list[tuple[int, int]] = max(best, key=len) if best else []
    return set(longest)


_PRE = re.compile(r"(<pre>.*?</pre>)", re.DOTALL)
_SPACE = re.compile(r"\s+")


def _visible(markdown: str) -> str:
    """The rendered HTML with whitespace collapsed where a browser collapses it (not in ``<pre>``)."""
    parts = _PRE.split(str(_parser().render(markdown)))
    return "".join(part if index % 2 else _SPACE.sub(" ", part) for index, part in enumerate(parts)).strip()


def _renders_alike(old: str, new: str) -> bool:
    return _visible(old) == _visible(new)


def classify(old_markdown: str, new_markdown: str, thresholds: Thresholds | None = None) -> Change:
    """How ``new_markdown`` differs from ``old_markdown``, section by section."""
    limits = thresholds or Thresholds()
    if old_markdown == new_markdown or _renders_alike(old_markdown, new_markdown):
        return Change(Kind.NONE, (), 0, 0)
    old, new = sections(old_markdown), sections(new_markdown)

    # Same heading (level and text), matched in order, repeats one to one.
    pairs: list[tuple[int, int]] = []
    unmatched_new = list(range(len(new)))
    for i, section in enumerate(old):
        j = next((j for j in unmatched_new if (new[j].level, new[j].title) == (section.level, section.title)), None)
        if j is None:
            j = next((j for j in unmatched_new if new[j].title == section.title and section.title), None)
        if j is not None:
            unmatched_new.remove(j)
            pairs.append((i, j))
    matched_old = {i for i, _ in pairs}
    renamed: set[tuple[int, int]] = set()
    for i, section in enumerate(old):
        if i in matched_old or not section.title:
            continue
        scored = [(_similarity(section.words, new[j].words), j) for j in unmatched_new if new[j].title]
        score, j = max(scored, default=(0.0, -1))
        if j >= 0 and score >= limits.rename_similarity and section.words:
            unmatched_new.remove(j)
            pairs.append((i, j))
            renamed.add((i, j))
            matched_old.add(i)

    kept = _kept_in_order(pairs)
    by_new: list[tuple[int, SectionChange]] = []
    added_total = removed_total = 0
    structural = False
    for i, j in pairs:
        added, removed = _word_changes(old[i].words, new[j].words)
        added_total += added
        removed_total += removed
        moved = (i, j) not in kept or old[i].level != new[j].level
        if (i, j) in renamed:
            by_new.append((j, SectionChange("renamed", new[j], old[i], added, removed)))
            structural = True
        elif moved:
            by_new.append((j, SectionChange("moved", new[j], old[i], added, removed)))
            structural = True
        elif old[i].body != new[j].body or old[i].title != new[j].title:
            # Rewritten: most of the old text is gone (adding to a section only extends it).
            if removed / max(len(old[i].words), 1) > limits.rewrite_ratio and added + removed > limits.patch_max_words:
                action = "rewritten"
            elif added + removed > limits.patch_max_words:
                action = "edited"
            else:
                action = "fixed"
            if not _renders_alike(old[i].body, new[j].body) or old[i].title != new[j].title:
                by_new.append((j, SectionChange(action, new[j], old[i], added, removed)))
    for j in unmatched_new:
        structural = structural or bool(new[j].title)
        words = len(new[j].words)
        added_total += words
        by_new.append((j, SectionChange("added" if new[j].title else "edited", new[j], None, words, 0)))
    removals: list[SectionChange] = []
    for i, section in enumerate(old):
        if i not in matched_old:
            structural = structural or bool(section.title)
            removed_total += len(section.words)
            removals.append(SectionChange("removed" if section.title else "edited", section, section,
                                          0, len(section.words)))
    # Structure first (what a reader of the log wants to know), then edits, in document order.
    ordered = sorted(by_new, key=lambda item: (item[1].action not in _STRUCTURAL, item[0]))
    changes = tuple(c for c in removals if c.action == "removed") + tuple(c for _, c in ordered) + tuple(
        c for c in removals if c.action != "removed")
    if structural:
        kind = Kind.MAJOR
    elif any(c.action == "rewritten" for c in changes) or added_total + removed_total > limits.patch_max_words:
        kind = Kind.MINOR
    else:
        kind = Kind.PATCH
    if not changes:  # every section renders alike on its own, the whole does not (e.g. a list split)
        changes = (SectionChange("fixed", new[0] if new else _section(0, "", "")),)
    return Change(kind, changes, added_total, removed_total)


_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int, int]:
    """``1.2.0`` or ``v1.2.0`` (DESIGN 3.3: both are accepted); ValueError otherwise."""
    found = _VERSION.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"not a version: {text[:40]!r} (expected 1.2.0 or v1.2.0)")
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


def bump(version: str, kind: Kind) -> str:
    """The version after ``version`` for a change of ``kind`` (``none`` keeps it)."""
    major, minor, patch = parse_version(version)
    if kind is Kind.MAJOR:
        return f"{major + 1}.0.0"
    if kind is Kind.MINOR:
        return f"{major}.{minor + 1}.0"
    if kind is Kind.PATCH:
        return f"{major}.{minor}.{patch + 1}"
    return f"{major}.{minor}.{patch}"
