"""The authorization policy: the table, its enforcement, and the generated document."""

from __future__ import annotations

from itertools import pairwise

import pytest

from prdtool.auth.policy import POLICY, Action, Role, allowed, require
from prdtool.errors import Forbidden, NotFound
from scripts.gen_docs import ROOT, openapi_json, policy_markdown


@pytest.mark.parametrize("action", list(Action))
def test_owner_can_do_everything_but_administer(action: Action) -> None:
    assert allowed(Role.OWNER, action) is (action is not Action.ADMIN)


def test_roles_are_strictly_ordered() -> None:
    order = [Role.VIEWER, Role.COMMENTER, Role.EDITOR, Role.OWNER]
    for weaker, stronger in pairwise(order):
        assert POLICY[weaker] < POLICY[stronger]


def test_viewer_reads_but_does_not_change() -> None:
    assert allowed(Role.VIEWER, Action.READ)
    for action in (Action.EDIT, Action.COMMENT, Action.DELETE, Action.MANAGE_MEMBERS, Action.RUN_AI):
        assert not allowed(Role.VIEWER, action)


def test_no_role_is_not_found_and_a_weak_role_is_forbidden() -> None:
    with pytest.raises(NotFound):
        require(None, Action.READ)
    with pytest.raises(Forbidden, match="viewer"):
        require(Role.VIEWER, Action.EDIT)
    require(None, Action.DELETE, is_admin=True)  # org admins may do anything


def test_policy_document_is_current() -> None:
    assert (ROOT / "docs" / "policy.md").read_text() == policy_markdown(), "run `make docs`"


def test_openapi_document_is_current() -> None:
    assert (ROOT / "docs" / "openapi.json").read_text() == openapi_json(), "run `make docs`"
