"""template.yaml passes SAM's and CloudFormation's linters offline (both run without AWS credentials)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str, fallback: Path) -> str:
    found = shutil.which(name) or str(fallback)
    if not Path(found).exists():
        pytest.fail(f"{name} not found: run `make test` (it installs the tools) or put it on PATH")
    return found


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["SAM_CLI_TELEMETRY"] = "0"
    # Linters must not need an account: no region, no credentials beyond what the caller has.
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_sam_validate_lint_passes() -> None:
    sam = tool("sam", ROOT / ".tools" / "sam" / "bin" / "sam")
    result = run([sam, "validate", "--lint", "--template-file", str(ROOT / "template.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_passes() -> None:
    cfn_lint = tool("cfn-lint", Path(sys.executable).parent / "cfn-lint")
    result = run([cfn_lint, "template.yaml"])
    assert result.returncode == 0, result.stdout + result.stderr
