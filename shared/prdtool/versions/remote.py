"""Mirror a PRD's git repository (on S3) to a push remote over git's smart HTTP protocol.

A PRD may name a push remote (an ``http(s)://host/path.git`` URL on GitHub, GitLab, ...) that receives
every version: :func:`push` sends ``refs/heads/main`` and every ``refs/tags/*`` of the S3 repository
with dulwich's HTTP client (``HttpGitClient.send_pack``); the pack is generated straight from the S3
object store (``generate_pack_data``), so nothing touches local disk.

What is sent is decided once the remote's refs are known (dulwich calls ``update_refs`` with them,
before any pack is built or POSTed), all or nothing:

* The history of a PRD is linear and only grows, so ``main`` is only ever fast-forwarded.  A remote
  ``main`` that is not an ancestor of ours (someone pushed there, or it belongs to another project)
  refuses the whole push with ``kind="rejected"``: nothing is ever forced.
* A tag is created when absent, left alone when equal, and a remote tag holding another sha refuses
  the whole push (tags are never moved).
* Refs already equal are counted in :attr:`PushResult.unchanged`; when nothing differs, dulwich
  returns before its POST, so an up-to-date remote costs one GET (the ref advertisement) and no pack.
* Other remote refs (branches, tags the PRD does not have) are ignored.

The remote may still refuse refs after the pack arrives (a hook, a protected branch, a ref moved by
someone else between our GET and our POST: the ref commands carry the old sha the remote announced,
so a concurrent update fails there rather than being overwritten).  Its per-ref report
(``SendPackResult.ref_status``) turns into ``kind="rejected"``.  Refs the remote did accept stay
pushed, which is harmless: repeating a push is always safe, and a retry sends only what is missing.

Errors are :class:`PushError` with a ``kind`` a caller can act on (``auth``, ``not_found``,
``rejected``, ``network``, ``invalid``).  HTTP statuses are read from our own urllib3 pool manager
(dulwich reports most of them only as ``GitProtocolError`` text): 401/403 are ``auth``, 404 is
``not_found``, 408/429/5xx and connection failures or timeouts are ``network`` (the only retryable
kind).  The message is a sentence of our own; text from the server (a hook's reason) is included
only after the password, its URL-encoded forms and the Basic credentials' base64 are scrubbed out,
control characters dropped and the length capped.  Wrapped exceptions are not chained: the error is
raised ``from None`` outside the handler, so neither ``__cause__`` nor ``__context__`` leads to an
exception whose text or attributes may echo the server (dulwich keeps the ``WWW-Authenticate``
header on ``HTTPUnauthorized``).  The password lives only in :class:`Remote` (left out of its
``repr``) and in dulwich's client for the duration of a push.

Connection details: a dedicated ``urllib3.PoolManager`` per push (no environment proxies, TLS
certificates verified against the system store), ``timeout`` as both the connect and the per-read
timeout, connection attempts retried twice, never a request whose body may have reached the server.
Credentials go as HTTP Basic authorisation; dulwich attaches them only to the remote's own origin,
so a redirect elsewhere never carries them.  A token without a username is sent with the username
``x-access-token`` (GitHub's convention; GitLab and Bitbucket accept any username with a token).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import urllib3
from dulwich.client import HttpGitClient, HTTPProxyUnauthorized, HTTPUnauthorized, default_user_agent_string
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository, SendPackError
from dulwich.objects import ZERO_SHA, Commit, ObjectID
from dulwich.pack import UnpackedObject
from dulwich.refs import Ref
from urllib3.exceptions import HTTPError as Urllib3Error

from .gitstore import MAIN, TAGS, S3Repo

__all__ = ["PushError", "PushErrorKind", "PushResult", "Remote", "push", "validate_url"]

logger = logging.getLogger(__name__)

PushErrorKind = Literal["auth", "not_found", "rejected", "network", "invalid"]
MAX_URL_LENGTH = 2000
DEFAULT_TOKEN_USERNAME = "x-access-token"
_MAX_REASON = 200  # characters of a server's explanation kept in a message
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"  # RFC 3986 pchar and "/": left as they are when the path is normalised
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # CSI sequences (colours, cursor moves) a hook may print
_RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Remote:
    """Where a PRD is mirrored.  ``password`` is a token: it is kept out of ``repr`` and every message."""

    url: str
    username: str | None
    password: str | None = field(repr=False)


@dataclass(frozen=True)
class PushResult:
    """``pushed``: ref name -> new sha (hex) the remote accepted; ``unchanged``: refs already equal there."""

    pushed: dict[str, str]
    unchanged: int


class PushError(Exception):
    """A push that did not (entirely) happen; ``message`` is safe to show and to log (no credentials)."""

    def __init__(self, kind: PushErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: PushErrorKind = kind
        self.retryable: bool = kind == "network"
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, message={self.message!r})"


# --------------------------------------------------------------------------------------------------
# The URL


def _invalid(reason: str) -> PushError:
    return PushError("invalid", f"The push remote URL is not valid: {reason}.")


def validate_url(url: str) -> str:
    """The normalised form of a push remote URL, or :class:`PushError` (``kind="invalid"``).

    Accepted: ``http`` or ``https``, a host (names are lower-cased and IDNA-encoded, IPv6 in
    brackets), an optional port, a repository path; surrounding whitespace is stripped, a trailing
    slash dropped and non-ASCII path characters percent-encoded.  Refused: credentials in the URL
    (``user:token@``), a query or fragment, whitespace or control characters, ``.``/``..`` path
    segments, more than 2000 characters.  Messages never repeat the URL (it might hold a token).
    """
    if not isinstance(url, str):
        raise _invalid("it must be text")
    url = url.strip()
    if not url:
        raise _invalid("it is empty")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"it is longer than {MAX_URL_LENGTH} characters")
    if _CONTROL.search(url) or any(char.isspace() for char in url):
        raise _invalid("it contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _invalid("it could not be parsed (check the host and port)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _invalid("only http:// and https:// remotes are supported")
    if "@" in parts.netloc:
        raise _invalid("it must not contain a username or token; set them as the remote's credentials")
    if "?" in url or "#" in url:
        raise _invalid("it must not have a query (?) or a fragment (#)")
    host = parts.hostname or ""
    if not host:
        raise _invalid("it has no host")
    if ":" in host:  # an IPv6 literal
        netloc_host = f"[{host}]"
    else:
        try:
            netloc_host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _invalid("the host name is not valid") from None
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", netloc_host):
            raise _invalid("the host name is not valid")
    netloc = netloc_host if port is None else f"{netloc_host}:{port}"
    path = quote(parts.path, safe=_SAFE_PATH).rstrip("/")
    if not path:
        raise _invalid("it has no repository path (like /owner/repository.git)")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise _invalid("its path must not contain . or .. segments")
    return urlunsplit((scheme, netloc, path, "", ""))


# --------------------------------------------------------------------------------------------------
# Keeping secrets out of messages


def _secrets(remote: Remote, username: str | None) -> list[str]:
    """Every form in which the password might come back from a server (longest first)."""
    password = remote.password
    if not password:
        return []
    forms = {password, quote(password, safe=""), quote(password)}
    if username is not None:
        forms.add(base64.b64encode(f"{username}:{password}".encode()).decode("ascii"))
    forms.add(base64.b64encode(password.encode()).decode("ascii"))
    return sorted(forms, key=len, reverse=True)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """Server text fit for a message: terminal escapes and control characters out, secrets masked, capped.

    Secrets are masked after the characters are removed (removing them could join a split secret)
    and before the cut (so no prefix of a secret survives it)."""
    text = _CONTROL.sub(" ", _ANSI.sub("", text))
    for secret in secrets:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 1].rstrip() + "…"
    return text


# --------------------------------------------------------------------------------------------------
# HTTP


class _StatusPool(urllib3.PoolManager):
    """A pool manager that remembers the last request and its status (dulwich hides most statuses)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_url = ""
        self.last_status: int | None = None

    def urlopen(  # type: ignore[override]  # as urllib3's own PoolManager.urlopen
            self, method: str, url: str, redirect: bool = True, **kw: Any) -> urllib3.BaseHTTPResponse:
        self.last_url, self.last_status = url, None
        response = super().urlopen(method, url, redirect=redirect, **kw)
        self.last_status = response.status
        return response


def _pool(timeout: float) -> _StatusPool:
    retries = urllib3.Retry(total=3, connect=2, read=0, status=0, other=0, redirect=5, backoff_factor=0.2,
                            raise_on_status=False)
    return _StatusPool(headers={"User-Agent": default_user_agent_string()}, cert_reqs="CERT_REQUIRED",
                       timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=retries)


# --------------------------------------------------------------------------------------------------
# Push


def _local_refs(repo: S3Repo) -> dict[Ref, ObjectID]:
    """``main`` and every tag, read fresh; empty before the first version."""
    repo.refs.refresh()
    refs: dict[Ref, ObjectID] = {}
    main = repo.refs.read_ref(MAIN)
    if main:
        refs[MAIN] = ObjectID(main)
    for name, sha in sorted(repo.refs.as_dict(Ref(TAGS.rstrip(b"/"))).items()):
        refs[Ref(TAGS + name)] = sha
    return refs


def _is_ancestor(repo: S3Repo, ancestor: ObjectID, head: ObjectID) -> bool:
    """Is ``ancestor`` ``head`` or reachable from it?  Walks back from ``head`` (usually one step)."""
    if ancestor not in repo.object_store:
        return False
    seen: set[ObjectID] = set()
    todo = [head]
    while todo:
        sha = todo.pop()
        if sha == ancestor:
            return True
        if sha in seen:
            continue
        seen.add(sha)
        obj = repo.object_store[sha]
        if isinstance(obj, Commit):
            todo.extend(obj.parents)
    return False


def _plan(repo: S3Repo, local: Mapping[Ref, ObjectID], remote_refs: Mapping[Ref, ObjectID],
          ) -> tuple[dict[Ref, ObjectID], int]:
    """The refs to send and how many are already equal; :class:`PushError` when one may not move."""
    updates: dict[Ref, ObjectID] = {}
    unchanged = 0
    for name, sha in local.items():
        theirs = remote_refs.get(name)
        if theirs == sha:
            unchanged += 1
        elif theirs is None or theirs == ZERO_SHA or (name == MAIN and _is_ancestor(repo, theirs, sha)):
            updates[name] = sha  # new there, or a fast-forward of main
        elif name == MAIN:
            raise PushError("rejected", "The push remote has commits on main that this PRD does not have "
                                        "(someone else pushed there); nothing was pushed.")
        else:
            tag = name[len(TAGS):].decode("utf-8", "replace")
            raise PushError("rejected", f"The push remote already has a tag {tag} on a different commit; "
                                        "tags are never overwritten, so nothing was pushed.")
    return updates, unchanged


def _kind_of_status(status: int | None) -> PushErrorKind | None:
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status is not None and (status in _RETRYABLE_STATUSES or status >= 500):
        return "network"
    if status is not None and 400 <= status < 500:
        return "rejected"
    return None


_STATUS_MESSAGES: dict[PushErrorKind, str] = {
    "auth": "The push remote refused the credentials (HTTP {status}): check the username and that the token "
            "may write to this repository.",
    "not_found": "The push remote does not exist (HTTP 404): check the URL and that the token can see the repository.",
    "network": "The push remote is unavailable (HTTP {status}); try again later.",
    "rejected": "The push remote refused the push (HTTP {status}).",
}


def _translate(exc: BaseException, pool: _StatusPool, remote: Remote, url: str, secrets: list[str]) -> PushError:
    """The :class:`PushError` for what dulwich or urllib3 raised (never repeating their text)."""
    host = urlsplit(url).hostname or "the remote"
    if isinstance(exc, HTTPUnauthorized):
        if not remote.password and not remote.username:
            return PushError("auth", "The push remote asks for credentials, and none are configured.")
        return PushError("auth", "The push remote refused the credentials (HTTP 401): check the username and token.")
    if isinstance(exc, HTTPProxyUnauthorized):
        return PushError("network", f"A proxy on the way to {host} asked for credentials.")
    if isinstance(exc, NotGitRepository):
        return PushError("not_found", "The push remote does not exist (HTTP 404): check the URL and that the "
                                      "token can see the repository.")
    if isinstance(exc, SendPackError):
        status = exc.args[0] if exc.args else b""
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        return PushError("rejected",
                         f"The push remote could not store the versions it was sent ({_scrub(text, secrets)}).")
    cause = exc.__cause__
    if isinstance(exc, Urllib3Error | OSError) or isinstance(cause, Urllib3Error | OSError) \
            or isinstance(exc, HangupException):
        return PushError("network", f"Could not reach the push remote at {host} (connection failed or timed out); "
                                    "try again later.")
    kind = _kind_of_status(pool.last_status)
    if kind is not None:
        return PushError(kind, _STATUS_MESSAGES[kind].format(status=pool.last_status))
    if pool.last_status == 200 and pool.last_url.endswith("/git-receive-pack") and isinstance(exc, GitProtocolError):
        # The remote took the request, then gave up on it (a fatal message on the side band: size
        # limits, a broken pack, a server-side failure); its words are worth showing, scrubbed.
        reason = _scrub(str(exc), secrets)
        return PushError("rejected", f"The push remote failed while receiving the versions ({reason}).")
    if isinstance(exc, NotImplementedError | ValueError | GitProtocolError):
        # A dumb or non-git server (a web page at that URL), or a garbled answer.
        return PushError("not_found", f"No git repository answers at this URL on {host} (it does not speak git's "
                                      "smart HTTP protocol).")
    return PushError("network", f"The push to {host} failed unexpectedly; try again later.")


def push(repo: S3Repo, remote: Remote, *, timeout: float = 20) -> PushResult:
    """Send ``main`` and every tag of ``repo`` to ``remote``: fast-forward only, tags never moved.

    Returns what the remote accepted (:class:`PushResult`); raises :class:`PushError` otherwise
    (see the module docstring for the kinds).  A repository without any version pushes nothing and
    does not contact the remote.  Safe to repeat: an interrupted push is completed by the next one.
    """
    url = validate_url(remote.url)
    if not timeout > 0:
        raise PushError("invalid", "The push timeout must be a positive number of seconds.")
    username = remote.username or None
    if username is not None and (":" in username or _CONTROL.search(username)):
        raise PushError("invalid", "The push remote's username must not contain ':' or control characters.")
    if username is None and remote.password:
        username = DEFAULT_TOKEN_USERNAME
    secrets = _secrets(remote, username)

    local = _local_refs(repo)
    if not local:
        return PushResult(pushed={}, unchanged=0)

    planned: dict[Ref, ObjectID] = {}
    counted: list[int] = []
    own_failures: list[BaseException] = []  # raised by our side (reading S3), not by the remote

    def update_refs(remote_refs: dict[Ref, ObjectID]) -> dict[Ref, ObjectID]:
        try:
            updates, unchanged = _plan(repo, local, remote_refs)
        except PushError:
            raise
        except Exception as exc:
            own_failures.append(exc)
            raise
        planned.update(updates)
        counted.append(unchanged)
        return updates

    def guarded(records: Iterator[UnpackedObject]) -> Iterator[UnpackedObject]:
        try:
            yield from records
        except Exception as exc:
            own_failures.append(exc)
            raise

    def generate_pack_data(have: Set[ObjectID], want: Set[ObjectID], *, ofs_delta: bool = False,
                           progress: Callable[[bytes], None] | None = None) -> tuple[int, Iterator[UnpackedObject]]:
        try:
            count, records = repo.object_store.generate_pack_data(have, want, ofs_delta=ofs_delta, progress=progress)
        except Exception as exc:
            own_failures.append(exc)
            raise
        return count, guarded(records)

    pool = _pool(timeout)
    client = HttpGitClient(url, pool_manager=pool, username=username, password=remote.password if username else None,
                           quiet=True)
    error: PushError | None = None
    try:
        result = client.send_pack(b"", update_refs, generate_pack_data)
    except PushError:
        raise
    except Exception as exc:
        if own_failures:  # the S3 repository failed us: that is not the remote's fault, say what happened
            if own_failures[0] is exc:
                raise
            raise own_failures[0] from None
        error = _translate(exc, pool, remote, url, secrets)
        logger.warning("push to %s failed: %s (%s)", urlsplit(url).hostname, error.kind, type(exc).__name__)
    finally:
        client.close()
        pool.clear()
    if error is not None:
        # Raised outside the handler: no __context__ either, so the original exception (whose text or
        # attributes may echo the server, e.g. a WWW-Authenticate realm) is not reachable from ours.
        raise error from None

    statuses = result.ref_status or {}
    refused = {bytes(name): reason for name, reason in statuses.items() if reason is not None and name in planned}
    if refused:
        names = ", ".join(sorted(name.decode("utf-8", "replace") for name in refused))
        reasons = "; ".join(sorted({_scrub(reason, secrets) for reason in refused.values()}))
        accepted = len(planned) - len(refused)
        raise PushError("rejected", f"The push remote refused {names} ({reasons})"
                                    + (f"; {accepted} other ref(s) were pushed." if accepted else "."))
    return PushResult(pushed={name.decode(): sha.decode() for name, sha in planned.items()},
                      unchanged=counted[-1] if counted else 0)
