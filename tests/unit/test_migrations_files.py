from pathlib import Path

import pytest

from companion_memory.adapters.migrations import MigrationError, bundled, discover, scram_sha_256


def test_bundled_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in bundled()]
    assert versions == list(range(1, len(versions) + 1))


def test_files_are_applied_in_version_order(tmp_path: Path) -> None:
    (tmp_path / "0002_second.sql").write_text("SELECT 2;")
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "README.md").write_text("not a migration")
    assert [m.name for m in discover(tmp_path)] == ["first", "second"]


def test_a_misnamed_sql_file_is_an_error_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "1_first.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_lower_snake"):
        discover(tmp_path)


def test_two_files_with_one_version_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="share a version"):
        discover(tmp_path)


def test_scram_verifier_has_postgres_format_and_hides_the_password() -> None:
    verifier = scram_sha_256("correct horse", salt=b"\x00" * 16)
    assert verifier.startswith("SCRAM-SHA-256$4096:AAAAAAAAAAAAAAAAAAAAAA==$")
    assert "correct horse" not in verifier
    assert scram_sha_256("correct horse") != scram_sha_256("correct horse")  # random salt each time
