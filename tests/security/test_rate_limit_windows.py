"""The rate limiter's windows at their exact boundaries, on its real DynamoDB code path (moto).

A fake clock walks through the minute, hour and day windows, so each boundary is exact and no test
waits.  The HTTP behaviour (headers, 429, keys) is in test_rate_limits.py against the running stack.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from prdtool.auth import ratelimit
from prdtool.auth.ratelimit import Limits, RateLimiter, RateLimitModel, decide
from prdtool.settings import reset_settings_cache
from prdtool.storage import rebind_models

DAY_START = 1_795_651_200.0  # 2026-11-26T00:00:00Z, a day boundary (and so an hour and a minute one)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RATE_LIMITS_TABLE", "rate-limits-test")
    monkeypatch.setenv("RATE_LIMITS", "5/12/40")
    monkeypatch.setenv("RATE_LIMIT_PLANS", '{"pro": "50/500/5000"}')
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    reset_settings_cache()
    with mock_aws():
        rebind_models()
        RateLimitModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        yield
    reset_settings_cache()
    rebind_models()


def test_minute_window_boundary_is_exact_and_resets(table: None) -> None:
    clock = Clock(DAY_START + 10)
    limiter = RateLimiter(clock)
    decisions = [limiter.hit("user#ann") for _ in range(6)]
    assert [d.allowed for d in decisions if d] == [True] * 5 + [False]
    assert [d.remaining for d in decisions if d] == [4, 3, 2, 1, 0, 0]
    refused = decisions[-1]
    assert refused is not None
    assert refused.reset == int(DAY_START) + 60 and refused.retry_after == 50
    assert refused.headers()["Retry-After"] == "50" and refused.headers()["X-RateLimit-Limit"] == "5"
    clock.now = DAY_START + 59.9
    assert not limiter.hit("user#ann").allowed  # type: ignore[union-attr]
    clock.now = DAY_START + 60  # the reset the headers promised
    after = limiter.hit("user#ann")
    assert after is not None and after.allowed and after.remaining == 4


def test_hour_window_refuses_when_minutes_allow(table: None) -> None:
    clock = Clock(DAY_START)
    limiter = RateLimiter(clock)
    allowed = 0
    for minute in range(4):  # 5 a minute would allow 20 in four minutes, the hour allows 12
        clock.now = DAY_START + minute * 60
        for _ in range(5):
            decision = limiter.hit("user#bea")
            assert decision is not None
            allowed += decision.allowed
    assert allowed == 12
    clock.now = DAY_START + 3 * 60 + 1
    refused = limiter.hit("user#bea")
    assert refused is not None and not refused.allowed
    assert refused.window == "hour" and refused.limit == 12 and refused.remaining == 0
    assert refused.reset == int(DAY_START) + 3600 and refused.retry_after == 3600 - 181
    clock.now = DAY_START + 3600
    assert limiter.hit("user#bea").allowed  # type: ignore[union-attr]


def test_day_window_refuses_until_midnight(table: None) -> None:
    clock = Clock(DAY_START)
    limiter = RateLimiter(clock)
    allowed = 0
    for hour in range(4):  # 12 an hour (3 minutes x 4) would allow 48 in four hours, the day allows 40
        for minute in range(3):
            clock.now = DAY_START + hour * 3600 + minute * 60
            for _ in range(4):
                allowed += limiter.hit("ip#203.0.113.9").allowed  # type: ignore[union-attr]
    assert allowed == 40
    clock.now = DAY_START + 5 * 3600
    refused = limiter.hit("ip#203.0.113.9")
    assert refused is not None and refused.window == "day" and refused.limit == 40
    assert refused.reset == int(DAY_START) + 86400
    clock.now = DAY_START + 86400
    assert limiter.hit("ip#203.0.113.9").allowed  # type: ignore[union-attr]


def test_subjects_and_plans_are_independent(table: None) -> None:
    limiter = RateLimiter(Clock(DAY_START + 5))
    for _ in range(5):
        limiter.hit("user#cat")
    assert not limiter.hit("user#cat").allowed  # type: ignore[union-attr]
    assert limiter.hit("key#01jd0000000000000000000000").allowed  # type: ignore[union-attr]
    pro = [limiter.hit("user#dan", "pro") for _ in range(6)]
    assert all(d is not None and d.allowed and d.limit == 50 for d in pro)
    assert limiter.hit("user#eve", "no-such-plan").limit == 5  # type: ignore[union-attr]


def test_steady_state_costs_one_write_per_request(table: None, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original_update, original_get, original_save = RateLimitModel.update, RateLimitModel.get, RateLimitModel.save

    def update(self: RateLimitModel, *a: object, **k: object) -> object:
        calls.append("update")
        return original_update(self, *a, **k)  # type: ignore[arg-type]

    def get(cls: type, *a: object, **k: object) -> object:
        calls.append("get")
        return original_get(*a, **k)  # type: ignore[arg-type]

    def save(self: RateLimitModel, *a: object, **k: object) -> object:
        calls.append("save")
        return original_save(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(RateLimitModel, "update", update)
    monkeypatch.setattr(RateLimitModel, "get", classmethod(get))
    monkeypatch.setattr(RateLimitModel, "save", save)
    limiter = RateLimiter(Clock(DAY_START + 1))
    limiter.hit("user#fay")  # first request of the window: update (fails) + get + save
    calls.clear()
    for _ in range(4):
        limiter.hit("user#fay")
    assert calls == ["update"] * 4


def test_concurrent_requests_are_all_counted(table: None) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from scripts.localstack.moto_main import make_dynamodb_writes_atomic

    make_dynamodb_writes_atomic()  # moto's UpdateItem is not atomic across threads; DynamoDB's is

    limiter = RateLimiter(Clock(DAY_START + 30))
    with ThreadPoolExecutor(8) as pool:
        decisions = list(pool.map(lambda _: limiter.hit("user#gus", "pro"), range(40)))
    assert all(d is not None for d in decisions)
    assert sorted(d.remaining for d in decisions if d) == list(range(10, 50)), "no request lost or double-counted"


def test_a_failing_store_fails_open_and_stops_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    reset_settings_cache()
    rebind_models()
    try:
        clock = Clock(DAY_START)
        limiter = RateLimiter(clock)
        assert limiter.hit("user#hal") is None  # served, without rate-limit headers
        clock.now += 1
        calls: list[int] = []
        monkeypatch.setattr(RateLimiter, "_count",
                            lambda self, *a: calls.append(1) or {"minute": 1, "hour": 1, "day": 1})
        assert limiter.hit("user#hal") is None and calls == [], "the breaker skips the store for a while"
        clock.now += 11
        recovered = limiter.hit("user#hal")  # the store (here: a stub that works again) is asked again
        assert calls == [1] and recovered is not None and recovered.allowed
    finally:
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        reset_settings_cache()
        rebind_models()


def test_limits_parse_strictly() -> None:
    assert Limits.parse("100/1000/10000") == Limits(100, 1000, 10000)
    for bad in ("100/1000", "a/b/c", "0/1/2", "-1/5/6", ""):
        with pytest.raises(ValueError):
            Limits.parse(bad)
    assert decide({"minute": 1, "hour": 1, "day": 1}, Limits(100, 1000, 10000), DAY_START).headers()[
        "X-RateLimit-Policy"] == "100;w=60, 1000;w=3600, 10000;w=86400"
    assert ratelimit.WINDOWS[0] == ("minute", 60)
