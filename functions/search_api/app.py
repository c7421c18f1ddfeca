"""Search over HTTP (GET /api/search): prdtool.search.routes on the configured engine."""

from typing import Any

from prdtool.http import lambda_handler
from prdtool.observability import lambda_entry
from prdtool.search.routes import router

_app = lambda_handler(router)


@lambda_entry(flush_metrics=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _app(event, context)
