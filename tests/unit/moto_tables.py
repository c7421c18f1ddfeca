"""In-process moto with the package pointed at it and some pynamodb tables created."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto import mock_aws

from prdtool.aws import reset_clients
from prdtool.settings import reset_settings_cache
from prdtool.storage import rebind_models


@contextmanager
def moto_tables(*models: Any) -> Iterator[None]:
    """``mock_aws`` with settings, clients and models re-read, and ``models``' tables created (the
    caller has set their table names in the environment and unset ``AWS_ENDPOINT_URL``)."""
    with mock_aws():
        reset_settings_cache()
        reset_clients()
        rebind_models()
        for model in models:
            model.create_table(billing_mode="PAY_PER_REQUEST")
        try:
            yield
        finally:
            reset_settings_cache()
            reset_clients()
            rebind_models()
