"""``companion-memory``: the operator CLI (also used by the local stack).

Reads its settings from the environment, falling back to ``.local/stack.env`` when run from a
checkout with the local stack up.
"""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from companion_memory.adapters import migrations
from companion_memory.config import MigrateSettings
from companion_memory.errors import CompanionMemoryError

LOCAL_ENV_FILE = Path(".local/stack.env")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="companion-memory", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending SQL migrations (idempotent)").set_defaults(
        run=_migrate
    )
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace, Path | None], dict[str, Any]] = args.run

    try:
        result = run(args, LOCAL_ENV_FILE if LOCAL_ENV_FILE.exists() else None)
    except psycopg.OperationalError as error:
        return _fail(f"database unreachable: {str(error).strip().splitlines()[0]}")
    except (CompanionMemoryError, migrations.MigrationError) as error:
        return _fail(str(error))
    print(json.dumps(result))
    return 0


def _fail(message: str) -> int:
    print(json.dumps({"error": message}), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
