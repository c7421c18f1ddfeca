"""The AWS client factory: the one place that knows endpoints, region and retry settings.

Locally every service is reached at ``AWS_ENDPOINT_URL`` (moto server); in AWS it is empty and
boto3 resolves the regional endpoints.  Clients are cached per process (Lambda containers reuse
them between invocations) and created lazily so a handler pays only for what it uses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from typing import Any

from .settings import get_settings

_CLIENT_LOCK = threading.RLock()


class _Once:
    """``functools.cache`` for a factory without arguments, except that the first calls of several
    threads build one value between them (``cache`` lets each of them build its own).  For the
    sessions that matters: a second boto3 session on the shared botocore session registers boto3's
    S3 handlers again, and every S3 client made after that fails (``Cannot inject class attribute
    "upload_file"``) — the audit writer's threads met it on their first, simultaneous uploads."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._made: list[Any] = []
        self.__doc__ = make.__doc__

    def __call__(self) -> Any:
        if not self._made:
            with _CLIENT_LOCK:
                if not self._made:
                    self._made.append(self._make())
        return self._made[0]

    def cache_clear(self) -> None:
        self._made.clear()


@_Once
def botocore_session() -> Any:
    """The process's one botocore session: boto3's clients here and every pynamodb connection
    (``storage`` hands it to pynamodb) are made from it.

    A client made from a fresh session parses the service's model, endpoint rules and partitions
    from JSON again: 70 to 110 ms of CPU for a DynamoDB client on this machine, against ~3 ms from a
    session that already made one.  pynamodb makes a session per connection, so each model (table)
    paid it on its first call in a container — the WebSocket function's first edits, connects and
    role rechecks in every new container, ~0.4 s of CPU each, in the middle of a request.  A botocore
    session is not safe to create clients from in several threads at once (boto3 issue 1592); the
    fan-out's threads can, so creating one is serialised here."""
    import botocore.session

    class _Session(botocore.session.Session):
        def create_client(self, *args: Any, **kwargs: Any) -> Any:
            with _CLIENT_LOCK:
                return super().create_client(*args, **kwargs)

    return _Session()


@_Once
def _session() -> Any:
    import boto3  # ~200 ms: imported on first use, not at module import

    return boto3.session.Session(botocore_session=botocore_session())


def _new_client(service: str, endpoint_url: str | None, **config: Any) -> Any:
    from botocore.config import Config

    settings = get_settings()
    return _session().client(
        service,
        region_name=settings.region,
        endpoint_url=endpoint_url or settings.aws_endpoint_url or None,
        config=Config(tcp_keepalive=True, **config),
    )


@cache
def client(service: str, endpoint_url: str | None = None) -> Any:
    """A cached boto3 client for ``service`` (``endpoint_url`` overrides the settings' one)."""
    return _new_client(
        service, endpoint_url,
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=10,
        max_pool_connections=32,  # above the fan-out thread pool (16), so posts reuse connections
    )


def credentials() -> Any:
    """The container's AWS credentials (botocore's object; callers freeze them per request)."""
    return _session().get_credentials()


@cache
def quick_client(service: str) -> Any:
    """A client for calls made on a request's path that must never hold it up for long (the audit
    record of a request): 1 s to connect, 2 s to answer, one retry."""
    return _new_client(service, None, retries={"max_attempts": 2, "mode": "standard"},
                       connect_timeout=1, read_timeout=2)


@cache
def presigner() -> Any:
    """An S3 client for presigned URLs, always SigV4 (botocore presigns us-east-1 with SigV2 by
    default, which S3 is retiring and which carries no signing time), on the bucket's **regional**
    virtual-host address: botocore's presigned POST uses the global ``<bucket>.s3.amazonaws.com``,
    which answers a bucket outside us-east-1 younger than a day with a 307 a browser upload cannot
    follow (the web client's CSP allows both addresses)."""
    settings = get_settings()
    regional = None if settings.aws_endpoint_url else f"https://s3.{settings.region}.amazonaws.com"
    return _new_client("s3", regional, signature_version="s3v4", s3={"addressing_style": "virtual"}
                       if regional else {})


def reset_clients() -> None:
    """Drop cached clients (tests that point the package at another endpoint)."""
    client.cache_clear()
    quick_client.cache_clear()
    presigner.cache_clear()
    _session.cache_clear()
    botocore_session.cache_clear()
    from . import dynamo  # it keeps the DynamoDB client's endpoint and session

    dynamo.reset()
