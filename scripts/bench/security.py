"""Security processes (issue #5): authorizer verification, rate-limit cost, audit overhead.

Runs against a moto server (real boto3/pynamodb code paths, loopback only):
- authorizer: ``TokenVerifier.verify`` per token, uncached (RS256 signature + claims) and from the
  claims cache, and ``authenticate`` (verify + the deny-list ``BatchGetItem``), warm;
- rate limit: DynamoDB calls per request for one subject over simulated minutes at 50 req/min, and
  the wall time of one ``hit``;
- audit: the cost of ``record()`` (one SQS ``SendMessage``) per state-changing request.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "shared") not in sys.path:
    sys.path.insert(0, str(ROOT / "shared"))


@contextmanager
def _moto() -> Iterator[str]:
    from scripts.localstack.stack import MotoServer

    server = MotoServer()
    server.wait_until_ready()
    old = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_DEFAULT_REGION", "POWERTOOLS_METRICS_NAMESPACE")}
    os.environ.update({"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "POWERTOOLS_METRICS_NAMESPACE": "PrdToolBench"})
    try:
        yield server.url
    finally:
        server.stop()
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _count_calls() -> Iterator[Counter[str]]:
    from botocore.client import BaseClient

    calls: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
        calls[f"{client.meta.service_model.service_name}:{operation}"] += 1
        return original(client, operation, params)

    BaseClient._make_api_call = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


def _per_op_us(fn: Callable[[], Any], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def _authorizer() -> list[str]:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jose import jwk, jwt

    from prdtool.auth import authorizer, tokens
    from prdtool.auth.revocation import RevocationModel

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = jwk.RSAKey(private, "RS256")
    public = {**key.public_key().to_dict(), "kid": "bench"}
    issuer, audience = "https://issuer.example.com/pool", "bench-client"
    verifier = tokens.TokenVerifier(issuer=issuer, audience=audience, jwks_url="unused",
                                    fetch=lambda _url: {"keys": [public]})
    now = int(time.time())

    def token(i: int) -> str:
        claims = {"iss": issuer, "client_id": audience, "token_use": "access", "username": f"u{i}",
                  "jti": f"j{i}", "origin_jti": f"o{i}", "iat": now, "exp": now + 3600}
        return str(jwt.encode(claims, key.to_dict(), algorithm="RS256", headers={"kid": "bench"}))

    distinct = [token(i) for i in range(400)]
    verifier.verify(distinct[0])  # keys fetched
    it = iter(distinct[1:])
    uncached = _per_op_us(lambda: verifier.verify(next(it)), 300)
    cached = _per_op_us(lambda: verifier.verify(distinct[0]), 5000)

    RevocationModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
    tokens._verifier = verifier
    authorizer.authenticate(distinct[0])
    with _count_calls() as calls:
        full = _per_op_us(lambda: authorizer.authenticate(distinct[0]), 200)
    return [
        "| step (warm container) | per token |",
        "|---|---|",
        f"| verify, uncached (RS256 signature + claims) | {uncached:.0f} µs |",
        f"| verify, from the 5-minute claims cache | {cached:.1f} µs |",
        f"| authenticate = cached verify + deny-list `BatchGetItem` (moto on loopback) | {full / 1000:.2f} ms |",
        f"| DynamoDB calls per authenticate | {sum(calls.values()) / 200:.2f} ({', '.join(calls)}) |",
    ]


def _rate_limit() -> list[str]:
    from prdtool.auth.ratelimit import RateLimiter, RateLimitModel

    RateLimitModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
    clock_now = [1_795_651_200.0]
    limiter = RateLimiter(lambda: clock_now[0])
    requests = 600  # 12 simulated minutes at 50 requests a minute
    with _count_calls() as calls:
        durations = []
        for i in range(requests):
            clock_now[0] = 1_795_651_200.0 + i * 1.2
            started = time.perf_counter()
            limiter.hit("user#bench")
            durations.append(time.perf_counter() - started)
    per_request = sum(calls.values()) / requests
    steady = RateLimiter(lambda: 1_795_651_200.0 + 30)
    with _count_calls() as steady_calls:
        for _ in range(100):
            steady.hit("user#steady")
    return [
        "| measure | value |",
        "|---|---|",
        f"| DynamoDB calls per request, 50 req/min over 12 minutes (window roll-overs included) | "
        f"{per_request:.3f} ({', '.join(f'{k} {v}' for k, v in calls.items())}) |",
        f"| DynamoDB calls per request within one minute (after the first) | "
        f"{(sum(steady_calls.values()) - 3) / 99:.2f} |",
        f"| one `hit`, p50 / p99 (moto on loopback) | {statistics.median(durations) * 1000:.2f} ms / "
        f"{sorted(durations)[int(len(durations) * 0.99)] * 1000:.2f} ms |",
    ]


def _audit() -> list[str]:
    from prdtool.aws import client
    from prdtool.settings import reset_settings_cache

    url = client("sqs").create_queue(QueueName="bench-audit")["QueueUrl"]
    os.environ["AUDIT_QUEUE_URL"] = url
    reset_settings_cache()
    from prdtool.audit.recorder import AuditEntry, record
    from prdtool.ids import ulid

    def entry() -> AuditEntry:
        return AuditEntry(id=ulid(), at=int(time.time() * 1000), actor="alice", action="PATCH /api/prds/{id}",
                          resource="prd/01jd0000000000000000000000", status=200, duration_ms=12,
                          ip="203.0.113.7", user_agent="bench", path="/api/prds/01jd0000000000000000000000",
                          changes={"title": "Checkout redesign", "status": "review"})

    record(entry())
    with _count_calls() as calls:
        per_record = _per_op_us(lambda: record(entry()), 200)
    return [
        "| measure | value |",
        "|---|---|",
        f"| `record()` per state-changing request (build, redact, one SQS `SendMessage` to moto) | "
        f"{per_record / 1000:.2f} ms |",
        f"| AWS calls per state-changing request | {sum(calls.values()) / 200:.2f} ({', '.join(calls)}) |",
        "| read-only requests | not audited: 0 calls |",
    ]


def main() -> str:
    from prdtool.settings import reset_settings_cache
    from prdtool.storage import rebind_models

    with _moto():
        reset_settings_cache()
        rebind_models()
        sections = [
            "**Authorizer, per token**", "", *_authorizer(), "",
            "**Rate limiting, per request**", "", *_rate_limit(), "",
            "**Audit, per request**", "", *_audit(),
        ]
    reset_settings_cache()
    return "\n".join(sections) + "\n"


if __name__ == "__main__":
    print(main())
