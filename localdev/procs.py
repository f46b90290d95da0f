"""Background processes of the local stack: spawn detached, find again by pidfile, stop for good.

A pid alone is not proof: after a reboot or a crash the number may belong to someone else, so a
process counts as ours only while its command line still carries the marker we started it with.
"""

import contextlib
import errno
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
_ENV = shutil.which("env") or "/usr/bin/env"


def spawn(argv: Sequence[str], log: Path, env: dict[str, str], cwd: Path) -> int:
    """Start ``argv`` in its own session (its own process group), output appended to ``log``.

    posix_spawn instead of subprocess.Popen: the stack outlives the Python process that starts it,
    and an abandoned Popen object warns ("subprocess is still running") when it is collected.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    # posix_spawn has no cwd argument and os.chdir would move every thread of the caller (tests start
    # stacks mid-session): env(1) changes directory in the child, then execs the program itself.
    command = [_ENV, "-C", str(cwd), *argv]
    return os.posix_spawn(
        command[0],
        command,
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child (tests start the stack in-process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_running(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is a live (not zombie) process whose command line contains ``marker``."""
    if pid is None or pid <= 0:
        return False
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # The state letter follows the parenthesised command name, which may itself contain spaces.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


def identity(pid: int) -> str | None:
    """``pid-starttime``: names one process for good, even after its pid is recycled."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in ("Z", "X") else f"{pid}-{fields[19]}"


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def read_pid_if_running(pidfile: Path, marker: str) -> int | None:
    pid = read_pid(pidfile)
    return pid if is_running(pid, marker) else None


def write_pid(pidfile: Path, pid: int) -> None:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{pid}\n")


def stop_group(pid: int, marker: str, timeout_s: float = 8.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL whatever is left after ``timeout_s``."""
    if not is_running(pid, marker):
        return
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 3.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        if wait_until(lambda: not _group_alive(pid), wait_s):
            return
    raise RuntimeError(f"process group {pid} ({marker}) survived SIGKILL")


def _group_alive(pgid: int) -> bool:
    """Any non-zombie member left in the group (the leader may be gone while its children live on)."""
    _reap(pgid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def port_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers themselves bind: connections of a stopped server lingering in TIME_WAIT
        # must not make its port look taken (it would move on every restart).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def free_ports(count: int, avoid: Iterable[int] = ()) -> list[int]:
    """Ports the kernel considers free right now, distinct from each other and from ``avoid``."""
    taken = set(avoid)
    chosen: list[int] = []
    while len(chosen) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            taken.add(port)
            chosen.append(port)
    return chosen


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"
