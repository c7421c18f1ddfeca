"""HTML export: one standalone, script-free document with an embedded print stylesheet.

Everything from the PRD is escaped text: the parser runs with raw HTML off, this writer emits only
the tags it knows, links are limited to http/https/mailto and in-document ``#anchors``, images are
placeholders (never ``<img>``: an export loads nothing), and a ``Content-Security-Policy`` meta tag
forbids scripts and every external resource should anything slip through.
"""

from __future__ import annotations

import html
import unicodedata
from importlib import resources

from prdtool.exports.model import (
    MERMAID_CAPTION,
    ExportMeta,
    Node,
    code_language,
    image_label,
    is_mermaid,
    plain_text,
    safe_href,
    table_rows,
)

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def stylesheet() -> str:
    return (resources.files("prdtool.exports") / "print.css").read_text(encoding="utf-8")


def slugify(text: str) -> str:
    """GitHub-style anchor: lower case, punctuation dropped, spaces to hyphens (letters of any script stay)."""
    kept = [ch for ch in unicodedata.normalize("NFC", text.strip().lower())
            if ch in " -_" or unicodedata.category(ch)[0] in "LNM"]
    return "".join(kept).replace(" ", "-") or "section"


class _Writer:
    def __init__(self) -> None:
        self.slugs: dict[str, int] = {}

    def anchor(self, text: str) -> str:
        base = slugify(text)
        count = self.slugs.get(base, 0)
        self.slugs[base] = count + 1
        return base if count == 0 else f"{base}-{count}"

    def blocks(self, nodes: list[Node], *, tight: bool = False) -> str:
        return "\n".join(self.block(n, tight=tight) for n in nodes)

    def block(self, node: Node, *, tight: bool = False) -> str:
        kind = node.type
        if kind == "paragraph":
            body = self.inline_of(node)
            return body if tight and node.hidden else f"<p>{body}</p>"
        if kind == "heading":
            tag = f"h{node.level}"
            return f'<{tag} id="{_e(self.anchor(plain_text(node)))}">{self.inline_of(node)}</{tag}>'
        if kind == "bullet_list":
            return f"<ul>\n{self.items(node)}\n</ul>"
        if kind == "ordered_list":
            start = node.attrs.get("start", 1)
            start_attr = f' start="{int(start)}"' if str(start).isdigit() and int(start) != 1 else ""
            return f"<ol{start_attr}>\n{self.items(node)}\n</ol>"
        if kind in ("fence", "code_block"):
            lang = code_language(node)
            cls = f' class="language-{_e(lang)}"' if lang else ""
            pre = f"<pre><code{cls}>{_e(node.content)}</code></pre>"
            if is_mermaid(node):
                caption = f"<figcaption>{_e(MERMAID_CAPTION)}</figcaption>"
                return f'<figure class="diagram-source">\n{caption}\n{pre}\n</figure>'
            return pre
        if kind == "blockquote":
            return f"<blockquote>\n{self.blocks(node.children)}\n</blockquote>"
        if kind == "hr":
            return "<hr>"
        if kind == "table":
            return self.table(node)
        if kind == "inline":
            return self.inline(node.children)
        return f"<p>{_e(node.content)}</p>" if node.content else self.blocks(node.children)

    def items(self, node: Node) -> str:
        tight = any(p.hidden for item in node.children for p in item.children if p.type == "paragraph")
        return "\n".join(f"<li>{self.blocks(item.children, tight=tight)}</li>" for item in node.children)

    def table(self, node: Node) -> str:
        header, body, aligns = table_rows(node)

        def cell(tag: str, c: Node, align: str) -> str:
            style = f' style="text-align: {align}"' if align else ""
            return f"<{tag}{style}>{self.inline_of(c)}</{tag}>"

        head = "".join(cell("th", c, a) for c, a in zip(header, aligns, strict=True))
        rows = "\n".join("<tr>" + "".join(cell("td", c, a) for c, a in zip(r, aligns, strict=True)) + "</tr>"
                         for r in body)
        return f"<table>\n<thead>\n<tr>{head}</tr>\n</thead>\n<tbody>\n{rows}\n</tbody>\n</table>"

    def inline_of(self, node: Node) -> str:
        return "".join(self.inline(c.children) for c in node.children if c.type == "inline")

    def inline(self, nodes: list[Node]) -> str:
        out: list[str] = []
        for node in nodes:
            kind = node.type
            if kind == "text":
                out.append(_e(node.content))
            elif kind == "softbreak":
                out.append("\n")
            elif kind == "hardbreak":
                out.append("<br>\n")
            elif kind == "code_inline":
                out.append(f"<code>{_e(node.content)}</code>")
            elif kind in ("em", "strong", "s"):
                tag = node.tag or {"em": "em", "strong": "strong", "s": "s"}[kind]
                out.append(f"<{tag}>{self.inline(node.children)}</{tag}>")
            elif kind == "link":
                href = safe_href(str(node.attrs.get("href", "")), allow_fragment=True)
                body = self.inline(node.children)
                title = str(node.attrs.get("title", ""))
                title_attr = f' title="{_e(title)}"' if title else ""
                out.append(f'<a href="{_e(href)}"{title_attr}>{body}</a>' if href else body)
            elif kind == "image":
                label = f'<span class="image-placeholder">{_e(image_label(node))}</span>'
                href = safe_href(str(node.attrs.get("src", "")))
                out.append(f'<a href="{_e(href)}">{label}</a>' if href else label)
            else:
                out.append(_e(node.content) + self.inline(node.children))
        return "".join(out)


def to_html(root: Node, meta: ExportMeta, *, h2_page_breaks: bool = False) -> str:
    """A complete HTML5 document: title block, then the PRD."""
    body_class = ' class="h2-page-breaks"' if h2_page_breaks else ""
    authors = meta.authors_label
    rows = [("Date", meta.date_label), ("Authors", authors or "—"), ("PRD", meta.prd_id)]
    meta_tags = [
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="PRD Tool">',
    ]
    if authors:
        meta_tags.append(f'<meta name="author" content="{_e(authors)}">')
    if meta.parsed_date:
        meta_tags.append(f'<meta name="dcterms.date" content="{_e(meta.date_label)}">')
    parts = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        *meta_tags,
        f"<title>{_e(meta.title)} {_e(meta.version_label)}</title>",
        f"<style>\n{stylesheet()}</style>",
        "</head>",
        f"<body{body_class}>",
        '<header class="title-block">',
        f'<p class="doc-title">{_e(meta.title)}</p>',
        f'<p class="doc-version">Version {_e(meta.version_label)}</p>',
        "<dl>",
        *(f"<dt>{label}</dt><dd>{_e(value)}</dd>" for label, value in rows),
        "</dl>",
        "</header>",
        "<main>",
        _Writer().blocks(root.children),
        "</main>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)
