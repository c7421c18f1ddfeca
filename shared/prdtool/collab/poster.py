"""The API Gateway Management API for the fan-out hot path: PostToConnection and DeleteConnection
without botocore's client machinery.

An edit is posted to every other connection of the PRD: N-1 calls per keystroke.  Through a boto3
client each call spends ~0.4 ms of CPU before the network (parameter validation, serialisation,
endpoint rules, event hooks, response parsing) and re-derives the SigV4 signing key (four HMACs);
at 50 editors that is ~20 ms of Lambda CPU per edit.  The two operations are tiny REST calls, so
this module builds the request as botocore's serializer would (same URL, same percent-encoding),
signs it as botocore's ``SigV4Auth`` would, byte for byte (the signing key cached per day, region
and secret: it changes at most daily), and sends it on botocore's own HTTP session with keep-alive.
Measured: ~0.2 ms of CPU per post instead of ~0.75 ms (docs/benchmarks.md).

Errors keep botocore's shape: :class:`botocore.exceptions.ClientError` with the error code API
Gateway names in ``x-amzn-ErrorType`` (``GoneException`` for a closed connection), so callers do
not change.  Throttling and 5xx answers are retried twice with jittered backoff, as botocore's
standard retry mode does; everything else is raised at once.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.auth import _host_from_url
from botocore.awsrequest import AWSPreparedRequest, HeadersDict
from botocore.exceptions import ClientError
from botocore.httpsession import URLLib3Session
from botocore.utils import normalize_url_path, percent_encode

from ..awswire import client_error, signature, signing_key

SERVICE = "execute-api"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRY_CODES = frozenset({"LimitExceededException", "ThrottlingException", "TooManyRequestsException"})
_ATTEMPTS = 3


class Post:
    """A signed PostToConnection for an HTTP session's ``send_many`` (the local stack's door): what a
    transport reads of botocore's ``AWSPreparedRequest`` — method, URL, headers, body — with the
    headers in a plain dict (a fan-out prepares ~50 per edit; botocore's ``HeadersDict`` costs more
    than the signing)."""

    __slots__ = ("body", "headers", "url")
    method = "POST"
    stream_output = False

    def __init__(self, url: str, headers: dict[str, str], body: bytes) -> None:
        self.url = url
        self.headers = headers
        self.body = body


class ConnectionsApi:
    """``POST``/``DELETE {endpoint}/@connections/{id}`` signed for ``execute-api`` in ``region``.

    ``credentials`` is a botocore credentials object (refreshable ones are frozen per request).
    One instance per container: the HTTP session keeps its connections alive between requests.

    Requests are signed here rather than by ``SigV4Auth.add_auth`` (~60 µs of CPU per request): the
    shape is fixed — no query, the signed headers are ``host``, ``x-amz-date`` and, with temporary
    credentials, ``x-amz-security-token`` — so the canonical request is one format string; the
    result is byte for byte what botocore sends (tests/unit/test_poster.py checks it against
    botocore's signer).
    """

    def __init__(self, endpoint: str, region: str, credentials: Any, *, max_connections: int = 32,
                 connect_timeout: float = 3, read_timeout: float = 10) -> None:
        if not endpoint:
            raise ValueError("the WebSocket API's callback URL is not configured")
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self._credentials = credentials
        parts = urlsplit(self.endpoint)
        self._host = _host_from_url(self.endpoint)
        self._base_path = parts.path
        # TCP_NODELAY: without it a small request can wait ~40 ms for the peer's delayed ACK
        # (botocore's own clients set it too).
        import socket

        self._http = URLLib3Session(
            timeout=(connect_timeout, read_timeout),
            max_pool_connections=max_connections,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
                            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)],
        )

    def post(self, connection_id: str, data: bytes) -> None:
        """PostToConnection: ``data`` to one connection (``GoneException`` if it is closed)."""
        self._call("POST", connection_id, data, "PostToConnection")

    def delete(self, connection_id: str) -> None:
        """DeleteConnection: close one connection (``GoneException`` if it is already closed)."""
        self._call("DELETE", connection_id, b"", "DeleteConnection")

    def post_each(self, connection_ids: Sequence[str], frames: Sequence[bytes],
                  pool: Executor) -> dict[str, BaseException | None]:
        """PostToConnection of ``frames``, in order, to each connection; per connection ``None``
        when all were delivered, else the error that stopped it (a connection's later frames are
        not sent after a failure).

        The posts run concurrently on ``pool``: N HTTP round trips take about one.  Where the HTTP
        session can carry many requests at once (``send_many``: the local stack's door between
        a Lambda worker and its gateway, ``scripts/localstack/door.py``) each frame goes to all
        connections in one exchange instead; the requests, signatures and answers are the same.
        """
        send_many = getattr(self._http, "send_many", None)
        if send_many is None:
            futures = {cid: pool.submit(self._post_frames, cid, frames) for cid in connection_ids}
            return {cid: future.exception() for cid, future in futures.items()}
        outcomes: dict[str, BaseException | None] = dict.fromkeys(connection_ids)
        alive = list(dict.fromkeys(connection_ids))
        for data in frames:
            requests = self._posts(alive, data)
            answers = send_many(requests)
            still: list[str] = []
            for cid, answer in zip(alive, answers, strict=True):
                try:
                    if isinstance(answer, Exception):
                        raise answer
                    if answer.status_code >= 300:
                        error = client_error(answer, "PostToConnection", code_from="header")
                        if not _retryable(answer, error):
                            raise error
                        self._call("POST", cid, data, "PostToConnection", attempt=2)
                except Exception as exc:
                    outcomes[cid] = exc
                else:
                    still.append(cid)
            alive = still
        return outcomes

    def _post_frames(self, connection_id: str, frames: Sequence[bytes]) -> None:
        for data in frames:
            self.post(connection_id, data)

    def _request(self, method: str, connection_id: str, body: bytes) -> AWSPreparedRequest:
        """The request botocore would prepare and sign for this call, signed now."""
        url, headers = self._signed(method, connection_id, body)
        return AWSPreparedRequest(method, url, HeadersDict(headers), body or None, False)

    def _posts(self, connection_ids: Sequence[str], body: bytes) -> list[Post]:
        """:meth:`_request`'s POST of one body to each connection as :class:`Post` s (the same method,
        URL, headers and body), signed together: the same credentials, second and body hash; only
        the path, and so the signature, differs per connection."""
        signing = self._signing("POST", body)
        return [Post(*self._signed_with(signing, cid, body), body) for cid in connection_ids]

    def _signed(self, method: str, connection_id: str, body: bytes) -> tuple[str, dict[str, str]]:
        """The URL and the headers (signed now) of a call on one connection."""
        return self._signed_with(self._signing(method, body), connection_id, body)

    def _signing(self, method: str, body: bytes) -> _Signing:
        return _Signing(method, self._host, body, _amz_date(), self._credentials.get_frozen_credentials(),
                        self.region, SERVICE)

    def _signed_with(self, signing: _Signing, connection_id: str, body: bytes) -> tuple[str, dict[str, str]]:
        encoded = _encoded_id(connection_id)
        headers = {"X-Amz-Date": signing.amz_date}
        if signing.token:
            headers["X-Amz-Security-Token"] = signing.token
        headers["Authorization"] = signing.authorization(f"{self._base_path}/@connections/{encoded}")
        headers["Content-Length"] = str(len(body))  # as botocore's preparer: for every method but GET
        return f"{self.endpoint}/@connections/{encoded}", headers

    def _call(self, method: str, connection_id: str, body: bytes, operation: str, *, attempt: int = 1) -> None:
        while True:
            response = self._http.send(self._request(method, connection_id, body))
            if response.status_code < 300:
                return
            error = client_error(response, operation, code_from="header")
            if not _retryable(response, error) or attempt >= _ATTEMPTS:
                raise error
            time.sleep(random.uniform(0, 0.05 * 2**attempt))  # jitter, as botocore's standard retries
            attempt += 1


def authorization(method: str, path: str, host: str, body: bytes, amz_date: str, credentials: Any, region: str,
                  service: str) -> str:
    """The SigV4 ``Authorization`` header botocore's ``SigV4Auth`` computes for a request without
    a query whose only headers are ``X-Amz-Date`` and (with a session token) ``X-Amz-Security-Token``."""
    return _Signing(method, host, body, amz_date, credentials, region, service).authorization(path)


class _Signing:
    """What :func:`authorization` computes once for requests that differ only in their path: a
    fan-out signs one body for ~50 connections in the same second."""

    __slots__ = ("_auth_head", "_key", "_method", "_tail", "_to_sign_head", "amz_date", "token")

    def __init__(self, method: str, host: str, body: bytes, amz_date: str, credentials: Any, region: str,
                 service: str) -> None:
        day = amz_date[:8]
        token = credentials.token
        signed = "host;x-amz-date;x-amz-security-token" if token else "host;x-amz-date"
        canonical_headers = f"host:{host}\nx-amz-date:{amz_date}\n" + (
            f"x-amz-security-token:{token}\n" if token else "")
        scope = f"{day}/{region}/{service}/aws4_request"
        self.amz_date = amz_date
        self.token = token
        self._method = method
        # the canonical request after its path: the (empty) query, the headers, the signed names, the payload
        self._tail = f"\n\n{canonical_headers}\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        self._to_sign_head = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
        self._key = signing_key(credentials.secret_key, day, region, service)
        self._auth_head = (f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, SignedHeaders={signed}, "
                           "Signature=")

    def authorization(self, path: str) -> str:
        canonical = f"{self._method}\n{_canonical_path(path)}{self._tail}"
        to_sign = self._to_sign_head + hashlib.sha256(canonical.encode()).hexdigest()
        return self._auth_head + signature(self._key, to_sign)


_amz_second: tuple[int, str] = (0, "")


def _amz_date() -> str:
    """``X-Amz-Date`` for now, formatted once per second (a fan-out signs ~50 requests in one)."""
    global _amz_second
    now = int(time.time())
    second = _amz_second
    if second[0] != now:
        second = _amz_second = (now, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)))
    return second[1]


@lru_cache(maxsize=4096)
def _encoded_id(connection_id: str) -> str:
    # A fan-out posts to the same connections again and again.
    return percent_encode(connection_id)


@lru_cache(maxsize=4096)
def _canonical_path(path: str) -> str:
    # SigV4 (non-S3) encodes the already-encoded path once more; a fan-out repeats the same paths.
    return quote(normalize_url_path(path), safe="/~")


def _retryable(response: Any, error: ClientError) -> bool:
    return response.status_code in _RETRY_STATUSES or error.response["Error"]["Code"] in _RETRY_CODES


