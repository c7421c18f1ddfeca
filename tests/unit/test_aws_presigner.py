"""Presigned URLs point at the bucket's regional address (a browser cannot follow S3's 307 from the
global one for a young bucket outside us-east-1), and at the local endpoint when there is one."""

from __future__ import annotations

import pytest

from prdtool.aws import presigner, reset_clients
from prdtool.settings import reset_settings_cache


@pytest.fixture
def region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    reset_settings_cache()
    reset_clients()
    yield
    reset_settings_cache()
    reset_clients()


@pytest.mark.usefixtures("region")
def test_presigned_post_and_get_use_the_regional_virtual_host_address() -> None:
    form = presigner().generate_presigned_post("docs-bucket", "imports/x/source", ExpiresIn=60)
    assert form["url"] == "https://docs-bucket.s3.eu-west-1.amazonaws.com/"
    assert form["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    url = presigner().generate_presigned_url("get_object", Params={"Bucket": "docs-bucket", "Key": "k"})
    assert url.startswith("https://docs-bucket.s3.eu-west-1.amazonaws.com/k?") and "X-Amz-Signature=" in url


@pytest.mark.usefixtures("region")
def test_a_local_endpoint_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    reset_settings_cache()
    reset_clients()
    form = presigner().generate_presigned_post("docs-bucket", "imports/x/source", ExpiresIn=60)
    assert form["url"] == "http://127.0.0.1:5999/docs-bucket"
