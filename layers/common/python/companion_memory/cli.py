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

from companion_memory.adapters import migrations
from companion_memory.config import MigrateSettings
from companion_memory.errors import CompanionMemoryError

LOCAL_ENV_FILE = Path(".local/stack.env")


def _migrate(_: argparse.Namespace, env_file: Path | None) -> dict[str, Any]:
    return migrations.migrate(MigrateSettings(_env_file=env_file))


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
