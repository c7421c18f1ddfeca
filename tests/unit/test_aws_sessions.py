"""One botocore session per process: boto3's clients and every pynamodb model's connection are
made from it, so a table's first call in a container does not parse the service model again.

Before: pynamodb asked botocore for a new session per connection (per model), and each new
session's first client re-read the DynamoDB model, endpoint rules and partitions (70 to 160 ms of CPU
per model on this machine) — in the middle of the first edit, connect or role recheck a new
WebSocket container served.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from prdtool import aws, storage
from prdtool.auth.revocation import RevocationModel
from prdtool.collab.connections import ConnectionModel, RosterModel
from prdtool.collab.store import DocItem
from prdtool.prds.models import MemberModel, PrdModel
from prdtool.settings import reset_settings_cache

MODELS = (ConnectionModel, RosterModel, DocItem, PrdModel, MemberModel, RevocationModel)


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    reset_settings_cache()
    aws.reset_clients()
    storage.rebind_models()
    yield
    reset_settings_cache()
    aws.reset_clients()
    storage.rebind_models()


def _together(calls: list[Callable[[], object]]) -> list[object]:
    """Run each call in its own thread, all released at once; what they made (none may raise)."""
    errors: list[BaseException] = []
    made: list[object] = []
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> None:
        try:
            start.wait()
            made.append(call())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return made


def _client(model: type) -> object:
    return model._get_connection().connection.client  # type: ignore[attr-defined]


@pytest.mark.usefixtures("fresh")
def test_every_model_and_the_boto3_clients_share_the_process_session() -> None:
    shared = aws.botocore_session()
    assert aws._session()._session is shared  # boto3's clients
    for model in MODELS:
        assert model._get_connection().connection.session is shared, model.__name__  # type: ignore[attr-defined]
    # so they share its loader: the DynamoDB model was parsed once for all of them
    loaders = {id(_client(model)._loader) for model in MODELS}  # type: ignore[attr-defined]
    loaders.add(id(aws.client("dynamodb")._loader))
    assert loaders == {id(shared.get_component("data_loader"))}
    # each client still talks to the configured endpoint and region
    for model in MODELS:
        meta = _client(model).meta  # type: ignore[attr-defined]
        assert (meta.endpoint_url, meta.region_name) == ("http://127.0.0.1:5999", "eu-west-1")


@pytest.mark.usefixtures("fresh")
def test_reset_clients_starts_a_new_session() -> None:
    before = aws.botocore_session()
    aws.reset_clients()
    storage.rebind_models()
    after = aws.botocore_session()
    assert after is not before
    assert ConnectionModel._get_connection().connection.session is after


@pytest.mark.usefixtures("fresh")
def test_clients_made_from_many_threads_at_once_all_work() -> None:
    # A botocore session is not safe to make clients from concurrently (boto3 issue 1592: KeyError
    # 'credential_provider' and the like); the relay's fan-out threads may.  Creation is serialised.
    made = _together([
        lambda service=service: aws.botocore_session().create_client(
            service, "eu-west-1", endpoint_url="http://127.0.0.1:5999")
        for service in ("dynamodb", "sqs", "s3", "events") * 2])
    assert len(made) == 8
    assert {type(client).__name__ for client in made} == {"DynamoDB", "SQS", "S3", "EventBridge"}


@pytest.mark.usefixtures("fresh")
def test_first_clients_made_from_many_threads_at_once_share_one_boto3_session(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # CI met it: the audit writer's four threads made their first S3 clients together; each built a
    # boto3 session on the shared botocore session (functools.cache lets every first caller build),
    # each registered boto3's S3 handlers again, and S3 clients then failed ("Cannot inject class
    # attribute 'upload_file'").  A slow registration makes the threads overlap every time.
    import time

    import boto3.session

    built: list[object] = []
    register = boto3.session.Session._register_default_handlers

    def slow_register(self: boto3.session.Session) -> None:
        built.append(self)
        time.sleep(0.05)
        register(self)

    monkeypatch.setattr(boto3.session.Session, "_register_default_handlers", slow_register)
    clients = _together([lambda: aws._new_client("s3", None)] * 6)
    assert len(built) == 1
    assert len(clients) == 6 and all(hasattr(c, "upload_file") for c in clients)
    assert aws.client("s3") is aws.client("s3")  # and the cached client is built on it
