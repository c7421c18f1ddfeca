"""AI drafting over HTTP (routes under /api/prds/{id}/ai/jobs and /api/ai/jobs)."""

from typing import Any

from prdtool.ai.routes import router
from prdtool.http import lambda_handler
from prdtool.observability import lambda_entry

_app = lambda_handler(router)


@lambda_entry(flush_metrics=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _app(event, context)
