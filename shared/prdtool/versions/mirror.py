"""A PRD's push remote: where its versions are mirrored, and how the last pushes went.

Configuration is one item of VersionsTable, ``(prd_id, "remote")``: the URL, the username, the name
of the Secrets Manager secret that holds the token (``GIT_REMOTE_SECRET_PREFIX<prdId>``), and the
state of the pushes.  The token itself is only ever in Secrets Manager: never in the table, a
log line, an event, an answer or an error message.

Pushing (GitPushFunction, on ``prd.version.created`` and ``prd.remote.changed``) sends ``main`` and
every tag (``remote.push``: fast-forward only, tags never moved).  It never blocks a save: it runs
after the version exists, in its own function.  A failure is recorded on the item (``state``
``failing`` with the reason, the attempt count and the time) and, when it may pass (network,
5xx, throttling), raised so that Lambda's asynchronous retries try again with backoff (about 1 and
2 minutes later); the next version pushes whatever is missing in any case.  A failure that will
not pass by itself (credentials refused, repository missing, the remote has other commits) is
recorded as ``failed``, published as ``prd.remote.push_failed`` for notifications, and not retried.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from ..aws import client
from ..errors import BadRequest, NotFound
from ..observability import logger
from ..settings import get_settings
from . import remote as git_remote
from .records import VersionItem

REMOTE_SK = "remote"
PRD_REMOTE_CHANGED = "prd.remote.changed"
PRD_REMOTE_PUSH_FAILED = "prd.remote.push_failed"
PRD_REMOTE_PUSH_REQUESTED = "prd.remote.push_requested"


def _secret_name(prd_id: str) -> str:
    return f"{get_settings().git_remote_secret_prefix}{prd_id}"


def _item(prd_id: str) -> VersionItem | None:
    try:
        return VersionItem.get(prd_id, REMOTE_SK, consistent_read=True)
    except VersionItem.DoesNotExist:
        return None


def describe(prd_id: str) -> dict[str, Any] | None:
    """The remote as the API shows it (no token; whether one is set)."""
    item = _item(prd_id)
    if item is None or not item.remote_url:
        return None
    return {"url": item.remote_url, "username": item.remote_username, "has_token": bool(item.remote_secret),
            "state": item.push_state or "never", "error": item.push_error, "error_kind": item.push_error_kind,
            "attempts": int(item.push_attempts or 0), "attempted_at": _int(item.push_attempted_at),
            "pushed_at": _int(item.pushed_at), "pushed_version": item.pushed_version}


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def check_url(url: str) -> str:
    """A remote URL the product may push to: valid (``remote.validate_url``) and, unless
    ``GIT_REMOTE_ALLOW_PRIVATE``, not naming a private, loopback or link-local address (a
    function in a VPC, or the metadata service, must not be reachable through this setting)."""
    try:
        normal = git_remote.validate_url(url)
    except git_remote.PushError as exc:
        raise BadRequest(exc.message, code="bad_remote_url") from None
    if not get_settings().git_remote_allow_private:
        host = urlsplit(normal).hostname or ""
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
        except OSError:
            raise BadRequest(f"the remote's host {host!r} does not resolve", code="bad_remote_url") from None
        for address in addresses:
            ip = ipaddress.ip_address(str(address).split("%", 1)[0])
            if not ip.is_global:
                raise BadRequest("the remote must be a public address", code="bad_remote_url")
    return normal


def configure(prd_id: str, *, url: str, username: str | None, token: str | None, actor: str) -> dict[str, Any]:
    """Set (or replace) the PRD's remote; ``token`` None keeps the stored one for the same URL host."""
    from .. import events

    normal = check_url(url)
    if username is not None and (":" in username or not username.strip()):
        raise BadRequest("a username may not be empty or contain ':'", code="bad_remote_username")
    existing = _item(prd_id)
    secret = existing.remote_secret if existing is not None else None
    if token is not None:
        secret = _store_token(prd_id, token)
    elif existing is not None and existing.remote_url and \
            urlsplit(existing.remote_url).netloc != urlsplit(normal).netloc:
        secret = None  # a token is never sent to another host than the one it was given for
        _delete_token(prd_id)
    VersionItem(prd_id=prd_id, sk=REMOTE_SK, remote_url=normal, remote_username=username, remote_secret=secret,
                push_state="never", push_attempts=0).save()
    events.publish(PRD_REMOTE_CHANGED, {"prd_id": prd_id, "url": normal}, actor=actor)
    described = describe(prd_id)
    assert described is not None
    return described


def remove(prd_id: str, *, actor: str) -> None:
    from .. import events

    if _item(prd_id) is None:
        raise NotFound("this PRD has no push remote", code="remote_not_found")
    VersionItem(prd_id=prd_id, sk=REMOTE_SK).delete()
    _delete_token(prd_id)
    events.publish(PRD_REMOTE_CHANGED, {"prd_id": prd_id, "url": None}, actor=actor)


def _store_token(prd_id: str, token: str) -> str:
    secrets = client("secretsmanager")
    name = _secret_name(prd_id)
    try:
        secrets.put_secret_value(SecretId=name, SecretString=token)
    except secrets.exceptions.ResourceNotFoundException:
        secrets.create_secret(Name=name, SecretString=token,
                              Description="PRD Tool: the token of a PRD's git push remote")
    return name


def _delete_token(prd_id: str) -> None:
    secrets = client("secretsmanager")
    with contextlib.suppress(secrets.exceptions.ResourceNotFoundException):
        secrets.delete_secret(SecretId=_secret_name(prd_id), ForceDeleteWithoutRecovery=True)


def _read_token(name: str) -> str:
    return str(client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])


def request_push(prd_id: str, *, actor: str) -> dict[str, Any]:
    """Ask GitPushFunction to push now (a person fixed the remote); the remote's state as it is.

    Asynchronous: a push may take longer than an API request may, and only GitPushFunction may read
    the token."""
    from .. import events

    found = describe(prd_id)
    if found is None:
        raise NotFound("this PRD has no push remote", code="remote_not_found")
    events.publish(PRD_REMOTE_PUSH_REQUESTED, {"prd_id": prd_id}, actor=actor)
    return found


class PushFailed(Exception):
    """A push that may succeed if tried again (raised for Lambda's retries; already recorded)."""


def push_now(prd_id: str) -> dict[str, Any] | None:
    """Push the PRD's repository to its remote, if it has one; record how it went.

    Returns the remote's description afterwards (None: no remote).  Raises :class:`PushFailed`
    after recording a failure that may pass (the caller's retries), never for one that will not.
    """
    from .. import events
    from . import gitstore, records

    item = _item(prd_id)
    if item is None or not item.remote_url:
        return None
    attempts = int(item.push_attempts or 0) + 1
    now = records.now_ms()
    try:
        # Resolved again at each push: a name that now points at a private address (DNS rebinding,
        # or a setting changed since) is refused here too.
        try:
            check_url(item.remote_url)
        except BadRequest as exc:
            raise git_remote.PushError("invalid", exc.message) from None
        token = _read_token(item.remote_secret) if item.remote_secret else None
        target = git_remote.Remote(item.remote_url, item.remote_username, token)
        started = time.perf_counter()
        with gitstore.open_repo(client("s3"), get_settings().documents_bucket, prd_id) as repo:
            result = git_remote.push(repo, target)
    except git_remote.PushError as exc:
        state = "failing" if exc.retryable else "failed"
        _record(prd_id, item.remote_url, push_state=state, push_error=exc.message, push_error_kind=exc.kind,
                push_attempts=attempts, push_attempted_at=now)
        logger.warning("push to the PRD's remote failed",
                       extra={"prd_id": prd_id, "kind": exc.kind, "reason": exc.message, "attempts": attempts})
        if exc.retryable:
            raise PushFailed(exc.message) from None
        events.publish(PRD_REMOTE_PUSH_FAILED, {"prd_id": prd_id, "kind": exc.kind, "error": exc.message},
                       actor="system")
        return describe(prd_id)
    head = records.head(prd_id)
    _record(prd_id, item.remote_url, push_state="ok", push_error=None, push_error_kind=None, push_attempts=0,
            push_attempted_at=now, pushed_at=records.now_ms(), pushed_version=head.version)
    logger.info("pushed to the PRD's remote", extra={"prd_id": prd_id, "refs": len(result.pushed),
                                                      "unchanged": result.unchanged,
                                                      "ms": round((time.perf_counter() - started) * 1000)})
    return describe(prd_id)


def _record(prd_id: str, url: str, **values: Any) -> None:
    """Write the push state, unless the remote was changed or removed meanwhile."""
    actions = [getattr(VersionItem, name).set(value) if value is not None else getattr(VersionItem, name).remove()
               for name, value in values.items()]
    try:
        VersionItem(prd_id=prd_id, sk=REMOTE_SK).update(actions=actions, condition=VersionItem.remote_url == url)
    except Exception as exc:
        from ..storage import is_conditional_failure

        if not is_conditional_failure(exc):
            raise


def on_event(detail_type: str, detail: dict[str, Any]) -> dict[str, Any] | None:
    """GitPushFunction: ``prd.version.created``, ``prd.remote.changed``, ``prd.remote.push_requested``."""
    prd_id = str(detail.get("prd_id") or "")
    if not prd_id:
        raise ValueError("the event names no prd_id")
    if detail_type == PRD_REMOTE_CHANGED and not detail.get("url"):
        return None  # removed
    return push_now(prd_id)
