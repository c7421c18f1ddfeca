"""Publish a PRD to a Confluence Cloud space (issue #16, flow 2.3: export → Confluence).

Two halves, both pure of AWS:

* :func:`to_storage` turns the PRD into Confluence **storage format** (the XHTML-based XML that
  Confluence keeps pages in) from the same one parse as the other exports
  (:func:`prdtool.exports.model.parse`).  The HTML writer's walk is reused; only what storage format
  spells differently is overridden: self-closed ``<br />``/``<hr />``, headings without ``id``
  (Confluence makes its own anchors), code blocks as the ``code`` macro with the code in CDATA,
  tables with the header row inside ``<tbody>``, links limited to http/https/mailto (an in-page
  ``#anchor`` keeps its text only), images as text placeholders.  The result is well-formed XML for
  any input — Confluence answers 400 to malformed storage — because every string from the PRD is
  escaped, raw HTML never reaches the tree (the parser runs with ``html=False``) and characters XML 1.0
  cannot carry are replaced.  The PRD's title is not repeated as an ``h1`` (Confluence shows the page
  title); a short ``info`` panel carries version, date and authors.
* :func:`publish` creates or updates the page with ``requests`` (Basic auth: account e-mail and API
  token) against the Confluence Cloud REST API v2.

What was checked about the real API, and where (no Atlassian OpenAPI document is in this repository:
specs/README.md says the v2 description's licence is unclear), so re-check on a real site — the
contract test ``tests/contract/test_confluence.py`` does that when ``PRDTOOL_CONTRACT_CONFLUENCE_*``
is set:

* Paths, bodies and version rules — confluence.js (MrRefactoring/confluence.js, generated from
  Atlassian's v2 spec: ``src/v2/api/page.ts``, ``src/v2/models/*.ts``, ``docs/recipes/pages.md``),
  md2conf's v2 client (hunyadi/md2conf ``md2conf/api_v2.py``), n8n's Confluence node
  (``packages/nodes-base/nodes/Confluence``) and developer.atlassian.com's api-group-page:
  ``GET /wiki/api/v2/spaces?keys=KEY`` → ``{"results": [{"id", "key", ...}]}``;
  ``POST /wiki/api/v2/pages`` ``{"spaceId", "status": "current", "title", "parentId"?, "body":
  {"representation": "storage", "value"}}`` → 200 and the page; ``GET /wiki/api/v2/pages/{id}``
  (``version.number``; ``body-format=storage`` adds ``body.storage.value``); ``PUT /wiki/api/v2/pages/{id}``
  ``{"id", "status", "title", "body", "version": {"number": current + 1, "message"}}``, a stale number
  is a 409; ids are strings; ``_links`` has ``webui``, ``editui``, ``tinyui`` and ``base`` (the site's
  ``…/wiki``); ``DELETE`` moves a page to the trash, ``DELETE ?purge=true`` removes a trashed one.
* Errors: v2 answers ``{"errors": [{"status", "code", "title", "detail"}]}``, v1 ``{"message"}``
  (n8n's ``transport/index.ts`` reads both).  A duplicate title on create is a **400** "A page with
  this title already exists: …" (reported against Confluence Cloud in atlassian-python-api#1553 and
  madhead/doktor#58).  Renaming a page, by update, to a title another page has is a 400 with an
  unrelated message (sooperset/mcp-atlassian#692), so on a 400 to an update that changes the title we
  look the title up before saying what went wrong.
* Titles are unique in a space **including trashed and archived pages**, and updating a trashed
  page with ``status: current`` restores it (md2conf#275's maintainer; Confluence's v1 docs).  So a page
  whose status is no longer ``current`` is treated like a deleted one: we create a new page rather
  than resurrect what someone deleted, and if the trashed page still holds the title the person
  exporting is told to empty it from the trash or rename the PRD.

Retries: 429, 5xx and connection failures are retried ``retries`` times with exponential backoff and
jitter, waiting at least what ``Retry-After`` asks (a wait longer than :data:`MAX_RETRY_AFTER` is not
slept through: the export fails as retryable at once).  A create whose answer was lost (a 5xx or a
broken connection after sending) may have created the page, and the retry then meets "title already
exists": in that case only, a page with exactly this title still at version 1 is taken as ours.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from prdtool.errors import Conflict, DependencyFailed, PayloadTooLarge, Unprocessable
from prdtool.exports.html_writer import _e, _Writer
from prdtool.exports.model import (
    MERMAID_CAPTION,
    ExportMeta,
    Node,
    clean_meta,
    clean_text,
    cleaning_warnings,
    code_language,
    common_warnings,
    image_label,
    is_mermaid,
    parse,
    plain_text,
    safe_href,
    table_rows,
)
from prdtool.exports.render import MAX_MARKDOWN_CHARS
from prdtool.observability import logger

# The namespaces storage format's prefixes stand for (what Confluence and md2conf declare when they
# parse a body as XML); a body is checked by wrapping it in an element that declares them.
NAMESPACES = {"ac": "http://atlassian.com/content", "ri": "http://atlassian.com/resource/identifier"}
MAX_TITLE_CHARS = 255  # Confluence's limit for a page title
MAX_VERSION_MESSAGE_CHARS = 255
MAX_ERROR_CHARS = 300  # how much of Confluence's own error text reaches the person exporting
MAX_RETRY_AFTER = 20.0  # seconds; a longer Retry-After is not slept through inside one export

# Fence info → the code macro's language names (Confluence Cloud's list, with common aliases);
# anything else is "none" (no highlighting) rather than a name the macro does not know.
_MACRO_LANGUAGES = {name: name for name in (
    "abap", "actionscript3", "ada", "applescript", "arduino", "autoit", "bash", "c", "c#", "clojure",
    "coffeescript", "coldfusion", "cpp", "css", "cuda", "d", "dart", "delphi", "diff", "dockerfile",
    "elixir", "erl", "fortran", "foxpro", "gherkin", "go", "graphql", "groovy", "handlebars", "haskell",
    "haxe", "hcl", "html", "java", "javafx", "js", "json", "jsx", "julia", "kotlin", "livescript", "lua",
    "mathematica", "matlab", "objectivec", "objectivej", "ocaml", "octave", "pascal", "perl", "php",
    "powershell", "prolog", "protobuf", "puppet", "py", "qml", "r", "racket", "rst", "ruby", "rust",
    "sass", "scala", "scheme", "shell", "smalltalk", "splunk", "sql", "standardml", "swift", "tcl", "tex",
    "toml", "tsx", "typescript", "vala", "vb", "verilog", "vhdl", "xml", "xquery", "yaml",
)} | {
    "csharp": "c#", "cs": "c#", "c++": "cpp", "erlang": "erl", "javascript": "js", "python": "py",
    "sh": "bash", "zsh": "bash", "console": "shell", "ts": "typescript", "yml": "yaml", "rb": "ruby",
    "rs": "rust", "kt": "kotlin", "golang": "go", "objective-c": "objectivec", "ps1": "powershell",
    "docker": "dockerfile", "tf": "hcl", "proto": "protobuf", "patch": "diff", "latex": "tex",
}
_NOT_CURRENT = "not current"  # what _Api.page answers for a page in the trash, archived, ...


# ----------------------------------------------------------------------------- storage format
def _cdata(text: str) -> str:
    """``text`` as CDATA; a ``]]>`` inside is split across two sections (``]]`` | ``>``)."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


class _StorageWriter(_Writer):
    """The HTML writer's walk with storage format's spelling where it differs."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor_links = 0  # in-page links kept as text

    def block(self, node: Node, *, tight: bool = False) -> str:
        kind = node.type
        if kind == "heading":
            tag = f"h{node.level}"
            return f"<{tag}>{self.inline_of(node)}</{tag}>"
        if kind in ("fence", "code_block"):
            return self.code_macro(node)
        if kind == "hr":
            return "<hr />"
        return super().block(node, tight=tight)

    def code_macro(self, node: Node) -> str:
        language = _MACRO_LANGUAGES.get(code_language(node).lower(), "none")
        params = [("language", language)]
        if is_mermaid(node):
            params.append(("title", MERMAID_CAPTION))
        head = "".join(f'<ac:parameter ac:name="{name}">{_e(value)}</ac:parameter>' for name, value in params)
        return (f'<ac:structured-macro ac:name="code" ac:schema-version="1">{head}'
                f"<ac:plain-text-body>{_cdata(node.content.rstrip(chr(10)))}</ac:plain-text-body>"
                "</ac:structured-macro>")

    def table(self, node: Node) -> str:
        header, body, aligns = table_rows(node)

        def row(tag: str, cells: list[Node]) -> str:
            out = []
            for cell, align in zip(cells, aligns, strict=True):
                style = f' style="text-align: {align};"' if align else ""
                out.append(f"<{tag}><p{style}>{self.inline_of(cell)}</p></{tag}>")
            return "<tr>" + "".join(out) + "</tr>"

        rows = [row("th", header), *(row("td", r) for r in body)]
        return "<table><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"

    def inline(self, nodes: list[Node]) -> str:
        out: list[str] = []
        for node in nodes:
            if node.type == "hardbreak":
                out.append("<br />\n")
            elif node.type == "link":
                url = str(node.attrs.get("href", ""))
                href = safe_href(url)
                body = self.inline(node.children)
                if href is None and url.strip().startswith("#"):
                    self.anchor_links += 1
                title = str(node.attrs.get("title", ""))
                title_attr = f' title="{_e(title)}"' if title else ""
                out.append(f'<a href="{_e(href)}"{title_attr}>{body}</a>' if href else body)
            elif node.type == "image":
                label = _e(image_label(node))
                href = safe_href(str(node.attrs.get("src", "")))
                out.append(f'<a href="{_e(href)}">{label}</a>' if href else label)
            else:
                out.append(super().inline([node]))
        return "".join(out)


def _same_title(heading: Node, title: str) -> bool:
    def norm(text: str) -> str:
        return " ".join(text.split()).casefold()

    return heading.type == "heading" and heading.level == 1 and norm(plain_text(heading)) == norm(title)


def _header(meta: ExportMeta) -> str:
    facts = []
    if meta.version_label:
        facts.append(f"Version <strong>{_e(meta.version_label)}</strong>")
    if meta.date_label:
        facts.append(_e(meta.date_label))
    if meta.authors_label:
        facts.append(f"Authors: {_e(meta.authors_label)}")
    summary = f"<p>{' · '.join(facts)}</p>" if facts else ""
    return ('<ac:structured-macro ac:name="info" ac:schema-version="1"><ac:rich-text-body>'
            f"{summary}<p>Published from PRD Tool (PRD {_e(meta.prd_id)}). Edits made on this page are "
            "replaced the next time the PRD is published.</p></ac:rich-text-body></ac:structured-macro>")


def to_storage(markdown: str, meta: ExportMeta) -> tuple[str, list[str]]:
    """The PRD as a Confluence storage-format body, and what did not carry over (sentences for the
    person exporting).  Well-formed XML for any input.  Raises
    :class:`~prdtool.errors.PayloadTooLarge` beyond :data:`~prdtool.exports.render.MAX_MARKDOWN_CHARS`."""
    if len(markdown) > MAX_MARKDOWN_CHARS:
        raise PayloadTooLarge(f"The PRD is too large to publish ({len(markdown)} characters)")
    meta = clean_meta(meta)
    parsed = parse(markdown)
    blocks = parsed.root.children
    if blocks and _same_title(blocks[0], meta.title):
        blocks = blocks[1:]  # Confluence shows the page title above the body
    writer = _StorageWriter()
    body = writer.blocks(blocks)
    warnings = common_warnings(parsed) + cleaning_warnings(parsed)
    if writer.anchor_links:
        n = writer.anchor_links
        warnings.append(f"{n} link{'s' if n > 1 else ''} to a place in the PRD {'are' if n > 1 else 'is'} "
                        "shown as text (Confluence names its own heading anchors).")
    return f"{_header(meta)}\n{body}\n", warnings


# ----------------------------------------------------------------------------- the site
def _misconfigured(message: str) -> Unprocessable:
    return Unprocessable(message, code="confluence_misconfigured")


@dataclass(frozen=True)
class ConfluenceSite:
    """Where and as whom to publish: a Confluence Cloud site, an account and a space (the secret)."""

    base_url: str  # https://acme.atlassian.net (no /wiki)
    email: str
    api_token: str = field(repr=False)
    space_key: str
    parent_id: str | None = None

    @classmethod
    def from_secret(cls, text: str | bytes) -> ConfluenceSite:
        """Parse the JSON secret ``{"baseUrl", "email", "apiToken", "spaceKey", "parentId"?}``.

        Raises :class:`~prdtool.errors.Unprocessable` (``confluence_misconfigured``) naming what is
        missing or wrong; values are never echoed (the token could be anywhere)."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError):
            data = None
        if not isinstance(data, dict):
            raise _misconfigured("The Confluence secret is not a JSON object with baseUrl, email, apiToken "
                                 "and spaceKey")
        problems = [f"{key} is missing" for key in ("baseUrl", "email", "apiToken", "spaceKey")
                    if not isinstance(data.get(key), str) or not data[key].strip()]
        base_url = str(data.get("baseUrl") or "").strip().rstrip("/").removesuffix("/wiki").rstrip("/")
        if "baseUrl is missing" not in problems:
            try:
                parts = urlsplit(base_url)
                valid = (parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query
                         and not parts.fragment and "@" not in parts.netloc)
            except ValueError:
                valid = False
            if not valid:
                problems.append("baseUrl must be the site's http(s) address, like https://acme.atlassian.net")
        raw_parent = data.get("parentId")
        is_id = isinstance(raw_parent, int | str) and not isinstance(raw_parent, bool)
        parent_id = str(raw_parent).strip() if is_id else ""
        if raw_parent not in (None, "") and not parent_id.isdigit():
            problems.append("parentId must be a page id (digits)")
        if problems:
            raise _misconfigured("The Confluence secret is not usable: " + "; ".join(problems))
        return cls(base_url=base_url, email=data["email"].strip(), api_token=data["apiToken"].strip(),
                   space_key=data["spaceKey"].strip(), parent_id=parent_id or None)


@dataclass(frozen=True)
class Published:
    """The page the PRD is now on: its id, its version, its address in the web UI, and whether this
    publish created it (a new page, also when the previous one was deleted in Confluence)."""

    page_id: str
    version: int
    url: str
    created: bool


# ----------------------------------------------------------------------------- the REST client
def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None


class _Api:
    """One publish's HTTP calls: auth, timeouts, retries and the mapping of failures to domain errors."""

    def __init__(self, site: ConfluenceSite, session: requests.Session, *, timeout: float, retries: int,
                 backoff: float, sleep: Callable[[float], None]) -> None:
        self.site = site
        self.session = session
        self.timeout = timeout
        self.retries = max(retries, 0)
        self.backoff = backoff
        self.sleep = sleep
        self._space_id: str | None = None

    # -- transport
    def send(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
             body: Any = None) -> tuple[requests.Response, bool]:
        """The first answer that is neither throttling nor a server error, and whether an earlier
        attempt may have been carried out although its answer was lost (a 5xx, a broken connection).
        401/403 raise ``confluence_auth``; retries exhausted raise ``confluence_unavailable``."""
        maybe_done = False
        failure = ""
        for attempt in range(self.retries + 1):
            wait: float | None = None
            try:
                response = self.session.request(
                    method, self.site.base_url + path, params=params, json=body, timeout=self.timeout,
                    auth=(self.site.email, self.site.api_token), allow_redirects=False,
                    headers={"Accept": "application/json"},
                )
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                maybe_done = maybe_done or not isinstance(exc, requests.ConnectTimeout)
                failure = f"could not be reached ({type(exc).__name__})"
            except requests.RequestException as exc:
                raise _misconfigured(f"Confluence at {self.site.base_url} could not be called "
                                     f"({type(exc).__name__}); check baseUrl") from None
            else:
                status = response.status_code
                if status in (401, 403):
                    raise self._auth_error(response)
                if status != 429 and status < 500:
                    return response, maybe_done
                maybe_done = maybe_done or status >= 500
                wait = _retry_after(response.headers.get("Retry-After"))
                failure = f"answered HTTP {status}"
                response.close()
            if attempt == self.retries or (wait is not None and wait > MAX_RETRY_AFTER):
                break
            pause = self.backoff * 2**attempt * random.uniform(0.5, 1.0)
            logger.info("confluence retry", extra={"method": method, "attempt": attempt + 1, "failure": failure})
            self.sleep(max(pause, wait or 0.0))
        raise DependencyFailed(f"Confluence {failure}; publishing was not completed. Try again in a few minutes.",
                               code="confluence_unavailable")

    def _auth_error(self, response: requests.Response) -> Unprocessable:
        if response.status_code == 401:
            text = (f"Confluence refused the credentials of {self.site.email}: check the account e-mail and "
                    "API token in the Confluence settings (tokens expire).")
        else:
            text = (f"The Confluence account {self.site.email} is not allowed to do this in space "
                    f"{self.site.space_key}: it needs permission to view the space and add pages.")
        return Unprocessable(text, code="confluence_auth")

    def message(self, response: requests.Response) -> str:
        """Confluence's own explanation (v2 ``errors[0].title``/``detail`` or v1 ``message``), short."""
        text = ""
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            errors = data.get("errors")
            first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
            parts = [first.get("title"), first.get("detail")] if first else [data.get("message")]
            text = ": ".join(p for p in parts if isinstance(p, str) and p)
        if not text and "json" not in response.headers.get("Content-Type", ""):
            text = response.text if len(response.text) < 2000 else ""
        text = " ".join(text.split()).replace(self.site.api_token, "***")
        if len(text) > MAX_ERROR_CHARS:
            text = text[: MAX_ERROR_CHARS - 1] + "…"
        return text or f"HTTP {response.status_code}"

    def rejected(self, response: requests.Response, what: str) -> Unprocessable:
        if 300 <= response.status_code < 400:
            return _misconfigured(f"Confluence answered {what} with a redirect (HTTP {response.status_code}): "
                                  f"check that baseUrl {self.site.base_url} is the site's address")
        return Unprocessable(f"Confluence refused {what}: {self.message(response)}", code="confluence_rejected")

    def json(self, response: requests.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise _misconfigured(f"{self.site.base_url} did not answer like Confluence's REST API: check baseUrl")
        return data

    # -- calls
    def space_id(self) -> str:
        if self._space_id is None:
            key = self.site.space_key
            response, _ = self.send("GET", "/wiki/api/v2/spaces", params={"keys": key})
            if response.status_code == 404:
                raise _misconfigured(f"{self.site.base_url} has no Confluence Cloud REST API v2 (/wiki/api/v2): "
                                     "check baseUrl (Confluence Data Center is not supported)")
            if response.status_code != 200:
                raise self.rejected(response, f"the look-up of space {key}")
            results = [r for r in self.json(response).get("results") or [] if isinstance(r, dict)]
            match = [r for r in results if str(r.get("key", "")).casefold() == key.casefold()] or results
            if not match or not match[0].get("id"):
                raise Unprocessable(f"Confluence has no space with key {key} that {self.site.email} can see: "
                                    "check spaceKey and the account's permissions",
                                    code="confluence_space_not_found")
            self._space_id = str(match[0]["id"])
        return self._space_id

    def page(self, page_id: str) -> dict[str, Any] | None:
        """The page (with its version), or None if Confluence no longer has it; a page that is not
        ``current`` (trashed, archived) is reported with status :data:`_NOT_CURRENT`."""
        response, _ = self.send("GET", f"/wiki/api/v2/pages/{quote(page_id, safe='')}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.rejected(response, f"reading page {page_id}")
        page = self.json(response)
        if page.get("status", "current") != "current":
            logger.info("confluence page not current", extra={"page_id": page_id, "status": page.get("status")})
            page["status"] = _NOT_CURRENT
        return page

    def titled(self, title: str, space_id: str) -> list[dict[str, Any]]:
        """Pages of the space with exactly this title (the statuses Confluence lists by default)."""
        response, _ = self.send("GET", "/wiki/api/v2/pages", params={"space-id": space_id, "title": title})
        if response.status_code != 200:
            return []
        data = self.json(response)
        base = (data.get("_links") or {}).get("base")
        found = [r for r in data.get("results") or [] if isinstance(r, dict) and r.get("title") == title]
        for page in found:
            page["_links"] = {"base": base, **(page.get("_links") or {})}
        return found

    def published(self, page: dict[str, Any], *, created: bool) -> Published:
        links = page.get("_links") or {}
        page_id = str(page.get("id", ""))
        version = page.get("version") or {}
        number = version.get("number") if isinstance(version, dict) else None
        if not page_id or not isinstance(number, int):
            raise _misconfigured(f"{self.site.base_url} answered without a page id and version: check baseUrl")
        webui = str(links.get("webui") or f"/pages/viewpage.action?pageId={quote(page_id)}")
        base = str(links.get("base") or f"{self.site.base_url}/wiki")
        url = webui if webui.startswith(("http://", "https://")) else base.rstrip("/") + webui
        return Published(page_id=page_id, version=number, url=url, created=created)


# ----------------------------------------------------------------------------- publish
def _title_taken(api: _Api, response: requests.Response) -> bool:
    text = api.message(response).casefold()
    return response.status_code == 400 and "title" in text and "already exist" in text


def _title_conflict(site: ConfluenceSite, title: str) -> Conflict:
    return Conflict(
        f"Confluence space {site.space_key} already has a page titled \"{title}\" that this PRD did not "
        "publish (it may be in the space's trash or archived). Rename the PRD, or remove that page in "
        "Confluence (and empty it from the trash), then publish again.",
        code="confluence_title_taken",
    )


def _create(api: _Api, *, title: str, storage: str) -> Published:
    space_id = api.space_id()
    body: dict[str, Any] = {"spaceId": space_id, "status": "current", "title": title,
                            "body": {"representation": "storage", "value": storage}}
    if api.site.parent_id:
        body["parentId"] = api.site.parent_id
    response, maybe_done = api.send("POST", "/wiki/api/v2/pages", body=body)
    if response.status_code in (200, 201):
        return api.published(api.json(response), created=True)
    if _title_taken(api, response):
        if maybe_done:  # an earlier attempt may have created it and lost the answer
            ours = [p for p in api.titled(title, space_id)
                    if p.get("status", "current") == "current" and (p.get("version") or {}).get("number") == 1]
            if len(ours) == 1:
                logger.info("confluence create answer lost; page found", extra={"page_id": ours[0].get("id")})
                return api.published(ours[0], created=True)
        raise _title_conflict(api.site, title)
    if response.status_code == 404 and api.site.parent_id:
        raise Unprocessable(f"Confluence did not find the parent page {api.site.parent_id} in space "
                            f"{api.site.space_key}: check parentId ({api.message(response)})",
                            code="confluence_rejected")
    raise api.rejected(response, "the new page")


def _update(api: _Api, page: dict[str, Any], *, title: str, storage: str, message: str) -> Published:
    page_id = str(page["id"])
    for attempt in (1, 2):
        number = (page.get("version") or {}).get("number")
        if not isinstance(number, int):
            raise _misconfigured(f"{api.site.base_url} answered without the page's version: check baseUrl")
        body = {"id": page_id, "status": "current", "title": title,
                "body": {"representation": "storage", "value": storage},
                "version": {"number": number + 1, "message": message}}
        response, _ = api.send("PUT", f"/wiki/api/v2/pages/{quote(page_id, safe='')}", body=body)
        if response.status_code == 200:
            return api.published(api.json(response), created=False)
        if response.status_code == 404:  # deleted between our read and our write
            return _create(api, title=title, storage=storage)
        if response.status_code == 409 and attempt == 1:  # edited meanwhile: re-read, try once more
            fresh = api.page(page_id)
            if fresh is None or fresh.get("status") == _NOT_CURRENT:
                return _create(api, title=title, storage=storage)
            page = fresh
            continue
        if response.status_code == 409:
            raise Conflict("The Confluence page kept changing while the PRD was being published; publish again.",
                           code="confluence_edit_conflict")
        if _title_taken(api, response):
            raise _title_conflict(api.site, title)
        if response.status_code == 400 and title != page.get("title"):
            space_id = str(page.get("spaceId") or "") or api.space_id()
            if any(str(p.get("id")) != page_id for p in api.titled(title, space_id)):
                raise _title_conflict(api.site, title)
        raise api.rejected(response, f"the update of page {page_id}")
    raise AssertionError("unreachable")


def _page_title(title: str) -> str:
    text = " ".join(clean_text(title)[0].split())
    if not text:
        raise Unprocessable("The PRD needs a title to be published to Confluence", code="confluence_rejected")
    return text if len(text) <= MAX_TITLE_CHARS else text[: MAX_TITLE_CHARS - 1] + "…"


def publish(
    site: ConfluenceSite,
    *,
    title: str,
    storage: str,
    page_id: str | None,
    message: str,
    session: requests.Session | None = None,
    timeout: float = 20.0,
    retries: int = 3,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Published:
    """Put ``storage`` on the Confluence page ``page_id`` (a new version with ``message``), or on a
    new page titled ``title`` in the site's space (under ``parent_id``) when there is no page id or
    Confluence no longer has that page as a current one.

    Raises :class:`~prdtool.errors.Conflict` (``confluence_title_taken``: another page has the title;
    ``confluence_edit_conflict``: the page changed twice while publishing),
    :class:`~prdtool.errors.Unprocessable` (``confluence_auth``, ``confluence_space_not_found``,
    ``confluence_rejected`` with Confluence's reason, ``confluence_misconfigured``) and
    :class:`~prdtool.errors.DependencyFailed` (``confluence_unavailable``, retryable).
    ``retries``/``backoff``/``sleep`` bound the retries of 429, 5xx and connection failures.  A page
    that still exists is updated where it is, even if the configured space or parent changed since.
    """
    title = _page_title(title)
    message = " ".join(clean_text(message)[0].split())[:MAX_VERSION_MESSAGE_CHARS]
    own = session is None
    http = session if session is not None else requests.Session()
    api = _Api(site, http, timeout=timeout, retries=retries, backoff=backoff, sleep=sleep)
    try:
        if page_id and page_id.strip().isdigit():
            page = api.page(page_id.strip())
            if page is not None and page.get("status") != _NOT_CURRENT:
                return _update(api, page, title=title, storage=storage, message=message)
        elif page_id:
            logger.warning("confluence page id ignored", extra={"page_id": page_id[:40]})
        return _create(api, title=title, storage=storage)
    finally:
        if own:
            http.close()
