"""Cold start: how long a fresh python3.13 takes to import each function's handler module.

    make bench                      # sam build, then this
    .venv/bin/python bench/coldstart.py [--runs 11] [--build-dir .aws-sam/build]

What runs: for every function of template.yaml, a fresh interpreter imports `app` from
`<build-dir>/<LogicalId>/` with the layer and a stand-in of the Lambda runtime's boto3 on sys.path,
in the order Lambda uses (task, layer, runtime), with the function's environment from the template
(intrinsics replaced by stand-in values: wiring is lazy, so init connects nowhere). The time is taken
inside the child around the import, so interpreter start-up is excluded from every row alike.

The built layer holds aarch64 wheels and this machine may not be aarch64, so the compiled extensions
(pydantic_core, psycopg_binary, cryptography, ...) cannot load here. The bench therefore builds the
layer a second time with the same Makefile and PLATFORM=<this machine> into a temporary folder: same
pins, same file layout, same unchecked-hash bytecode; only the native libraries differ (the bench
prints how many files differ). Two baselines are measured in the same rounds: `import boto3` from the
runtime stand-in, and a naive handler importing the whole dependency set from a plain site-packages
without bytecode (never written either: -B).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from localdev import template as cfn_template

ROOT = Path(__file__).resolve().parent.parent

RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six")
NAIVE_HANDLER = '''\
"""A handler written without care for init: every dependency, imported at module level."""
import boto3
import cryptography.hazmat.primitives.ciphers.aead
import jwt
import mangum
import mcp
import mcp.server.mcpserver
import pgvector.psycopg
import psycopg
import psycopg_pool
import pydantic
import pydantic_settings
import redis
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

logger, tracer, metrics = Logger(), Tracer(), Metrics()
app = APIGatewayHttpResolver()


def lambda_handler(event, context):
    return app.resolve(event, context)
'''
# Runs in the child: put the given folders first, import, report the time and any module that was
# found outside those folders and the standard library (which would make the number meaningless).
CHILD = """\
import importlib, json, sys, time
paths, module, stdlib = json.loads(sys.argv[1]), sys.argv[2], tuple(json.loads(sys.argv[3]))
sys.path[:0] = paths
started = time.perf_counter_ns()
importlib.import_module(module)
elapsed = time.perf_counter_ns() - started
allowed = tuple(paths) + stdlib
outside = sorted(
    name for name, m in list(sys.modules.items())
    if isinstance(getattr(m, "__file__", None), str) and not m.__file__.startswith(allowed)
)
print(json.dumps({"ns": elapsed, "outside": outside[:5]}))
"""


@dataclass
class Subject:
    name: str
    module: str
    paths: list[Path]
    env: dict[str, str]
    samples_ms: list[float] = field(default_factory=list)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, text=True, capture_output=True, **kwargs)


def machine_platform() -> str:
    machine = platform.machine()
    if machine in ("x86_64", "AMD64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    raise SystemExit(f"unsupported machine {machine}")


def build_layer(destination: Path) -> Path:
    """The common layer for this machine's architecture, with the layer's own Makefile."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(ROOT / "layers" / "common"),
            "build-CommonLayer",
            f"ARTIFACTS_DIR={destination}",
            f"PLATFORM={machine_platform()}",
        ],
        env=env,
    )
    return destination / "python"


def build_runtime(destination: Path) -> Path:
    """A stand-in for the runtime's boto3: the venv's versions, precompiled like the layer."""
    pins = [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]
    python_platform = f"{platform.machine()}-manylinux_2_28"
    run(
        [
            *(sys.executable, "-m", "uv", "pip", "install", "--quiet", "--no-deps", "--no-compile"),
            *("--only-binary", ":all:", "--python-version", "3.13", "--python-platform", python_platform),
            *("--target", str(destination), *pins),
        ]
    )
    shutil.rmtree(destination / "bin", ignore_errors=True)
    compile_tree(destination)
    return destination


def compile_tree(path: Path) -> None:
    run(
        [
            *(sys.executable, "-m", "compileall", "-f", "-q", "-j", "0"),
            *("--invalidation-mode", "unchecked-hash", str(path)),
        ]
    )


def copy_without_bytecode(source: Path, destination: Path, skip: tuple[str, ...] = ()) -> None:
    shutil.copytree(
        source,
        destination,
        dirs_exist_ok=True,
        ignore=lambda folder, names: [
            n for n in names if n == "__pycache__" or n.endswith(".pyc") or n in skip
        ],
    )


def layout_difference(artifact: Path, bench: Path) -> tuple[int, list[str], int]:
    """(files compared, files differing, files only on one side), native libraries and wheel tags aside."""

    def comparable(root: Path) -> dict[str, Path]:
        files = {}
        for path in root.rglob("*"):
            relative = path.relative_to(root)
            native = ".so" in path.name or any(part.endswith(".libs") for part in relative.parts)
            if path.is_file() and not native and path.name not in ("RECORD", "WHEEL"):
                files[str(relative)] = path
        return files

    left, right = comparable(artifact), comparable(bench)
    common = left.keys() & right.keys()
    differing = sorted(name for name in common if left[name].read_bytes() != right[name].read_bytes())
    return len(common), differing, len(left.keys() ^ right.keys())


def stand_in(name: str, value: Any) -> str:
    """A literal from the template as is; an intrinsic (resolved by CloudFormation) as a harmless stand-in."""
    if isinstance(value, str | int | float):
        return str(value)
    if name == "KMS_KEY_ID":
        return "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    if name.endswith("_ARN"):
        return f"arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-{name.lower()}"
    if name.endswith("_HOST"):
        return "bench.invalid"
    if name.endswith("_PORT"):
        return "6379" if name.startswith("REDIS") else "5432"
    if name == "MCP_ALLOWED_ORIGINS":
        return '["https://bench.invalid"]'
    if name.startswith("MCP_ALLOWED"):
        return '["bench.invalid"]'
    return f"bench-{name.lower().replace('_', '-')}"


def lambda_environment(function: str, task_root: Path, variables: dict[str, Any]) -> dict[str, str]:
    # What the Lambda runtime sets (so Powertools and the X-Ray SDK behave as in a sandbox), fake
    # credentials so no client goes looking for real ones, and no HOME (no ~/.aws to read).
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        **{key: stand_in(key, value) for key, value in variables.items()},
    }


def measure(subject: Subject, stdlib: list[str]) -> float:
    # -I: no user site, no PYTHON* variables, no script folder; -S: no site-packages at all (only the
    # given folders); -B: never write bytecode (the naive baseline stays without it, run after run).
    completed = run(
        [
            sys.executable,
            "-I",
            "-S",
            "-B",
            "-c",
            CHILD,
            json.dumps([str(p) for p in subject.paths]),
            subject.module,
            json.dumps(stdlib),
        ],
        env=subject.env,
        cwd=subject.paths[0],
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["outside"]:
        raise SystemExit(f"{subject.name}: modules imported from outside the test paths: {result['outside']}")
    return float(result["ns"]) / 1e6


def summarise(subjects: list[Subject]) -> str:
    boto3 = statistics.median(subjects[0].samples_ms)
    naive = statistics.median(subjects[-1].samples_ms)
    lines = [
        "| function | median ms | p90 ms | min-max ms | vs `import boto3` | vs naive |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for subject in subjects:
        samples = subject.samples_ms
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10, method="inclusive")[8]
        lines.append(
            f"| {subject.name} | {median:.0f} | {p90:.0f} | {min(samples):.0f}-{max(samples):.0f} "
            f"| {median / boto3:.2f}x | {median / naive:.2f}x |"
        )
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="measured runs per subject (at least 7)")
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    args = parser.parse_args()
    if args.runs < 7:
        parser.error("--runs must be at least 7")
    build_dir: Path = args.build_dir.resolve()
    if not (build_dir / "CommonLayer" / "python").is_dir():
        raise SystemExit(f"no built layer in {build_dir}: run `make build` (or `make bench`) first")

    functions = cfn_template.load().functions
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        work = Path(tmp)
        print(
            f"building the layer for {machine_platform()} and a runtime stand-in in {work} ...",
            file=sys.stderr,
        )
        layer = build_layer(work / "layer")
        runtime = build_runtime(work / "runtime")
        compared, differing, one_sided = layout_difference(build_dir / "CommonLayer" / "python", layer)

        naive_site = work / "naive" / "site-packages"
        copy_without_bytecode(layer, naive_site, skip=("companion_memory",))
        copy_without_bytecode(runtime, naive_site)
        naive_task = work / "naive" / "task"
        naive_task.mkdir(parents=True)
        (naive_task / "naive_app.py").write_text(NAIVE_HANDLER)

        mcp_variables = functions["McpFunction"].environment if "McpFunction" in functions else {}
        subjects = [Subject("`import boto3`", "boto3", [runtime], lambda_environment("boto3", runtime, {}))]
        for logical_id, function in sorted(functions.items()):
            task = build_dir / logical_id
            module = function.handler.rsplit(".", 1)[0]
            if not (task / function.handler_file.relative_to(function.code_uri)).is_file():
                raise SystemExit(f"{logical_id}: no {module} in {task}; rebuild with `make build`")
            env = lambda_environment(logical_id, task, function.environment)
            subjects.append(Subject(logical_id, module, [task, layer, runtime], env))
        naive_env = lambda_environment("NaiveFunction", naive_task, mcp_variables)
        subjects.append(
            Subject("naive handler (all deps, no bytecode)", "naive_app", [naive_task, naive_site], naive_env)
        )

        stdlib = sorted({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
        for round_ in range(args.runs + 1):  # round 0 warms the page cache and is discarded
            for subject in subjects:  # interleaved, so a noisy moment hits every row alike
                elapsed = measure(subject, stdlib)
                if round_:
                    subject.samples_ms.append(elapsed)

    print(
        f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.machine()}, "
        f"Python {platform.python_version()}; {args.runs} runs per row after one discarded warm-up round."
    )
    print(
        f"Bench layer vs built artifact: {compared} files compared, {len(differing)} differ, "
        f"{one_sided} on one side only (native libraries and wheel tags excluded)."
    )
    if differing:
        print(f"Differing: {', '.join(differing[:8])}{' ...' if len(differing) > 8 else ''}")
    print()
    print(summarise(subjects))
    return 0


if __name__ == "__main__":
    sys.exit(main())
