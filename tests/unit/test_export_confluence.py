"""Publishing to Confluence (issue #16, flow 2.3): storage format from the PRD, and the REST v2 client
against the local Confluence stand-in (scripts/localstack/confluence.py). Loopback only, tiny backoff."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prdtool.errors import Conflict, DependencyFailed, PayloadTooLarge, Unprocessable
from prdtool.exports.confluence import NAMESPACES, ConfluenceSite, Published, publish, to_storage
from prdtool.exports.model import ExportMeta
from prdtool.exports.render import MAX_MARKDOWN_CHARS
from scripts.localstack.confluence import FakeConfluence, serve_confluence, storage_problem

META = ExportMeta(title="Checkout Revamp", version="1.2.0", date="2024-05-01T10:00:00+00:00",
                  authors=["Ana <ana@example.com>", "Bo & Co"], prd_id="prd_01")
AC = "{" + NAMESPACES["ac"] + "}"

HOSTILE = "\n\n".join([
    "# Checkout Revamp",
    "## Goals & <risks>",
    "Text with <script>alert(1)</script>, <b>bold?</b>, &amp; &lt;tag&gt; &#12; &#x0b;",
    "Controls \x01\x08\x0b\x0c\x1f\x7f and a lone surrogate \ud800.",
    "```python\nx = ']]>'\nprint(\"]]]]>\") # <![CDATA[ nested ]]>\n```",
    "```\n]]>\n```",
    "    indented ]]> code <b>",
    "```mermaid\ngraph TD; A-->B; B-->C]]>\n```",
    "```bad lang\"><x>\nsome\n```",
    "| a | <b>b</b> | c |\n|:-:|--:|---|\n| 1 | `]]>` |\n"
    "| **x** | [link](https://example.com/?a=1&b=2) | ![pic](https://example.com/p.png) |",
    "[js](javascript:alert(1)) [vb](vbscript:x) [data](data:text/html,<x>) [file](file:///etc/passwd) "
    "[rel](/relative) [anchor](#goals) [mail](mailto:a@example.com) [ok](https://example.com \"t\\\"i<t>le\")",
    "![local](img/x.png) ![remote](https://example.com/a.png \"title\")",
    "> quote\n> > nested **strong *em ~~del~~***",
    "1. one\n2. two\n   - a\n   - b\n\n3) three",
    "line one  \nline two\\\nline three",
    "---",
    "*" * 400 + "deep" + "*" * 400,
    "> " * 30 + "deep quote",
    "\n".join("  " * i + "- level" for i in range(80)),  # beyond the parser's nesting limit: last
])


def wrap(storage: str) -> ET.Element:
    declarations = "".join(f' xmlns:{prefix}="{uri}"' for prefix, uri in NAMESPACES.items())
    return ET.fromstring(f"<root{declarations}>{storage}</root>")


def code_macros(root: ET.Element) -> list[ET.Element]:
    return [m for m in root.iter(f"{AC}structured-macro") if m.get(f"{AC}name") == "code"]


def params(macro: ET.Element) -> dict[str, str]:
    return {p.get(f"{AC}name", ""): p.text or "" for p in macro.findall(f"{AC}parameter")}


def body_text(macro: ET.Element) -> str:
    element = macro.find(f"{AC}plain-text-body")
    assert element is not None
    return element.text or ""


# ----------------------------------------------------------------------------- storage format
def test_a_hostile_prd_becomes_well_formed_storage_with_its_structure_kept() -> None:
    storage, warnings = to_storage(HOSTILE, META)
    root = wrap(storage)  # raises if not well-formed
    assert storage_problem(storage) is None

    assert root.find("h1") is None  # the title is Confluence's page title, not a heading in the body
    assert [h.text for h in root.iter("h2")] == ["Goals & <risks>"]
    assert root.find(".//script") is None and root.find(".//b") is None  # raw HTML stays text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in storage

    codes = code_macros(root)
    assert body_text(codes[0]) == "x = ']]>'\nprint(\"]]]]>\") # <![CDATA[ nested ]]>"
    assert params(codes[0]) == {"language": "py"}
    assert body_text(codes[1]) == "]]>"
    assert body_text(codes[2]) == "indented ]]> code <b>"
    assert params(codes[3]) == {"language": "none", "title": "Mermaid diagram (source)"}
    assert body_text(codes[3]) == "graph TD; A-->B; B-->C]]>"
    assert params(codes[4])["language"] == "none"  # not a language the macro knows

    table = root.find("table")
    assert table is not None and table.find("thead") is None
    rows = table.findall("tbody/tr")
    assert [[c.tag for c in row] for row in rows] == [["th", "th", "th"], ["td", "td", "td"], ["td", "td", "td"]]
    assert rows[0][0].find("p").get("style") == "text-align: center;"  # type: ignore[union-attr]
    assert "".join(rows[0][1].itertext()) == "<b>b</b>"
    assert "".join(rows[1][1].itertext()) == "]]>"

    hrefs = [a.get("href") for a in root.iter("a")]
    assert hrefs == ["https://example.com/?a=1&b=2", "https://example.com/p.png", "mailto:a@example.com",
                     "https://example.com", "https://example.com/a.png"]
    assert any(a.get("title") == 't"i<t>le' for a in root.iter("a"))
    text = "".join(root.itertext())
    for label in ("js", "vb", "rel", "anchor", "[Image: local]", "[Image: remote]", "[Image: pic]"):
        assert label in text
    assert "javascript:" not in "".join(a.get("href", "") for a in root.iter("a"))

    ordered = root.find("ol")
    assert ordered is not None and [(li.text or "").strip() for li in ordered.findall("li")] == ["one", "two"]
    assert [li.text for li in ordered.findall("li/ul/li")] == ["a", "b"]
    assert root.find("blockquote/blockquote") is not None
    assert root.find(".//s") is not None and root.find("hr") is not None
    assert "\ufffd" in text and not any(ch in text for ch in "\x01\x08\x0b\x0c\x1f")
    assert "deep" in text and "level" in text and "deep quote" in text

    assert any("Mermaid" in w for w in warnings)
    assert any("3 images" in w for w in warnings)
    assert any("control character" in w for w in warnings)
    assert any("link to a place in the PRD" in w for w in warnings)
    assert any("nests lists or quotes" in w for w in warnings)


def test_character_references_to_characters_xml_forbids_are_replaced_too() -> None:
    # model.parse cleans the text before parsing; markdown-it decodes &#12; (form feed) afterwards.
    storage, warnings = to_storage('&#12; [a](https://x.example "&#12;") ![&#xc;](https://x.example/i.png)', META)
    assert "\x0c" not in storage
    wrap(storage)
    assert any("3 control characters were replaced" in w for w in warnings)


def test_the_header_panel_carries_version_date_and_authors_escaped() -> None:
    storage, _ = to_storage("## Overview\n\nText.", META)
    root = wrap(storage)
    panel = root.find(f"{AC}structured-macro")
    assert panel is not None and panel.get(f"{AC}name") == "info"
    panel_text = "".join(panel.itertext())
    assert "v1.2.0" in panel_text and "2024-05-01" in panel_text
    assert "Ana <ana@example.com>, Bo & Co" in panel_text and "prd_01" in panel_text


def test_a_first_heading_other_than_the_title_is_kept() -> None:
    storage, warnings = to_storage("# Something else\n\n## Overview", META)
    assert [h.text for h in wrap(storage).iter("h1")] == ["Something else"]
    assert warnings == []


def test_a_prd_beyond_the_size_limit_is_refused() -> None:
    with pytest.raises(PayloadTooLarge):
        to_storage("x" * (MAX_MARKDOWN_CHARS + 1), META)


MARKDOWN_BITS = st.sampled_from(
    ["]]>", "<", "&", "`", "```", "\n", "|", "*", "[", "](", "#", "&#12;", "&#0;", "&#xd800;", "> ", "- "])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markdown=st.lists(st.text(max_size=8) | MARKDOWN_BITS, max_size=60).map("".join),
       title=st.text(max_size=40), author=st.text(max_size=20))
def test_any_text_becomes_well_formed_storage(markdown: str, title: str, author: str) -> None:
    storage, _ = to_storage(markdown, ExportMeta(title=title, version="1", date="x", authors=[author], prd_id="p"))
    assert storage_problem(storage) is None


# ----------------------------------------------------------------------------- the site secret
def secret(**fields: object) -> str:
    base: dict[str, object] = {"baseUrl": "https://acme.atlassian.net", "email": "pm@acme.example",
                               "apiToken": "ATATT-sekrit", "spaceKey": "PRD"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None})


def test_a_secret_is_read_and_its_token_never_shown() -> None:
    site = ConfluenceSite.from_secret(secret(baseUrl=" https://acme.atlassian.net/wiki/ ", parentId=12345))
    assert site == ConfluenceSite("https://acme.atlassian.net", "pm@acme.example", "ATATT-sekrit", "PRD", "12345")
    assert "ATATT-sekrit" not in repr(site) and "ATATT-sekrit" not in str(site)
    assert ConfluenceSite.from_secret(secret(parentId="")).parent_id is None


@pytest.mark.parametrize(("text", "named"), [
    ("not json", ["JSON object"]),
    ('["a list"]', ["JSON object"]),
    (secret(baseUrl=None, apiToken=""), ["baseUrl is missing", "apiToken is missing"]),
    (secret(email=None, spaceKey=" "), ["email is missing", "spaceKey is missing"]),
    (secret(baseUrl="ftp://acme.atlassian.net"), ["baseUrl must be"]),
    (secret(baseUrl="acme.atlassian.net"), ["baseUrl must be"]),
    (secret(baseUrl="https://user:ATATT-sekrit@acme.atlassian.net"), ["baseUrl must be"]),
    (secret(parentId="abc"), ["parentId must be"]),
    (secret(parentId=True), ["parentId must be"]),
])
def test_an_unusable_secret_says_what_is_wrong_without_echoing_it(text: str, named: list[str]) -> None:
    with pytest.raises(Unprocessable) as caught:
        ConfluenceSite.from_secret(text)
    assert caught.value.code == "confluence_misconfigured"
    assert all(n in caught.value.message for n in named)
    assert "sekrit" not in caught.value.message


# ----------------------------------------------------------------------------- publishing
@pytest.fixture
def fake(loopback_only: None) -> Iterator[FakeConfluence]:
    with FakeConfluence(spaces={"PRD": "98305", "OPS": "98306"}) as server:
        yield server


@pytest.fixture
def site(fake: FakeConfluence) -> ConfluenceSite:
    return ConfluenceSite.from_secret(fake.secret("PRD"))


@pytest.fixture
def sleeps() -> list[float]:
    return []


STORAGE, _ = to_storage("# Checkout Revamp\n\n## Goals\n\n- Faster checkout", META)


def go(site: ConfluenceSite, sleeps: list[float], *, title: str = "Checkout Revamp", page_id: str | None = None,
       message: str = "v1.2.0", storage: str = STORAGE, retries: int = 3) -> Published:
    return publish(site, title=title, storage=storage, page_id=page_id, message=message, retries=retries,
                   backoff=0.001, sleep=sleeps.append, timeout=5)


def test_publish_creates_then_updates_the_same_page(fake: FakeConfluence, site: ConfluenceSite,
                                                    sleeps: list[float]) -> None:
    first = go(site, sleeps)
    assert first.created and first.version == 1
    assert first.url == f"{fake.url}/wiki/spaces/PRD/pages/{first.page_id}/Checkout+Revamp"
    page = fake.pages[first.page_id]
    assert (page.space_id, page.title, page.body, page.parent_id) == ("98305", "Checkout Revamp", STORAGE, None)

    second = go(site, sleeps, page_id=first.page_id, message="v1.3.0: goals rewritten",
                storage=STORAGE.replace("Faster", "Much faster"))
    assert second == Published(first.page_id, 2, first.url, created=False)
    page = fake.pages[first.page_id]
    assert page.version == 2 and "Much faster" in page.body and page.message == "v1.3.0: goals rewritten"
    assert len(fake.pages) == 1 and sleeps == []
    put = next(r for r in fake.requests if r.method == "PUT")
    assert put.body["version"] == {"number": 2, "message": "v1.3.0: goals rewritten"}
    assert put.body["status"] == "current" and put.body["body"]["representation"] == "storage"


def test_a_page_goes_under_the_configured_parent(fake: FakeConfluence, site: ConfluenceSite,
                                                 sleeps: list[float]) -> None:
    parent = fake.add_page("PRD", "Product requirements")
    result = go(ConfluenceSite(site.base_url, site.email, site.api_token, "PRD", parent_id=parent), sleeps)
    assert fake.pages[result.page_id].parent_id == parent


def test_an_edit_in_confluence_between_read_and_write_is_retried_on_the_new_version(
        fake: FakeConfluence, site: ConfluenceSite, sleeps: list[float]) -> None:
    first = go(site, sleeps)
    fake.before_next(lambda: fake.edit(first.page_id), method="PUT")
    result = go(site, sleeps, page_id=first.page_id, message="v2")
    assert result.version == 3 and not result.created
    assert [(r.method, r.status) for r in fake.requests if "/pages/" in r.path] == [
        ("GET", 200), ("PUT", 409), ("GET", 200), ("PUT", 200)]
    assert fake.pages[first.page_id].body == STORAGE and fake.pages[first.page_id].message == "v2"


def test_a_page_that_keeps_changing_is_a_conflict_not_an_overwrite(
        fake: FakeConfluence, site: ConfluenceSite, sleeps: list[float]) -> None:
    first = go(site, sleeps)
    fake.before_next(lambda: fake.edit(first.page_id, body="<p>mine</p>"), method="PUT")
    fake.before_next(lambda: fake.edit(first.page_id, body="<p>mine again</p>"), method="PUT")
    with pytest.raises(Conflict) as caught:
        go(site, sleeps, page_id=first.page_id)
    assert caught.value.code == "confluence_edit_conflict"
    assert fake.pages[first.page_id].body == "<p>mine again</p>"


def test_a_page_deleted_for_good_in_confluence_is_created_again(
        fake: FakeConfluence, site: ConfluenceSite, sleeps: list[float]) -> None:
    first = go(site, sleeps)
    fake.trash(first.page_id)
    fake.purge(first.page_id)
    again = go(site, sleeps, page_id=first.page_id)
    assert again.created and again.version == 1 and again.page_id != first.page_id
    assert list(fake.pages) == [again.page_id]


def test_a_page_in_the_trash_is_not_resurrected(fake: FakeConfluence, site: ConfluenceSite,
                                                sleeps: list[float]) -> None:
    first = go(site, sleeps)
    fake.trash(first.page_id)
    with pytest.raises(Conflict) as caught:  # the trashed page still holds the title
        go(site, sleeps, page_id=first.page_id)
    assert caught.value.code == "confluence_title_taken" and "trash" in caught.value.message
    renamed = go(site, sleeps, page_id=first.page_id, title="Checkout Revamp 2")
    assert renamed.created and renamed.page_id != first.page_id
    assert fake.pages[first.page_id].status == "trashed" and fake.pages[first.page_id].version == 1
    assert not any(r.method == "PUT" for r in fake.requests)


def test_a_title_used_by_another_page_is_a_conflict_and_nothing_is_overwritten(
        fake: FakeConfluence, site: ConfluenceSite, sleeps: list[float]) -> None:
    theirs = fake.add_page("PRD", "Checkout Revamp", "<p>Someone else's page</p>")
    with pytest.raises(Conflict) as caught:
        go(site, sleeps)
    assert caught.value.code == "confluence_title_taken" and caught.value.status == 409
    assert "Checkout Revamp" in caught.value.message and "Rename the PRD" in caught.value.message
    assert fake.pages[theirs].body == "<p>Someone else's page</p>" and fake.pages[theirs].version == 1
    assert len(fake.pages) == 1


def test_renaming_onto_another_pages_title_is_a_conflict(fake: FakeConfluence, site: ConfluenceSite,
                                                         sleeps: list[float]) -> None:
    ours = go(site, sleeps)
    fake.add_page("PRD", "Payments")
    with pytest.raises(Conflict) as caught:  # Confluence's own 400 says nothing about the title
        go(site, sleeps, page_id=ours.page_id, title="Payments")
    assert caught.value.code == "confluence_title_taken"
    assert fake.pages[ours.page_id].title == "Checkout Revamp"


def test_refused_credentials_are_an_auth_error_that_never_shows_the_token(
        fake: FakeConfluence, site: ConfluenceSite, sleeps: list[float]) -> None:
    wrong = ConfluenceSite(site.base_url, site.email, "ATATT-wrong-sekrit", "PRD")
    with pytest.raises(Unprocessable) as caught:
        go(wrong, sleeps)
    err = caught.value
    assert err.code == "confluence_auth" and site.email in err.message
    assert "sekrit" not in f"{err.message} {err.details} {err!r} {err.to_body()}"
    assert sleeps == [] and fake.pages == {}  # not retried


def test_throttling_and_unavailability_are_retried_honouring_retry_after(
        fake: FakeConfluence, site: ConfluenceSite, sleeps: list[float]) -> None:
    fake.fail_next(503, count=2, method="POST")
    fake.fail_next(429, retry_after=0.25, method="GET", path="/wiki/api/v2/spaces")
    result = go(site, sleeps)
    assert result.created and len(fake.pages) == 1
    assert len(sleeps) == 3 and sleeps[0] >= 0.25  # the 429's Retry-After, then two backoffs
    assert [r.status for r in fake.requests] == [429, 200, 503, 503, 200]


def test_persistent_unavailability_fails_as_retryable(fake: FakeConfluence, site: ConfluenceSite,
                                                      sleeps: list[float]) -> None:
    fake.fail_next(503, count=100)
    with pytest.raises(DependencyFailed) as caught:
        go(site, sleeps, retries=2)
    assert caught.value.code == "confluence_unavailable" and "503" in caught.value.message
    assert len(fake.requests) == 3 and len(sleeps) == 2


def test_a_retry_after_too_long_to_wait_fails_at_once(fake: FakeConfluence, site: ConfluenceSite,
                                                      sleeps: list[float]) -> None:
    fake.fail_next(429, retry_after=3600)
    with pytest.raises(DependencyFailed):
        go(site, sleeps)
    assert len(fake.requests) == 1 and sleeps == []


def test_an_unreachable_site_fails_as_retryable(loopback_only: None, sleeps: list[float]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = ConfluenceSite(f"http://127.0.0.1:{port}", "pm@acme.example", "tok", "PRD")
    with pytest.raises(DependencyFailed) as caught:
        go(site, sleeps, retries=1)
    assert caught.value.code == "confluence_unavailable" and len(sleeps) == 1


def test_a_create_whose_answer_was_lost_is_not_reported_as_someone_elses_page(
        fake: FakeConfluence, site: ConfluenceSite, sleeps: list[float]) -> None:
    fake.fail_next(500, method="POST", after=True)  # the page is created, the answer is a 500
    result = go(site, sleeps)
    assert result.created and result.version == 1
    assert list(fake.pages) == [result.page_id]


def test_an_unknown_space_is_named(fake: FakeConfluence, site: ConfluenceSite, sleeps: list[float]) -> None:
    with pytest.raises(Unprocessable) as caught:
        go(ConfluenceSite(site.base_url, site.email, site.api_token, "NOPE"), sleeps)
    assert caught.value.code == "confluence_space_not_found" and "NOPE" in caught.value.message


def test_a_base_url_without_the_v2_api_is_a_configuration_error(fake: FakeConfluence, site: ConfluenceSite,
                                                                 sleeps: list[float]) -> None:
    with pytest.raises(Unprocessable) as caught:
        go(ConfluenceSite(site.base_url + "/confluence", site.email, site.api_token, "PRD"), sleeps)
    assert caught.value.code == "confluence_misconfigured" and "baseUrl" in caught.value.message


def test_other_refusals_carry_confluences_reason_shortened(fake: FakeConfluence, site: ConfluenceSite,
                                                           sleeps: list[float]) -> None:
    fake.fail_next(400, method="POST", message="Body is invalid: " + "x" * 1000)
    with pytest.raises(Unprocessable) as caught:
        go(site, sleeps)
    assert caught.value.code == "confluence_rejected"
    assert "Body is invalid" in caught.value.message and len(caught.value.message) < 400


def test_malformed_storage_is_refused_by_the_stand_in(fake: FakeConfluence, site: ConfluenceSite,
                                                      sleeps: list[float]) -> None:
    with pytest.raises(Unprocessable) as caught:
        go(site, sleeps, storage="<p>unclosed")
    assert caught.value.code == "confluence_rejected" and "xhtml" in caught.value.message


def test_the_stand_in_shows_a_published_page_at_its_web_link() -> None:
    with serve_confluence() as fake:
        site = ConfluenceSite.from_secret(fake.secret())
        storage, _ = to_storage("## Goals\n\n<script>alert(1)</script> fast\n", META)
        page = publish(site, title="Web view", storage=storage, page_id=None, message="m")
        shown = requests.get(page.url, timeout=10)
        assert shown.status_code == 200 and "<h2>Goals</h2>" in shown.text and "<script>" not in shown.text
        assert "script-src" not in shown.headers["Content-Security-Policy"]
        assert requests.get(page.url.replace(page.page_id, "1"), timeout=10).status_code == 404
