"""Rate limits over HTTP, on a stack running the product's default limits (100/min, 1000/h, 10000/day).

The windows' exact boundaries over hours and days are in test_rate_limit_windows.py (fake clock).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from scripts.localstack.stack import LocalStack
from tests.integration.fixtures import ROOT, Api, early_in_a_minute, ensure_user, login
from tests.integration.test_walking_skeleton import error_of


@pytest.fixture(scope="module")
def default_stack() -> Iterator[LocalStack]:
    with LocalStack(ROOT, port=0, state_dir=None, seed=False) as running:
        yield running


def _burst(api: Api, n: int, path: str = "/api/auth/me", **kw: Any) -> list[requests.Response]:
    return [api.get(path, **kw) for _ in range(n)]


def test_the_101st_request_of_a_minute_is_429_with_correct_headers(default_stack: LocalStack) -> None:
    ensure_user(default_stack, "rita")
    early_in_a_minute(30)  # so the whole burst falls in one window
    api = Api(default_stack.base_url, login(default_stack, "rita")["access_token"])
    responses = _burst(api, 101)
    assert [r.status_code for r in responses[:100]] == [200] * 100
    for i, response in enumerate(responses[:100], start=1):
        assert response.headers["X-RateLimit-Limit"] == "100"
        assert response.headers["X-RateLimit-Remaining"] == str(100 - i), "counted after the current request"
    reset = int(responses[0].headers["X-RateLimit-Reset"])
    assert reset % 60 == 0 and 0 < reset - time.time() <= 60
    refused = responses[100]
    assert refused.status_code == 429 and error_of(refused)["code"] == "rate_limited"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Reset"] == str(reset)
    retry_after = int(refused.headers["Retry-After"])
    assert abs(retry_after - math.ceil(reset - time.time())) <= 2
    assert refused.headers["X-RateLimit-Policy"] == "100;w=60, 1000;w=3600, 10000;w=86400"
    # Refused requests count too, and every route shares the budget, state-changing or not.
    assert api.post("/api/prds", {"title": "too late"}).status_code == 429


def test_a_persons_api_keys_share_one_budget_apart_from_their_own(default_stack: LocalStack) -> None:
    """N keys must not buy N budgets: every key of a person spends one shared budget.

    It is not the person's own budget, so a runaway key cannot lock its owner out (of revoking it).
    """
    ensure_user(default_stack, "tess")
    early_in_a_minute(40)  # the whole test must fall in one minute window
    api = Api(default_stack.base_url, login(default_stack, "tess")["access_token"])
    created = [api.post("/api/auth/keys", {"name": f"bot {n}"}).json() for n in range(3)]
    keys = [Api(default_stack.base_url, c["key"]) for c in created]
    user_remaining = int(api.get("/api/auth/me").headers["X-RateLimit-Remaining"])
    seen = [int(k.get("/api/auth/me").headers["X-RateLimit-Remaining"]) for k in keys * 2]
    assert seen == [99, 98, 97, 96, 95, 94], "one budget for all of tess's keys, counted across them"
    # The rest of the keys' budget, spent through one key, leaves none for the others ...
    spent = [keys[0].get("/api/auth/me") for _ in range(seen[-1])]
    assert [r.status_code for r in spent] == [200] * seen[-1]
    refused = keys[2].get("/api/auth/me")
    assert refused.status_code == 429 and error_of(refused)["code"] == "rate_limited"
    assert refused.headers["X-RateLimit-Limit"] == "100" and refused.headers["X-RateLimit-Remaining"] == "0"
    # ... a fresh key buys nothing more ...
    fresh = api.post("/api/auth/keys", {"name": "one more"})
    assert fresh.status_code == 201
    assert Api(default_stack.base_url, fresh.json()["key"]).get("/api/auth/me").status_code == 429
    # ... and the person still has their own budget: they can revoke the runaway key.
    assert int(api.get("/api/auth/me").headers["X-RateLimit-Remaining"]) == user_remaining - 2
    assert api.delete(f"/api/auth/keys/{created[0]['id']}").status_code == 204


def test_responses_carry_security_headers(default_stack: LocalStack) -> None:
    response = requests.get(f"{default_stack.base_url}/api/health", timeout=30)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_header_injection_is_inert(default_stack: LocalStack) -> None:
    ensure_user(default_stack, "uma")
    api = Api(default_stack.base_url, login(default_stack, "uma")["access_token"])
    for path in ("/api/prds/abc%0d%0aX-Injected:%20yes", "/api/prds/%0d%0aSet-Cookie:%20a=b/members/x%0d%0aY:1"):
        response = api.get(path)
        assert response.status_code in (404, 405, 422), response.text
        assert "X-Injected" not in response.headers and "Set-Cookie" not in response.headers
    created = api.post("/api/prds", {"title": "evil\r\nX-Injected: yes"})
    assert created.status_code == 422 and "X-Injected" not in created.headers


# Last: it exhausts the budget of this machine's IP, which every login here shares.
def test_unauthenticated_requests_are_limited_by_ip_which_headers_cannot_spoof(default_stack: LocalStack) -> None:
    anonymous = Api(default_stack.base_url)
    early_in_a_minute(30)  # up to 100 sign-in attempts must fit in this minute
    def attempt(i: int) -> requests.Response:
        # A spoofed X-Forwarded-For must not buy a fresh budget: the gateway's source IP counts.
        return anonymous.post("/api/auth/login", {"username": "nobody", "password": "wrong"},
                              headers={"x-forwarded-for": f"198.51.100.{i}"})

    first = attempt(0)
    left = int(first.headers["X-RateLimit-Remaining"])  # the other tests' logins came from this IP too
    assert first.status_code == 401 and left < 100
    statuses = [attempt(i).status_code for i in range(1, left + 2)]
    assert statuses[:left] == [401] * left and statuses[left] == 429
    # A signed-in user is keyed by their name, not the (exhausted) IP.
    ensure_user(default_stack, "sam")
    tokens = requests.post(f"{default_stack.base_url}/api/auth/login",
                           json={"username": "sam", "password": "demo-password"}, timeout=30)
    assert tokens.status_code == 429, "login itself is an unauthenticated route: the IP is out of budget"
