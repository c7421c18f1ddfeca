"""The authorization policy, in one place: which role may do which action on a PRD.

Every HTTP route and WebSocket message asks :func:`require`; nothing else compares roles.
``docs/policy.md`` is generated from :data:`POLICY` (``make docs``) and a test checks it is current.
"""

from __future__ import annotations

from enum import StrEnum

from ..errors import Forbidden, NotFound


class Role(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    COMMENTER = "commenter"
    VIEWER = "viewer"


class Action(StrEnum):
    READ = "read"
    COMMENT = "comment"
    EDIT = "edit"
    MANAGE_MEMBERS = "manage_members"
    DELETE = "delete"
    EXPORT = "export"
    RUN_AI = "run_ai"
    ADMIN = "admin"


POLICY: dict[Role, frozenset[Action]] = {
    Role.OWNER: frozenset(
        {Action.READ, Action.COMMENT, Action.EDIT, Action.MANAGE_MEMBERS, Action.DELETE, Action.EXPORT, Action.RUN_AI}
    ),
    Role.EDITOR: frozenset({Action.READ, Action.COMMENT, Action.EDIT, Action.EXPORT, Action.RUN_AI}),
    Role.COMMENTER: frozenset({Action.READ, Action.COMMENT, Action.EXPORT}),
    Role.VIEWER: frozenset({Action.READ, Action.EXPORT}),
}

# Organisation administrators (the identity provider's admin group) may do everything.
ADMIN_ACTIONS: frozenset[Action] = frozenset(Action)

_ACTION_WORDS = {
    Action.READ: "read",
    Action.COMMENT: "comment on",
    Action.EDIT: "edit",
    Action.MANAGE_MEMBERS: "manage the members of",
    Action.DELETE: "delete",
    Action.EXPORT: "export",
    Action.RUN_AI: "run AI on",
    Action.ADMIN: "administer",
}


def allowed(role: Role | None, action: Action, *, is_admin: bool = False) -> bool:
    if is_admin:
        return action in ADMIN_ACTIONS
    return role is not None and action in POLICY[role]


def require(role: Role | None, action: Action, *, is_admin: bool = False) -> None:
    """Raise unless ``role`` may perform ``action``.

    A caller with no role at all gets 404, not 403: whether a PRD exists is itself private.
    """
    if allowed(role, action, is_admin=is_admin):
        return
    if role is None and not is_admin:
        raise NotFound("PRD not found")
    raise Forbidden(f"your role ({role.value if role else 'none'}) may not {_ACTION_WORDS[action]} this PRD")


def policy_table_markdown() -> str:
    """The policy as a Markdown table (the body of docs/policy.md)."""
    roles = list(Role)
    lines = [
        "| action | " + " | ".join(r.value for r in roles) + " | org admin |",
        "|---|" + "---|" * (len(roles) + 1),
    ]
    for action in Action:
        cells = ["allow" if allowed(r, action) else "deny" for r in roles]
        cells.append("allow" if allowed(None, action, is_admin=True) else "deny")
        lines.append(f"| {action.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
