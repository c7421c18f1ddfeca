"""PRD exports (prdtool.exports): Markdown, HTML, Word and PDF from one parse; hostile input stays text."""

from __future__ import annotations

import io
import random
import re
import tempfile
import unicodedata
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import docx
import pypdf
import pytest
import typst
from docx.oxml.ns import qn

from prdtool.errors import BadRequest, PayloadTooLarge
from prdtool.exports import FORMATS, ExportMeta, Rendered, render, suggested_filename
from prdtool.exports.model import MAX_INLINE_DEPTH, parse
from prdtool.exports.render import escape_markdown
from prdtool.exports.typst_markup import (
    _CJK_RANGES,
    _OTHER_RANGES,
    compile_pdf,
    escape_string,
    escape_text,
    missing_glyphs,
)

META = ExportMeta(
    title="Checkout redesign",
    version="1.4.0",
    date="2024-05-01T09:30:00+00:00",
    authors=["Dana Müller", "Kenji Sato"],
    prd_id="prd_01HXCHECKOUT",
)

PRD = """\
# Checkout redesign

Owner: **Dana Müller** — naïve café. Read the [research summary](https://example.com/research?q=1&r=2)
and the *current* flow; `checkout_v2` is ~~deprecated~~ gone.

## Goals

1. Cut abandonment by a fifth
2. Keep payment latency low
   - p50 under *200 ms*
   - p99 under **1 s**
3. Ship to two markets

Between the lists.

1. Design review
2. Security review

### Non-goals

- Loyalty points
  - nested *bullet*
    - deeper bullet
- Gift cards

## Metrics

| Metric | Target | Owner |
|:-------|-------:|:-----:|
| Conversion | +5% | Dana |
| Latency p99 | 1 s | Kenji |

## Design

```python
def total(cart):
    return sum(item.price for item in cart)  # *not* emphasis
```

```mermaid
graph TD; Cart-->Pay; Pay-->Done
```

> Quote from a user: **fast** checkout matters.

---

![Wireframe of the pay step](https://example.com/wire.png)

### Localisation

中文界面 and 日本語 support is planned.

Hostile text: #read("/etc/passwd") and <script>alert(1)</script> and [bad](javascript:alert(1)).
"""

HEADINGS = [
    (1, "Checkout redesign"), (2, "Goals"), (3, "Non-goals"), (2, "Metrics"), (2, "Design"),
    (3, "Localisation"),
]

# Each must come out of the PDF (and every other format) as exactly these characters.
HOSTILE = [
    '#read("/etc/passwd")',
    '#import "@preview/cetz:0.3.4": canvas',
    "#include \"secret.typ\"",
    '#image("logo.png")',
    "$x^2 + y$",
    "<label>",
    "@ref and @preview",
    "// comment to end of line",
    "/* block comment */",
    "back\\slash \\u{41} \\#",
    "unbalanced ] [ [ ) (",
    "*strong* _emph_ `raw` ~nbsp~",
    "a -- b --- c ... d",
    "https://example.com/auto",
    "= not a heading",
    "+ not an enum",
    "- not a list",
    "/ term: not a term",
    "1. not a number",
    "#{ let x = 1 }",
    "#set text(red)",
    "#show: it => none",
    '"quoted" and \'single\'',
    "x\\",
    "}{ #let",
]


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


def pdf_outline(data: bytes) -> list[tuple[int, str]]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    found: list[tuple[int, str]] = []

    def walk(items: list[Any], depth: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
            else:
                found.append((depth, str(item.title)))

    walk(reader.outline, 1)
    return found


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendered]:
    return {fmt: render(PRD, fmt, meta=META) for fmt in FORMATS}


# --- escaping ------------------------------------------------------------------------------------

def test_escape_text_leaves_no_active_character() -> None:
    escaped = escape_text("".join(chr(c) for c in range(0x20, 0x7F)) + "\u2028é中")
    unescaped = re.sub(r"\\.", "", escaped)
    assert re.fullmatch(r"[A-Za-z0-9 é中]*", unescaped), unescaped
    assert "\n" not in escape_text("a\nb\r\nc\u2028d")
    assert "\\ " not in re.findall(r"\\.", escape_text("\\ \t x"))  # backslash + space is a line break
    assert escape_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


def test_hostile_corpus_renders_as_literal_text_in_the_pdf() -> None:
    markup = "\n\n".join(escape_text(s) for s in HOSTILE)
    markup += "\n\n" + "\n\n".join(f"#raw({escape_string(s)})" for s in HOSTILE)
    data, warnings = compile_pdf(markup)
    text = pdf_text(data)
    lines = [_squash(line) for line in text.splitlines()]
    for sample in HOSTILE:
        assert lines.count(_squash(sample)) == 2, (sample, text)  # once as text, once as raw
    assert warnings == []


def test_random_punctuation_soup_round_trips() -> None:
    rng = random.Random(16)
    alphabet = "#$*_@<>`\\[]/(){}=+-.:;\"'~!?%&|^,0123456789ab"
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(120)]
    data, _ = compile_pdf("\n\n".join(escape_text(s) for s in samples))
    assert [line.strip() for line in pdf_text(data).splitlines() if line.strip()] == samples


def test_the_prd_cannot_read_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "SENTINEL-3f9a-do-not-leak"
    (tmp_path / "sentinel.txt").write_text(secret)
    (tmp_path / "sentinel.typ").write_text(secret)
    (tmp_path / "sentinel.csv").write_text(secret + ",x\n")
    monkeypatch.chdir(tmp_path)
    attempts = [
        '#read("sentinel.txt")',
        '#include "sentinel.typ"',
        '#csv("sentinel.csv")',
        '#read("/etc/hostname")',
        '#import "@preview/cetz:0.3.4"',
    ]
    prd = "# Attack\n\n" + "\n\n".join(attempts)
    prd += '\n\n`#read("sentinel.txt")`\n\n```typ\n#read("sentinel.txt")\n```\n'
    data = render(prd, "pdf", meta=META).data
    text = pdf_text(data)
    assert secret not in text
    for attempt in attempts:
        assert attempt in text
    # The detector works: unescaped markup with the working directory as root does leak...
    leaked = typst.compile(b'#read("sentinel.txt")', root=str(tmp_path), ignore_system_fonts=True)
    assert secret in pdf_text(leaked)
    # ...and the sandbox is a second wall: raw markup compiled by compile_pdf cannot reach it.
    with pytest.raises(typst.TypstError):
        compile_pdf('#read("sentinel.txt")')
    with pytest.raises(typst.TypstError):
        compile_pdf('#read("/etc/hostname")')


def test_glyph_table_matches_the_embedded_fonts() -> None:
    """Every range flagged as missing really extracts as U+0000; common text is neither flagged nor lost."""
    probes = []
    for low, high in _CJK_RANGES + _OTHER_RANGES:
        for code in range(low, min(high, low + 400) + 1):
            if unicodedata.category(chr(code))[0] in "LS":
                probes.append(chr(code))
                break
    data, _ = compile_pdf("\n\n".join(escape_text(p) for p in probes))
    extracted = [line for line in pdf_text(data).splitlines() if line.strip()]
    assert len(extracted) == len(probes)
    assert all("\x00" in line for line in extracted), [p for p, line in zip(probes, extracted, strict=True)
                                                        if "\x00" not in line]
    covered = ["Müller — naïve café", "Ελληνικά", "Русский", "עברית", "हिन्दी", "→ ✓ ⭐ ⚡ € ½ ©", "Tiếng Việt"]
    assert missing_glyphs(" ".join(covered)) == ([], [])
    data, _ = compile_pdf("\n\n".join(escape_text(c) for c in covered))
    assert "\x00" not in pdf_text(data)
    assert missing_glyphs("a中b🚀c中ไ") == (["中"], ["🚀", "ไ"])


# --- the realistic PRD in every format ----------------------------------------------------------

class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.headings: list[tuple[int, str]] = []
        self.cells: list[str] = []
        self._text: list[str] | None = None
        self.in_main = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "main":
            self.in_main = True
        if self.in_main and (re.fullmatch(r"h[1-6]", tag) or tag in ("td", "th")):
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "main":
            self.in_main = False
        if self._text is not None and re.fullmatch(r"h[1-6]", tag):
            self.headings.append((int(tag[1]), "".join(self._text).strip()))
            self._text = None
        elif self._text is not None and tag in ("td", "th"):
            self.cells.append("".join(self._text).strip())
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def test_html_export(rendered: dict[str, Rendered]) -> None:
    result = rendered["html"]
    assert (result.content_type, result.extension) == ("text/html; charset=utf-8", "html")
    page = result.data.decode("utf-8")
    parser = _Html()
    parser.feed(page)
    parser.close()
    assert parser.headings == HEADINGS
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "iframe" not in tags and "img" not in tags and "link" not in tags
    assert not any(k.startswith("on") or k in ("src", "srcset") for _, attrs in parser.tags for k in attrs)
    assert ("meta", {"charset": "utf-8"}) in parser.tags
    assert any(a.get("http-equiv") == "Content-Security-Policy" and "default-src 'none'" in (a.get("content") or "")
               for t, a in parser.tags if t == "meta")
    hrefs = [a.get("href") for t, a in parser.tags if t == "a"]
    assert "https://example.com/research?q=1&r=2" in hrefs
    assert not any("javascript" in (h or "") for h in hrefs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and '#read(&quot;/etc/passwd&quot;)' in page
    assert parser.cells == ["Metric", "Target", "Owner", "Conversion", "+5%", "Dana", "Latency p99", "1 s", "Kenji"]
    assert '<th style="text-align: right">Target</th>' in page
    assert page.count("<ol>") == 2 and "<ul>" in page  # two ordered lists, bullets nested
    assert "<figcaption>Mermaid diagram (source)</figcaption>" in page
    assert "Cart--&gt;Pay" in page and '<code class="language-python">' in page
    assert "[Image: Wireframe of the pay step]" in page
    # title block, stylesheet, nothing loaded from outside
    for text in ("Checkout redesign", "Version v1.4.0", "2024-05-01", "Dana Müller, Kenji Sato", "prd_01HXCHECKOUT"):
        assert text in page.split("<main>")[0]
    assert "@page" in page and "size: A4" in page and "url(" not in page and "@import" not in page
    assert "Dana Müller</strong> — naïve café" in page and "中文界面" in page
    assert any("Mermaid" in w for w in result.warnings) and any("image" in w for w in result.warnings)
    assert not any("CJK" in w for w in result.warnings)


def _numbering(document: Any) -> Any:
    return document.part.numbering_part.element


def _list_paragraphs(document: Any) -> list[tuple[str, int, int]]:
    """(text, numId, ilvl) of every numbered paragraph in the body."""
    found = []
    for paragraph in document.paragraphs:
        num_pr = paragraph._p.find(f"{qn('w:pPr')}/{qn('w:numPr')}")
        if num_pr is not None:
            found.append((paragraph.text, int(num_pr.find(qn("w:numId")).get(qn("w:val"))),
                          int(num_pr.find(qn("w:ilvl")).get(qn("w:val")))))
    return found


def _num_format(document: Any, num_id: int, ilvl: int) -> tuple[str, int | None]:
    numbering = _numbering(document)
    num = numbering.num_having_numId(num_id)
    abstract_id = num.find(qn("w:abstractNumId")).get(qn("w:val"))
    abstract = next(a for a in numbering.findall(qn("w:abstractNum")) if a.get(qn("w:abstractNumId")) == abstract_id)
    level = next(lvl for lvl in abstract.findall(qn("w:lvl")) if lvl.get(qn("w:ilvl")) == str(ilvl))
    override = num.find(f"{qn('w:lvlOverride')}[@{qn('w:ilvl')}='{ilvl}']/{qn('w:startOverride')}")
    start = int(override.get(qn("w:val"))) if override is not None else None
    return level.find(qn("w:numFmt")).get(qn("w:val")), start


def test_docx_export(rendered: dict[str, Rendered]) -> None:
    result = rendered["docx"]
    assert result.extension == "docx" and result.content_type.endswith("wordprocessingml.document")
    document = docx.Document(io.BytesIO(result.data))
    headings = [(int(p.style.name.split()[-1]), p.text) for p in document.paragraphs
                if p.style is not None and p.style.name.startswith("Heading ")]
    assert headings == HEADINGS
    texts = [p.text for p in document.paragraphs]
    assert "Checkout redesign" in texts and "Version v1.4.0" in texts
    assert "Authors: Dana Müller, Kenji Sato" in texts and "PRD: prd_01HXCHECKOUT" in texts
    assert any(p.style is not None and p.style.name == "Title" and p.text == "Checkout redesign"
               for p in document.paragraphs)

    # the table, with a repeating bold header row
    [table] = document.tables
    assert [[c.text for c in row.cells] for row in table.rows] == [
        ["Metric", "Target", "Owner"], ["Conversion", "+5%", "Dana"], ["Latency p99", "1 s", "Kenji"]]
    assert table.rows[0]._tr.find(f"{qn('w:trPr')}/{qn('w:tblHeader')}") is not None
    assert all(run.bold for run in table.rows[0].cells[0].paragraphs[0].runs)

    # two ordered lists, each its own counter starting at 1; bullets nest one level down
    numbered = _list_paragraphs(document)
    goals = [n for n in numbered if n[0] in ("Cut abandonment by a fifth", "Keep payment latency low",
                                             "Ship to two markets")]
    reviews = [n for n in numbered if n[0] in ("Design review", "Security review")]
    assert len(goals) == 3 and len(reviews) == 2
    assert len({n[1] for n in goals}) == 1 and len({n[1] for n in reviews}) == 1
    assert goals[0][1] != reviews[0][1]
    for num_id in (goals[0][1], reviews[0][1]):
        assert _num_format(document, num_id, 0) == ("decimal", 1)
    nested = next(n for n in numbered if n[0] == "p50 under 200 ms")
    deeper = next(n for n in numbered if n[0] == "deeper bullet")
    assert nested[2] == 1 and _num_format(document, nested[1], 1)[0] == "bullet"
    assert deeper[2] == 2
    # every w:abstractNum precedes every w:num (Word rejects the file otherwise)
    kinds = [child.tag for child in _numbering(document) if child.tag in (qn("w:abstractNum"), qn("w:num"))]
    assert kinds == sorted(kinds, key=lambda tag: tag != qn("w:abstractNum"))

    # a real hyperlink, its target in the relationships
    links = document.element.body.findall(f".//{qn('w:hyperlink')}")
    targets = {document.part.rels[link.get(qn("r:id"))].target_ref for link in links}
    assert "https://example.com/research?q=1&r=2" in targets and "https://example.com/wire.png" in targets
    assert not any("javascript" in t for t in targets)
    assert any(h.text == "research summary" and h.address == "https://example.com/research?q=1&r=2"
               for p in document.paragraphs for h in p.hyperlinks)

    # code, mermaid caption, inline formatting, hostile text as text
    code = [p for p in document.paragraphs if p.style is not None and p.style.name == "Code Block"]
    assert code[0].text.startswith("def total(cart):\n    return sum(")
    assert "graph TD; Cart-->Pay; Pay-->Done" in [p.text for p in code]
    assert "Mermaid diagram (source)" in texts
    assert any("Hostile text: #read(\"/etc/passwd\") and <script>alert(1)</script>" in t for t in texts)
    owner = next(p for p in document.paragraphs if p.text.startswith("Owner:"))
    assert [r.text for r in owner.runs if r.bold] == ["Dana Müller"]
    assert any(r.style is not None and r.style.name == "Inline Code" and r.text == "checkout_v2" for r in owner.runs)
    assert any(r.font.strike and r.text == "deprecated" for r in owner.runs)

    props = document.core_properties
    assert (props.title, props.author, props.version, props.identifier) == (
        "Checkout redesign", "Dana Müller, Kenji Sato", "v1.4.0", "prd_01HXCHECKOUT")
    assert "v1.4.0" in props.subject and "prd_01HXCHECKOUT" in props.comments
    assert props.created is not None and props.created.date().isoformat() == "2024-05-01"
    assert any("Mermaid" in w for w in result.warnings) and not any("CJK" in w for w in result.warnings)


def test_pdf_export(rendered: dict[str, Rendered]) -> None:
    result = rendered["pdf"]
    assert (result.content_type, result.extension) == ("application/pdf", "pdf")
    assert pdf_outline(result.data) == HEADINGS
    reader = pypdf.PdfReader(io.BytesIO(result.data))
    title_page = _squash(reader.pages[0].extract_text())
    for text in ("Checkout redesign", "Version v1.4.0", "2024-05-01", "Dana Müller, Kenji Sato", "prd_01HXCHECKOUT"):
        assert text in title_page
    assert reader.metadata is not None and reader.metadata.title == "Checkout redesign"
    assert reader.metadata.author == "Dana Müller, Kenji Sato"
    body = _squash(pdf_text(result.data))
    position = body.index("Owner:") - len("Checkout redesign") - 2  # after the title page
    for _, title in HEADINGS:  # each heading after the one before it
        position = body.index(title, position + 1)
    for text in ('#read("/etc/passwd")', "<script>alert(1)</script>", "Müller — naïve café",
                 "Mermaid diagram (source)", "[Image: Wireframe of the pay step]", "Conversion +5% Dana",
                 "1. Cut abandonment by a fifth", "1. Design review", "2. Security review",
                 "return sum(item.price for item in cart) # *not* emphasis"):
        assert text in body, text
    assert "research summary" in body and "[bad](javascript:alert(1))" in body
    links = [a["/A"]["/URI"] for page in reader.pages for a in (page.get("/Annots") or [])
             if a.get_object().get("/A", {}).get("/URI")]
    assert "https://example.com/research?q=1&r=2" in links
    assert any("CJK" in w and "中" in w for w in result.warnings)
    assert any("Mermaid" in w for w in result.warnings)


def test_markdown_export_is_the_prd_under_a_header(rendered: dict[str, Rendered]) -> None:
    result = rendered["markdown"]
    assert (result.content_type, result.extension, result.warnings) == ("text/markdown; charset=utf-8", "md", [])
    text = result.data.decode("utf-8")
    header, body = text.split("\n\n", 1)
    assert body == PRD
    assert header == ("> **Checkout redesign**\n>\n"
                      "> Version v1.4.0 · 2024-05-01 · Authors: Dana Müller, Kenji Sato · PRD prd\\_01HXCHECKOUT")
    hostile = ExportMeta("*Big* <b>launch</b> [x](y)", "v2.0.0", "not a date", [], "p")
    crlf = render("# A\r\n\r\nb\r\n", "markdown", meta=hostile).data.decode()
    assert crlf.startswith("> **\\*Big\\* \\<b\\>launch\\</b\\> \\[x\\](y)**\r\n>\r\n")
    assert "Version v2.0.0 · not a date · PRD p" in crlf
    assert crlf.endswith("\r\n\r\n# A\r\n\r\nb\r\n")
    assert escape_markdown("a*b_c`d\ne") == "a\\*b\\_c\\`d e"


# --- edges ---------------------------------------------------------------------------------------

def test_unknown_format_and_oversized_input_are_refused() -> None:
    with pytest.raises(BadRequest) as refused:
        render("# x", "rtf", meta=META)
    assert refused.value.code == "unsupported_format"
    with pytest.raises(PayloadTooLarge):
        render("x" * (2 * 1024 * 1024 + 1), "html", meta=META)


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_prd_gives_a_title_page_only(fmt: str) -> None:
    result = render("", fmt, meta=ExportMeta("Empty", "0.1.0", "2024-01-02", [], "prd_e"))
    assert result.data and result.warnings == []
    if fmt == "pdf":
        assert "Empty" in pdf_text(result.data) and pdf_outline(result.data) == []


@pytest.mark.parametrize("fmt", ["html", "docx", "pdf"])
def test_pathological_input_does_not_crash(fmt: str) -> None:
    prd = ("*a " * 3000 + "x" + " b*" * 3000 + "\n\n" + "> " * 60 + "deep\n\n" + "- " * 30 + "list\n\n"
           + "ctl\x01\x07\x1b char \ud800 \ufffe\n\n| a |\n|---|\n| 1 | 2 | 3 |\n\n1. \n2. ```\n")
    result = render(prd, fmt, meta=META)
    assert result.data
    assert any("control characters were replaced" in w for w in result.warnings)
    assert MAX_INLINE_DEPTH < 3000
    assert not any("levels deep" in w for w in result.warnings)
    if fmt == "pdf":
        assert "deep" in pdf_text(result.data) and "list" in pdf_text(result.data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_control_characters_in_the_meta_are_replaced(fmt: str) -> None:
    meta = ExportMeta("Ti\x00tle\x1b", "1.0.0\x07", "2024-01-01", ["A\x0bB"], "p\x01")
    result = render("# H\n", fmt, meta=meta)
    assert result.data
    if fmt == "docx":
        assert docx.Document(io.BytesIO(result.data)).core_properties.title == "Ti\ufffdtle\ufffd"


@pytest.mark.parametrize("fmt", FORMATS)
def test_character_references_to_control_characters_are_replaced_after_parsing(fmt: str) -> None:
    """markdown-it decodes ``&#12;`` after the text was cleaned: Word used to refuse the form feed."""
    result = render("# H\n\nA &#12; b `&#12;` [l&#27;](https://example.com/&#12;)\n", fmt, meta=META)
    if fmt == "docx":
        text = "\n".join(p.text for p in docx.Document(io.BytesIO(result.data)).paragraphs)
        assert "\x0c" not in text and "A \ufffd b" in text
    if fmt != "markdown":  # the Markdown export is the PRD verbatim: the reference stays a reference
        assert any("replaced by U+FFFD" in w for w in result.warnings), result.warnings


def test_content_beyond_the_nesting_limit_is_reported() -> None:
    """markdown-it drops what lies deeper than maxNesting and the rest of its container: say so."""
    prd = "- " * 40 + "lost\n\n- after\n"
    parsed = parse(prd)
    assert parsed.truncated and "lost" not in str(parsed.root)
    for fmt in ("html", "docx", "pdf"):
        assert any("64 levels deep" in w for w in render(prd, fmt, meta=META).warnings)
    assert not parse("- " * 20 + "fine\n").truncated


def test_relative_and_unsafe_links_become_plain_text() -> None:
    prd = ("[rel](./other.md) [anchor](#goals) [mail](mailto:a@example.com) [js](javascript:alert(1)) "
           "[data](data:text/html,x) [file](file:///etc/passwd) <https://example.com/ok>\n\n## Goals\n")
    page = render(prd, "html", meta=META).data.decode()
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs == ["#goals", "mailto:a@example.com", "https://example.com/ok"]
    assert 'id="goals"' in page
    document = docx.Document(io.BytesIO(render(prd, "docx", meta=META).data))
    targets = sorted(rel.target_ref for rel in document.part.rels.values() if rel.is_external)
    assert targets == ["https://example.com/ok", "mailto:a@example.com"]


def test_h2_page_breaks_option() -> None:
    prd = "# T\n\nintro\n\n## One\n\ntext\n\n## Two\n\ntext\n"
    pdf = render(prd, "pdf", meta=META, h2_page_breaks=True).data
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    pages: list[int] = []

    def walk(items: list[Any]) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
            else:
                pages.append(reader.get_destination_page_number(item))

    walk(reader.outline)
    assert len(pages) == 3 and pages[1] != pages[0] and pages[2] != pages[1]
    document = docx.Document(io.BytesIO(render(prd, "docx", meta=META, h2_page_breaks=True).data))
    assert all(p.paragraph_format.page_break_before for p in document.paragraphs
               if p.style is not None and p.style.name == "Heading 2")
    assert 'class="h2-page-breaks"' in render(prd, "html", meta=META, h2_page_breaks=True).data.decode()


def test_suggested_filename() -> None:
    pdf = Rendered(b"", "application/pdf", "pdf")
    assert suggested_filename(META, pdf) == "checkout-redesign-v1.4.0.pdf"
    assert suggested_filename(ExportMeta("Café / 中文 ../x", "2", "", [], "p"), pdf) == "cafe-x-v2.pdf"
    assert suggested_filename(ExportMeta("中文", "", "", [], "p"), pdf) == "prd.pdf"


def test_parse_counts_what_formats_cannot_show() -> None:
    parsed = parse("```mermaid\na\n```\n\n![x](a.png) ![y *z*](b.png)\n\n> ```mermaid\n> b\n> ```\n")
    assert (parsed.mermaid_blocks, parsed.images) == (2, 2)


@pytest.mark.slow
def test_a_200_section_prd_renders_in_every_format() -> None:
    parts = ["# Big PRD\n"]
    for n in range(200):
        parts.append(f"\n## Section {n}\n\nParagraph {n} with *emphasis*, `code` and a [link](https://example.com/{n}).\n"
                     f"\n1. first {n}\n2. second {n}\n\n- bullet {n}\n  - nested {n}\n"
                     f"\n| k | v |\n|---|---|\n| row {n} | {n} |\n\n```\ncode {n}\n```\n")
    prd = "".join(parts)
    for fmt in FORMATS:
        result = render(prd, fmt, meta=META)
        if fmt == "pdf":
            outline = pdf_outline(result.data)
            assert len(outline) == 201 and outline[-1] == (2, "Section 199")
        elif fmt == "docx":
            document = docx.Document(io.BytesIO(result.data))
            assert sum(1 for p in document.paragraphs if p.style is not None and p.style.name == "Heading 2") == 200
            numbered = _list_paragraphs(document)
            assert len({n for _, n, lvl in numbered if lvl == 0}) == 400  # a counter per list
            assert len(document.tables) == 200
        elif fmt == "html":
            assert result.data.decode().count("<h2 ") == 200
        else:
            assert result.data.decode().endswith(prd)


def test_typst_compile_takes_bytes_not_text() -> None:
    """DESIGN §4: a str is a file path. compile_pdf encodes; a str would fail to find the 'file'."""
    with tempfile.TemporaryDirectory() as empty, pytest.raises(Exception):  # noqa: B017
        typst.compile("= Heading", root=empty, ignore_system_fonts=True)
