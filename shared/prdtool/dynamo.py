"""DynamoDB's JSON protocol for the calls every keystroke makes, without botocore's client machinery.

Each edit stores its update (a conditional ``PutItem``) and reads the PRD's roster version (a
strongly consistent ``GetItem``) before it is relayed.  Through pynamodb and botocore each call
spends ~0.35 ms of CPU around the network — parameter validation, serialisation through the
service model, endpoint rules, a dozen event hooks, a SigV4 signing key derived anew, response
parsing — which at 50 editors was about half of the WebSocket handler's CPU per edit.  Both calls
are tiny JSON requests, so this module builds the JSON itself, signs it with SigV4 (the signing key
cached per day, as ``collab.poster`` does) and parses the JSON answer: ~5x less CPU per call.
The compactor's read of a PRD's updates (``query``) and its deletes (``batch_delete``) use it too:
hundreds of items per compaction, whose parsing through botocore's service model was most of the
doc writer's CPU.

It stays on the boto3 client's rails where they matter:

* **The same HTTP session** (``prdtool.aws.client("dynamodb")``'s: its timeouts, connection pool,
  proxies and TLS settings; the local stack's door transport, ``scripts/localstack/door.py``).
* **The same hooks first.**  The request is offered to the client's ``before-send`` handlers, as
  botocore's endpoint does, so whatever answers a boto3 client in a test — moto's ``mock_aws``,
  botocore's ``Stubber`` — answers this module too.
* **The same errors.**  A refusal is raised as botocore's ``ClientError`` with DynamoDB's error code
  (``ConditionalCheckFailedException``, ``ResourceNotFoundException``, ...).  Throttling, 5xx answers,
  a body whose ``x-amz-crc32`` does not match, and transport failures are retried — 3 attempts in
  all, jittered exponential backoff from 25 ms — as botocore's standard mode does for DynamoDB.

Not traced by X-Ray (which patches botocore's client): per-keystroke subsegments would mostly add
trace volume; the handler's own segment still times the call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from typing import Any

from .aws import client, credentials
from .awswire import client_error, signature, signing_key

TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
ATTEMPTS = 3
_BACKOFF_BASE_SECONDS = 0.025
_RETRY_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "LimitExceededException", "TransactionInProgressException",
})


class _CorruptAnswer(Exception):
    """The body does not match its ``x-amz-crc32`` (botocore retries these too)."""


def call(operation: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """One DynamoDB operation (``"PutItem"``, ``"GetItem"``, ...) with a JSON payload in DynamoDB's
    wire format (binary values base64-encoded); its parsed answer, or ``ClientError``."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    body = json.dumps(payload, separators=(",", ":")).encode()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = _send(operation, body)
            if response.status_code < 300:
                return _parsed(response)
            error = client_error(response, operation, code_from="body")
            if response.status_code < 500 and error.response["Error"]["Code"] not in _RETRY_CODES:
                raise error
            last: Exception = error
        except (ConnectionError, HTTPClientError, _CorruptAnswer) as exc:
            last = exc
        if attempt == ATTEMPTS:
            if isinstance(last, _CorruptAnswer):
                raise ClientError({"Error": {"Code": "CRC32CheckFailed", "Message": str(last)}}, operation)
            raise last
        time.sleep(random.uniform(0, _BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


def put_new(table: str, item: Mapping[str, Mapping[str, Any]], key_attribute: str) -> bool:
    """``PutItem`` of ``item`` (pynamodb's ``Model.serialize()`` shape) unless an item with its key
    exists (``attribute_not_exists(key_attribute)``); False when one did."""
    from botocore.exceptions import ClientError

    try:
        call("PutItem", {"TableName": table, "Item": wire_item(item),
                         "ConditionExpression": "attribute_not_exists(#k)",
                         "ExpressionAttributeNames": {"#k": key_attribute}})
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def get(table: str, key: Mapping[str, Mapping[str, Any]], *, attributes: tuple[str, ...] = (),
        consistent: bool = True) -> dict[str, Any] | None:
    """``GetItem``: the item's attributes in wire format (only ``attributes`` if given), or None."""
    payload: dict[str, Any] = {"TableName": table, "Key": wire_item(key), "ConsistentRead": consistent}
    if attributes:
        names = {f"#a{index}": name for index, name in enumerate(attributes)}
        payload["ProjectionExpression"] = ",".join(names)
        payload["ExpressionAttributeNames"] = names
    found: dict[str, Any] | None = call("GetItem", payload).get("Item")
    return found


def query(table: str, key_condition: str, names: Mapping[str, str], values: Mapping[str, Mapping[str, Any]], *,
          consistent: bool = True, page_size: int | None = None) -> Iterator[dict[str, Any]]:
    """``Query``: every item matching ``key_condition``, page after page (``Limit`` = ``page_size`` per
    page, DynamoDB's 1 MB pages if None), in the shape pynamodb's ``Model.from_raw_data`` takes
    (binaries as bytes).  ``values`` in that shape too."""
    payload: dict[str, Any] = {"TableName": table, "KeyConditionExpression": key_condition,
                               "ExpressionAttributeNames": dict(names),
                               "ExpressionAttributeValues": wire_item(values), "ConsistentRead": consistent}
    if page_size:
        payload["Limit"] = page_size
    while True:
        answer = call("Query", payload)
        for found in answer.get("Items", ()):
            yield item_from_wire(found)
        last = answer.get("LastEvaluatedKey")
        if not last:
            return
        payload["ExclusiveStartKey"] = last


#: How often a batch's unprocessed deletes are sent again before giving up (pynamodb's default).
UNPROCESSED_ATTEMPTS = 3
BATCH_WRITE_LIMIT = 25  # requests per BatchWriteItem (DynamoDB's limit)


class UnprocessedItems(RuntimeError):
    """DynamoDB left some of a batch unprocessed after every retry."""


def batch_delete(table: str, keys: Sequence[Mapping[str, Mapping[str, Any]]]) -> None:
    """Delete the items with ``keys`` (pynamodb's attribute-value shape): ``BatchWriteItem``, 25 per
    call; what DynamoDB leaves unprocessed (throttling) is sent again after a jittered backoff, as
    pynamodb's batch writer does, and :class:`UnprocessedItems` is raised if some is still left."""
    for start in range(0, len(keys), BATCH_WRITE_LIMIT):
        pending = [{"DeleteRequest": {"Key": wire_item(key)}} for key in keys[start:start + BATCH_WRITE_LIMIT]]
        for attempt in range(UNPROCESSED_ATTEMPTS + 1):
            answer = call("BatchWriteItem", {"RequestItems": {table: pending}})
            pending = answer.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                break
            if attempt < UNPROCESSED_ATTEMPTS:
                time.sleep(random.uniform(0, _BACKOFF_BASE_SECONDS * 2 ** attempt))
        else:
            raise UnprocessedItems(f"{len(pending)} deletes from {table} stayed unprocessed "
                                   f"after {UNPROCESSED_ATTEMPTS} retries")


def item_from_wire(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The inverse of :func:`wire_item`: an answer's attribute values with binaries decoded."""
    return {name: _value_from_wire(value) for name, value in item.items()}


def _value_from_wire(value: Mapping[str, Any]) -> dict[str, Any]:
    (kind, inner), = value.items()
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(part) for part in inner]}
    if kind == "L":
        return {"L": [_value_from_wire(part) for part in inner]}
    if kind == "M":
        return {"M": item_from_wire(inner)}
    return {kind: inner}


def wire_item(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Attribute values as DynamoDB's JSON protocol sends them: binary ones base64-encoded."""
    return {name: _wire_value(value) for name, value in item.items()}


def _wire_value(value: Mapping[str, Any]) -> dict[str, Any]:
    (kind, inner), = value.items()
    if kind == "B":
        return {"B": base64.b64encode(inner).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(part).decode() for part in inner]}
    if kind == "L":
        return {"L": [_wire_value(part) for part in inner]}
    if kind == "M":
        return {"M": wire_item(inner)}
    return {kind: inner}


# ----------------------------------------------------------------------------- transport


@cache
def _endpoint() -> tuple[Any, str, str, str, Any]:
    """(the boto3 client, its endpoint URL, the Host it signs, its region, its HTTP session)."""
    from botocore.auth import _host_from_url

    dynamodb = client("dynamodb")
    url = dynamodb.meta.endpoint_url.rstrip("/") + "/"
    return dynamodb, url, _host_from_url(url), dynamodb.meta.region_name, dynamodb._endpoint.http_session


def reset() -> None:
    """Forget the client (tests that point the package at another endpoint; ``aws.reset_clients``)."""
    _endpoint.cache_clear()


@cache
def _botocore_parts() -> tuple[Any, Any, Any]:
    """botocore's request and header classes and its hook helper, imported on first use (a handler that
    never calls DynamoDB this way does not pay for botocore at import)."""
    from botocore.awsrequest import AWSPreparedRequest, HeadersDict
    from botocore.hooks import first_non_none_response

    return AWSPreparedRequest, HeadersDict, first_non_none_response


def _send(operation: str, body: bytes) -> Any:
    AWSPreparedRequest, HeadersDict, first_non_none_response = _botocore_parts()
    dynamodb, url, host, region, session = _endpoint()
    frozen = credentials().get_frozen_credentials()
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = TARGET_PREFIX + operation
    headers = HeadersDict()
    headers["X-Amz-Target"] = target
    headers["Content-Type"] = CONTENT_TYPE
    headers["X-Amz-Date"] = amz_date
    if frozen.token:
        headers["X-Amz-Security-Token"] = frozen.token
    headers["Authorization"] = authorization(host, target, body, amz_date, frozen, region)
    headers["Content-Length"] = str(len(body))
    request = AWSPreparedRequest("POST", url, headers, body, False)
    answered = first_non_none_response(dynamodb.meta.events.emit(f"before-send.dynamodb.{operation}",
                                                                  request=request))
    return answered if answered is not None else session.send(request)


def authorization(host: str, target: str, body: bytes, amz_date: str, frozen: Any, region: str) -> str:
    """The SigV4 ``Authorization`` header of a DynamoDB call (``POST /``, no query), over the
    headers botocore signs for it: content-type, host, x-amz-date, x-amz-security-token (with
    temporary credentials) and x-amz-target."""
    day = amz_date[:8]
    token = frozen.token
    names = ["content-type", "host", "x-amz-date", *(["x-amz-security-token"] if token else []), "x-amz-target"]
    values = {"content-type": CONTENT_TYPE, "host": host, "x-amz-date": amz_date, "x-amz-security-token": token,
              "x-amz-target": target}
    canonical_headers = "".join(f"{name}:{values[name]}\n" for name in names)
    signed = ";".join(names)
    canonical = "\n".join(("POST", "/", "", canonical_headers, signed, hashlib.sha256(body).hexdigest()))
    scope = f"{day}/{region}/dynamodb/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signed_by = signature(signing_key(frozen.secret_key, day, region, "dynamodb"), to_sign)
    return f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, SignedHeaders={signed}, Signature={signed_by}"


def _parsed(response: Any) -> dict[str, Any]:
    content = response.content or b""
    expected = response.headers.get("x-amz-crc32")
    if expected is not None and str(zlib.crc32(content) & 0xFFFFFFFF) != str(expected):
        raise _CorruptAnswer(f"the answer's CRC32 is {zlib.crc32(content) & 0xFFFFFFFF}, not {expected}")
    parsed: dict[str, Any] = json.loads(content) if content else {}
    return parsed


