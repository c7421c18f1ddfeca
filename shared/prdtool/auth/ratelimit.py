"""Rate limiting (seed flow 5.1): per API key, else per user, else per client IP.

Whose budget a request spends (:func:`subject_of`): a signed-in person's own requests count as
``user#<name>``; requests made with any of that person's API keys count together as
``keys#<owner>`` — one budget shared by all their keys, so creating N keys does not buy N budgets
(keying by the key id did).  The keys' budget is separate from the person's own so that a runaway
or leaked key cannot lock its owner out of the API — including out of revoking that key.  So a
person's ceiling is twice their plan however many keys they create, and it still costs one counter
(one ``UpdateItem``) per request.  Unauthenticated requests count per client IP.

Three fixed windows — a minute, an hour, a day — counted in ONE DynamoDB item per subject, so a
request costs one ``UpdateItem`` in the steady state: the item holds each window's bucket number
and count, and the update adds one to all three counts on condition that the three bucket numbers
are still current.  When a window rolls over the condition fails, and the item is read and
rewritten with the rolled-over windows reset (a compare-and-set on the values read, retried a few
times under contention) — two more calls, once a minute per active subject.

Every request is counted, refused ones too (a client that hammers stays refused).  A request is
refused when any window's count exceeds its limit.  ``X-RateLimit-*`` headers describe the minute
window, or the window that refused the request when a longer one is exhausted; ``Retry-After`` is
the number of seconds until every exceeded window has reset.

When the counter store fails the limiter **fails open**: the request is served without rate-limit
headers, the failure is logged and counted (``RateLimitStoreFailed``), and the container stops
asking the store for ``_BREAKER_SECONDS`` so an outage costs no latency.  Authentication and
authorization are untouched by this, and API Gateway's stage throttling still bounds the load, so
an outage of the counter table degrades fairness, not security or availability.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.models import Model

from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings
from ..storage import is_conditional_failure, register, table_meta
from .principal import Principal

WINDOWS: tuple[tuple[str, int], ...] = (("minute", 60), ("hour", 3600), ("day", 86400))
_BREAKER_SECONDS = 10.0
_ATTEMPTS = 4


def _meta() -> Any:
    meta: Any = table_meta("rate_limits_table")
    # A slow limiter must not slow every request: one quick attempt, then fail open.
    meta.connect_timeout_seconds = 1
    meta.read_timeout_seconds = 1
    meta.max_retry_attempts = 0
    return meta


@register
class RateLimitModel(Model):
    Meta = _meta()

    key = UnicodeAttribute(hash_key=True)  # "keys#<owner>" | "user#<username>" | "ip#<address>" (subject_of)
    m_b = NumberAttribute()  # minute bucket (epoch seconds // 60)
    m_c = NumberAttribute()
    h_b = NumberAttribute()
    h_c = NumberAttribute()
    d_b = NumberAttribute()
    d_c = NumberAttribute()
    expires_at = NumberAttribute()  # TTL: the end of the day window


@dataclass(frozen=True)
class Limits:
    minute: int
    hour: int
    day: int

    def of(self, window: str) -> int:
        return int(getattr(self, window))

    @classmethod
    def parse(cls, text: str) -> Limits:
        parts = [p.strip() for p in text.split("/")]
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"rate limits must read 'minute/hour/day' in positive integers, got {text!r}")
        return cls(*(int(p) for p in parts))


@lru_cache(maxsize=8)
def _plans(default: str, plans_json: str) -> dict[str, Limits]:
    plans = {"": Limits.parse(default)}
    if plans_json.strip():
        raw = json.loads(plans_json)
        if not isinstance(raw, dict):
            raise ValueError("RATE_LIMIT_PLANS must be a JSON object of plan -> 'minute/hour/day'")
        plans.update({str(name): Limits.parse(str(value)) for name, value in raw.items()})
    return plans


def limits_for(plan: str) -> Limits:
    s = get_settings()
    plans = _plans(s.rate_limits, s.rate_limit_plans)
    return plans.get(plan, plans[""])


def subject_of(principal: Principal | None, source_ip: str) -> tuple[str, str]:
    """Whose budget a request spends, and the plan whose limits apply.

    All the API keys of one person share one budget (``keys#<owner>``), separate from the person's
    own (``user#<owner>``); see the module docstring.  A key is judged by the plan it was created
    with; the counter is the same whatever the plan.
    """
    if principal is not None and principal.api_key_id:
        return f"keys#{principal.username}", principal.plan
    if principal is not None:
        return f"user#{principal.username}", principal.plan
    return f"ip#{source_ip}", ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int  # of the window the headers describe
    remaining: int
    reset: int  # epoch seconds when that window resets
    retry_after: int  # seconds; 0 when allowed
    window: str
    policy: str  # all windows, e.g. "100;w=60, 1000;w=3600, 10000;w=86400"

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
            "X-RateLimit-Policy": self.policy,
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def decide(counts: dict[str, int], limits: Limits, now: float) -> Decision:
    """Turn the counts of the three windows (this request included) into a decision."""
    resets = {w: (int(now) // size + 1) * size for w, size in WINDOWS}
    exceeded = [w for w, _ in WINDOWS if counts[w] > limits.of(w)]
    # Describe the minute window unless a longer window is what refuses the request (the longest).
    longer = [w for w in ("day", "hour") if w in exceeded]
    shown = longer[0] if longer else "minute"
    policy = ", ".join(f"{limits.of(w)};w={size}" for w, size in WINDOWS)
    retry_after = max((resets[w] - now for w in exceeded), default=0.0)
    return Decision(
        allowed=not exceeded,
        limit=limits.of(shown),
        remaining=max(0, limits.of(shown) - counts[shown]),
        reset=resets[shown],
        retry_after=max(1, math.ceil(retry_after)) if exceeded else 0,
        window=shown,
        policy=policy,
    )


class RateLimiter:
    """Counts requests per subject in the rate-limits table; safe to share between threads."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._open_until = 0.0  # while in the future, the store is skipped (fail open)

    def hit(self, subject: str, plan: str = "", *, limits: Limits | None = None) -> Decision | None:
        """Count one request of ``subject`` against its plan's limits (or ``limits``, for budgets of
        their own such as AI jobs); None when the store failed (fail open)."""
        limits = limits or limits_for(plan)
        now = self._clock()
        if now < self._open_until:
            return None
        try:
            counts = self._count(subject, now)
        except Exception as exc:
            self._open_until = now + _BREAKER_SECONDS
            logger.warning("rate-limit store failed; failing open", extra={"error": type(exc).__name__})
            metrics.add_metric(name="RateLimitStoreFailed", unit=MetricUnit.Count, value=1)
            return None
        decision = decide(counts, limits, now)
        if not decision.allowed:
            metrics.add_metric(name="RateLimited", unit=MetricUnit.Count, value=1)
        return decision

    def _count(self, subject: str, now: float) -> dict[str, int]:
        buckets = {w: int(now) // size for w, size in WINDOWS}
        counts: dict[str, int] = {}
        for _ in range(_ATTEMPTS):
            fast = self._add(subject, buckets)
            if fast is not None:
                return fast
            # A window rolled over (or the subject is new): read, reset what rolled, write back if
            # nobody changed the item meanwhile; if somebody already rolled it, the fast path works.
            try:
                old: RateLimitModel | None = RateLimitModel.get(subject, consistent_read=True)
            except RateLimitModel.DoesNotExist:
                old = None
            if old is not None and all(int(getattr(old, b)) == buckets[w] for w, b in _BUCKET_ATTRS):
                continue
            for window, b_attr in _BUCKET_ATTRS:
                same = old is not None and int(getattr(old, b_attr)) == buckets[window]
                counts[window] = (int(getattr(old, _COUNT_ATTRS[window])) if same and old is not None else 0) + 1
            new = RateLimitModel(
                key=subject, m_b=buckets["minute"], m_c=counts["minute"], h_b=buckets["hour"], h_c=counts["hour"],
                d_b=buckets["day"], d_c=counts["day"], expires_at=(buckets["day"] + 1) * 86400 + 3600,
            )
            condition = RateLimitModel.key.does_not_exist()
            if old is not None:
                condition = (RateLimitModel.m_b == int(old.m_b)) & (RateLimitModel.h_b == int(old.h_b)) \
                    & (RateLimitModel.d_b == int(old.d_b)) & (RateLimitModel.m_c == int(old.m_c)) \
                    & (RateLimitModel.h_c == int(old.h_c)) & (RateLimitModel.d_c == int(old.d_c))
            try:
                new.save(condition=condition)
                return counts
            except PutError as exc:
                if not is_conditional_failure(exc):
                    raise
        # Still contended (many concurrent requests at a window boundary): count this one as the
        # last estimate rather than failing open for every later request.
        metrics.add_metric(name="RateLimitContended", unit=MetricUnit.Count, value=1)
        return counts or {w: 1 for w, _ in WINDOWS}

    @staticmethod
    def _add(subject: str, buckets: dict[str, int]) -> dict[str, int] | None:
        """One UpdateItem adding 1 to each window, if all three are current; None if one rolled."""
        item = RateLimitModel(key=subject)
        try:
            item.update(
                actions=[RateLimitModel.m_c.add(1), RateLimitModel.h_c.add(1), RateLimitModel.d_c.add(1)],
                condition=(RateLimitModel.m_b == buckets["minute"]) & (RateLimitModel.h_b == buckets["hour"])
                & (RateLimitModel.d_b == buckets["day"]),
            )
        except UpdateError as exc:
            if is_conditional_failure(exc):
                return None
            raise
        return {"minute": int(item.m_c), "hour": int(item.h_c), "day": int(item.d_c)}


_BUCKET_ATTRS = (("minute", "m_b"), ("hour", "h_b"), ("day", "d_b"))
_COUNT_ATTRS = {"minute": "m_c", "hour": "h_c", "day": "d_c"}


_limiter: RateLimiter | None = None


def limiter() -> RateLimiter:
    global _limiter
    if _limiter is None:
        _limiter = RateLimiter()
    return _limiter


def reset_limiter() -> None:
    global _limiter
    _limiter = None
