"""layers/common/requirements.txt is generated from pyproject.toml and pins everything it declares."""

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "layers" / "common" / "requirements.txt"
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer"}
# Markers are evaluated for the Lambda target, not for this machine.
LAMBDA_ENV: dict[str, str] = {
    **{key: str(value) for key, value in default_environment().items()},
    "python_version": "3.13",
    "python_full_version": "3.13.0",
    "platform_machine": "aarch64",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def lambda_environment(extra: str) -> dict[str, str]:
    return {**LAMBDA_ENV, "extra": extra}


def declared() -> list[Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(line) for line in pyproject["project"]["dependencies"]]


def pins() -> dict[str, Version]:
    pinned: dict[str, Version] = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1, f"not an exact pin: {line}"
        assert specifiers[0].operator == "==", f"not an exact pin: {line}"
        pinned[canonicalize_name(requirement.name)] = Version(specifiers[0].version)
    return pinned


def test_requirements_file_is_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "layer_requirements.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_every_declared_dependency_is_satisfied_by_a_pin() -> None:
    pinned = pins()
    unsatisfied = {
        str(requirement): str(pinned.get(canonicalize_name(requirement.name)))
        for requirement in declared()
        if not requirement.specifier.contains(
            pinned.get(canonicalize_name(requirement.name), Version("0")), prereleases=True
        )
    }
    assert unsatisfied == {}


def test_every_requested_extra_is_pinned_too() -> None:
    # Given e.g. psycopg[binary,pool]: psycopg-binary and psycopg-pool must be in the layer as well
    pinned = pins()
    missing: list[str] = []
    for requirement in declared():
        for extra in requirement.extras:
            for dependency in metadata.requires(requirement.name) or []:
                needed = Requirement(dependency)
                if needed.marker is None or not needed.marker.evaluate(lambda_environment(extra)):
                    continue
                name = canonicalize_name(needed.name)
                if name in RUNTIME_PROVIDED:
                    continue
                if name not in pinned or not needed.specifier.contains(pinned[name], prereleases=True):
                    missing.append(f"{requirement.name}[{extra}] -> {needed}")
    assert missing == []


def test_runtime_provided_sdk_is_not_pinned() -> None:
    assert RUNTIME_PROVIDED & set(pins()) == set()
