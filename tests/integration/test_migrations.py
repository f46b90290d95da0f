"""Migrations against the real local PostgreSQL: idempotent, drift-detecting, least-privilege app role."""

import os

import psycopg
import pytest
from psycopg import errors

from companion_memory.adapters import migrations
from companion_memory.cli import main as cli_main
from companion_memory.config import MigrateSettings


@pytest.fixture
def owner_url(stack: object) -> str:
    return os.environ["DATABASE_OWNER_URL"]


def test_applying_twice_is_a_no_op(owner_url: str) -> None:
    # Given the stack already migrated on start-up
    settings = MigrateSettings()
    # When the migrations run again
    result = migrations.migrate(settings)
    # Then nothing is applied and the version is the newest file's
    assert result["applied"] == []
    assert result["version"] == migrations.bundled()[-1].version


def test_the_cli_reports_the_schema_version_as_json(
    capsys: pytest.CaptureFixture[str], stack: object
) -> None:
    assert cli_main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert f'"version": {migrations.bundled()[-1].version}' in out


def test_an_applied_migration_that_was_edited_is_refused(owner_url: str) -> None:
    # Given a scratch schema history where migration 1 was applied with other content
    edited = [migrations.Migration(1, "foundation", "-- edited after the fact\nSELECT 1;")]
    with pytest.raises(migrations.MigrationError, match="changed after it was applied"):
        migrations.apply(owner_url, edited)


def test_a_failing_migration_leaves_the_schema_at_the_last_good_version(owner_url: str) -> None:
    # Given the current migrations plus a broken one after them
    current = migrations.bundled()
    broken_sql = "CREATE TABLE half_done (id int); SELECT 1/0;"
    broken = migrations.Migration(current[-1].version + 1, "broken", broken_sql)
    # When it is applied
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrations.apply(owner_url, [*current, broken])
    # Then neither its table nor its version row exist
    with psycopg.connect(owner_url) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert migrations.current_version(owner_url) == current[-1].version


def test_the_app_role_logs_in_with_its_secret_and_owns_nothing(stack: object) -> None:
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        role = conn.execute(
            "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = current_user"
        ).fetchone()
        assert role == ("companion_app", False, False, False, False)
        # It cannot change the schema
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE intruder (id int)")
        conn.rollback()
        # And pgvector is there for it to use
        assert conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,4]'").fetchone() == (1.0,)
