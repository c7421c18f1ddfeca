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


def upload(api: Api, name: str, data: bytes, *, title: str | None = None) -> requests.Response:
    headers = {"authorization": f"Bearer {api.token}"}
    form = {"title": title} if title else None
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
    assert alice.post(path, {"format": "confluence"}).json()["error"]["code"] == "confluence_not_configured"
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
