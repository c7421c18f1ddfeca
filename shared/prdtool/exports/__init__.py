"""Exports of a PRD (issue #16): Markdown, HTML, Word and PDF from one Markdown parse.

``render(markdown, fmt, meta=ExportMeta(...))`` returns a :class:`Rendered` (bytes, MIME type,
extension, warnings). Pure Python and no AWS; python-docx and typst are imported only by the format
that needs them (they live in the "documents" layer, DESIGN §4).
"""

from prdtool.exports.model import ExportMeta, Rendered
from prdtool.exports.render import FORMATS, MAX_MARKDOWN_CHARS, ExportFailed, render, suggested_filename

__all__ = ["FORMATS", "MAX_MARKDOWN_CHARS", "ExportFailed", "ExportMeta", "Rendered", "render", "suggested_filename"]
