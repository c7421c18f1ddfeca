"""A PRD's push remote (prdtool.versions.mirror): what may be configured, where the token lives."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from prdtool.aws import reset_clients
from prdtool.errors import BadRequest
from prdtool.settings import reset_settings_cache
from prdtool.storage import rebind_models
from prdtool.versions import mirror
from prdtool.versions.records import VersionItem

PRD = "01jd0000000000000000mirror"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, no_network: None) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("GIT_REMOTE_ALLOW_PRIVATE", raising=False)
    for name, value in {"VERSIONS_TABLE": "m-unit", "EVENT_BUS_NAME": "m-unit-bus",
                        "GIT_REMOTE_SECRET_PREFIX": "unit/git-remote/"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        reset_settings_cache()
        reset_clients()
        rebind_models()
        VersionItem.create_table(billing_mode="PAY_PER_REQUEST")
        boto3.client("events", region_name="us-east-1").create_event_bus(Name="m-unit-bus")
        yield
    reset_settings_cache()
    reset_clients()
    rebind_models()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.git", "http://localhost:8080/x.git", "http://169.254.169.254/latest/x.git",
    "http://10.0.0.7/x.git", "http://[::1]/x.git", "http://192.168.1.1/x.git", "http://0.0.0.0/x.git",
])
def test_private_loopback_and_metadata_addresses_are_refused(aws: None, url: str) -> None:
    with pytest.raises(BadRequest) as refused:
        mirror.check_url(url)
    assert refused.value.code == "bad_remote_url"


def test_a_public_address_is_accepted_and_private_ones_only_when_allowed(aws: None,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert mirror.check_url("https://140.82.112.3/team/prd.git") == "https://140.82.112.3/team/prd.git"
    monkeypatch.setenv("GIT_REMOTE_ALLOW_PRIVATE", "true")
    reset_settings_cache()
    assert mirror.check_url("http://127.0.0.1:9/x.git") == "http://127.0.0.1:9/x.git"


def test_the_token_is_kept_in_secrets_manager_only_and_never_follows_the_url_to_another_host(aws: None) -> None:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    shown = mirror.configure(PRD, url="https://140.82.112.3/team/prd.git", username="bot", token="tok-1",
                             actor="alice")
    assert shown["has_token"] is True and "tok-1" not in str(shown)
    item = VersionItem.get(PRD, mirror.REMOTE_SK)
    assert "tok-1" not in str(item.attribute_values)
    assert secrets.get_secret_value(SecretId=f"unit/git-remote/{PRD}")["SecretString"] == "tok-1"

    # Same host, no token given: the stored one stays.
    assert mirror.configure(PRD, url="https://140.82.112.3/team/other.git", username="bot", token=None,
                            actor="alice")["has_token"] is True
    # Another host: the token is dropped (and deleted), never sent there.
    moved = mirror.configure(PRD, url="https://140.82.113.4/team/prd.git", username="bot", token=None, actor="alice")
    assert moved["has_token"] is False
    with pytest.raises(secrets.exceptions.ResourceNotFoundException):
        secrets.get_secret_value(SecretId=f"unit/git-remote/{PRD}")

    mirror.configure(PRD, url="https://140.82.113.4/team/prd.git", username="bot", token="tok-2", actor="alice")
    mirror.remove(PRD, actor="alice")
    assert mirror.describe(PRD) is None
    with pytest.raises(secrets.exceptions.ResourceNotFoundException):
        secrets.get_secret_value(SecretId=f"unit/git-remote/{PRD}")


def test_bad_usernames_are_refused(aws: None) -> None:
    for username in ("a:b", "  "):
        with pytest.raises(BadRequest):
            mirror.configure(PRD, url="https://140.82.112.3/t/p.git", username=username, token="t", actor="alice")


def test_a_remote_that_now_resolves_to_a_private_address_is_refused_at_push_time(
        aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_REMOTE_ALLOW_PRIVATE", "true")
    reset_settings_cache()
    mirror.configure(PRD, url="http://127.0.0.1:9/x.git", username="bot", token="s3cr3t-value", actor="alice")
    monkeypatch.setenv("GIT_REMOTE_ALLOW_PRIVATE", "false")
    reset_settings_cache()
    state = mirror.push_now(PRD)  # refused before any connection (the suite's no_network would raise)
    assert state is not None and (state["state"], state["error_kind"]) == ("failed", "invalid")
    assert "public address" in str(state["error"]) and "s3cr3t-value" not in str(state)
