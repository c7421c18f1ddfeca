"""prdtool.awswire: the ClientError botocore raises for an error answer, per protocol; the cached
signing key is SigV4's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.credentials import Credentials

from prdtool.awswire import client_error, signing_key


class _Answer:
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.content = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = headers or {}


@pytest.mark.parametrize(("code_from", "expected"), [("header", "GoneException"),
                                                     ("body", "ConditionalCheckFailedException")])
def test_the_protocol_decides_where_the_code_comes_from_first(code_from: str, expected: str) -> None:
    answer = _Answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                           "message": "The conditional request failed"},
                     {"x-amzn-ErrorType": "GoneException:http://internal.amazon.com/"})
    error = client_error(answer, "PutItem", code_from=code_from)  # type: ignore[arg-type]
    assert error.response["Error"] == {"Code": expected, "Message": "The conditional request failed"}
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.operation_name == "PutItem"


def test_a_code_missing_where_expected_comes_from_the_other_place_then_the_status() -> None:
    only_body = _Answer(400, {"__type": "x#ThrottlingException", "Message": "slow down"})
    assert client_error(only_body, "Op", code_from="header").response["Error"]["Code"] == "ThrottlingException"
    only_header = _Answer(410, {"message": "gone"}, {"x-amzn-ErrorType": "GoneException"})
    assert client_error(only_header, "Op", code_from="body").response["Error"]["Code"] == "GoneException"
    not_json = _Answer(502, b"<html>Bad Gateway</html>")
    error = client_error(not_json, "Op", code_from="body")
    assert error.response["Error"] == {"Code": "502", "Message": "<html>Bad Gateway</html>"}


def test_the_signing_key_is_sigv4s() -> None:
    signer = SigV4Auth(Credentials("AKID", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "dynamodb", "eu-west-1")
    expected = signer._sign(f"AWS4{'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'}".encode(), "20261207")
    for part in ("eu-west-1", "dynamodb", "aws4_request"):
        expected = signer._sign(expected, part)
    assert signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20261207", "eu-west-1", "dynamodb") == expected
    # cached per (secret, day, region, service): another day is another key
    assert signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20261208", "eu-west-1", "dynamodb") != expected
