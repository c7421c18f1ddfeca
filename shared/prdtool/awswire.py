"""What the two hand-made AWS clients share (``collab.poster`` for ``@connections``, ``dynamo`` for the
keystroke's DynamoDB calls): SigV4's derived signing key, and the ``ClientError`` botocore would raise
for an error answer.  Both send exactly the requests botocore sends, without its client machinery
(tests compare them with botocore's signer and errors)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from typing import Any, Literal

_keys: dict[tuple[str, str, str, str], bytes] = {}
_keys_lock = threading.Lock()
_keyed: dict[bytes, Any] = {}  # signing key -> an HMAC-SHA256 object keyed with it, never updated


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """SigV4's derived key for (secret, day, region, service), computed once per day."""
    cache_key = (secret, day, region, service)
    key = _keys.get(cache_key)
    if key is None:
        key = f"AWS4{secret}".encode()
        for part in (day, region, service, "aws4_request"):
            key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
        with _keys_lock:
            if len(_keys) > 16:
                _keys.clear()
            _keys[cache_key] = key
    return key


def signature(key: bytes, string_to_sign: str) -> str:
    """The hex HMAC-SHA256 of ``string_to_sign`` under a SigV4 signing key: the signature.

    Starts from a copy of an HMAC object already keyed with ``key`` (kept per key: a key changes
    daily) instead of ``hmac.digest``, which keys a new one each time: 1.8 µs instead of 3.2 µs
    here, and a fan-out signs ~50 requests per edit.  Same bytes either way."""
    keyed = _keyed.get(key)
    if keyed is None:
        keyed = hmac.new(key, digestmod=hashlib.sha256)
        with _keys_lock:
            if len(_keyed) > 16:
                _keyed.clear()
            _keyed[key] = keyed
    mac = keyed.copy()
    mac.update(string_to_sign.encode("utf-8"))
    return mac.hexdigest()


def client_error(response: Any, operation: str, *, code_from: Literal["header", "body"]) -> Any:
    """The ``botocore.exceptions.ClientError`` botocore raises for an error answer (``response``: an
    ``AWSResponse`` or anything with its ``status_code``, ``headers`` and ``content``).

    Where the error code comes from first depends on the protocol, as in botocore's parsers: REST-JSON
    services (``@connections``) name it in ``x-amzn-ErrorType``, JSON-protocol ones (DynamoDB) in the
    body's ``__type``; the other is the fallback, then the status code.
    """
    from botocore.exceptions import ClientError

    header = str(response.headers.get("x-amzn-ErrorType", "") or "").split(":")[0]
    body, message = "", ""
    try:
        parsed = json.loads(response.content or b"{}")
        body = str(parsed.get("__type", "") or "").rsplit("#", 1)[-1]
        message = str(parsed.get("message") or parsed.get("Message") or "")
    except (ValueError, AttributeError):
        message = (response.content or b"")[:200].decode("utf-8", "replace")
    first, second = (header, body) if code_from == "header" else (body, header)
    code = first or second or str(response.status_code)
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": response.status_code,
                                             "HTTPHeaders": dict(response.headers)}}, operation)
