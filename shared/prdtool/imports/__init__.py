"""Import of Word, PDF, Markdown and HTML documents into a PRD (issue #16): the pure-Python core.

- :func:`detect` (``sniff``): what the bytes are, by content; 415/422 for what cannot be imported.
- :func:`extract` (``extract``): the document as Markdown with a title and a fidelity report, every
  parser bounded in memory and time by :class:`Limits`.
- :func:`map_sections` (``mapping``): which headings are which standard PRD sections, what is missing,
  and the import report the API returns (DESIGN §3.3).

Heavy third-party libraries (mammoth, pdfplumber, pypdf, nh3, markdownify: the "documents" layer)
are imported lazily, inside the functions that need them.
"""

from .extract import Extracted, Fidelity, Limits, extract
from .mapping import MappingReport, SectionMatch, map_sections
from .sniff import Kind, UnsupportedMediaType, detect, identify

__all__ = [
    "Extracted",
    "Fidelity",
    "Kind",
    "Limits",
    "MappingReport",
    "SectionMatch",
    "UnsupportedMediaType",
    "detect",
    "extract",
    "identify",
    "map_sections",
]
