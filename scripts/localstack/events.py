"""API Gateway v2 event builders: what the real service sends to Lambda, field for field.

HTTP APIs use payload format 2.0 (lower-cased headers, duplicates comma-joined, cookies apart,
``rawPath``/``rawQueryString``, body as text or base64).  WebSocket APIs use the older, REST-like
shape (original header case, ``multiValueHeaders``, ``requestContext.eventType``).  Authorizer
events differ again: the HTTP API's REQUEST authorizer 2.0 event carries a ``routeArn`` and the
identity source values; the WebSocket one carries a ``methodArn`` and expects an IAM policy.

The builders are pure functions of a library-neutral :class:`HttpRequest`, so they are tested
without a server and the gateway only translates aiohttp's request into one.
"""

from __future__ import annotations

import base64
import secrets
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

_ID_ALPHABET = string.ascii_letters + string.digits
_TEXT_MEDIA_TYPES = {
    "application/json",
    "application/javascript",
    "application/xml",
    "application/x-www-form-urlencoded",
    "application/yaml",
    "application/graphql",
}


def new_id() -> str:
    """An id in API Gateway's style (``L0SM9cOFvHcCIhw=``): request, connection and message ids.

    Drawn from letters and digits only, so a connection id is safe in an ``@connections`` path.
    """
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(15)) + "="


def now_ms() -> int:
    return int(time.time() * 1000)


def request_time(epoch_ms: int) -> str:
    """The ``requestContext.time`` format: ``12/Mar/2020:19:03:58 +0000``."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def trace_id(epoch_ms: int) -> str:
    """An X-Ray trace header like the one API Gateway adds to every request."""
    return f"Root=1-{epoch_ms // 1000:08x}-{secrets.token_hex(12)}"


@dataclass(frozen=True)
class ApiInfo:
    """The identity of the emulated API: what ARNs and request contexts are made of."""

    account_id: str
    region: str
    api_id: str
    stage: str

    def execute_api_arn(self, tail: str) -> str:
        return f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api_id}/{self.stage}/{tail}"


@dataclass(frozen=True)
class HttpRequest:
    """One client request as the gateway received it, independent of the server library."""

    method: str
    raw_path: str  # as sent, percent-encoded, without the query string
    raw_query: str
    headers: Sequence[tuple[str, str]]  # in arrival order, names as sent
    body: bytes
    source_ip: str
    port: int  # the gateway's port, for x-forwarded-port
    protocol: str = "HTTP/1.1"
    request_id: str = field(default_factory=new_id)
    time_epoch_ms: int = field(default_factory=now_ms)

    def header(self, name: str) -> str | None:
        """A header's value (duplicates comma-joined, as API Gateway does), or None."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ",".join(values) if values else None

    @property
    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.raw_query, keep_blank_values=True)

    @property
    def domain_name(self) -> str:
        return self.header("host") or "localhost"


# ---------------------------------------------------------------- HTTP API (payload format 2.0)


def _v2_headers(request: HttpRequest) -> tuple[dict[str, str], list[str]]:
    """Lower-cased headers with duplicates comma-joined, plus API Gateway's forwarding headers,
    and the cookies, which format 2.0 moves out of the headers into their own list."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        else:
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    headers["x-forwarded-port"] = str(request.port)
    headers["x-forwarded-proto"] = "http"
    headers.setdefault("x-amzn-trace-id", trace_id(request.time_epoch_ms))
    return headers, cookies


def _v2_query(request: HttpRequest) -> dict[str, str]:
    query: dict[str, str] = {}
    for key, value in request.query_pairs:
        query[key] = f"{query[key]},{value}" if key in query else value
    return query


def is_text_media_type(content_type: str | None) -> bool:
    """Whether API Gateway passes a body of this type as text (else it is base64-encoded)."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in _TEXT_MEDIA_TYPES or media_type.endswith(("+json", "+xml"))


def _v2_request_context(
    request: HttpRequest, api: ApiInfo, route_key: str, authorizer: Mapping[str, Any] | None
) -> dict[str, Any]:
    domain = request.domain_name
    context: dict[str, Any] = {
        "accountId": api.account_id,
        "apiId": api.api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0].split(":", 1)[0],
        "http": {
            "method": request.method,
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": request.header("user-agent") or "",
        },
        "requestId": request.request_id,
        "routeKey": route_key,
        "stage": api.stage,
        "time": request_time(request.time_epoch_ms),
        "timeEpoch": request.time_epoch_ms,
    }
    if authorizer is not None:
        context["authorizer"] = dict(authorizer)
    return context


def _v2_common(
    request: HttpRequest,
    api: ApiInfo,
    route_key: str,
    path_parameters: Mapping[str, str],
    authorizer: Mapping[str, Any] | None,
) -> dict[str, Any]:
    headers, cookies = _v2_headers(request)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query := _v2_query(request):
        event["queryStringParameters"] = query
    event["requestContext"] = _v2_request_context(request, api, route_key, authorizer)
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    return event


def http_event(
    request: HttpRequest,
    api: ApiInfo,
    route_key: str,
    path_parameters: Mapping[str, str],
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The HTTP API proxy event (payload format 2.0) for a matched route.

    ``authorizer`` is ``requestContext.authorizer``, e.g. ``{"lambda": {...context...}}``.
    """
    event = _v2_common(request, api, route_key, path_parameters, authorizer)
    if request.body:
        if is_text_media_type(request.header("content-type")):
            try:
                event["body"] = request.body.decode("utf-8")
                event["isBase64Encoded"] = False
                return event
            except UnicodeDecodeError:
                pass  # declared as text but is not: API Gateway sends such a body as base64
        event["body"] = base64.b64encode(request.body).decode("ascii")
        event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


def http_authorizer_event(
    request: HttpRequest,
    api: ApiInfo,
    route_key: str,
    path_parameters: Mapping[str, str],
    identity_source: Sequence[str],
) -> dict[str, Any]:
    """The HTTP API's Lambda authorizer event (REQUEST, payload format 2.0)."""
    event = _v2_common(request, api, route_key, path_parameters, None)
    event["type"] = "REQUEST"
    event["routeArn"] = api.execute_api_arn(f"{request.method}{request.raw_path}")
    if identity_source:
        event["identitySource"] = list(identity_source)
    return event


# ---------------------------------------------------------------- WebSocket API


@dataclass
class WsConnection:
    """What API Gateway knows about one WebSocket connection, repeated in each of its events."""

    connection_id: str
    connected_at_ms: int
    source_ip: str
    user_agent: str | None
    domain_name: str
    authorizer: dict[str, Any] | None = None  # set once $connect's authorizer has allowed it


def _ws_request_context(
    connection: WsConnection, api: ApiInfo, route_key: str, event_type: str, request_id: str, epoch_ms: int
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": request_time(epoch_ms),
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": connection.connected_at_ms,
        "requestTimeEpoch": epoch_ms,
        "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
        "requestId": request_id,
        "domainName": connection.domain_name,
        "connectionId": connection.connection_id,
        "apiId": api.api_id,
    }
    if connection.authorizer is not None:
        context["authorizer"] = dict(connection.authorizer)
    return context


def _v1_headers(request: HttpRequest) -> tuple[dict[str, str], dict[str, list[str]]]:
    # REST-style events keep the header case; "headers" holds the last value of a duplicate.
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in request.headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    forwarded = request.header("x-forwarded-for")
    for name, value in (
        ("X-Forwarded-For", f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip),
        ("X-Forwarded-Port", str(request.port)),
        ("X-Forwarded-Proto", "http"),
        ("X-Amzn-Trace-Id", trace_id(request.time_epoch_ms)),
    ):
        single[name] = value
        multi[name] = [value]
    return single, multi


def _v1_query(request: HttpRequest) -> dict[str, Any]:
    pairs = request.query_pairs
    if not pairs:
        return {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)
    return {
        "queryStringParameters": {key: values[-1] for key, values in multi.items()},
        "multiValueQueryStringParameters": multi,
    }


def ws_authorizer_event(connection: WsConnection, request: HttpRequest, api: ApiInfo) -> dict[str, Any]:
    """The WebSocket API's REQUEST authorizer event for ``$connect`` (it answers with an IAM policy)."""
    headers, multi_headers = _v1_headers(request)
    return {
        "type": "REQUEST",
        "methodArn": api.execute_api_arn("$connect"),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        **_v1_query(request),
        "stageVariables": {},
        "requestContext": _ws_request_context(
            connection, api, "$connect", "CONNECT", request.request_id, request.time_epoch_ms
        ),
    }


def ws_connect_event(connection: WsConnection, request: HttpRequest, api: ApiInfo) -> dict[str, Any]:
    """The ``$connect`` event, sent before the upgrade is accepted."""
    headers, multi_headers = _v1_headers(request)
    return {
        "headers": headers,
        "multiValueHeaders": multi_headers,
        **_v1_query(request),
        "requestContext": _ws_request_context(
            connection, api, "$connect", "CONNECT", request.request_id, request.time_epoch_ms
        ),
        "isBase64Encoded": False,
    }


def ws_message_event(connection: WsConnection, api: ApiInfo, route_key: str, body: str) -> dict[str, Any]:
    """A MESSAGE event: one text frame from the client, routed to ``route_key``."""
    epoch_ms = now_ms()
    context = _ws_request_context(connection, api, route_key, "MESSAGE", new_id(), epoch_ms)
    context["messageId"] = new_id()
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def ws_disconnect_event(connection: WsConnection, api: ApiInfo, status_code: int, reason: str) -> dict[str, Any]:
    """The ``$disconnect`` event, sent after the connection has closed (either side)."""
    epoch_ms = now_ms()
    context = _ws_request_context(connection, api, "$disconnect", "DISCONNECT", new_id(), epoch_ms)
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    # API Gateway sends these placeholder headers on $disconnect, the client's being gone.
    headers = {"Host": connection.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }
