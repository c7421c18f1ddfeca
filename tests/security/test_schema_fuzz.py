"""Schema-driven fuzzing: schemathesis generates requests from the API's own OpenAPI document and
sends them to the running product.  No response may be a 5xx, and every refusal is our JSON error.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from prdtool.api import full_app
from scripts.localstack.stack import LocalStack
from tests.integration.fixtures import ensure_user, login

RAW = full_app().openapi()
# Logging out would end the fuzzing user's session and turn the rest of the run into 401s; logout is
# exercised by the hostile token tests instead.
schema = schemathesis.openapi.from_dict(RAW).exclude(path="/api/auth/logout")


# API Gateway's own answers, which no function can shape: a method no route has (e.g. TRACE), and a
# body over its 10 MB limit (the API's own 2 MB limit answers with our JSON error).
_GATEWAY_OWN = [(404, {"message": "Not Found"}), (413, {"message": "Request Entity Too Large"})]


@pytest.fixture(scope="module")
def fuzz_token(stack: LocalStack) -> str:
    ensure_user(stack, "fuzzer")
    return str(login(stack, "fuzzer")["access_token"])


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail(case: Any, stack: LocalStack, fuzz_token: str) -> None:
    response = case.call(base_url=stack.base_url, headers={"authorization": f"Bearer {fuzz_token}"}, timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        assert (response.headers.get("content-type") or [""])[0].startswith("application/json"), (
            response.request.method, response.request.url, response.status_code, response.text)
        body = response.json()
        if (response.status_code, body) in _GATEWAY_OWN:
            return  # API Gateway answered before any function ran: not our code
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), (
            response.request.method, response.request.url, response.text)
        assert "Traceback" not in response.text
