"""A local Confluence Cloud that speaks the REST API v2 paths and payloads the publisher uses.

Why: no Confluence site can be reached from tests or from the local stack, and a mock of ``requests``
would leave untested what is most likely to break: the request bodies, the version rule, the error
shapes and whether the storage body is well-formed XML (Confluence answers 400 when it is not).
``prdtool.exports.confluence.publish`` runs unchanged against it (``baseUrl`` = :attr:`FakeConfluence.url`).

What it serves (shapes as Atlassian documents them; see the publisher's module docstring for the
sources and what is not verified):

* ``GET /wiki/api/v2/spaces?keys=A,B`` — ``{"results": [{"id", "key", "name", "type", "status",
  "homepageId", "_links"}], "_links": {"base"}}`` for the configured spaces (key → id).
* ``POST /wiki/api/v2/pages`` — ``{"spaceId", "status"?, "title", "parentId"?, "body":
  {"representation": "storage", "value"}}`` → 200 and the page.  400 for a body that is not JSON, an
  unknown space, a status other than ``current``/``draft``, an empty title or one over 255 characters,
  a representation other than ``storage`` (real Confluence also takes ``wiki`` and
  ``atlas_doc_format``; this fake does not), a value that is not well-formed XML once wrapped in an
  element declaring the ``ac`` and ``ri`` namespaces (stricter than Confluence, which also knows
  HTML's named entities), and a title already used in the space — trashed pages included — with
  Confluence's message "A page with this title already exists: …".  404 for an unknown parent page.
* ``GET /wiki/api/v2/pages/{id}`` — the page (``?body-format=storage`` adds ``body.storage``), also
  when it is in the trash (``status: "trashed"``); 404 once purged or never created.
* ``GET /wiki/api/v2/pages?space-id=&title=&status=`` — ``{"results": [...], "_links": {"base"}}``
  (current and archived pages unless ``status`` says otherwise, as Confluence does).
* ``PUT /wiki/api/v2/pages/{id}`` — ``{"id", "status", "title", "body", "version": {"number",
  "message"}}``: ``version.number`` must be the current one plus one, else 409 ("Version must be
  incremented on update. Current version is: N"); 404 for an unknown page; a title another page has
  is a 400 with the unrelated message Confluence Cloud gives then.  A PUT with ``status: current``
  on a trashed page restores it (as Confluence does).
* ``DELETE /wiki/api/v2/pages/{id}`` — to the trash (204); ``?purge=true`` on a trashed page removes
  it for good.

Every request needs HTTP Basic auth with the configured e-mail and API token (else 401 JSON).  Errors
are shaped like v2's: ``{"errors": [{"status", "code", "title", "detail"}]}``.  Pages have string ids,
``version {number, message, createdAt, minorEdit, authorId}``, ``_links {webui, editui, tinyui, base}``,
``spaceId``, ``parentId``, ``title``, ``status``.

For tests: :meth:`FakeConfluence.fail_next` scripts faults (429/503 with ``Retry-After``, or an error
*after* the request was carried out — a lost answer); :meth:`~FakeConfluence.before_next` runs an
action just before a matching request (say, :meth:`~FakeConfluence.edit` to race a publish);
:meth:`~FakeConfluence.edit`, :meth:`~FakeConfluence.trash` and :meth:`~FakeConfluence.purge` do what
a person in Confluence would; :attr:`~FakeConfluence.pages` and :attr:`~FakeConfluence.requests` show
what the server holds and received.

The server runs on its own event loop in a daemon thread (:class:`FakeConfluence`, or
:func:`serve_confluence` as a context manager), on 127.0.0.1 and a free port by default;
``python -m scripts.localstack.confluence --port N`` runs one standalone.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import dataclasses
import hmac
import html
import itertools
import json
import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from aiohttp import web

from scripts.localstack.aioserver import LoopServer, run_standalone

log = logging.getLogger("localstack.confluence")

API = "/wiki/api/v2"
VIEW_PREFIX = "/wiki/spaces/"  # the web UI (page links): no login here
NAMESPACES = {"ac": "http://atlassian.com/content", "ri": "http://atlassian.com/resource/identifier"}
MAX_TITLE = 255
ACCOUNT_ID = "557058:fake-confluence-account"
TITLE_TAKEN = "A page with this title already exists: A page already exists with the same TITLE in this space"
# What Confluence Cloud answers when an update renames a page to a title another page has
# (sooperset/mcp-atlassian#692): nothing about the title.
RENAME_CLASH = ("No space or no content type, or setup a wrong version type set to content, or status param is "
                "not draft and status content is current")
ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 409: "CONFLICT",
               429: "TOO_MANY_REQUESTS", 500: "INTERNAL_SERVER_ERROR", 502: "BAD_GATEWAY",
               503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def storage_problem(value: str) -> str | None:
    """Why ``value`` is not well-formed storage format (wrapped in a root declaring ``ac`` and ``ri``),
    or None.  A DOCTYPE inside the value cannot get past the wrapper, so no entity is ever expanded."""
    declarations = "".join(f' xmlns:{prefix}="{uri}"' for prefix, uri in NAMESPACES.items())
    try:
        ET.fromstring(f"<root{declarations}>{value}</root>")
    except ET.ParseError as exc:
        return str(exc)
    return None


# ----------------------------------------------------------------------------- state
@dataclass
class FakePage:
    """A page as the fake holds it; ``versions`` is its history, oldest first: (number, title, body, message)."""

    id: str
    space_id: str
    title: str
    body: str
    status: str = "current"  # current | trashed
    version: int = 1
    message: str = ""
    parent_id: str | None = None
    created_at: str = field(default_factory=_now)
    version_at: str = field(default_factory=_now)
    versions: list[tuple[int, str, str, str]] = field(default_factory=list)


@dataclass
class ReceivedRequest:
    """A request as the server saw it (``status``: what it answered)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    status: int | None = None


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: float | None
    method: str | None
    path: str | None
    after: bool
    message: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or path.startswith(self.path))


@dataclass
class _Hook:
    action: Callable[[], object]
    method: str | None
    path: str | None


def _error(status: int, title: str, *, headers: Mapping[str, str] | None = None) -> web.Response:
    error = {"status": status, "code": ERROR_CODES.get(status, "ERROR"), "title": title, "detail": None}
    return web.json_response({"errors": [error]}, status=status, headers=headers)


# ----------------------------------------------------------------------------- the server
class FakeConfluence(LoopServer):
    """The site on its own loop thread; :meth:`start` returns its URL (also :attr:`url`), the
    ``baseUrl`` a publisher is configured with.  ``spaces`` maps space keys to ids."""

    thread_name = "fake-confluence"

    def __init__(
        self,
        *,
        email: str = "publisher@example.com",
        api_token: str = "fake-confluence-token",
        spaces: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.email = email
        self.api_token = api_token
        self.spaces = dict(spaces) if spaces is not None else {"PRD": "98305"}
        self._lock = threading.Lock()
        self._pages: dict[str, FakePage] = {}
        self._ids = itertools.count(65537)
        self._faults: list[_Fault] = []
        self._hooks: list[_Hook] = []
        self._requests: list[ReceivedRequest] = []

    # ------------------------------------------------------------------ control (any thread)
    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None, *, method: str | None = None,
                  path: str | None = None, after: bool = False, message: str | None = None) -> None:
        """Answer the next ``count`` requests (of ``method``, under ``path``) with ``status`` (and
        ``Retry-After``).  ``after=True`` carries each request out first and then answers the error, as
        when a gateway loses the answer."""
        with self._lock:
            self._faults.append(_Fault(status, count, retry_after, method, path, after, message))

    def clear_faults(self) -> None:
        """Forget the faults not yet answered."""
        with self._lock:
            self._faults.clear()

    def before_next(self, action: Callable[[], object], *, method: str | None = None, path: str | None = None) -> None:
        """Run ``action`` once, just before the next matching request is handled."""
        with self._lock:
            self._hooks.append(_Hook(action, method, path))

    def add_page(self, space_key: str, title: str, body: str = "<p>Written in Confluence.</p>",
                 *, parent_id: str | None = None) -> str:
        """A page someone made in Confluence; its id."""
        with self._lock:
            page = FakePage(id=str(next(self._ids)), space_id=self.spaces[space_key], title=title, body=body,
                            parent_id=parent_id)
            page.versions.append((1, title, body, ""))
            self._pages[page.id] = page
            return page.id

    def edit(self, page_id: str, *, title: str | None = None, body: str | None = None,
             message: str = "Edited in Confluence") -> int:
        """A person edits the page in Confluence: a new version; its number."""
        with self._lock:
            page = self._pages[page_id]
            self._new_version(page, title or page.title, body if body is not None else page.body, message)
            return page.version

    def trash(self, page_id: str) -> None:
        """A person deletes the page: it goes to the space's trash (its title stays taken)."""
        with self._lock:
            self._pages[page_id].status = "trashed"

    def purge(self, page_id: str) -> None:
        """The page is removed for good (emptied from the trash)."""
        with self._lock:
            del self._pages[page_id]

    @property
    def pages(self) -> dict[str, FakePage]:
        """Copies of the pages held (trashed ones included), by id."""
        with self._lock:
            return {i: dataclasses.replace(p, versions=list(p.versions)) for i, p in self._pages.items()}

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def secret(self, space_key: str | None = None) -> str:
        """The JSON secret a publisher needs to reach this site."""
        key = space_key or next(iter(self.spaces), "PRD")
        return json.dumps({"baseUrl": self.url, "email": self.email, "apiToken": self.api_token, "spaceKey": key})

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(f"{API}/spaces", self._spaces)
        app.router.add_get(f"{API}/pages", self._list_pages)
        app.router.add_post(f"{API}/pages", self._create)
        app.router.add_get(API + "/pages/{id}", self._get)
        app.router.add_put(API + "/pages/{id}", self._update)
        app.router.add_delete(API + "/pages/{id}", self._delete)
        app.router.add_get("/wiki/spaces/{key}/pages/{id}", self._view)  # the page's web UI link
        app.router.add_get("/wiki/spaces/{key}/pages/{id}/{title}", self._view)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        received = ReceivedRequest(request.method, request.path, dict(request.query), body, dict(request.headers))
        with self._lock:
            self._requests.append(received)
            hook = next((h for h in self._hooks if h.method in (None, request.method)
                         and (h.path is None or request.path.startswith(h.path))), None)
            if hook is not None:
                self._hooks.remove(hook)
            fault = next((f for f in self._faults if f.matches(request.method, request.path)), None)
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
        if hook is not None:
            hook.action()
        response: web.StreamResponse
        if fault is not None and not fault.after:
            response = self._fault_response(fault)
        elif not request.path.startswith(VIEW_PREFIX) and (refusal := self._check_auth(request)) is not None:
            response = refusal
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # aiohttp's own 404/405 for unknown routes
                response = _error(exc.status, exc.reason)
            if fault is not None:
                response = self._fault_response(fault)
        received.status = response.status
        return response

    async def _view(self, request: web.Request) -> web.Response:
        """The page as a person following an export's link sees it (``make dev``): its storage shown as
        HTML, macros as plain markup, nothing loaded, no scripts.  No login: the stand-in is local."""
        with self._lock:
            page = self._pages.get(request.match_info["id"])
            if page is None or page.status != "current":
                return web.Response(status=404, text="Page not found", content_type="text/plain")
            title, body, version = page.title, page.body, page.version
        document = (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
                    f"<body style='font-family:sans-serif;max-width:50rem;margin:2rem auto'>"
                    f"<p style='color:#666'>Confluence (local stand-in) &middot; version {version}</p>"
                    f"<h1>{html.escape(title)}</h1>{body}</body>")
        return web.Response(text=document, content_type="text/html", headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    @staticmethod
    def _fault_response(fault: _Fault) -> web.Response:
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
        return _error(fault.status, fault.message or f"Scripted failure ({fault.status})", headers=headers)

    def _check_auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        try:
            user, _, token = base64.b64decode(header.removeprefix("Basic "), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, token = "", ""
        good = (header.startswith("Basic ") and hmac.compare_digest(user.encode(), self.email.encode())
                and hmac.compare_digest(token.encode(), self.api_token.encode()))
        return None if good else _error(401, "Unauthorized", headers={"WWW-Authenticate": 'Basic realm="Confluence"'})

    # ------------------------------------------------------------------ documents (lock held by callers)
    def _base(self) -> str:
        return f"{self.url}/wiki"

    def _space_key(self, space_id: str) -> str:
        return next((k for k, v in self.spaces.items() if v == space_id), "")

    def _page_json(self, page: FakePage, *, body: bool = False) -> dict[str, Any]:
        key = self._space_key(page.space_id)
        data: dict[str, Any] = {
            "id": page.id,
            "status": page.status,
            "title": page.title,
            "spaceId": page.space_id,
            "parentId": page.parent_id,
            "parentType": "page" if page.parent_id else None,
            "position": int(page.id) % 1000,
            "authorId": ACCOUNT_ID,
            "ownerId": ACCOUNT_ID,
            "lastOwnerId": None,
            "createdAt": page.created_at,
            "version": {"createdAt": page.version_at, "message": page.message, "number": page.version,
                        "minorEdit": False, "authorId": ACCOUNT_ID},
            "_links": {
                "webui": f"/spaces/{key}/pages/{page.id}/{quote_plus(page.title)}",
                "editui": f"/pages/resumedraft.action?draftId={page.id}",
                "tinyui": "/x/" + base64.urlsafe_b64encode(int(page.id).to_bytes(4, "little")).decode().rstrip("="),
                "base": self._base(),
            },
        }
        if body:
            data["body"] = {"storage": {"representation": "storage", "value": page.body}}
        return data

    def _new_version(self, page: FakePage, title: str, body: str, message: str) -> None:
        page.version += 1
        page.title, page.body, page.message, page.version_at = title, body, message, _now()
        page.versions.append((page.version, title, body, message))

    def _title_holder(self, space_id: str, title: str, *, other_than: str | None = None) -> FakePage | None:
        folded = title.casefold()
        return next((p for p in self._pages.values() if p.space_id == space_id and p.id != other_than
                     and p.title.casefold() == folded), None)

    @staticmethod
    def _content_problem(body: Any) -> str | None:
        """Why a create/update body's title or storage value is refused, or None."""
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            return "Title cannot be empty"
        if len(title) > MAX_TITLE:
            return f"Title cannot be longer than {MAX_TITLE} characters"
        content = body.get("body")
        if not isinstance(content, dict) or content.get("representation") != "storage":
            return "body.representation must be storage (this fake accepts storage only)"
        value = content.get("value")
        if not isinstance(value, str):
            return "body.value must be a string"
        problem = storage_problem(value)
        return f"Error parsing xhtml: {problem}" if problem else None

    # ------------------------------------------------------------------ handlers
    async def _spaces(self, request: web.Request) -> web.Response:
        keys = [k for value in request.query.getall("keys", []) for k in value.split(",") if k]
        results = [
            {"id": space_id, "key": key, "name": f"{key} space", "type": "global", "status": "current",
             "homepageId": "1", "authorId": ACCOUNT_ID, "createdAt": "2024-01-01T00:00:00.000Z",
             "_links": {"webui": f"/spaces/{key}"}}
            for key, space_id in self.spaces.items() if not keys or key in keys
        ]
        return web.json_response({"results": results, "_links": {"base": self._base()}})

    async def _list_pages(self, request: web.Request) -> web.Response:
        space_ids = [s for value in request.query.getall("space-id", []) for s in value.split(",") if s]
        statuses = [s for value in request.query.getall("status", []) for s in value.split(",") if s]
        statuses = statuses or ["current", "archived"]
        title = request.query.get("title")
        with self._lock:
            results = [self._page_json(p) for p in self._pages.values()
                       if (not space_ids or p.space_id in space_ids) and p.status in statuses
                       and (title is None or p.title == title)]
        return web.json_response({"results": results, "_links": {"base": self._base()}})

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        if not isinstance(body, dict):
            return _error(400, "Invalid request body: a JSON object is expected")
        space_id = str(body.get("spaceId", ""))
        if space_id not in self.spaces.values():
            return _error(400, f"Invalid spaceId: {space_id or '(missing)'}")
        status = body.get("status", "current")
        if status not in ("current", "draft"):
            return _error(400, f"Invalid status: {status}")
        if (problem := self._content_problem(body)) is not None:
            return _error(400, problem)
        parent_id = body.get("parentId")
        with self._lock:
            if parent_id is not None and (str(parent_id) not in self._pages
                                          or self._pages[str(parent_id)].space_id != space_id):
                return _error(404, f"Parent page {parent_id} not found in the space")
            if self._title_holder(space_id, body["title"]) is not None:
                return _error(400, TITLE_TAKEN)
            page = FakePage(id=str(next(self._ids)), space_id=space_id, title=body["title"],
                            body=body["body"]["value"], status=status,
                            parent_id=str(parent_id) if parent_id is not None else None)
            page.versions.append((1, page.title, page.body, ""))
            self._pages[page.id] = page
            return web.json_response(self._page_json(page))

    async def _get(self, request: web.Request) -> web.Response:
        with self._lock:
            page = self._pages.get(request.match_info["id"])
            if page is None:
                return _error(404, "Not Found")
            return web.json_response(self._page_json(page, body=request.query.get("body-format") == "storage"))

    async def _update(self, request: web.Request) -> web.Response:
        page_id = request.match_info["id"]
        body = await self._json_body(request)
        with self._lock:
            page = self._pages.get(page_id)
            if page is None:
                return _error(404, "Not Found")
            if not isinstance(body, dict):
                return _error(400, "Invalid request body: a JSON object is expected")
            if str(body.get("id")) != page_id:
                return _error(400, "The id in the body must be the page's id")
            if body.get("status") not in ("current", "draft"):
                return _error(400, f"Invalid status: {body.get('status')}")
            if (problem := self._content_problem(body)) is not None:
                return _error(400, problem)
            version = body.get("version")
            number = version.get("number") if isinstance(version, dict) else None
            if not isinstance(number, int) or isinstance(number, bool):
                return _error(400, "version.number is required")
            if number != page.version + 1:
                return _error(409, f"Version must be incremented on update. Current version is: {page.version}")
            if self._title_holder(page.space_id, body["title"], other_than=page_id) is not None:
                return _error(400, RENAME_CLASH)
            message = version.get("message") if isinstance(version, dict) else None
            self._new_version(page, body["title"], body["body"]["value"], message if isinstance(message, str) else "")
            page.status = body["status"]
            return web.json_response(self._page_json(page))

    async def _delete(self, request: web.Request) -> web.Response:
        page_id = request.match_info["id"]
        purge = request.query.get("purge") == "true"
        with self._lock:
            page = self._pages.get(page_id)
            if page is None or (page.status == "trashed" and not purge):
                return _error(404, "Not Found")
            if purge and page.status != "trashed":
                return _error(400, "Only a page in the trash can be purged")
            if purge:
                del self._pages[page_id]
            else:
                page.status = "trashed"
        return web.Response(status=204)

    @staticmethod
    async def _json_body(request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError:
            return None


@contextlib.contextmanager
def serve_confluence(
    *,
    email: str = "publisher@example.com",
    api_token: str = "fake-confluence-token",
    spaces: Mapping[str, str] | None = None,
) -> Iterator[FakeConfluence]:
    """Run a :class:`FakeConfluence` for the block; the publisher's ``baseUrl`` is ``.url``."""
    with FakeConfluence(email=email, api_token=api_token, spaces=spaces) as fake:
        yield fake


# ----------------------------------------------------------------------------- standalone
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m scripts.localstack.confluence [--port N]``: a Confluence Cloud stand-in until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m scripts.localstack.confluence", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one, printed)")
    parser.add_argument("--email", default="publisher@example.com")
    parser.add_argument("--api-token", default="fake-confluence-token")
    parser.add_argument("--space", action="append", dest="spaces", metavar="KEY=ID",
                        help="a space (repeatable; default PRD=98305)")
    args = parser.parse_args(argv)
    spaces = dict(s.split("=", 1) for s in args.spaces) if args.spaces else None
    fake = FakeConfluence(email=args.email, api_token=args.api_token, spaces=spaces, host=args.host, port=args.port)
    return run_standalone(fake, lambda server: [f"Confluence Cloud stand-in: {server.url}",
                                                f"Secret: {server.secret()}"])


if __name__ == "__main__":
    raise SystemExit(main())
