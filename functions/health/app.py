"""Health of every dependency and the client configuration (GET /api/health, /api/config)."""

from typing import Any

from prdtool.health.routes import router
from prdtool.http import lambda_handler
from prdtool.observability import lambda_entry

_app = lambda_handler(router)


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _app(event, context)
