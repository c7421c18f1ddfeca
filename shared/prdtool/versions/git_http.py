"""``git clone https://<api>/git/<prdId>.git``: the PRD's repository over git's smart HTTP, read only.

API Gateway (HTTP API, payload 2.0) → this adapter → dulwich's WSGI server over the S3 repository
(:func:`.gitstore.wsgi_app`).  Stock git authenticates with HTTP basic auth: the password is an
access token or an API key (the user name is ignored), and git only sends it after a 401 that
carries ``WWW-Authenticate: Basic`` (DESIGN 3.3).  The caller needs read access to the PRD; a PRD
they cannot see is 404, as everywhere else.  Push is refused (403): versions are made by editing.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections.abc import Mapping
from typing import Any

from ..errors import DomainError, Unauthenticated
from ..observability import logger

_PATH = re.compile(r"/git/([0-9A-Za-z]{1,64})\.git(/[A-Za-z0-9/_.-]*)?")
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="PRD Tool", charset="UTF-8"'}
MAX_REQUEST_BYTES = 1 << 20  # an upload-pack request lists wants and haves: small


def _answer(status: int, message: str, code: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json", **(headers or {})},
            "body": json.dumps({"error": {"code": code, "message": message}}), "isBase64Encoded": False}


def _password(headers: Mapping[str, str]) -> str | None:
    """The credential of a request: ``X-Api-Key``, a bearer token, or basic auth's password."""
    if headers.get("x-api-key"):
        return headers["x-api-key"]
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def _limited(principal: Any, source_ip: str) -> dict[str, Any] | None:
    """A 429 answer when the caller's rate budget is spent (None: go on; also when the store fails)."""
    from ..auth.ratelimit import limiter, subject_of

    subject, plan = subject_of(principal, source_ip)
    decision = limiter().hit(subject, plan)
    if decision is None or decision.allowed:
        return None
    return _answer(429, f"too many requests: the {decision.window} limit is {decision.limit}; "
                        f"retry in {decision.retry_after} s", "rate_limited", decision.headers())


def handle(event: Mapping[str, Any]) -> dict[str, Any]:
    """One smart-HTTP request (``info/refs``, ``git-upload-pack``) as an API Gateway response."""
    from ..auth.authorizer import authenticate
    from ..auth.policy import Action
    from ..prds.access import authorize

    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    found = _PATH.fullmatch(str(event.get("rawPath") or ""))
    if found is None:
        return _answer(404, "not a repository path: use /git/<prdId>.git", "not_found")
    prd_id, rest = found.group(1), found.group(2) or "/"
    source_ip = str(((event.get("requestContext") or {}).get("http") or {}).get("sourceIp") or "")
    password = _password(headers)
    if password is None:
        return _limited(None, source_ip) or _answer(
            401, "sign in: the password is an access token or an API key", "unauthenticated", _CHALLENGE)
    try:
        principal = authenticate(password)
    except Unauthenticated as exc:
        return _limited(None, source_ip) or _answer(401, exc.message, exc.code, _CHALLENGE)
    # The same budget as the HTTP API (a clone is two or three requests): per person, per key owner,
    # or per address when signed out — so guessing passwords here is as slow as at /api/auth.
    refused = _limited(principal, source_ip)
    if refused is not None:
        return refused
    try:
        authorize(prd_id, principal, Action.READ)
    except DomainError as exc:
        return _answer(exc.status, exc.message, exc.code)
    method = str((event.get("requestContext") or {}).get("http", {}).get("method") or "GET").upper()
    if method not in ("GET", "POST") or rest.endswith("git-receive-pack") or "service=git-receive-pack" in str(
            event.get("rawQueryString") or ""):
        return _answer(403, "this repository is read only: versions are made by editing the PRD", "read_only")
    body = event.get("body") or ""
    try:
        raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode("utf-8")
    except (binascii.Error, ValueError):
        return _answer(400, "the request body is not valid base64", "bad_request")
    if len(raw) > MAX_REQUEST_BYTES:
        return _answer(413, f"the request is larger than {MAX_REQUEST_BYTES} bytes", "payload_too_large")
    return _serve(prd_id, method, rest, str(event.get("rawQueryString") or ""), headers, raw)


def _serve(prd_id: str, method: str, path: str, query: str, headers: Mapping[str, str],
           body: bytes) -> dict[str, Any]:
    from ..aws import client
    from ..settings import get_settings
    from . import gitstore

    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": headers.get("host", "localhost"), "SERVER_PORT": "443", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": headers.get("content-type", ""), "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(), "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https", "wsgi.multithread": False, "wsgi.multiprocess": False,
        "wsgi.run_once": True,
    }
    for name, value in headers.items():
        if name not in ("content-type", "content-length", "authorization"):
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    answer: dict[str, Any] = {}
    out: list[bytes] = []  # what the app writes and what it yields, in the order it produced them

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer["status"], answer["headers"] = int(status.split(" ", 1)[0]), response_headers
        return out.append

    with gitstore.open_repo(client("s3"), get_settings().documents_bucket, prd_id) as repo:
        chunks = gitstore.wsgi_app(repo)(environ, start_response)
        try:
            for chunk in chunks:
                out.append(chunk)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
    payload = b"".join(out)
    logger.info("git request served", extra={"prd_id": prd_id, "path": path, "status": answer.get("status"),
                                             "bytes": len(payload)})
    return {"statusCode": answer.get("status", 500), "headers": dict(answer.get("headers", [])),
            "body": base64.b64encode(payload).decode("ascii"), "isBase64Encoded": True}
