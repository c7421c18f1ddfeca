"""What an uploaded file is, decided by its content (magic bytes), never by its name.

:func:`detect` returns one of the four importable :class:`Kind` values or raises:

- :class:`UnsupportedMediaType` (415, ``unsupported_media_type``) for anything else, naming what the
  bytes are: ``"this file is a PNG image; import takes .docx, .pdf, .md and .html files"``.
- :class:`~prdtool.errors.Unprocessable` (422) for an empty file (``import_empty``) and for a name whose
  extension contradicts the content (``import_type_mismatch``: ``"report.pdf is a Word document, not a
  PDF"``).

Decisions:

- The content decides. The name is only checked for contradictions, and only for the extensions we
  import (``.docx``/``.docm``, ``.pdf``, ``.md``/``.markdown``/``.txt``, ``.html``/``.htm``/``.xhtml``);
  any other extension, or none, is accepted as the content says.
- Markdown, plain text and HTML are one family: a ``.md`` file whose content is an HTML page (or an
  ``.html`` file that is plain Markdown) is imported as what the content is, without an error, because
  the two are routinely confused and both are text. Across families (Word / PDF / text) a
  contradiction is refused with 422, since it usually means the wrong file was picked.
- Unsupported content is 415 even when the name also lies (a PNG renamed ``.docx``).
- Word: a ZIP whose ``[Content_Types].xml`` names a WordprocessingML (or macro-enabled Word) main part;
  other ZIPs (xlsx, pptx, odt, epub, plain archives) are unsupported. Only that one member is read,
  through a capped read, so sniffing never inflates a ZIP bomb.
- PDF: ``%PDF-`` at the start, or within the first 1,024 bytes of a file that ends with ``%%EOF``.
- HTML: after an optional BOM, whitespace, an XML declaration and comments, ``<!doctype html``,
  ``<html``, ``<head`` or ``<body`` (always HTML), or another common HTML tag (``<div``, ``<p``, ``<h1``…)
  provided the text has no Markdown ATX heading lines (a README that opens with ``<p align=center>`` is
  still Markdown). Bytes that are not UTF-8 but look like HTML are decoded by their ``<meta charset>``
  (Windows-1252 when none is given, as Word's "Web page" export writes).
- Markdown / plain text: UTF-8 (BOM allowed) or UTF-16 with a BOM, no NUL, (almost) no control
  characters. Text in another encoding is unsupported (415: "save it as UTF-8").
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from enum import StrEnum

from prdtool.errors import DomainError, Unprocessable

ACCEPTED = "import takes .docx, .pdf, .md and .html files"


class UnsupportedMediaType(DomainError):
    """The file is not a document type the importer reads (HTTP 415)."""

    status, code = 415, "unsupported_media_type"


class Kind(StrEnum):
    DOCX = "docx"
    PDF = "pdf"
    HTML = "html"
    MARKDOWN = "markdown"


DESCRIPTION: dict[Kind, str] = {
    Kind.DOCX: "a Word document",
    Kind.PDF: "a PDF",
    Kind.HTML: "an HTML page",
    Kind.MARKDOWN: "a Markdown or plain-text file",
}

_FAMILY = {Kind.DOCX: "docx", Kind.PDF: "pdf", Kind.HTML: "text", Kind.MARKDOWN: "text"}

#: Extensions that make a claim about the content (checked for contradictions).
EXTENSIONS: dict[str, Kind] = {
    ".docx": Kind.DOCX, ".docm": Kind.DOCX, ".pdf": Kind.PDF,
    ".md": Kind.MARKDOWN, ".markdown": Kind.MARKDOWN, ".txt": Kind.MARKDOWN,
    ".html": Kind.HTML, ".htm": Kind.HTML, ".xhtml": Kind.HTML,
}

_ZIP_PROBE_CAP = 1 << 20  # bytes of [Content_Types].xml / mimetype read while sniffing

# Binary signatures of things people upload by mistake (checked before the text tests).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
     "an Office 97-2003 file (.doc, .xls, .ppt) or a password-protected Office document; save it as .docx "
     "without a password"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"{\\rtf", "an RTF document; save it as .docx"),
    (b"%!PS", "a PostScript file"),
    (b"\x00\x00\x01\x00", "an icon image"),
)

_HTML_STRONG = re.compile(r"<(?:!doctype\s+html|html|head|body)[\s>/]", re.IGNORECASE)
_HTML_WEAK = re.compile(
    r"<(?:meta|title|link|style|script|div|p|h[1-6]|table|ul|ol|section|article|main|header|nav|span|"
    r"br|hr|b|i|em|strong|a|img|form|center|font|blockquote|pre)[\s>/]",
    re.IGNORECASE,
)
_LEADING_JUNK = re.compile(r"\A(?:\s+|<\?xml[^>]{0,500}\?>|<!--.*?-->)*", re.DOTALL)
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)", re.MULTILINE)
_META_CHARSET = re.compile(rb"""<meta[^>]{0,500}?charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]{1,40})""", re.IGNORECASE)
_CONTROL = re.compile(r"[\x01-\x08\x0e-\x1a\x1c-\x1f\x7f]")


# ----------------------------------------------------------------------------- text decoding
def decode_text(data: bytes) -> str | None:
    """The bytes as text when they are text: UTF-8 (optional BOM) or UTF-16 with a BOM, no NUL and at
    most a few stray control characters; None for binary data or another encoding."""
    if data.startswith(codecs.BOM_UTF8):
        raw, encoding = data[3:], "utf-8"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raw, encoding = data, "utf-16"
    else:
        raw, encoding = data, "utf-8"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    controls = sum(1 for _ in _CONTROL.finditer(text[:65536]))
    if controls > max(8, min(len(text), 65536) // 1000):
        return None
    return text


def decode_html(data: bytes) -> str:
    """HTML bytes as text: UTF-8/UTF-16 when valid, else the ``<meta charset>`` (Windows-1252 when the
    page names none or an unknown one), undecodable bytes replaced."""
    text = decode_text(data)
    if text is not None:
        return text
    match = _META_CHARSET.search(data[:4096])
    encoding = "cp1252"
    if match:
        try:
            encoding = codecs.lookup(match.group(1).decode("ascii")).name
        except LookupError:
            encoding = "cp1252"
        if encoding in ("latin-1", "iso8859-1", "ascii"):  # as browsers do (WHATWG encoding standard)
            encoding = "cp1252"
        if encoding.startswith(("utf-16", "utf-32", "utf-7")):
            encoding = "utf-8"
    return data.decode(encoding, errors="replace")


def _looks_html(text: str) -> bool:
    head = text[:4096].lstrip("\ufeff")
    junk = _LEADING_JUNK.match(head)
    rest = head[junk.end() if junk else 0 :]
    if _HTML_STRONG.match(rest):
        return True
    if _HTML_WEAK.match(rest):
        return _ATX_HEADING.search(text, 0, 200_000) is None
    return False


def _xml_kind(text: str) -> str | None:
    """A description for XML that is not HTML (SVG, other XML), or None."""
    head = text[:4096].lstrip("\ufeff")
    junk = _LEADING_JUNK.match(head)
    rest = head[junk.end() if junk else 0 :]
    lowered = rest[:200].lower()
    if lowered.startswith("<svg") or (lowered.startswith("<!doctype svg")):
        return "an SVG image"
    if head.lstrip().startswith("<?xml"):
        return "an XML document (not XHTML)"
    return None


# ----------------------------------------------------------------------------- ZIP containers
def _read_capped(archive: zipfile.ZipFile, name: str, cap: int) -> bytes | None:
    try:
        with archive.open(name) as member:
            return member.read(cap)
    except (KeyError, zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError, ValueError):
        return None
    except Exception:  # zlib.error and friends from a damaged member
        return None


def _zip_kind(data: bytes) -> tuple[Kind | None, str]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None, "a damaged ZIP archive"
    with archive:
        names = set()
        for info in archive.infolist()[:10_000]:
            names.add(info.filename)
        if "[Content_Types].xml" in names:
            types = (_read_capped(archive, "[Content_Types].xml", _ZIP_PROBE_CAP) or b"").replace(b"\x00", b"")
            lowered = types.lower()
            if b"wordprocessingml.document.main" in lowered or b"wordprocessingml.template.main" in lowered \
                    or b"ms-word.document.macroenabled" in lowered or b"ms-word.template.macroenabled" in lowered:
                return Kind.DOCX, DESCRIPTION[Kind.DOCX]
            if b"spreadsheetml" in lowered or b"ms-excel" in lowered:
                return None, "an Excel workbook"
            if b"presentationml" in lowered or b"ms-powerpoint" in lowered:
                return None, "a PowerPoint presentation"
            if b"wordprocessingml" in lowered:
                return Kind.DOCX, DESCRIPTION[Kind.DOCX]
            return None, "an Office Open XML package that is not a Word document"
        if "mimetype" in names:
            mimetype = (_read_capped(archive, "mimetype", 200) or b"").strip().decode("ascii", "replace")
            if mimetype == "application/vnd.oasis.opendocument.text":
                return None, "an OpenDocument text (.odt); save it as .docx"
            if mimetype.startswith("application/vnd.oasis.opendocument."):
                return None, "an OpenDocument file (" + mimetype.rsplit(".", 1)[-1] + ")"
            if mimetype == "application/epub+zip":
                return None, "an EPUB e-book"
        return None, "a ZIP archive"


# ----------------------------------------------------------------------------- detection
def identify(data: bytes) -> tuple[Kind | None, str]:
    """``(kind, description)``: the importable kind (None when not importable) and what the bytes are,
    in words (``"a PNG image"``). An empty file is ``(None, "an empty file")``."""
    if not data:
        return None, "an empty file"
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return _zip_kind(data)
    position = data.find(b"%PDF-", 0, 1024)
    if position == 0 or (position > 0 and b"%%EOF" in data[-2048:]):
        return Kind.PDF, DESCRIPTION[Kind.PDF]
    for magic, description in _MAGIC:
        if data.startswith(magic):
            return None, description
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return None, "a WebP image"
    if data[4:8] == b"ftyp":
        return None, "a video or HEIC image"
    text = decode_text(data)
    if text is None:
        head = data[:4096].decode("latin-1")
        if not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and b"\x00" not in data[:4096] \
                and _looks_html(head):
            return Kind.HTML, DESCRIPTION[Kind.HTML]
        if b"\x00" in data[:4096] or _CONTROL.search(head[:1024]):
            return None, "binary data of a type we do not know"
        return None, "text in an encoding other than UTF-8 (save it as UTF-8)"
    if _looks_html(text):
        return Kind.HTML, DESCRIPTION[Kind.HTML]
    other = _xml_kind(text)
    if other is not None:
        return None, other
    return Kind.MARKDOWN, DESCRIPTION[Kind.MARKDOWN]


def _extension(filename: str | None) -> str:
    if not filename:
        return ""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[-1].lower() if "." in base.strip(".") else ""


def _display(filename: str | None) -> str:
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = "".join(ch for ch in base if ch.isprintable())[:120]
    return base or "this file"


def detect(data: bytes, filename: str | None = None) -> Kind:
    """The kind of document ``data`` is (by content), or raise:

    - :class:`Unprocessable` ``import_empty`` (422) for zero bytes;
    - :class:`UnsupportedMediaType` (415) when the content is not an importable kind;
    - :class:`Unprocessable` ``import_type_mismatch`` (422) when ``filename``'s extension names another
      family than the content (Word vs PDF vs text).
    """
    name = _display(filename)
    kind, description = identify(data)
    if not data:
        raise Unprocessable(f"{name} is empty (0 bytes): there is nothing to import", code="import_empty")
    if kind is None:
        raise UnsupportedMediaType(f"{name} is {description}; {ACCEPTED}", details={"detected": description})
    claimed = EXTENSIONS.get(_extension(filename))
    if claimed is not None and _FAMILY[claimed] != _FAMILY[kind]:
        raise Unprocessable(
            f"{name} is {DESCRIPTION[kind]}, not {DESCRIPTION[claimed]}: rename it to match its content or "
            "pick the intended file",
            code="import_type_mismatch",
            details={"detected": kind.value, "extension": _extension(filename)},
        )
    return kind
