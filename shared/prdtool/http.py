"""The HTTP edge: a FastAPI app per function, with one error mapping and one auth dependency.

Each HTTP Lambda mounts only its own router (``lambda_handler(router)``); ``prdtool.api`` mounts
all of them into the app whose OpenAPI document is the API reference.  Every error leaves as
``{"error": {"code", "message"}}`` with the right status, never a stack trace.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .auth.principal import Principal
from .errors import DomainError, PayloadTooLarge, RateLimited, Unauthenticated
from .observability import logger
from .settings import get_settings

_STATUS_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                 415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited"}


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"), "problem": err.get("msg", "")}
        for err in exc.errors()
    ]


def _aws_event(request: Request) -> dict[str, Any]:
    return request.scope.get("aws.event") or {}


def _authorizer_context(request: Request) -> dict[str, Any]:
    context = ((_aws_event(request).get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}
    return context if isinstance(context, dict) else {}


def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller verified by the authorizer, or a JSON 401 saying why not."""
    context = _authorizer_context(request)
    principal = Principal.from_context(context)
    if principal is None:
        raise Unauthenticated(
            str(context.get("auth_message") or "sign in first: no valid access token was sent"),
            code=str(context.get("auth_error") or "unauthenticated"),
        )
    return principal


def client_ip(request: Request) -> str:
    http = (_aws_event(request).get("requestContext") or {}).get("http") or {}
    return str(http.get("sourceIp") or (request.client.host if request.client else ""))


def create_app(*routers: APIRouter, title: str = "PRD Tool API") -> FastAPI:
    app = FastAPI(
        title=title,
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        description="The HTTP API of PRD Tool. Errors are JSON: {\"error\": {\"code\", \"message\"}}.",
    )

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            headers = {"Retry-After": str(max(1, int(exc.retry_after)))}
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            return error_response(400, "invalid_json", "the request body is not valid JSON")
        return error_response(422, "validation_error", "the request is not valid", _validation_details(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message.lower() if message == "Not Found" else message)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        principal = Principal.from_context(_authorizer_context(request))
        decision = None
        if request.method != "OPTIONS":
            decision = await run_in_threadpool(_rate_limit, principal, request)
        if decision is not None and not decision.allowed:
            response: Response = error_response(
                429, "rate_limited",
                f"too many requests: the {decision.window} limit is {decision.limit}; "
                f"retry in {decision.retry_after} s")
        else:
            response = await _serve(request, call_next)
        if decision is not None:
            response.headers.update(decision.headers())
        response.headers.update(_SECURITY_HEADERS)
        # Refused by the rate limit: counted (RateLimited), not audited, or a flood would flood the trail.
        if request.method in _STATE_CHANGING and response.status_code != 429:
            await run_in_threadpool(_audit, request, response, principal, started)
        return response

    for router in routers:
        app.include_router(router)
    return app


_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The API answers JSON only: nothing to sniff, frame, cache in shared caches or run as a page.
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_AUDIT_BODY_BYTES = 4096  # larger bodies are summarised (field names and size) in the audit trail


async def _serve(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    limit = get_settings().max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return error_response(413, PayloadTooLarge.code, f"the request body exceeds {limit} bytes")
    body = _aws_event(request).get("body")
    if isinstance(body, str):
        size = len(body) * 3 // 4 if _aws_event(request).get("isBase64Encoded") else len(body.encode())
        if size > limit:
            return error_response(413, PayloadTooLarge.code, f"the request body exceeds {limit} bytes")
    try:
        return await call_next(request)
    except Exception:  # the last line of defence: log it, never leak it
        logger.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal_error", "something went wrong on our side; it has been logged")


def rate_limit_subject(principal: Principal | None, request: Request) -> tuple[str, str]:
    """Whose budget a request spends, and its plan (``prdtool.auth.ratelimit.subject_of``)."""
    from .auth.ratelimit import subject_of

    return subject_of(principal, client_ip(request))


def _rate_limit(principal: Principal | None, request: Request) -> Any:
    from .auth.ratelimit import limiter

    subject, plan = rate_limit_subject(principal, request)
    return limiter().hit(subject, plan)


def _audit(request: Request, response: Response, principal: Principal | None, started: float) -> None:
    """Record a state-changing request in the audit trail (never fails the request)."""
    try:
        from .audit.recorder import AuditEntry, record

        event = _aws_event(request)
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "(no route)"
        state = request.scope.get("state") or {}
        entry = AuditEntry.now(
            actor=str(state.get("audit_actor") or (principal.username if principal else "anonymous")),
            action=f"{request.method} {template}",
            resource=str(state.get("audit_resource") or _resource_of(request)),
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000),
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent", "")[:512],
            path=request.url.path[:1024],
            request_id=str((event.get("requestContext") or {}).get("requestId") or ""),
            channel="http",
            changes=_changes(event, principal),
        )
        record(entry)
    except Exception:
        logger.exception("could not build an audit entry", extra={"path": request.url.path})


def _resource_of(request: Request) -> str:
    params = request.scope.get("path_params") or {}
    path = request.url.path
    if path.startswith("/api/prds/") and params.get("id"):
        return f"prd/{params['id']}"
    if params.get("key_id"):
        return f"apikey/{params['key_id']}"
    if path.startswith("/api/auth/users/") and params.get("username"):
        return f"user/{params['username']}"
    if path.startswith("/api/auth"):
        return "auth"
    return ""


def _body_bytes(event: dict[str, Any]) -> bytes:
    """The request body as the app receives it (what mangum hands to FastAPI)."""
    body = event.get("body")
    if not isinstance(body, str) or not body:
        return b""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body)
        except (binascii.Error, ValueError):
            return b""
    return body.encode("utf-8", "surrogatepass")


def _changes(event: dict[str, Any], principal: Principal | None) -> dict[str, Any] | None:
    """The request body as the audit trail keeps it (secrets are redacted by the recorder).

    Decoded exactly as the API decodes a JSON body — ``json.loads`` of the raw bytes, which is what
    Starlette's ``Request.json()`` does: RFC 8259 detection, so a UTF-8 BOM, UTF-16 or UTF-32 body
    (text or base64 from the gateway) is read as the API read it, and a change sent that way is not
    hidden from the trail.  Unsafe text in it (lone surrogates) is made safe by the recorder.
    """
    changes: dict[str, Any] = {}
    raw = _body_bytes(event)
    if raw:
        try:
            parsed: Any = json.loads(raw)
            is_json = True
        except (ValueError, RecursionError):  # not JSON, not decodable, or nested beyond the parser
            parsed, is_json = None, False
        if len(raw) > _AUDIT_BODY_BYTES:
            if is_json:
                changes["fields"] = sorted(str(k) for k in parsed)[:50] if isinstance(parsed, dict) else []
            changes["bytes"] = len(raw)
        elif is_json:
            changes.update(parsed if isinstance(parsed, dict) else {"body": parsed})
        else:
            changes["unparsed_bytes"] = len(raw)
    if principal is not None and principal.api_key_id:
        changes["via"] = f"apikey:{principal.api_key_id}"
    return changes or None


def lambda_handler(*routers: APIRouter) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A Lambda handler serving ``routers`` from API Gateway HTTP API (payload 2.0) events."""
    from mangum import Mangum

    return Mangum(create_app(*routers), lifespan="off")  # type: ignore[return-value]

