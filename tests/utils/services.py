"""Private PostgreSQL and Redis servers for the tests, started from the binaries on this machine.

Each lives in a temporary directory of its own and listens on 127.0.0.1 on a free port, so the
tests never use, nor restart, a server that runs on the machine for anything else. PostgreSQL
refuses to run as root: under root its programs run as an unprivileged system user (`postgres`
where it exists, else `nobody`) that owns the directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "postgres"  # the cluster's superuser role, whatever the system user running it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bindir() -> Path | None:
    """The directory holding `initdb`, `pg_ctl` and `postgres`: RLHF_PG_BINDIR when set, else
    `pg_config --bindir`, the newest /usr/lib/postgresql/*/bin, or PATH's; None when PostgreSQL's
    server is not installed there."""
    if env := os.environ.get("RLHF_PG_BINDIR"):
        return _server_bindir([Path(env)])
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            candidates.append(Path(done.stdout.strip()))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in versions), key=lambda p: _version(p.parent.name), reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    return _server_bindir(candidates)


def _server_bindir(candidates: list[Path]) -> Path | None:
    for bindir in candidates:
        if all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and no `postgres` or `nobody` user exists to run PostgreSQL as")


class PrivatePostgres:
    """A PostgreSQL cluster of the tests: `initdb` into a temporary directory, trust auth, no
    fsync, a free port on 127.0.0.1 and its Unix socket inside the directory."""

    def __init__(self, bindir: Path, root: Path | None = None) -> None:
        self.bindir = bindir
        self.run_as: pwd.struct_passwd | None = _unprivileged_user() if os.geteuid() == 0 else None
        self.root = root or Path(tempfile.mkdtemp(prefix="rlhf-test-pg-", dir=self._parent_dir()))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.host = "127.0.0.1"

    def _parent_dir(self) -> str:
        """The temporary directory, or /tmp when the user running PostgreSQL could not reach it."""
        parent = Path(tempfile.gettempdir()).resolve()
        if self.run_as is None:
            return str(parent)
        reachable = all(p.stat().st_mode & 0o001 for p in [parent, *parent.parents])
        return str(parent) if reachable else "/tmp"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def _as_owner(self, *argv: str | Path) -> list[str]:
        command = [str(a) for a in argv]
        if self.run_as is None:
            return command
        if runuser := shutil.which("runuser"):
            return [runuser, "-u", self.run_as.pw_name, "--", *command]
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise RuntimeError("running as root, and neither runuser nor setpriv is installed")
        ids = [f"--reuid={self.run_as.pw_uid}", f"--regid={self.run_as.pw_gid}", "--clear-groups"]
        return [setpriv, *ids, *command]

    def _run(self, *argv: str | Path, timeout: float = 120) -> None:
        done = subprocess.run(
            self._as_owner(*argv), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"`{shlex.join(str(a) for a in argv[:2])} …` failed ({done.returncode}): "
                f"{done.stderr or done.stdout}{self.log_tail()}"
            )

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def _pg_ctl(self, action: str, *options: str) -> list[str]:
        return [str(self.bindir / "pg_ctl"), action, "-D", str(self.data_dir), "-w", "-t", "60", *options]

    def start(self) -> PrivatePostgres:
        """initdb and start; the directory is removed again if either fails."""
        try:
            self.socket_dir.mkdir(parents=True, exist_ok=True)
            if self.run_as is not None:
                for path in (self.root, self.socket_dir):
                    os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)
            self._initdb()
            for attempt in range(3):
                try:
                    self._run(*self._pg_ctl("start", "-l", str(self.log)))
                    break
                except RuntimeError:
                    if attempt == 2 or "could not bind" not in self.log_tail():
                        raise
                    self.port = free_port()  # taken meanwhile: the last setting in the file wins
                    with (self.data_dir / "postgresql.conf").open("a") as conf:
                        conf.write(f"port = {self.port}\n")
        except BaseException:
            self.remove()
            raise
        return self

    def _initdb(self) -> None:
        base = [self.bindir / "initdb", "-D", self.data_dir, "-U", SUPERUSER, "--auth=trust", "--no-sync",
                "-E", "UTF8", "--no-instructions"]  # fmt: skip
        try:
            self._run(*base, "--locale=C.UTF-8")
        except RuntimeError:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self._run(*base, "--no-locale")  # a machine without the C.UTF-8 locale
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# the tests' private cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def restart_command(self) -> list[str]:
        """The command that restarts this cluster (fast shutdown, then start; waits for both)."""
        return self._as_owner(*self._pg_ctl("restart", "-m", "fast", "-l", str(self.log)))

    def restart(self) -> None:
        self._run(*self._pg_ctl("restart", "-m", "fast", "-l", str(self.log)))

    def ready(self) -> bool:
        pg_isready = self.bindir / "pg_isready"
        if not pg_isready.is_file():
            return self.postmaster_pid() is not None
        command = [str(pg_isready), "-q", "-h", self.host, "-p", str(self.port)]
        return subprocess.run(command, check=False).returncode == 0

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self.postmaster_pid() is not None:
            stop = self._as_owner(*self._pg_ctl("stop", "-m", "immediate"))
            subprocess.run(stop, capture_output=True, timeout=60, check=False)

    def remove(self) -> None:
        """Stop the server (immediately: nothing in it is kept) and delete its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A `redis-server` of the tests on a free port, keeping nothing on disk; a test may kill it
    and start it again on the same port."""

    def __init__(self, executable: str, root: Path | None = None, port: int | None = None) -> None:
        self.executable = executable
        self.root = root or Path(tempfile.mkdtemp(prefix="rlhf-test-redis-"))
        self.port = port or free_port()
        self.log = self.root / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 20) -> PrivateRedis:
        import redis

        self.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.root)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        client = redis.Redis.from_url(self.url(), socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while not _answers(client):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not start:\n{self.log_tail()}")
                time.sleep(0.05)
        finally:
            client.close()
        return self

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash would; `start` brings it back on the same port, empty."""
        assert self.process is not None
        self.process.kill()  # our own child, by its id
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.kill()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _answers(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not up yet
        return False
