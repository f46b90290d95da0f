"""What template.yaml creates in AWS (tables, the KMS key, secrets), created in moto for the local stack.

template.yaml stays the one source: table schemas, secret shapes and the environment variables that
name them are read from it, never restated here. Only local physical names are made up:
``companion-memory-local-<logical id>`` for tables and ``companion-memory-local/<logical id>`` for
secrets.
"""

import json
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from localdev.motoserver import STABLE_PREFIX
from localdev.template import Intrinsic, Template

PREFIX = "companion-memory-local"
KEY_ALIAS = f"alias/{PREFIX}"
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

# Properties of AWS::DynamoDB::Table that are also CreateTable parameters; the rest (SSE, PITR,
# deletion protection, ...) changes nothing a local test can observe.
_TABLE_KEYS = ("AttributeDefinitions", "KeySchema", "BillingMode", "ProvisionedThroughput")
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")


@dataclass(frozen=True)
class SecretSpec:
    logical_id: str
    name: str
    fields: dict[str, Any]  # the template's SecretStringTemplate
    password_key: str
    password_length: int
    # A literal SecretString (e.g. "{}" that the application fills in): created once, never overwritten.
    initial: str | None = None


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    name: str
    create: dict[str, Any]
    ttl_attribute: str | None


@dataclass(frozen=True)
class Plan:
    tables: dict[str, TableSpec]
    secrets: dict[str, SecretSpec]
    keys: tuple[str, ...]
    # Function environment variables that name a resource: var -> (logical id, attribute or "").
    references: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Created:
    """Physical ids of what exists in moto, by logical id."""

    tables: dict[str, str]
    secret_arns: dict[str, str]
    key_ids: dict[str, str]
    key_arns: dict[str, str]


def _literal(value: Any, where: str) -> Any:
    if isinstance(value, Intrinsic):
        raise ValueError(
            f"{where} is computed in the template (!{value.tag}); the local stack needs a literal"
        )
    if isinstance(value, dict):
        return {key: _literal(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_literal(item, f"{where}[]") for item in value]
    return value


def _table_spec(logical_id: str, props: dict[str, Any]) -> TableSpec:
    where = f"{logical_id}.Properties"
    create = {key: _literal(props[key], f"{where}.{key}") for key in _TABLE_KEYS if key in props}
    if "BillingMode" not in create and "ProvisionedThroughput" not in create:
        create["BillingMode"] = "PAY_PER_REQUEST"
    for kind, keys in (("GlobalSecondaryIndexes", _INDEX_KEYS), ("LocalSecondaryIndexes", _INDEX_KEYS[:3])):
        if kind in props:
            indexes = _literal(props[kind], f"{where}.{kind}")
            create[kind] = [{key: index[key] for key in keys if key in index} for index in indexes]
    if "StreamSpecification" in props:
        stream = _literal(props["StreamSpecification"], f"{where}.StreamSpecification")
        create["StreamSpecification"] = {"StreamEnabled": True, **stream}
    ttl = _literal(props.get("TimeToLiveSpecification", {}), f"{where}.TimeToLiveSpecification")
    name = f"{PREFIX}-{logical_id.lower()}"
    return TableSpec(
        logical_id,
        name,
        {"TableName": name, **create},
        ttl.get("AttributeName") if ttl.get("Enabled") else None,
    )


def plan(template: Template) -> Plan:
    tables = {
        logical_id: _table_spec(logical_id, resource.get("Properties", {}))
        for logical_id, resource in template.resources_of_type("AWS::DynamoDB::Table").items()
    }
    found: dict[str, SecretSpec] = {}
    for logical_id, resource in template.resources_of_type("AWS::SecretsManager::Secret").items():
        generate = resource.get("Properties", {}).get("GenerateSecretString", {})
        shape = generate.get("SecretStringTemplate")
        literal = resource.get("Properties", {}).get("SecretString")
        if isinstance(literal, str) and not generate:
            found[logical_id] = SecretSpec(logical_id, f"{PREFIX}/{logical_id.lower()}", {}, "", 0, literal)
            continue
        if not isinstance(shape, str):
            continue  # not a generated credential: nothing the local stack can mirror
        found[logical_id] = SecretSpec(
            logical_id,
            f"{PREFIX}/{logical_id.lower()}",
            json.loads(shape),
            str(generate.get("GenerateStringKey", "password")),
            int(generate.get("PasswordLength", 32)),
        )
    # Aurora's managed master secret (ManageMasterUserPassword) has no resource of its own; it is
    # addressed as !GetAtt Cluster.MasterUserSecret.SecretArn.
    for logical_id, resource in template.resources_of_type("AWS::RDS::DBCluster").items():
        props = resource.get("Properties", {})
        if props.get("ManageMasterUserPassword") is True:
            secret_id = f"{logical_id}.MasterUserSecret"
            username = _literal(
                props.get("MasterUsername", "companion_owner"), f"{logical_id}.MasterUsername"
            )
            found[secret_id] = SecretSpec(
                secret_id, f"{PREFIX}/{logical_id.lower()}-master", {"username": username}, "password", 40
            )
    keys = tuple(template.resources_of_type("AWS::KMS::Key"))
    return Plan(tables, found, keys, _references(template, set(tables) | set(found) | set(keys)))


def _references(template: Template, known: set[str]) -> dict[str, tuple[str, str]]:
    references: dict[str, tuple[str, str]] = {}
    for function in template.functions.values():
        for var, value in function.environment.items():
            if not isinstance(value, Intrinsic):
                continue
            if value.tag == "Ref" and value.value in known:
                target = (str(value.value), "")
            elif value.tag == "GetAtt":
                dotted = value.value if isinstance(value.value, str) else ".".join(value.value)
                resource, _, attribute = dotted.partition(".")
                if attribute == "MasterUserSecret.SecretArn" and f"{resource}.MasterUserSecret" in known:
                    target = (f"{resource}.MasterUserSecret", "")
                elif resource in known and attribute == "Arn":
                    target = (resource, "Arn")
                else:
                    continue
            else:
                continue
            # Two functions naming different resources with one variable would be a template bug:
            # the first wins and the environment stays well defined.
            references.setdefault(var, target)
    return references


def clients(endpoint: str) -> dict[str, Any]:
    config = Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "max_attempts": 5})
    return {
        service: boto3.client(  # type: ignore[call-overload]
            service, endpoint_url=endpoint, region_name=REGION, config=config, **CREDENTIALS
        )
        for service in ("kms", "secretsmanager", "dynamodb")
    }


def generate_password(length: int) -> str:
    # Letters and digits only, like the template's ExcludePunctuation: safe in URLs and redis.conf.
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def ensure(endpoint: str, wanted: Plan, password_for: Callable[[SecretSpec], str]) -> Created:
    """Create whatever is missing, in a fixed order (moto's ids are seeded: same order, same ids)."""
    aws = clients(endpoint)
    key_ids: dict[str, str] = {}
    key_arns: dict[str, str] = {}
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in aws["kms"].list_aliases()["Aliases"]}
    for index, logical_id in enumerate(wanted.keys):
        alias = KEY_ALIAS if index == 0 else f"{KEY_ALIAS}-{logical_id.lower()}"
        key_id = aliases.get(alias)
        if key_id is None:
            key_id = aws["kms"].create_key(
                Description=f"{STABLE_PREFIX} {logical_id}", KeyUsage="ENCRYPT_DECRYPT"
            )["KeyMetadata"]["KeyId"]
            aws["kms"].create_alias(AliasName=alias, TargetKeyId=key_id)
        key_ids[logical_id] = key_id
        key_arns[logical_id] = aws["kms"].describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]

    secret_arns: dict[str, str] = {}
    sm = aws["secretsmanager"]
    for logical_id, spec in wanted.secrets.items():
        if spec.initial is not None:
            try:
                secret_arns[logical_id] = sm.describe_secret(SecretId=spec.name)["ARN"]
            except sm.exceptions.ResourceNotFoundException:
                secret_arns[logical_id] = sm.create_secret(Name=spec.name, SecretString=spec.initial)["ARN"]
            continue
        value = json.dumps({**spec.fields, spec.password_key: password_for(spec)})
        try:
            secret_arns[logical_id] = sm.describe_secret(SecretId=spec.name)["ARN"]
            if sm.get_secret_value(SecretId=spec.name)["SecretString"] != value:
                sm.put_secret_value(SecretId=spec.name, SecretString=value)
        except sm.exceptions.ResourceNotFoundException:
            secret_arns[logical_id] = sm.create_secret(Name=spec.name, SecretString=value)["ARN"]

    ddb = aws["dynamodb"]
    existing = set(ddb.list_tables()["TableNames"])
    for table in wanted.tables.values():
        if table.name not in existing:
            ddb.create_table(**table.create)
        if table.ttl_attribute is not None:
            ttl = ddb.describe_time_to_live(TableName=table.name)["TimeToLiveDescription"]
            if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                ddb.update_time_to_live(
                    TableName=table.name,
                    TimeToLiveSpecification={"AttributeName": table.ttl_attribute, "Enabled": True},
                )
    tables = {logical_id: spec.name for logical_id, spec in wanted.tables.items()}
    return Created(tables, secret_arns, key_ids, key_arns)


def environment(wanted: Plan, created: Created) -> dict[str, str]:
    """Function environment variables naming resources, with the local physical ids."""
    env: dict[str, str] = {}
    # Tables no function names yet still get a variable by convention (SessionsTable -> SESSIONS_TABLE).
    for logical_id, name in created.tables.items():
        env[_snake(logical_id)] = name
    for var, (logical_id, attribute) in wanted.references.items():
        if logical_id in created.tables:
            env[var] = created.tables[logical_id]
        elif logical_id in created.secret_arns:
            env[var] = created.secret_arns[logical_id]
        elif logical_id in created.key_ids:
            env[var] = created.key_arns[logical_id] if attribute == "Arn" else created.key_ids[logical_id]
    return env


def _snake(logical_id: str) -> str:
    out = [
        f"_{c}" if c.isupper() and i and not logical_id[i - 1].isupper() else c
        for i, c in enumerate(logical_id)
    ]
    return "".join(out).upper()
