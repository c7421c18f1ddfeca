"""Domain errors with a stable code, a human message and their HTTP status, mapped in one place.

Flow packages raise these; the HTTP edge (``prdtool.http``) and the WebSocket edge turn them into
``{"error": {"code", "message"}}`` responses.  Nothing else decides status codes.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: a failure the caller can understand and act on."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class BadRequest(DomainError):
    status, code = 400, "bad_request"


class Unauthenticated(DomainError):
    status, code = 401, "unauthenticated"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    status, code = 409, "conflict"


class PayloadTooLarge(DomainError):
    status, code = 413, "payload_too_large"


class Unprocessable(DomainError):
    status, code = 422, "validation_error"


class RateLimited(DomainError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after  # seconds: sent as Retry-After


class DependencyFailed(DomainError):
    """A dependency (AWS service, identity provider) failed; the request may be retried."""

    status, code = 503, "dependency_unavailable"
