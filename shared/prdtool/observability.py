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


def _freeze_heap() -> None:
    """After a container's first invocation: move everything alive (modules, SDK clients and their
    service models, caches — what lives as long as the container) out of the cyclic collector's
    reach (``gc.freeze``), so its full collections scan only what invocations allocate.  Without it
    a full collection walks the whole heap, a pause of 70-190 ms on the local stack measured in the
    middle of an edit (docs/benchmarks.md); reference counting still frees whatever is dropped.
    Only in a Lambda environment (AWS's or the local stack's): a test process calling handlers
    keeps collecting as usual."""
    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return
    import gc

    gc.freeze()


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

        first = [True]

        @wraps(handler)
        def entry(event: Any, context: Any) -> Any:
            try:
                return wrapped(event, context)
            finally:
                if first:
                    first.clear()
                    _freeze_heap()

        return entry  # type: ignore[return-value]

    return decorate
