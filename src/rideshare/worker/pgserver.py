"""A worker's own PostgreSQL server: one data directory, one postmaster, one Unix socket.

Every copy of the data lives in a server that no other worker uses, so one server failing takes
one copy with it, never all of them (docs/architecture.md, "Storage"). The server:

- is made by copying a template cluster (``initdb`` once per data root, then a copy per worker);
- listens on no TCP port, only on a Unix socket in its data directory (or, when that path would be
  too long for a socket, in a short directory under ``/tmp``);
- runs as an unprivileged user when the worker runs as root (PostgreSQL refuses root);
- lives and dies with its worker: the postmaster is the worker's child, started with a parent-death
  signal (``setpriv --pdeathsig KILL``), so a SIGKILL of the worker kills the postmaster, and its
  backends follow within a second; the worker watches the postmaster and exits if it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
from pathlib import Path

import psutil
import psycopg

from rideshare.config import Settings
from rideshare.folders import ServiceUser, reachable_folder
from rideshare.localhost import pid_alive

log = logging.getLogger(__name__)

PG_PORT = 5432  # names the socket file only: the servers listen on no TCP port
DB_USER = "rideshare"
DB_NAME = "postgres"
SOCKET_PATH_MAX = 100  # sun_path holds 107 bytes; keep a margin
#: Worker ids, and so the names of their data directories: "w" and hex digits, nothing else.
COPY_NAME = re.compile(r"^w[0-9a-f]+$")

#: Settings for a small machine (2 cores, several servers at once). fsync and synchronous commits
#: stay on: an acknowledged write is on disk. WAL is minimal: nothing streams or archives it.
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "",
    "port": str(PG_PORT),
    "max_connections": "24",
    "shared_buffers": "32MB",
    "work_mem": "4MB",
    "maintenance_work_mem": "64MB",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "wal_buffers": "4MB",
    "max_wal_size": "512MB",
    "checkpoint_timeout": "5min",
    "unix_socket_permissions": "0700",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] ",
    "shared_preload_libraries": "",
    "dynamic_shared_memory_type": "posix",
    "huge_pages": "off",
    "idle_in_transaction_session_timeout": "0",
}


class ServerError(RuntimeError):
    """The worker's PostgreSQL server could not be made, started or reached."""


def server_user(settings: Settings) -> ServiceUser:
    """Ourselves, unless we are root: then ``RIDESHARE_PG_USER`` (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return ServiceUser.current()
    try:
        return ServiceUser.named(settings.pg_user)
    except KeyError:
        raise ServerError(
            f"PostgreSQL refuses to run as root, and the user RIDESHARE_PG_USER="
            f"{settings.pg_user!r} that should run the workers' servers does not exist; create "
            "it, or name another unprivileged user.") from None


def bin_dir(settings: Settings) -> Path:
    """Where ``postgres``, ``initdb`` and ``psql`` are: the setting, else the newest installed
    under /usr/lib/postgresql."""
    if settings.pg_bin_dir:
        return Path(settings.pg_bin_dir)
    versions = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    if not versions:
        raise ServerError("No PostgreSQL server binaries were found under /usr/lib/postgresql; "
                          "install PostgreSQL or set RIDESHARE_PG_BIN_DIR.")
    return versions[-1].parent


def data_root(settings: Settings) -> Path:
    """The folder holding every worker's data directory (and the template) of this deployment:
    ``RIDESHARE_DATA_DIR`` if set, else ``<run_dir>/data`` or, when the servers' user cannot
    reach that, the same under ``/var/lib/rideshare`` (``folders.reachable_folder``)."""
    if settings.data_dir is not None:
        return settings.data_dir.resolve()
    return reachable_folder(settings.run_dir, "data", [server_user(settings)])


def socket_dir(data_dir: Path) -> Path:
    """The server's socket lives in its data directory, unless that path is too long for a Unix
    socket; then in a short folder named after it."""
    if len(f"{data_dir}/.s.PGSQL.{PG_PORT}") <= SOCKET_PATH_MAX:
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return Path("/tmp") / f"rideshare-pg-{digest}"


def conninfo(data_dir: Path) -> str:
    return psycopg.conninfo.make_conninfo(
        host=str(socket_dir(data_dir)), port=PG_PORT, user=DB_USER, dbname=DB_NAME)


async def _run(command: list[str], what: str, timeout_s: float = 120.0) -> None:
    proc = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ServerError(f"{what}: no result after {timeout_s:.0f} s") from None
    if proc.returncode:
        output = out.decode(errors="replace")[-800:]
        raise ServerError(f"{what} failed ({proc.returncode}): {output}")


def _server_log(data_dir: Path) -> Path:
    """The server's own log, beside its data directory (PostgreSQL wants that one to itself)."""
    return data_dir.parent / f"{data_dir.name}.server.log"


def running_postmaster(data_dir: Path) -> int | None:
    """The pid of a postmaster that runs on ``data_dir`` (from its ``postmaster.pid``), if any."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        if not pid_alive(pid):
            return None
        cmdline = psutil.Process(pid).cmdline()
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    if not cmdline or not cmdline[0].endswith("postgres"):
        return None
    return pid if str(data_dir) in cmdline else None


def kill_stray_postmaster(data_dir: Path) -> bool:
    """SIGKILL a postmaster left on ``data_dir`` (its worker died without taking it along)."""
    pid = running_postmaster(data_dir)
    if pid is None:
        return False
    log.warning("killing postmaster %s left running on %s", pid, data_dir)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


class Template:
    """The cluster every worker's data directory is copied from, made once with ``initdb``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.user = server_user(settings)
        self.root = data_root(settings)
        self.path = Path(settings.pg_template_dir) if settings.pg_template_dir else (
            self.root / ".template")

    def ensure_root(self) -> None:
        if not self.root.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            self.user.own(self.root, 0o700)

    async def ensure(self) -> Path:
        """The template, made now if it is not there (one maker at a time, under a lock)."""
        if (self.path / "PG_VERSION").exists():
            return self.path
        self.ensure_root()
        with open(self.root / ".template.lock", "w") as lock:
            await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
            if not (self.path / "PG_VERSION").exists():
                await self._initdb()
        return self.path

    async def _initdb(self) -> None:
        building = self.path.with_name(self.path.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        self.user.own(building, 0o700)
        initdb = str(bin_dir(self.settings) / "initdb")
        await _run(self.user.command([
            initdb, "-D", str(building), "-U", DB_USER, "--auth=trust", "--encoding=UTF8",
            "--locale=C.UTF-8", "--no-sync", "--wal-segsize=4", "--no-instructions"]),
            "initdb of the workers' template cluster")
        building.rename(self.path)
        log.info("made the template cluster %s", self.path)


class PostgresServer:
    """One worker's server on ``data_dir``."""

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.user = server_user(settings)
        self.socket_dir = socket_dir(data_dir)
        self.dsn = conninfo(data_dir)
        self._proc: asyncio.subprocess.Process | None = None

    async def prepare(self, adopt_from: Path | None = None) -> None:
        """Make the data directory: the adopted copy moved into place, or the template copied.
        A directory that already holds a cluster is kept as it is."""
        if adopt_from is not None and adopt_from != self.data_dir:
            if (self.data_dir / "PG_VERSION").exists():
                raise ServerError(f"cannot adopt {adopt_from}: {self.data_dir} already exists")
            kill_stray_postmaster(adopt_from)
            adopt_from.rename(self.data_dir)
            with contextlib.suppress(FileNotFoundError):
                _server_log(adopt_from).rename(_server_log(self.data_dir))
            log.info("adopted the copy %s as %s", adopt_from.name, self.data_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return
        template = await Template(self.settings).ensure()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.user.own(self.data_dir, 0o700)
        await _run(self.user.command(["cp", "-a", f"{template}/.", str(self.data_dir)]),
                   f"copying the template cluster into {self.data_dir}")

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start the postmaster as our child, and wait until it takes connections."""
        if not kill_stray_postmaster(self.data_dir):
            # Lock files whose postmaster is dead (killed with its worker, or with its container,
            # whose PIDs the next container reuses) only stand in the way.
            for lock in [self.data_dir / "postmaster.pid",
                         *self.socket_dir.glob(f".s.PGSQL.{PG_PORT}.lock")]:
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
        if self.socket_dir != self.data_dir:
            self.socket_dir.mkdir(mode=0o700, exist_ok=True)
            self.user.own(self.socket_dir, 0o700)
        options = {**SERVER_SETTINGS, "unix_socket_directories": str(self.socket_dir)}
        command = [str(bin_dir(self.settings) / "postgres"), "-D", str(self.data_dir)]
        for name, value in options.items():
            command += ["-c", f"{name}={value}"]
        log_file = open(_server_log(self.data_dir), "ab")  # noqa: SIM115
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.user.command(command, die_with_parent=True),
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                cwd="/")
        finally:
            log_file.close()
        await self._wait_ready(timeout_s)
        log.info("PostgreSQL server pid %s on %s", self._proc.pid, self.data_dir)

    async def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        deadline = asyncio.get_running_loop().time() + timeout_s
        last: Exception | None = None
        while asyncio.get_running_loop().time() < deadline:
            if self._proc.returncode is not None:
                try:
                    told = _server_log(self.data_dir).read_text(errors="replace")[-600:]
                except OSError:
                    told = ""
                raise ServerError(
                    f"the PostgreSQL server on {self.data_dir} exited with "
                    f"{self._proc.returncode}: {told}")
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=2)
                await conn.close()
                return
            except psycopg.OperationalError as exc:
                last = exc
            await asyncio.sleep(0.05)
        await self.kill()
        raise ServerError(f"the PostgreSQL server on {self.data_dir} took no connection within "
                          f"{timeout_s:.0f} s ({last})")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def wait(self) -> int:
        """Until the postmaster exits; its exit code."""
        assert self._proc is not None
        return await self._proc.wait()

    async def stop(self, timeout_s: float = 30.0) -> None:
        """A fast shutdown (SIGINT: roll back sessions, checkpoint), then immediate, then kill."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGQUIT, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), wait_s)
                return
        await self.kill()

    async def kill(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)


def copy_dirs(root: Path) -> list[Path]:
    """The worker data directories under ``root``: names matched exactly, never by prefix."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and COPY_NAME.match(p.name)
                  and (p / "PG_VERSION").exists())


def remove_copy(data_dir: Path) -> None:
    """Delete a copy: its stray server first, then its folder, its log and its socket folder."""
    kill_stray_postmaster(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        _server_log(data_dir).unlink()
    if socket_dir(data_dir) != data_dir:
        shutil.rmtree(socket_dir(data_dir), ignore_errors=True)
