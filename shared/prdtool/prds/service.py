"""PRD use cases: create, list, read, change, delete, and manage members with roles.

Every function takes the verified :class:`Principal` and checks the policy first.  Writes that
must agree (a PRD and its owner membership; a role change and the owner count) go in one DynamoDB
transaction, so a failure half-way leaves nothing inconsistent.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.expressions.update import Action as UpdateAction
from pynamodb.transactions import TransactWrite

from .. import events
from ..auth import provider
from ..auth.policy import Action, Role
from ..auth.principal import Principal
from ..errors import Conflict, Forbidden, NotFound, Unprocessable
from ..ids import ulid
from ..observability import logger
from ..settings import get_settings
from ..storage import connection, is_conditional_failure
from . import templates
from .access import authorize as _authorize
from .access import member_role
from .models import MemberModel, PrdModel

# The collaboration modules (``collab.document``, ``store`` and ``live``: pycrdt, the relay and the
# connections table, ~20 ms of import) are imported by the use cases that touch a document or its
# live editors (create, read, rename, delete, role changes), not here: listing PRDs and members,
# the templates, and the write queue's record_content_change never need them.

STATUSES = ("draft", "in_review", "approved", "archived")


@dataclass(frozen=True)
class PrdSummary:
    id: str
    title: str
    status: str
    owner: str
    template: str
    created_at: int
    created_by: str
    updated_at: int
    updated_by: str
    role: str | None

    @classmethod
    def of(cls, prd: PrdModel, role: Role | None) -> PrdSummary:
        return cls(
            id=prd.id, title=prd.title, status=prd.status, owner=prd.owner, template=prd.template,
            created_at=int(prd.created_at), created_by=prd.created_by,
            updated_at=int(prd.updated_at), updated_by=prd.updated_by,
            role=role.value if role else None,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _transact(conn: Connection) -> TransactWrite:
    return TransactWrite(connection=conn, client_request_token=ulid())


def create_prd(principal: Principal, *, title: str, template: str = "blank",
               markdown: str | None = None, prd_id: str | None = None, source: str | None = None) -> dict[str, Any]:
    """Create a PRD owned by the caller, with its Yjs document (v1.0.0 comes with versioning).

    ``prd_id`` (an import chooses it before creating, so that a retry finds the PRD instead of making a
    second one: the document of an earlier attempt is kept) and ``source`` (the imported file's name,
    which v1.0.0's message names) are for imports."""
    if principal.prd_scope:
        raise Forbidden("this API key is limited to some PRDs and may not create new ones",
                        code="api_key_scope")
    if template not in templates.TEMPLATES:
        raise Unprocessable(f"unknown template {template!r}; choose one of {sorted(templates.TEMPLATES)}")
    now = _now_ms()
    chosen = prd_id is not None
    prd_id = prd_id or ulid()
    content = markdown if markdown is not None else templates.render(template, title)
    meta = {"title": title, "status": "draft", "owner": principal.username, "created_at": now}
    from ..collab import document, store  # lazy: see the imports

    # The document first: if the transaction below fails, an orphan document is harmless (GC
    # removes it); the reverse order could leave a PRD without content.
    try:
        store.create(prd_id, document.new_document(content, meta), origin=principal.username)
    except PutError as exc:
        if not (chosen and is_conditional_failure(exc)):
            raise
    prd = PrdModel(id=prd_id, title=title, status="draft", owner=principal.username, template=template,
                   created_at=now, created_by=principal.username, updated_at=now,
                   updated_by=principal.username, owner_count=1)
    owner = MemberModel(prd_id=prd_id, username=principal.username, role=Role.OWNER.value,
                        added_by=principal.username, added_at=now)
    with _transact(connection()) as tx:
        tx.save(prd, condition=PrdModel.id.does_not_exist())
        tx.save(owner)
    events.publish(events.PRD_CREATED, {"prd_id": prd_id, "title": title, "template": template,
                                        **({"source": source} if source else {})},
                   actor=principal.username)
    return {**PrdSummary.of(prd, Role.OWNER).to_json(), "markdown": content}


def list_prds(principal: Principal, *, scope: str = "mine") -> list[dict[str, Any]]:
    """The PRDs the caller is a member of (org admins may ask for ``scope=all``)."""
    roles: dict[str, Role | None] = {
        m.prd_id: Role(m.role) for m in MemberModel.by_user.query(principal.username)
        if principal.may_reach(m.prd_id)
    }
    prds: list[PrdModel]
    if scope == "all" and principal.is_admin:
        prds = [p for p in PrdModel.scan(PrdModel.deleted_at.does_not_exist())]
    else:
        prds = list(PrdModel.batch_get(list(roles))) if roles else []
    summaries = [PrdSummary.of(p, roles.get(p.id)) for p in prds if not p.deleted_at]
    summaries.sort(key=lambda s: s.updated_at, reverse=True)
    return [s.to_json() for s in summaries]


def get_prd(principal: Principal, prd_id: str) -> dict[str, Any]:
    """Metadata plus the current Markdown (snapshot + every stored update)."""
    from ..collab import document, store  # lazy: see the imports

    prd, role = _authorize(prd_id, principal, Action.READ)
    stored = store.read(prd_id)
    return {
        **PrdSummary.of(prd, role).to_json(),
        "markdown": document.markdown_of(stored.doc),
        "meta": document.meta_of(stored.doc),
        # The search index's status (prdtool.search.indexer): when it last took this PRD, the newest
        # version it holds, and its last failure (null once a later attempt succeeded).
        "search": {"indexedAt": int(prd.search_indexed_at) if prd.search_indexed_at else None,
                   "indexedVersion": prd.search_indexed_version, "error": prd.search_error},
    }


def update_prd(principal: Principal, prd_id: str, *, title: str | None = None,
               status: str | None = None) -> dict[str, Any]:
    prd, role = _authorize(prd_id, principal, Action.EDIT)
    if status is not None and status not in STATUSES:
        raise Unprocessable(f"unknown status {status!r}; choose one of {list(STATUSES)}")
    changes = {k: v for k, v in {"title": title, "status": status}.items() if v is not None}
    if not changes:
        return {**PrdSummary.of(prd, role).to_json()}
    now = _now_ms()
    actions: list[UpdateAction] = [PrdModel.updated_at.set(now), PrdModel.updated_by.set(principal.username)]
    if title is not None:
        actions.append(PrdModel.title.set(title))
    if status is not None:
        actions.append(PrdModel.status.set(status))
    try:
        prd.update(actions=actions, condition=PrdModel.deleted_at.does_not_exist())
    except Exception as exc:
        from ..storage import is_conditional_failure

        if is_conditional_failure(exc):
            raise NotFound("PRD not found") from exc
        raise
    # Mirror the change into Y.Map("meta") as an incremental edit, so live clients see it.
    from ..collab import document, live, store  # lazy: see the imports

    stored = store.read(prd_id)
    update = document.meta_update(stored.doc, changes)
    if update:
        live.apply_server_update(prd_id, update, origin=principal.username)
    events.publish(events.PRD_UPDATED, {"prd_id": prd_id, "changes": changes}, actor=principal.username)
    return PrdSummary.of(prd, role).to_json()


def delete_prd(principal: Principal, prd_id: str) -> None:
    """Soft-delete: the PRD disappears at once; the daily maintenance purges it after a grace period."""
    prd, _ = _authorize(prd_id, principal, Action.DELETE)
    now = _now_ms()
    purge_at = int(time.time()) + get_settings().purge_after_days * 86400
    try:
        prd.update(
            actions=[PrdModel.deleted_at.set(now), PrdModel.purge_at.set(purge_at),
                     PrdModel.updated_at.set(now), PrdModel.updated_by.set(principal.username)],
            condition=PrdModel.deleted_at.does_not_exist(),
        )
    except Exception as exc:
        from ..storage import is_conditional_failure

        if is_conditional_failure(exc):
            raise NotFound("PRD not found") from exc
        raise
    events.publish(events.PRD_DELETED, {"prd_id": prd_id, "title": prd.title}, actor=principal.username)
    from ..collab import live  # lazy: see the imports

    try:  # open editors are told and closed now; their next frame would be refused anyway
        live.prd_deleted(prd_id)
    except Exception:
        logger.exception("could not close the sessions of a deleted PRD", extra={"prd_id": prd_id})


# ---------------------------------------------------------------------- members
def list_members(principal: Principal, prd_id: str) -> list[dict[str, Any]]:
    _authorize(prd_id, principal, Action.READ)
    return [
        {"username": m.username, "role": m.role, "added_by": m.added_by, "added_at": int(m.added_at)}
        for m in MemberModel.query(prd_id, consistent_read=True)
    ]


def _owner_delta(old: Role | None, new: Role | None) -> int:
    return (new == Role.OWNER) - (old == Role.OWNER)


def _apply_membership(prd: PrdModel, username: str, old: Role | None, new: Role | None,
                      actor: str) -> None:
    """Write a membership change and the owner count together; the last owner cannot leave."""
    delta = _owner_delta(old, new)
    conn = connection()
    try:
        with _transact(conn) as tx:
            if new is None:
                tx.delete(MemberModel(prd_id=prd.id, username=username),
                          condition=MemberModel.role == old.value if old else None)
            else:
                tx.save(MemberModel(prd_id=prd.id, username=username, role=new.value,
                                    added_by=actor, added_at=_now_ms()),
                        condition=(MemberModel.role == old.value) if old else MemberModel.username.does_not_exist())
            condition = PrdModel.deleted_at.does_not_exist()
            if delta < 0:
                condition = condition & (PrdModel.owner_count > 1)
            tx.update(prd, actions=[PrdModel.owner_count.add(delta), PrdModel.updated_at.set(_now_ms())],
                      condition=condition)
    except TransactWriteError as exc:
        reasons = [getattr(r, "code", None) for r in (exc.cancellation_reasons or []) if r]
        if delta < 0 and "ConditionalCheckFailed" in reasons:
            raise Conflict("a PRD must keep at least one owner; add another owner first",
                           code="last_owner") from exc
        raise Conflict("the membership changed meanwhile; reload and try again") from exc


def put_member(principal: Principal, prd_id: str, username: str, role: str) -> dict[str, Any]:
    prd, _ = _authorize(prd_id, principal, Action.MANAGE_MEMBERS)
    try:
        new_role = Role(role)
    except ValueError as exc:
        raise Unprocessable(f"unknown role {role!r}; choose one of {[r.value for r in Role]}") from exc
    username = username.strip().lower()
    old_role = member_role(prd_id, username)
    if old_role is None and not provider.user_exists(username):
        raise NotFound(f"no user named {username!r}", code="user_not_found")
    if old_role != new_role:
        _apply_membership(prd, username, old_role, new_role, principal.username)
        events.publish(events.PRD_MEMBER_CHANGED,
                       {"prd_id": prd_id, "username": username, "role": new_role.value,
                        "previous_role": old_role.value if old_role else None},
                       actor=principal.username)
        if old_role is not None:
            _tell_live_sessions(prd_id, username, new_role.value)
    return {"prd_id": prd_id, "username": username, "role": new_role.value}


def _tell_live_sessions(prd_id: str, username: str, role: str | None) -> None:
    """Open editors learn their new role at once (the socket enforces it within seconds anyway)."""
    from ..collab import live  # lazy: see the imports

    try:
        live.role_changed(prd_id, username, role)
    except Exception:
        logger.exception("could not notify live sessions of a role change", extra={"prd_id": prd_id})


def remove_member(principal: Principal, prd_id: str, username: str) -> None:
    username = username.strip().lower()
    if username != principal.username:  # anyone may leave; removing others needs the right
        prd, _ = _authorize(prd_id, principal, Action.MANAGE_MEMBERS)
    else:
        prd, _ = _authorize(prd_id, principal, Action.READ)
    old_role = member_role(prd_id, username)
    if old_role is None:
        raise NotFound(f"{username!r} is not a member of this PRD", code="member_not_found")
    _apply_membership(prd, username, old_role, None, principal.username)
    events.publish(events.PRD_MEMBER_CHANGED,
                   {"prd_id": prd_id, "username": username, "role": None, "previous_role": old_role.value},
                   actor=principal.username)
    _tell_live_sessions(prd_id, username, None)


def record_content_change(prd_id: str, *, editors: tuple[str, ...], at_ms: int, updates: int) -> bool:
    """Note that the content changed (called by the write queue after a compaction).

    Sets ``updated_at``/``updated_by`` unless a later change was already recorded, and publishes
    ``prd.updated`` — the hook where versioning, indexing and notifications attach — whenever the PRD
    still exists: a change of title or members recorded after these edits were typed (a later
    ``updated_at``) must not swallow the edits' event.  False if the PRD no longer exists (deleted
    meanwhile).
    """
    if not editors:
        return False
    prd = PrdModel(id=prd_id)
    try:
        prd.update(
            actions=[PrdModel.updated_at.set(at_ms), PrdModel.updated_by.set(editors[-1])],
            condition=PrdModel.id.exists() & PrdModel.deleted_at.does_not_exist() & (PrdModel.updated_at < at_ms),
        )
    except Exception as exc:
        from ..storage import is_conditional_failure

        if not is_conditional_failure(exc):
            raise
        try:
            live = not PrdModel.get(prd_id, consistent_read=True).deleted_at
        except PrdModel.DoesNotExist:
            live = False
        if not live:
            return False
    events.publish(events.PRD_UPDATED, {"prd_id": prd_id, "changes": {"content": True},
                                        "editors": list(editors), "updates": updates}, actor=editors[-1])
    return True
