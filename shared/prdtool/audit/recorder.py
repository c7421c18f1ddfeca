"""Recording audit entries: one SQS message per entry, redacted, never failing the request.

The HTTP middleware and the WebSocket hooks build an :class:`AuditEntry` and call :func:`record`.
Everything that leaves this module has been through :func:`redact`, so no token, password,
secret, cookie or API key reaches the queue, the store or the fallback log.  When SQS fails the
entry is not lost silently: it is logged in full (redacted) as an ``audit_fallback`` line and
counted (metric ``AuditFallback``, alarmed in the template), and the request goes on.

No pynamodb or FastAPI here: the WebSocket function imports this module on its hot path.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..aws import quick_client
from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings

REDACTED = "[redacted]"
# Values under keys like these are never kept, whatever they hold (case-insensitive, anywhere in the key).
SENSITIVE_KEY = re.compile(r"password|passwd|token|secret|authorization|api_key|key|cookie|credential|signature",
                           re.IGNORECASE)
# JWTs (and Cognito's five-part JWE refresh tokens) start with a base64url '{"' header: "eyJ".
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){2,4}")
# Any other three-part base64url string with long parts (a JWT whose header is not JSON-first).
_DOTTED_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}")
_API_KEY = re.compile(r"prdk_[A-Za-z0-9_-]+")
# An entry's changes are a request body; above this size only a summary is kept (SQS allows 256 KB,
# and every index item repeats the entry).
MAX_CHANGES_BYTES = 8 * 1024


@dataclass(frozen=True)
class AuditEntry:
    """One audited action: a state-changing HTTP request or a WebSocket session event."""

    id: str  # ULID (prdtool.ids.ulid), time-ordered; the idempotency key of the whole pipeline
    at: int  # epoch milliseconds
    actor: str  # username, "apikey:<keyId>" or "anonymous"
    action: str  # "PUT /api/prds/{id}/members/{username}", "websocket.connect", ...
    resource: str  # "prd/<id>", "auth", "apikey/<id>", "user/<name>", ...; "" if none
    status: int  # HTTP status (101/1000-style codes for WebSocket)
    duration_ms: int
    ip: str = ""
    user_agent: str = ""
    path: str = ""
    request_id: str = ""
    channel: str = "http"  # "http" | "websocket"
    changes: dict[str, Any] | None = None  # the request's JSON body (redacted), or a summary

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def now(cls, **fields: Any) -> AuditEntry:
        """An entry of this moment: a fresh ULID and the current time, plus ``fields``."""
        from ..ids import ulid

        at = int(time.time() * 1000)
        return cls(id=ulid(at), at=at, **fields)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEntry:
        """Rebuild an entry from its JSON form, ignoring fields a newer writer may have added."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("id", "actor", "action"):
            if not isinstance(values.get(name), str) or not values[name]:
                raise ValueError(f"audit entry without {name}")
        for name in ("at", "status", "duration_ms"):
            if isinstance(values.get(name), bool) or not isinstance(values.get(name), int):
                raise ValueError(f"audit entry {name} must be an integer")
        if values.get("changes") is not None and not isinstance(values["changes"], dict):
            raise ValueError("audit entry changes must be an object")
        return cls(**values)


def _redact_text(text: str) -> str:
    if "." not in text and "prdk_" not in text:
        return text  # the common case: nothing token-shaped can be inside
    text = _JWT.sub(REDACTED, text)
    text = _DOTTED_TOKEN.sub(REDACTED, text)
    return _API_KEY.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """A deep copy of ``value`` with secrets replaced by ``"[redacted]"``.

    Values under sensitive keys (password, token, secret, authorization, api_key, key, cookie, ...)
    are dropped whatever their type; JWT-looking and API-key-looking substrings are replaced
    anywhere, including inside other strings and in dictionary keys.
    """
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        copied: dict[Any, Any] = {}
        for key, item in value.items():
            safe_key = _redact_text(key) if isinstance(key, str) else key
            if isinstance(key, str) and SENSITIVE_KEY.search(key):
                copied[safe_key] = REDACTED
            else:
                copied[safe_key] = redact(item)
        return copied
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return value


def _bounded_changes(changes: dict[str, Any] | None) -> dict[str, Any] | None:
    if changes is None:
        return None
    encoded = json.dumps(changes, sort_keys=True, default=str).encode()
    if len(encoded) <= MAX_CHANGES_BYTES:
        return changes
    return {"truncated": True, "bytes": len(encoded), "sha256": hashlib.sha256(encoded).hexdigest(),
            "fields": sorted(str(k) for k in changes)[:50]}


def sanitise(entry: AuditEntry) -> AuditEntry:
    """The entry as it may be stored: every string field and the changes redacted and bounded."""
    texts: dict[str, Any] = {f.name: _redact_text(getattr(entry, f.name)) for f in fields(entry)
                             if isinstance(getattr(entry, f.name), str)}
    changes = redact(entry.changes) if isinstance(entry.changes, dict) else None
    if entry.changes is not None and not isinstance(entry.changes, dict):
        changes = {"value": redact(entry.changes)}  # a JSON body that is a list or a scalar
    return replace(entry, **texts, changes=_bounded_changes(changes))


def record(entry: AuditEntry) -> None:
    """Send ``entry`` (redacted) to the audit queue; on failure log it as ``audit_fallback``. Never raises."""
    safe: dict[str, Any] | None = None
    try:
        safe = sanitise(entry).to_dict()
        queue_url = get_settings().audit_queue_url
        if not queue_url:
            raise RuntimeError("AUDIT_QUEUE_URL is not set")
        quick_client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(safe, default=str))
    except Exception as exc:  # auditing must never break the request it describes
        _fallback(entry, safe, exc)


def _fallback(entry: AuditEntry, safe: dict[str, Any] | None, exc: Exception) -> None:
    try:
        if safe is None:  # sanitising itself failed: keep what cannot carry a secret
            safe = {"id": entry.id, "at": entry.at, "actor": _redact_text(str(entry.actor)),
                    "action": _redact_text(str(entry.action)), "status": entry.status, "changes": REDACTED}
        error = _redact_text(f"{type(exc).__name__}: {exc}")
        logger.error("audit_fallback", extra={"audit_entry": safe, "error": error})
        from aws_lambda_powertools.metrics import single_metric

        # A single metric is flushed at once: not every caller's handler flushes the shared metrics.
        with single_metric(name="AuditFallback", unit=MetricUnit.Count, value=1, namespace=metrics.namespace):
            pass
    except Exception:  # the last resort must not raise either
        logger.exception("audit_fallback failed")
