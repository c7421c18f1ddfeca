"""PDF export: the node tree → Typst markup → ``typst.compile`` (DESIGN §4 "Documents in and out").

A PRD is untrusted input and Typst markup is a programming language (``#read``, ``#import``,
``#include``, ``$math$``, ``<label>``, ``@ref``, ``//`` comments …), so **every piece of user text**
goes through :func:`escape_text` (markup) or :func:`escape_string` (string literals). The writer
itself only emits function-call syntax (``#heading(level: 2)[…]``, ``#list(…)``, ``#raw("…")``) and
never line-start markup, so nothing depends on where a line begins. As a second wall the compiler
runs with ``root`` set to an empty temporary directory, no system fonts and an empty package
directory and cache.

Typst's embedded fonts (Libertinus Serif, New Computer Modern, DejaVu Sans Mono) lack CJK, Thai,
most Indic scripts, Ethiopic and colour emoji: those characters render as empty boxes with no error.
:func:`glyph_warnings` finds them in the input so the export can say so (measured with typst
0.15.2: each listed range extracts back from the PDF as U+0000, the characters around it do not).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from typing import Any

from prdtool.exports.model import (
    MERMAID_CAPTION,
    ExportMeta,
    Node,
    code_language,
    image_label,
    is_mermaid,
    safe_href,
    table_rows,
)

# Characters Typst treats as line ends in markup; user text never starts a line.
_NEWLINES = re.compile("[\n\r\x0b\x0c\x85\u2028\u2029]")
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Typst stops with "maximum show rule depth exceeded" at about 20 nested block quotes or 40 nested
# lists; containers deeper than this are flattened (the text stays, the indentation goes).
MAX_TYPST_NESTING = 12

FONTS = ("Libertinus Serif", "New Computer Modern", "DejaVu Sans Mono")
MONO_FONT = "DejaVu Sans Mono"


def escape_text(text: str) -> str:
    """``text`` as Typst *markup* that shows exactly these characters.

    Every ASCII character that is not a letter, digit or space gets a backslash (Typst's escape
    accepts any character), which disarms ``#`` code, ``$`` math, ``*``/``_`` strong and emphasis,
    backtick raw, ``<label>``, ``@ref``, ``[``/``]`` content blocks, ``//`` and ``/* */`` comments,
    ``\\`` escapes and ``\\u{…}``, the ``--``/``...``/``~``/quote shorthands, ``https://`` auto-links
    and the line-start ``=``/``-``/``+``/``/``/``1.`` forms. Line ends become spaces.
    """
    out: list[str] = []
    for ch in _NEWLINES.sub(" ", text).replace("\t", " "):
        if ch < "\x80" and not ch.isalnum() and ch != " ":  # a backslash before a space is a line break
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def escape_string(text: str) -> str:
    """``text`` as a Typst string literal, quotes included (for ``raw``, ``link``, ``document``)."""
    return '"' + "".join(_STRING_ESCAPES.get(ch, ch) for ch in text) + '"'


# --- glyph coverage ------------------------------------------------------------------------------

_CJK_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FFF),  # CJK radicals, Kangxi radicals, ideographic description
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3040, 0x31FF),  # Hiragana, Katakana, Bopomofo, Hangul compatibility Jamo, Kanbun, strokes
    (0x3200, 0x4DBF),  # enclosed CJK, CJK compatibility, extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended-A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo extended-B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFE30, 0xFE4F),  # CJK compatibility forms
    (0xFF00, 0xFFEF),  # half-width and full-width forms
    (0x1F200, 0x1F2FF),  # enclosed ideographic supplement
    (0x20000, 0x3FFFF),  # extensions B and later
)
_OTHER_RANGES = (
    (0x0980, 0x0DFF),  # Bengali … Sinhala (Devanagari is covered)
    (0x0E00, 0x109F),  # Thai, Lao, Tibetan, Myanmar
    (0x1200, 0x1AFF),  # Ethiopic, Cherokee, Canadian syllabics, Ogham, Runic, Khmer, Mongolian …
    (0x1B00, 0x1C7F),  # Balinese, Sundanese, Batak, Lepcha, Ol Chiki
    (0x2607, 0x2608), (0x2630, 0x2637), (0x268C, 0x268F), (0x269D, 0x269F), (0x26A8, 0x26A9),
    (0x26B0, 0x26B1), (0x26B3, 0x2700), (0x2705, 0x2705), (0x270A, 0x270B), (0x2715, 0x2716),
    (0x2727, 0x2729), (0x274C, 0x274C), (0x274E, 0x274E), (0x2753, 0x2755), (0x2757, 0x2757),
    (0x275F, 0x2760), (0x2780, 0x2793), (0x2795, 0x2797), (0x27B0, 0x27B0),  # emoji-style symbols
    (0xA000, 0xA4CF),  # Yi
    (0x1F000, 0x1F1FF),  # mahjong, dominoes, cards, enclosed alphanumerics, flags
    (0x1F300, 0x1F77F),  # emoji: pictographs, emoticons, transport, alchemical
    (0x1F900, 0x1FAFF),  # emoji: supplemental symbols and pictographs
)


def _char_class(ranges: tuple[tuple[int, int], ...]) -> re.Pattern[str]:
    return re.compile("[" + "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges) + "]")


_CJK = _char_class(_CJK_RANGES)
_OTHER = _char_class(_OTHER_RANGES)


def missing_glyphs(text: str) -> tuple[list[str], list[str]]:
    """``(CJK characters, other characters)`` in ``text`` that Typst's embedded fonts cannot show,
    each distinct and in order of first appearance."""
    return list(dict.fromkeys(_CJK.findall(text))), list(dict.fromkeys(_OTHER.findall(text)))


def glyph_warnings(texts: Iterable[str]) -> list[str]:
    text = "\n".join(texts)
    cjk, other = missing_glyphs(text)
    warnings = []
    if cjk:
        warnings.append(
            f"The PDF fonts have no Chinese, Japanese or Korean (CJK) glyphs: {len(cjk)} distinct "
            f"character{'s' if len(cjk) > 1 else ''} (e.g. {''.join(cjk[:8])}) show as empty boxes. "
            "The HTML, Word and Markdown exports are not affected."
        )
    if other:
        warnings.append(
            f"The PDF fonts have no glyphs for {len(other)} other distinct character"
            f"{'s' if len(other) > 1 else ''} (emoji or scripts such as Thai; e.g. {''.join(other[:8])}):"
            " they show as empty boxes. The HTML, Word and Markdown exports are not affected."
        )
    return warnings


# --- markup --------------------------------------------------------------------------------------

def _preamble(meta: ExportMeta, *, h2_page_breaks: bool) -> list[str]:
    parsed = meta.parsed_date
    date = f"datetime(year: {parsed.year}, month: {parsed.month}, day: {parsed.day})" if parsed else "none"
    authors = ", ".join(escape_string(a.strip()) for a in meta.authors if a.strip())
    footer = (
        f"[#text(fill: luma(110))[{escape_text(meta.title)} · {escape_text(meta.version_label)}]"
        " #h(1fr) #context counter(page).display(\"1 / 1\", both: true)]"
    )
    lines = [
        f"#set document(title: {escape_string(meta.title)}, author: ({authors}{',' if authors else ''}),"
        f" keywords: ({escape_string('PRD')}, {escape_string(meta.version_label)}), date: {date})",
        '#set page(paper: "a4", margin: (x: 2.2cm, top: 2.4cm, bottom: 2.6cm))',
        f"#set text(font: ({', '.join(escape_string(f) for f in FONTS)}), size: 10.5pt)",
        "#set par(leading: 0.62em, spacing: 1.1em)",
        "#set heading(numbering: none)",
        "#show heading: set block(above: 1.5em, below: 0.8em)",
        "#show heading.where(level: 1): set text(size: 18pt)",
        "#show heading.where(level: 2): set text(size: 15pt)",
        "#show heading.where(level: 3): set text(size: 12.5pt)",
        "#show heading: it => block(sticky: true, it)",
        f"#show raw: set text(font: {escape_string(MONO_FONT)}, size: 0.86em)",
        "#show raw.where(block: true): it => block(fill: luma(246), stroke: 0.5pt + luma(210), inset: 8pt,"
        " radius: 2pt, width: 100%, it)",
        "#show link: set text(fill: rgb(\"#1a56a8\"))",
        "#show quote.where(block: true): it => block(stroke: (left: 2pt + luma(190)), inset: (left: 10pt,"
        " y: 4pt), it.body)",
        "#set table(stroke: 0.5pt + luma(150), inset: 5pt)",
        "#show table.cell.where(y: 0): set text(weight: \"bold\")",
        "#set list(indent: 0.6em)",
        "#set enum(indent: 0.6em)",
    ]
    if h2_page_breaks:
        lines.append("#show heading.where(level: 2): it => { pagebreak(weak: true); it }")
    lines += [
        "#page(numbering: none)[",
        "  #v(28%)",
        f"  #text(size: 26pt, weight: \"bold\")[{escape_text(meta.title)}]",
        "  #v(1.2em)",
        f"  #text(size: 14pt)[Version {escape_text(meta.version_label)}]",
        "  #v(2em)",
        "  #grid(columns: 2, column-gutter: 1.2em, row-gutter: 0.7em,",
        f"    [Date], [{escape_text(meta.date_label)}],",
        f"    [Authors], [{escape_text(meta.authors_label) or '—'}],",
        f"    [PRD], [{escape_text(meta.prd_id)}],",
        "  )",
        "]",
        f"#set page(footer: {footer})",
        "#counter(page).update(1)",
        "",
    ]
    return lines


class _Writer:
    # blocks -> markup string (a sequence of block-level items separated by blank lines)
    def blocks(self, nodes: list[Node], *, tight: bool = False, depth: int = 0) -> str:
        parts = [self.block(n, depth=depth) for n in nodes]
        return ("\n" if tight else "\n\n").join(p for p in parts if p)

    def block(self, node: Node, *, depth: int = 0) -> str:
        kind = node.type
        if kind == "paragraph":
            return self.inline_of(node)
        if kind == "heading":
            return f"#heading(level: {node.level})[{self.inline_of(node)}]"
        if kind in ("bullet_list", "ordered_list"):
            return self.list_block(node, depth)
        if kind in ("fence", "code_block"):
            return self.code(node)
        if kind == "blockquote":
            if depth >= MAX_TYPST_NESTING:
                return self.blocks(node.children, depth=depth)
            return f"#quote(block: true)[{self.blocks(node.children, depth=depth + 1)}]"
        if kind == "hr":
            return "#line(length: 100%, stroke: 0.5pt + luma(160))"
        if kind == "table":
            return self.table(node)
        if kind == "inline":
            return self.inline(node.children)
        # anything else (html_block cannot occur with html=False): its text, escaped
        return escape_text(node.content) if node.content else self.blocks(node.children, depth=depth)

    def list_block(self, node: Node, depth: int) -> str:
        tight = any(p.hidden for item in node.children for p in item.children if p.type == "paragraph")
        start = node.attrs.get("start", 1)
        start = int(start) if str(start).isdigit() else 1
        ordered = node.type == "ordered_list"
        if depth >= MAX_TYPST_NESTING:  # flattened: the marker becomes text
            return "\n\n".join(
                escape_text(f"{start + n}. " if ordered else "• ") + self.blocks(item.children, tight=True, depth=depth)
                for n, item in enumerate(node.children)
            )
        items = ", ".join(f"[{self.blocks(item.children, tight=tight, depth=depth + 1)}]" for item in node.children)
        if ordered:
            return f"#enum(tight: {'true' if tight else 'false'}, start: {start}, {items})"
        return f"#list(tight: {'true' if tight else 'false'}, {items})"

    def code(self, node: Node) -> str:
        text = node.content.removesuffix("\n")
        lang = code_language(node)
        raw = f"#raw({escape_string(text)}, block: true{', lang: ' + escape_string(lang) if lang else ''})"
        if is_mermaid(node):
            caption = f"#text(size: 0.9em, style: \"italic\", fill: luma(90))[{escape_text(MERMAID_CAPTION)}]"
            return f"#block(breakable: true)[{caption} #v(-0.6em) {raw}]"
        return raw

    def table(self, node: Node) -> str:
        header, body, aligns = table_rows(node)
        if not header:
            return ""
        align = ", ".join(a or "auto" for a in aligns)
        cells = [f"table.header({', '.join(f'[{self.inline_of(c)}]' for c in header)})"]
        for row in body:
            cells.extend(f"[{self.inline_of(c)}]" for c in row)
        return f"#table(columns: {len(header)}, align: ({align},), {', '.join(cells)})"

    def inline_of(self, node: Node) -> str:
        return "".join(self.inline(c.children) for c in node.children if c.type == "inline")

    def inline(self, nodes: list[Node]) -> str:
        out: list[str] = []
        for node in nodes:
            kind = node.type
            if kind == "text":
                out.append(escape_text(node.content))
            elif kind == "softbreak":
                out.append(" ")
            elif kind == "hardbreak":
                out.append("#linebreak()")
            elif kind == "code_inline":
                out.append(f"#raw({escape_string(node.content)})")
            elif kind == "em":
                out.append(f"#emph[{self.inline(node.children)}]")
            elif kind == "strong":
                out.append(f"#strong[{self.inline(node.children)}]")
            elif kind == "s":
                out.append(f"#strike[{self.inline(node.children)}]")
            elif kind == "link":
                href = safe_href(str(node.attrs.get("href", "")))
                body = self.inline(node.children)
                out.append(f"#link({escape_string(href)})[{body}]" if href else body)
            elif kind == "image":
                label = escape_text(image_label(node))
                href = safe_href(str(node.attrs.get("src", "")))
                out.append(f"#link({escape_string(href)})[{label}]" if href else label)
            else:
                out.append(escape_text(node.content) + self.inline(node.children))
        return "".join(out)


def to_typst(root: Node, meta: ExportMeta, *, h2_page_breaks: bool = False) -> str:
    """The whole document as Typst markup (title page, then the PRD)."""
    lines = _preamble(meta, h2_page_breaks=h2_page_breaks)
    lines.append(_Writer().blocks(root.children))
    return "\n".join(lines) + "\n"


def compile_pdf(markup: str) -> tuple[bytes, list[str]]:
    """Compile generated markup to PDF bytes, sandboxed: an empty ``root`` (no ``#read``/``#image``
    of local files), embedded fonts only, empty package directory and cache. Returns Typst's
    warnings as text."""
    import typst  # lazy: 83 MB native module, only the PDF export needs it

    with tempfile.TemporaryDirectory(prefix="prd-typst-") as empty:
        compile_with_warnings: Any = typst.compile_with_warnings  # its stub ties root's type to input's
        result, warnings = compile_with_warnings(
            markup.encode("utf-8"),  # bytes: a str would be taken as a file path
            root=empty,
            font_paths=[],
            ignore_system_fonts=True,
            format="pdf",
            package_path=empty,
            package_cache_path=empty,
        )
    if not isinstance(result, bytes):  # only with output=…, which is never passed
        raise TypeError("typst returned no PDF bytes")
    return result, [str(getattr(w, "message", w)) for w in warnings]
