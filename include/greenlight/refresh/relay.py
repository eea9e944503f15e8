"""The COPY relay: ``COPY … TO STDOUT`` on prod streamed into ``COPY … FROM STDIN`` on staging.

It talks libpq directly (psycopg's ``pgconn``): PostgreSQL sends one COPY message per row, and a
Python-level generator step per row was the relay's main cost (measured: 0.36 s vs 0.14 s of CPU
for 300,000 rows). Messages are batched into ~128 KiB writes (row-by-row writes were 2.4x slower).

Both sockets stay **non-blocking**, and every wait is a ``select()`` on the socket: psycopg's
``PQgetCopyData`` / ``PQputCopyData`` / ``PQgetResult`` wrappers hold the GIL while libpq blocks,
so a blocking relay stalled every other worker thread of the refresh (``postgres.workers``) each
time it waited for prod or staging — the tables copied "side by side" took turns. ``select()``
releases the GIL. Memory stays bounded: after each batch the relay waits until staging took it
all, so a slow staging server holds the reader back instead of growing libpq's output buffer.
"""

from __future__ import annotations

import select

BATCH_BYTES = 128 * 1024  # COPY data handed to the staging writer at a time
_OK = 0  # libpq's CONNECTION_OK


def start_copy(conn, sql: str, expect) -> None:
    """Send ``sql`` (a COPY) on ``conn`` and wait, GIL released, until the server entered ``expect``."""
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    from psycopg import errors

    pgconn = conn.pgconn
    pgconn.send_query(sql.encode())
    result = _result(pgconn)
    if result is None or result.status != expect:
        while _result(pgconn) is not None:
            pass
        if result is None:
            # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
            import psycopg

            raise psycopg.OperationalError(f"no answer to COPY: {pgconn.get_error_message()}")
        raise errors.error_from_result(result, encoding=conn.info.encoding)


def _result(pgconn):
    """``PQgetResult`` once it would not block (the wait releases the GIL)."""
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    import psycopg

    if pgconn.flush() != 0:
        flush(pgconn)
    while pgconn.is_busy():
        select.select([pgconn.socket], [], [])
        pgconn.consume_input()
        if pgconn.status != _OK:
            raise psycopg.OperationalError(f"connection lost: {pgconn.get_error_message()}")
    return pgconn.get_result()


def flush(pgconn) -> None:
    """Send everything libpq has queued (non-blocking socket), waiting in ``select()``."""
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    import psycopg

    while True:
        rc = pgconn.flush()
        if rc == 0:
            return
        if rc < 0:
            raise psycopg.OperationalError(f"sending to the server failed: {pgconn.get_error_message()}")
        readable, _, _ = select.select([pgconn.socket], [pgconn.socket], [])
        if readable:  # libpq: read what the server sent (a notice, an error) before flushing again
            pgconn.consume_input()


def finish_copy(conn) -> int:
    """The result of the COPY that just ended on ``conn``: rows, or the server's error raised."""
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    import psycopg
    from psycopg import errors, pq

    pgconn = conn.pgconn
    results = []
    while (result := _result(pgconn)) is not None:
        results.append(result)
    failed = next((r for r in results if r.status == pq.ExecStatus.FATAL_ERROR), None)
    if failed is not None:
        raise errors.error_from_result(failed, encoding=conn.info.encoding)
    if not results or results[-1].status != pq.ExecStatus.COMMAND_OK:
        raise psycopg.OperationalError(f"COPY ended without a result: {pgconn.get_error_message()}")
    return int(results[-1].command_tuples or 0)


def stream(src, dst, copy_out_sql: str, copy_in_sql: str) -> tuple[int, int, int]:
    """Relay one COPY from ``src`` (prod) into ``dst`` (staging); returns (rows read, rows written, bytes).

    On an error staging's COPY is ended with an error message, so its transaction can be rolled
    back normally; prod's error (a failed read) and staging's (a constraint, a bad value) are raised
    as psycopg errors.
    """
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    from psycopg import pq

    sp, dp = src.pgconn, dst.pgconn
    sp.nonblocking = dp.nonblocking = 1  # psycopg's own setting; every wait below is a select()
    start_copy(src, copy_out_sql, pq.ExecStatus.COPY_OUT)
    start_copy(dst, copy_in_sql, pq.ExecStatus.COPY_IN)
    get = sp.get_copy_data
    src_socket = sp.socket
    nbytes = 0
    batch = bytearray()

    def send() -> None:
        nonlocal nbytes
        nbytes += len(batch)
        put(dst, batch)
        batch.clear()

    copying_in = True
    try:
        while True:
            size, data = get(1)  # async: 0 = no complete row buffered yet
            if size > 0:
                batch += data
                if len(batch) >= BATCH_BYTES:
                    send()
            elif size == 0:
                select.select([src_socket], [], [])
                sp.consume_input()
            else:
                break
        rows_out = finish_copy(src)  # raises prod's error, if the read failed
        if batch:
            send()
        copying_in = False
        rows_in = end_copy_in(dst)  # raises staging's error (a constraint, a bad value)
    except BaseException:
        if copying_in:
            abort_copy_in(dst)
        raise
    return rows_out, rows_in, nbytes


def put(dst, data) -> None:
    """Hand ``data`` to staging's COPY FROM STDIN and wait (GIL released) until libpq sent it all."""
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    import psycopg

    dp = dst.pgconn
    if dp.put_copy_data(data) != 1:
        raise psycopg.OperationalError(f"sending to staging failed: {dp.get_error_message()}")
    flush(dp)


def end_copy_in(dst) -> int:
    """End staging's COPY FROM STDIN normally; returns the rows it took (or raises its error)."""
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    import psycopg

    dp = dst.pgconn
    if dp.put_copy_end(None) != 1:
        raise psycopg.OperationalError(f"ending the COPY on staging failed: {dp.get_error_message()}")
    flush(dp)
    return finish_copy(dst)


def abort_copy_in(dst) -> None:
    """End staging's COPY FROM STDIN with an error (its transaction can then be rolled back)."""
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    from psycopg import pq

    dp = dst.pgconn
    if dp.status != pq.ConnStatus.OK:
        return
    dp.put_copy_end(b"greenlight: copy aborted")
    flush(dp)
    while _result(dp) is not None:
        pass
