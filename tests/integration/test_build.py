"""`sam build` on this machine (no Docker) produces a layer Lambda can load: python3.13 on arm64.

The build runs once for the module, into a temporary --build-dir, so it never touches a developer's
.aws-sam. The layer's compiled code cannot run here (x86_64), so it is inspected, not imported:
wheel tags, ELF headers, bytecode headers and file layout.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
# Pure wheels, or CPython 3.13 (or the stable ABI) for manylinux on aarch64.
ALLOWED_TAG = re.compile(
    r"^(py2|py3|py2\.py3)-none-any$"
    r"|^cp313-cp313-manylinux[0-9_]*_aarch64$"
    r"|^cp3\d+-abi3-manylinux[0-9_]*_aarch64$"
)
EM_AARCH64 = 183
LIMIT_BYTES = 100 * 1024 * 1024


def sam_executable() -> str:
    found = shutil.which("sam") or str(ROOT / ".tools" / "sam" / "bin" / "sam")
    if not Path(found).exists():
        pytest.fail("SAM CLI not found: run `make test` (it installs .tools/sam) or put `sam` on PATH")
    return found


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # SAM writes build.toml next to --build-dir: keep both inside the temporary folder.
    target = tmp_path_factory.mktemp("sam") / "build"
    venv_bin = Path(sys.executable).parent  # python3.13 with uv: what the layer Makefile calls
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["SAM_CLI_TELEMETRY"] = "0"
    template = ROOT / "template.yaml"
    result = subprocess.run(
        [sam_executable(), "build", "--build-dir", str(target), "--template-file", str(template)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"sam build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return target


@pytest.fixture(scope="module")
def layer(build_dir: Path) -> Path:
    return build_dir / "CommonLayer" / "python"


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def test_every_wheel_in_the_layer_targets_cp313_on_aarch64_or_is_pure(layer: Path) -> None:
    # Given the built layer
    wheels = sorted(layer.glob("*.dist-info/WHEEL"))
    assert wheels, "no installed distributions in the layer"
    # When reading every wheel's tags
    bad = {
        wheel.parent.name: tag
        for wheel in wheels
        for line in wheel.read_text().splitlines()
        if line.startswith("Tag: ") and not ALLOWED_TAG.match(tag := line.removeprefix("Tag: ").strip())
    }
    # Then each one is pure or built for CPython 3.13 / abi3 on manylinux aarch64
    assert bad == {}


def test_every_shared_object_in_the_layer_is_an_aarch64_elf(layer: Path) -> None:
    shared_objects = [p for p in layer.rglob("*") if p.is_file() and re.search(r"\.so(\.|$)", p.name)]
    assert shared_objects, "expected compiled extensions (pydantic_core, psycopg_binary, ...)"
    wrong = []
    for path in shared_objects:
        header = path.read_bytes()[:20]
        # ELF magic, then e_machine (little-endian uint16 at offset 18)
        if header[:4] != b"\x7fELF" or int.from_bytes(header[18:20], "little") != EM_AARCH64:
            wrong.append(str(path.relative_to(layer)))
    assert wrong == []
    assert [p.name for p in shared_objects if "x86_64" in p.name] == []


def test_the_package_sits_at_python_companion_memory_with_real_migration_files(layer: Path) -> None:
    package = layer / "companion_memory"
    assert (package / "__init__.py").is_file()
    shipped = package / "migrations"
    assert shipped.is_dir()
    assert not shipped.is_symlink()
    source_sql = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    assert source_sql, "migrations/ has no .sql files"
    assert sorted(p.name for p in shipped.glob("*.sql")) == source_sql
    for sql in shipped.glob("*.sql"):
        assert sql.is_file()
        assert not sql.is_symlink()
        assert sql.read_bytes() == (ROOT / "migrations" / sql.name).read_bytes()


def test_the_layer_holds_no_part_of_the_runtime_provided_sdk(layer: Path) -> None:
    present = [
        p.name for name in RUNTIME_PROVIDED for p in [*layer.glob(name), *layer.glob(f"{name}-*.dist-info")]
    ]
    assert present == []


def test_every_module_has_unchecked_hash_bytecode_for_python_3_13(layer: Path) -> None:
    # Given every Python source in the layer
    sources = [p for p in layer.rglob("*.py") if "__pycache__" not in p.parts]
    assert len(sources) > 100
    missing, stale = [], []
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        if not pyc.is_file():
            missing.append(str(source.relative_to(layer)))
            continue
        # Then its .pyc exists and is hash-based without a source check (flags == 0b01), so the
        # 1980 mtime SAM's zip gives the sources cannot invalidate it on Lambda.
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        if flags != 0b01:
            stale.append(str(pyc.relative_to(layer)))
    assert missing == []
    assert stale == []


def test_functions_ship_only_their_handler(build_dir: Path) -> None:
    for function_dir in (p for p in build_dir.iterdir() if p.is_dir() and p.name != "CommonLayer"):
        names = {p.name for p in function_dir.iterdir()}
        assert "app.py" in names, function_dir.name
        assert names <= {"app.py", "__pycache__"}, f"{function_dir.name} ships {sorted(names)}"


def test_layer_plus_largest_function_stays_under_100_mb_unzipped(build_dir: Path, layer: Path) -> None:
    functions = [tree_size(p) for p in build_dir.iterdir() if p.is_dir() and p.name != "CommonLayer"]
    total = tree_size(layer.parent) + max(functions)
    assert total < LIMIT_BYTES, f"{total / 2**20:.1f} MiB"
