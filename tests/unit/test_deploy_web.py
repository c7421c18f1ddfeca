"""scripts/deploy_web.py against moto's S3 and CloudFront: what lands where, with which caching."""

from __future__ import annotations

import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from scripts import deploy_web

DIST = Path(deploy_web.DIST)


def test_cache_control_keeps_entry_points_fresh_and_hashed_assets_immutable() -> None:
    assert deploy_web.cache_control("index.html") == "no-cache"
    assert deploy_web.cache_control("sw.js") == "no-cache"
    assert deploy_web.cache_control("assets/manifest.json") == "no-cache"
    assert "immutable" in deploy_web.cache_control("assets/editor-BS51SXHN.js")


@pytest.mark.skipif(not (DIST / "index.html").is_file(), reason="web/dist is built by `make web` (make test does)")
def test_deploy_uploads_every_file_and_invalidates_the_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="web-bucket")
        cloudfront = boto3.client("cloudfront", region_name="us-east-1")
        distribution = cloudfront.create_distribution(DistributionConfig={
            "CallerReference": "test", "Comment": "", "Enabled": True,
            "Origins": {"Quantity": 1, "Items": [{"Id": "web", "DomainName": "web-bucket.s3.amazonaws.com",
                                                   "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
            "DefaultCacheBehavior": {"TargetOriginId": "web", "ViewerProtocolPolicy": "redirect-to-https",
                                     "MinTTL": 0, "ForwardedValues": {"QueryString": False,
                                                                      "Cookies": {"Forward": "none"}}},
        })["Distribution"]["Id"]
        monkeypatch.setattr(deploy_web, "_outputs", lambda _cf, _stack: {
            "WebBucketName": "web-bucket", "WebDistributionId": distribution, "WebUrl": "https://x"})
        monkeypatch.setattr(sys, "argv", ["deploy_web.py", "--stack", "prdtool-test", "--region", "us-east-1"])
        deploy_web.main()

        uploaded = {o["Key"] for o in s3.list_objects_v2(Bucket="web-bucket")["Contents"]}
        expected = {p.relative_to(DIST).as_posix() for p in DIST.rglob("*")
                    if p.is_file() and not p.name.startswith(".")}
        assert uploaded == expected and "index.html" in uploaded
        index = s3.head_object(Bucket="web-bucket", Key="index.html")
        assert index["ContentType"] == "text/html" and index["CacheControl"] == "no-cache"
        invalidations = cloudfront.list_invalidations(DistributionId=distribution)["InvalidationList"]
        assert invalidations["Quantity"] == 1
