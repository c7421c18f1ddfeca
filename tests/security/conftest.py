"""Fixtures of the hostile suite: an organisation administrator, besides the demo users."""

from __future__ import annotations

import pytest

from scripts.localstack.stack import LocalStack
from tests.integration.fixtures import Api, cognito, ensure_user, login


def make_admin(stack: LocalStack, username: str = "olga") -> Api:
    """A real user of the pool in its ``admins`` group (org administrator), signed in."""
    ensure_user(stack, username)
    pool = next(iter(stack.manifest["user_pools"].values()))  # type: ignore[index]
    cognito(stack).admin_add_user_to_group(UserPoolId=pool, Username=username, GroupName="admins")
    return Api(stack.base_url, login(stack, username)["access_token"])


@pytest.fixture(scope="session")
def admin(stack: LocalStack) -> Api:
    return make_admin(stack)
