"""The web client gets the same Content-Security-Policy from CloudFront (AWS) and the local gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from samtranslator.yaml_helper import yaml_parse

from scripts.localstack.gateway import WEB_SECURITY_HEADERS, web_security_headers

ROOT = Path(__file__).resolve().parents[2]


def _directives(policy: str) -> dict[str, str]:
    return {part.split()[0]: " ".join(part.split()[1:]) for part in policy.split(";") if part.strip()}


def _template_policy() -> dict[str, Any]:
    resources = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
    config = resources["WebResponseHeaders"]["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    return dict(config)


def test_cloudfront_and_the_local_gateway_send_the_same_policy() -> None:
    security = _template_policy()
    policy = security["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Sub"]
    cloud, local = _directives(policy), _directives(WEB_SECURITY_HEADERS["Content-Security-Policy"])
    # The app, its WebSocket API and the documents bucket (large imports are posted straight there
    # with a presigned form): boto3's generate_presigned_post names the global virtual-hosted
    # endpoint, <bucket>.s3.amazonaws.com, whatever the region; the regional one is allowed too.
    assert cloud.pop("connect-src").split() == [
        "'self'",
        "wss://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}",
        "https://${DocumentsBucket}.s3.${AWS::URLSuffix}",
        "https://${DocumentsBucket}.s3.${AWS::Region}.${AWS::URLSuffix}",
    ]
    # Locally the WebSocket is on the same origin and the presigned form posts to moto (its exact
    # origin is added by the gateway: web_security_headers).
    assert local.pop("connect-src").split() == ["'self'"]
    stack_policy = web_security_headers("http://127.0.0.1:3001")["Content-Security-Policy"]
    assert _directives(stack_policy)["connect-src"].split() == ["'self'", "http://127.0.0.1:3001"]
    assert cloud == local
    assert cloud["script-src"] == "'self'" and cloud["frame-ancestors"] == "'none'"
    assert security["FrameOptions"]["FrameOption"] == "DENY" == WEB_SECURITY_HEADERS["X-Frame-Options"]


def test_presigned_upload_forms_point_at_an_origin_the_policy_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL the product puts in an upload form (in AWS, for any region: prdtool.aws.presigner) is one
    connect-src allows; so is the one plain boto3 would give (the global address)."""
    import boto3
    from botocore.config import Config

    from prdtool.aws import presigner, reset_clients
    from prdtool.settings import reset_settings_cache

    policy = _template_policy()["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Sub"]
    allowed = _directives(policy)["connect-src"].split()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    try:
        for region in ("us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2"):
            monkeypatch.setenv("AWS_REGION", region)
            reset_settings_cache()
            reset_clients()
            plain = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y").client(
                "s3", region_name=region, config=Config(signature_version="s3v4", ignore_configured_endpoint_urls=True))
            for s3 in (presigner(), plain):
                url = s3.generate_presigned_post("prdtool-docs-abc123", "imports/x/source")["url"]
                origin = url.rstrip("/").replace("prdtool-docs-abc123", "${DocumentsBucket}")
                origin = origin.replace(region, "${AWS::Region}").replace("amazonaws.com", "${AWS::URLSuffix}")
                assert origin in allowed, (region, url)
    finally:
        reset_settings_cache()
        reset_clients()


@pytest.mark.usefixtures("stack")
def test_the_local_gateway_sends_it_with_the_web_client(stack: Any) -> None:
    for path in ("/", "/login", "/prds/unknown"):
        response = requests.get(stack.base_url + path, timeout=10)
        expected = web_security_headers(stack.moto_url)["Content-Security-Policy"]
        assert response.headers["Content-Security-Policy"] == expected, path
        assert response.headers["X-Frame-Options"] == "DENY"
