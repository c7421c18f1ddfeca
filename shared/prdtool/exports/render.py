"""``render(markdown, fmt, meta=…)``: a PRD as Markdown, HTML, Word or PDF bytes (issue #16).

Pure Python, no AWS: the export worker calls this and stores the bytes. One markdown-it-py parse
(:func:`prdtool.exports.model.parse`) feeds the HTML, Word and PDF writers, so all three agree on
what is a heading, a list, a table or a code block. What a format cannot carry is reported in
``Rendered.warnings`` (sentences meant for the person exporting), never silently dropped.

Markdown export: the PRD **verbatim** under a short header block quote (title, version, date,
authors, PRD id; the meta values are backslash-escaped so they cannot become Markdown). No YAML
front matter: many viewers show it as a table or a stray rule, and the PRD text stays exactly what
the editor holds (raw HTML included, as in any Markdown file: whoever renders it sanitises it).
"""

from __future__ import annotations

import re
import unicodedata

from prdtool.errors import BadRequest, PayloadTooLarge
from prdtool.exports.model import ExportMeta, Rendered, clean_meta, cleaning_warnings, common_warnings, parse

FORMATS = ("markdown", "html", "docx", "pdf")
CONTENT_TYPES = {
    "markdown": ("text/markdown; charset=utf-8", "md"),
    "html": ("text/html; charset=utf-8", "html"),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
    "pdf": ("application/pdf", "pdf"),
}
MAX_MARKDOWN_CHARS = 2 * 1024 * 1024  # the API's body limit; 1 MiB parses in about 2 s (DESIGN §4)


class ExportFailed(RuntimeError):
    """The renderer itself failed (a bug, not the PRD's fault: user text cannot break the markup)."""


def render(markdown: str, fmt: str, *, meta: ExportMeta, h2_page_breaks: bool = False) -> Rendered:
    """Render ``markdown`` as ``fmt`` (``markdown``, ``html``, ``docx`` or ``pdf``).

    ``h2_page_breaks`` starts every level-2 section on a new page (HTML when printed, Word, PDF).
    Raises :class:`~prdtool.errors.BadRequest` for an unknown format,
    :class:`~prdtool.errors.PayloadTooLarge` beyond :data:`MAX_MARKDOWN_CHARS`, and
    :class:`ExportFailed` if Typst rejects the generated markup.
    """
    if fmt not in CONTENT_TYPES:
        raise BadRequest(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}", code="unsupported_format")
    if len(markdown) > MAX_MARKDOWN_CHARS:
        raise PayloadTooLarge(f"The PRD is too large to export ({len(markdown)} characters)")
    content_type, extension = CONTENT_TYPES[fmt]
    meta = clean_meta(meta)
    if fmt == "markdown":
        return Rendered(markdown_export(markdown, meta).encode("utf-8"), content_type, extension, [])

    parsed = parse(markdown)
    warnings = common_warnings(parsed) + cleaning_warnings(parsed)
    if fmt == "html":
        from prdtool.exports.html_writer import to_html

        data = to_html(parsed.root, meta, h2_page_breaks=h2_page_breaks).encode("utf-8")
    elif fmt == "docx":
        from prdtool.exports.docx_writer import to_docx

        data = to_docx(parsed.root, meta, h2_page_breaks=h2_page_breaks)
    else:
        from prdtool.exports.typst_markup import compile_pdf, glyph_warnings, to_typst

        markup = to_typst(parsed.root, meta, h2_page_breaks=h2_page_breaks)
        try:
            data, typst_warnings = compile_pdf(markup)
        except Exception as error:  # typst.TypstError; never expected, since all user text is escaped
            raise ExportFailed(f"PDF rendering failed: {getattr(error, 'message', error)}") from error
        warnings += glyph_warnings([markdown, meta.title, meta.authors_label, meta.prd_id])
        warnings += [f"PDF renderer: {w}" for w in typst_warnings]
    return Rendered(data, content_type, extension, warnings)


_MD_INLINE = re.compile(r"([\\`*_\[\]<>&~|$])")  # what can start inline Markdown mid-line


def escape_markdown(text: str) -> str:
    """``text`` as literal Markdown inline text in the middle of a line (the characters that open
    inline syntax backslash-escaped, line ends as spaces)."""
    return _MD_INLINE.sub(r"\\\1", " ".join(text.split()))


def markdown_export(markdown: str, meta: ExportMeta) -> str:
    """The PRD as is, under a header block quote; line endings follow the PRD's."""
    first_line = markdown.split("\n", 1)
    newline = "\r\n" if len(first_line) == 2 and first_line[0].endswith("\r") else "\n"
    details = [f"Version {meta.version_label}", meta.date_label]
    if meta.authors_label:
        details.append(f"Authors: {meta.authors_label}")
    details.append(f"PRD {meta.prd_id}")
    header = [
        f"> **{escape_markdown(meta.title)}**",
        ">",
        "> " + " · ".join(escape_markdown(d) for d in details),
        "",
        "",
    ]
    return newline.join(header) + markdown


def suggested_filename(meta: ExportMeta, rendered: Rendered) -> str:
    """An ASCII file name for ``Content-Disposition``: ``checkout-redesign-v1.2.0.pdf``."""
    ascii_title = unicodedata.normalize("NFKD", meta.title).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9]+", "-", ascii_title).strip("-").lower()[:60].strip("-") or "prd"
    version = re.sub(r"[^A-Za-z0-9.]+", "", meta.version_label)[:20]
    return f"{stem}-{version}.{rendered.extension}" if version else f"{stem}.{rendered.extension}"
