"""Integration fixtures: one local stack (moto server + gateway + real handlers) per test session."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from scripts.localstack.bedrock import FakeBedrock, serve_bedrock
from scripts.localstack.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "demo-password"


# The suites share one stack and log the demo users in many times from one IP, far beyond the
# product's default 100 requests a minute; tests/security runs a stack with the real defaults.
TEST_FUNCTION_ENV = {
    "RATE_LIMITS": "100000/1000000/10000000",
    "RATE_LIMIT_PLANS": '{"tiny": "3/1000/10000"}',
    "GIT_REMOTE_ALLOW_PRIVATE": "true",  # push remotes served by the tests on loopback
    "AI_JOBS_PER_MINUTE": "1000/10000/100000",  # (tests/security checks the real default)
}


@pytest.fixture(scope="session")
def fake_bedrock() -> Iterator[FakeBedrock]:
    """The stack's AI provider: Bedrock through boto3, against a local endpoint speaking Bedrock's
    event-stream wire format (echoes unless a test pushes scripts; push ECHO last to restore).  The echo
    streams a word every 10 ms, so a browser test can watch it stream and stop it."""
    with serve_bedrock(echo_delay=0.01) as fake:
        yield fake


@pytest.fixture(scope="session")
def stack(fake_bedrock: FakeBedrock) -> Iterator[LocalStack]:
    env = {**TEST_FUNCTION_ENV, "AI_PROVIDER": "bedrock", "BEDROCK_ENDPOINT_URL": fake_bedrock.url,
           "AI_MODEL_ID": "anthropic.claude-3-haiku-20240307-v1:0"}
    with LocalStack(ROOT, port=0, state_dir=None, seed=True, function_env=env) as running:
        yield running


class Api:
    """A tiny client of the product's HTTP API, as a person's browser or script would use it."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.token = token
        self.session = requests.Session()

    def request(self, method: str, path: str, *, json_body: Any = None, data: bytes | str | None = None,
                headers: dict[str, str] | None = None, token: str | None = None) -> requests.Response:
        all_headers = {"content-type": "application/json", **(headers or {})}
        bearer = token if token is not None else self.token
        if bearer:
            all_headers["authorization"] = f"Bearer {bearer}"
        body = json.dumps(json_body) if json_body is not None else data
        return self.session.request(method, self.base_url + path, data=body, headers=all_headers, timeout=30)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, json_body=body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.request("PATCH", path, json_body=body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.request("PUT", path, json_body=body, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)


def early_in_a_minute(latest_second: float) -> None:
    """Wait, if needed, until a minute has just begun: the rate limiter counts fixed minute windows,
    so a burst that must fall in one window has to start by ``latest_second`` past the minute."""
    if time.time() % 60 > latest_second:
        time.sleep(60.5 - time.time() % 60)


def login(stack: LocalStack, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = requests.post(f"{stack.base_url}/api/auth/login", json={"username": username, "password": password},
                             timeout=30)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def cognito(stack: LocalStack) -> Any:
    return boto3.client("cognito-idp", endpoint_url=stack.moto_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def ensure_user(stack: LocalStack, username: str) -> None:
    pool = next(iter(stack.manifest["user_pools"].values()))
    idp = cognito(stack)
    try:
        idp.admin_create_user(UserPoolId=pool, Username=username, MessageAction="SUPPRESS")
    except idp.exceptions.UsernameExistsException:
        return
    idp.admin_set_user_password(UserPoolId=pool, Username=username, Password=PASSWORD, Permanent=True)


@pytest.fixture(scope="session")
def alice(stack: LocalStack) -> Api:
    return Api(stack.base_url, login(stack, "alice")["access_token"])


@pytest.fixture(scope="session")
def bob(stack: LocalStack) -> Api:
    return Api(stack.base_url, login(stack, "bob")["access_token"])


@pytest.fixture(scope="session")
def carol(stack: LocalStack) -> Api:
    return Api(stack.base_url, login(stack, "carol")["access_token"])


@pytest.fixture(scope="session")
def dave(stack: LocalStack) -> Api:
    """An outsider: a real user of the pool who is a member of nothing."""
    ensure_user(stack, "dave")
    return Api(stack.base_url, login(stack, "dave")["access_token"])


@pytest.fixture(scope="session")
def anonymous(stack: LocalStack) -> Api:
    return Api(stack.base_url)


@pytest.fixture
def shared_prd(alice: Api) -> dict[str, Any]:
    """A fresh PRD of alice's, shared with bob (editor) and carol (viewer)."""
    created = alice.post("/api/prds", {"title": "Checkout redesign", "markdown": "# Checkout\n\n## Goals\n\nFaster."})
    assert created.status_code == 201, created.text
    prd = created.json()
    assert alice.put(f"/api/prds/{prd['id']}/members/bob", {"role": "editor"}).status_code == 200
    assert alice.put(f"/api/prds/{prd['id']}/members/carol", {"role": "viewer"}).status_code == 200
    return dict(prd)
