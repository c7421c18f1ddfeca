"""The local API Gateway: HTTP API, WebSocket API and its ``@connections`` API on one port.

It turns requests into the events API Gateway sends (``events.py``), invokes the functions the
manifest names through the local Lambda service (``workers.py``), and maps their answers back
the way API Gateway does, including its refusals (404, 413, 401/403 from authorizers, 500/503
when a function fails) and its WebSocket behaviour: ``$connect`` decides whether the upgrade
happens at all, frames are routed by the route selection expression, frames over 128 KB close
the connection with 1009, ``$disconnect`` follows every close, and connections end after 10
minutes idle or 2 hours in all.

Moto accepts any ``PostToConnection`` and never answers ``GoneException`` (DESIGN §4), so the
management API is served here, where the sockets are: functions reach it through
``WEBSOCKET_CALLBACK_URL`` with the stock boto3 ``apigatewaymanagementapi`` client.  As in AWS it
answers only SigV4-signed requests (IAM authorisation), here signed with the credentials the local
stack gives its functions: the port is reachable by every user of the machine, and connection ids
appear in logs, so without the check anyone could write into someone's socket or close it.

The workers also reach ``@connections`` through a unix-socket door (``door.py``) served on the
same loop by the same code (:meth:`Gateway.management_call`), SigV4 check included: only the
bytes' transport differs from the HTTP route.

Besides the API it serves the web client (``web/dist``, with an SPA fallback) and a few local
control endpoints under ``/_local/`` (loopback only).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote, unquote, urlsplit

from aiohttp import WebSocketError, WSMsgType, web
from botocore.auth import SIGNED_HEADERS_BLACKLIST, SigV4Auth, _host_from_url
from botocore.credentials import Credentials
from botocore.utils import normalize_url_path
from multidict import CIMultiDict, CIMultiDictProxy

from scripts.localstack.door import (
    AsyncDoorServer,
    DoorRequest,
    DoorResponse,
    SharedRequests,
    constant_response,
    failure_response,
)
from scripts.localstack.events import (
    ApiInfo,
    HttpRequest,
    WsConnection,
    http_authorizer_event,
    http_event,
    new_id,
    now_ms,
    ws_authorizer_event,
    ws_connect_event,
    ws_disconnect_event,
    ws_message_event,
)
from scripts.localstack.manifest import (
    HttpAuthorizerSpec,
    HttpRouteSpec,
    Manifest,
    WebSocketApiSpec,
    WebSocketAuthorizerSpec,
)
from scripts.localstack.workers import InvocationResult

log = logging.getLogger("localstack.gateway")

HTTP_BODY_LIMIT = 10 * 1024 * 1024  # API Gateway's payload limit
WS_MESSAGE_LIMIT = 128 * 1024  # API Gateway's WebSocket message limit
INTEGRATION_TIMEOUT_SECONDS = 30.0  # the HTTP API's maximum integration timeout
WS_IDLE_SECONDS = 600.0
WS_MAX_SECONDS = 7200.0
_HOP_BY_HOP = {"connection", "content-length", "keep-alive", "transfer-encoding", "upgrade"}
_LOOPBACK = {"127.0.0.1", "::1"}
_HTTP_IDENTITY_SOURCE = re.compile(r"\$request\.(header|querystring)\.(.+)")
_WS_IDENTITY_SOURCE = re.compile(r"route\.request\.(header|querystring)\.(.+)")
_ROUTE_SELECTION = re.compile(r"\$\{?request\.body\.([\w.-]+)\}?")
# The routes of @connections, as registered with aiohttp: "/@connections/{id}", "/{stage}/@connections/{id}".
_CONNECTIONS_PATH = re.compile(r"(?:/[^/]+)?/@connections/([^/]+)")

# What CloudFront adds to the web client's responses in AWS (template.yaml, WebResponseHeaders),
# with the WebSocket on this same origin ('self') instead of the WebSocket API's domain and moto
# instead of the bucket's S3 addresses (web_security_headers); a test in tests/infra keeps the two
# policies in step.
WEB_SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def web_security_headers(storage_origin: str | None) -> dict[str, str]:
    """``WEB_SECURITY_HEADERS`` for this stack: large imports are posted straight to the documents
    bucket (a presigned form), which locally is moto at ``storage_origin`` (as CloudFront's policy
    names the bucket's S3 addresses)."""
    headers = dict(WEB_SECURITY_HEADERS)
    if storage_origin:
        headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(
            "connect-src 'self'", f"connect-src 'self' {storage_origin}")
    return headers


NOT_BUILT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>PRD Tool (local)</title></head>
<body><h1>PRD Tool local stack</h1>
<p>The web client is not built yet: build it into <code>web/dist</code> and reload this page.</p>
<p>The API is at <code>/api</code>, the WebSocket at <code>/ws</code>.</p></body></html>
"""


class Invoker(Protocol):
    """The Lambda service as the gateway sees it (``workers.WorkerPool``)."""

    async def invoke(self, function: str, event: Any) -> InvocationResult: ...


ScheduleRunner = Callable[[str], Awaitable[InvocationResult]]


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket, bound before anything starts so a taken port fails early and cleanly.

    Raises ``OSError`` (``EADDRINUSE``) if the port is taken; port 0 picks a free one.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Lets a restart reuse a port whose old connections linger in TIME_WAIT; a port that another
    # process is listening on still fails with EADDRINUSE.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json", headers=headers)


def _message(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """API Gateway's own error responses: ``{"message": "..."}``."""
    return _json_response(status, {"message": message}, headers)


# ---------------------------------------------------------------- SigV4 (IAM) authorisation


@dataclass(frozen=True)
class AwsCredentials:
    """An access key pair: what the local stack gives its functions, and so what ``@connections`` accepts."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
SIGV4_MAX_SKEW = timedelta(minutes=5)  # how far X-Amz-Date may be from the server's clock, either way
_SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_UNSIGNABLE = frozenset(SIGNED_HEADERS_BLACKLIST)


@dataclass(frozen=True)
class AuthRefusal:
    """Why API Gateway refuses a request that is not properly signed: its error type and message."""

    error_type: str
    message: str

    def answer(self) -> ManagementAnswer:
        return _message_answer(403, self.message, {"x-amzn-ErrorType": self.error_type})


@dataclass(frozen=True)
class ManagementAnswer:
    """A response of the ``@connections`` API, whichever way the request came (HTTP or the door)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def response(self) -> web.Response:
        return web.Response(status=self.status, headers=CIMultiDict(self.headers), body=self.body or None)

    def door_response(self) -> DoorResponse:
        # What aiohttp would add on the wire; botocore reads none of it but a caller might.
        headers = [*self.headers, ("Content-Length", str(len(self.body)))]
        if not any(name.lower() == "content-type" for name, _ in self.headers):
            headers.append(("Content-Type", "application/octet-stream"))
        return DoorResponse(self.status, headers, self.body)


_POSTED = ManagementAnswer(200)  # a post delivered: the same answer every time
# ... and through the door, encoded once (a fan-out answers ~50 per edit)
_POSTED_DOOR = constant_response(_POSTED.door_response())


def _message_answer(status: int, message: str, headers: Mapping[str, str] | None = None) -> ManagementAnswer:
    """API Gateway's own error responses, ``{"message": "..."}``, as a :class:`ManagementAnswer`."""
    body = json.dumps({"message": message}).encode()
    return ManagementAnswer(status, [("Content-Type", "application/json"), *(headers or {}).items()], body)


_SIGV4_TIMESTAMP_FORMAT = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")


@lru_cache(maxsize=64)
def _parse_amz_date(value: str) -> datetime | None:
    """``X-Amz-Date`` in ISO 8601 basic format (``20240101T000000Z``), or None.

    A regular expression rather than ``strptime``, which took a sixth of a check's time; cached,
    as every post of a fan-out carries the same second.
    """
    found = _SIGV4_TIMESTAMP_FORMAT.fullmatch(value)
    if found is None:
        return None
    year, month, day, hour, minute, second = map(int, found.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


def canonical_request(method: str, host: str, raw_path: str, raw_query: str,
                      headers: CIMultiDictProxy[str] | CIMultiDict[str], signed_names: Sequence[str],
                      body: bytes) -> str:
    """SigV4's canonical request of a received request, as botocore's ``SigV4Auth`` builds it for
    the client (same path normalisation and encoding, query order, header folding, payload hash),
    without building a botocore request: ~4x faster, and the gateway checks every post of a
    fan-out (tests/localstack/test_connections_door.py compares it with botocore's)."""
    values: dict[str, list[str]] = {}
    for name in signed_names:
        if name not in _UNSIGNABLE:
            found = headers.getall(name, [])
            if found:
                values.setdefault(name.lower(), []).extend(found)
    if "host" not in values:
        values["host"] = [_signed_host(host)]
    names = sorted(values)
    canonical_headers = "".join(f"{name}:{','.join(' '.join(v.split()) for v in values[name])}\n" for name in names)
    query = ""
    if raw_query:
        query = "&".join(f"{key}={value}" for key, value in sorted(pair.partition("=")[::2]
                                                                     for pair in raw_query.split("&")))
    declared = values.get("x-amz-content-sha256")
    payload = declared[0] if declared else hashlib.sha256(body).hexdigest()
    path = _canonical_path(host, raw_path)
    return "\n".join((method.upper(), path, query, canonical_headers, ";".join(names), payload))


_HOST_AND_DATE = ["host", "x-amz-date"]  # what a post signs with long-term credentials (poster.authorization)


def _host_and_date_canonical(method: str, host: str, raw_path: str,
                             headers: CIMultiDictProxy[str] | CIMultiDict[str], body: bytes) -> str:
    """:func:`canonical_request` of a request without a query that signed ``host`` and
    ``x-amz-date`` only (what every post signs), as one format instead of the general walk: the
    same folding of each value, the same joining of repeated ones, the same fallback for a request
    without a ``Host`` header."""
    hosts = headers.getall("Host", ())
    signed_host = _folded(tuple(hosts)) if hosts else _signed_host(host)
    dates = _folded(tuple(headers.getall("X-Amz-Date", ())))
    return (f"{method.upper()}\n{_canonical_path(host, raw_path)}\n\nhost:{signed_host}\nx-amz-date:{dates}\n\n"
            f"host;x-amz-date\n{_body_sha256(body)}")


@lru_cache(maxsize=64)
def _folded(values: tuple[str, ...]) -> str:
    # A header's canonical value: each value's runs of whitespace folded, repeats joined by commas.
    # Cached: every post of a fan-out has the same Host and, within a second, the same X-Amz-Date.
    return ",".join(" ".join(value.split()) for value in values)


_last_body: tuple[bytes, str] = (b"", hashlib.sha256(b"").hexdigest())


def _body_sha256(body: bytes) -> str:
    """The hex SHA-256 of a body: a fan-out posts the same frame to every peer, so the last body's
    digest is kept (compared byte for byte: a frame is a few hundred bytes)."""
    global _last_body
    known, digest = _last_body
    if body != known:
        digest = hashlib.sha256(body).hexdigest()
        _last_body = (body, digest)
    return digest


@lru_cache(maxsize=64)
def _signed_host(host: str) -> str:
    # botocore's Host for a URL on that host (the default port dropped); the same for every post
    return _host_from_url(f"http://{host}")


@lru_cache(maxsize=4096)
def _canonical_path(host: str, raw_path: str) -> str:
    # A fan-out posts to the same few connection paths again and again.
    return quote(normalize_url_path(urlsplit(f"http://{host}{raw_path}").path), safe="/~")


class _CachedKeySigner(SigV4Auth):
    """botocore's SigV4 signer, deriving the signing key once per (day, region, service, secret).

    ``SigV4Auth.signature`` derives it on every request (four HMACs) before the one HMAC that
    signs; the key depends only on those four values, so the signature is the same.
    """

    def __init__(self, credentials: Credentials, service_name: str, region_name: str) -> None:
        super().__init__(credentials, service_name, region_name)
        # (day, secret) -> an HMAC-SHA256 keyed with the signing key (region and service are fixed)
        self._keys: dict[tuple[str, str], Any] = {}

    def signed(self, string_to_sign: str, day: str) -> str:
        """``SigV4Auth.signature`` of a request signed on ``day`` (``YYYYMMDD``)."""
        secret = self.credentials.secret_key
        cache_key = (day, secret)
        keyed = self._keys.get(cache_key)
        if keyed is None:
            key = self._sign(f"AWS4{secret}".encode(), day)
            for part in (self._region_name, self._service_name, "aws4_request"):
                key = self._sign(key, part)
            if len(self._keys) >= 4:  # yesterday's, today's and tomorrow's (skew) are all it needs
                self._keys.clear()
            keyed = self._keys[cache_key] = hmac.new(key, digestmod=hashlib.sha256)
        # A copy of an HMAC already keyed: 1.8 µs, against 3.2 µs for hmac.digest (which keys one
        # each time) and twice that for botocore's _sign; a fan-out's ~50 posts are checked per edit.
        mac = keyed.copy()
        mac.update(string_to_sign.encode("utf-8"))
        return mac.hexdigest()


def _with_authorization(headers: CIMultiDict[str], authorization: str) -> CIMultiDict[str]:
    headers = CIMultiDict(headers)
    headers["Authorization"] = authorization
    return headers


class ReceivedRequest(NamedTuple):
    """A request as the gateway received it, for the signature check."""

    method: str
    host: str
    raw_path: str
    raw_query: str
    headers: CIMultiDictProxy[str] | CIMultiDict[str]
    body: bytes


class SigV4Verifier:
    """API Gateway's check of an IAM-authorised (SigV4-signed) request, done with botocore's own signer.

    The signature is recomputed over the request as received — method, raw path and query, the
    headers the client says it signed, the SHA-256 of the body actually received — and compared in
    constant time; ``X-Amz-Date`` must be within 5 minutes of now either way, and the credential
    scope must name our access key, region and service.  Refusals carry the error type and message
    API Gateway answers with (``x-amzn-ErrorType``; botocore raises them as ``ClientError``).
    Presigned (query-string) requests are not accepted: the SDKs sign management calls in headers.
    """

    def __init__(self, credentials: AwsCredentials | None, region: str, service: str = "execute-api") -> None:
        self._credentials = credentials
        self._region = region
        self._service = service
        self._signer = (
            _CachedKeySigner(Credentials(credentials.access_key_id, credentials.secret_access_key), service, region)
            if credentials is not None
            else None
        )
        self._scopes: dict[str, tuple[str, list[str], str] | None] = {}  # _accepted_scope's answers
        # _fresh's last answer: (X-Amz-Date, monotonic time until which it stays within the skew)
        self._fresh_until: tuple[str, float] = ("", 0.0)

    def check(
        self,
        method: str,
        host: str,
        raw_path: str,
        raw_query: str,
        headers: CIMultiDictProxy[str] | CIMultiDict[str],
        body: bytes,
        now: datetime | None = None,
    ) -> AuthRefusal | None:
        """None if the request is signed with our credentials, else why not.

        A fan-out's posts all carry the same ``Authorization`` but for the signature, so what comes
        before it is checked once (``_accepted_scope``) and a request that is well signed is accepted
        by a short path; any other request — malformed, foreign, stale, with a declared payload hash,
        or with a wrong signature — goes through the whole check, which says why it is refused.
        """
        request = ReceivedRequest(method, host, raw_path, raw_query, headers, body)
        if self._well_signed(request, now):
            return None
        return self._full_check(request, now)

    def _well_signed(self, request: ReceivedRequest, now: datetime | None) -> bool:
        method, host, raw_path, raw_query, headers, body = request
        authorization = headers.get("Authorization")
        if not authorization or self._signer is None:
            return False
        head, separator, signature = authorization.rpartition(", Signature=")
        # (compare_digest takes only ASCII text; anything else is for the whole check to refuse)
        scope = self._accepted_scope(head) if separator and signature.isascii() else None
        amz_date = headers.get("X-Amz-Date", "")
        if scope is None or amz_date[:8] != scope[0] or "X-Amz-Content-SHA256" in headers:
            return False
        if not self._fresh(amz_date, now):
            return False
        canonical = (_host_and_date_canonical(method, host, raw_path, headers, body)
                     if not raw_query and scope[1] == _HOST_AND_DATE
                     else canonical_request(method, host, raw_path, raw_query, headers, scope[1], body))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        string_to_sign = f"{SIGV4_ALGORITHM}\n{amz_date}\n{scope[2]}\n{digest}"
        return hmac.compare_digest(self._signer.signed(string_to_sign, scope[0]), signature)

    def shared_checker(self, method: str, host: str, headers: CIMultiDict[str], body: bytes,
                       now: datetime | None = None) -> Callable[[str, str, str], bool] | None:
        """For requests alike but for their path, query and ``Authorization`` (a fan-out's posts:
        ``headers`` holds what they share, without ``Authorization``): a function of (raw path, raw
        query, ``Authorization``) that answers as :meth:`_well_signed` would for that request, with
        what the requests share looked up and hashed once.  None when what they share already sends
        each to :meth:`check` (a declared payload hash, no signer)."""
        if self._signer is None or "Authorization" in headers or "X-Amz-Content-SHA256" in headers:
            return None
        amz_date = headers.get("X-Amz-Date", "")
        hosts = headers.getall("Host", ())
        signed_host = _folded(tuple(hosts)) if hosts else _signed_host(host)
        dates = _folded(tuple(headers.getall("X-Amz-Date", ())))
        head = f"{method.upper()}\n"
        tail = f"\n\nhost:{signed_host}\nx-amz-date:{dates}\n\nhost;x-amz-date\n{_body_sha256(body)}"
        signer = self._signer

        def well_signed(raw_path: str, raw_query: str, authorization: str) -> bool:
            scope_head, separator, signature = authorization.rpartition(", Signature=")
            scope = self._accepted_scope(scope_head) if separator and signature.isascii() else None
            if scope is None or amz_date[:8] != scope[0] or not self._fresh(amz_date, now):
                return False
            if raw_query or scope[1] != _HOST_AND_DATE:
                return self._well_signed(ReceivedRequest(method, host, raw_path, raw_query,
                                                         _with_authorization(headers, authorization), body), now)
            digest = hashlib.sha256(f"{head}{_canonical_path(host, raw_path)}{tail}".encode()).hexdigest()
            string_to_sign = f"{SIGV4_ALGORITHM}\n{amz_date}\n{scope[2]}\n{digest}"
            return hmac.compare_digest(signer.signed(string_to_sign, scope[0]), signature)

        return well_signed

    def _fresh(self, amz_date: str, now: datetime | None) -> bool:
        """Whether ``X-Amz-Date`` is within :data:`SIGV4_MAX_SKEW` of ``now`` (the clock's if None).

        A fan-out's posts carry the same second: once a date is found fresh it is taken as fresh,
        without reading the clock, for up to a second — less if it would leave the window sooner.
        """
        if now is None:
            known, until = self._fresh_until
            if known == amz_date and time.monotonic() < until:
                return True
        signed_at = _parse_amz_date(amz_date)
        at = now or datetime.now(UTC)
        if signed_at is None or not at - SIGV4_MAX_SKEW <= signed_at <= at + SIGV4_MAX_SKEW:
            return False
        if now is None:
            margin = (signed_at - (at - SIGV4_MAX_SKEW)).total_seconds()
            self._fresh_until = (amz_date, time.monotonic() + min(1.0, margin))
        return True

    def _accepted_scope(self, head: str) -> tuple[str, list[str], str] | None:
        """What an ``Authorization`` before its signature (``AWS4-HMAC-SHA256 Credential=.../...,
        SignedHeaders=...``) binds — (day, signed header names, credential scope) — if it is one the
        whole check would accept: our key, region and service, the host signed; else None."""
        found = self._scopes.get(head)
        if found is not None or head in self._scopes:
            return found
        accepted: tuple[str, list[str], str] | None = None
        algorithm, _, parameters = head.strip().partition(" ")
        fields = dict(part.strip().partition("=")[::2] for part in parameters.split(","))
        credential, signed = fields.get("Credential", ""), fields.get("SignedHeaders", "")
        parts = credential.split("/")
        if (algorithm == SIGV4_ALGORITHM and len(parts) == 5 and self._credentials is not None
                and parts[0] == self._credentials.access_key_id and parts[2:] == [self._region, self._service,
                                                                                     "aws4_request"]
                and "host" in signed.split(";")):
            accepted = (parts[1], signed.split(";"), "/".join(parts[1:]))
        if len(self._scopes) >= 64:
            self._scopes.clear()
        self._scopes[head] = accepted
        return accepted

    def _full_check(self, request: ReceivedRequest, now: datetime | None = None) -> AuthRefusal | None:
        method, host, raw_path, raw_query, headers, body = request
        authorization = headers.get("Authorization")
        if not authorization:
            return AuthRefusal("MissingAuthenticationTokenException", "Missing Authentication Token")
        algorithm, _, parameters = authorization.strip().partition(" ")
        fields: dict[str, str] = {}
        for part in parameters.split(","):
            name, equals, value = part.strip().partition("=")
            if equals:
                fields[name] = value
        missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in fields]
        amz_date = headers.get("X-Amz-Date", "")
        if algorithm != SIGV4_ALGORITHM or missing or not amz_date:
            problems = [f"Authorization header requires '{name}' parameter." for name in missing]
            if algorithm != SIGV4_ALGORITHM:
                problems.append(f"Unsupported authorization type: {algorithm!r}.")
            if not amz_date:
                problems.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
            return AuthRefusal("IncompleteSignatureException", " ".join(problems) + f" Authorization={authorization}")
        signed_at = _parse_amz_date(amz_date)
        if signed_at is None:
            return AuthRefusal("IncompleteSignatureException", f"Date must be in ISO-8601 'basic format': {amz_date}")
        scope = fields["Credential"].split("/")
        if len(scope) != 5:
            return AuthRefusal(
                "IncompleteSignatureException",
                f"Credential must have exactly 5 slash-delimited elements: {fields['Credential']}",
            )
        access_key, day, region, service, terminator = scope
        if self._signer is None or self._credentials is None or access_key != self._credentials.access_key_id:
            return AuthRefusal(
                "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        scope_problem = (
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{day}' != '{amz_date[:8]}'"
            if day != amz_date[:8]
            else f"Credential should be scoped to a valid region, not '{region}'."
            if region != self._region
            else f"Credential should be scoped to correct service: '{self._service}'."
            if service != self._service
            else f"Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
            if terminator != "aws4_request"
            else None
        )
        if scope_problem is not None:
            return AuthRefusal("InvalidSignatureException", scope_problem)
        now = now or datetime.now(UTC)
        if signed_at < now - SIGV4_MAX_SKEW:
            earliest = (now - SIGV4_MAX_SKEW).strftime(_SIGV4_TIMESTAMP)
            return AuthRefusal(
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is now earlier than {earliest} "
                f"({now.strftime(_SIGV4_TIMESTAMP)} - 5 min.)",
            )
        if signed_at > now + SIGV4_MAX_SKEW:
            latest = (now + SIGV4_MAX_SKEW).strftime(_SIGV4_TIMESTAMP)
            return AuthRefusal(
                "InvalidSignatureException",
                f"Signature not yet current: {amz_date} is still later than {latest} "
                f"({now.strftime(_SIGV4_TIMESTAMP)} + 5 min.)",
            )
        signed_names = fields["SignedHeaders"].split(";")
        if "host" not in signed_names:
            return AuthRefusal(
                "IncompleteSignatureException",
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            )
        declared_hash = headers.get("X-Amz-Content-SHA256")
        if declared_hash is not None and declared_hash != hashlib.sha256(body).hexdigest():
            # When that header is signed, botocore signs its value instead of hashing the body.
            return AuthRefusal(
                "InvalidSignatureException",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        # Only what the client signed goes into the canonical request, exactly as received; the
        # body's hash is of the body received (the client signed the body it sent).
        canonical = canonical_request(method, host, raw_path, raw_query, headers, signed_names, body)
        string_to_sign = "\n".join((SIGV4_ALGORITHM, amz_date, f"{day}/{region}/{service}/aws4_request",
                                    hashlib.sha256(canonical.encode("utf-8")).hexdigest()))
        expected = self._signer.signed(string_to_sign, day)  # day == amz_date[:8]: checked above
        if not hmac.compare_digest(expected, fields["Signature"]):
            return AuthRefusal(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. "
                "Consult the service documentation for details.",
            )
        return None


# ---------------------------------------------------------------- HTTP routing


@dataclass(frozen=True)
class RouteMatch:
    route: HttpRouteSpec
    path_parameters: dict[str, str]


@dataclass(frozen=True)
class _CompiledRoute:
    route: HttpRouteSpec
    segments: tuple[str, ...]
    # How specific the route is, smaller first: per path segment literal (0) < {param} (1) <
    # {greedy+} (2), then a named method before ANY.  This reproduces API Gateway's choice.
    priority: tuple[tuple[int, ...], int]

    @classmethod
    def compile(cls, route: HttpRouteSpec) -> _CompiledRoute:
        segments = tuple(route["path"].split("/")[1:])
        kinds = tuple(2 if s.endswith("+}") else 1 if s.startswith("{") else 0 for s in segments)
        if 2 in kinds[:-1]:
            raise ValueError(f"route {route['route_key']!r}: a greedy path variable must be the last segment")
        return cls(route, segments, (kinds, 1 if route["method"] == "ANY" else 0))

    def match(self, method: str, segments: Sequence[str]) -> dict[str, str] | None:
        if self.route["method"] not in ("ANY", method):
            return None
        parameters: dict[str, str] = {}
        for index, pattern in enumerate(self.segments):
            if pattern.endswith("+}"):
                rest = segments[index:]
                if not any(rest):
                    return None
                parameters[pattern[1:-2]] = unquote("/".join(rest))
                return parameters
            if index >= len(segments):
                return None
            value = unquote(segments[index])
            if pattern.startswith("{"):
                if not value:
                    return None
                parameters[pattern[1:-1]] = value
            elif value != pattern:
                return None
        return parameters if len(segments) == len(self.segments) else None


class HttpRouter:
    """API Gateway's route selection: most specific path first, ``$default`` last."""

    def __init__(self, routes: Iterable[HttpRouteSpec]) -> None:
        routes = list(routes)
        self._default = next((r for r in routes if r["route_key"] == "$default"), None)
        compiled = [_CompiledRoute.compile(r) for r in routes if r["route_key"] != "$default"]
        self._routes = sorted(compiled, key=lambda route: route.priority)
        first = {route.segments[0] for route in self._routes if route.segments}
        # Paths under these first segments belong to the API (404 as JSON); others to the web client.
        self._catch_all = self._default is not None or any(s.startswith("{") for s in first)
        self._prefixes = {s for s in first if not s.startswith("{")}

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        segments = raw_path.split("/")[1:]
        for route in self._routes:
            parameters = route.match(method, segments)
            if parameters is not None:
                return RouteMatch(route.route, parameters)
        return RouteMatch(self._default, {}) if self._default is not None else None

    def owns(self, raw_path: str) -> bool:
        """Whether a path belongs to the API rather than to the web client."""
        return self._catch_all or unquote(raw_path.split("/")[1]) in self._prefixes


def lambda_http_response(payload: Any) -> tuple[int, CIMultiDict[str], bytes]:
    """Map a function's result to an HTTP response, by payload format 2.0's rules.

    A dict with ``statusCode`` is a proxy response; anything else is returned as JSON with 200.
    Raises ``ValueError`` for a proxy response API Gateway would reject (it answers 500).
    """
    if not (isinstance(payload, dict) and "statusCode" in payload):
        return 200, CIMultiDict({"Content-Type": "application/json"}), json.dumps(payload).encode()
    status = payload["statusCode"]
    headers = payload.get("headers") or {}
    cookies = payload.get("cookies") or []
    body = payload.get("body")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"statusCode must be an HTTP status, got {status!r}")
    if not isinstance(headers, dict) or not isinstance(cookies, list):
        raise ValueError("headers must be an object and cookies a list")
    if body is not None and not isinstance(body, str):
        raise ValueError(f"body must be a string, got {type(body).__name__}")
    response_headers: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in _HOP_BY_HOP:  # framing is the gateway's business
            response_headers.add(name, str(value))
    for cookie in cookies:
        response_headers.add("Set-Cookie", str(cookie))
    response_headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    if body is None:
        return status, response_headers, b""
    if payload.get("isBase64Encoded"):
        try:
            return status, response_headers, base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"isBase64Encoded is true but body is not base64: {exc}") from None
    return status, response_headers, body.encode()


# ---------------------------------------------------------------- authorizers


def _identity_reader(sources: Sequence[str], pattern: re.Pattern[str]) -> Callable[[HttpRequest], list[str] | None]:
    """Compile identity sources to a function giving their values, or None if one is missing."""
    lookups: list[tuple[str, str]] = []
    for source in sources:
        found = pattern.fullmatch(source)
        if found is None:
            raise ValueError(f"identity source {source!r} is not emulated (only request headers and query strings)")
        lookups.append((found.group(1), found.group(2)))

    def read(request: HttpRequest) -> list[str] | None:
        query = dict(request.query_pairs)
        values: list[str] = []
        for where, name in lookups:
            value = request.header(name) if where == "header" else query.get(name)
            if not value:
                return None
            values.append(value)
        return values

    return read


def policy_allows(policy: Any, resource_arn: str) -> bool:
    """Evaluate an authorizer's IAM policy for ``execute-api:Invoke`` on one ARN (Deny wins)."""
    if not isinstance(policy, dict):
        raise ValueError("policyDocument must be an object")
    statements = policy.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        raise ValueError("policyDocument.Statement must be a list")
    allowed = False
    for statement in statements:
        if not (
            _wildcard_any(statement.get("Action"), "execute-api:Invoke")
            and _wildcard_any(statement.get("Resource"), resource_arn)
        ):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _wildcard_any(patterns: Any, value: str) -> bool:
    candidates = [patterns] if isinstance(patterns, str) else patterns if isinstance(patterns, list) else []
    return any(re.fullmatch(".*".join(map(re.escape, str(p).split("*"))), value) for p in candidates)


@dataclass
class _AuthorizerCache:
    """API Gateway's authorizer result cache, keyed by identity source values (ttl > 0 only)."""

    ttl: float
    entries: dict[tuple[str, ...], tuple[float, bool, dict[str, Any]]] = field(default_factory=dict)

    def get(self, key: tuple[str, ...]) -> tuple[bool, dict[str, Any]] | None:
        entry = self.entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self.entries.pop(key, None)
            return None
        return entry[1], entry[2]

    def put(self, key: tuple[str, ...], allowed: bool, context: dict[str, Any]) -> None:
        self.entries[key] = (time.monotonic() + self.ttl, allowed, context)


# ---------------------------------------------------------------- WebSocket state


@dataclass(eq=False)
class _LiveConnection:
    info: WsConnection
    socket: web.WebSocketResponse
    last_active_ms: int
    server_close: tuple[int, str] | None = None  # set when the gateway itself closes the socket

    def touch(self) -> None:
        self.last_active_ms = now_ms()


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _RouteSelector:
    """Evaluates a ``$request.body.<path>`` route selection expression against a text frame."""

    def __init__(self, expression: str, route_keys: Iterable[str]) -> None:
        found = _ROUTE_SELECTION.fullmatch(expression)
        if found is None:
            raise ValueError(f"route selection expression {expression!r} is not emulated")
        self._path = found.group(1).split(".")
        self._routes = set(route_keys)

    def select(self, body: str) -> str | None:
        """The route key for a frame: the expression's value if a route has it, else ``$default``."""
        try:
            value: Any = json.loads(body)
        except ValueError:
            value = None
        for key in self._path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value in self._routes and not value.startswith("$"):
            return value
        return "$default" if "$default" in self._routes else None


# ---------------------------------------------------------------- the gateway


class Gateway:
    """The HTTP API, WebSocket API, ``@connections``, web client and ``/_local`` on one port."""

    def __init__(
        self,
        manifest: Manifest,
        invoker: Invoker,
        *,
        static_dir: Path | None = None,
        schedule_runner: ScheduleRunner | None = None,
        ws_idle_seconds: float = WS_IDLE_SECONDS,
        ws_max_seconds: float = WS_MAX_SECONDS,
        management_credentials: AwsCredentials | None = None,
    ) -> None:
        """``management_credentials``: what ``@connections`` requests must be signed with (None: refuse all)."""
        self._manifest = manifest
        self._invoker = invoker
        self._static_dir = static_dir
        endpoint = urlsplit(manifest.get("endpoint_url") or "")
        self._web_headers = web_security_headers(f"{endpoint.scheme}://{endpoint.netloc}" if endpoint.netloc else None)
        self._schedule_runner = schedule_runner
        self._ws_idle_seconds = ws_idle_seconds
        self._ws_max_seconds = ws_max_seconds
        self._router = HttpRouter(manifest["http_routes"])
        self._http_api = ApiInfo(manifest["account_id"], manifest["region"], _http_api_id(manifest), "$default")
        self._http_authorizers = {
            name: self._check_http_authorizer(spec) for name, spec in manifest["http_authorizers"].items()
        }
        self._http_identity = {
            name: _identity_reader(spec["identity_sources"], _HTTP_IDENTITY_SOURCE)
            for name, spec in manifest["http_authorizers"].items()
        }
        self._auth_caches = {
            name: _AuthorizerCache(spec["result_ttl"])
            for name, spec in manifest["http_authorizers"].items()
            if spec["result_ttl"] > 0
        }
        self._ws: WebSocketApiSpec | None = manifest["websocket"]
        self._ws_routes: dict[str, str] = {}
        self._ws_authorizers: dict[str, WebSocketAuthorizerSpec] = {}
        if self._ws is not None:
            self._ws_api = ApiInfo(manifest["account_id"], manifest["region"], self._ws["api_id"], self._ws["stage"])
            self._ws_routes = {route["route_key"]: route["function"] for route in self._ws["routes"]}
            self._ws_authorizers = {a["name"]: a for a in self._ws["authorizers"]}
            self._ws_identity = {
                a["name"]: _identity_reader(a["identity_sources"], _WS_IDENTITY_SOURCE) for a in self._ws["authorizers"]
            }
            self._route_selector = _RouteSelector(self._ws["route_selection_expression"], self._ws_routes)
        self._connections: dict[str, _LiveConnection] = {}
        self._management_auth = SigV4Verifier(management_credentials, manifest["region"])
        self._background: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._door: AsyncDoorServer | None = None
        self.port = 0

    @staticmethod
    def _check_http_authorizer(spec: HttpAuthorizerSpec) -> HttpAuthorizerSpec:
        if spec["payload_format_version"] != "2.0":
            raise ValueError(f"authorizer {spec['name']}: only payload format 2.0 authorizers are emulated")
        return spec

    # ------------------------------------------------------------ lifecycle

    async def start(self, sock: socket.socket, door_path: str | None = None) -> None:
        """Serve on an already bound socket (see :func:`listen_socket`), and ``@connections`` also on
        the unix socket ``door_path`` if given (the workers' door, ``door.py``)."""
        # API Gateway accepts a request line and header values of up to 10,240 bytes (HTTP API quota),
        # and passes a body as it was sent: a gzip-encoded one (git sends its larger requests so)
        # reaches the function still encoded, with its Content-Encoding (aiohttp would inflate it).
        app = web.Application(client_max_size=HTTP_BODY_LIMIT,
                              handler_args={"max_line_size": 10_240, "max_field_size": 10_240,
                                            "auto_decompress": False})
        app.router.add_get("/ws", self._handle_websocket)
        for prefix in ("", "/{stage}"):
            app.router.add_route("*", prefix + "/@connections/{connection_id}", self._handle_connections)
        app.router.add_get("/_local/manifest", self._handle_manifest)
        app.router.add_post("/_local/schedules/{name}/run", self._handle_run_schedule)
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self._handle_http)  # newlines too (%0A)
        app.on_shutdown.append(self._close_websockets)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self.port = sock.getsockname()[1]
        if door_path is not None:
            self._door = AsyncDoorServer(door_path, self._handle_door_request, name="connections-door",
                                         shared_handler=self._handle_door_shared)
            await self._door.start()

    async def stop(self) -> None:
        """Stop accepting, close every WebSocket (each gets its ``$disconnect``), finish requests.

        The door stops accepting with the port; connections already open through it go on being
        served until the WebSockets are closed (the ``$disconnect`` handlers still post through
        them), as open keep-alive HTTP connections are, then they are closed.
        """
        if self._door is not None:
            self._door.stop_accepting()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._door is not None:
            await self._door.close()
            self._door = None
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ------------------------------------------------------------ HTTP API

    async def _handle_http(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        request_id = new_id()
        headers = {"apigw-requestid": request_id}
        raw_path = request.rel_url.raw_path
        if (request.content_length or 0) > HTTP_BODY_LIMIT:
            return _message(413, "Request Entity Too Large", headers)
        match = self._router.match(request.method, raw_path)
        if match is None:
            if request.method in ("GET", "HEAD") and not self._router.owns(raw_path):
                return await self._serve_web_client(request)
            return _message(404, "Not Found", headers)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the limit
            return _message(413, "Request Entity Too Large", headers)
        http_request = HttpRequest(
            method=request.method,
            raw_path=raw_path,
            raw_query=request.rel_url.raw_query_string,
            headers=list(request.headers.items()),
            body=body,
            source_ip=request.remote or "127.0.0.1",
            port=self.port,
            protocol=f"HTTP/{request.version.major}.{request.version.minor}",
            request_id=request_id,
        )
        response = await self._dispatch_http(http_request, match)
        response.headers["apigw-requestid"] = request_id
        log.info(
            "%s %s %d %s (%.0f ms)",
            request.method,
            raw_path,
            response.status,
            match.route["function"],
            (time.monotonic() - started) * 1000,
        )
        return response

    async def _dispatch_http(self, request: HttpRequest, match: RouteMatch) -> web.Response:
        route = match.route
        authorizer_context: dict[str, Any] | None = None
        if route["authorizer"] is not None:
            outcome = await self._authorize_http(request, match)
            if isinstance(outcome, web.Response):
                return outcome
            authorizer_context = {"lambda": outcome}
        event = http_event(request, self._http_api, route["route_key"], match.path_parameters, authorizer_context)
        invocation = self._spawn(self._invoker.invoke(route["function"], event))
        try:
            # The invocation goes on if API Gateway gives up on it, as a Lambda would.
            result = await asyncio.wait_for(asyncio.shield(invocation), INTEGRATION_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning(
                "%s: no response within the integration timeout of %.0f s",
                route["function"],
                INTEGRATION_TIMEOUT_SECONDS,
            )
            return _message(503, "Service Unavailable")
        if not result.ok:
            return _message(500, "Internal Server Error")
        try:
            status, headers, body = lambda_http_response(result.payload)
        except ValueError as exc:
            log.error("%s returned a malformed response: %s", route["function"], exc)
            return _message(500, "Internal Server Error")
        return web.Response(status=status, headers=headers, body=body)

    async def _authorize_http(self, request: HttpRequest, match: RouteMatch) -> dict[str, Any] | web.Response:
        """The authorizer's context if it allows the request, else API Gateway's refusal."""
        name = match.route["authorizer"]
        assert name is not None
        spec = self._http_authorizers[name]
        identity = self._http_identity[name](request)
        if identity is None:
            return _message(401, "Unauthorized")
        cache = self._auth_caches.get(name) if identity else None
        cached = cache.get(tuple(identity)) if cache else None
        if cached is not None:
            allowed, context = cached
        else:
            event = http_authorizer_event(
                request, self._http_api, match.route["route_key"], match.path_parameters, identity
            )
            result = await self._invoker.invoke(spec["function"], event)
            if not result.ok:
                return _message(500, "Internal Server Error")
            try:
                allowed, context = self._read_http_authorizer_response(spec, result.payload, event["routeArn"])
            except ValueError as exc:
                log.error("authorizer %s returned a malformed response: %s", name, exc)
                return _message(500, "Internal Server Error")
            if cache is not None:
                cache.put(tuple(identity), allowed, context)
        if not allowed:
            return _message(403, "Forbidden")
        return context

    @staticmethod
    def _read_http_authorizer_response(
        spec: HttpAuthorizerSpec, payload: Any, route_arn: str
    ) -> tuple[bool, dict[str, Any]]:
        if not isinstance(payload, dict):
            raise ValueError("the response must be an object")
        context = payload.get("context") or {}
        if not isinstance(context, dict):
            raise ValueError("context must be an object")
        if spec["simple_responses"]:
            allowed = payload.get("isAuthorized")
            if not isinstance(allowed, bool):
                raise ValueError("isAuthorized must be a boolean")
            return allowed, context
        return policy_allows(payload.get("policyDocument"), route_arn), context

    # ------------------------------------------------------------ web client

    async def _serve_web_client(self, request: web.Request) -> web.StreamResponse:
        """The web client, with the security headers CloudFront adds in AWS (``web_security_headers``)."""
        response = await self._web_file(request)
        response.headers.update(self._web_headers)
        return response

    async def _web_file(self, request: web.Request) -> web.StreamResponse:
        """Files of ``web/dist``; unknown paths without an extension get ``index.html`` (SPA routes)."""
        root = self._static_dir
        if root is None or not root.is_dir():
            return web.Response(text=NOT_BUILT_PAGE, content_type="text/html")
        root = root.resolve()
        candidate = (root / request.path.lstrip("/")).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return web.FileResponse(candidate)
        index = root / "index.html"
        if "." in request.path.rsplit("/", 1)[-1] or not index.is_file():
            return web.Response(status=404, text="Not Found")
        return web.FileResponse(index)

    # ------------------------------------------------------------ local control

    async def _handle_manifest(self, request: web.Request) -> web.Response:
        if not _from_loopback(request):
            return _message(403, "Forbidden")
        return _json_response(200, self._manifest)

    async def _handle_run_schedule(self, request: web.Request) -> web.Response:
        if not _from_loopback(request):
            return _message(403, "Forbidden")
        name = request.match_info["name"]
        if self._schedule_runner is None:
            return _message(404, "schedules are not running")
        try:
            result = await self._schedule_runner(name)
        except KeyError:
            return _message(404, f"no schedule named {name}")
        return _json_response(
            200,
            {
                "function": result.function,
                "requestId": result.request_id,
                "outcome": result.outcome,
                "payload": result.payload,
                "error": result.error,
                "durationMs": round(result.duration_ms, 1),
            },
        )

    # ------------------------------------------------------------ WebSocket API

    async def _handle_websocket(self, request: web.Request) -> web.StreamResponse:
        if self._ws is None:
            return _message(404, "Not Found")
        socket_response = web.WebSocketResponse(max_msg_size=WS_MESSAGE_LIMIT, compress=False)
        if not socket_response.can_prepare(request).ok:
            return _message(426, "Upgrade Required")
        http_request = HttpRequest(
            method=request.method,
            raw_path=request.rel_url.raw_path,
            raw_query=request.rel_url.raw_query_string,
            headers=list(request.headers.items()),
            body=b"",
            source_ip=request.remote or "127.0.0.1",
            port=self.port,
        )
        connection = WsConnection(
            connection_id=new_id(),
            connected_at_ms=http_request.time_epoch_ms,
            source_ip=http_request.source_ip,
            user_agent=http_request.header("user-agent"),
            domain_name=http_request.domain_name,
        )
        refusal, protocol = await self._run_connect(connection, http_request)
        if refusal is not None:
            log.info("WebSocket upgrade refused with %d", refusal.status)
            return refusal
        if protocol:
            socket_response = web.WebSocketResponse(
                max_msg_size=WS_MESSAGE_LIMIT, compress=False, protocols=(protocol,)
            )
        await socket_response.prepare(request)
        live = _LiveConnection(connection, socket_response, now_ms())
        self._connections[connection.connection_id] = live
        log.info("WebSocket %s connected", connection.connection_id)
        try:
            status_code, reason = await self._receive_frames(live)
        finally:
            del self._connections[connection.connection_id]
        if not socket_response.closed:
            await socket_response.close()
        detail = f"{status_code}: {reason}" if reason else str(status_code)
        log.info("WebSocket %s disconnected (%s)", connection.connection_id, detail)
        if "$disconnect" in self._ws_routes:
            await self._invoker.invoke(
                self._ws_routes["$disconnect"], ws_disconnect_event(connection, self._ws_api, status_code, reason)
            )
        return socket_response

    async def _run_connect(
        self, connection: WsConnection, request: HttpRequest
    ) -> tuple[web.Response | None, str | None]:
        """Authorize and run ``$connect``; a refusal response, or the subprotocol to accept."""
        assert self._ws is not None
        connect = next((route for route in self._ws["routes"] if route["route_key"] == "$connect"), None)
        if connect is None:
            return None, None
        if connect["authorizer"] is not None:
            refusal = await self._authorize_websocket(connection, request, connect["authorizer"])
            if refusal is not None:
                return refusal, None
        result = await self._invoker.invoke(connect["function"], ws_connect_event(connection, request, self._ws_api))
        if not result.ok:
            return _message(500, "Internal server error"), None
        payload = result.payload
        if not (isinstance(payload, dict) and "statusCode" in payload):
            return None, None  # a $connect that returns no proxy response accepts the connection
        try:
            status, headers, body = lambda_http_response(payload)
        except ValueError as exc:
            log.error("%s returned a malformed $connect response: %s", connect["function"], exc)
            return _message(500, "Internal server error"), None
        if not 200 <= status < 300:
            return web.Response(status=status, headers=headers, body=body), None
        return None, headers.get("Sec-WebSocket-Protocol")

    async def _authorize_websocket(
        self, connection: WsConnection, request: HttpRequest, name: str
    ) -> web.Response | None:
        spec = self._ws_authorizers[name]
        if self._ws_identity[name](request) is None:
            return _message(401, "Unauthorized")
        event = ws_authorizer_event(connection, request, self._ws_api)
        result = await self._invoker.invoke(spec["function"], event)
        if not result.ok:
            # An authorizer signals "no valid credentials" by failing with exactly "Unauthorized".
            unauthorized = (result.error or {}).get("errorMessage") == "Unauthorized"
            return _message(401, "Unauthorized") if unauthorized else _message(500, "Internal server error")
        payload = result.payload
        try:
            if not isinstance(payload, dict):
                raise ValueError("the response must be an object")
            allowed = policy_allows(payload.get("policyDocument"), event["methodArn"])
            context = payload.get("context") or {}
            if not isinstance(context, dict):
                raise ValueError("context must be an object")
        except ValueError as exc:
            log.error("authorizer %s returned a malformed response: %s", name, exc)
            return _message(500, "Internal server error")
        if not allowed:
            return _message(403, "Forbidden")
        connection.authorizer = {
            **context,
            "principalId": payload.get("principalId"),
            "integrationLatency": round(result.duration_ms),
        }
        return None

    async def _receive_frames(self, live: _LiveConnection) -> tuple[int, str]:
        """Serve one connection until it closes; the ``$disconnect`` status code and reason."""
        ws = live.socket
        while True:
            now = now_ms()
            deadline_ms = min(
                live.last_active_ms + self._ws_idle_seconds * 1000,
                live.info.connected_at_ms + self._ws_max_seconds * 1000,
            )
            if now >= deadline_ms:  # idle for 10 minutes, or open for 2 hours
                return await self._close_connection(live, 1001, "Going away")
            try:
                message = await ws.receive(timeout=(deadline_ms - now) / 1000)
            except TimeoutError:
                continue  # the deadline is checked again: another frame may have moved it
            if message.type is WSMsgType.TEXT:
                live.touch()
                self._dispatch_frame(live, message.data)
            elif message.type is WSMsgType.BINARY:
                # API Gateway does not accept binary frames from clients: it closes with 1003.
                return await self._close_connection(live, 1003, "Binary frames are not supported")
            elif message.type is WSMsgType.CLOSE:
                code = message.data or 1005  # a close frame without a status
                return code, message.extra or ("Client-side close frame status not set" if code == 1005 else "")
            elif live.server_close is not None:  # CLOSING: the gateway closed it (idle, DELETE, shutdown)
                return live.server_close
            elif message.type is WSMsgType.ERROR and isinstance(message.data, WebSocketError):
                # A protocol error, e.g. 1009 for a message over the limit; aiohttp has closed with it.
                return message.data.code, str(message.data)
            else:  # the client went away without a close frame
                return 1006, "Connection closed abnormally"

    def _dispatch_frame(self, live: _LiveConnection, body: str) -> None:
        """Invoke the frame's route without waiting: frames of one connection run concurrently."""
        self._spawn(self._invoke_route(live, self._route_selector.select(body), body))

    async def _invoke_route(self, live: _LiveConnection, route_key: str | None, body: str) -> None:
        if route_key is None:
            await self._send_error_frame(live, "Forbidden", new_id())
            return
        event = ws_message_event(live.info, self._ws_api, route_key, body)
        result = await self._invoker.invoke(self._ws_routes[route_key], event)
        if not result.ok:
            await self._send_error_frame(live, "Internal server error", event["requestContext"]["requestId"])

    @staticmethod
    async def _send_error_frame(live: _LiveConnection, message: str, request_id: str) -> None:
        # What API Gateway sends a client whose frame could not be routed or whose function failed.
        frame = {"message": message, "connectionId": live.info.connection_id, "requestId": request_id}
        with contextlib.suppress(ConnectionError):
            await live.socket.send_str(json.dumps(frame))

    async def _close_websockets(self, _app: web.Application) -> None:
        await asyncio.gather(
            *(self._close_connection(live, 1001, "Going away") for live in list(self._connections.values()))
        )

    @staticmethod
    async def _close_connection(live: _LiveConnection, code: int, reason: str) -> tuple[int, str]:
        """Close from the gateway's side; the code and reason become those of ``$disconnect``."""
        live.server_close = (code, reason)
        await live.socket.close(code=code, message=reason.encode())
        return live.server_close

    # ------------------------------------------------------------ @connections

    async def _handle_connections(self, request: web.Request) -> web.Response:
        """The ``@connections`` routes over HTTP: :meth:`management_call` on the request as received."""
        answer = await self.management_call(
            request.method,
            request.rel_url.raw_path,
            request.rel_url.raw_query_string,
            request.headers,
            await request.read(),
            host=request.host,
        )
        return answer.response()

    async def _handle_door_request(self, request: DoorRequest) -> DoorResponse:
        """The ``@connections`` door (``door.py``): :meth:`management_call` on the request as sent."""
        headers = CIMultiDict(request.headers)
        answer = await self.management_call(
            request.method, request.path, request.query, headers, request.body, host=headers.get("Host", "")
        )
        return _door_answer(answer)

    async def _handle_door_shared(self, batch: SharedRequests) -> list[DoorResponse]:
        """A ``SHARED`` batch through the door (a fan-out: one body, one second, a signature per
        connection): :meth:`management_call` on each of its requests, in order, as
        :meth:`_handle_door_request` would make it — the headers they share are put in one
        ``CIMultiDict`` and only the varying one is set per request (each call has finished with
        the headers before the next sets it)."""
        headers = CIMultiDict([*batch.headers[: batch.index], (batch.name, ""), *batch.headers[batch.index :]])
        host = headers.get("Host", "")
        # A fan-out's posts differ in their path and signature only: what they share is checked once.
        well_signed = (self._management_auth.shared_checker(batch.method, host, CIMultiDict(batch.headers),
                                                            batch.body)
                       if batch.name.lower() == "authorization" else None)
        answers: list[DoorResponse] = []
        for target, value in batch.variants:
            path, _, query = target.partition("?")
            try:
                if well_signed is not None and well_signed(path, query, value):
                    answer = await self._signed_management_call(batch.method, path, batch.body)
                else:  # refused, or not the short path's: the whole check says why
                    headers[batch.name] = value
                    answer = await self.management_call(batch.method, path, query, headers, batch.body, host=host)
            except Exception as exc:  # as the door answers a request whose handler failed
                log.exception("connections-door: %s %s failed", batch.method, target)
                answers.append(failure_response(exc))
                continue
            answers.append(_door_answer(answer))
        return answers

    async def management_call(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: CIMultiDictProxy[str] | CIMultiDict[str],
        body: bytes,
        *,
        host: str,
    ) -> ManagementAnswer:
        """The API Gateway Management API: PostToConnection, GetConnection, DeleteConnection.

        One implementation for both ways in (the HTTP route and the workers' door), so that a
        request gets the same answer whichever way it came.  Signed requests only, checked before
        anything else (an unknown connection is 403 too when unsigned, as in AWS).  The check costs
        about 8 µs per post through the door, 4.7 µs in a fan-out's batch (docs/architecture.md).
        """
        refusal = self._management_auth.check(method, host, raw_path, raw_query, headers, body)
        if refusal is not None:
            log.warning("@connections %s %s refused: %s", method, raw_path, refusal.error_type)
            return refusal.answer()
        return await self._signed_management_call(method, raw_path, body)

    async def _signed_management_call(self, method: str, raw_path: str, body: bytes) -> ManagementAnswer:
        """:meth:`management_call` of a request whose signature has been checked."""
        found = _CONNECTIONS_PATH.fullmatch(raw_path)
        if found is None:
            return _message_answer(404, "Not Found")
        connection_id = _connection_id(found.group(1))
        live = self._connections.get(connection_id)
        if live is None or live.socket.closed:
            return _gone(connection_id)
        if method == "POST":
            if len(body) > WS_MESSAGE_LIMIT:
                return _message_answer(413, "Message too long", {"x-amzn-ErrorType": "PayloadTooLargeException"})
            try:
                # A text frame if the data is UTF-8 (as API Gateway sends it), else a binary one.
                # ASCII (every JSON frame of ours) needs no decoding to tell.
                opcode = WSMsgType.TEXT if body.isascii() or _is_utf8(body) else WSMsgType.BINARY
                await live.socket.send_frame(body, opcode)
            except ConnectionError:
                return _gone(connection_id)
            live.touch()
            return _POSTED
        if method == "GET":
            info = {
                "connectedAt": _iso(live.info.connected_at_ms),
                "identity": {"sourceIp": live.info.source_ip, "userAgent": live.info.user_agent or ""},
                "lastActiveAt": _iso(live.last_active_ms),
            }
            return ManagementAnswer(200, [("Content-Type", "application/json")], json.dumps(info).encode())
        if method == "DELETE":
            await self._close_connection(live, 1000, "Connection deleted by the server")
            return ManagementAnswer(204)
        return _message_answer(405, "Method Not Allowed")


def _door_answer(answer: ManagementAnswer) -> DoorResponse:
    """A management answer as the door sends it (the constant "posted" one encoded once)."""
    return _POSTED_DOOR if answer is _POSTED else answer.door_response()


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@lru_cache(maxsize=4096)
def _connection_id(encoded: str) -> str:
    return unquote(encoded)


def _from_loopback(request: web.Request) -> bool:
    # The gateway binds to loopback; this keeps /_local closed even if someone changes that.
    return request.remote in _LOOPBACK


def _gone(connection_id: str) -> ManagementAnswer:
    # botocore reads the error code from this header: the client raises GoneException.
    return _message_answer(410, f"Connection {connection_id} is gone", {"x-amzn-ErrorType": "GoneException"})


def _http_api_id(manifest: Manifest) -> str:
    """The HTTP API's id: the provisioner's made-up ref if it recorded the API, else a stable hash."""
    websocket = manifest["websocket"]
    for logical_id, resource in manifest["resources"].items():
        if (
            resource.get("type") in ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api")
            and (websocket is None or logical_id != websocket["logical_id"])
            and resource.get("ref")
        ):
            return str(resource["ref"])
    return hashlib.sha256(f"{manifest['stack_name']}:http".encode()).hexdigest()[:10]
