"""Documents in: Word, PDF, HTML and Markdown turned into PRD Markdown (headings = sections).

:func:`extract` is the one entry point. It returns :class:`Extracted` — the Markdown, the document
title and a :class:`Fidelity` report of what could not be carried over — or raises a
:class:`~prdtool.errors.DomainError` whose status and ``code`` say why:

==========================  ======  =========================================================
code                        status  when
==========================  ======  =========================================================
``unsupported_media_type``  415     not a .docx / .pdf / .md / .html document (see ``sniff``)
``import_empty``            422     zero bytes
``import_type_mismatch``    422     the name's extension contradicts the content (``sniff``)
``import_too_large``        413     over a :class:`Limits` size: the upload, the unpacked Word
                                    XML, the PDF's pages, unpacked content (per page and in
                                    all) or characters shown per page, the HTML, the Markdown
``import_suspicious``       422     a ZIP bomb (compression ratio), too many ZIP members, a DTD
                                    or entity declaration in a Word XML part
``import_too_deep``         422     HTML (or a Word body) nested deeper than ``max_depth``
``import_encrypted``        422     a password-protected PDF or Word package
``import_no_text``          422     a PDF without a text layer (a scan), or no text at all
``import_damaged``          422     a file the parser cannot read (truncated, corrupt)
==========================  ======  =========================================================

Every path bounds memory and time *before* the third-party parser sees the data (DESIGN §4):

- Word: the ZIP directory is checked first (member count, declared sizes, per-member and overall
  compression ratio); XML members are then read through a capped streaming read (declared sizes can
  be forged), refused when they carry a DTD or an ENTITY declaration (mammoth's ``minidom`` expands
  internal entities), and repacked — only those checked bytes — into the package mammoth reads.
  Images are collected by mammoth's ``convert_image`` hook, never read, and reported as dropped.
- PDF: pypdf opens it first (encrypted → 422, page count cap) and measures, under pypdf's own
  decompression limits, the unpacked size of every content stream, form XObject and font program
  pdfminer would decode — pdfminer (under pdfplumber) inflates streams with an unbounded
  ``zlib.decompress``: a 200 KB PDF holding 200 MB of page content costs it 437 MB — and counts
  the string bytes each page shows, since pdfplumber builds a ≈ 2 KB object per character (one
  ``Tj`` of a million characters would be 2 GB).
- HTML: nh3's parser (html5ever) takes time quadratic in the nesting depth (20,000 nested ``<div>``
  0.7 s, 100,000 36 s), and nesting is not just counting tags: implied end tags, reopened
  formatting elements, foster parenting and end tags that are ignored decide it. A linear scanner
  (:func:`_scan_html`: the HTML tokenizer's quoting, comment and raw-text rules, plus
  :class:`_TreeModel`, a small model of the HTML5 tree builder that errs towards deeper) measures
  the depth first and stops at ``max_depth``; the few elements whose parsing rules are too intricate
  to model and never matter in a document (``template``, ``select``, ``form``, ``button``,
  ``object``, ``applet``, ``marquee``) are renamed ``x-…`` so that nh3 parses them as plain elements
  too. Not ``html.parser`` for that scan: on Python 3.12.1 it is quadratic on unterminated tags and
  comments (24 KB of ``<a `` takes 6 s). nh3 then sanitises with an explicit allow-list and
  ``markdownify`` (whose ``html.parser`` only ever sees nh3's well-formed output) converts.
"""

from __future__ import annotations

import html as html_lib
import io
import re
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from prdtool.errors import BadRequest, DomainError, PayloadTooLarge, Unprocessable

from .sniff import Kind, decode_html, decode_text, detect

MiB = 1 << 20


# ----------------------------------------------------------------------------- public types
@dataclass(frozen=True)
class Limits:
    """Caps on what one import may cost. Exceeding a size is 413 ``import_too_large``; suspicious
    structure (ratio, member count, depth) is 422."""

    max_bytes: int = 20 * MiB  # the uploaded file
    max_pages: int = 500  # PDF pages
    max_chars: int = 2_000_000  # characters of resulting Markdown
    max_depth: int = 200  # HTML element nesting (markdownify recurses per level; RecursionError ≈ 500)
    max_html_chars: int = 6_000_000  # sanitised HTML handed to markdownify (≈ 4.5 s and 30 MB per MB)
    max_zip_members: int = 1_000  # entries in a .docx
    max_unzipped_bytes: int = 100 * MiB  # declared uncompressed total of a .docx
    max_xml_bytes: int = 16 * MiB  # XML actually read from a .docx and given to mammoth (≈ 30 MB per MB)
    max_zip_ratio: float = 100.0  # uncompressed / compressed, per member and overall (real files ≤ 32)
    max_pdf_stream_bytes: int = 64 * MiB  # unpacked page content + forms + fonts pdfminer would inflate
    max_pdf_page_bytes: int = 2 * MiB  # unpacked content (with its forms) of one PDF page
    max_pdf_page_glyphs: int = 100_000  # string bytes shown by one page (pdfplumber: ≈ 2 KB per character)


@dataclass
class Fidelity:
    """What the import could not carry over: ``dropped`` items ``{"kind", "detail", "count"}`` (one
    entry per kind and detail, counts summed) and free-text ``warnings``."""

    dropped: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def drop(self, kind: str, detail: str, count: int = 1) -> None:
        if count <= 0:
            return
        for item in self.dropped:
            if item["kind"] == kind and item["detail"] == detail:
                item["count"] += count
                return
        self.dropped.append({"kind": kind, "detail": detail, "count": count})

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def to_json(self) -> dict[str, Any]:
        return {"dropped": [dict(item) for item in self.dropped], "warnings": list(self.warnings)}


@dataclass(frozen=True)
class Extracted:
    markdown: str  # LF line endings, ends with one newline
    title: str | None  # the first level-1 heading, else the document's metadata title
    report: Fidelity
    kind: Kind = Kind.MARKDOWN


# ----------------------------------------------------------------------------- errors
def _too_large(message: str) -> PayloadTooLarge:
    return PayloadTooLarge(message, code="import_too_large")


def _suspicious(message: str) -> Unprocessable:
    return Unprocessable(message, code="import_suspicious")


def _damaged(message: str) -> Unprocessable:
    return Unprocessable(message, code="import_damaged")


def _too_deep(limit: int) -> Unprocessable:
    return Unprocessable(
        f"this document nests elements more than {limit} levels deep, which no real document does; "
        "it cannot be imported",
        code="import_too_deep",
    )


def _mb(size: float) -> str:
    return f"{size / MiB:.0f} MB" if size >= MiB else f"{size / 1024:.0f} KB"


# ----------------------------------------------------------------------------- entry point
def extract(
    data: bytes,
    kind: Kind | str | None = None,
    *,
    filename: str | None = None,
    limits: Limits = Limits(),  # frozen: a shared default is safe
) -> Extracted:
    """Convert an uploaded document to Markdown.

    ``kind`` is what :func:`prdtool.imports.sniff.detect` said (None: detect it here, from the content,
    with ``filename`` checked for contradictions). Raises the errors listed in the module docstring."""
    if not data:
        raise Unprocessable("the file is empty (0 bytes): there is nothing to import", code="import_empty")
    if len(data) > limits.max_bytes:
        raise _too_large(f"the file is {_mb(len(data))}; imports take at most {_mb(limits.max_bytes)}")
    if kind is None:
        kind = detect(data, filename)
    try:
        kind = Kind(kind)
    except ValueError:
        raise BadRequest(f"unknown document kind {kind!r}") from None
    report = Fidelity()
    if kind is Kind.DOCX:
        markdown, meta_title = _docx(data, limits, report)
    elif kind is Kind.PDF:
        markdown, meta_title = _pdf(data, limits, report)
    elif kind is Kind.HTML:
        markdown, meta_title = _html(decode_html(data), limits, report)
    else:
        markdown, meta_title = _markdown(data, limits, report), None
    if len(markdown) > limits.max_chars:
        raise _too_large(
            f"the document converts to {len(markdown):,} characters of Markdown; a PRD can hold at most "
            f"{limits.max_chars:,}"
        )
    if not re.search(r"\w", markdown):
        raise Unprocessable("the document has no text to import", code="import_no_text")
    title = first_h1(markdown) or meta_title
    return Extracted(markdown, title, report, kind)


# ----------------------------------------------------------------------------- Markdown helpers
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


def _tidy(markdown: str) -> str:
    """LF line endings, no trailing spaces, at most one blank line in a row, one final newline."""
    text = markdown.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = _TRAILING_SPACE.sub("", text)
    text = _BLANK_RUNS.sub("\n\n", text).strip("\n")
    return text + "\n" if text else ""


@cache
def _inline_parser() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark")


def _plain(inline_source: str) -> str:
    """The text of a heading's inline Markdown (emphasis, links and code markers removed)."""
    tokens = _inline_parser().parseInline(inline_source[:1000])
    parts: list[str] = []
    for token in tokens:
        for child in token.children or []:
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append(" ")
    return " ".join("".join(parts).split())


def first_h1(markdown: str) -> str | None:
    """The text of the document's first top-level ``#`` heading, or None."""
    from prdtool.ai.sections import block_parser

    tokens = block_parser().parse(markdown)
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h1" and token.level == 0 and index + 1 < len(tokens):
            return _plain(tokens[index + 1].content) or None
    return None


# ----------------------------------------------------------------------------- Markdown
_IMAGE_REF = re.compile(r"!\[[^\]\n]{0,1000}\]\(\s*([^)\s]{0,2000})")
_RAW_HTML = re.compile(r"^ {0,3}<(?:script|iframe|object|embed|style)\b", re.IGNORECASE | re.MULTILINE)


def _markdown(data: bytes, limits: Limits, report: Fidelity) -> str:
    text = decode_text(data)
    if text is None:
        raise Unprocessable("this text file is not UTF-8 (or UTF-16 with a BOM); save it as UTF-8",
                            code="import_damaged")
    text = text.lstrip("\ufeff")
    if len(text) > limits.max_chars:
        raise _too_large(f"the document has {len(text):,} characters; a PRD can hold at most {limits.max_chars:,}")
    markdown = text.replace("\r\n", "\n").replace("\r", "\n")
    if not markdown.endswith("\n"):
        markdown += "\n"
    images = len(_IMAGE_REF.findall(markdown))
    report.drop("image", "image references kept as Markdown, the image files themselves are not imported", images)
    if _RAW_HTML.search(markdown):
        report.warn("the Markdown contains raw HTML blocks (script, iframe, style …); they are kept as text and "
                    "never run")
    return markdown


# ----------------------------------------------------------------------------- HTML scanning
_TAG_OPEN = re.compile(r"<(/?)([A-Za-z][^\t\n\f\r />]{0,200})")
_ATTR_HEAD = re.compile(r"[\t\n\f\r /]*([^\t\n\f\r />][^\t\n\f\r />=]*)?")
_EQUALS = re.compile(r"[\t\n\f\r ]*=[\t\n\f\r ]*")
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                   "track", "wbr", "basefont", "bgsound", "frame", "keygen", "image"})
_RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript"})


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The HTML5 tree builder's element categories (WHATWG HTML §13.2.4.2-3), lower case.
_HEADINGS = _names("h1 h2 h3 h4 h5 h6")
_SPECIAL = _names(
    "address applet area article aside base basefont bgsound blockquote body br button caption center col colgroup "
    "dd details dir div dl dt embed fieldset figcaption figure footer form frame frameset h1 h2 h3 h4 h5 h6 head "
    "header hgroup hr html iframe img input keygen li link listing main marquee menu meta nav noembed noframes "
    "noscript object ol p param plaintext pre script search section select source style summary table tbody td "
    "template textarea tfoot th thead title tr track ul wbr xmp mi mo mn ms mtext annotation-xml foreignobject desc"
)
_SCOPE = _names("applet caption html table td th marquee object template mi mo mn ms mtext annotation-xml "
                "foreignobject desc title")
_LIST_SCOPE = _SCOPE | {"ol", "ul"}
_BUTTON_SCOPE = _SCOPE | {"button"}
_TABLE_SCOPE = _names("html table template")
_FORMATTING = _names("a b big code em font i nobr s small strike strong tt u")
_MARKERS = _names("applet object marquee template td th caption html")
_CLOSES_P = _names(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption figure footer header "
    "hgroup main menu nav ol p search section summary ul h1 h2 h3 h4 h5 h6 pre listing form table xmp plaintext "
    "li dd dt hr"
)
_BLOCK_END = _names(
    "address article aside blockquote button center details dialog dir div dl fieldset figcaption figure footer "
    "header hgroup listing main menu nav ol pre search section summary ul form applet marquee object template "
    "select html body"
)
_TABLE_END = _names("table tbody thead tfoot tr td th caption colgroup")
#: HTML elements that leave SVG/MathML ("breakout"): for them ``/>`` does not self-close.
_BREAKOUT = _names(
    "b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i img li listing menu "
    "meta nobr ol p pre ruby s small span strong strike sub sup table tt u ul var font"
)
_SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_URL_NOISE = re.compile(r"[\x00-\x20\x7f]")


class _TooDeep(Exception):
    pass


@dataclass
class _Census:
    """What an HTML text holds that the sanitiser removes (counted the same way before and after)."""

    counts: Counter[str] = field(default_factory=Counter)
    depth: int = 0
    title: str | None = None
    renames: list[int] = field(default_factory=list)  # offsets of tag names to neutralise (see _NEUTRALISED)


#: Elements whose parsing rules (template contents, select, the form pointer, button scope,
#: object/applet/marquee scope markers) are too intricate to model safely and never matter in a
#: document: their tags are renamed ``x-…`` before nh3 parses the text, so the parser treats them as
#: plain unknown elements (their content stays as ordinary markup) — as :class:`_TreeModel` does.
_NEUTRALISED = frozenset({"template", "select", "object", "applet", "marquee", "form", "button"})


def _neutralise(text: str, offsets: list[int]) -> str:
    """``text`` with ``x-`` inserted at each offset (the start of a tag name)."""
    if not offsets:
        return text
    parts: list[str] = []
    previous = 0
    for offset in offsets:
        parts += [text[previous:offset], "x-"]
        previous = offset
    parts.append(text[previous:])
    return "".join(parts)


def _unsafe_url(value: str) -> bool:
    compact = _URL_NOISE.sub("", html_lib.unescape(value[:200])).lower()
    match = _SCHEME.match(compact)
    return match is not None and match.group(1) not in _SAFE_SCHEMES


def _tag_end(text: str, position: int, attrs: list[tuple[str, str]]) -> int:
    """Index of the ``>`` ending the tag whose attributes start at ``position`` (following the HTML
    tokenizer: quotes only after ``=``, an unterminated quoted value runs to the end), or -1 at the end
    of the text. Attribute names (lower case) and the first 200 characters of values go to ``attrs``."""
    size = len(text)
    while True:
        head = _ATTR_HEAD.match(text, position)
        assert head is not None  # the pattern matches the empty string
        position = head.end()
        if position >= size:
            return -1
        if text[position] == ">":
            return position
        name = head.group(1) or ""
        value = ""
        equals = _EQUALS.match(text, position)
        if equals is not None:
            position = equals.end()
            if position >= size:
                return -1
            quote = text[position]
            if quote in "\"'":
                close = text.find(quote, position + 1)
                if close < 0:
                    return -1
                value = text[position + 1 : min(close, position + 201)]
                position = close + 1
            elif quote != ">":
                unquoted = _UNQUOTED.match(text, position)
                assert unquoted is not None
                value = text[position : min(unquoted.end(), position + 200)]
                position = unquoted.end()
        attrs.append((name.lower(), value))


def _comment_end(text: str, start: int, memo: dict[str, int]) -> int:
    """Index just after the comment starting at ``start`` (``<!--``), or -1 when it runs to the end.
    A comment ends at ``-->`` or ``--!>`` (and ``<!-->``/``<!--->`` are empty comments); the next
    occurrence of each terminator is memoised so that many comments stay linear."""
    best = -1
    for needle in ("-->", "--!>"):
        known = memo.get(needle, -2)
        if known == -1 or known >= start + 2:
            found = known
        else:
            found = text.find(needle, start + 2)
            memo[needle] = found
        if found >= 0 and (best < 0 or found < best):
            best = found + len(needle)
    return best


@dataclass(slots=True, eq=False)
class _Open:
    """An element on the scanner's model of the HTML5 parser's stack of open elements."""

    name: str
    sig: str = ""  # the attributes of a formatting element ("identical" elements for Noah's Ark)
    foreign: str = ""  # "svg" or "math" for foreign content, "" for HTML
    open: bool = False  # on the stack of open elements (formatting elements may be only in the list)


_INTEGRATION = _names("foreignobject desc title mi mo mn ms mtext annotation-xml")  # scope boundaries
_SVG_INTEGRATION = _names("foreignobject desc title")
_MATH_INTEGRATION = _names("mi mo mn ms mtext")  # (annotation-xml only with an HTML encoding: not modelled,
#                                                  so its content counts as foreign: pushed, never raw text)


def _integration(entry: _Open) -> bool:
    """Whether HTML rules apply inside this foreign element (an HTML or MathML text integration point)."""
    if entry.foreign == "svg":
        return entry.name in _SVG_INTEGRATION
    return entry.foreign == "math" and entry.name in _MATH_INTEGRATION
_TABLE_CONTEXT = {"tr": _names("table thead tbody tfoot"), "td": _names("tr table thead tbody tfoot"),
                  "th": _names("tr table thead tbody tfoot")}
_TABLE_PARTS = _names("tr td th thead tbody tfoot caption colgroup col")
_CELLS = _names("td th caption")
_TABLE_STRUCTURE = _names("table tbody thead tfoot tr td th caption")


class _TreeModel:
    """A small model of the HTML5 tree builder (WHATWG HTML §13.2.6) — its stack of open elements and
    its list of active formatting elements (markers, reconstruction, Noah's Ark and the adoption
    agency, simplified) — enough to bound the nesting depth html5ever (inside nh3) will build. Where
    the model is unsure it errs towards deeper (every tag is pushed inside SVG/MathML; implied end
    tags are applied only where the parser certainly applies them). The elements it does not model
    (:data:`_NEUTRALISED`) reach it, and nh3, renamed as plain unknown elements. Differential tests
    against nh3 check it. Raises :class:`_TooDeep` once the depth passes ``limit``."""

    def __init__(self, limit: int) -> None:
        self.stack: list[_Open] = []
        self.active: list[_Open | None] = []  # None is a marker
        self.open: Counter[str] = Counter()  # HTML elements on the stack by name (scope lookups short-cut)
        self.depth = 0
        self.limit = limit

    # -- the stack
    def _push(self, entry: _Open) -> None:
        entry.open = True
        self.stack.append(entry)
        if not entry.foreign:
            self.open[entry.name] += 1
        if len(self.stack) > self.depth:
            self.depth = len(self.stack)
            if self.depth > self.limit:
                raise _TooDeep

    def _forget(self, entry: _Open) -> None:
        entry.open = False
        if not entry.foreign:
            self.open[entry.name] -= 1

    def _pop(self) -> _Open:
        entry = self.stack.pop()
        self._forget(entry)
        return entry

    def _pop_to(self, index: int) -> None:
        """Pop ``stack[index]`` and everything above it; every cell or caption popped closes ("clear
        the list of active formatting elements up to the last marker")."""
        while len(self.stack) > index:
            entry = self._pop()
            if entry.name in _CELLS and not entry.foreign:
                self._clear_to_marker()

    def _pop_foreign(self) -> None:
        """Pop SVG/MathML elements down to an HTML element or an integration point."""
        stack = self.stack
        while stack and stack[-1].foreign and not _integration(stack[-1]):
            self._pop()

    def _find(self, names: frozenset[str] | set[str], boundary: frozenset[str]) -> int:
        """Index of the topmost HTML element in ``names`` with no ``boundary`` element above it, or -1."""
        if not any(self.open[name] > 0 for name in names):
            return -1
        stack = self.stack
        for index in range(len(stack) - 1, -1, -1):
            entry = stack[index]
            if entry.foreign:  # only SVG/MathML integration points bound a scope
                if entry.name in boundary and entry.name in _INTEGRATION:
                    return -1
            elif entry.name in names:
                return index
            elif entry.name in boundary:
                return -1
        return -1

    # -- the list of active formatting elements
    def _clear_to_marker(self) -> None:
        active = self.active
        while active:
            if active.pop() is None:
                break

    def _reconstruct(self) -> None:
        active = self.active
        if not active or active[-1] is None or active[-1].open:
            return
        start = len(active) - 1
        while start > 0:
            previous = active[start - 1]
            if previous is None or previous.open:
                break
            start -= 1
        for index in range(start, len(active)):
            old = active[index]
            assert old is not None
            clone = _Open(old.name, old.sig)
            active[index] = clone
            self._push(clone)

    def _last_formatting(self, name: str) -> int:
        active = self.active
        for index in range(len(active) - 1, -1, -1):
            entry = active[index]
            if entry is None:
                return -1
            if entry.name == name:
                return index
        return -1

    def _push_formatting(self, entry: _Open) -> None:
        same = []
        for index in range(len(self.active) - 1, -1, -1):
            other = self.active[index]
            if other is None:
                break
            if other.name == entry.name and other.sig == entry.sig:
                same.append(index)
        if len(same) >= 3:  # "Noah's Ark": at most three identical entries
            del self.active[same[-1]]
        self._push(entry)
        self.active.append(entry)

    def _adoption(self, name: str) -> bool:
        """The adoption agency, simplified: False when there is no such formatting element (the end
        tag is then an ordinary one)."""
        stack = self.stack
        for attempt in range(8):  # the algorithm's outer loop
            index = self._last_formatting(name)
            if index < 0:
                return attempt > 0
            element = self.active[index]
            assert element is not None
            if not element.open:
                del self.active[index]
                return True
            if self._find({name}, _SCOPE) < 0:
                return True  # not in scope: ignored
            position = next(i for i in range(len(stack) - 1, -1, -1) if stack[i] is element)
            furthest = next((i for i in range(position + 1, len(stack))
                             if stack[i].name in _SPECIAL and not stack[i].foreign), -1)
            if furthest < 0:
                self._pop_to(position)
                del self.active[index]
                return True
            # the element leaves the stack; a clone of it goes in just above the furthest block, taking
            # its place in the list; the next round of the loop deals with the clone
            clone = _Open(element.name, element.sig, open=True)
            stack.insert(furthest + 1, clone)
            self.open[name] += 1
            self._forget(stack.pop(position))
            self.active[index] = clone
        return True

    # -- tokens
    def text(self) -> None:
        top = self.stack[-1] if self.stack else None
        if top is None or not top.foreign or _integration(top):
            self._reconstruct()

    def start(self, name: str, attrs: list[tuple[str, str]], self_closing: bool) -> None:
        stack = self.stack
        top = stack[-1] if stack else None
        if top is not None and top.foreign and not _integration(top):
            breakout = name in _BREAKOUT and (name != "font" or any(a in ("color", "face", "size") for a, _ in attrs))
            if not breakout:
                if not self_closing:
                    namespace = name if name in ("svg", "math") else top.foreign
                    self._push(_Open(name, foreign=namespace))
                return
            self._pop_foreign()
        if name in ("html", "head", "body"):
            return  # in a document's body the parser only merges their attributes
        if name in ("svg", "math"):
            self._reconstruct()
            if not self_closing:
                self._push(_Open(name, foreign=name))
            return
        if name in _TABLE_PARTS:
            self._table_part(name)
            return
        if name == "table":  # a table directly in a table (not in a cell or caption) closes it first
            index = next((i for i in range(len(stack) - 1, -1, -1)
                          if stack[i].name in _TABLE_STRUCTURE and not stack[i].foreign), -1)
            if index >= 0 and stack[index].name not in _CELLS:
                table = next(i for i in range(index, -1, -1) if stack[i].name == "table" and not stack[i].foreign)
                self._pop_to(table)
        if name in _CLOSES_P:
            index = self._find({"p"}, _BUTTON_SCOPE)
            if index >= 0:
                self._pop_to(index)
        if name in _HEADINGS and stack and stack[-1].name in _HEADINGS and not stack[-1].foreign:
            self._pop()
        if name in ("li", "dd", "dt"):
            group = {"li"} if name == "li" else {"dd", "dt"}
            for index in range(len(stack) - 1, -1, -1):
                entry = stack[index]
                if entry.name in group and not entry.foreign:
                    self._pop_to(index)
                    break
                if entry.name in _SPECIAL and entry.name not in ("address", "div", "p") and (
                        not entry.foreign or entry.name in _INTEGRATION):
                    break
        elif name in ("option", "optgroup"):
            if stack and stack[-1].name == "option":
                self._pop()
            if name == "optgroup" and stack and stack[-1].name == "optgroup":
                self._pop()
        elif name in ("a", "nobr"):
            self._adoption(name)  # an open <a> (or <nobr>) is closed first
        if name not in _CLOSES_P:
            self._reconstruct()
        if name in _FORMATTING:
            self._push_formatting(_Open(name, repr(sorted(attrs)) if attrs else ""))
        elif name not in _VOID:
            self._push(_Open(name))
            if name in _MARKERS:
                self.active.append(None)

    def _table_part(self, name: str) -> None:
        stack = self.stack
        context_names = _TABLE_CONTEXT.get(name, _names("table"))
        index = next((i for i in range(len(stack) - 1, -1, -1)
                      if stack[i].name in context_names and not stack[i].foreign), -1)
        if index < 0:
            return  # a table part outside any table is ignored
        context = stack[index].name
        self._pop_to(index + 1)  # "clear the stack back to a table context" (closing any open cell)
        if name == "col":  # <col> (void) goes into an implied <colgroup>
            self._push(_Open("colgroup"))
            return
        if name in ("tr", "td", "th") and context == "table":
            self._push(_Open("tbody"))  # the implied <tbody>
        if name in ("td", "th") and context != "tr":
            self._push(_Open("tr"))  # the implied <tr>
        self._push(_Open(name))
        if name in _CELLS:
            self.active.append(None)

    def end(self, name: str) -> None:
        if name in ("html", "body", "head"):
            return  # the parser switches modes but keeps every element open
        if name == "br":
            self.start("br", [], False)  # "</br>" is a <br>
            return
        stack = self.stack
        if stack and stack[-1].foreign:
            if name in ("p", "br"):
                self._pop_foreign()
            else:
                for index in range(len(stack) - 1, -1, -1):
                    if not stack[index].foreign:
                        break
                    if stack[index].name == name:
                        while len(stack) > index:
                            self._pop()
                        return
        if name in _FORMATTING and self._adoption(name):
            return
        if name == "p":
            index = self._find({"p"}, _BUTTON_SCOPE)
        elif name == "li":
            index = self._find({"li"}, _LIST_SCOPE)
        elif name in _HEADINGS:
            index = self._find(_HEADINGS, _SCOPE)
        elif name in _TABLE_END:
            index = self._find({name}, _TABLE_SCOPE if name != "table" else frozenset({"html"}))
        elif name in _BLOCK_END or name in ("dd", "dt"):
            index = self._find({name}, _SCOPE - {name})
        else:  # "any other end tag": it cannot close across a special element
            index = self._find({name}, _SPECIAL - {name})
        if index >= 0:
            self._pop_to(index)


def _scan_html(text: str, max_depth: int) -> _Census:
    """One linear pass over HTML: the nesting depth an HTML5 parser would build (bounded from above by
    :class:`_TreeModel`), the elements and attributes the sanitiser removes (:func:`_count_tag`) and
    the ``<title>``. Raises :class:`_TooDeep` as soon as the depth passes ``max_depth``."""
    census = _Census()
    counts = census.counts
    model = _TreeModel(max_depth)
    memo: dict[str, int] = {}
    position = 0
    size = len(text)
    while position < size:
        lt = text.find("<", position)
        if lt < 0:
            if text[position:].strip():
                model.text()
            break
        if lt > position and not text[position:lt].isspace():
            model.text()
        if text.startswith("<!--", lt):
            position = _comment_end(text, lt, memo)
            if position < 0:
                break
            continue
        match = _TAG_OPEN.match(text, lt)
        if match is None:
            if text.startswith(("<!", "<?", "</"), lt):  # doctype, bogus comment, "</ …>"
                gt = text.find(">", lt + 2)
                if gt < 0:
                    break
                position = gt + 1
            else:
                model.text()
                position = lt + 1
            continue
        closing, name = match.group(1) == "/", match.group(2).lower()
        attrs: list[tuple[str, str]] = []
        gt = _tag_end(text, match.end(), attrs)
        if gt < 0:
            break
        position = gt + 1
        if name in _NEUTRALISED:
            census.renames.append(match.start(2))
            if not closing:
                _count_tag(name, attrs, counts)
            name = "x-" + name
        if closing:
            model.end(name)
            continue
        _count_tag(name, attrs, counts)
        top = model.stack[-1] if model.stack else None
        foreign = top is not None and bool(top.foreign) and not _integration(top)
        if name in _RAW_TEXT and not (foreign and name not in _BREAKOUT):
            end = re.compile(r"</" + re.escape(name) + r"[\t\n\f\r />]", re.IGNORECASE).search(text, position)
            if name == "title" and census.title is None:
                raw = text[position : end.start() if end else min(size, position + 1000)]
                census.title = " ".join(html_lib.unescape(raw[:1000]).split()) or None
            if end is None:
                break
            position = end.start()
            continue
        if name == "plaintext" and not foreign:  # the rest of the text is text (not in SVG/MathML)
            break
        model.start(name, attrs, text[gt - 1] == "/")
    census.depth = model.depth
    return census


_COUNTED_ELEMENTS = {
    "script": "script", "style": "style", "iframe": "embedded", "frame": "embedded", "frameset": "embedded",
    "object": "embedded", "embed": "embedded", "applet": "embedded", "img": "image", "picture": "media",
    "svg": "media", "video": "media", "audio": "media", "canvas": "media", "math": "media", "form": "form",
    "input": "form", "button": "form", "select": "form", "textarea": "form",
}


def _count_tag(name: str, attrs: list[tuple[str, str]], counts: Counter[str]) -> None:
    category = _COUNTED_ELEMENTS.get(name)
    if category is not None:
        counts[category] += 1
    for attribute, value in attrs:
        if attribute.startswith("on"):
            counts["event-handler"] += 1
        elif attribute == "style":
            counts["inline-style"] += 1
        elif attribute in ("href", "src", "action", "formaction", "xlink:href") and _unsafe_url(value):
            counts["unsafe-link"] += 1


_DROPPED_DETAIL = {
    "script": ("script", "scripts removed"),
    "style": ("style", "style sheets removed"),
    "embedded": ("embedded", "embedded frames and objects (iframe, object, embed) removed"),
    "image": ("image", "images (pictures are not imported)"),
    "media": ("media", "SVG, video, audio, canvas and math elements removed"),
    "form": ("form", "form controls removed"),
    "event-handler": ("event-handler", "event-handler attributes (onclick, onerror …) removed"),
    "inline-style": ("formatting", "inline styles (fonts, colours, sizes) removed"),
    "unsafe-link": ("link", "link targets with unsafe schemes (javascript:, data:, file: …) removed; the link "
                            "text is kept"),
}


# ----------------------------------------------------------------------------- HTML → Markdown
_ALLOWED_TAGS = frozenset({
    "h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "ul", "ol", "li", "dl", "dt", "dd",
    "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption",
    "a", "em", "strong", "b", "i", "code", "pre", "blockquote", "del", "s", "sub", "sup",
})
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "td": {"colspan"}, "th": {"colspan"}, "ol": {"start"}}
_CLEAN_CONTENT = frozenset({"script", "style", "title", "noscript", "iframe", "svg", "math", "head", "frameset",
                            "noframes", "textarea", "canvas", "x-template", "x-select", "x-object", "x-applet",
                            "x-button"})


@cache
def _cleaner() -> Any:
    import nh3

    return nh3.Cleaner(
        tags=set(_ALLOWED_TAGS),
        clean_content_tags=set(_CLEAN_CONTENT),
        attributes={tag: set(names) for tag, names in _ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(_SAFE_SCHEMES),
        link_rel=None,
        strip_comments=True,
    )


def _html(text: str, limits: Limits, report: Fidelity, *, source: str = "html") -> tuple[str, str | None]:
    """Sanitised HTML → Markdown; returns ``(markdown, <title>)``."""
    try:
        before = _scan_html(text, limits.max_depth)
    except _TooDeep:
        raise _too_deep(limits.max_depth) from None
    clean = _cleaner().clean(_neutralise(text, before.renames))
    if len(clean) > limits.max_html_chars:
        raise _too_large(f"the document is {len(clean):,} characters of HTML after cleaning; imports take at most "
                         f"{limits.max_html_chars:,}")
    try:
        after = _scan_html(clean, limits.max_depth + 8)  # the parser may add implied tbody/… levels
    except _TooDeep:
        raise _too_deep(limits.max_depth) from None
    for key, (kind, detail) in _DROPPED_DETAIL.items():
        if source == "docx" and key in ("image", "inline-style"):
            continue  # reported from mammoth's side
        report.drop(kind, detail, before.counts[key] - after.counts[key])
    import markdownify

    try:
        markdown = markdownify.markdownify(
            clean, heading_style="ATX", bullets="-", strong_em_symbol="*", escape_misc=False,
            table_infer_header=True, strip_document=markdownify.STRIP, wrap=True, wrap_width=None,
        )
    except RecursionError:
        raise _too_deep(limits.max_depth) from None
    return _tidy(markdown), before.title


# ----------------------------------------------------------------------------- Word
_DTD = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_CHUNK = 64 * 1024
_RATIO_FLOOR = MiB  # members (and packages) smaller than this are not judged by their ratio
_STYLE_NAME = re.compile(
    r'<w:style\b[^>]*\bw:styleId="([^"]{1,100})"[^>]*>\s*<w:name\s+w:val="Title"\s*/>', re.IGNORECASE
)
_CORE_TITLE = re.compile(r"<dc:title>([^<]{1,1000})</dc:title>")


def _looks_xml(first: bytes) -> bool:
    head = first[:512].replace(b"\x00", b"").lstrip(b"\xef\xbb\xbf\xff\xfe \t\r\n")
    return head.startswith(b"<")


def _guard_docx(data: bytes, limits: Limits, report: Fidelity) -> dict[str, bytes]:
    """The Word package's XML members, read under the caps; everything else is left unread."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise _damaged("this Word document is damaged (its ZIP structure cannot be read)") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_zip_members:
            raise _suspicious(f"this Word document has {len(infos):,} parts; real documents have far fewer than "
                              f"{limits.max_zip_members:,}, so it is refused")
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise _suspicious("this Word document holds the same part twice, which only a crafted file does")
        total = sum(info.file_size for info in infos)
        packed = sum(info.compress_size for info in infos)
        for info in infos:
            if info.file_size > _RATIO_FLOOR and info.file_size > limits.max_zip_ratio * max(info.compress_size, 1):
                raise _suspicious(
                    f"this Word document looks like a ZIP bomb: its part {info.filename[:80]!r} unpacks "
                    f"{info.file_size / max(info.compress_size, 1):,.0f} times larger than it is stored "
                    f"(compression ratio over {limits.max_zip_ratio:.0f}:1)"
                )
        if total > _RATIO_FLOOR and total > limits.max_zip_ratio * max(packed, 1):
            raise _suspicious(f"this Word document looks like a ZIP bomb: it unpacks {total / max(packed, 1):,.0f} "
                              f"times larger than it is stored (compression ratio over {limits.max_zip_ratio:.0f}:1)")
        if total > limits.max_unzipped_bytes:
            raise _too_large(f"this Word document unpacks to {_mb(total)}; imports take at most "
                             f"{_mb(limits.max_unzipped_bytes)}")
        if any(info.flag_bits & 0x1 for info in infos):
            raise Unprocessable("this Word document is password-protected; remove the password and try again",
                                code="import_encrypted")
        parts: dict[str, bytes] = {}
        read = 0
        embedded = macros = 0
        for info in infos:
            if info.is_dir():
                continue
            name = info.filename
            try:
                with archive.open(info) as member:
                    first = member.read(_CHUNK)
                    if not _looks_xml(first):
                        if name.startswith("word/embeddings/"):
                            embedded += 1
                        elif name.lower().endswith("vbaproject.bin"):
                            macros += 1
                        continue
                    buffer = bytearray(first)
                    while True:
                        room = limits.max_xml_bytes - read - len(buffer)
                        if room < 0:
                            raise _too_large(f"this Word document holds more than {_mb(limits.max_xml_bytes)} of "
                                             "text and layout XML; imports take at most that much")
                        chunk = member.read(min(_CHUNK, room + 1))
                        if not chunk:
                            break
                        buffer += chunk
            except DomainError:
                raise
            except Exception:
                raise _damaged("this Word document is damaged (a part cannot be unpacked)") from None
            if len(buffer) > info.file_size:
                raise _damaged("this Word document is damaged (a part is larger than its declared size)")
            read += len(buffer)
            if _DTD.search(bytes(buffer).replace(b"\x00", b"")):
                raise _suspicious(
                    f"this Word document's part {name[:80]!r} declares a DTD or XML entities, which Word never "
                    "writes and which can expand without limit (a 'billion laughs' attack); it is refused"
                )
            parts[name] = bytes(buffer)
    report.drop("embedded", "embedded objects (spreadsheets, OLE objects) not imported", embedded)
    report.drop("macro", "macros not imported", macros)
    return parts


def _style_map(parts: dict[str, bytes]) -> str:
    """mammoth's style map: the Title style is the ``#`` title; when the document uses it, its
    headings move one level down (Heading 1 → ``##``) so the title stays the only level-1 heading."""
    lines = ["p[style-name='Title'] => h1:fresh", "p[style-name='Subtitle'] => p:fresh",
             "p[style-name='Quote'] => blockquote > p:fresh", "p[style-name='Intense Quote'] => blockquote > p:fresh"]
    styles = parts.get("word/styles.xml", b"").decode("utf-8", "replace")
    document = parts.get("word/document.xml", b"").decode("utf-8", "replace")
    match = _STYLE_NAME.search(styles)
    if match is not None and f'<w:pStyle w:val="{match.group(1)}"' in document:
        for level in range(1, 7):
            lines.append(f"p[style-name='Heading {level}'] => h{min(level + 1, 6)}:fresh")
    return "\n".join(lines)


def _docx(data: bytes, limits: Limits, report: Fidelity) -> tuple[str, str | None]:
    parts = _guard_docx(data, limits, report)
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w", zipfile.ZIP_STORED) as repacked:
        for name, content in parts.items():
            repacked.writestr(name, content)
    core = parts.get("docProps/core.xml", b"").decode("utf-8", "replace")
    style_map = _style_map(parts)
    del parts
    package.seek(0)
    images: list[str] = []

    def on_image(image: Any) -> list[Any]:
        images.append(str(getattr(image, "content_type", None) or "image"))
        return []  # never read: not inlined, not kept

    import mammoth

    try:
        result = mammoth.convert_to_html(package, style_map=style_map, convert_image=on_image,
                                         include_embedded_style_map=False, external_file_access=False)
    except RecursionError:
        raise _too_deep(limits.max_depth) from None
    except DomainError:
        raise
    except Exception:
        raise _damaged("this Word document cannot be read (its main part is missing or malformed)") from None
    report.drop("image", "images (pictures are not imported)", len(images))
    for message in result.messages:
        text = str(getattr(message, "message", message))
        if text.startswith("Image of type"):
            continue  # every image is dropped anyway
        if text.startswith(("Unrecognised paragraph style", "Unrecognised run style", "Unrecognised table style")):
            report.drop("style", text + " — its text is kept without the style")
        else:
            report.drop("unsupported", text)
    markdown, _ = _html(result.value, limits, report, source="docx")
    match = _CORE_TITLE.search(core)
    meta_title = " ".join(html_lib.unescape(match.group(1)).split()) if match else None
    return markdown, meta_title or None


# ----------------------------------------------------------------------------- PDF
@dataclass
class _Word:
    text: str
    uri: str | None


@dataclass
class _Line:
    page: int
    top: float
    bottom: float
    x0: float
    size: float
    bold: bool
    words: list[_Word]
    heading: int = 0  # level, 0 = body

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)


@dataclass
class _Table:
    page: int
    top: float
    rows: list[list[str]]


_BOLD = re.compile(r"bold|black|heavy|semibold|demibold", re.IGNORECASE)
_PDF_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # (NUL also marks glued word pieces below)
# bullet characters: bullets and squares, hyphen bullet, operator dots, hyphen, en and em dash, asterisk
_BULLET_CHARS = "\u2022\u25e6\u25aa\u25ab\u25cf\u25cb\u25a0\u25a1\u2023\u2043\u2219\u00b7\\-\u2013\u2014*"
_BULLET = re.compile("^(?:[" + _BULLET_CHARS + "](?=\\s)|(\\d{1,3}|[A-Za-z])[.)](?=\\s))")
_JUNK_TITLE = re.compile(r"^(?:untitled|microsoft word|document\d*$|.*\.(?:docx?|pdf|odt|rtf|txt)$)", re.IGNORECASE)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")
_BLOCK_START = re.compile(r"^(#{1,6}\s|>|[-+*]\s|\d{1,9}[.)]\s|=+\s*$|-+\s*$)")


def _escape(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _escape_block_start(text: str) -> str:
    return "\\" + text if _BLOCK_START.match(text) else text


def _pdf_budget_error(limits: Limits) -> PayloadTooLarge:
    return _too_large(f"this PDF's page content unpacks to more than {_mb(limits.max_pdf_stream_bytes)}; "
                      "imports take at most that much")


_PDF_STRING = re.compile(rb"\(([^()\\]*(?:\\.[^()\\]*)*)\)", re.DOTALL)
# An escape in a literal string is one byte of the string (``\ddd``, ``\n``, ``\(``...), or none
# (a backslash before a line break continues the line).
_PDF_ESCAPE = re.compile(rb"\\(?:[0-7]{1,3}|\r\n|[\r\n]|.)", re.DOTALL)


def _literal_bytes(raw: bytes) -> int:
    r"""How many bytes the literal string ``(raw)`` holds once unescaped (Typst writes every glyph code as
    octal escapes: ``\000\027`` is two bytes, not eight)."""
    if b"\\" not in raw:
        return len(raw)
    escapes = _PDF_ESCAPE.findall(raw)
    return len(raw) - sum(len(e) - (0 if e[1:2] in (b"\r", b"\n") else 1) for e in escapes)


_PDF_HEX_STRING = re.compile(rb"<([0-9A-Fa-f\s]*)>")


class _PdfBudget:
    """What pdfminer (under pdfplumber) will decode and lay out, charged before it runs: unpacked
    streams (page content, forms, fonts) for the document and per page, and the string bytes a page
    shows (each becomes one character object of about 2 KB; a single 64 MB ``Tj`` would be millions)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.left = limits.max_pdf_stream_bytes
        self.glyphs_left = 2 * limits.max_chars  # string bytes: one per glyph, two with CID fonts
        self.page = 0
        self.page_bytes = 0
        self.page_glyphs = 0

    def start_page(self, number: int) -> None:
        self.page, self.page_bytes, self.page_glyphs = number, 0, 0

    def charge(self, obj: Any, *, content: bool) -> None:
        """Decode one stream under pypdf's limits and charge it (``content``: it runs on the page)."""
        from pypdf import apply_configuration
        from pypdf.generic import StreamObject

        if not isinstance(obj, StreamObject):
            return
        limits = self.limits
        room = min(self.left, limits.max_pdf_page_bytes - self.page_bytes) if content else self.left
        if room <= 0:
            raise self._error(content)
        with apply_configuration(
            zlib_maximum_output_length=room, lzw_maximum_output_length=room, run_length_maximum_output_length=room,
            brotli_maximum_output_length=room, array_based_stream_maximum_output_length=room,
            image_maximum_buffer_size=room,
        ):
            from pypdf.errors import LimitReachedError

            try:
                decoded = obj.get_data()
            except LimitReachedError:
                raise self._error(content) from None
        self.left -= len(decoded)
        if self.left < 0:
            raise self._error(False)
        if not content:
            return
        self.page_bytes += len(decoded)
        if self.page_bytes > limits.max_pdf_page_bytes:
            raise self._error(True)
        glyphs = sum(_literal_bytes(m.group(1)) for m in _PDF_STRING.finditer(decoded))
        glyphs += sum(len(m.group(1)) // 2 for m in _PDF_HEX_STRING.finditer(decoded))
        self.page_glyphs += glyphs
        self.glyphs_left -= glyphs
        if self.page_glyphs > limits.max_pdf_page_glyphs:
            raise _too_large(f"page {self.page + 1} of this PDF shows more than {limits.max_pdf_page_glyphs:,} "
                             "characters; imports take at most that many per page")
        if self.glyphs_left < 0:
            raise _too_large(f"this PDF shows more than {limits.max_chars:,} characters of text; a PRD can hold at "
                             "most that much")

    def _error(self, page: bool) -> PayloadTooLarge:
        if page and self.left > 0:
            return _too_large(f"page {self.page + 1} of this PDF unpacks to more than "
                              f"{_mb(self.limits.max_pdf_page_bytes)} of drawing and text instructions; imports "
                              "take at most that much per page")
        return _pdf_budget_error(self.limits)


def _resolve(obj: Any) -> Any:
    return obj.get_object() if hasattr(obj, "get_object") else obj


def _charge_resources(resources: Any, budget: _PdfBudget, fonts_seen: set[int], forms_seen: set[int],
                      depth: int) -> None:
    """Charge what pdfminer decodes for one page's resources: its form XObjects (each per page, with
    their own resources, nested up to 12 levels) and its fonts' programs and ToUnicode maps (once per
    document, as pdfminer caches fonts)."""
    resources = _resolve(resources)
    if not hasattr(resources, "get") or depth > 12:
        return
    xobjects = _resolve(resources.get("/XObject"))
    if hasattr(xobjects, "values"):
        for reference in list(xobjects.values())[:1000]:
            key = getattr(reference, "idnum", None)
            xobject = _resolve(reference)
            if not hasattr(xobject, "get") or xobject.get("/Subtype") != "/Form":
                continue
            if key is not None:
                if key in forms_seen:
                    continue  # a cycle or the same form twice on this page
                forms_seen.add(key)
            budget.charge(xobject, content=True)
            _charge_resources(xobject.get("/Resources"), budget, fonts_seen, forms_seen, depth + 1)
    fonts = _resolve(resources.get("/Font"))
    if hasattr(fonts, "values"):
        for reference in list(fonts.values())[:1000]:
            key = getattr(reference, "idnum", None)
            if key is not None and key in fonts_seen:
                continue
            if key is not None:
                fonts_seen.add(key)
            font = _resolve(reference)
            if not hasattr(font, "get"):
                continue
            budget.charge(_resolve(font.get("/ToUnicode")), content=False)
            descriptor = _resolve(font.get("/FontDescriptor"))
            if hasattr(descriptor, "get"):
                for program in ("/FontFile", "/FontFile2", "/FontFile3"):
                    budget.charge(_resolve(descriptor.get(program)), content=False)


@dataclass
class _PdfFacts:
    pages: int
    title: str | None
    outline: list[tuple[str, int, int | None]]  # (title, depth, page index)


def _flatten_outline(reader: Any, items: Any, depth: int, out: list[tuple[str, int, int | None]]) -> None:
    for item in items:
        if len(out) >= 2000:
            return
        if isinstance(item, list):
            if depth < 6:
                _flatten_outline(reader, item, depth + 1, out)
            continue
        title = " ".join(str(getattr(item, "title", "") or "").split())
        try:
            page = reader.get_destination_page_number(item)
        except Exception:
            page = None
        if title:
            out.append((title, depth, page))


def _pdf_prepass(data: bytes, limits: Limits) -> _PdfFacts:
    """pypdf: refuse encrypted and oversized PDFs, and measure what pdfminer would inflate."""
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    cap = limits.max_pdf_stream_bytes
    try:
        with apply_configuration(
            zlib_maximum_output_length=cap, lzw_maximum_output_length=cap, run_length_maximum_output_length=cap,
            brotli_maximum_output_length=cap, array_based_stream_maximum_output_length=cap,
            maximum_declared_stream_length=cap, image_maximum_buffer_size=cap,
        ):
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                decrypted: int
                try:
                    decrypted = int(reader.decrypt(""))  # owner-password-only PDFs open with ""
                except Exception:
                    decrypted = 0
                if not decrypted:
                    raise Unprocessable(
                        "this PDF is password-protected; remove the password (print or export it to a new PDF) "
                        "and try again",
                        code="import_encrypted",
                    )
            pages = len(reader.pages)
            if pages > limits.max_pages:
                raise _too_large(f"this PDF has {pages:,} pages; imports take at most {limits.max_pages:,}")
            budget = _PdfBudget(limits)
            fonts_seen: set[int] = set()
            for number, page in enumerate(reader.pages):
                budget.start_page(number)
                contents = _resolve(page.get("/Contents"))
                streams = contents if isinstance(contents, list) else [contents]
                for stream in streams[:10_000]:
                    budget.charge(_resolve(stream), content=True)
                _charge_resources(page.get("/Resources"), budget, fonts_seen, set(), 0)
            title = None
            try:
                metadata = reader.metadata
                title = " ".join(str(metadata.title or "").split()) if metadata is not None else None
            except Exception:
                title = None
            outline: list[tuple[str, int, int | None]] = []
            try:
                _flatten_outline(reader, reader.outline, 0, outline)
            except Exception:
                outline = []
    except DomainError:
        raise
    except FileNotDecryptedError:
        raise Unprocessable("this PDF is password-protected; remove the password and try again",
                            code="import_encrypted") from None
    except LimitReachedError:
        raise _pdf_budget_error(limits) from None
    except RecursionError:
        raise _damaged("this PDF is damaged (its structure loops or nests without end)") from None
    except Exception:
        raise _damaged("this PDF is damaged or truncated and cannot be read") from None
    if title and _JUNK_TITLE.match(title):
        title = None
    return _PdfFacts(pages, title or None, outline)


def _safe_uri(uri: Any) -> str | None:
    if not isinstance(uri, str) or not uri.strip():
        return None
    value = _URL_NOISE.sub("", uri.strip().replace(" ", "%20"))
    match = _SCHEME.match(value.lower())
    if match is None or match.group(1) not in _SAFE_SCHEMES:
        return None
    return value.replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def _page_lines(page: Any, page_number: int, report: Fidelity) -> tuple[list[_Line], list[_Table]]:
    tables: list[_Table] = []
    boxes: list[tuple[float, float, float, float]] = []
    if page.lines or page.rects:  # ruled tables only: cheap, and text-aligned "tables" are mostly prose
        for table in page.find_tables():
            rows = [[" ".join(str(cell or "").split()) for cell in row] for row in table.extract()]
            rows = [row for row in rows if any(row)]
            if len(rows) >= 1 and max(len(row) for row in rows) >= 2:
                tables.append(_Table(page_number, float(table.bbox[1]), rows))
                boxes.append(tuple(float(v) for v in table.bbox))  # type: ignore[arg-type]
    links = []
    unsafe_links = 0
    for link in page.hyperlinks:
        uri = _safe_uri(link.get("uri"))
        if uri is None:
            unsafe_links += 1
            continue
        links.append((float(link["x0"]), float(link["top"]), float(link["x1"]), float(link["bottom"]), uri))
    report.drop("link", "link targets with unsafe schemes (javascript:, file: …) removed; the link text is kept",
                unsafe_links)
    words = page.extract_words(extra_attrs=["size", "fontname"], return_chars=True, keep_blank_chars=False)
    lines: list[_Line] = []
    for word in words:
        word["text"] = _PDF_CONTROL.sub("", word["text"])  # unmapped glyphs come out as control characters
        if not word["text"]:
            continue
        cx, cy = (word["x0"] + word["x1"]) / 2, (word["top"] + word["bottom"]) / 2
        if any(x0 <= cx <= x1 and top <= cy <= bottom for x0, top, x1, bottom in boxes):
            continue
        pieces = _link_pieces(word, links)
        bold = bool(_BOLD.search(str(word.get("fontname", ""))))
        size = float(word.get("size") or 0.0)
        if lines and abs(word["top"] - lines[-1].top) <= 2.5 and word["x0"] >= lines[-1].x0:
            line = lines[-1]
            line.words.extend(pieces)
            line.bold = line.bold and bold
            line.size = max(line.size, size)
            line.bottom = max(line.bottom, float(word["bottom"]))
        else:
            lines.append(_Line(page_number, float(word["top"]), float(word["bottom"]), float(word["x0"]), size, bold,
                               pieces))
    return lines, tables


def _link_pieces(word: dict[str, Any], links: list[tuple[float, float, float, float, str]]) -> list[_Word]:
    if not links:
        return [_Word(word["text"], None)]
    pieces: list[_Word] = []
    for char in word.get("chars") or []:
        text = _PDF_CONTROL.sub("", str(char.get("text", "")))
        if not text:
            continue
        cx, cy = (char["x0"] + char["x1"]) / 2, (char["top"] + char["bottom"]) / 2
        uri = next((u for x0, top, x1, bottom, u in links if x0 <= cx <= x1 and top <= cy <= bottom), None)
        if pieces and pieces[-1].uri == uri:
            pieces[-1].text += text
        else:
            pieces.append(_Word(text, uri))
    if not pieces:
        return [_Word(word["text"], None)]
    # pieces of one word are joined without spaces: mark continuation with a leading NUL
    return [pieces[0]] + [_Word("\x00" + piece.text, piece.uri) for piece in pieces[1:]]


def _norm(text: str) -> str:
    return re.sub(r"\W+", "", unicodedata.normalize("NFKC", text).casefold())


def _running_lines(lines: list[_Line], pages: int) -> set[int]:
    """Indexes of running headers/footers: a line among the first or last two of a page whose text
    (digits ignored) recurs on most pages."""
    if pages < 3:
        return set()
    by_page: dict[int, list[int]] = {}
    for index, line in enumerate(lines):
        by_page.setdefault(line.page, []).append(index)
    candidates: dict[str, list[int]] = {}
    for indexes in by_page.values():
        for index in {*indexes[:2], *indexes[-2:]}:
            key = re.sub(r"\d+", "#", _norm(lines[index].text))
            candidates.setdefault(key, []).append(index)
    running: set[int] = set()
    for found in candidates.values():
        if len({lines[i].page for i in found}) >= max(3, int(pages * 0.6)):
            running.update(found)
    return running


def _mark_headings(lines: list[_Line], outline: list[tuple[str, int, int | None]], report: Fidelity) -> None:
    if len(outline) >= 2:
        cursor = 0
        for title, depth, page in outline:
            wanted = _norm(title)
            if not wanted:
                continue
            level = min(depth + 1, 6)
            for index in range(cursor, len(lines)):
                line = lines[index]
                if page is not None and line.page < page:
                    continue
                if page is not None and line.page > page + 1:
                    break
                text = _norm(line.text)
                if text == wanted:
                    line.heading = level
                    cursor = index + 1
                    break
                following = lines[index + 1] if index + 1 < len(lines) else None
                if following is not None and wanted.startswith(text) and text and _norm(line.text + following.text) \
                        == wanted:
                    line.words.extend(following.words)
                    following.words = []
                    line.heading = level
                    cursor = index + 2
                    break
            else:
                report.warn(f"the PDF bookmark {title[:80]!r} does not match a line of text; it is not a heading")
        return
    sizes: Counter[float] = Counter()
    for line in lines:
        sizes[round(line.size * 2) / 2] += len(line.text)
    if not sizes:
        return
    body = sizes.most_common(1)[0][0]
    heading_sizes = sorted({round(line.size * 2) / 2 for line in lines
                            if line.size >= body * 1.12 and line.size - body >= 1 and len(line.text.split()) <= 20},
                           reverse=True)[:5]
    levels = {size: rank + 1 for rank, size in enumerate(heading_sizes)}
    for index, line in enumerate(lines):
        size = round(line.size * 2) / 2
        if size in levels and not _BULLET.match(line.text):
            line.heading = levels[size]
        elif line.bold and abs(line.size - body) <= 0.6 and _standalone_bold(lines, index):
            line.heading = min(len(levels) + 1, 6)
    # a heading that wraps: the next line of the same size directly below joins it
    for index in range(len(lines) - 1, 0, -1):
        line, previous = lines[index], lines[index - 1]
        if line.heading and line.heading == previous.heading and line.page == previous.page \
                and line.top - previous.bottom < line.size * 0.6:
            previous.words.extend(line.words)
            line.words = []


def _standalone_bold(lines: list[_Line], index: int) -> bool:
    line = lines[index]
    text = line.text
    if len(text.split()) > 12 or text.rstrip()[-1:] in ".,;:" or _BULLET.match(text):
        return False
    previous = lines[index - 1] if index else None
    following = lines[index + 1] if index + 1 < len(lines) else None
    gap_before = previous is None or previous.page != line.page or line.top - previous.bottom > line.size * 0.5
    gap_after = following is None or following.page != line.page or following.top - line.bottom > line.size * 0.5
    return gap_before and gap_after


def _render_words(words: list[_Word]) -> str:
    out: list[str] = []
    link_text: list[str] = []
    link_uri: str | None = None

    def flush() -> None:
        nonlocal link_uri
        if link_uri is not None:
            out.append(f"[{' '.join(link_text).replace(' ' + chr(0), '')}]({link_uri})")
        link_text.clear()
        link_uri = None

    for word in words:
        glued = word.text.startswith("\x00")
        text = _escape(word.text.lstrip("\x00"))
        if word.uri is not None:
            if word.uri != link_uri:
                flush()
                link_uri = word.uri
                if glued and out:
                    out.append("\x00")
            link_text.append(("\x00" if glued and link_text else "") + text)
            continue
        flush()
        out.append(("\x00" if glued else "") + text)
    flush()
    return " ".join(out).replace(" \x00", "").replace("\x00", "")


def _pdf_markdown(lines: list[_Line], tables: list[_Table]) -> str:
    blocks: list[str] = []
    items: list[tuple[int, float, Any]] = [(line.page, line.top, line) for line in lines if line.words]
    items += [(table.page, table.top, table) for table in tables]
    items.sort(key=lambda item: (item[0], item[1]))
    paragraph: list[_Line] = []
    list_stack: list[tuple[float, int]] = []  # (bullet x0, content indent) of open list levels
    item_words: list[_Word] | None = None
    item_indent = ""
    item_x0 = 0.0
    previous: _Line | None = None

    def end_paragraph() -> None:
        if paragraph:
            words = [word for line in paragraph for word in line.words]
            text = _render_words(words)
            # a line ending in a hyphen joins the next one without a space ("signed-" + "in")
            blocks.append(_escape_block_start(re.sub(r"(?<=\w)- (?=\w)", "-", text)))
            paragraph.clear()

    def end_item() -> None:
        nonlocal item_words
        if item_words is not None:
            blocks.append(item_indent + _render_words(item_words))
            item_words = None

    for _, _, thing in items:
        if isinstance(thing, _Table):
            end_paragraph()
            end_item()
            list_stack.clear()
            blocks.append(_table_markdown(thing.rows))
            previous = None
            continue
        line: _Line = thing
        gap = line.top - previous.bottom if previous is not None and previous.page == line.page else None
        if line.heading:
            end_paragraph()
            end_item()
            list_stack.clear()
            blocks.append("#" * line.heading + " " + _render_words(line.words))
            previous = line
            continue
        bullet = _BULLET.match(line.text)
        if bullet:
            end_paragraph()
            end_item()
            while list_stack and list_stack[-1][0] > line.x0 + 3:
                list_stack.pop()
            if list_stack and abs(list_stack[-1][0] - line.x0) <= 3:
                list_stack.pop()
            indent = list_stack[-1][1] if list_stack else 0
            marker = f"{bullet.group(1)}." if bullet.group(1) and bullet.group(1).isdigit() else "-"
            list_stack.append((line.x0, indent + len(marker) + 1))
            item_indent = " " * indent + marker + " "
            item_words = _strip_bullet(line.words, bullet.group(0))
            item_x0 = line.x0
            previous = line
            continue
        if item_words is not None and line.x0 > item_x0 + 2 and (gap is None or gap < line.size * 0.8):
            item_words.extend(line.words)  # the item's text wraps
            previous = line
            continue
        end_item()
        if list_stack and line.x0 <= list_stack[0][0] + 2:
            list_stack.clear()
        if paragraph and (gap is None or gap > line.size * 0.5 or abs(line.x0 - paragraph[-1].x0) > line.size * 2):
            if gap is None and paragraph and not re.search(r"[.!?:]$", paragraph[-1].text) \
                    and line.text[:1].islower():
                paragraph.append(line)  # the paragraph continues on the next page
                previous = line
                continue
            end_paragraph()
        paragraph.append(line)
        previous = line
    end_paragraph()
    end_item()
    return _join_blocks(blocks)


def _strip_bullet(words: list[_Word], marker: str) -> list[_Word]:
    if not words:
        return words
    first = words[0]
    if first.text.strip() == marker.strip():
        return words[1:]
    return [_Word(first.text[len(marker):].lstrip(), first.uri), *words[1:]]


def _join_blocks(blocks: list[str]) -> str:
    """Blocks separated by blank lines, except consecutive list items (one list)."""
    out: list[str] = []
    for block in blocks:
        is_item = bool(re.match(r"^\s*(?:-|\d+\.) ", block))
        if out and is_item and re.match(r"^\s*(?:-|\d+\.) ", out[-1].rsplit("\n", 1)[-1]):
            out[-1] += "\n" + block
        else:
            out.append(block)
    return "\n\n".join(out)


def _table_markdown(rows: list[list[str]]) -> str:
    width = max(len(row) for row in rows)
    cells = [[_escape(cell) for cell in row] + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(cells[0]) + " |", "| " + " | ".join(["---"] * width) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)


def _pdf(data: bytes, limits: Limits, report: Fidelity) -> tuple[str, str | None]:
    facts = _pdf_prepass(data, limits)
    import pdfplumber

    lines: list[_Line] = []
    tables: list[_Table] = []
    images = 0
    characters = 0
    try:
        with pdfplumber.open(io.BytesIO(data)) as pdf:
            for number, page in enumerate(pdf.pages):
                if number >= limits.max_pages:
                    raise _too_large(f"this PDF has more than {limits.max_pages:,} pages; imports take at most "
                                     f"{limits.max_pages:,}")
                images += len(page.images)
                page_lines, page_tables = _page_lines(page, number, report)
                characters += sum(len(line.text) + 1 for line in page_lines)
                characters += sum(len(cell) + 3 for table in page_tables for row in table.rows for cell in row)
                if characters > limits.max_chars:
                    raise _too_large(f"this PDF holds more than {limits.max_chars:,} characters of text; a PRD can "
                                     "hold at most that much")
                lines += page_lines
                tables += page_tables
                page.close()
    except DomainError:
        raise
    except RecursionError:
        raise _damaged("this PDF is damaged (its structure loops or nests without end)") from None
    except Exception as exc:
        if "password" in str(exc).lower() or type(exc).__name__ == "PDFPasswordIncorrect":
            raise Unprocessable("this PDF is password-protected; remove the password and try again",
                                code="import_encrypted") from None
        raise _damaged("this PDF is damaged or truncated and cannot be read") from None
    report.drop("image", "images (pictures are not imported)", images)
    if not any(re.search(r"\w", line.text) for line in lines) and not tables:
        raise Unprocessable(
            "this PDF has no text layer (a scan?): there is no text to import. Export it again from the program "
            "that made it, or run it through OCR first",
            code="import_no_text",
        )
    running = _running_lines(lines, facts.pages)
    if running:
        report.warn(f"{len(running)} running header/footer lines (page numbers …) removed")
        lines = [line for index, line in enumerate(lines) if index not in running]
    _mark_headings(lines, facts.outline, report)
    if not facts.outline:
        report.warn("the PDF has no bookmarks: headings were inferred from font sizes and bold lines")
    return _tidy(_pdf_markdown(lines, tables)), facts.title

