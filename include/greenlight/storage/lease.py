"""Leases: one writer at a time per prod prefix (and per shared record such as the halt Variable).

A lease is a small JSON object next to the manifests (``<manifest_uri>leases/<name>.json``) that
says who writes a resource and until when: holder run id, operation, host, pid, a random token and
an expiry. It is created with a conditional PUT (``If-None-Match: *``) and every later change
(renewal, release, takeover) is a conditional PUT on the ETag the writer last saw (``If-Match``),
so of two writers racing for one lease exactly one wins, on AWS S3 and SeaweedFS alike.

- ``acquire`` refuses at once (:class:`LeaseHeldError`, exit 2, never retried) naming the holder
  and when its lease expires, or polls for up to ``wait`` seconds.
- While work goes on a background thread renews the lease every ``ttl / 3`` seconds. If a renewal
  finds the lease taken by someone else (ours had expired), :meth:`Lease.check` raises
  :class:`LeaseLostError` at the writer's next check point.
- ``release`` overwrites the lease with a released record (conditional on our ETag), so the object
  keeps saying who held it last.
- An expired lease is taken over and the takeover is logged with the previous holder. A lease whose
  holder ran on this host and whose process no longer exists is taken over without waiting for
  the expiry. The same run id may take its own lease back (an Airflow retry, or the next task of
  the same run): a run id names one logical run.
- A **run-scoped** lease (``scope="run"``) is held by a DAG run rather than by one process: every
  task of the run takes it back (re-entrant, several mapped tasks at once), renews it while it
  works and *parks* it when it ends (one last renewal, no release), so the hold is continuous from
  ``plan`` to the end of ``verify``; the run's last task releases it (:func:`release_run`). A task's
  process being gone does not free it (the next task runs in another process): only its expiry does.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from greenlight.errors import GreenlightError, RefusedError
from greenlight.storage.manifests import safe_name
from greenlight.storage.s3 import S3Uri, get_if_exists, is_write_conflict, normalize_etag

log = logging.getLogger("greenlight.storage.lease")

LEASE_KIND = "greenlight.lease/v1"
#: Seconds a lease lives without renewal; renewals happen every third of it.
DEFAULT_TTL = float(os.environ.get("GREENLIGHT_LEASE_TTL", "60"))


class LeaseHeldError(RefusedError):
    """Another run holds the lease of this resource (exit 2, not retried: rerun or wait)."""

    def __init__(self, resource: str, holder: dict[str, Any], waited: float):
        self.holder = holder
        expires = holder.get("expires_at", "?")
        left = max(0.0, float(holder.get("expires_epoch", 0)) - time.time())
        waited_text = f" after waiting {waited:.0f} s" if waited else ""
        reason = (
            f"{holder.get('operation', 'a writer')} run {holder.get('run_id')!r} (host {holder.get('host')}, "
            f"pid {holder.get('pid')}) holds the lease until {expires} (renewed while it works; "
            f"{left:.0f} s left){waited_text}; nothing was changed. Wait for it (CLI --wait SECONDS, "
            "DAG param lease_wait) or rerun later"
        )
        super().__init__(resource, reason)


class LeaseLostError(GreenlightError):
    """Our lease expired and another writer took it over while we worked (exit 1, retryable)."""

    kind = "failure"
    retryable = True


def _now_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_key(root: S3Uri, resource: str) -> str:
    """Where the lease of ``resource`` (a prod prefix URI or a name) lives under the manifest root."""
    return f"{root.prefix}leases/{safe_name(resource.removeprefix('s3://'))}.json"


class Lease:
    """The lease of one resource; use as a context manager or call acquire/release."""

    def __init__(
        self,
        client,
        root: S3Uri,
        resource: str,
        *,
        run_id: str,
        operation: str,
        ttl: float | None = None,
        wait: float = 0.0,
        poll: float = 1.0,
        scope: str = "process",
    ):
        self.client = client
        self.scope = scope
        self.bucket = root.bucket
        self.key = lease_key(root, resource)
        self.resource = resource
        self.run_id = run_id
        self.operation = operation
        self.ttl = float(ttl or DEFAULT_TTL)
        self.wait = max(0.0, float(wait or 0))
        self.poll = poll
        self.token = uuid.uuid4().hex
        self.etag: str | None = None
        self.took_over: dict[str, Any] | None = None
        self.waited = 0.0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._io = threading.Lock()

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    # ------------------------------------------------------------------ S3 I/O
    def _doc(self, *, released: bool = False) -> dict[str, Any]:
        now = time.time()
        expires = now if released else now + self.ttl
        doc = {
            "kind": LEASE_KIND,
            "resource": self.resource,
            "run_id": self.run_id,
            "operation": self.operation,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": self.token,
            "ttl_s": self.ttl,
            "scope": self.scope,
            "renewed_at": _now_text(now),
            "expires_at": _now_text(expires),
            "expires_epoch": round(expires, 3),
        }
        if released:
            doc["released_at"] = _now_text(now)
        return doc

    def _put(self, doc: dict[str, Any], *, if_match: str | None) -> str:
        kwargs: dict[str, Any] = {"IfMatch": f'"{if_match}"'} if if_match else {"IfNoneMatch": "*"}
        response = self.client.put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=json.dumps(doc, sort_keys=True).encode(),
            ContentType="application/json",
            **kwargs,
        )
        return normalize_etag(response.get("ETag"))

    def _read(self) -> tuple[dict[str, Any], str] | None:
        response = get_if_exists(self.client, self.bucket, self.key)
        if response is None:
            return None
        body = response["Body"].read()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        return doc, normalize_etag(response.get("ETag"))

    # ------------------------------------------------------------------ acquire / renew / release
    def _free(self, holder: dict[str, Any]) -> str | None:
        """Why the lease described by ``holder`` may be taken now (None: it may not)."""
        if holder.get("kind") != LEASE_KIND:
            return "not a lease record"
        if holder.get("released_at"):
            return "released"
        if holder.get("run_id") == self.run_id:
            return "held by an earlier attempt of this same run"
        if float(holder.get("expires_epoch", 0)) <= time.time():
            return f"expired at {holder.get('expires_at')}"
        pid = holder.get("pid")
        if holder.get("scope") == "run":
            return None  # held by a DAG run across tasks: its tasks' processes come and go
        if holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
            return f"its process {pid} on this host is gone"
        return None

    def acquire(self, *, wait: float | None = None) -> Lease:
        """Take the lease (:class:`LeaseHeldError` when another writer holds it for longer than
        ``wait`` seconds; default: the lease's own ``wait``) and renew it in the background."""
        # The lease object is read first: it usually exists (released by the resource's last
        # writer), so taking it is a GET and one PUT conditional on that ETag. Either PUT is
        # conditional (If-Match / If-None-Match), so two writers never both win.
        wait = self.wait if wait is None else max(0.0, float(wait))
        started = time.monotonic()
        self.took_over = None
        self._stop = threading.Event()  # a lease given back (see Leases.acquire) may be taken again
        while True:
            current = self._read()
            if current is None:
                try:
                    self.etag = self._put(self._doc(), if_match=None)
                    break
                except Exception as exc:
                    if not is_write_conflict(exc):
                        raise
                    continue  # created by someone else meanwhile: look again
            holder, etag = current
            why = self._free(holder)
            if why is not None:
                try:
                    self.etag = self._put(self._doc(), if_match=etag)
                except Exception as exc:
                    if not is_write_conflict(exc):
                        raise
                    continue  # someone else changed it first: look again
                taken = not holder.get("released_at") and holder.get("kind") == LEASE_KIND
                if taken and not self._same_run(holder):
                    self.took_over = holder
                    log.warning(
                        "lease %s taken over from %s run %r (host %s, pid %s): %s",
                        self.resource,
                        holder.get("operation"),
                        holder.get("run_id"),
                        holder.get("host"),
                        holder.get("pid"),
                        why,
                    )
                break
            self.waited = time.monotonic() - started
            if self.waited >= wait:
                raise LeaseHeldError(self.resource, holder, self.waited if wait else 0.0)
            left = float(holder.get("expires_epoch", 0)) - time.time()
            time.sleep(max(0.05, min(self.poll, wait - self.waited, left + 0.05)))
        self.waited = time.monotonic() - started
        log.info(
            "lease %s acquired by %s run %r (expires in %.0f s)", self.resource, self.operation, self.run_id, self.ttl
        )
        self._thread = threading.Thread(target=self._renew_loop, name=f"gl-lease-{self.resource}", daemon=True)
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except LeaseLostError:
                return
            except Exception as exc:  # noqa: BLE001 - a transient error: the next tick tries again
                log.warning("could not renew lease %s (will retry): %s", self.resource, exc)

    def renew(self) -> None:
        with self._io:
            if self._lost or self.etag is None:
                return
            conflict: BaseException | None = None
            holder: dict[str, Any] = {}
            for _attempt in range(5):
                try:
                    self.etag = self._put(self._doc(), if_match=self.etag)
                    return
                except Exception as exc:
                    if not is_write_conflict(exc):
                        raise
                    conflict = exc
                current = self._read()
                holder, etag = current if current else ({}, None)
                if not (etag and self._same_run(holder)):
                    break
                # Another task of this same run renewed it meanwhile (mapped shards): adopt its ETag.
                self.etag = etag
            else:
                return  # five tasks of the run renewing at once: the next tick tries again
            self._lost = (
                f"lease {self.resource} was taken over by {holder.get('operation')} run "
                f"{holder.get('run_id')!r} (host {holder.get('host')}, pid {holder.get('pid')}) "
                "after ours expired"
            )
            log.error("%s", self._lost)
            raise LeaseLostError(self._lost) from conflict

    def _same_run(self, holder: dict[str, Any]) -> bool:
        """A run-scoped lease still held (not released) by this same run."""
        return (
            self.scope == "run"
            and holder.get("kind") == LEASE_KIND
            and holder.get("run_id") == self.run_id
            and not holder.get("released_at")
        )

    def park(self) -> None:
        """End this task's part of a run-scoped hold: stop renewing after one last renewal (a full
        TTL from now, for the run's next task to take it back), and do not release it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.etag is None:
            return  # released (or never held)
        try:
            self.renew()
            log.info(
                "lease %s parked for the next task of run %r (expires in %.0f s)", self.resource, self.run_id, self.ttl
            )
        except Exception as exc:  # noqa: BLE001 - it expires on its own
            log.warning("could not park lease %s: %s", self.resource, exc)
        self.etag = None

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if another writer has taken the lease from us."""
        if self._lost:
            raise LeaseLostError(self._lost)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._io:
            if self._lost or self.etag is None:
                return
            try:
                self._put(self._doc(released=True), if_match=self.etag)
                log.info("lease %s released by run %r", self.resource, self.run_id)
            except Exception as exc:  # noqa: BLE001 - it expires on its own; the work is done
                log.warning(
                    "could not release lease %s (it expires in at most %.0f s): %s", self.resource, self.ttl, exc
                )
            self.etag = None

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


class Leases:
    """Several leases held together (acquired in sorted order; all or none)."""

    def __init__(self, leases: list[Lease]):
        self.leases = sorted(leases, key=lambda lease: lease.key)

    def acquire(self) -> Leases:
        """Take every lease or none. First one attempt at each side by side, waiting for none
        (independent records, each taken by its own conditional PUT): the usual case, every lease
        free, costs the round trips of one. If any is held (or an attempt failed), those taken are
        given back and the leases are taken one after the other in sorted order, waiting where
        allowed: two runs racing for the same prefixes then never both give up."""
        if len(self.leases) > 1 and self._acquire_together():
            return self
        held: list[Lease] = []
        try:
            for lease in self.leases:
                held.append(lease.acquire())
        except BaseException:
            for lease in reversed(held):
                lease.release()
            raise
        return self

    def _acquire_together(self) -> bool:
        def attempt(lease: Lease) -> bool:
            try:
                lease.acquire(wait=0)
            except Exception as exc:  # noqa: BLE001 - the one-by-one pass decides (and raises)
                log.info("lease %s not taken at once (%s): taking the leases one by one", lease.resource, exc)
                return False
            return True

        with ThreadPoolExecutor(max_workers=min(8, len(self.leases)), thread_name_prefix="gl-lease") as pool:
            taken = list(pool.map(attempt, self.leases))
        if all(taken):
            return True
        given_back = [lease for lease, ok in zip(self.leases, taken, strict=True) if ok]
        for lease in given_back:
            lease.release()
        return False

    def check(self) -> None:
        for lease in self.leases:
            lease.check()

    def release(self) -> None:
        """Release every lease; they are independent records, so several are released side by side."""
        if len(self.leases) < 2:
            for lease in self.leases:
                lease.release()
            return
        with ThreadPoolExecutor(max_workers=min(8, len(self.leases)), thread_name_prefix="gl-lease") as pool:
            list(pool.map(Lease.release, self.leases))

    def park(self) -> None:
        for lease in reversed(self.leases):
            lease.park()

    @contextmanager
    def held(self, *, scope: str = "process"):
        """Hold every lease for the ``with`` block (all or none); released at its end, success or
        failure, or parked when ``scope="run"`` (a DAG task: the run's next task takes them back)."""
        self.acquire()
        try:
            yield self
        finally:
            if scope == "run":
                self.park()
            else:
                self.release()

    def report(self) -> list[dict[str, Any]]:
        """What the run's summary says about its leases (where, waited, taken over from whom)."""
        return [
            {
                "resource": lease.resource,
                "lease": lease.uri,
                "waited_s": round(lease.waited, 3),
                "took_over_from": (lease.took_over or {}).get("run_id"),
            }
            for lease in self.leases
        ]

    def __enter__(self) -> Leases:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


@contextmanager
def holding(
    client,
    root: S3Uri | None,
    resources: list[str],
    *,
    run_id: str,
    operation: str,
    wait: float = 0.0,
    ttl: float | None = None,
    scope: str = "process",
):
    """Hold the leases of ``resources`` (prod prefix URIs or names) for the ``with`` block.

    With ``scope="run"`` (a task of a DAG run) the leases are parked at the end of the block, not
    released: the run keeps holding them until :func:`release_run` or their expiry.
    Without a manifest root there is nowhere to keep leases: nothing is held (and a warning says so).
    """
    if root is None:
        log.warning("no manifest_uri: %s runs without leases", operation)
        yield Leases([])
        return
    group = Leases(
        [
            Lease(client, root, r, run_id=run_id, operation=operation, wait=wait, ttl=ttl, scope=scope)
            for r in sorted(set(resources))
        ]
    )
    with group.held(scope=scope):
        yield group


def release_run(client, root: S3Uri | None, resources: list[str], *, run_id: str) -> list[str]:
    """Release the run-scoped leases ``run_id`` still holds on ``resources`` (its last task's job).

    A lease another run has taken over meanwhile (ours expired) is left alone. Returns the
    resources released."""
    if root is None:
        return []
    released = []
    for resource in sorted(set(resources)):
        lease = Lease(client, root, resource, run_id=run_id, operation="release", scope="run")
        current = lease._read()
        if current is None:
            continue
        holder, etag = current
        if not lease._same_run(holder):
            continue
        lease.operation = holder.get("operation") or "promote"
        lease.token = holder.get("token") or lease.token
        try:
            lease._put(lease._doc(released=True), if_match=etag)
        except Exception as exc:  # noqa: BLE001 - it expires on its own
            log.warning("could not release lease %s of run %r: %s", resource, run_id, exc)
            continue
        log.info("lease %s released by run %r (end of the run)", resource, run_id)
        released.append(resource)
    return released
