"""One place that creates the logger, tracer and metrics (Powertools), imported by everything.

The X-Ray tracer costs ~340 ms of import and its SDK reaches end of support in February 2027, so
it stays behind this module and is imported only when tracing is on (``POWERTOOLS_TRACE_DISABLED``
unset or false, as in AWS).  Swapping X-Ray for OpenTelemetry later touches this file alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

__all__ = ["MetricUnit", "lambda_entry", "logger", "metrics", "trace", "tracing_enabled"]

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "prdtool"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "PrdTool"))

F = TypeVar("F", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() not in ("1", "true")


_tracer: Any = None


def _get_tracer() -> Any:
    global _tracer
    if _tracer is None:
        from aws_lambda_powertools import Tracer  # heavy: only when tracing is on

        _tracer = Tracer()
    return _tracer


def trace[T: Callable[..., Any]](fn: T) -> T:
    """Record ``fn`` as an X-Ray subsegment when tracing is on; a no-op otherwise."""
    if not tracing_enabled():
        return fn
    return _get_tracer().capture_method(fn)  # type: ignore[no-any-return]


def lambda_entry(*, log_event: bool = False, flush_metrics: bool = True) -> Callable[[F], F]:
    """Decorate a Lambda handler: structured logging context, metrics flush and tracing.

    ``log_event`` stays off by default because events carry tokens (authorizer, $connect).
    """

    def decorate(handler: F) -> F:
        wrapped: Any = logger.inject_lambda_context(log_event=log_event, clear_state=True)(handler)
        if flush_metrics:
            wrapped = metrics.log_metrics(wrapped)
        if tracing_enabled():
            wrapped = _get_tracer().capture_lambda_handler(wrapped)

        @wraps(handler)
        def entry(event: Any, context: Any) -> Any:
            return wrapped(event, context)

        return entry  # type: ignore[return-value]

    return decorate
