"""Demo data for the local stack: three users and a sample PRD they share.

Users go straight into the Cognito user pool (moto), as an administrator would create them.  The
sample PRD goes through the product's own HTTP API (DESIGN §3.3), logged in as alice, so it is
created exactly as a person would create it: versioned, audited and indexed by the real handlers.
Both steps are idempotent, so every ``make dev`` can run them; while the API is still missing or
failing, the PRD step logs a warning and the stack runs on.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from scripts.localstack.stack import LocalStack

log = logging.getLogger("localstack.seed")

DEMO_PASSWORD = "demo-password"
# Roles on the sample PRD: alice creates it (owner) and shares it; DESIGN §3.4 names alice and bob
# editors and carol a viewer.
DEMO_USERS = {"alice": "owner", "bob": "editor", "carol": "viewer"}
SAMPLE_TITLE = "Sample PRD: Team Calendar Sync"
SAMPLE_MARKDOWN = Path(__file__).with_name("sample_prd.md")
_HTTP_TIMEOUT_SECONDS = 60.0  # the first calls start cold functions


class _ApiUnavailable(Exception):
    """The product API answered in a way that means it is not (yet) usable for seeding."""


def seed(stack: LocalStack) -> None:
    """Create the demo users and the sample PRD if they are missing."""
    assert stack.manifest is not None, "seed() needs a started stack"
    pools = stack.manifest["user_pools"]
    if not pools:
        log.warning("the template has no user pool: demo users and the sample PRD are not seeded")
        return
    cognito = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=stack.manifest["region"],
    ).client("cognito-idp", endpoint_url=stack.moto_url)
    pool_id = next(iter(pools.values()))
    for username in DEMO_USERS:
        _ensure_user(cognito, pool_id, username)
    try:
        _ensure_sample_prd(stack.base_url)
    except _ApiUnavailable as exc:
        log.warning("sample PRD not seeded: %s", exc)


def _ensure_user(cognito: Any, pool_id: str, username: str) -> None:
    try:
        cognito.admin_create_user(
            UserPoolId=pool_id,
            Username=username,
            MessageAction="SUPPRESS",
            UserAttributes=[
                {"Name": "email", "Value": f"{username}@example.com"},
                {"Name": "email_verified", "Value": "true"},
            ],
        )
        log.info("demo user %s created", username)
    except cognito.exceptions.UsernameExistsException:
        pass
    cognito.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=DEMO_PASSWORD, Permanent=True)


def _ensure_sample_prd(base_url: str) -> None:
    login = _call(base_url, "POST", "/api/auth/login", {"username": "alice", "password": DEMO_PASSWORD})
    token = login.get("access_token")
    if not isinstance(token, str):
        raise _ApiUnavailable("the login response has no access_token")
    listing = _call(base_url, "GET", "/api/prds", token=token)
    items = listing.get("items")
    if not isinstance(items, list):
        raise _ApiUnavailable('GET /api/prds did not answer {"items": [...]}')
    if any(isinstance(item, dict) and item.get("title") == SAMPLE_TITLE for item in items):
        log.info("sample PRD already present")
        return
    created = _call(
        base_url, "POST", "/api/prds", {"title": SAMPLE_TITLE, "markdown": SAMPLE_MARKDOWN.read_text()}, token=token
    )
    prd_id = created.get("id")
    if not isinstance(prd_id, str):
        raise _ApiUnavailable("POST /api/prds answered without an id")
    for username, role in DEMO_USERS.items():
        if role != "owner":
            _call(base_url, "PUT", f"/api/prds/{prd_id}/members/{username}", {"role": role}, token=token)
    log.info(
        "sample PRD %s created by alice, shared with %s",
        prd_id,
        ", ".join(f"{user} ({role})" for user, role in DEMO_USERS.items() if role != "owner"),
    )


def _call(base_url: str, method: str, path: str, body: Any = None, token: str | None = None) -> dict[str, Any]:
    """One JSON call to the product API; :class:`_ApiUnavailable` on any non-2xx answer."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_SECONDS) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        raise _ApiUnavailable(f"{method} {path} answered HTTP {exc.code}: {exc.read().decode()[:200]}") from None
    except OSError as exc:
        raise _ApiUnavailable(f"{method} {path} failed: {exc}") from None
    try:
        answer = json.loads(text) if text else {}
    except ValueError:
        raise _ApiUnavailable(f"{method} {path} did not answer JSON") from None
    if not isinstance(answer, dict):
        raise _ApiUnavailable(f"{method} {path} did not answer a JSON object")
    return answer
