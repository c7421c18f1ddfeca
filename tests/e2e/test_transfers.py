"""Imports and exports on the local stack (issue #16): real handlers, SQS workers, moto's S3, real
documents written by other tools (tests/fixtures/imports), real readers of the exported files."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests

from scripts.localstack.stack import LocalStack
from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"


def upload(api: Api, name: str, data: bytes, *, title: str | None = None,
           draft_missing: bool = False) -> requests.Response:
    """A direct upload (the AI draft of missing sections off unless asked for: it is tested on its own)."""
    headers = {"authorization": f"Bearer {api.token}"}
    form = {"draftMissing": str(draft_missing).lower(), **({"title": title} if title else {})}
    return api.session.post(api.base_url + "/api/imports", files={"file": (name, data)}, data=form,
                            headers=headers, timeout=30)


def wait(api: Api, path: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(path)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in ("done", "failed"):
            return body
        assert time.monotonic() < deadline, f"{path} never finished: {body}"
        time.sleep(0.2)


def imported(api: Api, name: str, data: bytes, **kw: Any) -> dict[str, Any]:
    response = upload(api, name, data, **kw)
    assert response.status_code == 202, response.text
    return wait(api, f"/api/imports/{response.json()['importId']}")


def test_a_markdown_file_becomes_a_prd_with_v1_naming_the_file_and_the_importer_hears_of_it(
        alice: Api, prd: dict[str, Any], client_factory: Callable[..., YClient]) -> None:
    watcher = client_factory("alice")  # connected to another PRD: the notice reaches any connection
    source = (FIXTURES / "prd.md").read_bytes()
    done = imported(alice, "checkout.md", source)
    assert done["status"] == "done", done
    prd_id = done["prdId"]
    markdown = alice.get(f"/api/prds/{prd_id}").json()["markdown"]
    assert markdown.replace("\r\n", "\n").strip() == source.decode("utf-8").replace("\r\n", "\n").strip()
    keys = {s["key"] for s in done["report"]["sections"] if s.get("key")}
    assert {"problem", "goals", "success-metrics"} <= keys
    deadline = time.monotonic() + 30
    while not (versions := alice.get(f"/api/prds/{prd_id}/versions").json()["items"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert versions[-1]["version"] == "1.0.0" and "checkout.md" in (versions[-1].get("message") or "")
    watcher.wait_until(lambda: any(n.get("type") == "import.done" and n.get("prdId") == prd_id
                                   for n in watcher.notices), what="import.done notice")


@pytest.mark.parametrize("name", ["prd.docx", "prd.pdf", "prd.html"])
def test_documents_written_by_other_tools_import_into_the_right_sections(alice: Api, name: str) -> None:
    done = imported(alice, name, (FIXTURES / name).read_bytes())
    assert done["status"] == "done", done
    report = done["report"]
    keys = [s["key"] for s in report["sections"] if s.get("key")]
    assert "problem" in keys and "goals" in keys, report
    markdown = alice.get(f"/api/prds/{done['prdId']}").json()["markdown"]
    assert "## " in markdown or "# " in markdown


def test_bad_uploads_are_refused_clearly_and_make_no_prd(alice: Api, dave: Api) -> None:
    before = {p["id"] for p in alice.get("/api/prds").json()["items"]}
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    refused = upload(alice, "roadmap.docx", png)
    assert refused.status_code == 415, refused.text
    empty = upload(alice, "empty.md", b"")
    assert empty.status_code == 422 and empty.json()["error"]["code"]
    big = upload(alice, "big.md", b"# Big\n\n" + b"x" * (4 * 1024 * 1024 + 10))
    assert big.status_code == 413, big.text
    assert {p["id"] for p in alice.get("/api/prds").json()["items"]} == before
    ok = upload(alice, "note.md", b"# Note\n\n## Problem\n\nSlow.\n")
    assert dave.get(f"/api/imports/{ok.json()['importId']}").status_code == 404  # someone else's


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.scripts = 0
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("h1", "h2", "h3"):
            self._in = tag
            self.headings.append("")
        self.scripts += tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.headings[-1] += data


@pytest.mark.parametrize("fmt", ["html", "docx", "pdf", "markdown"])
def test_exports_open_in_their_readers_with_the_same_headings(
        alice: Api, carol: Api, dave: Api, shared_prd: dict[str, Any], stack: LocalStack, fmt: str) -> None:
    prd_id = shared_prd["id"]
    started = carol.post(f"/api/prds/{prd_id}/exports", {"format": fmt})  # a viewer may export
    assert started.status_code == 202, started.text
    export_id = started.json()["exportId"]
    assert dave.post(f"/api/prds/{prd_id}/exports", {"format": fmt}).status_code == 404
    done = wait(carol, f"/api/exports/{export_id}")
    assert done["status"] == "done" and done["url"] and done["expiresAt"] > time.time() + 23 * 3600, done
    extension = {"markdown": "md"}.get(fmt, fmt)
    assert done["filename"].startswith("Checkout-redesign-v") and done["filename"].endswith(f".{extension}")
    assert alice.get(f"/api/exports/{export_id}").status_code == 404  # carol's export
    data = requests.get(done["url"], timeout=30).content
    if fmt == "html":
        parser = _Headings()
        parser.feed(data.decode("utf-8"))
        assert "Goals" in [h.strip() for h in parser.headings] and parser.scripts == 0
    elif fmt == "docx":
        import docx

        document = docx.Document(io.BytesIO(data))
        assert "Goals" in [p.text for p in document.paragraphs if p.style is not None
                           and p.style.name.startswith("Heading")]
    elif fmt == "pdf":
        import pypdf

        text = "".join(page.extract_text() or "" for page in pypdf.PdfReader(io.BytesIO(data)).pages)
        assert "Goals" in text and "Faster." in text
    else:
        assert "## Goals" in data.decode("utf-8")


def test_export_requests_are_checked(alice: Api, shared_prd: dict[str, Any]) -> None:
    path = f"/api/prds/{shared_prd['id']}/exports"
    assert alice.post(path, {"format": "rtf"}).status_code == 422
    assert alice.post(path, {"format": "pdf", "version": "9.9.9"}).status_code == 404
    assert alice.get("/api/exports/not-an-id").status_code == 404


def _move_clock(stack: LocalStack, seconds: float) -> None:
    response = requests.post(f"{stack.moto_url}/_localstack/clock", json={"offset": seconds}, timeout=10)
    assert response.status_code == 200


def test_a_download_link_works_for_24_hours_and_the_file_is_deleted_after(
        alice: Api, shared_prd: dict[str, Any], stack: LocalStack) -> None:
    started = alice.post(f"/api/prds/{shared_prd['id']}/exports", {"format": "markdown"})
    done = wait(alice, f"/api/exports/{started.json()['exportId']}")
    url = done["url"]
    import boto3

    s3 = boto3.client("s3", endpoint_url=stack.moto_url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = stack.manifest["functions"]["ExportWorkerFunction"]["environment"]["DOCUMENTS_BUCKET"]
    prefix = f"exports/{done['exportId']}/"
    try:
        _move_clock(stack, 23.9 * 3600)  # the day is not over: the link works and the file stays
        assert requests.get(url, timeout=30).status_code == 200
        stack.sweep_lifecycle()  # (older exports of this test session may go; this one must not)
        assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount") == 1
        _move_clock(stack, 24 * 3600 + 60)  # a day and a minute later
        expired = requests.get(url, timeout=30)
        assert expired.status_code == 403 and b"Request has expired" in expired.content
        _move_clock(stack, 2 * 86_400)  # the lifecycle rule (1 day) has run by then
        assert stack.sweep_lifecycle() >= 1
    finally:
        _move_clock(stack, 0)
    left = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount")
    assert left == 0, "the lifecycle rule deleted the file"


def _post_form(upload: dict[str, Any], name: str, data: bytes) -> requests.Response:
    return requests.post(upload["url"], data=upload["fields"], files={upload["fileField"]: (name, data)}, timeout=60)


def _padded_docx(extra: int) -> bytes:
    """The Word fixture with ``extra`` incompressible bytes of media in it (a large, real .docx)."""
    import os
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO((FIXTURES / "prd.docx").read_bytes())) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(zipfile.ZipInfo("word/media/scan.bin"), os.urandom(extra), compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


def test_a_large_file_goes_straight_to_s3_by_a_presigned_form_and_imports(alice: Api, stack: LocalStack) -> None:
    data = _padded_docx(5 * 1024 * 1024)
    assert len(data) > 4 * 1024 * 1024  # too large for a direct upload
    direct = upload(alice, "big.docx", data)
    assert direct.status_code == 413 and "/api/imports/uploads" in direct.json()["error"]["message"]
    started = alice.post("/api/imports/uploads", {"filename": "big.docx", "size": len(data)})
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["status"] == "uploading" and body["upload"]["maxBytes"] == len(data)
    import_id = body["importId"]
    early = alice.post(f"/api/imports/{import_id}/complete", {})
    assert early.status_code == 409 and early.json()["error"]["code"] == "upload_missing"
    sent = _post_form(body["upload"], "big.docx", data)
    assert sent.status_code == 204, sent.text
    completed = alice.post(f"/api/imports/{import_id}/complete", {})
    assert completed.status_code == 202, completed.text
    again = alice.post(f"/api/imports/{import_id}/complete", {})  # a retried call: same import, queued once
    assert again.status_code == 202 and again.json()["importId"] == import_id
    done = wait(alice, f"/api/imports/{import_id}")
    assert done["status"] == "done", done
    assert {"problem", "goals"} <= {s["key"] for s in done["report"]["sections"] if s.get("key")}
    assert alice.get(f"/api/prds/{done['prdId']}").status_code == 200


def test_s3_refuses_a_presigned_upload_that_is_too_large_late_or_tampered_with(
        alice: Api, dave: Api, stack: LocalStack) -> None:
    import base64
    import json as jsonlib

    body = alice.post("/api/imports/uploads", {"filename": "notes.md", "size": 20}).json()
    form = body["upload"]
    larger = _post_form(form, "notes.md", b"# Notes\n\n" + b"x" * 40)
    assert larger.status_code == 400 and b"EntityTooLarge" in larger.content
    policy = jsonlib.loads(base64.b64decode(form["fields"]["policy"]))
    policy["conditions"] = [c if not (isinstance(c, list) and c[0] == "content-length-range")
                            else ["content-length-range", 1, 10**9] for c in policy["conditions"]]
    forged = dict(form, fields={**form["fields"], "policy": base64.b64encode(jsonlib.dumps(policy).encode()).decode()})
    tampered = _post_form(forged, "notes.md", b"# Notes\n\n" + b"x" * 40)
    assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content
    try:
        _move_clock(stack, 16 * 60)  # the form lives 15 minutes
        late = _post_form(form, "notes.md", b"# Notes\n\nexactly 20 b")
        assert late.status_code == 403 and b"Policy expired" in late.content
    finally:
        _move_clock(stack, 0)
    assert alice.post(f"/api/imports/{body['importId']}/complete", {}).json()["error"]["code"] == "upload_missing"
    assert dave.post(f"/api/imports/{body['importId']}/complete", {}).status_code == 404  # not dave's
    declared = alice.post("/api/imports/uploads", {"filename": "huge.pdf", "size": 21 * 1024 * 1024})
    assert declared.status_code == 413, declared.text
    bad = alice.post("/api/imports/uploads", {"filename": "x.md", "size": 1, "surprise": True})
    assert bad.status_code in (400, 422), bad.text


@pytest.mark.parametrize(("name", "data", "status", "code"), [
    ("roadmap.docx", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 415, "unsupported_media_type"),
    ("notes.md", b"# Notes\n\n" + "é".encode() * (2 * 1024 * 1024 + 8), 413, "file_too_large"),
    ("scan.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024), 415, "unsupported_media_type"),
])
def test_a_presigned_upload_is_checked_like_a_direct_one_and_makes_no_prd(
        alice: Api, name: str, data: bytes, status: int, code: str) -> None:
    before = {p["id"] for p in alice.get("/api/prds").json()["items"]}
    body = alice.post("/api/imports/uploads", {"filename": name}).json()
    assert _post_form(body["upload"], name, data).status_code == 204
    completed = alice.post(f"/api/imports/{body['importId']}/complete", {})
    assert completed.status_code == status and completed.json()["error"]["code"] == code, completed.text
    failed = alice.get(f"/api/imports/{body['importId']}").json()
    assert failed["status"] == "failed" and failed["error"]["code"] == code
    assert {p["id"] for p in alice.get("/api/prds").json()["items"]} == before


def test_hostile_files_that_pass_the_first_look_fail_the_import_cleanly(alice: Api) -> None:
    """A zip bomb dressed as Word and an encrypted PDF are refused by the worker: the import fails with
    the reason, and no PRD is made."""
    import zipfile

    from pypdf import PdfWriter

    bomb = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO((FIXTURES / "prd.docx").read_bytes())) as src, \
            zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "word/document.xml":
                data = data.replace(b"</w:body>", b"<w:p><w:r><w:t>" + b"A" * (50 * 1024 * 1024)
                                    + b"</w:t></w:r></w:p></w:body>")
            dst.writestr(info.filename, data)
    pdf = io.BytesIO()
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    writer.encrypt("secret")
    writer.write(pdf)
    before = {p["id"] for p in alice.get("/api/prds").json()["items"]}
    for name, data, codes in (("bomb.docx", bomb.getvalue(), {"import_too_large", "import_suspicious"}),
                              ("locked.pdf", pdf.getvalue(), {"import_encrypted"})):
        response = upload(alice, name, data)
        assert response.status_code == 202, response.text
        done = wait(alice, f"/api/imports/{response.json()['importId']}")
        assert done["status"] == "failed" and done["error"]["code"] in codes, done
        assert "prdId" not in done
    assert {p["id"] for p in alice.get("/api/prds").json()["items"]} == before


def test_an_import_asks_the_ai_to_draft_the_missing_sections_for_review(alice: Api) -> None:
    source = b"# Offline mode\n\n## Problem\n\nField staff lose work without signal.\n\n## Goals\n\nNo lost edits.\n"
    done = imported(alice, "offline.md", source, draft_missing=True)
    assert done["status"] == "done", done
    assert done["report"]["missing"], done["report"]
    job_id = done["aiJobId"]
    assert done["aiDraft"] == "started"
    job = alice.get(f"/api/ai/jobs/{job_id}").json()
    assert job["mode"] == "fill-gaps" and job["requester"] == "alice" and job["prdId"] == done["prdId"], job
    assert "offline.md" in job["prompt"]
    listed = alice.get(f"/api/prds/{done['prdId']}/ai/jobs").json()["items"]
    assert [j["jobId"] for j in listed] == [job_id]
    markdown = alice.get(f"/api/prds/{done['prdId']}").json()["markdown"]
    assert markdown.strip() == source.decode().strip()  # a suggestion, not applied
    without = imported(alice, "offline.md", source)
    assert without["aiDraft"] == "off"
    assert "aiJobId" not in without and not alice.get(f"/api/prds/{without['prdId']}/ai/jobs").json()["items"]


def test_a_prd_is_published_to_confluence_and_later_exports_update_the_same_page(
        alice: Api, bob: Api, shared_prd: dict[str, Any], stack: LocalStack) -> None:
    fake = stack.confluence
    assert fake is not None, "the local stack runs a Confluence stand-in"
    prd_id = shared_prd["id"]

    def publish(api: Api) -> dict[str, Any]:
        started = api.post(f"/api/prds/{prd_id}/exports", {"format": "confluence"})
        assert started.status_code == 202, started.text
        return wait(api, f"/api/exports/{started.json()['exportId']}")

    first = publish(alice)
    assert first["status"] == "done", first
    page = fake.pages[first["pageId"]]
    assert page.title == "Checkout redesign" and first["pageVersion"] == 1
    assert first["url"].startswith(fake.url) and first["pageId"] in first["url"]
    assert "<h2>Goals</h2>" in page.body and "Faster." in page.body
    renamed = alice.patch(f"/api/prds/{prd_id}", {"title": "Checkout redesign (2027)"})
    assert renamed.status_code == 200, renamed.text
    second = publish(bob)  # anyone who may export; the same page, a new version of it
    assert second["status"] == "done" and second["pageId"] == first["pageId"], second
    assert second["pageVersion"] == 2 and fake.pages[first["pageId"]].title == "Checkout redesign (2027)"
    fake.trash(first["pageId"])  # deleted in Confluence and emptied from the trash: a new page
    fake.purge(first["pageId"])
    third = publish(alice)
    assert third["status"] == "done" and third["pageId"] != first["pageId"] and third["pageVersion"] == 1
    fake.fail_next(503, count=100)  # Confluence is down for longer than the retries
    try:
        down = publish(alice)
    finally:
        fake.clear_faults()
    assert down["status"] == "failed" and down["error"]["code"] == "confluence_unavailable", down


def test_publishing_to_confluence_needs_a_configured_site(alice: Api, shared_prd: dict[str, Any],
                                                         stack: LocalStack) -> None:
    import boto3

    env = stack.manifest["functions"]["TransfersApiFunction"]["environment"]
    secrets = boto3.client("secretsmanager", endpoint_url=stack.moto_url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    name = env["CONFLUENCE_SECRET_ID"]
    value = secrets.get_secret_value(SecretId=name)["SecretString"]
    secrets.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    try:
        refused = alice.post(f"/api/prds/{shared_prd['id']}/exports", {"format": "confluence"})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "confluence_not_configured"
    finally:
        secrets.create_secret(Name=name, SecretString=value)
