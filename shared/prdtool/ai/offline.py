"""The offline provider: deterministic, template-guided drafting from the PRD's own text — not a model.

On the local stack and offline there is no model.  :class:`OfflineProvider` stands in behind the same
streaming interface (:class:`prdtool.ai.providers.Provider`), and it is honest about what it is: its
``name`` is ``offline-template``, its ``model`` says "deterministic, not a model", and every draft it
writes opens with :data:`NOTE`.  It never invents facts: everything it writes is either text taken
from the PRD (the brief's ``document``, ``current`` and ``guidance``) or a plainly-marked prompt for
the person to fill in (``_(…)_`` placeholders, ``- [ ]`` checklists, "to be decided").

It reads the structured :class:`~prdtool.ai.providers.Brief`, not ``system``/``prompt`` (a model's
rendering of the same request), so ``stream`` without a brief is an ``invalid_request``.  Same brief,
same text: there is no randomness (``temperature`` is ignored), no network and no model weights.

What it writes, per ``brief.mode`` (the target section's new body, without its heading):

* ``draft`` — a scaffold for the section's kind (:func:`section_kind`: overview, problem, users,
  goals, non-goals, user stories, requirements, success metrics, risks, timeline, open questions, or
  generic), filled with sentences from *other* sections of the PRD: for Risks, sentences that mention
  dependencies, assumptions, unknowns, legacy systems, migration, security, privacy, performance,
  deadlines or third parties, as ``- **Risk:** … — *Mitigation:* to be decided (owner, date)``; for
  Success metrics, sentences with numbers (from Goals first); for User stories, the roles the PRD
  mentions; for Open questions, sentences ending in ``?`` and TODO/TBD markers; otherwise the
  template's guidance as a checklist plus the PRD's most related sentences.  It opens with
  :data:`NOTE`, then ``> Request: …`` when the person typed an instruction (which it cannot follow:
  it is quoted so a reviewer sees what was asked).
* ``rewrite`` — the current body tidied, content preserved: whitespace collapsed, sentences start
  with a capital letter and end with punctuation, paragraphs of three or more sentences become
  bullets, repeated sentences and list items are dropped.  Code, tables, quotes and headings are
  kept as they are.
* ``expand`` — the current body, unchanged, followed by a ``**To flesh out:**`` checklist from the
  guidance and prompts for the section's kind (items the body already covers are left out).
* ``summarize`` — ``**Summary:**`` and the first sentence of each paragraph or list item, at most
  :data:`SUMMARY_POINTS` bullets (the whole document's when the section is empty).
* ``fill-gaps`` — for each title in ``brief.gaps``, in order, ``## Title`` and that section's draft.

An empty section asked to be rewritten or expanded gets a draft instead (there is nothing to keep).

Streaming: the text is cut into words (a run of non-space characters with the whitespace after it),
sent ``chunk_words`` at a time, so the deltas join to exactly the text.  With ``chunk_delay`` the
chunks leave at a fixed rate (chunk *k* is due ``k * chunk_delay`` after the first, measured with
``clock``; a slow reader does not slow the schedule further).  ``cancel()`` is polled before every
chunk and before :class:`~prdtool.ai.providers.Done`; when it returns true the stream ends without
``Done``, like :class:`~prdtool.ai.providers.BedrockProvider`.

Token counts are estimates (:func:`estimate_tokens`): ⌈words * 4 / 3⌉, the usual rule that an
English token is about three quarters of a word.  Input is ``system`` and ``prompt`` (what a model
would have read), output the text sent.  When the text's estimate exceeds ``max_tokens`` the stream
sends the longest prefix of whole words within it and ends with stop reason ``max_tokens``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from prdtool.ai.providers import Brief, Delta, Done, ProviderError, Usage
from prdtool.prds.templates import STANDARD_SECTIONS

NAME = "offline-template"
MODEL = "offline-template (deterministic, not a model)"
NOTE = "_Drafted offline from this PRD's own text (no AI model configured); review and edit._"
MODES = ("draft", "rewrite", "expand", "summarize", "fill-gaps")
SUMMARY_POINTS = 5
MAX_ITEMS = 6  # bullets of material per drafted section
TBD = "to be decided"


# ----------------------------------------------------------------------------- the provider
class OfflineProvider:
    """Drafts from the :class:`Brief` without a model; see the module docstring."""

    name = NAME
    model = MODEL

    def __init__(
        self,
        *,
        chunk_delay: float = 0.0,
        chunk_words: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if chunk_words < 1:
            raise ValueError("chunk_words must be at least 1")
        if chunk_delay < 0:
            raise ValueError("chunk_delay must not be negative")
        self.chunk_delay = chunk_delay
        self.chunk_words = chunk_words
        self._sleep = sleep
        self._clock = clock

    def stream(
        self,
        *,
        system: str,
        prompt: str,
        max_tokens: int,
        temperature: float = 0.3,  # ignored: the output is deterministic
        cancel: Callable[[], bool] | None = None,
        brief: Brief | None = None,
    ) -> Iterator[Delta | Done]:
        started = self._clock()
        if brief is None:
            raise ProviderError(
                "invalid_request",
                "The offline provider (no AI model) drafts from a structured brief of the request, "
                "and none was given.",
                retryable=False,
            )
        if max_tokens < 1:
            raise ProviderError("invalid_request", "max_tokens must be at least 1.", retryable=False)
        pieces = _pieces(compose(brief))
        allowed = (3 * max_tokens) // 4  # the most words whose estimate stays within max_tokens
        stop_reason = "end_turn"
        if len(pieces) > allowed:
            pieces, stop_reason = pieces[:allowed], "max_tokens"
        first_at: float | None = None
        for number, index in enumerate(range(0, len(pieces), self.chunk_words)):
            if first_at is not None and self.chunk_delay > 0:
                wait = first_at + number * self.chunk_delay - self._clock()
                if wait > 0:
                    self._sleep(wait)
            if cancel is not None and cancel():
                return
            if first_at is None:
                first_at = self._clock()
            yield Delta("".join(pieces[index : index + self.chunk_words]))
        if cancel is not None and cancel():
            return
        usage = Usage(
            estimate_tokens(f"{system}\n{prompt}"),
            estimate_tokens("".join(pieces)),
            round((self._clock() - started) * 1000),
        )
        yield Done(usage, stop_reason)


_PIECE = re.compile(r"\S+\s*")
_LEAD = re.compile(r"\s*")


def _pieces(text: str) -> list[str]:
    """``text`` as words, each with the whitespace after it (leading whitespace joins the first)."""
    lead = _LEAD.match(text)
    start = lead.end() if lead else 0
    found = _PIECE.findall(text, start)
    if found:
        found[0] = text[:start] + found[0]
    elif text:
        found = [text]
    return found


def estimate_tokens(text: str) -> int:
    """⌈words * 4 / 3⌉ — an estimate (a token is about three quarters of an English word)."""
    return math.ceil(len(_PIECE.findall(text)) * 4 / 3)


# ----------------------------------------------------------------------------- what it writes
def compose(brief: Brief) -> str:
    """The whole text the provider streams for ``brief`` (Markdown, ending in a newline, or "")."""
    mode = brief.mode
    title = brief.section or ""
    if mode == "fill-gaps":
        parts = [
            f"## {_collapse(gap)}\n\n" + _draft(gap, brief.document, _template_guidance(gap), brief.instruction)
            for gap in brief.gaps
            if gap.strip()
        ]
        return "\n".join(parts)
    if mode == "draft" or (mode in ("rewrite", "expand") and not brief.current.strip()):
        return _draft(title, brief.document, brief.guidance, brief.instruction)
    if mode == "rewrite":
        return _rewrite(brief.current)
    if mode == "expand":
        return _expand(brief.current, title, brief.guidance)
    if mode == "summarize":
        return _summarize(brief.current if brief.current.strip() else brief.document)
    raise ProviderError(
        "invalid_request",
        f"The offline provider cannot {mode[:40]!r}; it knows: {', '.join(MODES)}.",
        retryable=False,
    )


def _template_guidance(title: str) -> str:
    wanted = title.strip().casefold()
    return next((hint for heading, hint in STANDARD_SECTIONS if heading.casefold() == wanted), "")


# ----------------------------------------------------------------------------- section kinds
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        ("non-goals", r"non[- ]?goal|out of scope|not in scope|anti[- ]?goal"),
        ("open questions", r"question|unknowns|\btbd\b"),
        ("user stories", r"\bstor(?:y|ies)\b|use cases?|jobs to be done|\bjtbd\b"),
        ("success metrics", r"metric|\bkpis?\b|measur|success criteria"),
        ("risks", r"\brisk|mitigation|dependenc|assumption|concern"),
        ("goals", r"\bgoal|objective|outcome"),
        ("problem", r"problem|pain|opportunit|\bwhy\b"),
        ("users", r"\busers?\b|persona|audience|customer|segment|\bwho\b"),
        ("requirements", r"requirement|functional|\bspec|\bscope\b|feature|capabilit"),
        ("timeline", r"timeline|milestone|schedule|roadmap|release|launch|rollout|phase|\bplan"),
        ("overview", r"overview|summary|introduction|background|context|tl;?dr|executive|about"),
    )
)


def section_kind(title: str) -> str:
    """The kind of section a title names (by keywords, case-insensitive), or ``generic``."""
    return next((kind for kind, pattern in _KINDS if pattern.search(title)), "generic")


# ----------------------------------------------------------------------------- Markdown text
@cache
def _md() -> Any:
    """CommonMark (with tables), block structure only: inline source is all that is read here."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark").enable("table")
    parser.core.ruler.disable("inline")
    return parser


_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_FULL_WIDTH = "\u3002\uff01\uff1f"  # ideographic full stop, full-width ! and ?
_QUOTES = "\"'\u201c\u201d\u2018\u2019"  # straight and curly quotes
_TERMINAL = ".!?\u2026:;" + _FULL_WIDTH
_CLOSERS = _QUOTES + ")]*_`"
_END = re.compile(f"[.!?\u2026{_FULL_WIDTH}]+[{re.escape(_QUOTES)})\\]*_]*(?= )")
_CODE = re.compile(r"(`+).+?\1")
_ABBREVIATIONS = frozenset(
    ("e.g.", "i.e.", "vs.", "cf.", "mr.", "mrs.", "ms.", "dr.", "prof.", "inc.", "ltd.", "no.", "approx.", "incl.",
     "fig.", "st.", "jr.", "sr.", "a.m.", "p.m.")
)


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text.replace("\\\n", " ")).strip()


def _key(text: str) -> str:
    """What makes two sentences the same: their words, case-folded."""
    return " ".join(_WORD.findall(text.casefold())) or text.strip()


def _split_sentences(text: str) -> list[str]:
    """Sentences of one paragraph (whitespace collapsed); code spans and abbreviations do not split."""
    text = _collapse(text)
    code = [m.span() for m in _CODE.finditer(text)]
    found: list[str] = []
    start = 0
    for match in _END.finditer(text):
        end = match.end()
        if any(a <= match.start() < b for a, b in code):
            continue
        mark = match.group().rstrip(_CLOSERS)
        word = text[start : match.start()].rsplit(" ", 1)[-1].lstrip(_CLOSERS + "(")
        if mark == "." and (
            f"{word.casefold()}." in _ABBREVIATIONS or "." in word or (len(word) == 1 and word.isalpha())
        ):
            continue  # "e.g. this", "U.S. law", "J. Smith"
        if text[end + 1 : end + 2].islower() and mark in ("...", "…"):
            continue  # "wait… then": a pause, not an end
        found.append(text[start:end])
        start = end + 1
    if text[start:].strip():
        found.append(text[start:])
    return found


def _capitalise(sentence: str) -> str:
    """A capital letter at the start when the first word is a plain lower-case word (not ``iOS``)."""
    lead = len(sentence) - len(sentence.lstrip("*_([" + _QUOTES))
    rest = sentence[lead:]
    word = rest.split(" ", 1)[0].rstrip(".,;:!?)]*_" + _QUOTES)
    if word.isalpha() and word.islower():
        return sentence[:lead] + rest[0].upper() + rest[1:]
    return sentence


def _tidy(sentence: str, *, terminal: bool = True) -> str:
    sentence = _capitalise(_collapse(sentence))
    core = sentence.rstrip(_CLOSERS)
    if terminal and core and core[-1] not in _TERMINAL:
        sentence += "."
    return sentence


def _plain(inline: str) -> str:
    """Inline Markdown as plain text: links and emphasis unwrapped, task boxes and tags removed."""
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", inline)
    text = re.sub(r"\[([^\]]+)\]\((?:[^)]*)\)|\[([^\]]+)\]\[[^\]]*\]", lambda m: m.group(1) or m.group(2), text)
    text = re.sub(r"(\*\*|__|~~)(.+?)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", r"\1", text)
    text = re.sub(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])", r"\1", text)
    text = re.sub(r"</?[A-Za-z][\w-]*(?:\s[^<>]*)?>", "", text)
    text = re.sub(r"^\s*\[[ xX]\]\s+", "", text)
    return _collapse(text)


@dataclass(frozen=True)
class _Paragraph:
    heading: str  # the title of the section it is in ("" before the first heading)
    level: int  # that heading's level (0 before the first heading)
    position: int  # that heading's place among the headings: 1 for the first (0 before it)
    inline: str  # the paragraph's inline Markdown source
    item: bool  # inside a list item
    sentences: tuple[str, ...]  # its plain text (:func:`_plain`), sentence by sentence
    lead: str  # a list item's lead-in before ":" or a dash (personas: "**PMs** — write PRDs")


@dataclass(frozen=True)
class _Outline:
    title: str  # the first level-1 heading's text, plain
    paragraphs: tuple[_Paragraph, ...]


@lru_cache(maxsize=8)  # fill-gaps drafts several sections from one document
def _outline(markdown: str) -> _Outline:
    """Every paragraph (table cells excluded) with its section — a section being a heading and what
    follows up to the next heading of any level, as in :func:`prdtool.versions.changes.sections`."""
    tokens = _md().parse(markdown)
    found: list[_Paragraph] = []
    title = heading = ""
    level = position = depth = 0
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            position += 1
            heading = tokens[index + 1].content.strip() if index + 1 < len(tokens) else ""
            level = int(token.tag[1:])
            title = title or (_plain(heading) if level == 1 else "")
        elif token.type == "list_item_open":
            depth += 1
        elif token.type == "list_item_close":
            depth -= 1
        elif token.type == "inline" and index and tokens[index - 1].type == "paragraph_open":
            plain = _plain(token.content)
            lead = _LEAD_IN.match(plain) if depth else None
            found.append(_Paragraph(heading, level, position, token.content, depth > 0,
                                    tuple(_split_sentences(plain)), lead.group(1).strip() if lead else ""))
    return _Outline(title, tuple(found))


def _paragraphs(markdown: str) -> list[tuple[str, bool]]:
    """(inline source, inside a list item) for every paragraph, in order (table cells excluded)."""
    return [(paragraph.inline, paragraph.item) for paragraph in _outline(markdown).paragraphs]


# ----------------------------------------------------------------------------- material from the PRD
@dataclass(frozen=True)
class _Unit:
    """One sentence of the PRD, as plain text, with where it came from."""

    section: str  # the section's title ("" for the introduction)
    kind: str  # the section's kind, "intro" for the introduction and the document's title
    text: str
    item: bool  # a list item (or one of its sentences)
    lead: str  # a list item's lead-in before ":" or a dash (personas: "**PMs** — write PRDs")


_OWN_PREFIXES = (
    "drafted offline",
    "request:",
    "risk:",
    "metric:",
    "metric for goal:",
    "milestone:",
    "summary:",
    "to flesh out:",
    "also consider:",
    "from elsewhere in this prd:",
)
_LEAD_IN = re.compile("^(.{2,60}?)(?::|\\s[\u2014\u2013-]\\s)")  # "Lead: …", "Lead — …" (em or en dash, or hyphen)


def _material(document: str, exclude: Iterable[str], ignore: Iterable[str]) -> tuple[str, list[_Unit]]:
    """(the document's title, its sentences) outside the excluded sections, without template hints
    and without the offline provider's own scaffolding."""
    excluded = {title.strip().casefold() for title in exclude if title.strip()}
    ignored = {_key(sentence) for text in ignore for sentence in _guidance_items(text)} | _STOCK_KEYS
    units: list[_Unit] = []
    outline = _outline(document)
    kinds: dict[tuple[str, bool], str] = {}
    for paragraph in outline.paragraphs:
        title = paragraph.heading
        if title.casefold() in excluded or re.search(r"<[a-z][\w ]*>", paragraph.inline):
            continue  # the target section; template placeholders (<role>, <capability>)
        first_heading = paragraph.level == 1 and paragraph.position == 1  # the document's title
        kind = kinds.get((title, first_heading))
        if kind is None:
            kind = kinds[title, first_heading] = "intro" if not title or first_heading else section_kind(title)
        for sentence in paragraph.sentences:
            if _key(sentence) in ignored or sentence.casefold().startswith(_OWN_PREFIXES):
                continue
            units.append(_Unit(title, kind, sentence, paragraph.item, paragraph.lead))
    return outline.title, units


def _pick(
    units: Sequence[_Unit],
    pattern: re.Pattern[str] | None = None,
    *,
    prefer: Sequence[str] = (),
    only: Sequence[str] = (),
    limit: int = MAX_ITEMS,
    where: Callable[[_Unit], bool] | None = None,
) -> list[_Unit]:
    """Matching sentences, those from the ``prefer`` kinds first (in that order), then in document
    order; repeats dropped."""
    ranked = sorted(
        (
            (prefer.index(unit.kind) if unit.kind in prefer else len(prefer), position, unit)
            for position, unit in enumerate(units)
            if (pattern is None or pattern.search(unit.text))
            and (not only or unit.kind in only)
            and (where is None or where(unit))
        ),
        key=lambda entry: (entry[0], entry[1]),
    )
    picked: list[_Unit] = []
    seen: set[str] = set()
    for _rank, _position, unit in ranked:
        key = _key(unit.text)
        if key not in seen:
            seen.add(key)
            picked.append(unit)
        if len(picked) >= limit:
            break
    return picked


def _clause(sentence: str) -> str:
    """A sentence to be continued (``… — *Mitigation:* …``): without its final full stop."""
    sentence = _tidy(sentence, terminal=False)
    return sentence[:-1] if sentence.endswith(".") and not sentence.endswith("..") else sentence


def _bullets(lines: Iterable[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def _checklist(lines: Iterable[str]) -> str:
    return "\n".join(f"- [ ] {line}" for line in lines)


def _guidance_items(guidance: str) -> list[str]:
    """The template's guidance as checklist items (``<role>`` placeholders in italics)."""
    items: list[str] = []
    seen: set[str] = set()
    for line in guidance.splitlines():
        line = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?", "", line)
        for sentence in _split_sentences(line):
            sentence = _clause(re.sub(r"<([\w -]+)>", r"_\1_", sentence))
            if _key(sentence) not in seen:
                seen.add(_key(sentence))
                items.append(sentence)
    return items


# ----------------------------------------------------------------------------- prompts per kind
# (prompt, words that show the body already covers it)
_PROMPTS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "overview": (
        ("Who it is for", ("for whom", "who ")),
        ("What changes for them", ("change",)),
        ("Why now", ("why now", "now")),
    ),
    "problem": (
        ("Evidence: data, customer quotes or support tickets", ("evidence", "data", "quote", "ticket")),
        ("Who feels the problem most, and how often", ("how often", "frequen")),
        ("What it costs today (time, money, churn)", ("cost", "hours", "churn")),
    ),
    "users": (
        ("Primary and secondary personas", ("persona", "primary")),
        ("What each of them is trying to get done", ("trying to", "job")),
        ("How many of them there are (reach)", ("reach", "how many")),
    ),
    "goals": (
        ("A measurable outcome for each goal", ("measur", "%")),
        ("The business goal next to the user goal", ("business", "revenue")),
        ("How the goals rank when they conflict", ("rank", "priorit")),
    ),
    "non-goals": (
        ("Tempting scope deliberately left out, and why", ("out of scope", "left out")),
        ("What is postponed to a later phase", ("later", "phase", "postpone")),
    ),
    "user stories": (
        ("A story per persona: As a _role_, I want _capability_ so that _benefit_", ("as a", "as an")),
        ("Acceptance criteria for each story", ("acceptance", "given")),
        ("Edge cases and error paths", ("edge case", "error")),
    ),
    "requirements": (
        ("Each requirement testable, with a clear pass or fail", ("testable", "pass")),
        ("A priority for each: must, should or could", ("must", "priorit")),
        (
            "Non-functional needs: performance, security, privacy, accessibility, reliability",
            ("non-functional", "performance", "security", "accessib"),
        ),
    ),
    "success metrics": (
        ("A baseline for each metric", ("baseline",)),
        ("A target and a date", ("target",)),
        ("Where the data comes from (dashboard, query)", ("dashboard", "query", "source")),
        ("Guardrail metrics that must not get worse", ("guardrail",)),
    ),
    "risks": (
        ("Likelihood and impact of each risk", ("likelihood", "impact")),
        ("A mitigation, an owner and a date for each", ("mitigation", "owner")),
        ("Dependencies on other teams or vendors", ("depend", "vendor")),
    ),
    "timeline": (
        ("Milestones with dates", ("milestone",)),
        ("Dependencies between milestones", ("depend",)),
        ("Launch criteria for beta and general availability", ("beta", "launch")),
    ),
    "open questions": (
        ("An owner and a due date for each question", ("owner", "due")),
        ("The decision each answer unblocks", ("decision", "unblock")),
    ),
    "generic": (
        ("The key facts a reader needs", ()),
        ("Open decisions, with who owns them", ("decision", "owner")),
    ),
}

_RISK_AREAS = (
    ("Security and privacy", r"secur|privacy|gdpr|personal data"),
    ("Performance and scale", r"perform|latency|scal"),
    ("Dependencies on other teams or third parties", r"depend|third[- ]party|vendor|partner"),
    ("Data migration and legacy systems", r"migrat|legacy"),
    ("The schedule and its deadlines", r"deadline|schedule|launch date"),
    ("Compliance and legal", r"complian|regulat|legal"),
)
_MILESTONES = ("Design review", "Beta", "General availability")
_NON_FUNCTIONAL = (
    ("Performance", r"perform|latency|fast|slow|second"),
    ("Security and privacy", r"secur|privacy|permission|access"),
    ("Accessibility", r"accessib|a11y|screen reader|wcag"),
    ("Reliability", r"reliab|availab|uptime|outage|offline"),
)

_STOCK_KEYS = frozenset(
    _key(text)
    for text in (
        *(hint for _title, hint in STANDARD_SECTIONS),
        *(sentence for _title, hint in STANDARD_SECTIONS for sentence in _split_sentences(hint)),
        *(prompt for prompts in _PROMPTS.values() for prompt, _words in prompts),
        *(label for label, _pattern in (*_RISK_AREAS, *_NON_FUNCTIONAL)),
        *(f"{milestone} — date {TBD}" for milestone in _MILESTONES),
    )
)

_RISKY = re.compile(
    r"\b(?:risk|depend|assum|unknown|unclear|uncertain|legacy|migrat|secur|privacy|gdpr|personal data|complian"
    r"|regulat|legal|perform|latency|scal(?:e|ing|ab)|outage|downtime|reliab|deadline|third[- ]part|vendor"
    r"|external|partner|integrat|budget|blocker|constraint)",
    re.IGNORECASE,
)
# A quantity: not a quarter (Q3), a half (H2), a year (2025) or a version (v2).
_NUMBER = re.compile(r"(?<![\w.])(?!(?:19|20)\d\d\b)\d+(?:[.,]\d+)?(?![\w.])|\bpercent\b", re.IGNORECASE)
_GOALISH = re.compile(
    r"\b(?:improv|increas|reduc|decreas|cut|grow|enabl|allow|let|help|make|faster|fewer|more|less|sav|speed"
    r"|simplif|eliminat|so that|in order to|goal|aim|want|should)",
    re.IGNORECASE,
)
_NOT_DOING = re.compile(
    r"\b(?:out of scope|not in scope|won't|will not|not (?:be )?(?:support|includ|cover|build|address|chang|do)"
    r"|later phase|in a later|future|phase 2|v2|next release|defer|postpon|exclud)",
    re.IGNORECASE,
)
_PAIN = re.compile(
    r"\b(?:slow|hard|difficult|manual|cannot|can't|unable|error|lose|lost|frustrat|confus|waste|time-consuming"
    r"|hours|complain|ticket|churn|pain|problem|struggl|inconsisten|duplicat|scattered|no single|miss|fail"
    r"|broken|today)",
    re.IGNORECASE,
)
_REQUIRED = re.compile(r"\b(?:must|shall|should|needs? to|required?|supports?|allows?|able to|i want)\b", re.IGNORECASE)
_DATED = re.compile(
    r"\b(?:Q[1-4]|H[12]|20\d\d|january|february|april|june|july|august|september|october|november|december"
    r"|jan|feb|apr|jun|jul|aug|sept?|oct|nov|dec|weeks?|sprints?|milestones?|launch\w*|beta|alpha|GA"
    r"|general availability|releases?|deadlines?|phase)\b",
    re.IGNORECASE,
)
_MARKER = re.compile(r"\b(?:TODO|TBD|TBC|FIXME)\b|\?\?", re.IGNORECASE)
_WHY_NOW = re.compile(r"\b(?:now|today|currently|this (?:quarter|year)|deadline|urgent)\b", re.IGNORECASE)
_STORY = re.compile(r"\bas an? ([^,]{2,40}?),\s*I (?:want|need|can)\b", re.IGNORECASE)
_ROLE_WORDS = (
    "product manager", "product owner", "engineering manager", "project manager", "program manager",
    "tech lead", "team lead", "software engineer", "engineer", "developer", "designer", "data analyst",
    "analyst", "researcher", "support agent", "administrator", "admin", "reviewer", "approver", "editor",
    "viewer", "stakeholder", "executive", "operator", "marketer", "writer", "author", "contributor",
    "customer", "member", "guest", "manager", "user",
)  # fmt: skip
_ROLE = re.compile(r"\b(" + "|".join(re.escape(role) for role in _ROLE_WORDS) + r")s?\b", re.IGNORECASE)
_GENERIC_ROLES = ("user", "customer", "member", "guest")
_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be by for from has have how in into is it its of on or our so than that the their "
        "them they this to was we what when which who why will with you your each there these those not",
    )
)


# ----------------------------------------------------------------------------- draft
def _draft(title: str, document: str, guidance: str, instruction: str) -> str:
    kind = section_kind(title)
    doc_title, units = _material(document, [title], [guidance])
    blocks = [NOTE]
    request = _collapse(instruction)
    if request:
        blocks.append("> Request: " + (request if len(request) <= 300 else request[:299].rstrip() + "…"))
    build = _BUILDERS.get(kind, _draft_generic)
    blocks.extend(block for block in build(title, doc_title, units, guidance) if block)
    return "\n\n".join(blocks) + "\n"


def _fallback(kind: str, guidance: str, what: str) -> list[str]:
    """When the PRD has nothing to draw from: say so, then the prompts to write from."""
    items = _guidance_items(guidance)
    keys = {_key(item) for item in items}
    items += [prompt for prompt, _words in _PROMPTS[kind] if _key(prompt) not in keys]
    return [f"_Nothing else in this PRD mentions {what} yet; start from these prompts:_", _checklist(items)]


def _draft_risks(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    picked = _pick(units, _RISKY, prefer=("requirements", "timeline", "goals", "overview", "intro"))
    everything = " ".join(unit.text for unit in units)
    areas = [label for label, pattern in _RISK_AREAS if not re.search(pattern, everything, re.IGNORECASE)]
    blocks = []
    if picked:
        blocks.append(_bullets(f"**Risk:** {_clause(u.text)} — *Mitigation:* {TBD} (owner, date)" for u in picked))
    else:
        blocks += _fallback("risks", guidance, "dependencies, assumptions or unknowns")
    if areas:
        blocks += ["**Also consider:**", _checklist(areas)]
    return blocks


def _draft_metrics(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    numbers = _pick(units, _NUMBER, prefer=("goals", "overview", "problem", "intro", "requirements"),
                    where=lambda u: u.kind not in ("timeline", "open questions"))
    seen = {_key(u.text) for u in numbers}
    goals = [u for u in _pick(units, only=("goals",)) if _key(u.text) not in seen][: max(0, MAX_ITEMS - len(numbers))]
    blocks = []
    if numbers:
        blocks.append(_bullets(
            f"**Metric:** {_clause(u.text)} — *Baseline, target and date:* to be confirmed" for u in numbers))
    if goals:
        blocks.append(_bullets(f"**Metric for goal:** {_clause(u.text)} — *How measured:* {TBD}" for u in goals))
    if not blocks:
        blocks += _fallback("success metrics", guidance, "numbers or goals")
    return blocks


def _roles(units: list[_Unit]) -> list[str]:
    """The roles the PRD mentions: from its user stories, its personas' lead-ins, then role words."""
    found: list[str] = []
    for unit in units:
        found += [match.group(1) for match in _STORY.finditer(unit.text)]
    found += [u.lead for u in units if u.kind == "users" and u.lead and len(u.lead.split()) <= 4]
    found += [match.group(1) for unit in units for match in _ROLE.finditer(unit.text)]
    roles: list[str] = []
    seen: set[str] = set()
    for raw in found:
        role = _singular(_plain(raw).strip(" .,;"))
        if role and role.casefold() not in seen:
            seen.add(role.casefold())
            roles.append(role)
    specific = [role for role in roles if role.casefold() not in _GENERIC_ROLES]
    generic = [role for role in roles if role.casefold() in _GENERIC_ROLES]
    return (specific if len(specific) >= 2 else specific + generic)[:4]


def _singular(role: str) -> str:
    words = [w.lower() if w[:1].isupper() and w[1:].islower() else w for w in role.split()]
    if not words:
        return ""
    last = words[-1]
    if len(last) > 3 and last.endswith("s") and not last.endswith(("ss", "us", "is")) and last != "sales":
        words[-1] = last[:-1]
    return " ".join(words)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeio" else "a"


def _draft_user_stories(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    stories = _pick(units, _STORY)
    roles = _roles(units)
    story_roles = {_singular(m.group(1)).casefold() for u in stories for m in _STORY.finditer(u.text)}
    blocks = []
    lines = [_tidy(u.text) for u in stories]
    lines += [
        f"As {_article(role)} {role}, I want _(what they need to do)_ so that _(the benefit)_."
        for role in roles
        if role.casefold() not in story_roles
    ]
    if lines:
        blocks.append(_bullets(lines))
    capabilities = _pick(units, _REQUIRED, prefer=("requirements", "goals"), limit=5,
                         where=lambda u: not _STORY.search(u.text) and not _open(u))
    if capabilities:
        blocks += ["**Capabilities this PRD mentions** (turn each into a story):",
                   _bullets(_tidy(u.text) for u in capabilities)]
    if not blocks:
        blocks += _fallback("user stories", guidance, "users or roles")
    return blocks


def _open(unit: _Unit) -> bool:
    """A question, or a sentence with a TODO/TBD marker."""
    return unit.text.rstrip(_CLOSERS).endswith("?") or bool(_MARKER.search(unit.text))


def _draft_open_questions(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    picked = _pick(units, where=_open, limit=2 * MAX_ITEMS)
    if not picked:
        return _fallback("open questions", guidance, "questions, TODOs or TBDs")
    return [_bullets(f"{_clause(u.text)} — *Owner:* {TBD} — *Due:* {TBD}" for u in picked)]


def _draft_goals(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    picked = _pick(units, _GOALISH, prefer=("overview", "intro", "problem", "success metrics", "requirements"),
                   where=lambda u: u.kind not in ("non-goals", "risks", "open questions"))
    if not picked:
        return _fallback("goals", guidance, "goals or outcomes")
    return [_bullets(_tidy(u.text) for u in picked)]


def _draft_non_goals(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    picked = _pick(units, _NOT_DOING, where=lambda u: u.kind not in ("open questions",))
    if not picked:
        return _fallback("non-goals", guidance, "what is out of scope")
    return [_bullets(_tidy(u.text) for u in picked),
            "- _Not in this release:_ (something tempting that is left out, and why)"]


def _draft_problem(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    picked = _pick(units, _PAIN, prefer=("intro", "overview", "users", "goals"),
                   where=lambda u: u.kind not in ("risks", "open questions", "non-goals", "goals", "success metrics"))
    blocks = [_bullets(_tidy(u.text) for u in picked)] if picked else _fallback("problem", guidance, "the problem")
    if picked:
        evidence = ["Data: how often it happens and what it costs", "Quotes from customers",
                    "Support tickets or sales notes"]
        blocks += ["**Evidence to add:**", _checklist(evidence)]
    return blocks


def _first(units: list[_Unit], *kinds: str) -> str | None:
    for kind in kinds:
        unit = next((u for u in units if u.kind == kind), None)
        if unit is not None:
            return _tidy(unit.text)
    return None


def _draft_overview(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    missing = f"_({TBD})_"
    roles = _roles(units)
    why_now = _pick(units, _WHY_NOW, limit=1)
    lines = [
        f"**What:** {_first(units, 'intro', 'requirements') or (_tidy(doc_title) if doc_title else missing)}",
        f"**For whom:** {_first(units, 'users') or (', '.join(roles) + '.' if roles else missing)}",
        f"**Problem:** {_first(units, 'problem') or missing}",
        f"**Goal:** {_first(units, 'goals') or missing}",
        f"**Why now:** {_tidy(why_now[0].text) if why_now else missing}",
    ]
    return [_bullets(lines)]


def _draft_users(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    roles = _roles(units)
    if not roles:
        return _fallback("users", guidance, "users or roles")
    blocks = [_bullets(f"**{role[:1].upper() + role[1:]}** — _(what they are trying to get done)_" for role in roles)]
    mentions = _pick(units, _ROLE, prefer=("intro", "overview", "problem"), limit=4,
                     where=lambda u: u.kind != "user stories")
    if mentions:
        blocks += ["**Where this PRD mentions them:**", _bullets(_tidy(u.text) for u in mentions)]
    return blocks


def _draft_requirements(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    picked = _pick(units, _REQUIRED, prefer=("user stories", "goals", "overview", "intro"), limit=8,
                   where=lambda u: u.kind not in ("non-goals", "open questions", "risks") and not _open(u))
    everything = " ".join(unit.text for unit in units)
    blocks = []
    if picked:
        blocks.append("\n".join(f"{n}. {_tidy(u.text)}" for n, u in enumerate(picked, 1)))
    else:
        blocks += _fallback("requirements", guidance, "needs or capabilities")
    open_nfr = [f"{label}: {TBD}" for label, pattern in _NON_FUNCTIONAL
                if not re.search(pattern, everything, re.IGNORECASE)]
    if open_nfr:
        blocks += ["**Non-functional** (confirm or remove):", _checklist(open_nfr)]
    return blocks


def _draft_timeline(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    picked = _pick(units, _DATED, prefer=("goals", "overview", "intro", "requirements"),
                   where=lambda u: u.kind not in ("open questions",))
    blocks = []
    if picked:
        blocks.append(_bullets(f"**Milestone:** {_clause(u.text)} — *Date:* to be confirmed" for u in picked))
    blocks.append(_checklist(f"{milestone} — date {TBD}" for milestone in _MILESTONES))
    return blocks


def _draft_generic(title: str, doc_title: str, units: list[_Unit], guidance: str) -> list[str]:
    wanted = {w for w in _WORD.findall(f"{title} {guidance}".casefold()) if w not in _STOPWORDS and len(w) > 2}

    def overlap(unit: _Unit) -> int:
        return len(wanted & set(_WORD.findall(unit.text.casefold())))

    related = sorted(
        ((-overlap(u), position, u) for position, u in enumerate(units) if overlap(u)), key=lambda e: (e[0], e[1])
    )
    picked = _pick([u for _score, _position, u in related], limit=5)
    if not picked:  # nothing related: the first sentence of each section
        firsts: list[_Unit] = []
        for unit in units:
            if unit.section and all(f.section != unit.section for f in firsts):
                firsts.append(unit)
        picked = firsts[:5]
    blocks = []
    items = _guidance_items(guidance) or [prompt for prompt, _words in _PROMPTS["generic"]]
    blocks.append(_checklist(items))
    if picked:
        blocks += ["**From elsewhere in this PRD:**", _bullets(_tidy(u.text) for u in picked)]
    return blocks


_Builder = Callable[[str, str, list[_Unit], str], list[str]]
_BUILDERS: dict[str, _Builder] = {
    "overview": _draft_overview,
    "problem": _draft_problem,
    "users": _draft_users,
    "goals": _draft_goals,
    "non-goals": _draft_non_goals,
    "user stories": _draft_user_stories,
    "requirements": _draft_requirements,
    "success metrics": _draft_metrics,
    "risks": _draft_risks,
    "timeline": _draft_timeline,
    "open questions": _draft_open_questions,
}


# ----------------------------------------------------------------------------- rewrite
_ITEM = re.compile(r"^(\s*)([-*+]|\d{1,9}[.)])(?:[ \t]+|$)(\[[ xX]\][ \t]+)?(.*)$")


def _blocks(markdown: str) -> list[tuple[str, str]]:
    """The top-level blocks as (kind, text): ``paragraph`` (its inline source), ``list`` (its source
    lines) or ``other`` (source kept as is: code, tables, quotes, headings, HTML, link definitions)."""
    lines = markdown.splitlines()
    tokens = _md().parse(markdown)
    found: list[tuple[int, str, str]] = []
    covered = [False] * len(lines)
    for index, token in enumerate(tokens):
        if token.level != 0 or token.nesting == -1 or token.map is None:
            continue
        first, after = token.map
        for number in range(first, min(after, len(lines))):
            covered[number] = True
        source = "\n".join(lines[first:after]).rstrip()
        if token.type == "paragraph_open":
            found.append((first, "paragraph", tokens[index + 1].content))
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            found.append((first, "list", source))
        else:
            found.append((first, "other", source))
    # Lines the parser kept no block for (link reference definitions) are content too.
    run: list[int] = []
    for number, line in enumerate([*lines, ""]):
        if number < len(lines) and not covered[number] and line.strip():
            run.append(number)
        elif run:
            found.append((run[0], "other", "\n".join(lines[run[0] : run[-1] + 1])))
            run = []
    return [(kind, text) for _first, kind, text in sorted(found, key=lambda entry: entry[0])]


def _rewrite(current: str) -> str:
    seen: set[str] = set()
    out: list[str] = []
    for kind, text in _blocks(current):
        if kind == "paragraph":
            block = _rewrite_paragraph(text, seen)
        elif kind == "list":
            block = _rewrite_list(text, seen)
        else:
            block = text
        if block.strip():
            out.append(block)
    return "\n\n".join(out) + "\n" if out else ""


def _fresh(sentences: Iterable[str], seen: set[str]) -> list[str]:
    kept = []
    for sentence in sentences:
        key = _key(sentence)
        if key not in seen:
            seen.add(key)
            kept.append(sentence)
    return kept


def _rewrite_paragraph(inline: str, seen: set[str]) -> str:
    sentences = _fresh((_tidy(s) for s in _split_sentences(inline)), seen)
    lead_in = sentences.pop() if sentences and sentences[-1].rstrip(_CLOSERS).endswith(":") else None
    text = _bullets(sentences) if len(sentences) >= 3 else " ".join(sentences)
    if lead_in:
        text = f"{text}\n\n{lead_in}" if text else lead_in
    return text


def _rewrite_list(source: str, seen: set[str]) -> str:
    lines = source.splitlines()
    if any(re.match(r"\s*(```|~~~|>|\||#)", line) for line in lines):
        return source  # code, quotes or tables inside the list: too much to tidy safely
    items: list[list[str]] = []  # [indent, marker, checkbox, text]
    for line in lines:
        match = _ITEM.match(line)
        if match:
            items.append([match.group(1), match.group(2), match.group(3) or "", match.group(4)])
        elif not line.strip():
            continue
        elif items:
            items[-1][3] += " " + line.strip()
        else:
            return source
    texts = [_collapse(item[3]) for item in items]
    punctuated = sum(1 for t in texts if t and t.rstrip(_CLOSERS)[-1:] in _TERMINAL)
    terminal = punctuated * 2 >= len([t for t in texts if t])
    out: list[str] = []
    numbers: dict[int, int] = {}
    for position, (indent, marker, box, _raw) in enumerate(items):
        text = texts[position]
        has_children = position + 1 < len(items) and len(items[position + 1][0]) > len(indent)
        # Sentences before the last end in punctuation already; the last follows the list's style.
        sentences = [_tidy(sentence, terminal=terminal) for sentence in _split_sentences(text)]
        kept = sentences if has_children else _fresh(sentences, seen)
        if has_children:
            seen.update(_key(s) for s in sentences)
        if not kept and not has_children and text:
            continue
        level = len(indent)
        numbers = {depth: n for depth, n in numbers.items() if depth <= level}
        if marker[0].isdigit():
            number = numbers[level] + 1 if level in numbers else int(marker[:-1])
            numbers[level] = number
            marker = f"{number}{marker[-1]}"
        else:
            numbers.pop(level, None)
        out.append(f"{indent}{marker} {box}{' '.join(kept)}".rstrip())
    return "\n".join(out)


# ----------------------------------------------------------------------------- expand, summarize
def _expand(current: str, title: str, guidance: str) -> str:
    body = current.strip("\n").rstrip()
    text = body.casefold()
    body_key = _key(body)
    items: list[str] = []
    for item in _guidance_items(guidance):
        if _key(item) not in body_key:
            items.append(item)
    for prompt, words in _PROMPTS[section_kind(title)]:
        if _key(prompt) not in body_key and not any(word in text for word in words):
            items.append(prompt)
    items = _fresh(items, set())
    if not items:
        return body + "\n"
    return f"{body}\n\n**To flesh out:**\n\n{_checklist(items)}\n"


def _summarize(source: str) -> str:
    points: list[str] = []
    seen: set[str] = set()
    for inline, _item in _paragraphs(source):
        sentences = _split_sentences(inline)
        if not sentences:
            continue
        point = _tidy(re.sub(r"^\[[ xX]\]\s+", "", sentences[0]))
        if _key(point) in seen or _key(point) in _STOCK_KEYS or _plain(point).casefold().startswith(_OWN_PREFIXES):
            continue
        seen.add(_key(point))
        points.append(point)
        if len(points) >= SUMMARY_POINTS:
            break
    if not points:
        return ""
    return f"**Summary:**\n\n{_bullets(points)}\n"
