"""S3 lifecycle expiration, which moto stores but never applies.

Every ``LIFECYCLE_SECONDS`` the stack reads each bucket's lifecycle configuration from moto and
deletes the objects an enabled rule with ``Expiration.Days`` has expired (``LastModified`` older
than that many days, on the emulation's clock — ``moto_main.emulated_now``, which tests move
forward).  AWS applies the rules about once a day, asynchronously; here it is sooner, which only
makes an object disappear closer to its expiry than AWS would.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

log = logging.getLogger("localstack.lifecycle")

LIFECYCLE_SECONDS = 60


def emulated_now(moto_url: str) -> float:
    with urllib.request.urlopen(f"{moto_url}/_localstack/clock", timeout=10) as response:
        return float(json.loads(response.read())["now"])


def sweep(s3: Any, now: float) -> int:
    """Delete what the buckets' expiration rules have expired at ``now`` (epoch seconds)."""
    deleted = 0
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        try:
            rules = s3.get_bucket_lifecycle_configuration(Bucket=name).get("Rules", [])
        except s3.exceptions.ClientError:
            continue  # no lifecycle configuration
        for rule in rules:
            days = (rule.get("Expiration") or {}).get("Days")
            if rule.get("Status") != "Enabled" or not days:
                continue
            prefix = rule.get("Prefix") or (rule.get("Filter") or {}).get("Prefix") or ""
            cutoff = now - int(days) * 86_400
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix):
                old = [{"Key": o["Key"]} for o in page.get("Contents", []) if o["LastModified"].timestamp() < cutoff]
                if old:
                    s3.delete_objects(Bucket=name, Delete={"Objects": old, "Quiet": True})
                    deleted += len(old)
    if deleted:
        log.info("lifecycle rules expired %d object(s)", deleted)
    return deleted
