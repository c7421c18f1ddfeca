"""End-to-end fixtures: the local stack and real Yjs clients (pycrdt here, Node in test_node_clients)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scripts.localstack.stack import LocalStack
from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api, login

# The session-scoped `stack` and user fixtures come from tests/integration/fixtures.py (root conftest).



@pytest.fixture
def prd(alice: Api) -> dict[str, Any]:
    created = alice.post("/api/prds", {"title": "Co-edited", "markdown": "# Co-edited\n\n"})
    assert created.status_code == 201, created.text
    prd = dict(created.json())
    for name, role in (("bob", "editor"), ("carol", "viewer")):
        assert alice.put(f"/api/prds/{prd['id']}/members/{name}", {"role": role}).status_code == 200
    return prd


@pytest.fixture
def client_factory(stack: LocalStack, prd: dict[str, Any]) -> Iterator[Callable[..., YClient]]:
    made: list[YClient] = []
    tokens: dict[str, str] = {}

    def make(username: str, *, connect: bool = True, prd_id: str | None = None) -> YClient:
        if username not in tokens:
            tokens[username] = login(stack, username)["access_token"]
        client = YClient(stack.ws_url, prd_id or prd["id"], tokens[username], name=username)
        made.append(client)
        return client.connect() if connect else client

    yield make
    for client in made:
        client.close()
