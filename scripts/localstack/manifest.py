"""The wiring manifest: what the provisioner learns from ``template.yaml`` and the runtime executes.

``provision.provision()`` translates the SAM template to CloudFormation (samtranslator, offline),
creates the data-plane resources (DynamoDB, S3, SQS, EventBridge bus and SQS-target rules, Cognito)
in moto with boto3, and returns a :class:`Manifest` describing everything moto cannot run:
functions, HTTP and WebSocket routes, authorizers, SQS event source mappings, schedules and
EventBridge rules whose targets are functions.  The runtime (gateway, pollers, timers) reads only
this manifest; it never re-reads the template.

All values are plain JSON types so the manifest can be written to ``.local/manifest.json`` and
inspected by a person.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class FunctionSpec(TypedDict):
    logical_id: str  # "PrdsFunction"
    name: str  # physical name, e.g. "prdtool-local-PrdsFunction"
    arn: str  # "arn:aws:lambda:us-east-1:123456789012:function:prdtool-local-PrdsFunction"
    code_dir: str  # absolute path of the CodeUri folder, e.g. /repo/functions/prds
    handler: str  # "app.handler" (module.attribute, relative to code_dir)
    layer_dirs: list[str]  # absolute paths of the ContentUri of each layer, in order
    environment: dict[str, str]  # the template's variables (Globals merged), intrinsics resolved
    timeout: int  # seconds
    memory: int  # MB
    reserved_concurrency: NotRequired[int | None]


class HttpAuthorizerSpec(TypedDict):
    name: str  # "TokenAuthorizer"
    function: str  # logical id of the authorizer function
    payload_format_version: Literal["1.0", "2.0"]
    simple_responses: bool
    identity_sources: list[str]  # e.g. ["$request.header.Authorization"]; may be empty
    result_ttl: int  # seconds; 0 = no cache


class HttpRouteSpec(TypedDict):
    route_key: str  # "GET /api/prds/{id}" (or "$default")
    method: str  # "GET", or "ANY"
    path: str  # "/api/prds/{id}"; path parameters in braces, "{proxy+}" greedy
    function: str  # logical id
    authorizer: str | None  # name of an HttpAuthorizerSpec, or None for public routes


class WebSocketAuthorizerSpec(TypedDict):
    name: str
    function: str  # logical id
    identity_sources: list[str]  # e.g. ["route.request.querystring.token"]


class WebSocketRouteSpec(TypedDict):
    route_key: str  # "$connect", "$disconnect", "$default", or a custom key like "ping"
    function: str  # logical id (from the integration's IntegrationUri)
    authorizer: str | None  # name of a WebSocketAuthorizerSpec (only on $connect), or None


class WebSocketApiSpec(TypedDict):
    logical_id: str
    api_id: str  # a made-up id, stable for one run
    stage: str
    route_selection_expression: str  # "$request.body.action"
    routes: list[WebSocketRouteSpec]
    authorizers: list[WebSocketAuthorizerSpec]


class EventSourceMappingSpec(TypedDict):
    function: str  # logical id
    queue_arn: str
    queue_url: str
    batch_size: int  # default 10
    batching_window_seconds: int  # MaximumBatchingWindowInSeconds, default 0
    report_batch_item_failures: bool  # FunctionResponseTypes contains ReportBatchItemFailures
    maximum_concurrency: NotRequired[int | None]
    enabled: bool


class ScheduleSpec(TypedDict):
    name: str  # rule logical id
    function: str  # logical id of the target function
    expression: str  # "rate(1 day)" or "cron(0 3 * * ? *)"
    input: str | None  # the target's constant Input (JSON text), or None for the scheduled-event envelope
    enabled: bool


class RuleTargetSpec(TypedDict):
    function: str  # logical id
    input: str | None  # constant Input, if any
    input_path: str | None
    # Events matching the rule are delivered by moto to this shadow SQS queue (created by the
    # provisioner); the runtime polls it and invokes the function asynchronously, one event each.
    shadow_queue_url: str


class EventRuleSpec(TypedDict):
    name: str  # rule logical id
    bus_name: str
    pattern: dict[str, Any]
    function_targets: list[RuleTargetSpec]


class Manifest(TypedDict):
    stack_name: str  # "prdtool-local"
    region: str  # "us-east-1"
    account_id: str  # "123456789012" (moto's default)
    endpoint_url: str  # moto server, e.g. "http://127.0.0.1:3001"
    repo_root: str
    resources: dict[str, dict[str, Any]]  # logical id -> {"type", "ref", "arn"?, "attrs": {...}}
    functions: dict[str, FunctionSpec]  # by logical id
    http_authorizers: dict[str, HttpAuthorizerSpec]  # by name
    http_routes: list[HttpRouteSpec]
    websocket: WebSocketApiSpec | None
    event_source_mappings: list[EventSourceMappingSpec]
    schedules: list[ScheduleSpec]
    event_rules: list[EventRuleSpec]
    tables: dict[str, str]  # logical id -> table name (for state save/restore)
    buckets: dict[str, str]  # logical id -> bucket name
    queues: dict[str, str]  # logical id -> queue url
    user_pools: dict[str, str]  # logical id -> pool id
    user_pool_clients: dict[str, str]  # logical id -> client id
