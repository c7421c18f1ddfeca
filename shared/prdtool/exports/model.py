"""The one parse every export writer reads: Markdown → markdown-it-py tokens → a small node tree.

The parser is CommonMark with GFM tables and strikethrough, raw HTML **off** (``html=False``: a
``<script>`` in a PRD becomes text, never markup) and linkify off.  The token stream is folded into
:class:`Node` trees *iteratively* — markdown-it-py's own ``SyntaxTreeNode`` recurses once per level
and raises ``RecursionError`` on ~1,000 nested emphasis markers, which a hostile PRD can contain.
Block nesting is already bounded by the preset (``maxNesting`` 20); inline nesting deeper than
:data:`MAX_INLINE_DEPTH` is flattened (the text stays, the extra emphasis goes), so every writer may
recurse safely.

Text cleaning happens once, before the parse: characters that XML 1.0 (Word), Typst or HTML cannot
carry — C0/C1 controls other than tab and newline, lone surrogates, U+FFFE/U+FFFF — become U+FFFD,
and the export lists how many it replaced.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlsplit

MAX_INLINE_DEPTH = 16
# markdown-it's default (20, so ten nested lists) silently DROPS everything deeper *and everything
# after it* in the enclosing container; 64 covers any real outline and keeps markdown-it's own
# recursion (a few frames per level) far from Python's limit.
MAX_BLOCK_NESTING = 64
MERMAID_CAPTION = "Mermaid diagram (source)"

# Kept out of every writer: XML 1.0 forbids them, Typst and HTML mangle them.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_LINK_SCHEMES = frozenset({"http", "https", "mailto"})


@dataclass(frozen=True)
class ExportMeta:
    """What the title page shows (and the document properties carry)."""

    title: str
    version: str  # "1.2.0" (shown as "v1.2.0"; a leading "v" is not doubled)
    date: str  # ISO 8601, a date or a date-time
    authors: list[str]
    prd_id: str

    @property
    def version_label(self) -> str:
        version = self.version.strip()
        return version if version[:1] in ("v", "V") or not version else f"v{version}"

    @property
    def parsed_date(self) -> dt.date | None:
        text = self.date.strip()
        try:
            return dt.datetime.fromisoformat(text).date() if len(text) > 10 else dt.date.fromisoformat(text)
        except ValueError:
            return None

    @property
    def date_label(self) -> str:
        """``2024-05-01`` for a valid ISO date or date-time; the text as given otherwise."""
        parsed = self.parsed_date
        return parsed.isoformat() if parsed else self.date.strip()

    @property
    def authors_label(self) -> str:
        return ", ".join(a.strip() for a in self.authors if a.strip())


@dataclass(frozen=True)
class Rendered:
    """One export: the file's bytes, its MIME type, its extension (no dot) and what did not carry over."""

    data: bytes
    content_type: str
    extension: str
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Node:
    """One block or inline element. ``type`` is markdown-it's token type without ``_open``."""

    type: str
    tag: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    content: str = ""
    info: str = ""
    markup: str = ""
    hidden: bool = False
    children: list[Node] = field(default_factory=list)

    @property
    def level(self) -> int:
        """The heading level (1 to 6) of a ``heading`` node."""
        return int(self.tag[1:]) if self.tag[1:].isdigit() else 1


@dataclass
class Parsed:
    root: Node
    replaced_chars: int = 0
    truncated: bool = False  # the parser hit MAX_BLOCK_NESTING: some content may be missing
    mermaid_blocks: int = 0
    images: int = 0


def clean_text(text: str) -> tuple[str, int]:
    """``text`` with characters no export format can carry replaced by U+FFFD, and how many."""
    return _UNSAFE_CHARS.subn("\ufffd", text)


def clean_meta(meta: ExportMeta) -> ExportMeta:
    """``meta`` with :func:`clean_text` applied to every string (Word refuses control characters)."""
    return ExportMeta(
        title=clean_text(meta.title)[0],
        version=clean_text(meta.version)[0],
        date=clean_text(meta.date)[0],
        authors=[clean_text(a)[0] for a in meta.authors],
        prd_id=clean_text(meta.prd_id)[0],
    )


@cache
def _parser() -> Any:
    from markdown_it import MarkdownIt  # lazy: importing the package costs nothing

    options = {"html": False, "linkify": False, "maxNesting": MAX_BLOCK_NESTING}
    return MarkdownIt("commonmark", options).enable(["table", "strikethrough"])


def parse(markdown: str) -> Parsed:
    """Parse once; every writer walks the returned tree."""
    text, replaced = clean_text(markdown)
    parsed = Parsed(Node("root"), replaced_chars=replaced)
    tokens = _parser().parse(text)
    # The block parser stops a container once its level reaches maxNesting, so any cut leaves a
    # token at level maxNesting - 1 (a document exactly that deep is flagged too; none is real).
    parsed.truncated = any(t.level >= MAX_BLOCK_NESTING - 1 for t in tokens)
    _fold(tokens, parsed.root, parsed, inline=False)
    parsed.replaced_chars += _scrub(parsed.root)
    return parsed


def _scrub(root: Node) -> int:
    """Replace characters no export format can carry in every string of the tree; how many were.

    The Markdown is cleaned *before* parsing too, but markdown-it decodes character references
    afterwards: ``&#12;`` becomes a form feed, which XML 1.0 (Word, Confluence) forbids."""
    replaced = 0
    stack = [root]
    while stack:
        node = stack.pop()
        node.content, n = clean_text(node.content)
        node.info, m = clean_text(node.info)
        replaced += n + m
        for key, value in node.attrs.items():
            if isinstance(value, str):
                node.attrs[key], n = clean_text(value)
                replaced += n
        stack.extend(node.children)
    return replaced


def _fold(tokens: list[Any], into: Node, parsed: Parsed, *, inline: bool) -> None:
    """Build the tree from a flat token list with an explicit stack of open elements."""
    parents = [into]
    opened: list[bool] = []  # per open token: did it become a node (False: flattened, too deep)?
    for token in tokens:
        if token.nesting == -1:
            if opened and opened.pop():
                parents.pop()
            continue
        if token.nesting == 1 and inline and len(parents) > MAX_INLINE_DEPTH:
            opened.append(False)  # too deep: keep the text, drop the formatting
            continue
        node = Node(
            type=token.type.removesuffix("_open"),
            tag=token.tag,
            attrs={str(k): v for k, v in (token.attrs or {}).items()},
            content=token.content or "",
            info=(token.info or "").strip(),
            markup=token.markup or "",
            hidden=bool(token.hidden),
        )
        parents[-1].children.append(node)
        if token.type == "inline":
            _fold(token.children or [], node, parsed, inline=True)
        elif token.type == "image":
            parsed.images += 1
            alt = Node("inline")
            _fold(token.children or [], alt, Parsed(alt), inline=True)
            node.content = plain_text(alt) or node.content
        elif token.type == "fence" and is_mermaid(node):
            parsed.mermaid_blocks += 1
        if token.nesting == 1:
            opened.append(True)
            parents.append(node)


def plain_text(node: Node) -> str:
    """The visible text of a node (softbreaks as spaces), without recursion."""
    out: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type in ("text", "code_inline"):
            out.append(current.content)
        elif current.type in ("softbreak", "hardbreak"):
            out.append(" ")
        elif current.type == "image":
            out.append(current.content)
        stack.extend(reversed(current.children))
    return "".join(out)


def is_mermaid(node: Node) -> bool:
    return node.type == "fence" and node.info.split()[0:1] == ["mermaid"]


def code_language(node: Node) -> str:
    """The fence's language if it looks like one (``python``, ``c++``, ``objective-c``), else ''."""
    words = node.info.split()
    lang = words[0] if words else ""
    return lang if re.fullmatch(r"[A-Za-z0-9_+#.-]{1,32}", lang) else ""


def safe_href(url: str, *, allow_fragment: bool = False) -> str | None:
    """``url`` if it may become a clickable link in an export (http, https, mailto; ``#anchor`` on
    request), else ``None`` and the writer shows the link text only. markdown-it has already
    refused ``javascript:``/``vbscript:``/``file:``/``data:`` and percent-encoded the rest."""
    url = url.strip()
    if allow_fragment and url.startswith("#") and len(url) > 1:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in _LINK_SCHEMES:
        return None
    if parts.scheme.lower() != "mailto" and not parts.netloc:
        return None
    return url


def image_label(node: Node) -> str:
    """The placeholder text an image becomes: ``[Image: alt]`` (images are never fetched)."""
    alt = node.content.strip()
    return f"[Image: {alt}]" if alt else "[Image]"


def table_rows(table: Node) -> tuple[list[Node], list[list[Node]], list[str]]:
    """``(header cells, body rows, column alignments)`` of a table, rows padded to the same width.
    Alignment is ``left``, ``center``, ``right`` or ``''``."""
    header: list[Node] = []
    body: list[list[Node]] = []
    for section in table.children:
        for row in section.children:
            cells = [c for c in row.children if c.type in ("th", "td")]
            if section.type == "thead" and not header:
                header = cells
            else:
                body.append(cells)
    width = max([len(header)] + [len(r) for r in body])
    header = header + [Node("th", children=[Node("inline")]) for _ in range(width - len(header))]
    body = [r + [Node("td", children=[Node("inline")]) for _ in range(width - len(r))] for r in body]
    aligns = []
    for cell in header:
        style = str(cell.attrs.get("style", ""))
        match = re.search(r"text-align:(left|center|right)", style)
        aligns.append(match.group(1) if match else "")
    return header, body, aligns


def common_warnings(parsed: Parsed) -> list[str]:
    """What the HTML, Word and PDF exports cannot show as the editor does."""
    warnings: list[str] = []
    if parsed.mermaid_blocks:
        n = parsed.mermaid_blocks
        warnings.append(
            f"{n} Mermaid diagram{'s are' if n > 1 else ' is'} exported as source code "
            "(no diagram renderer is available for this format)."
        )
    if parsed.images:
        n = parsed.images
        warnings.append(
            f"{n} image{'s are' if n > 1 else ' is'} not embedded: the export shows the alt text "
            "and a link instead (images are never fetched)."
        )
    return warnings


def cleaning_warnings(parsed: Parsed) -> list[str]:
    warnings = []
    if parsed.replaced_chars:
        n = parsed.replaced_chars
        warnings.append(f"{n} control character{'s were' if n > 1 else ' was'} replaced by U+FFFD.")
    if parsed.truncated:
        warnings.append(
            f"The PRD nests lists or quotes more than {MAX_BLOCK_NESTING} levels deep: content at that "
            "depth, and after it in the same list or quote, may be missing from the export."
        )
    return warnings
