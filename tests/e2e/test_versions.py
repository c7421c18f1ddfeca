"""Versions through the local stack: the bus's prd.created / prd.updated become records and git
commits (VersionFunction), with real Yjs clients editing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from scripts.localstack.stack import LocalStack
from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api

pytestmark = pytest.mark.e2e
Factory = Callable[..., YClient]


def _versions(stack: LocalStack, prd_id: str) -> list[Any]:
    from prdtool.versions import records
    from tests.e2e.storage import bound_to

    with bound_to(stack, "VersionFunction"):
        return records.page(prd_id, limit=100)[0]


def _wait_for(stack: LocalStack, prd_id: str, count: int, timeout: float = 60) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = _versions(stack, prd_id)
        if len(found) >= count and all(v.state == "committed" for v in found):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} versions of {count} after {timeout}s: {found}")
        time.sleep(0.5)


def test_creating_a_prd_makes_v1_and_a_significant_batch_of_edits_the_next(
        stack: LocalStack, client_factory: Factory, alice: Api, prd: dict[str, Any]) -> None:
    from prdtool.aws import client
    from prdtool.settings import get_settings
    from prdtool.versions import gitstore
    from tests.e2e.storage import bound_to

    (first,) = _wait_for(stack, prd["id"], 1)
    assert (first.version, first.kind, first.created_by) == ("1.0.0", "initial", "alice")
    a, b = client_factory("alice"), client_factory("bob")
    a.append("\n## Risks\n\nThe payment provider may throttle us.\n")
    b.wait_until(lambda: "throttle us" in b.content(), what="alice's section")
    b.append("\nMitigation: a second provider.\n")
    a.wait_until(lambda: "second provider" in a.content(), what="bob's line")
    second = _wait_for(stack, prd["id"], 2)[0]
    assert second.version == "2.0.0" and second.kind == "major"
    assert second.summary.startswith("Add section 'Risks'")
    assert set(second.authors) == {"alice", "bob"}
    with bound_to(stack, "VersionFunction"), gitstore.open_repo(client("s3"), get_settings().documents_bucket,
                                                                prd["id"]) as repo:
        log = gitstore.history(repo)
        files = gitstore.read_files(repo, log[0].id)
        tags = sorted(name.decode() for name in repo.refs.as_dict(b"refs/tags"))
    assert [c.id.decode() for c in log] == [second.commit, first.commit]
    assert tags == ["v1.0.0", "v2.0.0"]
    assert files["prd.md"].decode() == a.content()
    assert b"## [2.0.0]" in files["CHANGELOG.md"] and b"## [1.0.0]" in files["CHANGELOG.md"]
    assert b"Co-authored-by: " in log[0].message
