"""Errors of feature materialization, and the one place backend connection errors become retryable."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

from greenlight.errors import GreenlightError


class FeatureError(GreenlightError):
    """Base class of feature materialization errors."""

    kind = "features"


class SourceStaleError(FeatureError):
    """The offline source's newest row is older than allowed: a data problem, never retried."""

    kind = "source_stale"

    def __init__(self, source: str, newest: datetime | None, age: timedelta | None, max_age: timedelta, as_of):
        self.source = source
        self.newest = newest
        self.age = age
        self.max_age = max_age
        if newest is None:
            msg = f"source {source} has no row at or before {as_of.isoformat()}"
        else:
            msg = (
                f"source {source} is stale: newest row {newest.isoformat()} is {fmt_age(age)} old at "
                f"{as_of.isoformat()} (allowed {fmt_age(max_age)})"
            )
        super().__init__(msg)


class RegistryDriftError(FeatureError):
    """The deployed Feast registry differs from the repo's definitions: redeploy (``apply``) first."""

    kind = "registry_drift"

    def __init__(self, changes: list[str]):
        self.changes = changes
        super().__init__(
            "deployed Feast registry differs from include/feature_repo (run `greenlight features "
            "apply` as a deploy step after review):\n" + "\n".join(changes)
        )


class ParityError(FeatureError):
    """Online (Redis) values differ from the offline (PostgreSQL) values they were materialized from."""

    kind = "parity"

    def __init__(self, view: str, mismatches: list[dict[str, Any]], checked: int):
        self.view = view
        self.mismatches = mismatches
        self.checked = checked
        shown = "; ".join(_fmt_mismatch(m) for m in mismatches[:10])
        more = f" (+{len(mismatches) - 10} more)" if len(mismatches) > 10 else ""
        super().__init__(f"parity failed for {view}: {len(mismatches)} of {checked} entities differ: {shown}{more}")


class FeatureBackendUnavailable(FeatureError):
    """PostgreSQL or Redis could not be reached: transient, Airflow retries with backoff."""

    kind = "backend_unavailable"
    retryable = True


def fmt_age(age: timedelta | None) -> str:
    """``2h10m00s``: how old a source row is, in the messages and the logs."""
    if age is None:
        return "?"
    seconds = int(age.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def _fmt_mismatch(m: dict[str, Any]) -> str:
    if m["problem"] == "value":
        return f"{m['entity']}.{m['feature']}: online {m['online']!r} != offline {m['offline']!r} at {m['event_ts']}"
    return f"{m['entity']}: {m['problem']} ({m.get('detail', '')})"


@contextlib.contextmanager
def backend_errors(what: str) -> Generator[None]:
    """Turn connection-level errors of PostgreSQL / Redis / the SQL registry into a retryable error."""
    # heavy: psycopg, redis and SQLAlchemy, imported here (see the package docstring)
    import psycopg
    import redis
    import sqlalchemy.exc

    transient: tuple[type[BaseException], ...] = (
        psycopg.OperationalError,
        psycopg.InterfaceError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.BusyLoadingError,
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        ConnectionError,
        TimeoutError,
    )
    try:
        yield
    except transient as exc:
        raise FeatureBackendUnavailable(f"{what}: {type(exc).__name__}: {str(exc).strip()[:500]}") from exc
