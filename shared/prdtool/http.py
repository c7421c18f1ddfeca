"""The HTTP edge: a FastAPI app per function, with one error mapping and one auth dependency.

Each HTTP Lambda mounts only its own router (``lambda_handler(router)``); ``prdtool.api`` mounts
all of them into the app whose OpenAPI document is the API reference.  Every error leaves as
``{"error": {"code", "message"}}`` with the right status, never a stack trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .auth.principal import Principal
from .errors import DomainError, PayloadTooLarge, Unauthenticated
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


def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller verified by the authorizer, or a JSON 401 saying why not."""
    context = ((_aws_event(request).get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}
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

    for router in routers:
        app.include_router(router)
    return app


def lambda_handler(*routers: APIRouter) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A Lambda handler serving ``routers`` from API Gateway HTTP API (payload 2.0) events."""
    from mangum import Mangum

    return Mangum(create_app(*routers), lifespan="off")  # type: ignore[return-value]

