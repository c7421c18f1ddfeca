"""What S3 checks of a browser-style upload (a presigned POST form) and moto does not.

An import of a large file goes straight to S3 with a form from ``generate_presigned_post``: a base64
JSON *policy* (an expiration and conditions: ``content-length-range``, ``{"key": ...}``, ``["eq" |
"starts-with", "$field", value]``) signed with SigV4.  S3 refuses the upload when the policy has
expired, when the file is outside the length range (``EntityTooLarge`` / ``EntityTooSmall``), when a
field breaks a condition, or when the signature does not match the policy; moto 5 stores whatever
is posted (a 26-byte file went through a ``[1, 10]`` range).  :func:`refusal` makes those checks on
the emulation's clock (``moto_main.emulated_now``) and answers as S3 does (status + XML error), so
the product's size limit is tested where AWS enforces it.  The signature is checked when the local
stack tells the server its functions' secret key (``LOCALSTACK_SIGNING_SECRET``).

Only requests that carry a ``policy`` form field are looked at; everything else passes untouched.
The body is read once and handed back to moto unchanged.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import io
import json
import os
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

MAX_FORM_BYTES = 64 * 1024 * 1024  # more than any upload the product allows; a larger body is refused


def _error(code: str, message: str, **extra: Any) -> bytes:
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"{fields}</Error>").encode()


def _form(body: bytes, content_type: str) -> tuple[dict[str, str], int | None]:
    """The form's text fields and the size of its file (None when there is no file)."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
                                                  + body)
    fields: dict[str, str] = {}
    size: int | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name.lower() == "file":
            size = len(data)
            break  # S3 ignores the fields after the file
        fields[name.lower()] = data.decode("utf-8", "replace")
    return fields, size


def _signature_ok(fields: dict[str, str], secret: str) -> bool:
    try:
        _access, date, region, service, _terminal = fields["x-amz-credential"].split("/")
    except (KeyError, ValueError):
        return False
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), hashlib.sha256)
    expected = hmac.new(key, fields.get("policy", "").encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("x-amz-signature", ""))


def _check(fields: dict[str, str], size: int | None, bucket: str, now: float) -> tuple[str, bytes] | None:
    denied = "403 Forbidden"
    try:
        policy = json.loads(base64.b64decode(fields["policy"], validate=True))
        expires = calendar.timegm(time.strptime(policy["expiration"][:19], "%Y-%m-%dT%H:%M:%S"))
        conditions = list(policy.get("conditions", []))
    except (KeyError, ValueError, TypeError, binascii.Error):
        return "400 Bad Request", _error("InvalidPolicyDocument", "Invalid Policy: Invalid JSON.")
    secret = os.environ.get("LOCALSTACK_SIGNING_SECRET")
    if secret and not _signature_ok(fields, secret):
        return denied, _error("SignatureDoesNotMatch", "The request signature we calculated does not match the "
                              "signature you provided. Check your key and signing method.")
    if now > expires:
        return denied, _error("AccessDenied", "Invalid according to Policy: Policy expired.")
    if size is None:
        return "400 Bad Request", _error("InvalidArgument", "POST requires exactly one file upload per request.")
    values = {**fields, "bucket": bucket}
    for condition in conditions:
        if isinstance(condition, dict):
            condition = ["eq", *next(iter(condition.items()), ("", ""))]
            condition[1] = "$" + str(condition[1])
        if not isinstance(condition, list) or len(condition) != 3:
            return "400 Bad Request", _error("InvalidPolicyDocument", "Invalid Policy: Invalid Condition.")
        op = str(condition[0]).lower()
        if op == "content-length-range":
            low, high = int(condition[1]), int(condition[2])
            if size > high:
                return "400 Bad Request", _error("EntityTooLarge", "Your proposed upload exceeds the maximum "
                                                 "allowed size", ProposedSize=size, MaxSizeAllowed=high)
            if size < low:
                return "400 Bad Request", _error("EntityTooSmall", "Your proposed upload is smaller than the "
                                                 "minimum allowed size", ProposedSize=size, MinSizeAllowed=low)
            continue
        name = str(condition[1]).lstrip("$").lower()
        actual, wanted = values.get(name, ""), str(condition[2])
        if (op == "eq" and actual != wanted) or (op == "starts-with" and not actual.startswith(wanted)):
            return denied, _error("AccessDenied", "Invalid according to Policy: Policy Condition failed: "
                                  + json.dumps(condition).replace("<", "&lt;"))
    return None


def refusal(environ: dict[str, Any], now: float) -> tuple[str, bytes] | None:
    """S3's refusal of this POST form upload (``(status line, XML body)``), or None to let moto store it.

    Reads the request body and puts it back in ``environ`` for moto."""
    content_type = environ.get("CONTENT_TYPE") or ""
    if environ.get("REQUEST_METHOD") != "POST" or not content_type.startswith("multipart/form-data"):
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_FORM_BYTES:
        return "400 Bad Request", _error("MaxPostPreDataLengthExceeded", "Your POST request fields preceeding the "
                                         "upload file was too large.")
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    if b'name="policy"' not in body:
        return None
    fields, size = _form(body, content_type)
    if "policy" not in fields:
        return None
    bucket = environ.get("PATH_INFO", "/").strip("/").split("/", 1)[0]
    return _check(fields, size, bucket, now)
