"""The web client gets the same Content-Security-Policy from CloudFront (AWS) and the local gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from samtranslator.yaml_helper import yaml_parse

from scripts.localstack.gateway import WEB_SECURITY_HEADERS

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
    assert cloud.pop("connect-src").startswith("'self' wss://${WebSocketApi}.execute-api.")
    assert local.pop("connect-src") == "'self'"  # the local WebSocket is on the same origin
    assert cloud == local
    assert cloud["script-src"] == "'self'" and cloud["frame-ancestors"] == "'none'"
    assert security["FrameOptions"]["FrameOption"] == "DENY" == WEB_SECURITY_HEADERS["X-Frame-Options"]


@pytest.mark.usefixtures("stack")
def test_the_local_gateway_sends_it_with_the_web_client(stack: Any) -> None:
    for path in ("/", "/login", "/prds/unknown"):
        response = requests.get(stack.base_url + path, timeout=10)
        assert response.headers["Content-Security-Policy"] == WEB_SECURITY_HEADERS["Content-Security-Policy"], path
        assert response.headers["X-Frame-Options"] == "DENY"
