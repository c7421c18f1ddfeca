"""``python -m scripts.localstack.moto_main``: moto's server, with S3 conditional writes and DynamoDB
writes made atomic.

moto 5.2.5 checks ``If-None-Match: *`` and ``If-Match`` on ``PutObject`` and then stores the object
as a separate step, without a lock, while its server handles requests on threads: two concurrent
conditional puts of one key can both succeed, the later silently replacing the earlier (seen here
with four threads racing on one key; see tests/unit/test_audit_store.py).  In AWS exactly one wins
and the others get 412.  Writers that serialise on conditional puts (the audit trail's partitions)
would lose data locally that they cannot lose in AWS, so the local stack runs moto with the check
and the store under one lock.  Unconditional puts are left alone.

DynamoDB is alike: moto's ``UpdateItem`` reads, evaluates and writes without a lock, so concurrent
``ADD`` updates of one item lose increments (8 threads x 50 updates ended at 392, not 400) — in AWS
every single-item write is atomic.  The rate limiter's counters and the conditional puts of the
document store rely on that, so every DynamoDB write runs under one lock here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()


def atomic(put_object: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap moto's ``S3Response.put_object`` so a conditional put checks and stores under one lock."""

    def atomic_put_object(self: Any) -> Any:
        if self.headers.get("If-None-Match") or self.headers.get("If-Match"):
            with _lock:
                return put_object(self)
        return put_object(self)

    atomic_put_object.__wrapped__ = put_object  # type: ignore[attr-defined]
    return atomic_put_object


def make_s3_conditional_writes_atomic() -> None:
    """Patch moto (in this process) so conditional ``PutObject`` is atomic, as in S3. Idempotent."""
    from moto.s3.responses import S3Response

    if not hasattr(S3Response.put_object, "__wrapped__"):
        S3Response.put_object = atomic(S3Response.put_object)  # type: ignore[method-assign]


_dynamodb_lock = threading.RLock()
_DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items")


def make_dynamodb_writes_atomic() -> None:
    """Patch moto (in this process) so each DynamoDB write is atomic, as in AWS. Idempotent."""
    from moto.dynamodb.responses import DynamoHandler

    for name in _DYNAMODB_WRITES:
        original = getattr(DynamoHandler, name)
        if hasattr(original, "__wrapped__"):
            continue

        def locked(self: Any, _original: Callable[[Any], Any] = original) -> Any:
            with _dynamodb_lock:
                return _original(self)

        locked.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(DynamoHandler, name, locked)


if __name__ == "__main__":
    from moto.server import main

    make_s3_conditional_writes_atomic()
    make_dynamodb_writes_atomic()
    main()
