"""What the versions routes do (``/api/prds/{id}/versions``, ``/diff``): list, read, compare,
save by hand and restore — each after the PRD policy's check (read, or edit to change anything)."""

from __future__ import annotations

import difflib
from typing import Any

from ..auth.policy import Action
from ..auth.principal import Principal
from ..errors import BadRequest
from ..prds.access import authorize
from . import records, service
from .changes import Thresholds, classify, parse_version


def _version_text(prd_id: str, version: str) -> tuple[records.Version, str]:
    record = records.get(prd_id, version)
    return record, service.read_markdown(record.markdown_key)


def list_versions(principal: Principal, prd_id: str, *, limit: int, before: str | None) -> dict[str, Any]:
    authorize(prd_id, principal, Action.READ)
    if before is not None:
        _check_version(before)
    versions, cursor = records.page(prd_id, limit=limit, before=before)
    return {"items": [v.to_json() for v in versions], "next": cursor}


def get_version(principal: Principal, prd_id: str, version: str) -> dict[str, Any]:
    authorize(prd_id, principal, Action.READ)
    record = records.get(prd_id, version)
    if record.archived_at is not None:  # the details moved to the archive with the Markdown
        from .maintenance import read_archive

        archived = read_archive(record.markdown_key)
        return {**record.to_json(), "details": list(archived.get("details") or []), "markdown": archived["markdown"]}
    return {**record.to_json(), "markdown": service.read_markdown(record.markdown_key)}


def _unified(old: str, new: str, fromfile: str = "", tofile: str = "") -> str:
    """difflib's unified diff with git's ``\\ No newline at end of file`` after a last line that has no
    line break (difflib writes it as is, gluing it to the line that follows: ``-old+new``)."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=fromfile,
                                 tofile=tofile)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def diff(principal: Principal, prd_id: str, old: str, new: str) -> dict[str, Any]:
    """Unified diff of ``prd.md`` between two versions of one PRD, and what changed per section."""
    from ..settings import get_settings

    authorize(prd_id, principal, Action.READ)
    old_record, old_text = _version_text(prd_id, old)
    new_record, new_text = _version_text(prd_id, new)
    unified = _unified(old_text, new_text, fromfile=f"v{old_record.version}/prd.md",
                       tofile=f"v{new_record.version}/prd.md")
    change = classify(old_text, new_text, Thresholds.from_settings(get_settings()))
    sections = []
    for item in change.changes:
        before = item.old.body if item.old is not None and item.action != "added" else ""
        after = item.section.body if item.action != "removed" else ""
        sections.append({
            "title": item.section.title, "old_title": item.old.title if item.old is not None else None,
            "action": item.action, "summary": item.describe(), "words_added": item.added_words,
            "words_removed": item.removed_words,
            "diff": _unified(before, after),
        })
    return {"from": old_record.version, "to": new_record.version, "kind": change.kind.value,
            "summary": change.summary(), "unified": unified, "sections": sections}


def save_version(principal: Principal, prd_id: str, *, name: str | None, message: str | None) -> dict[str, Any]:
    """A version now, by hand (even without changes since the last), named if the caller wishes."""
    authorize(prd_id, principal, Action.EDIT)
    version = service.cut(prd_id, actor=principal.username, name=name, message=message, by_hand=True)
    assert version is not None  # by hand always cuts
    return version.to_json()


def restore(principal: Principal, prd_id: str, version: str) -> dict[str, Any]:
    """Make the document what it was at ``version`` — as an edit every connected editor receives —
    and version the result (history is never rewritten: the new version says what it restored)."""
    from ..collab import document, live, store

    authorize(prd_id, principal, Action.EDIT)
    record, markdown = _version_text(prd_id, version)
    update = document.content_update(store.read(prd_id).doc, markdown)
    if update:
        live.apply_server_update(prd_id, update, origin=principal.username)
    made = service.cut(prd_id, actor=principal.username, restored_from=record.version, by_hand=True,
                       message=f"Restores v{record.version}")
    assert made is not None
    return made.to_json()


def _check_version(text: str) -> None:
    try:
        parse_version(text)
    except ValueError as exc:
        raise BadRequest(str(exc), code="bad_version") from None


# -- the push remote (prdtool.versions.mirror) -------------------------------------------------------

def get_remote(principal: Principal, prd_id: str) -> dict[str, Any]:
    from ..errors import NotFound
    from . import mirror

    authorize(prd_id, principal, Action.READ)
    found = mirror.describe(prd_id)
    if found is None:
        raise NotFound("this PRD has no push remote", code="remote_not_found")
    return found


def put_remote(principal: Principal, prd_id: str, *, url: str, username: str | None,
               token: str | None) -> dict[str, Any]:
    from . import mirror

    authorize(prd_id, principal, Action.MANAGE_MEMBERS)
    return mirror.configure(prd_id, url=url, username=username, token=token, actor=principal.username)


def delete_remote(principal: Principal, prd_id: str) -> None:
    from . import mirror

    authorize(prd_id, principal, Action.MANAGE_MEMBERS)
    mirror.remove(prd_id, actor=principal.username)


def push_remote(principal: Principal, prd_id: str) -> dict[str, Any]:
    """Push now (an editor's "retry" after fixing the remote): queued for GitPushFunction; the
    answer is the remote's state before it (``GET`` shows the outcome)."""
    from . import mirror

    authorize(prd_id, principal, Action.EDIT)
    return mirror.request_push(prd_id, actor=principal.username)

