"""Word export with python-docx: real styles, real numbering, real hyperlinks.

* Headings use the built-in ``Heading 1`` to ``Heading 6`` styles (outline levels: Word's navigation
  pane and table of contents work).
* Lists: python-docx's ``List Number`` style shares one counter across the whole document, so this
  writer adds two multi-level abstract numbering definitions of its own (decimal and bullet, nine
  levels) and gives **every list its own** ``w:num`` with a ``startOverride`` (the Markdown list's
  start, usually 1) on the level it uses. Nested lists are the next level (``w:ilvl``), up to 9.
* Tables get ``Table Grid`` with a bold, shaded header row that repeats on every page.
* Code: a ``Code Block`` paragraph style and an ``Inline Code`` character style (Consolas).
* Links: a ``w:hyperlink`` with an external relationship (python-docx can read these but not add them).
* Core properties carry title, authors, version, PRD id and date.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time
from typing import Any

import docx
from docx.enum.section import WD_SECTION_START
from docx.enum.style import WD_STYLE_TYPE
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.opc.constants import RELATIONSHIP_TYPE
from docx.oxml import OxmlElement, parse_xml
from docx.oxml.ns import nsdecls, qn
from docx.oxml.numbering import CT_Num
from docx.oxml.table import CT_Tbl
from docx.shared import Mm, Pt, RGBColor, Twips
from docx.table import Table
from docx.text.paragraph import Paragraph
from docx.text.run import Run

from prdtool.exports.model import (
    MERMAID_CAPTION,
    ExportMeta,
    Node,
    image_label,
    is_mermaid,
    safe_href,
    table_rows,
)

MONO = "Consolas"
_BULLETS = ("\u2022", "\u25e6", "\u25aa")  # • ◦ ▪
_INDENT_STEP = 720  # twips per list level (0.5 inch)
_MAX_LEVEL = 8  # Word supports ilvl 0 to 8


@dataclass(frozen=True)
class _Fmt:
    bold: bool = False
    italic: bool = False
    strike: bool = False


@dataclass(frozen=True)
class _Ctx:
    list_level: int = -1  # -1: not in a list
    quote: int = 0  # blockquote depth


class _Writer:
    def __init__(self, doc: Any, *, h2_page_breaks: bool = False) -> None:
        self.doc = doc
        self.h2_page_breaks = h2_page_breaks
        # Appending through python-docx looks for w:sectPr among all body children on every call
        # (quadratic): insert before the body's final sectPr directly.
        self.body = doc._body
        self.end = doc.element.body.find(qn("w:sectPr"))
        self.width = doc._block_width
        styles = doc.styles
        names = {s.name for s in styles}
        if "Code Block" not in names:
            code = styles.add_style("Code Block", WD_STYLE_TYPE.PARAGRAPH)
            code.base_style = styles["Normal"]
            code.font.name = MONO
            code.font.size = Pt(9)
            fmt = code.paragraph_format
            fmt.space_before, fmt.space_after, fmt.line_spacing = Pt(2), Pt(8), 1.0
            self._shade(code.element.get_or_add_pPr(), "F6F8FA")
        if "Inline Code" not in names:
            inline = styles.add_style("Inline Code", WD_STYLE_TYPE.CHARACTER)
            inline.font.name = MONO
            inline.font.size = Pt(9.5)
        if "Hyperlink" not in names:
            link = styles.add_style("Hyperlink", WD_STYLE_TYPE.CHARACTER)
            link.font.color.rgb = RGBColor(0x05, 0x63, 0xC1)
            link.font.underline = True
        # python-docx resolves a style *name* by scanning every style for the default one on each
        # call (quadratic on a long PRD): resolve the ids once and write them directly.
        self.style_ids = {
            name: styles[name].style_id
            for name in ("Quote", "Caption", "Code Block", "Inline Code", "Hyperlink", "List Paragraph",
                         "Table Grid", *(f"Heading {n}" for n in range(1, 7)))
        }
        self.numbering = doc.part.numbering_part.element
        self.abstract = {True: self._add_abstract(ordered=True), False: self._add_abstract(ordered=False)}
        # CT_Numbering.add_num looks for the first free id with an XPath per call: count here instead.
        self.next_num_id = 1 + max((int(n) for n in self.numbering.xpath("./w:num/@w:numId")), default=0)

    # --- numbering --------------------------------------------------------------------------------

    def _add_abstract(self, *, ordered: bool) -> int:
        existing = self.numbering.findall(qn("w:abstractNum"))
        abstract_id = 1 + max((int(a.get(qn("w:abstractNumId"))) for a in existing), default=-1)
        levels = []
        for level in range(_MAX_LEVEL + 1):
            fmt, text = ("decimal", f"%{level + 1}.") if ordered else ("bullet", _BULLETS[level % 3])
            left = _INDENT_STEP * (level + 1)
            levels.append(
                f'<w:lvl w:ilvl="{level}"><w:start w:val="1"/><w:numFmt w:val="{fmt}"/>'
                f'<w:lvlText w:val="{text}"/><w:lvlJc w:val="left"/>'
                f'<w:pPr><w:ind w:left="{left}" w:hanging="360"/></w:pPr></w:lvl>'
            )
        element = parse_xml(
            f'<w:abstractNum {nsdecls("w")} w:abstractNumId="{abstract_id}">'
            f'<w:multiLevelType w:val="multilevel"/>{"".join(levels)}</w:abstractNum>'
        )
        # The schema wants every w:abstractNum before the first w:num (Word calls the file corrupt
        # otherwise), so never append at the end.
        if existing:
            existing[-1].addnext(element)
        else:
            self.numbering.insert(0, element)
        return abstract_id

    def new_list(self, *, ordered: bool, level: int, start: int) -> int:
        """A fresh ``w:num`` for one list: its own counter, starting at ``start`` on ``level``."""
        num_id, self.next_num_id = self.next_num_id, self.next_num_id + 1
        num = CT_Num.new(num_id, self.abstract[ordered])
        num.add_lvlOverride(ilvl=level).add_startOverride(start)
        self.numbering._insert_num(num)
        return num_id

    @staticmethod
    def number(paragraph: Any, num_id: int, level: int) -> None:
        num_pr = paragraph._p.get_or_add_pPr().get_or_add_numPr()
        num_pr.get_or_add_ilvl().val = level
        num_pr.get_or_add_numId().val = num_id

    # --- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _shade(parent: Any, fill: str) -> None:
        shd = OxmlElement("w:shd")
        shd.set(qn("w:val"), "clear")
        shd.set(qn("w:color"), "auto")
        shd.set(qn("w:fill"), fill)
        if parent.tag == qn("w:pPr"):
            parent.insert_element_before(shd, *_PPR_AFTER_SHD)
        else:
            parent.append(shd)

    def paragraph(self, style: str | None, ctx: _Ctx) -> Any:
        element = OxmlElement("w:p")
        self.end.addprevious(element)
        paragraph = Paragraph(element, self.body)
        if style is not None:
            paragraph._p.get_or_add_pPr().style = self.style_ids[style]
        if ctx.quote and style != "List Paragraph":  # numbering brings its own indentation
            paragraph.paragraph_format.left_indent = Twips(_INDENT_STEP * ctx.quote)
        return paragraph

    def indent_for(self, paragraph: Any, ctx: _Ctx) -> None:
        if ctx.list_level >= 0:
            paragraph.paragraph_format.left_indent = Twips(_INDENT_STEP * (ctx.list_level + 1))

    # --- blocks -----------------------------------------------------------------------------------

    def blocks(self, nodes: list[Node], ctx: _Ctx) -> None:
        for node in nodes:
            self.block(node, ctx)

    def block(self, node: Node, ctx: _Ctx) -> None:
        kind = node.type
        if kind == "paragraph":
            p = self.paragraph("Quote" if ctx.quote else None, ctx)
            self.indent_for(p, ctx)
            self.inline_of(p, node)
        elif kind == "heading":
            p = self.paragraph(f"Heading {node.level}", ctx)
            if node.level == 2 and self.h2_page_breaks:
                p.paragraph_format.page_break_before = True
            self.inline_of(p, node)
        elif kind in ("bullet_list", "ordered_list"):
            self.list_block(node, ctx)
        elif kind in ("fence", "code_block"):
            if is_mermaid(node):
                caption = self.paragraph("Caption", ctx)
                self.indent_for(caption, ctx)
                caption.add_run(MERMAID_CAPTION)
            p = self.paragraph("Code Block", ctx)
            self.indent_for(p, ctx)
            p.add_run(node.content.removesuffix("\n"))  # \n → w:br, \t → w:tab
        elif kind == "blockquote":
            self.blocks(node.children, replace(ctx, quote=ctx.quote + 1))
        elif kind == "hr":
            self.rule(self.paragraph(None, ctx))
        elif kind == "table":
            self.table(node)
        elif kind == "inline":
            self.inline(self.paragraph(None, ctx), node.children, _Fmt())
        elif node.content:
            self.paragraph(None, ctx).add_run(node.content)
        else:
            self.blocks(node.children, ctx)

    def list_block(self, node: Node, ctx: _Ctx) -> None:
        level = min(ctx.list_level + 1, _MAX_LEVEL)
        ordered = node.type == "ordered_list"
        start = node.attrs.get("start", 1)
        num_id = self.new_list(ordered=ordered, level=level, start=int(start) if str(start).isdigit() else 1)
        inner = replace(ctx, list_level=level)
        for item in node.children:
            numbered = False
            for child in item.children:
                if child.type == "paragraph" and not numbered:
                    p = self.paragraph("List Paragraph", ctx)
                    self.number(p, num_id, level)
                    self.inline_of(p, child)
                    numbered = True
                    continue
                if not numbered:  # an item that starts with a code block, a list, or nothing
                    self.number(self.paragraph("List Paragraph", ctx), num_id, level)
                    numbered = True
                if child.type == "paragraph":
                    p = self.paragraph("List Paragraph", ctx)
                    self.indent_for(p, inner)
                    self.inline_of(p, child)
                else:
                    self.block(child, inner)
            if not numbered:
                self.number(self.paragraph("List Paragraph", ctx), num_id, level)

    def table(self, node: Node) -> None:
        header, body, aligns = table_rows(node)
        if not header:
            return
        element = CT_Tbl.new_tbl(1 + len(body), len(header), self.width)
        self.end.addprevious(element)
        table = Table(element, self.body)
        table._tbl.tblPr.style = self.style_ids["Table Grid"]
        align_map = {"left": WD_ALIGN_PARAGRAPH.LEFT, "center": WD_ALIGN_PARAGRAPH.CENTER,
                     "right": WD_ALIGN_PARAGRAPH.RIGHT}
        for index, (row, cells) in enumerate(zip(table.rows, [header, *body], strict=True)):
            if index == 0:
                row._tr.get_or_add_trPr().append(OxmlElement("w:tblHeader"))  # repeats on each page
            for cell, source, align in zip(row.cells, cells, aligns, strict=True):
                p = cell.paragraphs[0]
                if align:
                    p.alignment = align_map[align]
                if index == 0:
                    self._shade(cell._tc.get_or_add_tcPr(), "EEF1F4")
                for child in source.children:
                    if child.type == "inline":
                        self.inline(p, child.children, _Fmt(bold=index == 0))
        # a paragraph after a table keeps two adjacent tables apart and gives the next block room
        self.paragraph(None, _Ctx())

    @staticmethod
    def rule(paragraph: Any) -> None:
        border = parse_xml(
            f'<w:pBdr {nsdecls("w")}><w:bottom w:val="single" w:sz="6" w:space="1" w:color="A0A0A0"/></w:pBdr>'
        )
        paragraph._p.get_or_add_pPr().insert_element_before(border, "w:shd", *_PPR_AFTER_SHD)

    # --- inline -----------------------------------------------------------------------------------

    def inline_of(self, paragraph: Any, node: Node) -> None:
        for child in node.children:
            if child.type == "inline":
                self.inline(paragraph, child.children, _Fmt())

    def inline(self, paragraph: Any, nodes: list[Node], fmt: _Fmt, link: Any = None) -> None:
        for node in nodes:
            kind = node.type
            if kind == "text":
                self.run(paragraph, node.content, fmt, link)
            elif kind == "softbreak":
                self.run(paragraph, " ", fmt, link)
            elif kind == "hardbreak":
                self.run(paragraph, "", fmt, link).add_break()
            elif kind == "code_inline":
                self.run(paragraph, node.content, fmt, link, code=True)
            elif kind == "em":
                self.inline(paragraph, node.children, replace(fmt, italic=True), link)
            elif kind == "strong":
                self.inline(paragraph, node.children, replace(fmt, bold=True), link)
            elif kind == "s":
                self.inline(paragraph, node.children, replace(fmt, strike=True), link)
            elif kind == "link":
                href = None if link is not None else safe_href(str(node.attrs.get("href", "")))
                target = self.hyperlink(paragraph, href) if href else link
                self.inline(paragraph, node.children, fmt, target)
            elif kind == "image":
                href = None if link is not None else safe_href(str(node.attrs.get("src", "")))
                target = self.hyperlink(paragraph, href) if href else link
                self.run(paragraph, image_label(node), replace(fmt, italic=True), target)
            else:
                self.run(paragraph, node.content, fmt, link)
                self.inline(paragraph, node.children, fmt, link)

    @staticmethod
    def hyperlink(paragraph: Any, url: str) -> Any:
        rel_id = paragraph.part.relate_to(url, RELATIONSHIP_TYPE.HYPERLINK, is_external=True)
        element = OxmlElement("w:hyperlink")
        element.set(qn("r:id"), rel_id)
        element.set(qn("w:history"), "1")
        paragraph._p.append(element)
        return element

    def run(self, paragraph: Any, text: str, fmt: _Fmt, link: Any, *, code: bool = False) -> Any:
        element = OxmlElement("w:r")
        (link if link is not None else paragraph._p).append(element)
        run = Run(element, paragraph)
        if link is not None:
            element.get_or_add_rPr().style = self.style_ids["Hyperlink"]
            if code:
                run.font.name = MONO
        elif code:
            element.get_or_add_rPr().style = self.style_ids["Inline Code"]
        if fmt.bold:
            run.bold = True
        if fmt.italic:
            run.italic = True
        if fmt.strike:
            run.font.strike = True
        if text:
            run.text = text
        return run


_PPR_AFTER_SHD = (
    "w:tabs", "w:suppressAutoHyphens", "w:kinsoku", "w:wordWrap", "w:overflowPunct", "w:topLinePunct",
    "w:autoSpaceDE", "w:autoSpaceDN", "w:bidi", "w:adjustRightInd", "w:snapToGrid", "w:spacing", "w:ind",
    "w:contextualSpacing", "w:mirrorIndents", "w:suppressOverlap", "w:jc", "w:textDirection",
    "w:textAlignment", "w:textboxTightWrap", "w:outlineLvl", "w:divId", "w:cnfStyle", "w:rPr",
    "w:sectPr", "w:pPrChange",
)


def _title_page(doc: Any, meta: ExportMeta) -> None:
    section = doc.sections[0]
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.left_margin = section.right_margin = Mm(22)
    section.top_margin, section.bottom_margin = Mm(24), Mm(24)
    section.start_type = WD_SECTION_START.NEW_PAGE
    section.different_first_page_header_footer = True  # no footer on the title page

    for _ in range(6):
        doc.add_paragraph()
    doc.add_paragraph(meta.title, style="Title")
    doc.add_paragraph(f"Version {meta.version_label}", style="Subtitle")
    for label, value in (("Date", meta.date_label), ("Authors", meta.authors_label or "—"), ("PRD", meta.prd_id)):
        p = doc.add_paragraph()
        p.paragraph_format.space_after = Pt(2)
        label_run = p.add_run(f"{label}: ")
        label_run.bold = True
        p.add_run(value)
    doc.add_page_break()

    footer = section.footer.paragraphs[0]
    footer.add_run(f"{meta.title} · {meta.version_label}\t\t")
    field = OxmlElement("w:fldSimple")
    field.set(qn("w:instr"), "PAGE")
    run = OxmlElement("w:r")
    text = OxmlElement("w:t")
    text.text = "1"
    run.append(text)
    field.append(run)
    footer._p.append(field)


def _properties(doc: Any, meta: ExportMeta) -> None:
    props = doc.core_properties
    props.title = meta.title[:255]
    props.author = meta.authors_label[:255]
    props.last_modified_by = (meta.authors[0].strip() if meta.authors else "")[:255]
    props.subject = f"Version {meta.version_label}"[:255]
    props.version = meta.version_label[:255]
    props.identifier = meta.prd_id[:255]
    props.keywords = "PRD"
    props.category = "Product requirements document"
    props.comments = f"PRD {meta.prd_id}, version {meta.version_label}, {meta.date_label}. Exported by PRD Tool."
    props.revision = 1
    parsed = meta.parsed_date
    stamp = datetime.combine(parsed, time(0, 0), tzinfo=UTC) if parsed else datetime.now(UTC)
    props.created = props.modified = stamp


def to_docx(root: Node, meta: ExportMeta, *, h2_page_breaks: bool = False) -> bytes:
    doc = docx.Document()
    _properties(doc, meta)
    _title_page(doc, meta)
    _Writer(doc, h2_page_breaks=h2_page_breaks).blocks(root.children, _Ctx())
    buffer = io.BytesIO()
    doc.save(buffer)
    return buffer.getvalue()
