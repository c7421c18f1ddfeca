"""Who may reach a PRD: membership lookups, kept light for the authorizer's cold start.

(No pycrdt, FastAPI or identity-provider imports here: the authorizer imports this module.)
"""

from __future__ import annotations

from ..auth.policy import Action, Role, require
from ..auth.principal import Principal
from ..errors import NotFound
from ..ids import is_ulid
from .models import MemberModel, PrdModel


def load_prd(prd_id: str) -> PrdModel:
    """A live (not deleted) PRD, or 404."""
    if not is_ulid(prd_id):
        raise NotFound("PRD not found")
    try:
        prd = PrdModel.get(prd_id, consistent_read=True)
    except PrdModel.DoesNotExist as exc:
        raise NotFound("PRD not found") from exc
    if prd.deleted_at:
        raise NotFound("PRD not found")
    return prd


def member_role(prd_id: str, username: str) -> Role | None:
    try:
        return Role(MemberModel.get(prd_id, username, consistent_read=True).role)
    except MemberModel.DoesNotExist:
        return None


def live_roles(prd_id: str) -> tuple[bool, dict[str, Role]]:
    """Whether the PRD exists and is not deleted, and every member's role (two reads: the PRD and
    one query of its members) — what an open connection's periodic recheck needs."""
    if not is_ulid(prd_id):
        return False, {}
    try:
        load_prd(prd_id)
    except NotFound:
        return False, {}
    return True, {m.username: Role(m.role) for m in MemberModel.query(prd_id, consistent_read=True)}


def caller_role(prd_id: str, principal: Principal) -> Role | None:
    """The caller's role on a PRD, or None: not a member, not a PRD id, or outside the scope of the
    API key the caller used.  (The PRD itself is not read.)"""
    if not is_ulid(prd_id) or not principal.may_reach(prd_id):
        return None
    return member_role(prd_id, principal.username)


def role_of(prd_id: str, principal: Principal) -> Role | None:
    """The caller's role on a live PRD, or None (the WebSocket authorizer asks this)."""
    role = caller_role(prd_id, principal)
    if role is None:
        return None
    try:
        load_prd(prd_id)
    except NotFound:
        return None
    return role


def authorize(prd_id: str, principal: Principal, action: Action) -> tuple[PrdModel, Role | None]:
    """Check the policy for ``action`` and return the live PRD with the caller's role.

    The role is looked up first, so a caller with no role gets 404 without the PRD being read.  An
    API key limited to other PRDs has no role here at all.
    """
    role = caller_role(prd_id, principal)
    require(role, action, is_admin=principal.is_admin)
    return load_prd(prd_id), role
