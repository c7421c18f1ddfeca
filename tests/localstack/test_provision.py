"""The provisioner against a real moto server: template.yaml, small synthetic templates, saved state."""

from __future__ import annotations

import base64
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import boto3
import pytest
from samtranslator.yaml_helper import yaml_parse

from scripts.localstack.intrinsics import PhysicalResource, Resolver, TemplateError
from scripts.localstack.manifest import Manifest
from scripts.localstack.provision import ProvisionError, provision, restore_state, save_state

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"
REGION = "us-east-1"


def aws(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def declared(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource.get("Properties", {})
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    return parsed


@pytest.fixture(scope="module")
def manifest(moto_endpoint: str) -> Manifest:
    return provision(TEMPLATE, moto_endpoint)


# ---------------------------------------------------------------------- template.yaml: data plane


def test_every_table_has_exactly_the_declared_keys_indexes_and_ttl(
    manifest: Manifest, template: dict[str, Any], moto_endpoint: str
) -> None:
    dynamodb = aws(moto_endpoint, "dynamodb")
    tables = declared(template, "AWS::DynamoDB::Table")
    assert set(manifest["tables"]) == set(tables)

    def indexes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
        return {index["IndexName"]: (index["KeySchema"], index["Projection"]) for index in items or []}

    for logical_id, properties in tables.items():
        table = dynamodb.describe_table(TableName=manifest["tables"][logical_id])["Table"]
        assert table["KeySchema"] == properties["KeySchema"], logical_id
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(properties["AttributeDefinitions"], key=str)
        assert indexes(table.get("GlobalSecondaryIndexes")) == indexes(properties.get("GlobalSecondaryIndexes"))
        assert table["BillingModeSummary"]["BillingMode"] == properties["BillingMode"]
        ttl = dynamodb.describe_time_to_live(TableName=table["TableName"])["TimeToLiveDescription"]
        if "TimeToLiveSpecification" in properties:
            assert ttl == {
                "TimeToLiveStatus": "ENABLED",
                "AttributeName": properties["TimeToLiveSpecification"]["AttributeName"],
            }
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"

    members = dynamodb.describe_table(TableName=manifest["tables"]["MembersTable"])["Table"]
    assert members["GlobalSecondaryIndexes"][0]["IndexName"] == "by_user"
    assert [key["AttributeName"] for key in members["GlobalSecondaryIndexes"][0]["KeySchema"]] == ["username", "prd_id"]
    revocations = dynamodb.describe_time_to_live(TableName=manifest["tables"]["RevocationsTable"])
    assert revocations["TimeToLiveDescription"]["AttributeName"] == "expires_at"


def test_queues_redrive_to_their_dead_letter_queues(manifest: Manifest, moto_endpoint: str) -> None:
    sqs = aws(moto_endpoint, "sqs")
    for queue, dead_letters in (("DocWriteQueue", "DocWriteDLQ"), ("AuditQueue", "AuditDLQ")):
        attributes = sqs.get_queue_attributes(QueueUrl=manifest["queues"][queue], AttributeNames=["All"])["Attributes"]
        dlq = sqs.get_queue_attributes(QueueUrl=manifest["queues"][dead_letters], AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq["QueueArn"] == manifest["resources"][dead_letters]["arn"]
        assert int(redrive["maxReceiveCount"]) == 5
        assert attributes["VisibilityTimeout"] == "180"
        assert dlq["MessageRetentionPeriod"] == "1209600"


def test_bus_and_bucket_exist_with_their_settings(manifest: Manifest, moto_endpoint: str) -> None:
    bus = aws(moto_endpoint, "events").describe_event_bus(Name="prdtool-local")
    assert manifest["resources"]["EventBus"]["arn"] == bus["Arn"]

    s3 = aws(moto_endpoint, "s3")
    bucket = manifest["buckets"]["DocumentsBucket"]
    assert bucket == "prdtool-local-documentsbucket"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    rules = {rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["expire-exports"]["Expiration"] == {"Days": 1}
    assert rules["expire-exports"]["Filter"] == {"Prefix": "exports/"}
    assert rules["old-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # Not applied: moto would enforce its Deny statement on every object, ignoring the Condition.
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="probe", Body=b"ok")
    assert s3.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"ok"
    s3.delete_object(Bucket=bucket, Key="probe")


def test_cognito_accepts_the_demo_password_and_issues_tokens(manifest: Manifest, moto_endpoint: str) -> None:
    cognito = aws(moto_endpoint, "cognito-idp")
    pool_id = manifest["user_pools"]["UserPool"]
    client_id = manifest["user_pool_clients"]["UserPoolClient"]
    policy = cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] == 12
    assert policy["RequireUppercase"] is False
    client = cognito.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)["UserPoolClient"]
    assert set(client["ExplicitAuthFlows"]) == {"ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"}
    assert "ClientSecret" not in client
    assert [group["GroupName"] for group in cognito.list_groups(UserPoolId=pool_id)["Groups"]] == ["admins"]

    cognito.admin_create_user(UserPoolId=pool_id, Username="provision-test", MessageAction="SUPPRESS")
    try:
        cognito.admin_set_user_password(
            UserPoolId=pool_id, Username="provision-test", Password="demo-password", Permanent=True
        )
        tokens = cognito.initiate_auth(
            ClientId=client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": "provision-test", "PASSWORD": "demo-password"},
        )["AuthenticationResult"]
    finally:
        cognito.admin_delete_user(UserPoolId=pool_id, Username="provision-test")
    assert tokens["RefreshToken"]
    payload = tokens["AccessToken"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    environment = manifest["functions"]["AuthFunction"]["environment"]
    assert claims["iss"] == environment["AUTH_ISSUER"] == f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}"
    assert claims["client_id"] == environment["AUTH_AUDIENCE"] == client_id


def test_schedule_rules_are_not_created_in_moto(manifest: Manifest, moto_endpoint: str) -> None:
    rules = aws(moto_endpoint, "events").list_rules()["Rules"]
    assert manifest["resources"]["MaintenanceFunctionDaily"]["ref"] not in {rule["Name"] for rule in rules}


# ---------------------------------------------------------------------- template.yaml: manifest


def test_every_function_has_its_code_handler_layers_and_resolved_environment(
    manifest: Manifest, template: dict[str, Any]
) -> None:
    functions = declared(template, "AWS::Serverless::Function")
    function_globals = template["Globals"]["Function"]
    layers = declared(template, "AWS::Serverless::LayerVersion")
    expected_layers = [str(REPO_ROOT / layers[ref["Ref"]]["ContentUri"]) for ref in function_globals["Layers"]]
    assert set(manifest["functions"]) == set(functions)
    pool_id = manifest["user_pools"]["UserPool"]
    for logical_id, properties in functions.items():
        spec = manifest["functions"][logical_id]
        assert spec["code_dir"] == str(REPO_ROOT / properties["CodeUri"])
        assert spec["handler"] == properties["Handler"]
        own_layers = [str(REPO_ROOT / layers[ref["Ref"]]["ContentUri"]) for ref in properties.get("Layers", [])]
        assert spec["layer_dirs"] == expected_layers + own_layers  # SAM appends a function's own layers
        assert spec["timeout"] == properties.get("Timeout", function_globals["Timeout"])
        assert spec["memory"] == properties.get("MemorySize", function_globals["MemorySize"])
        assert spec["name"] == f"prdtool-local-{logical_id}"
        assert spec["arn"] == f"arn:aws:lambda:{REGION}:123456789012:function:prdtool-local-{logical_id}"
        environment = spec["environment"]
        own_variables = properties.get("Environment", {}).get("Variables", {})
        assert set(environment) == set(function_globals["Environment"]["Variables"]) | set(own_variables)
        assert all(isinstance(value, str) for value in environment.values())
        assert environment["STAGE"] == "local"
        assert environment["MAX_BODY_BYTES"] == own_variables.get("MAX_BODY_BYTES", "2097152")
        assert environment["PRDS_TABLE"] == manifest["tables"]["PrdsTable"] == "prdtool-local-PrdsTable"
        assert environment["DOCS_TABLE"] == manifest["tables"]["DocsTable"]
        assert environment["DOCUMENTS_BUCKET"] == manifest["buckets"]["DocumentsBucket"]
        assert environment["DOC_WRITE_QUEUE_URL"] == manifest["queues"]["DocWriteQueue"]
        assert environment["EVENT_BUS_NAME"] == "prdtool-local"
        assert environment["USER_POOL_ID"] == pool_id
        assert environment["AUTH_ISSUER"] == f"https://cognito-idp.us-east-1.amazonaws.com/{pool_id}"

    assert manifest["functions"]["MaintenanceFunction"]["timeout"] == 300
    assert manifest["functions"]["AuthorizerFunction"]["memory"] == 256
    websocket_api = manifest["resources"]["WebSocketApi"]["ref"]
    health = manifest["functions"]["HealthFunction"]["environment"]
    assert health["PUBLIC_WS_URL"] == f"wss://{websocket_api}.execute-api.us-east-1.amazonaws.com/local"


def test_every_http_route_has_its_function_and_authorizer(manifest: Manifest, template: dict[str, Any]) -> None:
    expected = {}
    for logical_id, properties in declared(template, "AWS::Serverless::Function").items():
        for event in properties.get("Events", {}).values():
            if event["Type"] == "HttpApi":
                route = event["Properties"]
                public = route.get("Auth", {}).get("Authorizer") == "NONE"
                expected[f"{route['Method']} {route['Path']}"] = (logical_id, None if public else "TokenAuthorizer")
    routes = {route["route_key"]: (route["function"], route["authorizer"]) for route in manifest["http_routes"]}
    assert len(routes) == len(manifest["http_routes"])
    assert routes == expected
    for public in ("POST /api/auth/login", "POST /api/auth/refresh", "GET /api/health", "GET /api/config"):
        assert routes[public][1] is None
    assert routes["PUT /api/prds/{id}/members/{username}"] == ("PrdsFunction", "TokenAuthorizer")
    assert routes["POST /api/auth/logout"] == ("AuthFunction", "TokenAuthorizer")
    route = next(route for route in manifest["http_routes"] if route["route_key"] == "GET /api/prds/{id}")
    assert route["method"] == "GET"
    assert route["path"] == "/api/prds/{id}"
    assert manifest["http_authorizers"] == {
        "TokenAuthorizer": {
            "name": "TokenAuthorizer",
            "function": "AuthorizerFunction",
            "payload_format_version": "2.0",
            "simple_responses": True,
            "identity_sources": [],
            "result_ttl": 0,
        }
    }


def test_websocket_api_routes_and_authorizer(manifest: Manifest) -> None:
    websocket = manifest["websocket"]
    assert websocket is not None
    assert websocket["logical_id"] == "WebSocketApi"
    assert websocket["api_id"] == manifest["resources"]["WebSocketApi"]["ref"]
    assert websocket["stage"] == "local"
    assert websocket["route_selection_expression"] == "$request.body.action"
    assert sorted(websocket["routes"], key=lambda route: route["route_key"]) == [
        {"route_key": "$connect", "function": "WebSocketFunction", "authorizer": "TokenAuthorizer"},
        {"route_key": "$default", "function": "WebSocketFunction", "authorizer": None},
        {"route_key": "$disconnect", "function": "WebSocketFunction", "authorizer": None},
    ]
    assert websocket["authorizers"] == [
        {
            "name": "TokenAuthorizer",
            "function": "AuthorizerFunction",
            "identity_sources": ["route.request.querystring.token"],
        }
    ]
    callback = manifest["functions"]["WebSocketFunction"]["environment"]["WEBSOCKET_CALLBACK_URL"]
    assert callback == f"https://{websocket['api_id']}.execute-api.us-east-1.amazonaws.com/local"


def test_maintenance_runs_daily_with_its_input(manifest: Manifest) -> None:
    assert manifest["schedules"] == [
        {
            "name": "MaintenanceFunctionDaily",
            "function": "MaintenanceFunction",
            "expression": "rate(1 day)",
            "input": '{"task": "gc"}',
            "enabled": True,
        }
    ]
    # The bus's rules (issue #14): saved content becomes versions; a version is tidied up after and
    # pushed to the PRD's remote.
    rules = {rule["name"]: rule for rule in manifest["event_rules"]}
    assert {name: (rule["pattern"], [t["function"] for t in rule["function_targets"]])
            for name, rule in rules.items()} == {
        "VersionFunctionContentSaved": ({"source": ["prdtool"], "detail-type": ["prd.created", "prd.updated"]},
                                        ["VersionFunction"]),
        "VersionFunctionVersionMade": ({"source": ["prdtool"], "detail-type": ["prd.version.created"]},
                                       ["VersionFunction"]),
        "GitPushFunctionPushable": ({"source": ["prdtool"], "detail-type": [
            "prd.version.created", "prd.remote.changed", "prd.remote.push_requested"]},
                                    ["GitPushFunction"]),
    }


def test_the_write_queue_feeds_the_doc_writer(manifest: Manifest) -> None:
    (mapping,) = [m for m in manifest["event_source_mappings"] if m["function"] == "DocWriterFunction"]
    assert mapping["queue_url"] == manifest["queues"]["DocWriteQueue"]
    assert mapping["queue_url"].endswith(".fifo")
    assert (mapping["batch_size"], mapping["report_batch_item_failures"], mapping["enabled"]) == (10, True, True)


def test_the_audit_queue_feeds_the_audit_writer_in_batches(manifest: Manifest) -> None:
    (mapping,) = [m for m in manifest["event_source_mappings"] if m["function"] == "AuditWriterFunction"]
    assert mapping["queue_url"] == manifest["queues"]["AuditQueue"]
    assert (mapping["batch_size"], mapping["batching_window_seconds"], mapping["report_batch_item_failures"]) == (
        100, 5, True)
    environment = manifest["functions"]["AuditWriterFunction"]["environment"]
    assert environment["AUDIT_BUCKET"] == manifest["buckets"]["AuditBucket"]
    assert environment["AUDIT_INDEX_TABLE"] == manifest["tables"]["AuditIndexTable"]
    assert environment["AUDIT_RETENTION_DAYS"] == "400"


def test_the_audit_bucket_is_versioned_private_encrypted_and_tiered(manifest: Manifest, moto_endpoint: str) -> None:
    s3 = aws(moto_endpoint, "s3")
    bucket = manifest["buckets"]["AuditBucket"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = {rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["audit-tiering"]["Filter"] == {"Prefix": "audit/"}
    assert rules["audit-tiering"]["Transitions"] == [{"Days": 30, "StorageClass": "STANDARD_IA"},
                                                     {"Days": 90, "StorageClass": "GLACIER_IR"}]
    assert rules["audit-tiering"]["Expiration"] == {"Days": 400}
    # S3 conditional writes, which the audit writer serialises on, are honoured by moto.
    s3.put_object(Bucket=bucket, Key="audit/probe", Body=b"1", IfNoneMatch="*")
    with pytest.raises(s3.exceptions.ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket=bucket, Key="audit/probe", Body=b"2", IfNoneMatch="*")


def test_provisioning_twice_is_idempotent(manifest: Manifest, moto_endpoint: str) -> None:
    again = provision(TEMPLATE, moto_endpoint)
    assert again == manifest
    cognito = aws(moto_endpoint, "cognito-idp")
    pools = [pool for pool in cognito.list_user_pools(MaxResults=60)["UserPools"] if pool["Name"] == "prdtool-local"]
    assert len(pools) == 1
    clients = cognito.list_user_pool_clients(UserPoolId=pools[0]["Id"], MaxResults=60)["UserPoolClients"]
    assert len(clients) == 1
    json.dumps(again)  # the manifest is plain JSON, as the runtime writes it to .local/manifest.json


# ---------------------------------------------------------------------- saved state


def scan_all(endpoint: str, manifest: Manifest) -> dict[str, list[dict[str, Any]]]:
    dynamodb = aws(endpoint, "dynamodb")
    scans = {}
    for logical_id, table in manifest["tables"].items():
        pages = dynamodb.get_paginator("scan").paginate(TableName=table)
        scans[logical_id] = sorted((item for page in pages for item in page["Items"]), key=repr)
    return scans


def bucket_objects(endpoint: str, bucket: str) -> dict[str, tuple[bytes, str, dict[str, str]]]:
    s3 = aws(endpoint, "s3")
    objects = {}
    for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        response = s3.get_object(Bucket=bucket, Key=entry["Key"])
        objects[entry["Key"]] = (response["Body"].read(), response["ContentType"], response["Metadata"])
    return objects


def test_state_round_trips_into_a_fresh_server(
    manifest: Manifest, moto_endpoint: str, fresh_moto_endpoint: str, tmp_path: Path
) -> None:
    docs = boto3.resource(
        "dynamodb",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).Table(manifest["tables"]["DocsTable"])
    with docs.batch_writer() as batch:
        for number in range(600):  # ~1.3 MB: the scan takes more than one page
            batch.put_item(
                Item={"prd_id": f"prd-{number % 7}", "sk": f"update#{number:05d}", "update": os.urandom(2000)}
            )
        batch.put_item(
            Item={
                "prd_id": "prd-0",
                "sk": "nested",
                "meta": {"seq": 1, "tags": {"a", "b"}, "parts": [b"\x00\x01", "text", None, True]},
                "blobs": {b"one", b"two"},
            }
        )
    s3 = aws(moto_endpoint, "s3")
    bucket = manifest["buckets"]["DocumentsBucket"]
    s3.put_object(Bucket=bucket, Key="prds/p1/prd.md", Body=b"# Title\n", ContentType="text/markdown")
    s3.put_object(Bucket=bucket, Key="git/p1/objects/pack 1.pack", Body=os.urandom(5000), Metadata={"sha": "abc"})
    s3.put_object(Bucket=bucket, Key="exports/é.html", Body="<p>é</p>".encode(), ContentType="text/html")

    state_dir = tmp_path / "state"
    save_state(manifest, state_dir)

    fresh = provision(TEMPLATE, fresh_moto_endpoint)
    assert fresh["tables"] == manifest["tables"]
    assert all(not items for items in scan_all(fresh_moto_endpoint, fresh).values())
    restore_state(fresh, state_dir)

    restored = scan_all(fresh_moto_endpoint, fresh)
    assert restored == scan_all(moto_endpoint, manifest)
    assert len(restored["DocsTable"]) >= 601
    assert bucket_objects(fresh_moto_endpoint, bucket) == bucket_objects(moto_endpoint, bucket)


SMALL_STATE_TEMPLATE = """
Resources:
  Notes:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
  Files:
    Type: AWS::S3::Bucket
"""


def test_a_failed_save_keeps_the_previous_snapshot(moto_endpoint: str, tmp_path: Path) -> None:
    template_file = tmp_path / "template.yaml"
    template_file.write_text(SMALL_STATE_TEMPLATE)
    source = provision(template_file, moto_endpoint, stack_name="state-source")
    dynamodb = aws(moto_endpoint, "dynamodb")
    dynamodb.put_item(TableName=source["tables"]["Notes"], Item={"id": {"S": "kept"}})
    state_dir = tmp_path / "state"
    save_state(source, state_dir)
    current = (state_dir / "CURRENT").read_text()

    dynamodb.put_item(TableName=source["tables"]["Notes"], Item={"id": {"S": "lost"}})
    broken: Manifest = {**source, "tables": {**source["tables"], "Gone": "state-source-Gone"}}
    with pytest.raises(ProvisionError, match="saving table Gone"):
        save_state(broken, state_dir)
    assert (state_dir / "CURRENT").read_text() == current
    assert sorted(path.name for path in state_dir.iterdir()) == sorted(["CURRENT", current])

    # Restored under other physical names: snapshots are keyed by logical id.
    target = provision(template_file, moto_endpoint, stack_name="state-target")
    restore_state(target, state_dir)
    assert dynamodb.scan(TableName=target["tables"]["Notes"])["Items"] == [{"id": {"S": "kept"}}]


def test_unchanged_objects_are_linked_from_the_previous_snapshot(moto_endpoint: str, tmp_path: Path) -> None:
    template_file = tmp_path / "template.yaml"
    template_file.write_text(SMALL_STATE_TEMPLATE)
    source = provision(template_file, moto_endpoint, stack_name="state-links")
    s3 = aws(moto_endpoint, "s3")
    bucket = source["buckets"]["Files"]
    s3.put_object(Bucket=bucket, Key="same", Body=b"never changes", ContentType="text/plain")
    s3.put_object(Bucket=bucket, Key="edited", Body=b"first")
    state_dir = tmp_path / "state"

    def saved_files() -> dict[str, Path]:
        snapshot = state_dir / (state_dir / "CURRENT").read_text() / "buckets" / "Files"
        index = json.loads((snapshot / "index.json").read_text())["objects"]
        return {entry["key"]: snapshot / "objects" / entry["file"] for entry in index}

    save_state(source, state_dir)
    unchanged_inode = saved_files()["same"].stat().st_ino
    s3.put_object(Bucket=bucket, Key="edited", Body=b"second")
    save_state(source, state_dir)
    after = saved_files()

    assert after["same"].stat().st_ino == unchanged_inode
    assert after["edited"].read_bytes() == b"second"
    target = provision(template_file, moto_endpoint, stack_name="state-links-copy")
    restore_state(target, state_dir)
    assert bucket_objects(moto_endpoint, target["buckets"]["Files"]) == bucket_objects(moto_endpoint, bucket)


def test_restoring_without_a_snapshot_is_a_clean_start(
    manifest: Manifest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="localstack.provision")
    restore_state(manifest, tmp_path / "never-saved")
    assert "starting clean" in caplog.text
    assert not (tmp_path / "never-saved").exists()


# ---------------------------------------------------------------------- synthetic templates


@pytest.fixture
def events_app(tmp_path: Path) -> Path:
    """A SAM app with an event rule to a function, one to a queue, a queue consumer and schedules."""
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "app.py").write_text("def handler(event, context):\n    return None\n")
    template_file = tmp_path / "template.yaml"
    template_file.write_text(
        textwrap.dedent(
            """
            Transform: AWS::Serverless-2016-10-31
            Parameters:
              Stage: {Type: String, AllowedPattern: "^[a-z]+$"}
            Conditions:
              IsProd: !Equals [!Ref Stage, prod]
            Resources:
              Bus:
                Type: AWS::Events::EventBus
                Properties: {Name: !Sub "${AWS::StackName}-bus"}
              Inbox:
                Type: AWS::SQS::Queue
                Properties:
                  FifoQueue: false
                  VisibilityTimeout: !If [IsProd, 300, 60]
              ProdOnly:
                Type: AWS::SQS::Queue
                Condition: IsProd
              ToInbox:
                Type: AWS::Events::Rule
                Properties:
                  EventBusName: !GetAtt Bus.Arn
                  EventPattern: {source: [prdtool], detail-type: [prd.created]}
                  Targets: [{Id: inbox, Arn: !GetAtt Inbox.Arn}]
              Worker:
                Type: AWS::Serverless::Function
                Properties:
                  CodeUri: worker/
                  Handler: app.handler
                  Runtime: python3.12
                  ReservedConcurrentExecutions: 2
                  Environment:
                    Variables:
                      INBOX: !GetAtt Inbox.QueueName
                      PROD_ONLY: !If [IsProd, !Ref ProdOnly, !Ref "AWS::NoValue"]
                  Events:
                    Created:
                      Type: EventBridgeRule
                      Properties:
                        EventBusName: !Ref Bus
                        Pattern: {source: [prdtool]}
                        InputPath: $.detail
                    Jobs:
                      Type: SQS
                      Properties:
                        Queue: !GetAtt Inbox.Arn
                        BatchSize: 5
                        MaximumBatchingWindowInSeconds: 2
                        FunctionResponseTypes: [ReportBatchItemFailures]
                        ScalingConfig: {MaximumConcurrency: 3}
                    Nightly:
                      Type: ScheduleV2
                      Properties: {ScheduleExpression: "cron(0 3 * * ? *)", Input: '{"task": "nightly"}'}
                    Paused:
                      Type: Schedule
                      Properties: {Schedule: rate(5 minutes), Enabled: false}
            """
        )
    )
    return template_file


def test_function_targets_of_event_rules_get_shadow_queues_that_receive_events(
    events_app: Path, moto_endpoint: str
) -> None:
    manifest = provision(events_app, moto_endpoint, stack_name="events-app", parameters={"Stage": "dev"})
    [rule] = manifest["event_rules"]
    [target] = rule["function_targets"]
    assert rule["name"] == "WorkerCreated"
    assert rule["bus_name"] == "events-app-bus"
    assert rule["pattern"] == {"source": ["prdtool"]}
    assert target["function"] == "Worker"
    assert target["input"] is None
    assert target["input_path"] == "$.detail"
    assert target["shadow_queue_url"].endswith("/events-app-rule-WorkerCreated-0")

    events = aws(moto_endpoint, "events")
    entry = {
        "Source": "prdtool",
        "DetailType": "prd.created",
        "Detail": '{"id": "p1"}',
        "EventBusName": "events-app-bus",
    }
    assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
    sqs = aws(moto_endpoint, "sqs")
    for queue_url in (target["shadow_queue_url"], manifest["queues"]["Inbox"]):
        [message] = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2)["Messages"]
        envelope = json.loads(message["Body"])
        assert envelope["source"] == "prdtool"
        assert envelope["detail-type"] == "prd.created"
        assert envelope["detail"] == {"id": "p1"}
    moto_rules = {rule["Name"] for rule in events.list_rules(EventBusName="events-app-bus")["Rules"]}
    assert moto_rules == {"events-app-ToInbox", "events-app-WorkerCreated"}
    assert "events-app-WorkerPaused" not in {rule["Name"] for rule in events.list_rules()["Rules"]}


def test_queue_consumers_schedules_and_conditions_of_a_synthetic_app(events_app: Path, moto_endpoint: str) -> None:
    manifest = provision(events_app, moto_endpoint, stack_name="events-app", parameters={"Stage": "dev"})
    assert manifest["event_source_mappings"] == [
        {
            "function": "Worker",
            "queue_arn": manifest["resources"]["Inbox"]["arn"],
            "queue_url": manifest["queues"]["Inbox"],
            "batch_size": 5,
            "batching_window_seconds": 2,
            "report_batch_item_failures": True,
            "maximum_concurrency": 3,
            "enabled": True,
        }
    ]
    assert sorted(manifest["schedules"], key=lambda schedule: schedule["name"]) == [
        {
            "name": "WorkerNightly",
            "function": "Worker",
            "expression": "cron(0 3 * * ? *)",
            "input": '{"task": "nightly"}',
            "enabled": True,
        },
        {
            "name": "WorkerPaused",
            "function": "Worker",
            "expression": "rate(5 minutes)",
            "input": None,
            "enabled": False,
        },
    ]
    worker = manifest["functions"]["Worker"]
    assert worker["environment"] == {"INBOX": "events-app-Inbox"}
    assert worker["reserved_concurrency"] == 2
    assert worker["layer_dirs"] == []
    assert worker["code_dir"] == str(events_app.parent / "worker")
    assert (worker["timeout"], worker["memory"]) == (3, 128)
    assert "ProdOnly" not in manifest["resources"]
    inbox = aws(moto_endpoint, "sqs").get_queue_attributes(QueueUrl=manifest["queues"]["Inbox"], AttributeNames=["All"])
    assert inbox["Attributes"]["VisibilityTimeout"] == "60"
    assert manifest["http_routes"] == []
    assert manifest["websocket"] is None


def test_parameters_are_validated(events_app: Path, moto_endpoint: str) -> None:
    with pytest.raises(TemplateError, match="does not match"):
        provision(events_app, moto_endpoint, stack_name="events-app", parameters={"Stage": "Not Valid"})
    with pytest.raises(TemplateError, match="declares no parameter Colour"):
        provision(events_app, moto_endpoint, stack_name="events-app", parameters={"Colour": "blue"})


def test_an_unknown_resource_type_fails_before_anything_is_created(tmp_path: Path, moto_endpoint: str) -> None:
    template_file = tmp_path / "template.yaml"
    template_file.write_text(
        textwrap.dedent(
            """
            Resources:
              Before: {Type: AWS::SQS::Queue}
              Mystery: {Type: AWS::Neptune::DBCluster}
            """
        )
    )
    with pytest.raises(TemplateError, match=r"Mystery: resource type AWS::Neptune::DBCluster is not supported"):
        provision(template_file, moto_endpoint, stack_name="unknown-type")
    queues = aws(moto_endpoint, "sqs").list_queues(QueueNamePrefix="unknown-type").get("QueueUrls", [])
    assert queues == []


def test_circular_references_are_reported(tmp_path: Path, moto_endpoint: str) -> None:
    template_file = tmp_path / "template.yaml"
    template_file.write_text(
        textwrap.dedent(
            """
            Resources:
              A: {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub "${B.QueueName}-a"}}
              B: {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub "${A.QueueName}-b"}}
            """
        )
    )
    with pytest.raises(TemplateError, match="circular dependency between resources"):
        provision(template_file, moto_endpoint, stack_name="cycle")


# ---------------------------------------------------------------------- intrinsic functions


@pytest.fixture
def resolver() -> Resolver:
    resolver = Resolver(
        parameters={"Stage": "dev", "Zones": ["a", "b"], "AWS::Region": "eu-west-1", "AWS::AccountId": "1"},
        conditions={
            "IsDev": {"Fn::Equals": [{"Ref": "Stage"}, "dev"]},
            "IsProd": {"Fn::Not": [{"Condition": "IsDev"}]},
        },
        mappings={"Sizes": {"dev": {"Memory": 256}}},
        region="eu-west-1",
    )
    resolver.resources["Queue"] = PhysicalResource("AWS::SQS::Queue", "https://q", {"Arn": "arn:q", "QueueName": "q"})
    resolver.excluded.add("Skipped")
    return resolver


def test_sub_join_select_split_and_conditions(resolver: Resolver) -> None:
    assert resolver.resolve({"Fn::Sub": "${Stage}-${Queue}-${Queue.Arn}-${!Literal}-${AWS::Region}"}, "t") == (
        "dev-https://q-arn:q-${Literal}-eu-west-1"
    )
    assert (
        resolver.resolve({"Fn::Sub": ["${Name}/${Stage}", {"Name": {"Fn::GetAtt": "Queue.QueueName"}}]}, "t") == "q/dev"
    )
    assert resolver.resolve({"Fn::Join": [",", {"Ref": "Zones"}]}, "t") == "a,b"
    assert resolver.resolve({"Fn::Select": ["1", {"Fn::Split": ["/", "x/y/z"]}]}, "t") == "y"
    assert resolver.resolve({"Fn::Select": [0, {"Fn::GetAZs": ""}]}, "t") == "eu-west-1a"
    assert resolver.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "Memory"]}, "t") == 256
    assert resolver.resolve({"Fn::Base64": "hi"}, "t") == "aGk="
    value: dict[str, Any] = {
        "Keep": {"Fn::If": ["IsDev", "yes", "no"]},
        "Drop": {"Fn::If": ["IsProd", "x", {"Ref": "AWS::NoValue"}]},
        "List": ["a", {"Ref": "AWS::NoValue"}, {"Fn::If": ["IsDev", {"Ref": "Skipped"}, "b"]}],
    }
    with pytest.raises(TemplateError, match="Skipped, whose Condition is false"):
        resolver.resolve(value, "t")
    value["List"][2] = {"Fn::If": ["IsProd", {"Ref": "Skipped"}, "b"]}
    assert resolver.resolve(value, "t") == {"Keep": "yes", "List": ["a", "b"]}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Fn::ImportValue": "shared-vpc"}, "Fn::ImportValue"),
        ({"Fn::Cidr": ["10.0.0.0/16", 2, 8]}, "Fn::Cidr is not supported"),
        ({"Ref": "Nowhere"}, "Nowhere, which is neither a parameter nor a resource"),
        ({"Fn::GetAtt": ["Queue", "Missing"]}, r"Queue.Missing is not emulated .*known attributes: Arn, QueueName"),
        ({"Fn::Select": [5, ["a"]]}, "out of range"),
        ({"Fn::If": ["Unknown", "a", "b"]}, "unknown condition"),
    ],
)
def test_unsupported_or_broken_intrinsics_fail_clearly(resolver: Resolver, value: Any, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        resolver.resolve(value, "Somewhere")


def test_background_functions_are_those_no_route_or_authorizer_runs(manifest: Manifest) -> None:
    from scripts.localstack.stack import background_functions

    background = background_functions(manifest)
    assert {"DocWriterFunction", "SearchIndexerFunction", "VersionFunction", "AuditWriterFunction",
            "AiWorkerFunction", "ImportWorkerFunction", "ExportWorkerFunction"} <= background
    assert not background & {"WebSocketFunction", "AuthorizerFunction", "PrdsFunction", "AuthFunction",
                              "GitFunction", "SearchApiFunction", "HealthFunction"}
