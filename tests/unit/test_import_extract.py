"""Document import (issue #16): sniffing by content, extraction of real documents written by other
tools (tests/fixtures/imports, see its README), and hostile inputs refused with the documented error
in bounded memory (tracemalloc) — inputs are sized so that an unbounded implementation would blow up."""

from __future__ import annotations

import codecs
import io
import re
import struct
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mammoth")
pytest.importorskip("pdfplumber")
pytest.importorskip("nh3")
pytest.importorskip("markdownify")

import pypdf

from prdtool.errors import DomainError, PayloadTooLarge, Unprocessable
from prdtool.imports import Kind, Limits, UnsupportedMediaType, detect, extract, identify
from prdtool.imports.extract import _scan_html

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
MiB = 1 << 20
MEMORY_CAP = 200 * MiB
HEADINGS = ["Problem", "Goals", "Non-goals", "User stories", "Requirements", "Success metrics", "Open questions"]
LINK = "[data retention policy](https://example.com/policies/retention)"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def peak_memory(action: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``action`` under tracemalloc; returns (its result or the DomainError it raised, peak bytes)."""
    tracemalloc.start()
    try:
        try:
            result: Any = action()
        except DomainError as error:
            result = error
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def headings(markdown: str) -> list[tuple[int, str]]:
    return [(len(m.group(1)), m.group(2)) for m in re.finditer(r"^(#{1,6}) (.+)$", markdown, re.MULTILINE)]


# ----------------------------------------------------------------------------- fixtures by other tools
@pytest.mark.parametrize("name", ["prd.md", "prd.docx", "prd.pdf", "prd.html"])
def test_fixture_imports_into_sections(name: str) -> None:
    data = fixture(name)
    kind = detect(data, name)
    result = extract(data, kind, filename=name)
    md = result.markdown

    assert result.title == "Saved carts for returning shoppers"
    assert headings(md) == [(1, "Saved carts for returning shoppers")] + [(2, h) for h in HEADINGS]
    assert md.startswith("# Saved carts for returning shoppers\n\nReturning shoppers lose their basket")
    # the table survives as a GFM table, header first
    assert re.search(r"^\| As a \| I want to \| So that \|\n\|(?: ?-+ ?\|){3}$", md, re.MULTILINE)
    assert re.search(r"^\| Support agent \| view a shopper.s saved cart \| I can answer .where did my items go\?. \|$",
                     md, re.MULTILINE)
    # lists: bullets and the numbered requirement list
    assert re.search(r"^- Keep a signed-in shopper.s cart for 30 days across web and mobile\.$", md, re.MULTILINE)
    assert re.search(r"^1\. Cart persistence$", md, re.MULTILINE)
    assert re.search(r"^\s*- Re-price every item when the cart is restored\.$", md, re.MULTILINE)
    assert LINK in md
    assert "javascript" not in md.lower()
    images = [d for d in result.report.dropped if d["kind"] == "image"]
    assert len(images) == 1 and images[0]["count"] == 1


@pytest.mark.parametrize("name", ["prd.md", "prd.docx", "prd.pdf"])
def test_nested_list_is_kept(name: str) -> None:
    """The requirements' sub-bullets stay nested under their numbered item (LibreOffice's HTML export
    writes them as a separate ``<ul><ul>`` outside the ``<ol>``, so prd.html cannot keep that)."""
    md = extract(fixture(name), filename=name).markdown
    assert re.search(r"^1\. Cart persistence\n {3}- Store the cart server-side, keyed by the shopper.s account\.\n"
                     r" {3}- Merge the guest cart", md, re.MULTILINE)


def test_markdown_is_kept_as_written() -> None:
    data = fixture("prd.md")
    result = extract(data, Kind.MARKDOWN)
    assert result.markdown == data.decode("utf-8")
    [image] = result.report.dropped
    assert image["kind"] == "image" and image["count"] == 1 and "not imported" in image["detail"]


def test_markdown_bom_crlf_and_utf16() -> None:
    text = "# Title *with* emphasis\r\n\r\nBody text.\r\n"
    for data in (codecs.BOM_UTF8 + text.encode(), codecs.BOM_UTF16_LE + text.encode("utf-16-le")):
        result = extract(data)
        assert result.kind is Kind.MARKDOWN
        assert result.markdown == "# Title *with* emphasis\n\nBody text.\n"
        assert result.title == "Title with emphasis"


def test_docx_report_lists_unrecognised_styles() -> None:
    report = extract(fixture("prd.docx"), Kind.DOCX).report
    styles = [d["detail"] for d in report.dropped if d["kind"] == "style"]
    assert any("First Paragraph" in detail for detail in styles)


def test_html_report_lists_what_was_removed() -> None:
    report = extract(fixture("prd.html"), Kind.HTML).report
    kinds = {d["kind"]: d["count"] for d in report.dropped}
    assert kinds["style"] == 1  # the <style> sheet in <head>
    assert kinds["image"] == 1
    assert kinds["formatting"] > 10  # LibreOffice's inline styles


def test_xhtml_export_with_xml_prolog_is_html() -> None:
    page = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" '
            '"http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd"><html xmlns="http://www.w3.org/1999/xhtml"><head>'
            "<title>- no title specified</title></head><body><h1>Plan</h1><p>Text.</p></body></html>")
    result = extract(page.encode())
    assert result.kind is Kind.HTML
    assert result.markdown == "# Plan\n\nText.\n"
    assert result.title == "Plan"  # the first heading wins over a metadata title


def test_word_title_style_becomes_the_only_level_one_heading() -> None:
    """A document written with python-docx that uses the Title style and Heading 1 sections: the title
    is ``#`` and the sections move one level down."""
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_paragraph("Loyalty points", style="Title")
    document.add_heading("Problem", level=1)
    document.add_paragraph("Members cannot see their points.")
    document.add_heading("Details", level=2)
    document.add_paragraph("One", style="List Bullet")
    buffer = io.BytesIO()
    document.save(buffer)
    result = extract(buffer.getvalue())
    assert headings(result.markdown) == [(1, "Loyalty points"), (2, "Problem"), (3, "Details")]
    assert "- One" in result.markdown
    assert result.title == "Loyalty points"


def test_pdf_headings_from_font_sizes_without_outline() -> None:
    """Without bookmarks the heading levels come from font sizes (here: a PDF without an outline,
    written by pypdf from the fixture with the outline removed)."""
    reader = pypdf.PdfReader(io.BytesIO(fixture("prd.pdf")))
    writer = pypdf.PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    buffer = io.BytesIO()
    writer.write(buffer)
    assert not pypdf.PdfReader(io.BytesIO(buffer.getvalue())).outline
    result = extract(buffer.getvalue())
    assert headings(result.markdown) == [(1, "Saved carts for returning shoppers")] + [(2, h) for h in HEADINGS]
    assert any("font sizes" in warning for warning in result.report.warnings)


def test_pdf_written_by_typst_imports(tmp_path: Path) -> None:
    """Another PDF producer: typst (its outline gives the headings; its tables are ruled)."""
    typst = pytest.importorskip("typst")
    source = b"""#set document(title: "Typst PRD")
= Typst PRD
Intro paragraph with some words.
== Problem
Customers cannot *pay* quickly. See #link("https://example.org/x")[the report].
== Goals
- Faster checkout
  - nested goal
- Fewer tickets
#table(columns: 2, [Metric], [Target], [Conversion], [60%])
"""
    result = extract(typst.compile(source, root=str(tmp_path)))
    assert result.markdown == (
        "# Typst PRD\n\nIntro paragraph with some words.\n\n## Problem\n\n"
        "Customers cannot pay quickly. See [the report](https://example.org/x).\n\n## Goals\n\n"
        "- Faster checkout\n  - nested goal\n- Fewer tickets\n\n"
        "| Metric | Target |\n| --- | --- |\n| Conversion | 60% |\n"
    )


def test_pdf_text_budget_counts_glyphs_not_escape_bytes(tmp_path: Path) -> None:
    """Typst writes each glyph as a two-byte code in octal escapes (``\\000\\027``, eight bytes): the
    pre-check charges the two bytes, so a PDF under the character cap is not refused as too large."""
    typst = pytest.importorskip("typst")
    words = " ".join(f"word{i % 97}" for i in range(8_000))  # ~55,000 characters over a few pages
    pdf = typst.compile(f"= Long\n\n{words}\n".encode(), root=str(tmp_path))
    result = extract(pdf, limits=Limits(max_chars=70_000))
    assert 50_000 < len(result.markdown) < 70_000
    with pytest.raises(PayloadTooLarge):  # a cap that is really exceeded still refuses it up front
        extract(pdf, limits=Limits(max_chars=20_000))


def test_pdf_with_owner_password_only_imports() -> None:
    """'Protected' PDFs that open without a password (permissions only) are readable."""
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(fixture("prd.pdf")))
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert extract(buffer.getvalue()).title == "Saved carts for returning shoppers"


# ----------------------------------------------------------------------------- sniffing by content
@pytest.mark.parametrize(("name", "kind"), [("prd.md", Kind.MARKDOWN), ("prd.docx", Kind.DOCX),
                                            ("prd.pdf", Kind.PDF), ("prd.html", Kind.HTML)])
def test_detect_by_content_not_name(name: str, kind: Kind) -> None:
    data = fixture(name)
    assert detect(data) is kind
    assert detect(data, "upload.bin") is kind
    assert detect(data, "no-extension") is kind


def test_text_family_names_do_not_contradict() -> None:
    assert detect(fixture("prd.md"), "notes.html") is Kind.MARKDOWN
    assert detect(fixture("prd.html"), "notes.md") is Kind.HTML
    assert detect(fixture("prd.html"), "notes.txt") is Kind.HTML


@pytest.mark.parametrize(("content", "name", "fragment"), [
    ("prd.docx", "report.pdf", "report.pdf is a Word document, not a PDF"),
    ("prd.pdf", "report.docx", "report.docx is a PDF, not a Word document"),
    ("prd.pdf", "notes.md", "notes.md is a PDF, not a Markdown or plain-text file"),
    ("prd.md", "spec.docx", "spec.docx is a Markdown or plain-text file, not a Word document"),
])
def test_extension_contradicting_content_is_422(content: str, name: str, fragment: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        detect(fixture(content), name)
    assert caught.value.status == 422 and caught.value.code == "import_type_mismatch"
    assert fragment in caught.value.message
    with pytest.raises(Unprocessable):
        extract(fixture(content), filename=name)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(("make", "fragment"), [
    (_png, "is a PNG image; import takes .docx, .pdf, .md and .html files"),
    (lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64), "a JPEG image"),
    (lambda: _zip({"[Content_Types].xml": b'<Types><Override ContentType="application/vnd.openxmlformats-'
                                          b'officedocument.spreadsheetml.sheet.main+xml"/></Types>'}),
     "an Excel workbook"),
    (lambda: _zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"}),
     "an OpenDocument text (.odt)"),
    (lambda: _zip({"readme.txt": b"hello"}), "a ZIP archive"),
    (lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "an Office 97-2003 file"),
    (lambda: "Caf\u00e9 cr\u00e8me\n".encode("latin-1") * 10, "text in an encoding other than UTF-8"),
    (lambda: b"{\\rtf1\\ansi Hello}", "an RTF document"),
    (lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG image"),
    (lambda: bytes(range(256)) * 4, "binary data"),
])
def test_unsupported_content_is_415(make: Callable[[], bytes], fragment: str) -> None:
    data = make()
    with pytest.raises(UnsupportedMediaType) as caught:
        detect(data, "upload.docx")
    assert caught.value.status == 415 and caught.value.code == "unsupported_media_type"
    assert fragment in caught.value.message
    with pytest.raises(UnsupportedMediaType):
        extract(data)


def test_png_renamed_docx_is_415_naming_the_png() -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        extract(_png(), filename="photo.docx")
    assert caught.value.message.startswith("photo.docx is a PNG image; import takes .docx, .pdf, .md and .html")


def test_zero_byte_file_is_422() -> None:
    for action in (lambda: detect(b"", "empty.docx"), lambda: extract(b""), lambda: extract(b"", Kind.PDF)):
        with pytest.raises(Unprocessable) as caught:
            action()
        assert caught.value.status == 422 and caught.value.code == "import_empty"
        assert "empty" in caught.value.message


def test_markdown_that_starts_with_html_stays_markdown() -> None:
    readme = b'<p align="center"><img src="logo.png"></p>\n\n# Project\n\nSome *text*.\n'
    assert detect(readme) is Kind.MARKDOWN
    assert detect(b"<div>\n<p>Plain HTML fragment</p>\n</div>\n") is Kind.HTML


def test_windows_1252_html_is_decoded_by_its_meta_charset() -> None:
    page = '<html><head><meta charset="windows-1252"></head><body><h1>Caf\u00e9</h1><p>\u201cQuoted\u201d</p>' \
           "</body></html>"
    data = page.encode("cp1252")
    assert identify(data)[0] is Kind.HTML
    result = extract(data)
    assert result.title == "Caf\u00e9" and "\u201cQuoted\u201d" in result.markdown


# ----------------------------------------------------------------------------- hostile Word documents
def _fixture_members() -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(fixture("prd.docx"))) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _docx_with(replacements: dict[str, bytes]) -> bytes:
    return _zip({**_fixture_members(), **replacements})


_PARAGRAPH = b'<w:p><w:r><w:t>All work and no play makes Jack a dull boy.</w:t></w:r></w:p>'
_BODY_OPEN = (b'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
              b'wordprocessingml/2006/main"><w:body>')
_BODY_CLOSE = b"</w:body></w:document>"


def _zip_bomb(total: int) -> bytes:
    """A Word package whose document.xml inflates to ``total`` bytes of repeated paragraphs, built by
    streaming into the ZIP writer (the 200 MB never exist in memory)."""
    chunk = _PARAGRAPH * (MiB // len(_PARAGRAPH))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in _fixture_members().items():
            if name != "word/document.xml":
                archive.writestr(name, data)
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(_BODY_OPEN)
            for _ in range(total // len(chunk)):
                member.write(chunk)
            member.write(_BODY_CLOSE)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    return _zip_bomb(200 * MiB)


def test_zip_bomb_docx_is_refused_in_bounded_memory(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 1 * MiB  # ≈ 200 KB holding 200 MB
    assert detect(zip_bomb, "bomb.docx") is Kind.DOCX  # sniffing reads only [Content_Types].xml
    error, peak = peak_memory(lambda: extract(zip_bomb, filename="bomb.docx"))
    assert isinstance(error, Unprocessable) and error.code == "import_suspicious"
    assert "ZIP bomb" in error.message and "compression ratio" in error.message
    assert peak < MEMORY_CAP


def test_docx_forged_declared_size_is_not_trusted() -> None:
    """The central directory claims 4 KB for a member that inflates to 8 MB: the ratio check passes,
    the capped read stops at the declared size and the CRC check refuses the member."""
    data = bytearray(_zip_bomb(8 * MiB))
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = archive.getinfo("word/document.xml")
    assert info.file_size > 8 * MiB - MiB
    forged = 4096
    # patch the central directory entry (uncompressed size at +24) and the zip64 extra field if any
    position = 0
    while True:
        central = data.find(b"PK\x01\x02", position)
        assert central >= 0
        name_length, extra_length = struct.unpack("<HH", data[central + 28 : central + 32])
        name = bytes(data[central + 46 : central + 46 + name_length])
        if name == b"word/document.xml":
            break
        position = central + 4
    if struct.unpack("<I", data[central + 24 : central + 28])[0] == 0xFFFFFFFF:
        extra = central + 46 + name_length
        end = extra + extra_length
        while extra < end:
            header_id, size = struct.unpack("<HH", data[extra : extra + 4])
            if header_id == 1:
                data[extra + 4 : extra + 12] = struct.pack("<Q", forged)
            extra += 4 + size
    else:
        data[central + 24 : central + 28] = struct.pack("<I", forged)
    forged_zip = bytes(data)
    assert zipfile.ZipFile(io.BytesIO(forged_zip)).getinfo("word/document.xml").file_size == forged
    error, peak = peak_memory(lambda: extract(forged_zip, Kind.DOCX))
    assert isinstance(error, Unprocessable) and error.code == "import_damaged"
    assert peak < 50 * MiB


def test_docx_xml_over_the_cap_is_413() -> None:
    """Incompressible text (ratio ≈ 2, so no bomb) still stops at ``max_xml_bytes``."""
    import secrets

    body = b"".join(b"<w:p><w:r><w:t>" + secrets.token_hex(512).encode() + b"</w:t></w:r></w:p>"
                    for _ in range(3 * 1024))
    data = _docx_with({"word/document.xml": _BODY_OPEN + body + _BODY_CLOSE})
    with pytest.raises(PayloadTooLarge) as caught:
        extract(data, limits=Limits(max_xml_bytes=2 * MiB))
    assert caught.value.status == 413 and caught.value.code == "import_too_large"
    assert "2 MB" in caught.value.message


def test_docx_with_too_many_members_is_422() -> None:
    data = _docx_with({f"customXml/item{i}.xml": b"<a/>" for i in range(1_100)})
    with pytest.raises(Unprocessable) as caught:
        extract(data)
    assert caught.value.code == "import_suspicious" and "parts" in caught.value.message


BILLION_LAUGHS = """<?xml version="1.0" encoding="{encoding}"?>
<!DOCTYPE w:document [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
<w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>"""


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF-16"])
def test_billion_laughs_docx_is_refused_before_mammoth(encoding: str) -> None:
    document = BILLION_LAUGHS.format(encoding=encoding).encode(encoding.lower())  # UTF-16 gets a BOM
    data = _docx_with({"word/document.xml": document})
    error, peak = peak_memory(lambda: extract(data, filename="laughs.docx"))
    assert isinstance(error, Unprocessable) and error.status == 422 and error.code == "import_suspicious"
    assert "DTD" in error.message and "billion laughs" in error.message
    assert peak < 50 * MiB


def test_external_entity_docx_is_refused() -> None:
    document = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
                b"<w:p><w:r><w:t>&xxe;</w:t></w:r></w:p></w:body></w:document>")
    with pytest.raises(Unprocessable) as caught:
        extract(_docx_with({"word/document.xml": document}))
    assert caught.value.code == "import_suspicious"


def test_docx_javascript_hyperlink_is_dropped() -> None:
    members = _fixture_members()
    rels = members["word/_rels/document.xml.rels"].replace(
        b"https://example.com/policies/retention", b"javascript:alert(document.cookie)")
    result = extract(_docx_with({"word/_rels/document.xml.rels": rels}))
    assert "javascript" not in result.markdown.lower()
    assert "data retention policy" in result.markdown
    assert any(d["kind"] == "link" for d in result.report.dropped)


def test_damaged_docx_is_422() -> None:
    data = fixture("prd.docx")
    for broken in (data[: len(data) // 2], _zip({"[Content_Types].xml": _fixture_members()["[Content_Types].xml"]})):
        with pytest.raises(Unprocessable) as caught:
            extract(broken, Kind.DOCX)
        assert caught.value.code == "import_damaged"


# ----------------------------------------------------------------------------- hostile PDFs
def _encrypted_pdf() -> bytes:
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(fixture("prd.pdf")))
    writer.encrypt(user_password="s3cret", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_encrypted_pdf_is_422() -> None:
    with pytest.raises(Unprocessable) as caught:
        extract(_encrypted_pdf(), filename="secret.pdf")
    assert caught.value.status == 422 and caught.value.code == "import_encrypted"
    assert caught.value.message.startswith("this PDF is password-protected")


def test_image_only_pdf_is_422_not_an_empty_import() -> None:
    """A scan: Pillow writes a page that is one image and no text layer."""
    from PIL import Image, ImageDraw

    page = Image.new("L", (850, 1100), 255)
    ImageDraw.Draw(page).text((100, 100), "Scanned requirements", fill=0)
    buffer = io.BytesIO()
    page.save(buffer, "PDF", resolution=100)
    assert detect(buffer.getvalue(), "scan.pdf") is Kind.PDF
    with pytest.raises(Unprocessable) as caught:
        extract(buffer.getvalue())
    assert caught.value.code == "import_no_text"
    assert "this PDF has no text layer (a scan?)" in caught.value.message


@pytest.mark.parametrize("fraction", [0.9, 0.5, 0.1])
def test_truncated_pdf_is_422(fraction: float) -> None:
    data = fixture("prd.pdf")
    with pytest.raises(Unprocessable) as caught:
        extract(data[: int(len(data) * fraction)])
    assert caught.value.code == "import_damaged"
    assert "damaged or truncated" in caught.value.message


def test_pdf_page_cap_is_413() -> None:
    writer = pypdf.PdfWriter()
    for _ in range(501):
        writer.add_blank_page(612, 792)
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(PayloadTooLarge) as caught:
        extract(buffer.getvalue())
    assert caught.value.code == "import_too_large" and "501 pages" in caught.value.message


def _pdf_with_content(stream: bytes, filters: bytes = b"/FlateDecode", pages: int = 1) -> bytes:
    """A minimal PDF of ``pages`` pages that all show one content stream, ``stream`` (already encoded
    with ``filters``)."""
    kids = b" ".join(b"%d 0 R" % (6 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
        b"<< /Producer (hand-made test PDF) >>",  # object 3: an info dictionary, not referenced
        b"<< /Length %d /Filter %s >>\nstream\n" % (len(stream), filters) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
                b"/Resources << /Font << /F1 5 0 R >> >> >>"] * pages
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def _deflate_stream(parts: Iterator[bytes]) -> bytes:
    import zlib

    compressor = zlib.compressobj(9)
    return b"".join(compressor.compress(part) for part in parts) + compressor.flush()


def test_small_hand_made_pdf_imports() -> None:
    content = b"BT /F1 24 Tf 72 700 Td (Pricing page) Tj ET BT /F1 12 Tf 72 660 Td (Plain body text here.) Tj ET"
    result = extract(_pdf_with_content(_deflate_stream(iter([content]))))
    assert result.markdown == "# Pricing page\n\nPlain body text here.\n"


def test_pdf_content_stream_bomb_is_refused_in_bounded_memory() -> None:
    """200 KB of PDF whose page content inflates to 200 MB: pdfminer (under pdfplumber) would inflate
    it all with ``zlib.decompress`` (437 MB peak) and lay it out; the pypdf pre-pass stops at the
    page's 2 MB budget."""
    space = b" " * MiB
    stream = _deflate_stream(iter([b"BT /F1 12 Tf 72 700 Td (Hello) Tj ET\n", *([space] * 200)]))
    data = _pdf_with_content(stream)
    assert len(data) < MiB
    error, peak = peak_memory(lambda: extract(data))
    assert isinstance(error, PayloadTooLarge) and error.code == "import_too_large"
    assert "page 1 of this PDF unpacks to more than 2 MB" in error.message
    assert peak < MEMORY_CAP


def test_pdf_total_content_budget_counts_every_page_showing_a_stream() -> None:
    """One 1.5 MB content stream shown by 50 pages is 75 MB for pdfminer (it runs per page)."""
    stream = _deflate_stream(iter([b"BT /F1 12 Tf 72 700 Td (Hi) Tj ET\n", b" " * (3 * MiB // 2)]))
    data = _pdf_with_content(stream, pages=50)
    error, peak = peak_memory(lambda: extract(data))
    assert isinstance(error, PayloadTooLarge) and "unpacks to more than 64 MB" in error.message
    assert peak < MEMORY_CAP


def test_pdf_page_with_a_million_characters_is_refused_before_layout() -> None:
    """A single ``Tj`` of 1,000,000 characters (1 MB of content, within the byte budget): pdfplumber
    would build a 2 KB object per character (2 GB); the pre-pass counts the shown string bytes."""
    stream = _deflate_stream(iter([b"BT /F1 1 Tf 10 700 Td (", b"x" * 1_000_000, b") Tj ET"]))
    error, peak = peak_memory(lambda: extract(_pdf_with_content(stream)))
    assert isinstance(error, PayloadTooLarge)
    assert "page 1 of this PDF shows more than 100,000 characters" in error.message
    assert peak < MEMORY_CAP


def test_pdf_javascript_link_is_dropped() -> None:
    data = fixture("prd.pdf").replace(b"https://example.com/policies/retention",
                                      b"javascript:app.alert(1);//////////////")
    result = extract(data)
    assert "javascript" not in result.markdown.lower()
    assert "data retention policy" in result.markdown
    assert any(d["kind"] == "link" for d in result.report.dropped)


# ----------------------------------------------------------------------------- hostile HTML
def test_html_nested_100000_deep_is_refused_in_bounded_memory() -> None:
    data = ("<html><body>" + "<div>" * 100_000 + "deep" + "</div>" * 100_000 + "</body></html>").encode()
    error, peak = peak_memory(lambda: extract(data, filename="deep.html"))
    assert isinstance(error, Unprocessable) and error.status == 422 and error.code == "import_too_deep"
    assert "more than 200 levels deep" in error.message
    assert peak < MEMORY_CAP


@pytest.mark.parametrize("opening", [
    "<b>", "<div><p>", "<br\u00a0>", "<li><ul>", "<td><table><tr>", "<svg><g>", "<span><div></span>",
    "<li><blockquote>", "<p><b id=x{i}>", "<b><div></b><div>", "<form><div></form>", "<dd><form><dt><li></dd>",
    "<table><select><td>", "</table>x<table><object><em><tbody>",
])
def test_depth_scanner_counts_what_an_html5_parser_nests(opening: str) -> None:
    """Unclosed formatting elements, unknown tags that only look void, lists and tables in items and
    cells, SVG, end tags that cannot close across a block, list items that do not close across a
    blockquote, formatting elements reopened in every new paragraph, misnested formatting, forms
    (closed but still ancestors), selects: all nest in an HTML5 tree, so all count."""
    page = "".join(opening.format(i=i) for i in range(5_000)) + "x"
    if "\u00a0" not in opening:  # (nh3 will not keep a tag named "br\u00a0" to show it)
        assert _html5_depth(page[:12_000]) > 200  # html5ever (nh3) really nests it
    with pytest.raises(Unprocessable) as caught:
        extract(page.encode(), Kind.HTML)
    assert caught.value.code == "import_too_deep"


def _html5_depth(page: str) -> int:
    """The nesting depth html5ever builds from what extract() hands nh3, measured on nh3's well-formed
    output with a permissive allow-list."""
    import nh3

    from prdtool.imports.extract import _neutralise

    tags = set(nh3.ALLOWED_TAGS) | {"button", "svg", "g", "option", "p", "form", "font", "nobr", "math", "span",
                                    "x-template", "x-select", "x-object", "x-applet", "x-marquee", "x-form",
                                    "x-button"}
    page = _neutralise(page, _scan_html(page, 10**9).renames)  # as extract() hands it to nh3
    out = nh3.clean(page, tags=tags, attributes={"*": {"id"}}, link_rel=None)
    depth = deepest = 0
    for tag in re.finditer(r"<(/?)([a-zA-Z][^\s/>]*)[^>]*?(/?)>", out):
        if tag.group(2).lower() in ("br", "hr", "img", "col", "wbr", "area"):
            continue
        if tag.group(1):
            depth -= 1
        elif not tag.group(3):
            depth += 1
            deepest = max(deepest, depth)
    return deepest


def test_depth_scanner_bounds_html5ever_on_random_tag_soup() -> None:
    """Differential check against html5ever: for random tag soup repeated 20 and 60 times, the
    scanner's depth grows at least half as fast as the real tree's (an unbounded under-count would let
    deep input reach nh3, whose time is quadratic in depth)."""
    import random

    rng = random.Random(20_240_516)
    vocabulary = ["div", "p", "b", "i", "a", "span", "li", "ul", "ol", "table", "tr", "td", "th", "tbody", "caption",
                  "blockquote", "h1", "em", "strong", "font", "button", "select", "option", "dd", "dl", "dt", "pre",
                  "code", "svg", "g", "math", "form", "nobr", "s", "u", "object", "template", "marquee"]
    checked = 0
    for _ in range(150):
        parts = []
        for _ in range(rng.randint(3, 20)):
            name, roll = rng.choice(vocabulary), rng.random()
            if roll < 0.6:
                parts.append(f"<{name}" + (f" id=a{rng.randint(0, 3)}" if rng.random() < 0.3 else "") + ">")
            elif roll < 0.9:
                parts.append(f"</{name}>")
            else:
                parts.append("x")
        unit = "".join(parts)
        real = _html5_depth(unit * 60 + "e") - _html5_depth(unit * 20 + "e")
        if real < 10:
            continue
        ours = _scan_html(unit * 60 + "e", 10**6).depth - _scan_html(unit * 20 + "e", 10**6).depth
        assert ours * 2 >= real, unit
        checked += 1
    assert checked > 20


@pytest.mark.parametrize("hidden", [
    "<!--> {deep} -->",  # "<!-->" is an empty comment: what follows is markup
    "<!-- x --!> {deep} -->",  # "--!>" ends a comment too
    '<a title="x> <!-- ">{deep}<!-- -->',  # quotes, not the first ">", end an attribute value
])
def test_depth_scanner_is_not_fooled_by_comment_and_quote_tricks(hidden: str) -> None:
    deep = "<div>" * 1_000 + "x"
    with pytest.raises(Unprocessable) as caught:
        extract(("<p>" + hidden.replace("{deep}", deep)).encode(), Kind.HTML)
    assert caught.value.code == "import_too_deep"


def test_flat_siblings_and_implied_end_tags_are_not_deep() -> None:
    page = "<ul>" + "<li>item" * 5_000 + "</ul><table>" + "<tr><td>a<td>b" * 2_000 + "</table>" + "<p>para" * 5_000
    assert _scan_html(page, 200).depth <= 4
    result = extract(page.encode(), Kind.HTML)
    assert result.markdown.count("- item") == 5_000


def test_html_nested_just_under_the_limit_converts() -> None:
    """markdownify recurses per level (RecursionError near 500): the 200 cap keeps it safe."""
    page = "<blockquote>" * 99 + "<ul><li>" * 50 + "bottom" + "</li></ul>" * 50 + "</blockquote>" * 99
    result = extract(page.encode(), Kind.HTML)
    assert "bottom" in result.markdown


@pytest.mark.parametrize("filler", ["<a ", "<!--", '<a b="', "</", "<![CDATA["])
def test_html_inputs_quadratic_for_html_parser_stay_linear(filler: str) -> None:
    """200,000 repetitions: Python 3.12.1's html.parser needs ~6 s for 8,000 of "<a " (quadratic), so
    an implementation using it would not finish; the scanner and nh3 are linear."""
    data = ("<h1>Title</h1><p>text</p>" + filler * 200_000).encode()
    result = extract(data, Kind.HTML)
    assert result.markdown.startswith("# Title\n\ntext")


def test_html_scripts_event_handlers_and_javascript_links_are_removed_and_reported() -> None:
    page = b"""<!DOCTYPE html><html><head><title>Hostile</title><script>alert('head')</script>
    <style>body{background:url(javascript:alert(1))}</style></head><body>
    <h1 onclick="alert('h1')">Plan</h1>
    <img src="x" onerror="alert(document.cookie)">
    <p onmouseover='steal()'>Hello <a href="javascript:alert(1)">click me</a>,
    <a href=" JaVa&#x09;ScRiPt:alert(2)">obfuscated</a>, <a href="data:text/html,<script>alert(3)</script>">data</a>
    and <a href="https://ok.example/path">a real link</a>.</p>
    <iframe src="https://evil.example"></iframe><object data="x.swf"></object>
    <svg><script>alert(4)</script></svg><form action="javascript:x()"><input value="v"></form>
    <script>document.write('<h2>injected</h2>')</script></body></html>"""
    result = extract(page, filename="hostile.html")
    md = result.markdown
    assert md == "# Plan\n\nHello click me, obfuscated, data and [a real link](https://ok.example/path).\n"
    dropped = {d["kind"]: d["count"] for d in result.report.dropped}
    assert dropped["script"] == 3  # the data: URL's "<script>" is inside an attribute
    assert dropped["event-handler"] == 3
    assert dropped["link"] >= 3  # the three bad hrefs (+ the form action)
    assert dropped["style"] == 1 and dropped["image"] == 1 and dropped["embedded"] == 2


def test_oversized_file_is_413_before_parsing() -> None:
    data = b"# Big\n\n" + b"lorem ipsum " * (21 * MiB // 12)
    error, peak = peak_memory(lambda: extract(data))
    assert isinstance(error, PayloadTooLarge) and error.status == 413 and error.code == "import_too_large"
    assert "imports take at most 20 MB" in error.message
    assert peak < 10 * MiB


def test_markdown_over_the_char_cap_is_413() -> None:
    with pytest.raises(PayloadTooLarge):
        extract(b"# T\n\n" + b"word " * 500_000, limits=Limits(max_chars=1_000_000))


def test_deeply_nested_markdown_is_bounded() -> None:
    """markdown-it caps block nesting; 100,000 nested quote markers parse as text."""
    data = b"# Quotes\n\n" + b">" * 100_000 + b" deep\n"
    result = extract(data)
    assert result.title == "Quotes"


def test_unknown_kind_is_400() -> None:
    with pytest.raises(DomainError) as caught:
        extract(b"hello", "rtf")
    assert caught.value.status == 400
