"""Provision the local stack from ``template.yaml``: data-plane resources in moto, the rest in a manifest.

Why not moto's own CloudFormation?  It cannot deploy a SAM application (DESIGN §4: it crashes on
``!Ref`` of an event bus, silently skips API Gateway v2, Cognito and Scheduler resources, and a rule
with a Lambda target turns every ``PutEvents`` into HTTP 500).  So this module does what
CloudFormation would do, for the subset the local stack emulates:

1. parse the template with samtranslator's YAML loader and point every local ``CodeUri`` /
   ``ContentUri`` at ``s3://local-code/<absolute path>`` (SAM only translates S3 code locations
   offline); the S3 key is how each function and layer finds its folder again after translation,
   which matters because SAM renames layers (``SharedLayer`` → ``SharedLayer792a80d671``);
2. translate SAM → CloudFormation offline with samtranslator;
3. walk the resources in dependency order: create tables, buckets, queues, buses, pattern rules
   and Cognito pools/clients/groups in moto through boto3, and give functions, APIs, roles, log
   groups and the like made-up but stable physical ids without creating anything;
4. resolve every intrinsic (:mod:`.intrinsics`) and describe what moto cannot run — functions,
   HTTP and WebSocket routes, authorizers, SQS event source mappings, schedules, and rules whose
   targets are functions — as a :class:`~.manifest.Manifest` for the runtime.

Anything the local stack cannot emulate faithfully (an unknown resource type, a non-SQS event
source, a JWT authorizer, ...) raises :class:`TemplateError` before the first resource is created
where possible, rather than starting a stack that silently behaves differently from AWS.

Dependency order only follows what determines each resource's identity: a function's physical
name depends on ``FunctionName`` alone, not on its environment.  That is looser than
CloudFormation, on purpose: a function whose environment names the HTTP API that routes to it
(``HealthFunction``'s ``PUBLIC_API_URL``) is a circular dependency that a real deployment rejects,
but it need not stop the local stack.

:func:`save_state` and :func:`restore_state` carry table items and bucket objects across restarts
of moto, which keeps nothing on its own; :func:`replay_journal` then applies what moto journaled
after the snapshot began (``journal.py``), so that a crash loses nothing moto acknowledged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, Shape, StructureShape
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.arn_generator import ArnGenerator
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from . import journal
from .intrinsics import PhysicalResource, Resolver, TemplateError, referenced_names, scalar_text
from .manifest import (
    EventRuleSpec,
    EventSourceMappingSpec,
    FunctionSpec,
    HttpAuthorizerSpec,
    HttpRouteSpec,
    Manifest,
    RuleTargetSpec,
    ScheduleSpec,
    WebSocketApiSpec,
    WebSocketAuthorizerSpec,
    WebSocketRouteSpec,
)

__all__ = ["ProvisionError", "TemplateError", "provision", "replay_journal", "restore_state", "save_state"]

logger = logging.getLogger("localstack.provision")

DEFAULT_PARAMETERS: Final[Mapping[str, str]] = {"Stage": "local"}
LOCAL_CODE_BUCKET: Final = "local-code"
SAM_TRANSFORM: Final = "AWS::Serverless-2016-10-31"
DUMMY_CREDENTIAL: Final = "testing"

_HTTP_METHODS: Final = frozenset(
    {"get", "put", "post", "delete", "patch", "head", "options", "x-amazon-apigateway-any-method"}
)
_INVOCATION_URI: Final = re.compile(r"/functions/(?P<function>.+?)/invocations$")
_CURRENT_SNAPSHOT: Final = "CURRENT"
_SNAPSHOT_JOURNAL: Final = "journal.json"  # in a snapshot: the journal sequence number it covers
_SNAPSHOT_PREFIX: Final = "snapshot-"
_BATCH_WRITE_LIMIT: Final = 25
_IO_THREADS: Final = 8
_MISSING_QUEUE_CODES: Final = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
# One save or restore at a time: a save deletes every snapshot but its own once it is current, so a
# periodic save overlapping the final one at shutdown must not run at the same time.
_STATE_LOCK: Final = threading.Lock()


class ProvisionError(RuntimeError):
    """moto refused to create a resource the template declares."""


# ====================================================================== public API


def provision(
    template_path: str | Path,
    endpoint_url: str,
    *,
    region: str = "us-east-1",
    stack_name: str = "prdtool-local",
    parameters: dict[str, str] | None = None,
    repo_root: Path | None = None,
) -> Manifest:
    """Create the template's data-plane resources in the moto server and return the wiring manifest.

    ``repo_root`` is the folder that relative ``CodeUri``/``ContentUri`` paths start from; it
    defaults to the template's folder, as for ``sam build``.  ``parameters`` override the
    template's defaults (``Stage`` defaults to ``local``).  Safe to call again against the same
    server: existing resources are reused.
    """
    started = time.perf_counter()
    template_file = Path(template_path).resolve()
    base_dir = (repo_root or template_file.parent).resolve()
    sam_template = yaml_parse(template_file.read_text())
    code_dirs = _stage_local_code(sam_template, base_dir)

    aws = _Aws(endpoint_url, region)
    account_id: str = aws("sts").get_caller_identity()["Account"]
    partition = ArnGenerator.get_partition_name(region)
    template_parameters = _parameter_values(sam_template, {**DEFAULT_PARAMETERS, **(parameters or {})})
    declarations = sam_template.get("Parameters") or {}
    parameter_refs = {name: _reference_value(declarations[name], value) for name, value in template_parameters.items()}
    pseudo_parameters = {
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::StackName": stack_name,
        "AWS::StackId": f"arn:{partition}:cloudformation:{region}:{account_id}:stack/{stack_name}/"
        f"{uuid.uuid5(uuid.NAMESPACE_URL, f'{account_id}/{region}/{stack_name}')}",
        "AWS::Partition": partition,
        "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
    }
    template = _translate(sam_template, {**template_parameters, **pseudo_parameters}, region)

    resolver = Resolver(
        parameters={
            **parameter_refs,
            **pseudo_parameters,
            "AWS::NotificationARNs": [],
        },
        conditions=template.get("Conditions") or {},
        mappings=template.get("Mappings") or {},
        region=region,
    )
    stack = _Stack(
        name=stack_name,
        region=region,
        account_id=account_id,
        partition=partition,
        url_suffix=pseudo_parameters["AWS::URLSuffix"],
        aws=aws,
        resolver=resolver,
        code_dirs=code_dirs,
    )
    resources: dict[str, Any] = template.get("Resources") or {}
    _provision_resources(stack, resources)
    manifest = _build_manifest(stack, resources, endpoint_url, base_dir)

    logger.info(
        "provisioned %s on %s in %d ms: %s; %d functions, %d HTTP routes, %d WebSocket routes, "
        "%d queue mappings, %d schedules, %d event rules",
        stack_name,
        endpoint_url,
        (time.perf_counter() - started) * 1000,
        ", ".join(f"{count} {outcome}" for outcome, count in sorted(stack.outcomes.items())),
        len(manifest["functions"]),
        len(manifest["http_routes"]),
        len(manifest["websocket"]["routes"]) if manifest["websocket"] else 0,
        len(manifest["event_source_mappings"]),
        len(manifest["schedules"]),
        len(manifest["event_rules"]),
    )
    return manifest


# ====================================================================== template loading


def _stage_local_code(template: dict[str, Any], base_dir: Path) -> dict[str, Path]:
    """Point local code locations at ``s3://local-code/...`` and return ``{S3 key: folder}``.

    samtranslator refuses local paths when it runs offline; after translation each
    ``Code``/``Content`` holds ``S3Key``, which leads back to the folder.
    """
    code_dirs: dict[str, Path] = {}

    def stage(properties: Any, key: str, owner: str) -> None:
        if not isinstance(properties, dict):
            return
        location = properties.get(key)
        if not isinstance(location, str) or location.startswith("s3://"):
            return
        folder = (base_dir / location).resolve()
        if not folder.is_dir():
            raise TemplateError(f"{owner}: {key} {location!r} is not a folder ({folder})")
        s3_key = folder.as_posix().lstrip("/")
        code_dirs[s3_key] = folder
        properties[key] = f"s3://{LOCAL_CODE_BUCKET}/{s3_key}"

    template_globals = template.get("Globals") or {}
    stage(template_globals.get("Function"), "CodeUri", "Globals.Function")
    stage(template_globals.get("LayerVersion"), "ContentUri", "Globals.LayerVersion")
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") == "AWS::Serverless::Function":
            stage(resource.get("Properties"), "CodeUri", logical_id)
        elif resource.get("Type") == "AWS::Serverless::LayerVersion":
            stage(resource.get("Properties"), "ContentUri", logical_id)
    return code_dirs


def _parameter_values(template: dict[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    """Template parameter values: given ones (validated like CloudFormation would) or defaults.

    Defaults that name a parameter the template does not declare (``Stage``) are dropped; any other
    unknown name is an error, as in CloudFormation.
    """
    declared: dict[str, Any] = template.get("Parameters") or {}
    unknown = sorted(set(given) - set(declared) - set(DEFAULT_PARAMETERS))
    if unknown:
        raise TemplateError(f"the template declares no parameter {', '.join(unknown)}")
    values: dict[str, str] = {}
    for name, declaration in declared.items():
        where = f"parameter {name}"
        if name in given:
            value = given[name]
        elif "Default" in declaration:
            value = scalar_text(declaration["Default"], where)
        else:
            raise TemplateError(f"{where} has no default: pass a value")
        kind = str(declaration.get("Type", "String"))
        if kind.startswith("AWS::SSM::Parameter::Value"):
            raise TemplateError(f"{where}: SSM parameter types are not available locally")
        if kind == "Number":
            try:
                float(value)
            except ValueError:
                raise TemplateError(f"{where}: {value!r} is not a number") from None
        allowed = declaration.get("AllowedValues")
        if allowed is not None and value not in [scalar_text(item, where) for item in allowed]:
            raise TemplateError(f"{where}: {value!r} is not one of {allowed}")
        pattern = declaration.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise TemplateError(f"{where}: {value!r} does not match {pattern}")
        values[name] = value
    return values


def _reference_value(declaration: Mapping[str, Any], value: str) -> str | list[str]:
    """What ``Ref`` returns for a parameter: list types are lists, everything else a string."""
    kind = str(declaration.get("Type", "String"))
    if kind == "CommaDelimitedList" or kind.startswith("List<"):
        return [item.strip() for item in value.split(",")]
    return value


def _no_managed_policies() -> dict[str, str]:
    """The local stack creates no IAM, so SAM needs no managed-policy name → ARN map."""
    return {}


def _translate(template: dict[str, Any], parameter_values: dict[str, str], region: str) -> dict[str, Any]:
    """SAM → CloudFormation, offline.

    This is what ``samtranslator.translator.transform.transform`` does, minus its session lookup:
    ``transform`` builds a region-less boto3 session and fails unless ``AWS_DEFAULT_REGION`` is
    set, so the translator gets a session bound to ``region`` instead of mutating the environment.
    """
    transforms = template.get("Transform")
    names = [transforms] if isinstance(transforms, str) else list(transforms or [])
    if not names:
        return template
    if names != [SAM_TRANSFORM]:
        raise TemplateError(f"only the {SAM_TRANSFORM} transform is supported locally, not {names}")
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        translated: dict[str, Any] = translator.translate(
            template, parameter_values=parameter_values, get_managed_policy_map=_no_managed_policies
        )
    except InvalidDocumentException as error:
        causes = "; ".join(cause.message for cause in error.causes)
        raise TemplateError(f"SAM translation failed: {causes}") from error
    finally:
        # Its metrics go to a dummy publisher; publishing spares a warning when they are collected.
        translator.metrics.publish()
    return translated


# ====================================================================== AWS (moto) access


class _Aws:
    """boto3 clients for the moto server, each created on first use (model loading costs ~50 ms)."""

    def __init__(self, endpoint_url: str, region: str) -> None:
        self._endpoint_url = endpoint_url
        self._session = boto3.session.Session(
            aws_access_key_id=DUMMY_CREDENTIAL,
            aws_secret_access_key=DUMMY_CREDENTIAL,
            region_name=region,
        )
        self._config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=_IO_THREADS * 2,
        )
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(service, endpoint_url=self._endpoint_url, config=self._config)
        return self._clients[service]


@contextmanager
def _moto_errors(what: str) -> Iterator[None]:
    """Name the resource in errors from moto, which otherwise only name the operation."""
    try:
        yield
    except ClientError as error:
        raise ProvisionError(f"{what}: {error}") from error


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _log_not_emulated(logical_id: str, properties: Mapping[str, Any], applied: Iterable[str]) -> None:
    """Say which properties have no local effect (encryption, backups, tags, ...)."""
    ignored = sorted(set(properties) - set(applied))
    if ignored:
        logger.debug("%s: not emulated: %s", logical_id, ", ".join(ignored))


def _fit(shape: Shape, value: Any, path: str, ignored: list[str]) -> Any:
    """Shape a template value for a boto3 call.

    Template values come from YAML and intrinsics, so numbers may be strings (``!Ref`` of a Number
    parameter) and CloudFormation-only members may be present (``ContributorInsightsSpecification``
    on an index).  Scalars are converted to the API's type; unknown structure members are dropped
    and listed in ``ignored``.
    """
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        fitted = {}
        for key, item in value.items():
            if key in shape.members:
                fitted[key] = _fit(shape.members[key], item, f"{path}.{key}", ignored)
            else:
                ignored.append(f"{path}.{key}")
        return fitted
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [_fit(shape.member, item, path, ignored) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {key: _fit(shape.value, item, f"{path}.{key}", ignored) for key, item in value.items()}
    if isinstance(value, str):
        if shape.type_name in ("integer", "long"):
            return int(value)
        if shape.type_name in ("double", "float"):
            return float(value)
        if shape.type_name == "boolean":
            return value.lower() == "true"
    if shape.type_name == "string" and isinstance(value, bool | int | float):
        return scalar_text(value, path)
    return value


# ====================================================================== the stack being provisioned


@dataclass
class _Stack:
    """Everything resource handlers share while one template is provisioned."""

    name: str
    region: str
    account_id: str
    partition: str
    url_suffix: str
    aws: _Aws
    resolver: Resolver
    code_dirs: Mapping[str, Path]
    layer_dirs: dict[str, Path] = field(default_factory=dict)  # layer version ARN -> folder
    schedules: list[ScheduleSpec] = field(default_factory=list)
    event_rules: list[EventRuleSpec] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        region = self.region if regional else ""
        return f"arn:{self.partition}:{service}:{region}:{self.account_id}:{resource}"

    def stable_id(self, logical_id: str, length: int = 10) -> str:
        """A made-up id (API, authorizer, ...) that stays the same across runs."""
        return hashlib.sha256(f"{self.name}/{logical_id}".encode()).hexdigest()[:length]

    def bounded_name(self, base: str, *, max_length: int, suffix: str = "") -> str:
        """``base + suffix``, shortened with a hash when the service limits the name's length."""
        if len(base) + len(suffix) <= max_length:
            return base + suffix
        digest = hashlib.sha256(base.encode()).hexdigest()[:8]
        return f"{base[: max_length - len(suffix) - 9]}-{digest}{suffix}"

    def generated_name(self, logical_id: str, *, max_length: int, suffix: str = "") -> str:
        """The name CloudFormation would generate, minus its random part: ``<stack>-<LogicalId>``."""
        return self.bounded_name(f"{self.name}-{logical_id}", max_length=max_length, suffix=suffix)

    def api_arguments(self, service: str, operation: str, values: Mapping[str, Any], where: str) -> dict[str, Any]:
        """``values`` fitted to ``operation``'s input; what the API does not know is logged."""
        shape = self.aws(service).meta.service_model.operation_model(operation).input_shape
        ignored: list[str] = []
        arguments: dict[str, Any] = _fit(shape, dict(values), where, ignored)
        if ignored:
            logger.debug("%s: not emulated: %s", where, ", ".join(ignored))
        return arguments

    def record(self, logical_id: str, resource_type: str, outcome: str, physical: str) -> None:
        logger.debug("%s %s %s -> %s", outcome, resource_type, logical_id, physical)
        self.outcomes[outcome] += 1

    def logical_id(self, resource_type: str, ref: str) -> str | None:
        """The logical id of the resource of this type whose ``Ref`` is ``ref``."""
        for logical_id, resource in self.resolver.resources.items():
            if resource.type == resource_type and resource.ref == ref:
                return logical_id
        return None

    def find_function(self, reference: str) -> str | None:
        """The function named by a name, an ARN (qualified or not) or an API Gateway invocation URI."""
        if match := _INVOCATION_URI.search(reference):
            reference = match["function"]
        if ":function:" in reference:
            reference = reference.split(":function:", 1)[1].split(":", 1)[0]
        return self.logical_id("AWS::Lambda::Function", reference)

    def function_for(self, reference: Any, where: str) -> str:
        function = self.find_function(scalar_text(reference, where))
        if function is None:
            raise TemplateError(f"{where}: {reference!r} is not a function of this template")
        return function

    def queue_for_arn(self, arn: str) -> PhysicalResource | None:
        for resource in self.resolver.resources.values():
            if resource.type == "AWS::SQS::Queue" and resource.attrs.get("Arn") == arn:
                return resource
        return None


def _required(properties: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in properties:
        raise TemplateError(f"{where}: property {key} is required")
    return properties[key]


def _enabled(value: Any) -> bool:
    """CloudFormation booleans arrive as ``true``, ``"true"`` or ``"True"``."""
    return value if isinstance(value, bool) else str(value).lower() == "true"


# ====================================================================== data-plane resources (moto)


def _dynamodb_table(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    name = properties.get("TableName") or stack.generated_name(logical_id, max_length=255)
    dynamodb = stack.aws("dynamodb")
    copied = (
        "AttributeDefinitions",
        "KeySchema",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "ProvisionedThroughput",
        "TableClass",
    )
    _log_not_emulated(
        logical_id, properties, (*copied, "TableName", "BillingMode", "StreamSpecification", "TimeToLiveSpecification")
    )
    request = {key: properties[key] for key in copied if key in properties}
    # CloudFormation's default, which the API does not share when the property is absent.
    request["BillingMode"] = properties.get("BillingMode", "PROVISIONED")
    if stream := properties.get("StreamSpecification"):
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    try:
        arguments = stack.api_arguments("dynamodb", "CreateTable", request, logical_id)
        table = dynamodb.create_table(TableName=name, **arguments)["TableDescription"]
        outcome = "created"
    except ClientError as error:
        if _error_code(error) != "ResourceInUseException":
            raise
        table = dynamodb.describe_table(TableName=name)["Table"]
        outcome = "reused"
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and _enabled(ttl.get("Enabled", False)):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    stack.record(logical_id, "AWS::DynamoDB::Table", outcome, name)
    attrs = {"Arn": table["TableArn"]}
    if "LatestStreamArn" in table:
        attrs["StreamArn"] = table["LatestStreamArn"]
    return PhysicalResource("AWS::DynamoDB::Table", name, attrs)


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the S3 API's shape (moto stores rules, never applies them)."""
    converted: dict[str, Any] = {"ID": rule.get("Id", ""), "Status": rule["Status"]}
    tags = [{"Key": tag["Key"], "Value": tag["Value"]} for tag in rule.get("TagFilters", [])]
    prefix = rule.get("Prefix", "")
    converted["Filter"] = {"And": {"Prefix": prefix, "Tags": tags}} if tags else {"Prefix": prefix}
    expiration = {
        api_key: rule[key]
        for key, api_key in (
            ("ExpirationInDays", "Days"),
            ("ExpirationDate", "Date"),
            ("ExpiredObjectDeleteMarker", "ExpiredObjectDeleteMarker"),
        )
        if key in rule
    }
    if expiration:
        converted["Expiration"] = expiration
    if "NoncurrentVersionExpiration" in rule:
        converted["NoncurrentVersionExpiration"] = rule["NoncurrentVersionExpiration"]
    elif "NoncurrentVersionExpirationInDays" in rule:
        converted["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule["NoncurrentVersionExpirationInDays"]}
    if "AbortIncompleteMultipartUpload" in rule:
        converted["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    transitions = [
        {"StorageClass": item["StorageClass"], "Days": item["TransitionInDays"]}
        if "TransitionInDays" in item
        else {"StorageClass": item["StorageClass"], "Date": item["TransitionDate"]}
        for item in rule.get("Transitions", [])
    ]
    if transitions:
        converted["Transitions"] = transitions
    return converted


def _cors_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    renames = {"ExposedHeaders": "ExposeHeaders", "Id": "ID", "MaxAge": "MaxAgeSeconds"}
    return {renames.get(key, key): value for key, value in rule.items()}


def _best_effort(logical_id: str, what: str, call: Callable[[], Any]) -> None:
    """Apply a setting moto may not support; locally it changes no behaviour, so warn and go on."""
    try:
        call()
    except ClientError as error:
        logger.warning("%s: %s not applied by moto: %s", logical_id, what, error)


def _s3_bucket(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    name = properties.get("BucketName") or stack.generated_name(logical_id, max_length=63).lower()
    _log_not_emulated(
        logical_id,
        properties,
        (
            "BucketName",
            "VersioningConfiguration",
            "PublicAccessBlockConfiguration",
            "BucketEncryption",
            "LifecycleConfiguration",
            "CorsConfiguration",
        ),
    )
    s3 = stack.aws("s3")
    try:
        s3.head_bucket(Bucket=name)
        outcome = "reused"
    except ClientError as error:
        if _error_code(error) not in ("404", "NoSuchBucket"):
            raise
        location = (
            {} if stack.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": stack.region}}
        )
        s3.create_bucket(Bucket=name, **location)
        outcome = "created"
    if versioning := properties.get("VersioningConfiguration"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
    if block := properties.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration=stack.api_arguments(
                "s3", "PutPublicAccessBlock", {"PublicAccessBlockConfiguration": block}, logical_id
            )["PublicAccessBlockConfiguration"],
        )
    if encryption := properties.get("BucketEncryption"):
        rules = [
            {
                ("ApplyServerSideEncryptionByDefault" if key == "ServerSideEncryptionByDefault" else key): value
                for key, value in rule.items()
            }
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        _best_effort(
            logical_id,
            "encryption",
            lambda: s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules}),
        )
    if lifecycle := properties.get("LifecycleConfiguration"):
        lifecycle_rules = [_lifecycle_rule(rule) for rule in lifecycle["Rules"]]
        _best_effort(
            logical_id,
            "lifecycle rules",
            lambda: s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": lifecycle_rules}
            ),
        )
    if cors := properties.get("CorsConfiguration"):
        cors_rules = [_cors_rule(rule) for rule in cors["CorsRules"]]
        _best_effort(
            logical_id,
            "CORS rules",
            lambda: s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": cors_rules}),
        )
    stack.record(logical_id, "AWS::S3::Bucket", outcome, name)
    return PhysicalResource(
        "AWS::S3::Bucket",
        name,
        {
            "Arn": f"arn:{stack.partition}:s3:::{name}",
            "DomainName": f"{name}.s3.{stack.url_suffix}",
            "RegionalDomainName": f"{name}.s3.{stack.region}.{stack.url_suffix}",
        },
    )


def _queue_attribute(value: Any, where: str) -> str:
    """SQS attributes are strings; redrive policies are JSON objects in the template."""
    return json.dumps(value) if isinstance(value, dict) else scalar_text(value, where)


def _ensure_queue(stack: _Stack, name: str, attributes: Mapping[str, str]) -> tuple[str, str, str]:
    """Create the queue or bring an existing one to ``attributes``; returns (url, ARN, outcome)."""
    sqs = stack.aws("sqs")
    try:
        url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as error:
        if _error_code(error) not in _MISSING_QUEUE_CODES:
            raise
        url = sqs.create_queue(QueueName=name, Attributes=dict(attributes))["QueueUrl"]
        outcome = "created"
    else:
        mutable = {key: value for key, value in attributes.items() if key != "FifoQueue"}
        if mutable:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=mutable)
        outcome = "reused"
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, outcome


def _sqs_queue(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    fifo = _enabled(properties.get("FifoQueue", False))
    name = properties.get("QueueName") or stack.generated_name(
        logical_id, max_length=80, suffix=".fifo" if fifo else ""
    )
    known_attributes = set(stack.aws("sqs").meta.service_model.shape_for("QueueAttributeName").enum)
    attributes = {
        key: _queue_attribute(value, f"{logical_id}.{key}")
        for key, value in properties.items()
        if key in known_attributes
    }
    _log_not_emulated(logical_id, properties, (*attributes, "QueueName"))
    url, arn, outcome = _ensure_queue(stack, name, attributes)
    stack.record(logical_id, "AWS::SQS::Queue", outcome, url)
    return PhysicalResource("AWS::SQS::Queue", url, {"Arn": arn, "QueueUrl": url, "QueueName": name})


def _unenforced_policy(resource_type: str) -> Callable[[_Stack, str, dict[str, Any]], PhysicalResource]:
    """A recorder for bucket and queue policies, which are never applied.

    moto does not enforce queue policies (EventBridge delivers without one), and it enforces a
    bucket policy's Deny statements on object operations while ignoring their Conditions: the
    usual ``DenyInsecureTransport`` statement would refuse every GetObject and PutObject.
    """

    def record(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
        stack.record(logical_id, resource_type, "skipped", "(policies are not enforced locally)")
        return PhysicalResource(resource_type, stack.stable_id(logical_id), {"Id": stack.stable_id(logical_id)})

    return record


def _event_bus(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    name = _required(properties, "Name", logical_id)
    events = stack.aws("events")
    try:
        arn = events.create_event_bus(Name=name)["EventBusArn"]
        outcome = "created"
    except ClientError as error:
        if _error_code(error) != "ResourceAlreadyExistsException":
            raise
        arn = events.describe_event_bus(Name=name)["Arn"]
        outcome = "reused"
    stack.record(logical_id, "AWS::Events::EventBus", outcome, name)
    return PhysicalResource("AWS::Events::EventBus", name, {"Arn": arn, "Name": name})


def _bus_name(reference: str) -> str:
    """``EventBusName`` may be a name or an ARN (``arn:...:event-bus/<name>``)."""
    return reference.rsplit("event-bus/", 1)[1] if reference.startswith("arn:") else reference


def _event_rule(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    """Schedules become :class:`ScheduleSpec` (never created in moto: moto routes ordinary events to
    schedule rules); pattern rules are created on their bus, with SQS targets as they are and
    function targets replaced by shadow queues that the runtime polls (DESIGN §4: a Lambda target
    in moto turns every ``PutEvents`` into HTTP 500)."""
    bus = _bus_name(properties.get("EventBusName", "default"))
    name = properties.get("Name") or stack.generated_name(logical_id, max_length=64)
    enabled = properties.get("State", "ENABLED") != "DISABLED"
    targets: list[dict[str, Any]] = properties.get("Targets", [])
    if "ScheduleExpression" not in properties and "EventPattern" not in properties:
        raise TemplateError(f"{logical_id}: a rule needs a ScheduleExpression or an EventPattern")
    if "ScheduleExpression" in properties:
        for target in targets:
            where = f"{logical_id} target {target.get('Id')}"
            stack.schedules.append(
                ScheduleSpec(
                    name=logical_id,
                    function=stack.function_for(
                        target["Arn"], f"{where} (only function targets of schedules run locally)"
                    ),
                    expression=properties["ScheduleExpression"],
                    input=target.get("Input"),
                    enabled=enabled,
                )
            )
        stack.record(logical_id, "AWS::Events::Rule", "scheduled", properties["ScheduleExpression"])
    if "EventPattern" in properties:
        _pattern_rule(stack, logical_id, name, bus, properties, enabled)
    arn = stack.arn("events", f"rule/{name}" if bus == "default" else f"rule/{bus}/{name}")
    return PhysicalResource("AWS::Events::Rule", name if bus == "default" else f"{bus}|{name}", {"Arn": arn})


def _pattern_rule(
    stack: _Stack, logical_id: str, name: str, bus: str, properties: dict[str, Any], enabled: bool
) -> None:
    pattern = properties["EventPattern"]
    pattern = json.loads(pattern) if isinstance(pattern, str) else pattern
    events = stack.aws("events")
    events.put_rule(
        Name=name, EventBusName=bus, EventPattern=json.dumps(pattern), State="ENABLED" if enabled else "DISABLED"
    )
    moto_targets: list[dict[str, Any]] = []
    function_targets: list[RuleTargetSpec] = []
    for position, target in enumerate(properties.get("Targets", [])):
        where = f"{logical_id} target {target.get('Id')}"
        arn = scalar_text(_required(target, "Arn", where), where)
        function = stack.find_function(arn)
        if function is not None:
            if "InputTransformer" in target:
                raise TemplateError(f"{where}: InputTransformer on a function target is not emulated")
            queue_name = stack.bounded_name(f"{stack.name}-rule-{logical_id}-{position}", max_length=80)
            queue_url, queue_arn, outcome = _ensure_queue(stack, queue_name, {})
            stack.record(f"{logical_id}[{position}]", "shadow queue", outcome, queue_url)
            moto_targets.append({"Id": target["Id"], "Arn": queue_arn})
            function_targets.append(
                RuleTargetSpec(
                    function=function,
                    input=target.get("Input"),
                    input_path=target.get("InputPath"),
                    shadow_queue_url=queue_url,
                )
            )
        elif stack.queue_for_arn(arn) is not None:
            moto_targets.append(target)
        else:
            raise TemplateError(
                f"{where}: only functions and queues of this template are emulated as targets, not {arn}"
            )
    if moto_targets:
        arguments = stack.api_arguments("events", "PutTargets", {"Targets": moto_targets}, logical_id)
        failed = events.put_targets(Rule=name, EventBusName=bus, **arguments).get("FailedEntries")
        if failed:
            raise ProvisionError(f"{logical_id}: moto rejected targets {failed}")
    if function_targets:
        stack.event_rules.append(
            EventRuleSpec(name=logical_id, bus_name=bus, pattern=pattern, function_targets=function_targets)
        )
    stack.record(logical_id, "AWS::Events::Rule", "applied", f"{bus}/{name}")


def _find_user_pool(cognito: Any, name: str) -> dict[str, Any] | None:
    for page in cognito.get_paginator("list_user_pools").paginate(MaxResults=60):
        for pool in page["UserPools"]:
            if pool["Name"] == name:
                found: dict[str, Any] = cognito.describe_user_pool(UserPoolId=pool["Id"])["UserPool"]
                return found
    return None


def _user_pool(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    name = properties.get("UserPoolName") or stack.generated_name(logical_id, max_length=128)
    cognito = stack.aws("cognito-idp")
    pool = _find_user_pool(cognito, name)
    if pool is None:
        values = {key: value for key, value in properties.items() if key != "UserPoolName"}
        if values.pop("LambdaConfig", None):
            logger.warning("%s: Cognito triggers (LambdaConfig) are not emulated locally", logical_id)
        arguments = stack.api_arguments("cognito-idp", "CreateUserPool", values, logical_id)
        pool = cognito.create_user_pool(PoolName=name, **arguments)["UserPool"]
        outcome = "created"
    else:
        outcome = "reused"
    pool_id = pool["Id"]
    stack.record(logical_id, "AWS::Cognito::UserPool", outcome, pool_id)
    provider = f"cognito-idp.{stack.region}.{stack.url_suffix}/{pool_id}"
    return PhysicalResource(
        "AWS::Cognito::UserPool",
        pool_id,
        {"Arn": pool["Arn"], "ProviderName": provider, "ProviderURL": f"https://{provider}", "UserPoolId": pool_id},
    )


def _user_pool_client(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    pool_id = _required(properties, "UserPoolId", logical_id)
    name = properties.get("ClientName") or stack.generated_name(logical_id, max_length=128)
    cognito = stack.aws("cognito-idp")
    client: dict[str, Any] | None = None
    for page in cognito.get_paginator("list_user_pool_clients").paginate(UserPoolId=pool_id, MaxResults=60):
        for summary in page["UserPoolClients"]:
            if summary["ClientName"] == name:
                client = cognito.describe_user_pool_client(UserPoolId=pool_id, ClientId=summary["ClientId"])[
                    "UserPoolClient"
                ]
    if client is None:
        values = {**properties, "ClientName": name}
        arguments = stack.api_arguments("cognito-idp", "CreateUserPoolClient", values, logical_id)
        client = cognito.create_user_pool_client(**arguments)["UserPoolClient"]
        outcome = "created"
    else:
        outcome = "reused"
    stack.record(logical_id, "AWS::Cognito::UserPoolClient", outcome, client["ClientId"])
    attrs = {"ClientId": client["ClientId"], "Name": name}
    if "ClientSecret" in client:
        attrs["ClientSecret"] = client["ClientSecret"]
    return PhysicalResource("AWS::Cognito::UserPoolClient", client["ClientId"], attrs)


def _user_pool_group(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    pool_id = _required(properties, "UserPoolId", logical_id)
    name = properties.get("GroupName") or stack.generated_name(logical_id, max_length=128)
    arguments = stack.api_arguments("cognito-idp", "CreateGroup", {**properties, "GroupName": name}, logical_id)
    try:
        stack.aws("cognito-idp").create_group(**arguments)
        outcome = "created"
    except ClientError as error:
        if _error_code(error) != "GroupExistsException":
            raise
        outcome = "reused"
    stack.record(logical_id, "AWS::Cognito::UserPoolGroup", outcome, f"{pool_id}/{name}")
    return PhysicalResource("AWS::Cognito::UserPoolGroup", name)


def _scheduler_schedule(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    """An EventBridge Scheduler schedule (SAM's ``ScheduleV2``): only recorded, the runtime fires it."""
    name = properties.get("Name") or stack.generated_name(logical_id, max_length=64)
    target = _required(properties, "Target", logical_id)
    stack.schedules.append(
        ScheduleSpec(
            name=logical_id,
            function=stack.function_for(
                _required(target, "Arn", logical_id), f"{logical_id} (only function targets of schedules run locally)"
            ),
            expression=_required(properties, "ScheduleExpression", logical_id),
            input=target.get("Input"),
            enabled=properties.get("State", "ENABLED") != "DISABLED",
        )
    )
    stack.record(logical_id, "AWS::Scheduler::Schedule", "scheduled", properties["ScheduleExpression"])
    group = properties.get("GroupName", "default")
    return PhysicalResource(
        "AWS::Scheduler::Schedule", name, {"Arn": stack.arn("scheduler", f"schedule/{group}/{name}")}
    )


# ====================================================================== control-plane resources (recorded)


def _lambda_layer(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    name = properties.get("LayerName") or stack.generated_name(logical_id, max_length=140)
    arn = stack.arn("lambda", f"layer:{name}:1")
    content = properties.get("Content", {})
    if content.get("S3Bucket") == LOCAL_CODE_BUCKET and content.get("S3Key") in stack.code_dirs:
        stack.layer_dirs[arn] = stack.code_dirs[content["S3Key"]]
    stack.record(logical_id, "AWS::Lambda::LayerVersion", "recorded", arn)
    return PhysicalResource("AWS::Lambda::LayerVersion", arn, {"LayerVersionArn": arn})


def _iam_role(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    name = properties.get("RoleName") or stack.generated_name(logical_id, max_length=64)
    arn = stack.arn("iam", f"role{properties.get('Path', '/')}{name}", regional=False)
    stack.record(logical_id, "AWS::IAM::Role", "recorded", name)
    return PhysicalResource(
        "AWS::IAM::Role", name, {"Arn": arn, "RoleId": "AROA" + stack.stable_id(logical_id, 17).upper()}
    )


def _api(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    api_id = stack.stable_id(logical_id)
    scheme = "wss" if properties.get("ProtocolType") == "WEBSOCKET" else "https"
    stack.record(logical_id, "AWS::ApiGatewayV2::Api", "recorded", api_id)
    return PhysicalResource(
        "AWS::ApiGatewayV2::Api",
        api_id,
        {"ApiId": api_id, "ApiEndpoint": f"{scheme}://{api_id}.execute-api.{stack.region}.{stack.url_suffix}"},
    )


def _api_stage(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
    name = _required(properties, "StageName", logical_id)
    stack.record(logical_id, "AWS::ApiGatewayV2::Stage", "recorded", name)
    return PhysicalResource("AWS::ApiGatewayV2::Stage", name)


def _named(
    resource_type: str, name_property: str, max_length: int, arn: Callable[[_Stack, str], str] | None = None
) -> Callable[[_Stack, str, dict[str, Any]], PhysicalResource]:
    """A recorder for resources whose ``Ref`` is their name: the template's, or a generated one."""

    def record(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
        name = properties.get(name_property) or stack.generated_name(logical_id, max_length=max_length)
        stack.record(logical_id, resource_type, "recorded", name)
        return PhysicalResource(resource_type, name, {"Arn": arn(stack, name)} if arn else {})

    return record


def _identified(resource_type: str, attribute: str) -> Callable[[_Stack, str, dict[str, Any]], PhysicalResource]:
    """A recorder for resources whose ``Ref`` is an opaque id (routes, permissions, ...)."""

    def record(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
        resource_id = stack.stable_id(logical_id)
        stack.record(logical_id, resource_type, "recorded", resource_id)
        return PhysicalResource(resource_type, resource_id, {attribute: resource_id})

    return record


def _recorded(resource_type: str, **attributes: str) -> Callable[[_Stack, str, dict[str, Any]], PhysicalResource]:
    """A recorder for resources with no local emulation whose part is played by something else: CloudFront
    (the local gateway serves the web client itself) and the OpenSearch domain (the functions use the
    embedded search engine, ``SEARCH_ENGINE=local``).

    ``attributes`` maps a ``GetAtt`` name to a format of the recorded id (e.g. the domain name).
    """

    def record(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> PhysicalResource:
        resource_id = stack.stable_id(logical_id).upper()
        stack.record(logical_id, resource_type, "recorded", resource_id)
        return PhysicalResource(resource_type, resource_id,
                                {name: fmt.format(id=resource_id, account=stack.account_id)
                                 for name, fmt in attributes.items()})

    return record


@dataclass(frozen=True)
class _Handler:
    """How one resource type is provisioned.

    ``inputs`` names the properties resolved before ``apply`` runs, and so the resources it must
    wait for; ``None`` means all of them (data-plane resources need their whole configuration).
    Recorded resources depend on their naming properties only, which is what lets a function's
    environment name an API whose routes name that function.
    """

    apply: Callable[[_Stack, str, dict[str, Any]], PhysicalResource]
    inputs: tuple[str, ...] | None = None


_HANDLERS: Final[Mapping[str, _Handler]] = {
    "AWS::DynamoDB::Table": _Handler(_dynamodb_table),
    "AWS::S3::Bucket": _Handler(_s3_bucket),
    "AWS::S3::BucketPolicy": _Handler(_unenforced_policy("AWS::S3::BucketPolicy"), inputs=()),
    "AWS::SQS::Queue": _Handler(_sqs_queue),
    "AWS::SQS::QueuePolicy": _Handler(_unenforced_policy("AWS::SQS::QueuePolicy"), inputs=()),
    "AWS::Events::EventBus": _Handler(_event_bus),
    "AWS::Events::Rule": _Handler(_event_rule),
    "AWS::Cognito::UserPool": _Handler(_user_pool),
    "AWS::Cognito::UserPoolClient": _Handler(_user_pool_client),
    "AWS::Cognito::UserPoolGroup": _Handler(_user_pool_group),
    "AWS::Scheduler::Schedule": _Handler(_scheduler_schedule),
    "AWS::Lambda::Function": _Handler(
        _named(
            "AWS::Lambda::Function", "FunctionName", 64, lambda stack, name: stack.arn("lambda", f"function:{name}")
        ),
        inputs=("FunctionName",),
    ),
    "AWS::Lambda::LayerVersion": _Handler(_lambda_layer, inputs=("LayerName", "Content")),
    "AWS::Lambda::Permission": _Handler(_identified("AWS::Lambda::Permission", "Id"), inputs=()),
    "AWS::CloudFront::Distribution": _Handler(
        _recorded("AWS::CloudFront::Distribution", Id="{id}", DomainName="{id}.cloudfront.net"), inputs=()),
    "AWS::CloudFront::OriginAccessControl": _Handler(
        _recorded("AWS::CloudFront::OriginAccessControl", Id="{id}"), inputs=()),
    "AWS::CloudFront::Function": _Handler(
        _recorded("AWS::CloudFront::Function",
                    FunctionARN="arn:aws:cloudfront::{account}:function/{id}"), inputs=()),
    "AWS::OpenSearchService::Domain": _Handler(
        _recorded("AWS::OpenSearchService::Domain", Arn="arn:aws:es:us-east-1:{account}:domain/{id}",
                  DomainArn="arn:aws:es:us-east-1:{account}:domain/{id}",
                  DomainEndpoint="search-{id}.us-east-1.es.amazonaws.com"), inputs=()),
    "AWS::Lambda::EventSourceMapping": _Handler(_identified("AWS::Lambda::EventSourceMapping", "Id"), inputs=()),
    "AWS::IAM::Role": _Handler(_iam_role, inputs=("RoleName", "Path")),
    "AWS::IAM::Policy": _Handler(_identified("AWS::IAM::Policy", "Id"), inputs=()),
    "AWS::Logs::LogGroup": _Handler(
        _named(
            "AWS::Logs::LogGroup", "LogGroupName", 512, lambda stack, name: stack.arn("logs", f"log-group:{name}:*")
        ),
        inputs=("LogGroupName",),
    ),
    "AWS::CloudWatch::Alarm": _Handler(
        _named(
            "AWS::CloudWatch::Alarm", "AlarmName", 255, lambda stack, name: stack.arn("cloudwatch", f"alarm:{name}")
        ),
        inputs=("AlarmName",),
    ),
    "AWS::CloudWatch::Dashboard": _Handler(
        _named("AWS::CloudWatch::Dashboard", "DashboardName", 255), inputs=("DashboardName",)
    ),
    "AWS::ApiGatewayV2::Api": _Handler(_api, inputs=("ProtocolType",)),
    "AWS::ApiGatewayV2::Stage": _Handler(_api_stage, inputs=("StageName",)),
    **{
        f"AWS::ApiGatewayV2::{kind}": _Handler(_identified(f"AWS::ApiGatewayV2::{kind}", f"{kind}Id"), inputs=())
        for kind in ("Route", "Integration", "Authorizer", "Deployment", "RouteResponse", "IntegrationResponse")
    },
}


def _handler_for(resource_type: str, logical_id: str) -> _Handler:
    if resource_type in _HANDLERS:
        return _HANDLERS[resource_type]
    if resource_type.startswith("AWS::CloudFront::"):
        return _Handler(_recorded(resource_type), inputs=())
    raise TemplateError(
        f"{logical_id}: resource type {resource_type} is not supported by the local stack "
        "(add a handler in scripts/localstack/provision.py)"
    )


def _provision_resources(stack: _Stack, resources: Mapping[str, Any]) -> None:
    """Create or record every resource whose Condition holds, each after what it depends on.

    Every type is checked before the first call to moto, so an unsupported template changes
    nothing.
    """
    included: dict[str, tuple[dict[str, Any], _Handler]] = {}
    for logical_id, resource in resources.items():
        condition = resource.get("Condition")
        if condition is not None and not stack.resolver.condition(condition):
            stack.resolver.excluded.add(logical_id)
            logger.debug("skipped %s: condition %s is false", logical_id, condition)
            continue
        properties = resource.get("Properties") or {}
        handler = _handler_for(resource["Type"], logical_id)
        inputs = properties if handler.inputs is None else {k: properties[k] for k in handler.inputs if k in properties}
        included[logical_id] = (inputs, handler)

    graph: TopologicalSorter[str] = TopologicalSorter()
    for logical_id, (inputs, handler) in included.items():
        dependencies = referenced_names(inputs)
        if handler.inputs is None:
            depends_on = resources[logical_id].get("DependsOn", [])
            dependencies |= {depends_on} if isinstance(depends_on, str) else set(depends_on)
        graph.add(logical_id, *sorted(dependencies & included.keys()))
    try:
        order = list(graph.static_order())
    except CycleError as error:
        raise TemplateError(f"circular dependency between resources: {' -> '.join(error.args[1])}") from None

    for logical_id in order:
        inputs, handler = included[logical_id]
        properties = stack.resolver.resolve(inputs, logical_id)
        with _moto_errors(f"{logical_id} ({resources[logical_id]['Type']})"):
            stack.resolver.resources[logical_id] = handler.apply(stack, logical_id, properties)


# ====================================================================== the manifest


def _build_manifest(stack: _Stack, resources: Mapping[str, Any], endpoint_url: str, base_dir: Path) -> Manifest:
    """Describe what the runtime must run, from the fully resolved properties of each resource."""
    resolved: dict[str, tuple[str, dict[str, Any]]] = {}

    def of_type(resource_type: str) -> list[tuple[str, dict[str, Any]]]:
        return [(logical_id, props) for logical_id, (kind, props) in resolved.items() if kind == resource_type]

    for logical_id, resource in resources.items():
        if logical_id in stack.resolver.resources:
            properties = stack.resolver.resolve(resource.get("Properties") or {}, logical_id)
            resolved[logical_id] = (resource["Type"], properties)

    functions = {
        logical_id: _function_spec(stack, logical_id, properties)
        for logical_id, properties in of_type("AWS::Lambda::Function")
    }
    http_authorizers: dict[str, HttpAuthorizerSpec] = {}
    http_routes: list[HttpRouteSpec] = []
    websocket_apis: list[str] = []
    for logical_id, properties in of_type("AWS::ApiGatewayV2::Api"):
        if properties.get("ProtocolType") == "WEBSOCKET":
            websocket_apis.append(logical_id)
        elif "Body" in properties:
            http_routes += _http_routes(stack, logical_id, properties["Body"], http_authorizers)
        else:
            raise TemplateError(
                f"{logical_id}: only HTTP APIs whose routes are in an inline OpenAPI Body "
                "(AWS::Serverless::HttpApi) are emulated"
            )
    if len(websocket_apis) > 1:
        raise TemplateError(f"the local gateway serves one WebSocket API, the template has {websocket_apis}")

    def by_api(resource_type: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        children: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for logical_id, properties in of_type(resource_type):
            api = stack.logical_id("AWS::ApiGatewayV2::Api", str(_required(properties, "ApiId", logical_id)))
            if api not in websocket_apis and resource_type != "AWS::ApiGatewayV2::Stage":
                raise TemplateError(
                    f"{logical_id}: {resource_type} resources are only emulated for WebSocket APIs; "
                    "declare HTTP routes as HttpApi events"
                )
            children.setdefault(str(api), []).append((logical_id, properties))
        return children

    children = {kind: by_api(f"AWS::ApiGatewayV2::{kind}") for kind in ("Route", "Integration", "Authorizer", "Stage")}
    websocket = (
        _websocket_api(stack, websocket_apis[0], resolved[websocket_apis[0]][1], children) if websocket_apis else None
    )
    records = stack.resolver.resources
    return Manifest(
        stack_name=stack.name,
        region=stack.region,
        account_id=stack.account_id,
        endpoint_url=endpoint_url,
        repo_root=str(base_dir),
        resources={
            logical_id: {
                "type": record.type,
                "ref": record.ref,
                **({"arn": record.attrs["Arn"]} if "Arn" in record.attrs else {}),
                "attrs": dict(record.attrs),
            }
            for logical_id, record in records.items()
        },
        functions=functions,
        http_authorizers=http_authorizers,
        http_routes=http_routes,
        websocket=websocket,
        event_source_mappings=[
            _event_source_mapping(stack, logical_id, properties)
            for logical_id, properties in of_type("AWS::Lambda::EventSourceMapping")
        ],
        schedules=stack.schedules,
        event_rules=stack.event_rules,
        tables=_refs_of(records, "AWS::DynamoDB::Table"),
        buckets=_refs_of(records, "AWS::S3::Bucket"),
        queues=_refs_of(records, "AWS::SQS::Queue"),
        user_pools=_refs_of(records, "AWS::Cognito::UserPool"),
        user_pool_clients=_refs_of(records, "AWS::Cognito::UserPoolClient"),
    )


def _refs_of(records: Mapping[str, PhysicalResource], resource_type: str) -> dict[str, str]:
    return {logical_id: record.ref for logical_id, record in records.items() if record.type == resource_type}


def _function_spec(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> FunctionSpec:
    if properties.get("PackageType", "Zip") != "Zip":
        raise TemplateError(f"{logical_id}: container image functions are not emulated")
    runtime = str(properties.get("Runtime", ""))
    if not runtime.startswith("python"):
        raise TemplateError(f"{logical_id}: runtime {runtime or '(none)'} is not emulated; only Python runs locally")
    code = properties.get("Code", {})
    code_dir = stack.code_dirs.get(code.get("S3Key", "")) if code.get("S3Bucket") == LOCAL_CODE_BUCKET else None
    if code_dir is None:
        raise TemplateError(f"{logical_id}: its code must be a local folder (CodeUri), not {code}")
    layer_dirs = []
    for layer in properties.get("Layers", []):
        if layer in stack.layer_dirs:
            layer_dirs.append(str(stack.layer_dirs[layer]))
        else:
            logger.warning(
                "%s: layer %s is not built from this template; its code is not available locally", logical_id, layer
            )
    variables = properties.get("Environment", {}).get("Variables", {})
    record = stack.resolver.resources[logical_id]
    reserved = properties.get("ReservedConcurrentExecutions")
    return FunctionSpec(
        logical_id=logical_id,
        name=record.ref,
        arn=record.attrs["Arn"],
        code_dir=str(code_dir),
        handler=str(_required(properties, "Handler", logical_id)),
        layer_dirs=layer_dirs,
        environment={name: scalar_text(value, f"{logical_id} variable {name}") for name, value in variables.items()},
        timeout=int(properties.get("Timeout", 3)),
        memory=int(properties.get("MemorySize", 128)),
        reserved_concurrency=None if reserved is None else int(reserved),
    )


def _identity_sources(value: Any) -> list[str]:
    """Identity sources are a list, a comma-separated string, or absent."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    return [str(item).strip() for item in items if str(item).strip()]


def _http_routes(
    stack: _Stack, api: str, body: dict[str, Any], authorizers: dict[str, HttpAuthorizerSpec]
) -> list[HttpRouteSpec]:
    """Routes of an HTTP API from its OpenAPI body, where SAM puts HttpApi events.

    A route is public when its ``security`` (or the document's) names no scheme other than SAM's
    ``NONE`` placeholder; otherwise it names one Lambda authorizer, added to ``authorizers``.
    """
    schemes = body.get("components", {}).get("securitySchemes", {})
    routes: list[HttpRouteSpec] = []
    for path, operations in body.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in _HTTP_METHODS:
                continue
            where = f"{api} {method.upper()} {path}"
            integration = _required(operation, "x-amazon-apigateway-integration", where)
            if str(integration.get("type", "")).lower() != "aws_proxy":
                raise TemplateError(f"{where}: only Lambda proxy integrations are emulated")
            if str(integration.get("payloadFormatVersion")) != "2.0":
                raise TemplateError(f"{where}: only payload format 2.0 is emulated")
            names = {
                name
                for requirement in operation.get("security", body.get("security")) or []
                for name in requirement
                if name != "NONE"
            }
            if len(names) > 1:
                raise TemplateError(f"{where}: a route has at most one authorizer, not {sorted(names)}")
            authorizer = names.pop() if names else None
            if authorizer is not None:
                spec = _http_authorizer(stack, f"{api} authorizer {authorizer}", authorizer, schemes.get(authorizer))
                if authorizers.setdefault(authorizer, spec) != spec:
                    raise TemplateError(f"{where}: two different authorizers are named {authorizer}")
            verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
            routes.append(
                HttpRouteSpec(
                    route_key="$default" if path == "$default" else f"{verb} {path}",
                    method=verb,
                    path=path,
                    function=stack.function_for(_required(integration, "uri", where), where),
                    authorizer=authorizer,
                )
            )
    return routes


def _http_authorizer(stack: _Stack, where: str, name: str, scheme: Any) -> HttpAuthorizerSpec:
    config = (scheme or {}).get("x-amazon-apigateway-authorizer")
    if config is None:
        raise TemplateError(f"{where}: only Lambda authorizers are emulated (IAM auth is not)")
    if config.get("type") != "request":
        raise TemplateError(f"{where}: {config.get('type')} authorizers are not emulated, only Lambda (request) ones")
    version = str(config.get("authorizerPayloadFormatVersion"))
    if version not in ("1.0", "2.0"):
        raise TemplateError(f"{where}: authorizerPayloadFormatVersion must be 1.0 or 2.0, not {version}")
    return HttpAuthorizerSpec(
        name=name,
        function=stack.function_for(_required(config, "authorizerUri", where), where),
        payload_format_version="2.0" if version == "2.0" else "1.0",
        simple_responses=_enabled(config.get("enableSimpleResponses", False)),
        identity_sources=_identity_sources(config.get("identitySource")),
        result_ttl=int(config.get("authorizerResultTtlInSeconds", 0)),
    )


def _websocket_api(
    stack: _Stack,
    api: str,
    properties: dict[str, Any],
    children: Mapping[str, Mapping[str, list[tuple[str, dict[str, Any]]]]],
) -> WebSocketApiSpec:
    """A WebSocket API from its Route, Integration, Authorizer and Stage resources."""
    stages = children["Stage"].get(api, [])
    if len(stages) != 1:
        raise TemplateError(f"{api}: a WebSocket API needs exactly one Stage, found {len(stages)}")
    integrations = {}
    for logical_id, integration in children["Integration"].get(api, []):
        if integration.get("IntegrationType") != "AWS_PROXY":
            raise TemplateError(f"{logical_id}: only AWS_PROXY (Lambda) integrations are emulated")
        integrations[stack.resolver.resources[logical_id].ref] = stack.function_for(
            _required(integration, "IntegrationUri", logical_id), logical_id
        )
    authorizers: dict[str, WebSocketAuthorizerSpec] = {}
    for logical_id, authorizer in children["Authorizer"].get(api, []):
        if authorizer.get("AuthorizerType") != "REQUEST":
            raise TemplateError(f"{logical_id}: only REQUEST (Lambda) authorizers are emulated")
        authorizers[stack.resolver.resources[logical_id].ref] = WebSocketAuthorizerSpec(
            name=str(_required(authorizer, "Name", logical_id)),
            function=stack.function_for(_required(authorizer, "AuthorizerUri", logical_id), logical_id),
            identity_sources=_identity_sources(authorizer.get("IdentitySource")),
        )
    routes: list[WebSocketRouteSpec] = []
    for logical_id, route in children["Route"].get(api, []):
        target = str(_required(route, "Target", logical_id))
        integration_id = target.removeprefix("integrations/")
        if integration_id not in integrations:
            raise TemplateError(f"{logical_id}: target {target} is not an integration of {api}")
        authorization = route.get("AuthorizationType", "NONE")
        if authorization not in ("NONE", "CUSTOM"):
            raise TemplateError(f"{logical_id}: authorization {authorization} is not emulated")
        authorizer_name = None
        if authorization == "CUSTOM":
            authorizer_id = str(_required(route, "AuthorizerId", logical_id))
            if authorizer_id not in authorizers:
                raise TemplateError(f"{logical_id}: authorizer {authorizer_id} is not an authorizer of {api}")
            authorizer_name = authorizers[authorizer_id]["name"]
        routes.append(
            WebSocketRouteSpec(
                route_key=str(_required(route, "RouteKey", logical_id)),
                function=integrations[integration_id],
                authorizer=authorizer_name,
            )
        )
    return WebSocketApiSpec(
        logical_id=api,
        api_id=stack.resolver.resources[api].ref,
        stage=stack.resolver.resources[stages[0][0]].ref,
        route_selection_expression=properties.get("RouteSelectionExpression", "$request.body.action"),
        routes=routes,
        authorizers=list(authorizers.values()),
    )


def _event_source_mapping(stack: _Stack, logical_id: str, properties: dict[str, Any]) -> EventSourceMappingSpec:
    source = str(_required(properties, "EventSourceArn", logical_id))
    queue = stack.queue_for_arn(source)
    if queue is None:
        raise TemplateError(
            f"{logical_id}: only SQS queues of this template are emulated as event sources, not {source}"
        )
    if "FilterCriteria" in properties:
        raise TemplateError(f"{logical_id}: FilterCriteria on event sources is not emulated")
    return EventSourceMappingSpec(
        function=stack.function_for(_required(properties, "FunctionName", logical_id), logical_id),
        queue_arn=source,
        queue_url=queue.attrs["QueueUrl"],
        batch_size=int(properties.get("BatchSize", 10)),
        batching_window_seconds=int(properties.get("MaximumBatchingWindowInSeconds", 0)),
        report_batch_item_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
        maximum_concurrency=(
            int(properties["ScalingConfig"]["MaximumConcurrency"])
            if "MaximumConcurrency" in properties.get("ScalingConfig", {})
            else None
        ),
        enabled=_enabled(properties.get("Enabled", True)),
    )


# ====================================================================== saved state


def save_state(manifest: Manifest, state_dir: Path, *, journal_sequence: int = 0) -> None:
    """Save every table's items and every bucket's objects under ``state_dir``.

    ``journal_sequence`` is the journal's last sequence number when the reading began: a restore
    replays the journal's records after it (see ``journal.py``).

    Layout: ``snapshot-<ns>/tables/<LogicalId>.json`` (DynamoDB JSON, binary values in base64)
    and ``snapshot-<ns>/buckets/<LogicalId>/{index.json,objects/<n>}``, keyed by logical id so a
    snapshot survives a change of physical names.  The snapshot is written in full before the
    ``CURRENT`` file is atomically replaced to point at it, so a crash or Ctrl-C mid-save leaves
    the previous snapshot in force.  Only the latest version of each object is kept; Cognito users
    are not saved (the runtime seeds them).

    Speed is bounded by moto, not by this client: a scanned item costs about 1 ms in moto's
    response serializer (threads do not help, the server is one Python process), so tables are
    read in full each time; objects cost 10-20 ms each, so only new or changed ones are downloaded.
    """
    with _STATE_LOCK:
        _save_snapshot(manifest, state_dir, journal_sequence)


def _save_snapshot(manifest: Manifest, state_dir: Path, journal_sequence: int) -> None:
    started = time.perf_counter()
    aws = _Aws(manifest["endpoint_url"], manifest["region"])
    state_dir.mkdir(parents=True, exist_ok=True)
    snapshot = state_dir / f"{_SNAPSHOT_PREFIX}{time.time_ns()}"
    previous = _current_snapshot(state_dir)
    items = objects = 0
    try:
        for logical_id, table in manifest["tables"].items():
            with _moto_errors(f"saving table {logical_id} ({table})"):
                items += _save_table(aws("dynamodb"), table, snapshot / "tables" / f"{logical_id}.json")
        for logical_id, bucket in manifest["buckets"].items():
            with _moto_errors(f"saving bucket {logical_id} ({bucket})"):
                earlier = previous / "buckets" / logical_id if previous else None
                objects += _save_bucket(aws("s3"), bucket, snapshot / "buckets" / logical_id, earlier)
        (snapshot / _SNAPSHOT_JOURNAL).write_text(json.dumps({"after": journal_sequence}))
    except BaseException:
        shutil.rmtree(snapshot, ignore_errors=True)
        raise
    pointer = state_dir / _CURRENT_SNAPSHOT
    partial = pointer.with_name(f"{pointer.name}.{os.getpid()}.tmp")
    partial.write_text(snapshot.name)
    partial.replace(pointer)
    for stale in state_dir.glob(f"{_SNAPSHOT_PREFIX}*"):  # older snapshots, or partial ones of a crash
        if stale != snapshot:
            shutil.rmtree(stale, ignore_errors=True)
    logger.info(
        "saved %d items of %d tables and %d objects of %d buckets to %s in %d ms",
        items,
        len(manifest["tables"]),
        objects,
        len(manifest["buckets"]),
        snapshot,
        (time.perf_counter() - started) * 1000,
    )


def restore_state(manifest: Manifest, state_dir: Path) -> int:
    """Put the items and objects of the current snapshot back into the manifest's tables and buckets.

    Tables and buckets that the template no longer declares are skipped with a warning; a missing
    snapshot means a clean start.  Returns the journal sequence number the snapshot covers (0 for
    none, or for a snapshot older than the journal): replay the journal after it.
    """
    with _STATE_LOCK:
        return _restore_snapshot(manifest, state_dir)


def replay_journal(manifest: Manifest, journal_dir: Path, *, after: int) -> int:
    """Apply the last image of every item and object the journal has after ``after``; its last number.

    Keyed by physical names (what moto saw): an image of a table or bucket the template no longer
    declares under that name is skipped with a warning.
    """
    started = time.perf_counter()
    replay = journal.latest_images(journal_dir, after)
    if not replay.images:
        return replay.last_sequence
    aws = _Aws(manifest["endpoint_url"], manifest["region"])
    tables, buckets = set(manifest["tables"].values()), set(manifest["buckets"].values())
    by_table: dict[str, list[dict[str, Any]]] = {}
    objects: list[journal.ObjectImage] = []
    skipped: Counter[str] = Counter()
    for image in replay.images:
        if isinstance(image, journal.ItemImage):
            if image.table not in tables:
                skipped[image.table] += 1
            elif image.item is None:
                key = _map_binary(image.key, base64.b64decode)
                by_table.setdefault(image.table, []).append({"DeleteRequest": {"Key": key}})
            else:
                item = _map_binary(image.item, base64.b64decode)
                by_table.setdefault(image.table, []).append({"PutRequest": {"Item": item}})
        elif image.bucket not in buckets:
            skipped[image.bucket] += 1
        else:
            objects.append(image)
    for name, count in skipped.items():
        logger.warning("the journal holds %d writes to %s, which the template no longer declares: skipped", count, name)
    for table, requests in by_table.items():
        with _moto_errors(f"replaying the journal into table {table}"):
            _write_requests(aws("dynamodb"), table, requests)

    s3 = aws("s3")  # created here: making clients is not thread-safe, using one is

    def put_or_delete(image: journal.ObjectImage) -> None:
        if image.body is None:
            s3.delete_object(Bucket=image.bucket, Key=image.key)
            return
        extra = {"ContentType": image.content_type} if image.content_type else {}
        s3.put_object(Bucket=image.bucket, Key=image.key, Body=image.body, Metadata=image.metadata, **extra)

    with _moto_errors("replaying the journal into S3"):
        _run_concurrently(put_or_delete, objects)
    logger.info(
        "replayed %d journal records after the snapshot (%d items, %d objects) in %d ms",
        replay.records,
        sum(len(requests) for requests in by_table.values()),
        len(objects),
        (time.perf_counter() - started) * 1000,
    )
    return replay.last_sequence


def _current_snapshot(state_dir: Path) -> Path | None:
    """The snapshot ``CURRENT`` names, if there is one."""
    pointer = state_dir / _CURRENT_SNAPSHOT
    if not pointer.is_file():
        return None
    snapshot = state_dir / pointer.read_text().strip()
    if not snapshot.is_dir():
        logger.warning("%s names %s, which is missing", pointer, snapshot.name)
        return None
    return snapshot


def _restore_snapshot(manifest: Manifest, state_dir: Path) -> int:
    started = time.perf_counter()
    snapshot = _current_snapshot(state_dir)
    if snapshot is None:
        logger.info("no saved state in %s: starting clean", state_dir)
        return 0
    aws = _Aws(manifest["endpoint_url"], manifest["region"])
    items = objects = 0
    for path in sorted((snapshot / "tables").glob("*.json")):
        table = manifest["tables"].get(path.stem)
        if table is None:
            logger.warning("saved table %s is no longer in the template: not restored", path.stem)
            continue
        saved = json.loads(path.read_text())["items"]
        with _moto_errors(f"restoring table {path.stem} ({table})"):
            _write_items(aws("dynamodb"), table, [_map_binary(item, base64.b64decode) for item in saved])
        items += len(saved)
    buckets = snapshot / "buckets"
    for directory in sorted(buckets.iterdir()) if buckets.is_dir() else []:
        bucket = manifest["buckets"].get(directory.name)
        if bucket is None:
            logger.warning("saved bucket %s is no longer in the template: not restored", directory.name)
            continue
        with _moto_errors(f"restoring bucket {directory.name} ({bucket})"):
            objects += _restore_bucket(aws("s3"), bucket, directory)
    logger.info(
        "restored %d items and %d objects from %s in %d ms",
        items,
        objects,
        snapshot,
        (time.perf_counter() - started) * 1000,
    )
    marker = snapshot / _SNAPSHOT_JOURNAL
    return int(json.loads(marker.read_text())["after"]) if marker.is_file() else 0


def _map_binary(item: Mapping[str, Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    """Apply ``convert`` to every binary (B, BS) value of a DynamoDB-JSON item, at any depth.

    boto3 returns binary values as ``bytes``, which JSON cannot hold: they are saved as base64.
    """

    def value(attribute: Mapping[str, Any]) -> dict[str, Any]:
        ((kind, inner),) = attribute.items()
        if kind == "B":
            return {"B": convert(inner)}
        if kind == "BS":
            return {"BS": [convert(element) for element in inner]}
        if kind == "M":
            return {"M": {key: value(element) for key, element in inner.items()}}
        if kind == "L":
            return {"L": [value(element) for element in inner]}
        return dict(attribute)

    return {name: value(attribute) for name, attribute in item.items()}


def _to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _save_table(dynamodb: Any, table: str, path: Path) -> int:
    pages = dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    items = [_map_binary(item, _to_base64) for page in pages for item in page["Items"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"table": table, "items": items}, separators=(",", ":")))
    return len(items)


def _write_items(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> None:
    _write_requests(dynamodb, table, [{"PutRequest": {"Item": item}} for item in items])


def _write_requests(dynamodb: Any, table: str, requests: list[dict[str, Any]]) -> None:
    """BatchWriteItem requests (puts and deletes of distinct keys), 25 at a time, a few batches at once."""

    def write(batch: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {table: batch}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    batches = [requests[start : start + _BATCH_WRITE_LIMIT] for start in range(0, len(requests), _BATCH_WRITE_LIMIT)]
    _run_concurrently(write, batches)


def _save_bucket(s3: Any, bucket: str, directory: Path, previous: Path | None) -> int:
    """Save the latest version of every object, reusing the previous snapshot's copy when unchanged.

    moto answers a GetObject in 10-20 ms, and most objects (git packs, exports) never change, so an
    object whose ETag and LastModified match the previous snapshot is hard-linked from it (snapshots
    are never modified once written) instead of downloaded again.
    """
    listed = [
        (entry["Key"], entry["ETag"], entry["LastModified"].isoformat())
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for entry in page.get("Contents", [])
    ]
    unchanged: dict[tuple[str, str, str], dict[str, Any]] = {}
    if previous is not None and (previous / "index.json").is_file():
        for entry in json.loads((previous / "index.json").read_text())["objects"]:
            unchanged[(entry["key"], entry["etag"], entry["last_modified"])] = entry
    (directory / "objects").mkdir(parents=True, exist_ok=True)

    def save(numbered: tuple[int, tuple[str, str, str]]) -> dict[str, Any]:
        number, (key, etag, last_modified) = numbered
        target = directory / "objects" / str(number)
        if (kept := unchanged.get((key, etag, last_modified))) is not None and previous is not None:
            _link_or_copy(previous / "objects" / kept["file"], target)
            return {**kept, "file": target.name}
        response = s3.get_object(Bucket=bucket, Key=key)
        target.write_bytes(response["Body"].read())
        return {
            "key": key,
            "etag": etag,
            "last_modified": last_modified,
            "file": target.name,
            "content_type": response.get("ContentType"),
            "metadata": response.get("Metadata", {}),
        }

    index = _run_concurrently(save, list(enumerate(listed)))
    (directory / "index.json").write_text(json.dumps({"bucket": bucket, "objects": index}))
    return len(index)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, target)


def _restore_bucket(s3: Any, bucket: str, directory: Path) -> int:
    index: list[dict[str, Any]] = json.loads((directory / "index.json").read_text())["objects"]

    def put(entry: dict[str, Any]) -> None:
        extra = {"ContentType": entry["content_type"]} if entry.get("content_type") else {}
        s3.put_object(
            Bucket=bucket,
            Key=entry["key"],
            Body=(directory / "objects" / entry["file"]).read_bytes(),
            Metadata=entry.get("metadata") or {},
            **extra,
        )

    _run_concurrently(put, index)
    return len(index)


def _run_concurrently[T, R](work: Callable[[T], R], inputs: Iterable[T]) -> list[R]:
    """Requests to moto are independent and latency-bound: a few threads make thousands quick."""
    with ThreadPoolExecutor(max_workers=_IO_THREADS) as pool:
        return list(pool.map(work, inputs))
