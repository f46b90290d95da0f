"""``companion-memory``: the operator CLI (also used by the local stack).

Reads its settings from the environment, falling back to ``.local/stack.env`` when run from a
checkout with the local stack up.
"""

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from companion_memory import wiring
from companion_memory.adapters import migrations
from companion_memory.config import IdentitySettings, MigrateSettings, settings_for
from companion_memory.errors import CompanionMemoryError

LOCAL_ENV_FILE = Path(".local/stack.env")
OWNER_KEY_VARIABLE = "COMPANION_MEMORY_OWNER_KEY"


def _migrate(_: argparse.Namespace, env_file: Path | None) -> dict[str, Any]:
    try:
        return migrations.migrate(MigrateSettings(_env_file=env_file))
    except psycopg.OperationalError:
        raise  # reported by main as an unreachable database
    except psycopg.Error as error:
        # A statement failed; its migration rolled back and the schema stays at the last good version.
        detail = " ".join([str(error).strip().splitlines()[0], *getattr(error, "__notes__", ())])
        raise migrations.MigrationError(f"migration failed: {detail}") from error
    except GetParameterError as error:
        raise migrations.MigrationError(f"a credentials secret could not be read: {error}") from error
    except ValueError as error:  # pydantic's ValidationError too: the environment is incomplete or wrong
        raise migrations.MigrationError(f"configuration: {error}") from error


def _owner_create(args: argparse.Namespace, env_file: Path | None) -> dict[str, Any]:

    _load_settings(IdentitySettings, env_file)
    owner, api_key = wiring.identity_service().create_owner(args.name)
    return {"owner_id": str(owner.id), "api_key": api_key}


def _keys_rotate(_: argparse.Namespace, env_file: Path | None) -> dict[str, Any]:

    _load_settings(IdentitySettings, env_file)
    rotated = wiring.signing_keys().rotate()
    return {
        "current_kid": rotated.signing_key().kid,
        "verifying_kids": sorted(rotated.verification_keys().kids),
    }


def _embedding_index(args: argparse.Namespace, env_file: Path | None) -> dict[str, Any]:
    """Build the HNSW index a new embedding model needs for companion-wide search (CONCURRENTLY, as the
    schema owner): run it before switching EMBEDDING_PROVIDER, while the old model keeps serving."""
    from companion_memory.adapters import aws
    from companion_memory.adapters.postgres import owner_conninfo_from
    from companion_memory.adapters.postgres_memory import create_embedding_index

    settings = MigrateSettings(_env_file=env_file)
    secret = None
    if settings.database_owner_url is None and settings.db_owner_secret_arn:
        secret = aws.secret_json(settings.db_owner_secret_arn)
    try:
        ddl = create_embedding_index(owner_conninfo_from(settings, secret), args.model, args.dims)
    except psycopg.OperationalError:
        raise
    except psycopg.Error as error:
        raise migrations.MigrationError(f"index not built: {str(error).strip().splitlines()[0]}") from error
    return {"model": args.model, "dimensions": args.dims, "ddl": ddl}


def _reembed(args: argparse.Namespace, env_file: Path | None) -> dict[str, Any]:
    """Give every memory a vector of the named provider's model, beside the old ones (see
    companion_memory.domain.reembed for the zero-downtime procedure). Runs as the schema owner, through the
    narrow role of migrations/0006_reembed_role.sql; ``--dry-run`` only counts what is left."""
    from uuid import UUID

    from companion_memory.adapters import aws
    from companion_memory.adapters.postgres import owner_conninfo_from
    from companion_memory.config import EmbeddingSettings

    _load_settings(IdentitySettings, env_file)  # the app role's settings too: the cipher reads wrapped keys
    settings = MigrateSettings(_env_file=env_file)
    secret = None
    if settings.database_owner_url is None and settings.db_owner_secret_arn:
        secret = aws.secret_json(settings.db_owner_secret_arn)
    overrides: dict[str, Any] = {"embedding_provider": args.provider}
    if args.dims is not None:
        overrides["embedding_dimensions"] = args.dims
    try:
        embedding = EmbeddingSettings(**overrides)
        companion = UUID(args.companion) if args.companion else None
    except ValueError as error:  # pydantic's ValidationError too
        raise migrations.MigrationError(f"configuration: {error}") from error
    job = wiring.reembedder(owner_conninfo_from(settings, secret), embedding, companion)
    try:
        report = job.count() if args.dry_run else job.run(args.batch, args.max_batches)
    except psycopg.OperationalError:
        raise
    except psycopg.Error as error:
        detail = str(error).strip().splitlines()[0]
        raise migrations.MigrationError(f"re-embedding failed: {detail}") from error
    return report.as_dict()


def _user_erase(args: argparse.Namespace, env_file: Path | None) -> dict[str, Any]:
    """Erase one user of a companion in every store, as ``DELETE /companions/{id}/users/{user_id}`` does, and
    print the receipt. The owner key comes from COMPANION_MEMORY_OWNER_KEY, never from the command line
    (shell history and the process list would keep it)."""
    from uuid import UUID

    from companion_memory.errors import Unauthorized

    _load_settings(IdentitySettings, env_file)
    owner_key = os.environ.get(OWNER_KEY_VARIABLE, "")
    if not owner_key:
        raise Unauthorized(f"set {OWNER_KEY_VARIABLE} to an owner key of the companion's organisation")
    try:
        companion_id = UUID(args.companion)
    except ValueError:
        raise migrations.MigrationError("--companion is not a companion id") from None
    principal = wiring.authenticator().authenticate(owner_key)
    receipt = wiring.erasure_service().erase_user(principal, companion_id, args.user)
    return receipt.model_dump(mode="json")


def _load_settings(model: type[IdentitySettings], env_file: Path | None) -> None:
    """wiring builds its clients from ``settings_for``; give it the env file's values, environment first."""
    if env_file is not None:
        from dotenv import dotenv_values

        for name, value in dotenv_values(env_file).items():
            if value is not None:
                os.environ.setdefault(name, value)
    settings_for(model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="companion-memory", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending SQL migrations (idempotent)").set_defaults(
        run=_migrate
    )
    owner = commands.add_parser("owner", help="organisations").add_subparsers(
        dest="owner_command", required=True
    )
    create = owner.add_parser("create", help="create an owner and print its first (admin) key, shown once")
    create.add_argument("--name", required=True)
    create.set_defaults(run=_owner_create)
    keys = commands.add_parser("keys", help="JWT signing keys").add_subparsers(
        dest="keys_command", required=True
    )
    keys.add_parser("rotate", help="current -> previous, next -> current, new next").set_defaults(
        run=_keys_rotate
    )
    index = commands.add_parser(
        "embedding-index", help="build the companion-wide vector index of an embedding model (idempotent)"
    )
    index.add_argument("--model", required=True, help="the embedder's model_id, e.g. bedrock:...:1024")
    index.add_argument("--dims", required=True, type=int, help="its vector dimensions (1-2000)")
    index.set_defaults(run=_embedding_index)
    reembed = commands.add_parser(
        "reembed",
        help="add vectors of another embedding model to every memory, in batches (resumable, idempotent)",
    )
    reembed.add_argument("--provider", required=True, choices=("local", "bedrock", "openai", "hash"))
    reembed.add_argument("--dims", type=int, help="the new model's dimensions (else EMBEDDING_DIMENSIONS)")
    reembed.add_argument("--batch", type=int, default=256, help="memories per embedding call (1-2048)")
    reembed.add_argument("--max-batches", type=int, help="stop after this many batches (default: all)")
    reembed.add_argument("--companion", help="only this companion's memories (default: every tenant)")
    reembed.add_argument("--dry-run", action="store_true", help="only count the memories left to embed")
    reembed.set_defaults(run=_reembed)
    user = commands.add_parser("user", help="a companion's users").add_subparsers(
        dest="user_command", required=True
    )
    erase = user.add_parser(
        "erase",
        help=f"erase a user in every store and print the receipt (owner key in ${OWNER_KEY_VARIABLE})",
    )
    erase.add_argument("--companion", required=True, help="the companion's id")
    erase.add_argument("--user", required=True, help="the user's id")
    erase.set_defaults(run=_user_erase)
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace, Path | None], dict[str, Any]] = args.run

    try:
        result = run(args, LOCAL_ENV_FILE if LOCAL_ENV_FILE.exists() else None)
    except psycopg.OperationalError as error:
        return _fail(f"database unreachable: {str(error).strip().splitlines()[0]}")
    except psycopg.Error as error:  # e.g. a stack not migrated yet: say so in one line, no traceback
        return _fail(f"database error: {str(error).strip().splitlines()[0]}")
    except (CompanionMemoryError, migrations.MigrationError) as error:
        return _fail(str(error))
    finally:
        # Stop the database pool's workers now: left to interpreter exit, each waits 5 s to be joined.
        wiring.reset()
    print(json.dumps(result))
    return 0


def _fail(message: str) -> int:
    print(json.dumps({"error": message}), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
