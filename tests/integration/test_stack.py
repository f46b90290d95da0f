"""The local stack (`make up`): idempotent start, the stack.env contract, what moto holds, real auth.

Most tests use the session's stack; the stop/start cycle runs on a throwaway stack of its own.
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pytest
import redis

from localdev import procs
from localdev.stack import Running, Stack
from localdev.template import default as template

CONTRACT_KEYS = (
    "API_URL",
    "MCP_URL",
    "DATABASE_URL",
    "DATABASE_OWNER_URL",
    "REDIS_URL",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "SESSIONS_TABLE",
    "IDEMPOTENCY_TABLE",
    "KMS_KEY_ID",
    "DB_SECRET_ARN",
    "DB_OWNER_SECRET_ARN",
    "APP_DB_SECRET_ARN",
    "REDIS_SECRET_ARN",
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_SSLMODE",
    "STAGE",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_TRACE_DISABLED",
    "POWERTOOLS_DEV",
    "MCP_ALLOWED_HOSTS",
    "MCP_ALLOWED_ORIGINS",
)


def _client(env: dict[str, str], service: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def _pids(local: Stack) -> dict[str, int | None]:
    return {service.name: service.pid for service in local.status()}


def test_a_second_up_keeps_every_running_service(stack: Running) -> None:
    # Given the session's stack is up
    before = _pids(stack.stack)
    assert all(pid is not None for pid in before.values())
    # When `up` runs again
    env = stack.stack.up()
    # Then the same processes serve the same environment
    assert _pids(stack.stack) == before
    assert env == stack.env


def test_stack_env_holds_the_contract_keys_and_reads_back_alike_in_a_shell(stack: Running) -> None:
    env_file = stack.state_dir / "stack.env"
    # When the file is sourced by a shell, as the `make up` hint says
    shell = subprocess.run(
        ["bash", "-c", f"set -a; source {env_file}; set +a; env -0"],
        capture_output=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    )
    sourced = dict(line.split("=", 1) for line in shell.stdout.decode().split("\0") if "=" in line)
    # Then every contract key is there, with the value the stack returned
    for key in CONTRACT_KEYS:
        assert sourced.get(key) == stack.env[key], key
    assert stack.env["MCP_URL"].endswith("/mcp")
    assert all(url.startswith("http://127.0.0.1:") for url in (stack.env["API_URL"], stack.env["MCP_URL"]))
    assert json.loads(stack.env["MCP_ALLOWED_HOSTS"])[0] == stack.env["MCP_URL"].split("/")[2]


def test_files_holding_passwords_are_readable_by_their_owner_only(stack: Running) -> None:
    for name in ("stack.env", "state.json", "redis/redis.conf"):
        path = stack.state_dir / name
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_health_answers_200_with_every_dependency_up(stack: Running) -> None:
    response = httpx.get(f"{stack.env['API_URL']}/health", timeout=10)
    assert response.status_code == 200
    dependencies = response.json()["dependencies"]
    assert {name: dependencies[name]["status"] for name in ("postgres", "redis", "dynamodb")} == {
        "postgres": "up",
        "redis": "up",
        "dynamodb": "up",
    }


def test_every_template_table_exists_with_its_keys_indexes_and_ttl(stack: Running) -> None:
    dynamodb = _client(stack.env, "dynamodb")
    tables = template().resources_of_type("AWS::DynamoDB::Table")
    assert {"SessionsTable", "IdempotencyTable"} <= set(tables)
    for logical_id, resource in tables.items():
        props = resource["Properties"]
        name = f"companion-memory-local-{logical_id.lower()}"
        described = dynamodb.describe_table(TableName=name)["Table"]
        assert described["KeySchema"] == props["KeySchema"]
        assert {tuple(a.items()) for a in described["AttributeDefinitions"]} == {
            tuple(a.items()) for a in props["AttributeDefinitions"]
        }
        indexes = {i["IndexName"]: i["KeySchema"] for i in described.get("GlobalSecondaryIndexes", [])}
        assert indexes == {i["IndexName"]: i["KeySchema"] for i in props.get("GlobalSecondaryIndexes", [])}
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if props.get("TimeToLiveSpecification", {}).get("Enabled"):
            assert ttl["TimeToLiveStatus"] == "ENABLED"
            assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]
    assert stack.env["SESSIONS_TABLE"] == "companion-memory-local-sessionstable"
    assert stack.env["IDEMPOTENCY_TABLE"] == "companion-memory-local-idempotencytable"


def test_the_kms_key_has_its_alias_and_wraps_data_keys(stack: Running) -> None:
    kms = _client(stack.env, "kms")
    aliases = {a["AliasName"]: a["TargetKeyId"] for a in kms.list_aliases()["Aliases"]}
    key = kms.describe_key(KeyId=stack.env["KMS_KEY_ID"])["KeyMetadata"]
    assert aliases["alias/companion-memory-local"] == key["KeyId"]
    assert key["KeySpec"] == "SYMMETRIC_DEFAULT"
    context = {"companion_id": "c-1"}
    data_key = kms.generate_data_key(
        KeyId=stack.env["KMS_KEY_ID"], KeySpec="AES_256", EncryptionContext=context
    )
    unwrapped = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext=context)
    assert unwrapped["Plaintext"] == data_key["Plaintext"]


def test_the_secrets_hold_the_credentials_the_urls_use(stack: Running) -> None:
    secrets = _client(stack.env, "secretsmanager")

    def secret(var: str) -> dict[str, str]:
        value: dict[str, str] = json.loads(secrets.get_secret_value(SecretId=stack.env[var])["SecretString"])
        return value

    app, owner, cache = secret("APP_DB_SECRET_ARN"), secret("DB_OWNER_SECRET_ARN"), secret("REDIS_SECRET_ARN")
    assert stack.env["DB_SECRET_ARN"] == stack.env["APP_DB_SECRET_ARN"]
    assert (app["username"], owner["username"]) == ("companion_app", "companion_owner")
    assert stack.env["DATABASE_URL"].startswith(f"postgresql://{app['username']}:{app['password']}@")
    assert stack.env["DATABASE_OWNER_URL"].startswith(
        f"postgresql://{owner['username']}:{owner['password']}@"
    )
    assert stack.env["REDIS_URL"].startswith(f"redis://{cache['username']}:{cache['password']}@")


def test_the_app_role_connects_and_pgvector_works(stack: Running) -> None:
    with psycopg.connect(stack.env["DATABASE_URL"], connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("companion_app",)
        assert conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,4]'").fetchone() == (1.0,)


def test_the_owner_owns_the_database_and_cannot_act_as_superuser(stack: Running) -> None:
    with psycopg.connect(stack.env["DATABASE_OWNER_URL"], connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT r.rolsuper, r.rolcreaterole, pg_get_userbyid(d.datdba) FROM pg_roles r, pg_database d"
            " WHERE r.rolname = current_user AND d.datname = current_database()"
        ).fetchone()
        assert row == (False, True, "companion_owner")


def test_redis_refuses_a_client_without_credentials(stack: Running) -> None:
    authenticated = redis.Redis.from_url(stack.env["REDIS_URL"], socket_timeout=2)
    assert authenticated.ping() is True
    # A raw socket: a client library would retry its failed handshake with back-off.
    port = int(stack.env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as anonymous:
        anonymous.sendall(b"SET k v\r\n")
        assert anonymous.recv(200).startswith(b"-NOAUTH")


# ---------------------------------------------------------------- a throwaway stack: down and up again


@pytest.fixture
def throwaway(tmp_path: Path) -> Iterator[Stack]:
    # Under pytest's tmp dir (mode 700 when root): the cluster's user cannot reach it, which is the
    # CI case of a checkout under /root.
    local = Stack(tmp_path / "state")
    try:
        yield local
    finally:
        local.down(purge=True)
        shutil.rmtree(tmp_path / "state", ignore_errors=True)


def test_down_leaves_nothing_behind_and_up_brings_back_the_same_stack(throwaway: Stack) -> None:
    # Given a stack that was up, with a data key wrapped by its KMS key and a row in its database
    env = throwaway.up()
    running = throwaway.status()
    assert all(s.up for s in running)
    kms = _client(env, "kms")
    wrapped = kms.generate_data_key(KeyId=env["KMS_KEY_ID"], KeySpec="AES_256")
    with psycopg.connect(env["DATABASE_OWNER_URL"], autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('survives a restart')")

    # When it goes down
    throwaway.down()

    # Then no process of it remains and every port is free again
    for service in running:
        if service.pid is not None:
            assert not procs.is_running(service.pid, ""), service
        for port in service.ports:
            assert procs.port_free(port), (service.name, port)
    assert all(not s.up and s.pid is None for s in throwaway.status())

    # And when it comes back: same ports and ARNs, the old data, and the old data key still unwraps
    again = throwaway.up()
    assert again == env
    with psycopg.connect(again["DATABASE_OWNER_URL"]) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("survives a restart",)]
    plaintext = _client(again, "kms").decrypt(CiphertextBlob=wrapped["CiphertextBlob"])["Plaintext"]
    assert base64.b64encode(plaintext) == base64.b64encode(wrapped["Plaintext"])


def test_the_cli_reports_status_with_exit_code_3_when_down(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "localdev.stack", "--state-dir", str(tmp_path), "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3
    assert "postgres" in result.stdout
    assert "down" in result.stdout
