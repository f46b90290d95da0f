"""The local stack: PostgreSQL + pgvector, Redis, moto (DynamoDB, KMS, Secrets Manager) and the local gateway.

``python -m localdev.stack up|down|status`` (``make up``, ``make down``, ``make status``). State lives
in one directory (``.local/`` by default; the test suite uses its own): ports, generated passwords,
pidfiles, logs, the PostgreSQL data and ``stack.env``. ``up`` is idempotent: running services are
kept, missing ones are started, resources are created if missing, migrations are applied.
"""

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from localdev import cloud, postgres, procs
from localdev.template import ROOT, Template, load

DEFAULT_STATE_DIR = ROOT / ".local"
PORTS = ("postgres", "redis", "moto", "api", "mcp")
EXIT_SOME_DOWN = 3
_START_TIMEOUT_S = 30.0
# Environment variables the contract promises (DESIGN.md §4 and the test suite); the template must
# provide the resource-naming ones through its functions' environments.
REQUIRED_FROM_TEMPLATE = (
    "SESSIONS_TABLE",
    "IDEMPOTENCY_TABLE",
    "KMS_KEY_ID",
    "DB_SECRET_ARN",
    "DB_OWNER_SECRET_ARN",
    "APP_DB_SECRET_ARN",
    "REDIS_SECRET_ARN",
)


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    ports: tuple[int, ...]
    up: bool


@dataclass(frozen=True)
class _Service:
    """A service we spawn ourselves (PostgreSQL is started by pg_ctl and handled apart)."""

    name: str
    marker: str  # a string in its command line, to tell our process from a recycled pid
    ports: tuple[str, ...]


REDIS = _Service("redis", "redis-server", ("redis",))
MOTO = _Service("moto", "localdev.motoserver", ("moto",))
GATEWAY = _Service("gateway", "localdev.gateway", ("api", "mcp"))


class Stack:
    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR, template: Template | None = None) -> None:
        self.state_dir = state_dir.resolve()
        self._template = template
        self.logs = self.state_dir / "logs"
        self.run = self.state_dir / "run"
        self.env_file = self.state_dir / "stack.env"
        self._state_file = self.state_dir / "state.json"

    # ------------------------------------------------------------------ public API
    def up(self) -> dict[str, str]:
        """Start what is not running, create what is missing; return the stack's environment."""
        with self._locked():
            state = self._load_state()
            run_as = postgres.system_user()
            cluster = self._cluster(state, run_as)
            ports = self._allocate_ports(state, cluster)
            self._save_state(state)
            template = self._template or load()
            wanted = cloud.plan(template)
            redis_secret = self._secret_for(wanted, "REDIS_SECRET_ARN")

            # Redis and moto start in the background while PostgreSQL initialises and starts.
            if not self._alive(REDIS):
                self._write_redis_conf(
                    ports["redis"], template, redis_secret, self._password(state, redis_secret)
                )
                self._spawn(
                    REDIS, ["redis-server", str(self.state_dir / "redis" / "redis.conf")], dict(os.environ)
                )
            if not self._alive(MOTO):
                moto_env = {**os.environ, "LOCALDEV_KMS_SEED": state["kms_seed"]}
                argv = [sys.executable, "-m", "localdev.motoserver", "--port", str(ports["moto"])]
                self._spawn(MOTO, argv, moto_env)
            superuser_password = self._password_named(state, "postgres-superuser", 40)
            if not cluster.initialised():
                cluster.init(superuser_password)
            if cluster.pid() is None:
                cluster.start(ports["postgres"])
            self._save_state(state)
            self._wait_ready(REDIS, ports)
            self._wait_ready(MOTO, ports)

            endpoint = f"http://{procs.LOOPBACK}:{ports['moto']}"
            created = cloud.ensure(endpoint, wanted, lambda spec: self._password(state, spec))
            self._save_state(state)
            owner = self._secret_for(wanted, "DB_OWNER_SECRET_ARN")
            app = self._secret_for(wanted, "APP_DB_SECRET_ARN")
            cluster.bootstrap(
                ports["postgres"], superuser_password, self._username(owner), self._password(state, owner)
            )
            env = self._environment(ports, endpoint, wanted, created, state, owner, app, redis_secret)
            changed = self._write_env(env)
            self._migrate(env)
            self._ensure_gateway(ports, env, restart=changed)
            return env

    def down(self, purge: bool = False) -> None:
        """Stop everything this state directory started; with ``purge``, delete its state and data too."""
        with self._locked():
            state = self._load_state()
            for service in (GATEWAY, MOTO, REDIS):
                pid = procs.read_pid(self._pidfile(service))
                if pid is not None:
                    procs.stop_group(pid, service.marker)
                self._pidfile(service).unlink(missing_ok=True)
            if self._postgres_pid(state) is not None:
                self._cluster(state, postgres.system_user()).stop()
            leftovers = [f"{s.name} (pid {s.pid})" for s in self.status() if s.pid is not None]
            if leftovers:
                raise StackError(f"still running after down: {', '.join(leftovers)}")
            if purge:
                self._purge(state)

    @contextlib.contextmanager
    def shared(self, discard_data: Callable[[], bool] = lambda: False) -> Iterator[dict[str, str]]:
        """Use the stack together with other processes (parallel test sessions, xdist workers).

        Each user holds a lease; the first one starts the stack, the last one to leave stops it, and
        leases of processes that died without leaving are ignored. ``discard_data`` is asked only
        when nobody else is using the stack: true means start from an empty database.
        """
        leases = self.state_dir / "leases"
        mine = leases / (procs.identity(os.getpid()) or str(os.getpid()))
        with self._locked(".leases.lock"):
            if not self._live_leases(leases) and discard_data():
                self.down(purge=True)
            leases.mkdir(parents=True, exist_ok=True)
            mine.touch()
            try:
                env = self.up()
            except BaseException:
                self._leave(leases, mine)
                raise
        try:
            yield env
        finally:
            with self._locked(".leases.lock"):
                self._leave(leases, mine)

    def _leave(self, leases: Path, mine: Path) -> None:
        mine.unlink(missing_ok=True)
        if not self._live_leases(leases):
            self.down()

    @staticmethod
    def _live_leases(leases: Path) -> list[Path]:
        live = []
        for lease in leases.glob("*") if leases.exists() else ():
            pid = lease.name.split("-", 1)[0]
            if pid.isdigit() and procs.identity(int(pid)) == lease.name:
                live.append(lease)
            else:
                lease.unlink(missing_ok=True)
        return live

    def status(self) -> list[ServiceStatus]:
        state = self._load_state()
        ports = state.get("ports", {})
        result: list[ServiceStatus] = []
        pg_pid = self._postgres_pid(state)
        pg_port = ports.get("postgres")
        pg_up = pg_pid is not None and pg_port is not None and procs.port_open(pg_port)
        result.append(ServiceStatus("postgres", pg_pid, (pg_port,) if pg_port else (), pg_up))
        for service in (REDIS, MOTO, GATEWAY):
            pid = procs.read_pid(self._pidfile(service))
            live = procs.is_running(pid, service.marker)
            service_ports = tuple(ports[name] for name in service.ports if name in ports)
            up = live and bool(service_ports) and all(procs.port_open(port) for port in service_ports)
            result.append(ServiceStatus(service.name, pid if live else None, service_ports, up))
        return result

    # ------------------------------------------------------------------ state
    @contextlib.contextmanager
    def _locked(self, name: str = ".lock") -> Iterator[None]:
        # Two `make up` at once on one state directory would race for ports and the initdb.
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / name).open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _load_state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self._state_file.read_text())
        except FileNotFoundError:
            state = {}
        state.setdefault("ports", {})
        state.setdefault("passwords", {})
        state.setdefault("kms_seed", secrets.token_hex(32))
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        _write_private(self._state_file, json.dumps(state, indent=2, sort_keys=True) + "\n")

    def _password_named(self, state: dict[str, Any], name: str, length: int) -> str:
        passwords: dict[str, str] = state["passwords"]
        if name not in passwords:
            passwords[name] = cloud.generate_password(length)
        return passwords[name]

    def _password(self, state: dict[str, Any], spec: cloud.SecretSpec) -> str:
        return self._password_named(state, spec.name, spec.password_length)

    @staticmethod
    def _username(spec: cloud.SecretSpec) -> str:
        return str(spec.fields["username"])

    @staticmethod
    def _secret_for(wanted: cloud.Plan, var: str) -> cloud.SecretSpec:
        logical_id, _ = wanted.references.get(var, ("", ""))
        if logical_id not in wanted.secrets:
            raise StackError(
                f"template.yaml: no function sets {var} to a generated secret the stack can mirror"
            )
        return wanted.secrets[logical_id]

    def _cluster(self, state: dict[str, Any], run_as: postgres.RunAs | None) -> postgres.Cluster:
        if "pg_data_dir" not in state:
            state["pg_data_dir"] = str(postgres.default_data_dir(self.state_dir, run_as))
        return postgres.Cluster(
            postgres.bin_dir(run_as), Path(state["pg_data_dir"]), run_as, self._log("postgres")
        )

    @staticmethod
    def _postgres_pid(state: dict[str, Any]) -> int | None:
        data_dir = state.get("pg_data_dir")
        if not data_dir:
            return None
        return procs.read_pid_if_running(Path(data_dir) / "postmaster.pid", data_dir)

    def _allocate_ports(self, state: dict[str, Any], cluster: postgres.Cluster) -> dict[str, int]:
        """Ports stay the same across restarts; one taken by a stranger while we were down is replaced."""
        ports: dict[str, int] = state["ports"]
        running = {"postgres": cluster.pid() is not None}
        for service in (REDIS, MOTO, GATEWAY):
            for name in service.ports:
                running[name] = self._alive(service)
        for name in PORTS:
            if name in ports and (running[name] or procs.port_free(ports[name])):
                continue
            if name in ports:
                print(
                    f"port {ports[name]} ({name}) is taken by another program; choosing another",
                    file=sys.stderr,
                )
            ports[name] = procs.free_ports(1, avoid=ports.values())[0]
        return ports

    def _purge(self, state: dict[str, Any]) -> None:
        data_dir = Path(state.get("pg_data_dir", self.state_dir / "pgdata"))
        shutil.rmtree(data_dir, ignore_errors=True)
        if data_dir.parent.parent == postgres.SHARED_ROOT:
            shutil.rmtree(data_dir.parent, ignore_errors=True)
        # Only what this stack owns: a developer's .local/ may hold the test stack's directory too.
        for name in ("run", "logs", "redis", "pgdata", "state.json", "stack.env", ".lock"):
            path = self.state_dir / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ processes
    def _pidfile(self, service: _Service) -> Path:
        return self.run / f"{service.name}.pid"

    def _log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def _alive(self, service: _Service) -> bool:
        return procs.is_running(procs.read_pid(self._pidfile(service)), service.marker)

    def _spawn(self, service: _Service, argv: list[str], env: dict[str, str]) -> None:
        executable = shutil.which(argv[0]) if not os.path.isabs(argv[0]) else argv[0]
        if executable is None:
            raise StackError(f"{argv[0]} not found on PATH (apt-get install -y redis-server)")
        pid = procs.spawn([executable, *argv[1:]], self._log(service.name), env, ROOT)
        procs.write_pid(self._pidfile(service), pid)

    def _wait_ready(self, service: _Service, ports: dict[str, int]) -> None:
        pid = procs.read_pid(self._pidfile(service))

        def ready() -> bool:
            if not procs.is_running(pid, service.marker):
                raise StackError(
                    f"{service.name} exited; see {self._log(service.name)}:\n{self._tail(service)}"
                )
            return all(procs.port_open(ports[name]) for name in service.ports)

        if not procs.wait_until(ready, _START_TIMEOUT_S):
            # A service that never opened its port is stopped, not left running with no one to stop it.
            procs.stop_group(pid or 0, service.marker)
            self._pidfile(service).unlink(missing_ok=True)
            raise StackError(
                f"{service.name} did not open its port in {_START_TIMEOUT_S:.0f} s:\n{self._tail(service)}"
            )

    def _tail(self, service: _Service) -> str:
        return procs.tail(self._log(service.name))

    def _ensure_gateway(self, ports: dict[str, int], env: dict[str, str], restart: bool) -> None:
        if self._alive(GATEWAY):
            if not restart:
                return
            # It read the old stack.env: ports or ARNs moved under it.
            procs.stop_group(procs.read_pid(self._pidfile(GATEWAY)) or 0, GATEWAY.marker)
        argv = [
            sys.executable,
            "-m",
            "localdev.gateway",
            "--api-port",
            str(ports["api"]),
            "--url-port",
            str(ports["mcp"]),
        ]
        self._spawn(GATEWAY, argv, {**os.environ, **env})
        self._wait_ready(GATEWAY, ports)

    # ------------------------------------------------------------------ configuration
    def _write_redis_conf(
        self, port: int, template: Template, secret: cloud.SecretSpec, password: str
    ) -> None:
        directory = self.state_dir / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        lines = [
            f"bind {procs.LOOPBACK}",
            f"port {port}",
            "protected-mode yes",
            "daemonize no",
            f'dir "{directory}"',
            # A cache, never the only copy of anything (DESIGN.md §3): no persistence.
            'save ""',
            "appendonly no",
            *self._redis_users(template, self._username(secret), password),
        ]
        _write_private(directory / "redis.conf", "\n".join(lines) + "\n")

    @staticmethod
    def _redis_users(template: Template, username: str, password: str) -> list[str]:
        """The template's ElastiCache RBAC users as Redis ACL lines, so local auth is as strict as AWS."""
        lines: list[str] = []
        for resource in template.resources_of_type("AWS::ElastiCache::User").values():
            props = resource.get("Properties", {})
            name, access = props.get("UserName"), props.get("AccessString")
            if not isinstance(name, str) or not isinstance(access, str):
                continue
            mode = props.get("AuthenticationMode", {}).get("Type")
            if name == username:
                lines.append(f"user {name} reset {access} >{password}")
            elif mode == "no-password-required":
                lines.append(f"user {name} reset {access} nopass")
        if not any(line.startswith(f"user {username} ") for line in lines):
            lines.append(f"user {username} reset on ~* &* +@all >{password}")
        return lines

    def _environment(
        self,
        ports: dict[str, int],
        endpoint: str,
        wanted: cloud.Plan,
        created: cloud.Created,
        state: dict[str, Any],
        owner: cloud.SecretSpec,
        app: cloud.SecretSpec,
        redis_secret: cloud.SecretSpec,
    ) -> dict[str, str]:
        host = procs.LOOPBACK
        db = f"{host}:{ports['postgres']}/{postgres.DATABASE}?sslmode=disable"

        def url(scheme: str, spec: cloud.SecretSpec, where: str) -> str:
            return f"{scheme}://{quote(self._username(spec))}:{quote(self._password(state, spec))}@{where}"

        api, mcp = ports["api"], ports["mcp"]
        env = {
            "STAGE": "local",
            "API_URL": f"http://{host}:{api}",
            "MCP_URL": f"http://{host}:{mcp}/mcp",
            "DATABASE_URL": url("postgresql", app, db),
            "DATABASE_OWNER_URL": url("postgresql", owner, db),
            "REDIS_URL": url("redis", redis_secret, f"{host}:{ports['redis']}/0"),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": cloud.REGION,
            "AWS_DEFAULT_REGION": cloud.REGION,
            "AWS_ACCESS_KEY_ID": cloud.CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": cloud.CREDENTIALS["aws_secret_access_key"],
            **cloud.environment(wanted, created),
            "DB_HOST": host,
            "DB_PORT": str(ports["postgres"]),
            "DB_NAME": postgres.DATABASE,
            "DB_SSLMODE": "disable",
            # The offline local model (extra `local-embeddings`), not Bedrock: the stack reaches no AWS.
            "EMBEDDING_PROVIDER": "local",
            "POWERTOOLS_SERVICE_NAME": "companion-memory",
            "POWERTOOLS_METRICS_NAMESPACE": "CompanionMemory",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
            "MCP_ALLOWED_HOSTS": json.dumps([f"{h}:{p}" for p in (mcp, api) for h in (host, "localhost")]),
            "MCP_ALLOWED_ORIGINS": json.dumps(
                [f"http://{h}:{p}" for p in (mcp, api) for h in (host, "localhost")]
            ),
        }
        missing = [var for var in REQUIRED_FROM_TEMPLATE if var not in env]
        if missing:
            raise StackError(f"template.yaml names no resource for {', '.join(missing)} in any function")
        return env

    def _write_env(self, env: dict[str, str]) -> bool:
        """Write stack.env; True when its content changed."""
        lines = [
            "# Written by `make up` (localdev/stack.py). Load with: set -a; source .local/stack.env; set +a"
        ]
        for key, value in env.items():
            # Single-quoted values are read alike by sh and python-dotenv, as long as none holds a quote.
            if "'" in value:
                raise StackError(f"{key} holds a single quote; stack.env could not be read back safely")
            lines.append(f"{key}={shlex.quote(value)}")
        content = "\n".join(lines) + "\n"
        if self.env_file.exists() and self.env_file.read_text() == content:
            return False
        _write_private(self.env_file, content)
        return True

    def _migrate(self, env: dict[str, str]) -> None:
        # cwd is the state directory: the CLI falls back to ./.local/stack.env, which must never be
        # another stack's file (the test stack runs beside a developer's).
        result = subprocess.run(
            # `companion-memory migrate`, through this interpreter: the console script's shebang
            # may name a venv path this user cannot read (a copied or relocated venv).
            [sys.executable, "-m", "companion_memory.cli", "migrate"],
            env={**os.environ, **env},
            cwd=self.state_dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        with self._log("migrate").open("a") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            log.write(f"--- {stamp} exit {result.returncode}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise StackError(
                f"companion-memory migrate failed:\n{result.stderr.strip() or result.stdout.strip()}"
            )


def _write_private(path: Path, content: str) -> None:
    """Write a file that holds passwords: owner-only from its first byte, replaced atomically."""
    staging = path.with_name(path.name + ".tmp")
    with os.fdopen(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        os.fchmod(file.fileno(), 0o600)  # a staging file a crash left behind keeps its old mode otherwise
        file.write(content)
    staging.replace(path)


@dataclass(frozen=True)
class Running:
    """A started stack and its environment: what the test suite's ``stack`` fixture yields."""

    stack: Stack
    env: dict[str, str]

    @property
    def state_dir(self) -> Path:
        return self.stack.state_dir


def _print_status(statuses: list[ServiceStatus]) -> None:
    for service in statuses:
        ports = ",".join(str(port) for port in service.ports) or "-"
        state = "up" if service.up else "down"
        pid = service.pid if service.pid is not None else "-"
        print(f"  {service.name:<9} {state:<5} pid {pid!s:<8} port {ports}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.stack", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="default: .local/")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the stack (idempotent) and write stack.env")
    down = commands.add_parser("down", help="stop everything `up` started (data is kept)")
    down.add_argument("--purge", action="store_true", help="also delete the data, logs and passwords")
    commands.add_parser("status", help="show each service; exit 3 when some are down")
    args = parser.parse_args(argv)
    stack = Stack(args.state_dir)

    try:
        if args.command == "up":
            started = time.monotonic()
            env = stack.up()
            _print_status(stack.status())
            print(f"\nlocal stack up in {time.monotonic() - started:.1f} s")
            print(f"  API_URL={env['API_URL']}\n  MCP_URL={env['MCP_URL']}")
            print(f"  environment: set -a; source {_display(stack.env_file)}; set +a")
            return 0
        if args.command == "down":
            started = time.monotonic()
            stack.down(purge=args.purge)
            print(
                f"local stack down in {time.monotonic() - started:.1f} s"
                + (" (state purged)" if args.purge else "")
            )
            return 0
        statuses = stack.status()
        _print_status(statuses)
        return 0 if all(s.up for s in statuses) else EXIT_SOME_DOWN
    except (StackError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "output", None)
        print(f"error: {error}" + (f"\n{detail}" if detail else ""), file=sys.stderr)
        return 1


def _display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
