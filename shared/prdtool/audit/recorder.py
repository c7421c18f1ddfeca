"""Recording audit entries: one SQS message per entry, redacted, never failing the request.

The HTTP middleware and the WebSocket hooks build an :class:`AuditEntry` and call :func:`record`.
Everything that leaves this module has been through :func:`sanitise`, so no token, password,
secret, cookie or API key reaches the queue, the store or the fallback log.  When SQS fails the
entry is not lost silently: it is logged in full (redacted) as an ``audit_fallback`` line and
counted (metric ``AuditFallback``, alarmed in the template), and the request goes on.

What a caller sends is hostile, so :func:`sanitise` also makes it storable, whatever it is: text
UTF-8 cannot encode (a lone surrogate such as ``"\ud800"`` is valid JSON) becomes a visible escape
(:func:`safe_text`), numbers JSON cannot carry (NaN, Infinity) become text, nesting deeper than
:data:`MAX_DEPTH` is cut, identity and context fields are length-capped (they become DynamoDB keys),
and an unauthenticated caller's ``username`` is kept as ``claimed_username`` — a claim, never the
actor.  The writer sanitises every message again (it trusts no producer), which changes nothing in
an entry sanitised here.

No pynamodb or FastAPI here: the WebSocket function imports this module on its hot path.
"""

from __future__ import annotations

import hashlib
import json
import math
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
ANONYMOUS = "anonymous"  # the actor of a request nobody was authenticated for
# Changes nested deeper than this are cut: redacting is recursive, and a 4 KB body can nest ~2000 deep.
MAX_DEPTH = 32
TOO_DEEP = "[too deep]"
# Text fields are capped (characters): actor and resource become DynamoDB partition keys (2048 bytes
# at most, i.e. 512 four-byte characters), and nothing else is worth more than this in an entry.
FIELD_CHARS = {"id": 64, "actor": 256, "action": 256, "resource": 256, "ip": 64, "user_agent": 512,
               "path": 1024, "request_id": 128, "channel": 32}
MAX_CLAIM_CHARS = 128  # the username an unauthenticated caller claimed (the login route allows 128)
# Epoch ms the trail accepts: 0 up to the end of year 9999 (datetime's range; beyond it the date
# partition cannot even be named).
MAX_AT_MS = 253_402_300_799_999


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
        """Rebuild an entry from its JSON form, ignoring fields a newer writer may have added.

        ValueError unless it is an entry the store can place: a ULID id (the idempotency key and
        part of every index key), a time inside datetime's range (it names the date partition),
        integers where integers belong and text (or null, read as "") in the text fields.
        """
        from ..ids import is_ulid

        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("id", "actor", "action"):
            if not isinstance(values.get(name), str) or not values[name]:
                raise ValueError(f"audit entry without {name}")
        if not is_ulid(values["id"]):
            raise ValueError("audit entry id must be a ULID")
        for name in ("at", "status", "duration_ms"):
            if isinstance(values.get(name), bool) or not isinstance(values.get(name), int):
                raise ValueError(f"audit entry {name} must be an integer")
        if not 0 <= values["at"] <= MAX_AT_MS:
            raise ValueError("audit entry time is out of range")
        for name in ("resource", "ip", "user_agent", "path", "request_id", "channel"):
            if name in values and values[name] is None:
                del values[name]  # null: the default ("" / "http")
            elif name in values and not isinstance(values[name], str):
                raise ValueError(f"audit entry {name} must be text")
        if values.get("changes") is not None and not isinstance(values["changes"], dict):
            raise ValueError("audit entry changes must be an object")
        return cls(**values)


def safe_text(text: str) -> str:
    """``text`` with whatever UTF-8 cannot encode (lone surrogates) written as a visible escape.

    ``json.loads`` accepts ``"\\ud800"`` and decodes bytes with ``surrogatepass``, so request bodies
    can carry lone surrogates; stored raw they would make the chain's canonical form unencodable.
    The escape (``\\ud800`` as six plain characters) keeps the evidence of what was sent.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _redact_text(text: str) -> str:
    text = safe_text(text)
    if "." not in text and "prdk_" not in text:
        return text  # the common case: nothing token-shaped can be inside
    text = _JWT.sub(REDACTED, text)
    text = _DOTTED_TOKEN.sub(REDACTED, text)
    return _API_KEY.sub(REDACTED, text)


def redact(value: Any, _depth: int = 0) -> Any:
    """A deep copy of ``value`` with secrets replaced by ``"[redacted]"``, safe to store as JSON.

    Values under sensitive keys (password, token, secret, authorization, api_key, key, cookie, ...)
    are dropped whatever their type; JWT-looking and API-key-looking substrings are replaced
    anywhere, including inside other strings and in dictionary keys.  Text UTF-8 cannot encode is
    escaped (:func:`safe_text`), NaN and the infinities become text (standard JSON has no such
    numbers: the audit query's JSON response would refuse them), and anything nested deeper than
    :data:`MAX_DEPTH` becomes ``"[too deep]"``.
    """
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if _depth >= MAX_DEPTH and isinstance(value, dict | list | tuple | set | frozenset):
        return TOO_DEEP
    if isinstance(value, dict):
        copied: dict[Any, Any] = {}
        for key, item in value.items():
            text_key = key if isinstance(key, str) else str(key)  # JSON object keys are text
            if SENSITIVE_KEY.search(text_key):
                copied[_redact_text(text_key)] = REDACTED
            else:
                copied[_redact_text(text_key)] = redact(item, _depth + 1)
        return copied
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item, _depth + 1) for item in value]
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, bool | int | float):
        return value
    return _redact_text(str(value))  # not a JSON value: its text (what json.dumps(default=str) would write)


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _bounded_changes(changes: dict[str, Any] | None) -> dict[str, Any] | None:
    if changes is None:
        return None
    encoded = json.dumps(changes, sort_keys=True, default=str).encode()
    if len(encoded) <= MAX_CHANGES_BYTES:
        return changes
    return {"truncated": True, "bytes": len(encoded), "sha256": hashlib.sha256(encoded).hexdigest(),
            "fields": [_capped(k, 100) for k in sorted(str(k) for k in changes)[:50]]}


def _as_claim(changes: dict[str, Any] | None) -> dict[str, Any] | None:
    """An unauthenticated body's ``username`` is what the caller claims to be: label it so."""
    if not changes or "username" not in changes:
        return changes
    claimed = changes["username"]
    text = claimed if isinstance(claimed, str) else json.dumps(claimed, ensure_ascii=False, default=str)
    labelled = {k: v for k, v in changes.items() if k != "username"}
    labelled["claimed_username"] = _capped(text, MAX_CLAIM_CHARS)
    return labelled


def sanitise(entry: AuditEntry) -> AuditEntry:
    """The entry as it may be stored: text fields redacted, UTF-8-safe and capped; changes redacted,
    made JSON-safe and bounded; an anonymous caller's ``username`` relabelled ``claimed_username``.

    Idempotent: sanitising a sanitised entry changes nothing (the writer does it again).
    """
    texts: dict[str, Any] = {}
    for f in fields(entry):
        value = getattr(entry, f.name)
        if isinstance(value, str):
            texts[f.name] = _capped(_redact_text(value), FIELD_CHARS.get(f.name, 1024))
    changes = redact(entry.changes) if isinstance(entry.changes, dict) else None
    if entry.changes is not None and not isinstance(entry.changes, dict):
        changes = {"value": redact(entry.changes)}  # a JSON body that is a list or a scalar
    if texts.get("actor", entry.actor) == ANONYMOUS:
        changes = _as_claim(changes)
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
