"""Versioned SQL migrations (``migrations/NNNN_name.sql``), applied in order, each exactly once.

Applied versions and their checksums live in ``schema_migrations``; an edited, already-applied
file is an error rather than a silent drift. A session-level advisory lock serialises concurrent
runs (two deploys, or a deploy and a developer), and each migration commits on its own so a
failure leaves the schema at the last good version.
"""

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import psycopg
from psycopg import sql

from companion_memory.adapters import aws
from companion_memory.adapters.postgres import owner_conninfo_from
from companion_memory.config import MigrateSettings

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x636D6D69  # an arbitrary constant: "cmmi"
APP_ROLE = "companion_app"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(Exception):
    pass


def bundled() -> list[Migration]:
    """The migrations shipped with the package (``companion_memory/migrations`` in the layer)."""
    return discover(files("companion_memory") / "migrations")


def discover(directory: Traversable) -> list[Migration]:
    found = []
    for entry in directory.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match["version"]), match["name"], entry.read_text()))
        elif entry.name.endswith(".sql"):
            raise MigrationError(f"{entry.name}: migration files are named NNNN_lower_snake.sql")
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


def migrate(settings: MigrateSettings) -> dict[str, Any]:
    """Apply the bundled migrations as the owner, then make sure the app role can log in."""
    owner_secret = None
    if settings.database_owner_url is None and settings.db_owner_secret_arn:
        owner_secret = aws.secret_json(settings.db_owner_secret_arn)
    conninfo = owner_conninfo_from(settings, owner_secret)
    applied = apply(conninfo, bundled())
    if settings.app_db_secret_arn:
        ensure_app_login(conninfo, aws.secret_json(settings.app_db_secret_arn))
    return {"applied": [f"{m.version:04d}_{m.name}" for m in applied], "version": current_version(conninfo)}


def apply(conninfo: str, migrations: list[Migration]) -> list[Migration]:
    """Apply the pending migrations; returns those applied now (empty when up to date)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            applied: dict[int, str] = dict(
                conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
            )
            for migration in migrations:
                if migration.version in applied and applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it was applied; "
                        "add a new migration instead"
                    )
            pending = [m for m in migrations if m.version not in applied]
            for migration in pending:
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.Error as error:
                    # The server's message says what failed, not in which file.
                    error.add_note(f"in migrations/{migration.version:04d}_{migration.name}.sql")
                    raise
            return pending
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def current_version(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def ensure_app_login(conninfo: str, credentials: dict[str, Any]) -> None:
    """Give the application role LOGIN and the password kept in its secret.

    The password is sent as a SCRAM verifier computed here, so the plain text never reaches the
    server (or its statement log).
    """
    if credentials.get("username") != APP_ROLE:
        raise MigrationError(f"the application secret must name the role {APP_ROLE!r}")
    statement = sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
        sql.Identifier(APP_ROLE), sql.Literal(scram_sha_256(str(credentials["password"])))
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(statement)


def scram_sha_256(password: str, *, iterations: int = 4096, salt: bytes | None = None) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802/7677)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
