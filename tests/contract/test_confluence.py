"""Contract of Confluence Cloud's REST API v2 as the publisher uses it, checked against the local
stand-in (scripts/localstack/confluence.py) by default and against a real site when configured:

    PRDTOOL_CONTRACT_CONFLUENCE_URL=https://acme.atlassian.net PRDTOOL_CONTRACT_CONFLUENCE_EMAIL=me@acme.com \\
    PRDTOOL_CONTRACT_CONFLUENCE_TOKEN=ATATT... PRDTOOL_CONTRACT_CONFLUENCE_SPACE=SANDBOX \\
        .venv/bin/pytest tests/contract/test_confluence.py

The stand-in must pass the same tests, so a difference between it and Confluence shows up here, not
in production.  On a real site every page a test creates is deleted and purged from the trash
afterwards (purging needs the account to administer the space; otherwise the pages stay in the
trash and the test that needs a purge is skipped).  Titles carry a random suffix.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from prdtool.errors import Conflict, Unprocessable
from prdtool.exports.confluence import ConfluenceSite, Published, publish, to_storage
from prdtool.exports.model import ExportMeta
from scripts.localstack.confluence import serve_confluence

REAL_URL = os.environ.get("PRDTOOL_CONTRACT_CONFLUENCE_URL")
META = ExportMeta(title="Contract PRD", version="1.0.0", date="2024-05-01", authors=["Contract Test"],
                  prd_id="prd_contract")
CORPUS = "\n\n".join([
    "# Contract PRD",
    "## Goals & <risks>",
    "Text with <script>alert(1)</script> and &#12; and [a link](https://example.com/?a=1&b=2).",
    "```python\nx = ']]>'\n```",
    "```mermaid\ngraph TD; A-->B\n```",
    "| a | b |\n|:-:|--|\n| 1 | `]]>` |",
    "- one\n  - nested\n- two",
    "![diagram](https://example.com/d.png) [js](javascript:alert(1))",
])


@dataclass
class Target:
    site: ConfluenceSite
    created: list[str] = field(default_factory=list)

    def http(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A raw call as the same account (what a person in Confluence would do)."""
        return requests.request(method, self.site.base_url + path, auth=(self.site.email, self.site.api_token),
                                timeout=30, **kwargs)

    def publish(self, title: str, *, page_id: str | None = None, storage: str | None = None,
                session: requests.Session | None = None, site: ConfluenceSite | None = None) -> Published:
        body = storage if storage is not None else to_storage(CORPUS, META)[0]
        result = publish(site or self.site, title=title, storage=body, page_id=page_id, message="contract test",
                         session=session, backoff=0.05)
        self.created.append(result.page_id)
        return result

    def page(self, page_id: str, *, body: bool = False) -> dict[str, Any]:
        response = self.http("GET", f"/wiki/api/v2/pages/{page_id}", params={"body-format": "storage"} if body else {})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def delete(self, page_id: str, *, purge: bool) -> bool:
        """Move to the trash (and purge it); whether it is gone for good."""
        self.http("DELETE", f"/wiki/api/v2/pages/{page_id}")
        return not purge or self.http("DELETE", f"/wiki/api/v2/pages/{page_id}", params={"purge": "true"}).ok


def _local() -> Iterator[Target]:
    with serve_confluence(spaces={"PRD": "98305"}) as fake:
        yield Target(ConfluenceSite.from_secret(fake.secret("PRD")))


def _real() -> Iterator[Target]:
    target = Target(ConfluenceSite(
        base_url=os.environ["PRDTOOL_CONTRACT_CONFLUENCE_URL"].rstrip("/").removesuffix("/wiki"),
        email=os.environ["PRDTOOL_CONTRACT_CONFLUENCE_EMAIL"],
        api_token=os.environ["PRDTOOL_CONTRACT_CONFLUENCE_TOKEN"],
        space_key=os.environ["PRDTOOL_CONTRACT_CONFLUENCE_SPACE"],
    ))
    try:
        yield target
    finally:
        for page_id in dict.fromkeys(target.created):
            with contextlib.suppress(requests.RequestException):
                target.delete(page_id, purge=True)


TARGETS: list[Any] = [
    pytest.param(_local, id="local-confluence"),
    pytest.param(_real, id="confluence", marks=pytest.mark.skipif(
        not REAL_URL, reason="PRDTOOL_CONTRACT_CONFLUENCE_URL (and _EMAIL, _TOKEN, _SPACE) not set")),
]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    yield from request.param()


def unique(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:10]}"


def test_the_storage_of_a_hostile_prd_is_accepted_and_kept(target: Target) -> None:
    result = target.publish(unique("Contract storage"))
    assert result.created and result.version == 1
    assert result.url.startswith(("http://", "https://")) and result.page_id in result.url
    stored = target.page(result.page_id, body=True)["body"]["storage"]["value"]
    for kept in ('ac:name="code"', "Mermaid diagram (source)", "Goals &amp; &lt;risks&gt;", "<table",
                 "&lt;script&gt;"):
        assert kept in stored
    assert 'href="javascript:' not in stored


def test_publishing_again_updates_the_same_page(target: Target) -> None:
    title = unique("Contract update")
    first = target.publish(title)
    second = target.publish(title, page_id=first.page_id, storage="<p>Second version.</p>")
    assert (second.page_id, second.version, second.created) == (first.page_id, 2, False)
    page = target.page(first.page_id, body=True)
    assert page["version"]["number"] == 2 and page["version"]["message"] == "contract test"
    assert "Second version." in page["body"]["storage"]["value"]


def test_an_edit_made_meanwhile_is_not_lost_to_a_stale_version(target: Target) -> None:
    title = unique("Contract race")
    first = target.publish(title)

    class EditsBeforeFirstPut(requests.Session):  # someone saves the page between our read and write
        raced = False

        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            if method == "PUT" and not self.raced:
                self.raced = True
                current = target.page(first.page_id)
                edited = target.http("PUT", f"/wiki/api/v2/pages/{first.page_id}", json={
                    "id": first.page_id, "status": "current", "title": title,
                    "body": {"representation": "storage", "value": "<p>Edited by a person.</p>"},
                    "version": {"number": current["version"]["number"] + 1, "message": "by hand"}})
                assert edited.status_code == 200, edited.text
            return super().request(method, url, *args, **kwargs)

    with EditsBeforeFirstPut() as session:
        result = target.publish(title, page_id=first.page_id, storage="<p>Published.</p>", session=session)
    assert result.version == 3 and result.page_id == first.page_id
    assert "Published." in target.page(first.page_id, body=True)["body"]["storage"]["value"]


def test_a_page_deleted_in_confluence_is_published_anew(target: Target) -> None:
    title = unique("Contract deleted")
    first = target.publish(title)
    if not target.delete(first.page_id, purge=True):
        pytest.skip("the account may not purge pages from this space's trash")
    again = target.publish(title, page_id=first.page_id)
    assert again.created and again.page_id != first.page_id and again.version == 1


def test_a_title_taken_by_another_page_is_a_conflict(target: Target) -> None:
    title = unique("Contract duplicate")
    theirs = target.publish(title)
    with pytest.raises(Conflict) as caught:
        target.publish(title)
    assert caught.value.code == "confluence_title_taken"
    assert target.page(theirs.page_id)["version"]["number"] == 1


def test_refused_credentials_are_an_auth_error(target: Target) -> None:
    wrong = ConfluenceSite(target.site.base_url, target.site.email, "not-the-token-" + uuid.uuid4().hex, "X")
    with pytest.raises(Unprocessable) as caught:
        target.publish(unique("Contract auth"), site=wrong)
    assert caught.value.code == "confluence_auth" and wrong.api_token not in caught.value.message


def test_an_unknown_space_is_named(target: Target) -> None:
    key = "NOSPACE" + uuid.uuid4().hex[:6].upper()
    nowhere = ConfluenceSite(target.site.base_url, target.site.email, target.site.api_token, key)
    with pytest.raises(Unprocessable) as caught:
        target.publish(unique("Contract space"), site=nowhere)
    assert caught.value.code == "confluence_space_not_found" and key in caught.value.message
