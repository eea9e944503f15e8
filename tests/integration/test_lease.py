"""Leases (one writer per prod prefix) against the real S3 server: refusal, waiting, renewal,
takeover of a dead or expired holder, and a race of many writers for one lease."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from greenlight.errors import RefusedError
from greenlight.storage.lease import Lease, LeaseHeldError, LeaseLostError, Leases, lease_key
from greenlight.storage.s3 import S3Uri


@pytest.fixture
def root(buckets, area):
    return S3Uri(buckets[1], f"_greenlight/{area}")


def lease(s3, root, run_id, **kwargs):
    kwargs.setdefault("operation", "promote")
    return Lease(s3, root, "s3://prod-x/area/zarr/", run_id=run_id, **kwargs)


def stored(s3, root):
    key = lease_key(root, "s3://prod-x/area/zarr/")
    return json.loads(s3.get_object(Bucket=root.bucket, Key=key)["Body"].read())


def test_second_writer_is_refused_naming_the_holder(s3, root):
    first = lease(s3, root, "nightly-1").acquire()
    try:
        with pytest.raises(LeaseHeldError) as caught:
            lease(s3, root, "cli__manual", operation="rollback").acquire()
        error = caught.value
        assert isinstance(error, RefusedError) and error.exit_code == 2 and not error.retryable
        message = str(error)
        assert "'nightly-1'" in message and stored(s3, root)["expires_at"] in message
        assert "s3://prod-x/area/zarr/" in message and "--wait" in message
    finally:
        first.release()
    assert stored(s3, root)["released_at"]
    # Released: the next writer gets it at once.
    second = lease(s3, root, "cli__manual").acquire()
    second.release()


def test_wait_gets_the_lease_when_the_holder_releases(s3, root):
    first = lease(s3, root, "nightly-1").acquire()
    threading.Timer(1.5, first.release).start()
    second = lease(s3, root, "cli__waiting", wait=20).acquire()
    try:
        assert second.waited >= 1.0
        assert stored(s3, root)["run_id"] == "cli__waiting"
    finally:
        second.release()


def test_wait_gives_up_at_its_deadline(s3, root):
    first = lease(s3, root, "nightly-1").acquire()
    try:
        with pytest.raises(LeaseHeldError, match="after waiting 1 s"):
            lease(s3, root, "cli__impatient", wait=1).acquire()
    finally:
        first.release()


def test_renewal_keeps_the_lease_past_its_ttl(s3, root):
    first = lease(s3, root, "long-run", ttl=1.5).acquire()
    try:
        time.sleep(3.5)  # more than twice the TTL: only renewals keep it
        with pytest.raises(LeaseHeldError, match="long-run"):
            lease(s3, root, "intruder").acquire()
        first.check()
    finally:
        first.release()


def test_expired_lease_of_another_host_is_taken_over_and_logged(s3, root, caplog):
    now = time.time()
    doc = {
        "kind": "greenlight.lease/v1",
        "resource": "s3://prod-x/area/zarr/",
        "run_id": "crashed-run",
        "operation": "promote",
        "host": "some-other-worker",
        "pid": 4242,
        "token": "t",
        "expires_at": "soon",
        "expires_epoch": now + 2,
    }
    s3.put_object(Bucket=root.bucket, Key=lease_key(root, "s3://prod-x/area/zarr/"), Body=json.dumps(doc).encode())
    with pytest.raises(LeaseHeldError, match="crashed-run"):
        lease(s3, root, "next-run").acquire()  # not expired yet, and not ours to judge: refused
    caplog.set_level(logging.WARNING, logger="greenlight.storage.lease")
    taker = lease(s3, root, "next-run", wait=10).acquire()
    try:
        assert taker.took_over["run_id"] == "crashed-run"
        assert any("taken over" in r.message and "crashed-run" in r.message for r in caplog.records)
    finally:
        taker.release()


def test_killed_holder_on_this_host_is_taken_over_at_once(s3, s3env, root, tmp_path):
    script = tmp_path / "holder.py"
    script.write_text(
        "import sys, time\n"
        "from greenlight.storage.lease import Lease\n"
        "from greenlight.storage.s3 import S3Uri, make_client\n"
        f"root = S3Uri({root.bucket!r}, {root.prefix!r})\n"
        "Lease(make_client(), root, 's3://prod-x/area/zarr/', run_id='killed-run', operation='promote', ttl=600).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env={**os.environ, **s3env.env()})
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(LeaseHeldError, match="killed-run"):
            lease(s3, root, "next-run").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    taker = lease(s3, root, "next-run").acquire()  # the 600 s lease of a dead local process
    try:
        assert taker.took_over["run_id"] == "killed-run"
    finally:
        taker.release()


def test_a_writer_whose_lease_was_taken_over_learns_it(s3, root):
    stalled = lease(s3, root, "stalled", ttl=1).acquire()
    stalled._stop.set()  # renewals stop, as in a process frozen for longer than the TTL
    stalled._thread.join()
    time.sleep(1.2)
    taker = lease(s3, root, "taker").acquire()
    try:
        with pytest.raises(LeaseLostError, match="taker"):
            stalled.renew()
        with pytest.raises(LeaseLostError):
            stalled.check()
        stalled.release()  # must not release the taker's lease
        assert stored(s3, root)["run_id"] == "taker" and not stored(s3, root).get("released_at")
    finally:
        taker.release()


def test_many_writers_racing_get_exactly_one_lease(s3, root):
    def attempt(i):
        try:
            return lease(s3, root, f"racer-{i}").acquire()
        except LeaseHeldError:
            return None

    with ThreadPoolExecutor(max_workers=12) as pool:
        winners = [w for w in pool.map(attempt, range(12)) if w is not None]
    try:
        assert len(winners) == 1
        assert stored(s3, root)["run_id"] == winners[0].run_id
    finally:
        for w in winners:
            w.release()


def test_a_group_is_all_or_nothing(s3, root):
    other = Lease(s3, root, "s3://prod-x/area/csv/", run_id="holder", operation="promote").acquire()
    group = Leases([lease(s3, root, "group"), Lease(s3, root, "s3://prod-x/area/csv/", run_id="group", operation="x")])
    try:
        with pytest.raises(LeaseHeldError):
            group.acquire()
        # The lease the group did get was given back: another run may take it at once.
        lease(s3, root, "someone").acquire().release()
    finally:
        other.release()


def test_a_group_taken_after_waiting_for_one_lease_keeps_renewing_all(s3, root):
    """The group's first attempt takes the free lease and finds the other held: it gives the free
    one back, then takes both in order, waiting. The lease it gave back and took again must still
    be renewed in the background (a lease taken twice keeps its renewals)."""
    csv = "s3://prod-x/area/csv/"
    other = Lease(s3, root, csv, run_id="holder", operation="promote").acquire()
    threading.Timer(1.0, other.release).start()
    group = Leases(
        [
            lease(s3, root, "group", ttl=1.5, wait=20),
            Lease(s3, root, csv, run_id="group", operation="x", ttl=1.5, wait=20),
        ]
    )
    group.acquire()
    try:
        time.sleep(3.5)  # more than twice the TTL: only renewals keep them
        for resource in ("s3://prod-x/area/zarr/", csv):
            with pytest.raises(LeaseHeldError, match="'group'"):
                Lease(s3, root, resource, run_id="intruder", operation="promote").acquire()
        group.check()
    finally:
        group.release()
    assert stored(s3, root)["released_at"]


def test_a_free_group_is_taken_at_once_and_given_back_whole(s3, root):
    csv = "s3://prod-x/area/csv/"
    group = Leases([lease(s3, root, "free-group"), Lease(s3, root, csv, run_id="free-group", operation="promote")])
    with group:
        assert [row["took_over_from"] for row in group.report()] == [None, None]
        with pytest.raises(LeaseHeldError, match="'free-group'"):
            Lease(s3, root, csv, run_id="intruder", operation="promote").acquire()
        with pytest.raises(LeaseHeldError, match="'free-group'"):
            lease(s3, root, "intruder").acquire()
    lease(s3, root, "after").acquire().release()
    Lease(s3, root, csv, run_id="after", operation="promote").acquire().release()
