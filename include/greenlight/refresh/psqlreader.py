"""The psql reader: prod's ``COPY … TO STDOUT`` run by a ``psql`` child process, relayed into staging.

Why: PostgreSQL sends one CopyData message per row, and reading them in Python
(:func:`greenlight.refresh.relay.stream`) costs ~0.45 µs of CPU per row, on top of both servers'
own COPY work. ``psql`` reads the rows in C and writes them to its stdout in 4 KiB blocks;
greenlight relays that pipe in ~128 KiB chunks into staging's ``COPY … FROM STDIN``, which stays on
greenlight's own staging connection, in the group's transaction (``TRUNCATE``, ``FREEZE``, the
indexes set aside: all unchanged, see :func:`greenlight.refresh.tables.copy_group`).

* **One snapshot.** psql opens ``REPEATABLE READ, READ ONLY`` and adopts the snapshot of the
  group's prod transaction (``SET TRANSACTION SNAPSHOT``: the run's exported one, or one the group
  exports), so it reads exactly what the group's 0-row check and checksums read.
* **Row count.** ``\\copy … to pstdout`` writes the rows to psql's stdout and the command tags
  (``COPY 1000``) to its query output, sent to a temp file (``-o /dev/fd/N``): rows read from prod
  are still known and compared with the rows staging took.
* **Secrets.** psql's argv holds no connection parameter: host, port, database, user, TLS settings
  and the password go in the child's ``PG*`` environment only. The session is read-only
  (``default_transaction_read_only=on`` in ``PGOPTIONS``, as greenlight's own prod connections).
* **Failures.** A non-zero exit or a missing ``COPY`` tag fails the table, with psql's stderr
  (secrets scrubbed) in the reason; on any error the child is killed and staging's COPY ended
  with an error, so the group's transaction rolls back as with the Python reader.
* **Fewer wake-ups.** psql's stdout is a pipe, which C stdio buffers in 4 KiB blocks: one
  ``write`` per 4 KiB, each waking this thread for a 4 KiB read. When GNU coreutils' ``stdbuf`` is
  on PATH, psql runs under it with a 256 KiB stdout buffer (:data:`STDOUT_BUFFER`): on the refresh
  bench (1 M rows, 69 MB) this thread's CPU went from ~60 ms to ~26 ms and psql's from ~140 ms to
  ~125 ms. Without ``stdbuf`` psql runs directly, as before; the rows are the same either way.
* **Threads.** Every wait is a blocking ``os.read`` of the pipe or a ``select()`` on staging's
  socket: both release the GIL, so worker threads copying other tables run side by side.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from greenlight.errors import ConfigError
from greenlight.redact import redact_text, scrub
from greenlight.refresh import relay
from greenlight.refresh.catalog import SESSION_SETTINGS

CHUNK = 128 * 1024  # bytes handed to staging's COPY at a time (as relay.BATCH_BYTES)
PIPE_BYTES = 1024 * 1024  # the pipe's buffer (Linux F_SETPIPE_SZ): fewer wake-ups of this thread
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux
_COPY_TAG = re.compile(rb"^COPY (\d+)$", re.MULTILINE)
STDOUT_BUFFER = 256 * 1024  # psql's stdout buffer under ``stdbuf -o`` (see "Fewer wake-ups" above)
DEBIAN_PG_LIB = "/usr/lib/postgresql"  # <major>/bin/psql: the binaries behind Debian's pg_wrapper

#: libpq connection keywords -> the environment variable libpq reads for each.
ENV_VARS = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "passfile": "PGPASSFILE",
    "channel_binding": "PGCHANNELBINDING",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "require_auth": "PGREQUIREAUTH",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "sslcertmode": "PGSSLCERTMODE",
    "min_protocol_version": "PGMINPROTOCOLVERSION",
    "max_protocol_version": "PGMAXPROTOCOLVERSION",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}
#: Keywords with no environment variable that carry no secret: passed as psql's conninfo argument.
ARGV_OK = {
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "fallback_application_name",
}


class PsqlError(Exception):
    """psql failed or did not report the rows it read (the table fails; staging is rolled back)."""


class PsqlUnsupported(Exception):  # a reason to read in Python instead, not an error
    """This connection cannot be handed to psql without a secret on its command line."""


def find_psql(reader: str, path: str | None) -> str | None:
    """The psql binary to read prod with, or None for the Python reader.

    ``reader``: ``python`` (never psql), ``psql`` (required: a :class:`ConfigError` when none is
    found) or ``auto`` (psql when found). ``path``: ``postgres.psql`` (a file, or a name on PATH).
    """
    if reader == "python":
        return None
    found = shutil.which(path or "psql")
    if found is None and (path or reader == "psql"):
        key = "postgres.psql" if path else "postgres.reader"
        where = f"{path!r} is not an executable file" if path else "no psql on PATH (set postgres.psql)"
        raise ConfigError(f"{key}: {where}; set postgres.reader: python to read prod without psql")
    if found and not path and os.path.basename(os.path.realpath(found)) == "pg_wrapper":
        # Debian/Ubuntu: psql on PATH is postgresql-common's Perl wrapper, ~30 ms of CPU per start
        # (one start per table) before it runs the real binary: run the newest real one directly.
        versions = sorted(Path(DEBIAN_PG_LIB).glob("*/bin/psql"), key=lambda p: _version(p.parents[1].name))
        if versions and os.access(versions[-1], os.X_OK):
            return str(versions[-1])
    return found


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


def child_env(src, source_uri: str, base: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """psql's environment and conninfo argument for the server ``src`` (an open prod connection) reached.

    Built from the parameters of that connection (the host and port it actually connected to, so a
    multi-host conninfo cannot send psql elsewhere); the password only in ``PGPASSWORD``.
    """
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    from psycopg.conninfo import conninfo_to_dict

    if conninfo_to_dict(source_uri).get("sslpassword"):
        raise PsqlUnsupported("sslpassword has no environment variable")
    info = src.info
    params = dict(info.get_parameters())  # non-default parameters, never the password
    params["host"], params["port"] = info.host, str(info.port)
    if "hostaddr" in params:
        params["hostaddr"] = info.hostaddr
    params["application_name"] = "greenlight-refresh-psql"
    params.setdefault("connect_timeout", "10")
    params["client_encoding"] = info.parameter_status("client_encoding") or "UTF8"
    options = params.get("options") or ""  # greenlight's prod sessions carry both already
    for setting in (SESSION_SETTINGS, "-c default_transaction_read_only=on"):
        if setting not in options:
            options = f"{options} {setting}".strip()
    params["options"] = options
    env = dict(os.environ if base is None else base)
    argv_params = []
    for key, value in params.items():
        if key in ENV_VARS:
            env[ENV_VARS[key]] = str(value)
        elif key in ARGV_OK:
            argv_params.append(f"{key}={value}")
        else:
            raise PsqlUnsupported(f"connection parameter {key} cannot be passed to psql")
    if info.password:
        env["PGPASSWORD"] = info.password
    return env, [" ".join(argv_params)] if argv_params else []


@functools.cache
def find_stdbuf() -> str | None:
    """``stdbuf`` (GNU coreutils: sets psql's stdout buffer) when it works here, else None (psql
    then runs directly). Tried once per process on ``true``: a ``stdbuf`` that cannot preload its
    library exits non-zero and is not used."""
    found = shutil.which("stdbuf")
    if found is None:
        return None
    try:
        ok = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [found, f"--output={STDOUT_BUFFER}", "true"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found if ok.returncode == 0 else None


def command(
    psql: str,
    snapshot: str,
    copy_source: str,
    *,
    binary: bool,
    tags_fd: int,
    conninfo: list[str],
    stdbuf: str | None = None,
) -> list[str]:
    """psql's argv: one read-only transaction on ``snapshot`` around a ``\\copy`` to its stdout
    (run under ``stdbuf``, when given, with a :data:`STDOUT_BUFFER` stdout buffer)."""
    if "\n" in copy_source or "\r" in copy_source:
        raise PsqlUnsupported("a \\copy command is one line")
    copy = f"\\copy {copy_source} to pstdout" + (" with (format binary)" if binary else "")
    return [
        *([stdbuf, f"--output={STDOUT_BUFFER}"] if stdbuf else []),
        psql,
        "--no-psqlrc",
        "--no-password",
        "--set=ON_ERROR_STOP=1",
        f"--output=/dev/fd/{tags_fd}",
        "--command=BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        f"--command=SET TRANSACTION SNAPSHOT '{snapshot}'",
        f"--command={copy}",
        "--command=COMMIT",
        *([f"--dbname={conninfo[0]}"] if conninfo else []),
    ]


def stream(
    psql: str, src, source_uri: str, snapshot: str, dst, copy_source: str, copy_in_sql: str, *, binary: bool
) -> tuple[int, int, int]:
    """Copy one table: psql reads ``copy_source`` from prod as of ``snapshot``; ``dst`` (staging, in
    its transaction) runs ``copy_in_sql``. Returns (rows read, rows written, bytes), as
    :func:`greenlight.refresh.relay.stream`. Raises :class:`PsqlUnsupported` before starting
    anything when this connection or table cannot be read by psql."""
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    import psycopg
    from psycopg import pq

    env, conninfo = child_env(src, source_uri)
    with tempfile.TemporaryFile() as tags, tempfile.TemporaryFile() as errors:
        argv = command(
            psql,
            snapshot,
            copy_source,
            binary=binary,
            tags_fd=tags.fileno(),
            conninfo=conninfo,
            stdbuf=find_stdbuf(),
        )
        proc = subprocess.Popen(  # noqa: S603 - argv built above, no shell; the password is in env only
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, env=env, pass_fds=(tags.fileno(),)
        )
        copying_in = False
        try:
            dst.pgconn.nonblocking = 1
            relay.start_copy(dst, copy_in_sql, pq.ExecStatus.COPY_IN)
            copying_in = True
            nbytes = _pump(proc.stdout.fileno(), dst)
            code = proc.wait()
            if code == 2:  # psql: "the connection to the server went bad" (worth a retry, as in Python)
                raise psycopg.OperationalError(f"psql lost its connection to prod: {_stderr(errors, env)}")
            if code != 0:
                raise PsqlError(f"psql exited {code}: {_stderr(errors, env)}")
            tags.seek(0)
            found = _COPY_TAG.findall(tags.read())
            if not found:
                raise PsqlError(f"psql printed no COPY row count: {_stderr(errors, env)}")
            rows_out = int(found[-1])
            copying_in = False
            rows_in = relay.end_copy_in(dst)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if copying_in:
                relay.abort_copy_in(dst)
            raise
        finally:
            proc.stdout.close()
    return rows_out, rows_in, nbytes


def _pump(fd: int, dst) -> int:
    """Relay the pipe into staging's COPY until psql closes it; returns the bytes relayed."""
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:  # not Linux, or a system limit (pipe-max-size) below ours: keep the default buffer
        pass
    nbytes = 0
    batch = bytearray()
    read = os.read
    while True:
        data = read(fd, CHUNK)  # blocks in the kernel with the GIL released
        if not data:
            break
        batch += data
        if len(batch) >= CHUNK:
            nbytes += len(batch)
            relay.put(dst, batch)
            batch.clear()
    if batch:
        nbytes += len(batch)
        relay.put(dst, batch)
    return nbytes


def _stderr(errors, env: dict[str, str]) -> str:
    errors.seek(0)
    text = errors.read().decode(errors="replace").strip()
    lines = [line for line in text.splitlines() if line.strip()][-3:]
    secrets = [env["PGPASSWORD"]] if env.get("PGPASSWORD") else []
    return redact_text(scrub(" | ".join(lines), secrets))[:1000] or "(no message)"
