"""Direct access to the stack's document store for tests (the real prdtool code, pointed at moto)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from scripts.localstack.stack import LocalStack

_lock = threading.Lock()


@contextmanager
def bound_to(stack: LocalStack, function: str = "DocWriterFunction") -> Iterator[None]:
    """Point prdtool's settings, clients and models at the stack, with ``function``'s environment
    (the store's own code paths)."""
    from prdtool.aws import reset_clients
    from prdtool.settings import reset_settings_cache
    from prdtool.storage import rebind_models

    env = dict(stack.manifest["functions"][function]["environment"])
    env.update({"AWS_ENDPOINT_URL": stack.moto_url, "AWS_REGION": "us-east-1"})
    with _lock:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        reset_settings_cache()
        reset_clients()
        rebind_models()
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            reset_settings_cache()
            reset_clients()
            rebind_models()


def pending_updates(stack: LocalStack, prd_id: str) -> int:
    from prdtool.collab import store

    with bound_to(stack):
        return store.pending_updates(prd_id)


def compact_in_loop(stack: LocalStack, prd_id: str, stop: threading.Event) -> int:
    """Compact as fast as possible until told to stop (racing the writers); returns compactions."""
    from prdtool.collab import store

    done = 0
    while not stop.is_set():
        with bound_to(stack):
            done += 1 if store.compact(prd_id).folded else 0
    return done
