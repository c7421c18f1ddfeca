"""pynamodb plumbing: table names, region and endpoint come from the settings, not from code.

Each model declares ``Meta = table_meta("prds_table")``; :func:`rebind_models` re-reads the
settings (tests point the package at another endpoint) and drops the cached connections.
The models are the source of truth for table schemas: ``tests/infra`` checks ``template.yaml``
against them.
"""

from __future__ import annotations

from typing import Any

from pynamodb.connection import Connection, base
from pynamodb.models import Model

from .aws import botocore_session
from .settings import get_settings

# pynamodb asks ``botocore.session.get_session`` for a new session per connection and thread, and
# each model has its own connection: every table's first call in a container built a client from
# scratch (``aws.botocore_session`` says what that cost).  They all share the process's session.
base.get_session = botocore_session

_registry: list[tuple[type[Model], str]] = []


def table_meta(settings_attr: str) -> Any:
    """A pynamodb ``Meta`` class whose table name is the setting ``settings_attr``."""
    settings = get_settings()
    return type(
        "Meta",
        (),
        {
            "table_name": getattr(settings, settings_attr),
            "region": settings.region,
            "host": settings.aws_endpoint_url or None,
            "settings_attr": settings_attr,
            "connect_timeout_seconds": 3,
            "read_timeout_seconds": 5,
            "max_retry_attempts": 3,
        },
    )


def register(model: type[Model]) -> type[Model]:
    """Class decorator: remember the model so :func:`rebind_models` can update it."""
    _registry.append((model, model.Meta.settings_attr))  # type: ignore[attr-defined]
    return model


def registered_models() -> list[type[Model]]:
    return [model for model, _ in _registry]


def rebind_models() -> None:
    """Re-read table names and endpoint from the current settings for every registered model."""
    settings = get_settings()
    for model, attr in _registry:
        model.Meta.table_name = getattr(settings, attr)
        model.Meta.region = settings.region
        model.Meta.host = settings.aws_endpoint_url or None
        model._connection = None
    _connections.clear()


_connections: dict[tuple[str, str | None], Connection] = {}


def connection() -> Connection:
    """A low-level pynamodb connection (for transactions spanning several tables), one per
    region and endpoint: a new one builds a new botocore client, ~60 ms on first use."""
    settings = get_settings()
    key = (settings.region, settings.aws_endpoint_url or None)
    found = _connections.get(key)
    if found is None:
        found = _connections.setdefault(key, Connection(region=key[0], host=key[1]))
    return found


def is_conditional_failure(exc: BaseException) -> bool:
    """True when a pynamodb error was caused by a failed condition expression."""
    cause: Any = getattr(exc, "cause", None)
    code = getattr(exc, "cause_response_code", None) or (
        cause.response.get("Error", {}).get("Code") if cause is not None and hasattr(cause, "response") else None
    )
    return code == "ConditionalCheckFailedException"
