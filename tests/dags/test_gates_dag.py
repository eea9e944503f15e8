"""Contract gates in ``artefact_promotion`` (``dag.test()``, real SeaweedFS, real GX, a real
``airflow api-server`` that the halt path pauses consumer DAGs through).

Each test has its own QA area with the demo's three contract-checked artefacts (a Zarr v2 store,
CSV and parquet deliveries) and sets up the prod state it needs itself (a clean promotion through
the library when prod must hold data), so the tests pass alone and in any order. Each defective QA
variant must route to ``halt_prod_consumers``: nothing in prod changes (object versions compared),
the consumer DAG is paused, the halt is recorded (with no secret in it), no Asset event is emitted.
A clean run with ``resume_consumers`` unpauses the consumer, and only it.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from dagrun import asset_events, run_dag
from helpers import rel_listing, versions, write_config

from greenlight.dagsupport.api import AirflowApi
from greenlight.dev import demo_data

pytestmark = pytest.mark.usefixtures("airflow_db")

PREFIXES = {
    "corn_stress": (demo_data.CORN_STRESS_STORE, "corn_stress_zarr"),
    "deliveries_csv": (demo_data.DELIVERY_CSV_PREFIX, "deliveries_csv"),
    "deliveries_parquet": (demo_data.DELIVERY_PARQUET_PREFIX, "deliveries_parquet"),
}
CONSUMER = "commodity_hindcast_prod"
HAND_PAUSED = "artefact_rollback"  # a "consumer" an operator paused by hand: must stay paused


def _value(xcom):
    return json.loads(xcom) if isinstance(xcom, str) else xcom


@pytest.fixture
def gated(tmp_path, s3, buckets, airflow_api):
    """Config for the three prefixes under an area of this test's own, and a helper that seeds a
    QA variant."""
    qa, prod = buckets
    area = f"gates-{dt.datetime.now(dt.UTC):%H%M%S%f}/"
    config = write_config(
        tmp_path / "promotion.yaml",
        {
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"consumers": [CONSUMER, HAND_PAUSED], "stale_after_hours": None},
            "prefixes": [
                {"name": name, "source": f"s3://{qa}/{area}{rel}", "contract": contract}
                for name, (rel, contract) in PREFIXES.items()
            ],
        },
    )
    today = dt.date.today()

    def seed(variant: str) -> None:
        wanted = {
            k: v
            for k, v in demo_data.build_qa_artefacts(today, variant=variant).items()
            if any(k.startswith(rel) for rel, _ in PREFIXES.values())
        }
        demo_data.seed_bucket(s3, qa, wanted, prefix=area, delete_extra_under=[rel for rel, _ in PREFIXES.values()])

    def promote_clean() -> str:
        """Seed clean QA and promote it through the library (the CLI's path): prod holds data."""
        from greenlight.promotion.config import load_config
        from greenlight.promotion.run import promote

        seed("clean")
        return promote(load_config(config), s3, run_id=f"setup-{area.strip('/')}")["manifest"]

    api = AirflowApi(airflow_api.url, "admin", airflow_api.password)
    return {
        "config": config,
        "area": area,
        "seed": seed,
        "promote_clean": promote_clean,
        "api": api,
        "secrets": [airflow_api.password],
    }


@pytest.fixture
def use_config(gated, monkeypatch):
    monkeypatch.setenv("GREENLIGHT_PROMOTION_CONFIG", str(gated["config"]))
    return gated


def _prod_state(s3, prod, area):
    return {name: versions(s3, prod, area + rel) for name, (rel, _) in PREFIXES.items()}


def _halt_variable(api):
    raw = api.get_variable("greenlight_promotion_halt")
    return json.loads(raw) if raw else None


def test_clean_qa_passes_every_gate_promotes_and_announces(use_config, s3, buckets):
    qa, prod = buckets
    area = use_config["area"]
    use_config["seed"]("clean")

    state, tis, xcoms, run_id = run_dag("artefact_promotion", {})

    assert state == "success", tis
    assert tis["halt_prod_consumers"][0] == "skipped"
    gates = [_value(xcoms[f"gate.{i}"]) for i in range(3)]
    assert all(g["passed"] for g in gates), [g["reasons"] for g in gates]
    assert {g["contract"] for g in gates} == {c for _, c in PREFIXES.values()}
    # validated through the GX provider's operator, every expectation reported
    assert all(g["gx"]["operator"] == "GXValidateDataFrameOperator" and g["gx"]["results"] for g in gates)
    for rel, _ in PREFIXES.values():
        assert rel_listing(s3, prod, area + rel) == rel_listing(s3, qa, area + rel)
    uris = [f"s3://{prod}/{area}{rel}" for rel, _ in PREFIXES.values()]
    assert all(len(e) == 1 for e in asset_events(uris, run_id).values())
    # the promotion manifest and the current pointer record the contract version prod now follows
    summary = _value(xcoms["summary"])
    manifest = json.loads(
        s3.get_object(Bucket=prod, Key=summary["per_prefix"][0]["manifest"].split("/", 3)[3])["Body"].read()
    )
    assert manifest["contract"] in {c for _, c in PREFIXES.values()} and manifest["contract_version"] == 1
    pointers = s3.list_objects_v2(Bucket=prod, Prefix=f"_greenlight/{area}current/")["Contents"]
    assert len(pointers) == 3


@pytest.mark.parametrize(
    ("variant", "failing", "checks"),
    [
        ("dropped_column", {"deliveries_csv"}, {"column_missing"}),
        ("retyped_column", {"deliveries_csv", "deliveries_parquet"}, {"column_retyped"}),
        ("renamed_coordinate", {"corn_stress"}, {"coordinate_renamed", "coordinate_missing"}),
        ("stale", {"deliveries_csv", "deliveries_parquet"}, {"stale"}),
    ],
)
def test_defective_qa_halts_consumers_and_leaves_prod_untouched(
    use_config, s3, s3env, buckets, variant, failing, checks
):
    qa, prod = buckets
    area, api = use_config["area"], use_config["api"]
    use_config["promote_clean"]()  # prod holds the clean artefacts: drift is checked against them
    api.set_paused(CONSUMER, False)  # the consumer is live; the other one was paused by hand
    api.set_paused(HAND_PAUSED, True)
    use_config["seed"](variant)
    before = _prod_state(s3, prod, area)

    state, tis, xcoms, run_id = run_dag("artefact_promotion", {})

    assert state == "failed"
    assert tis["decide"][0] == "success"
    assert tis["halt_prod_consumers"] == ("failed", 1)  # failed on the first try, not retried
    assert not any(k.startswith("promote") and v[0] != "skipped" for k, v in tis.items()), tis
    assert tis["verify"][0] == "skipped"
    gates = {g["name"]: g for g in (_value(xcoms[f"gate.{i}"]) for i in range(3))}
    assert {n for n, g in gates.items() if not g["passed"]} == failing
    for name in failing:
        assert checks & {m["check"] for m in gates[name]["mismatches"]}, gates[name]["mismatches"]
        assert gates[name]["reasons"] and all(name in r for r in gates[name]["reasons"])
    # prod is byte-for-byte what it was: no new version, no delete marker, under any prefix
    assert _prod_state(s3, prod, area) == before
    uris = [f"s3://{prod}/{area}{rel}" for rel, _ in PREFIXES.values()]
    assert asset_events(uris, run_id) == {u: [] for u in uris}
    # the live consumer is paused and recorded as paused by greenlight; the hand-paused one is not
    assert api.get_dag(CONSUMER)["is_paused"] is True
    halt = _halt_variable(api)
    assert halt["halted"] is True and halt["run_id"] == run_id
    assert halt["paused_by_greenlight"] == [CONSUMER] and halt["already_paused"] == [HAND_PAUSED]
    assert set(halt["prefixes"]) == {f"s3://{qa}/{area}{PREFIXES[n][0]}" for n in failing}
    raw = s3.get_object(Bucket=prod, Key=halt["manifest"].split("/", 3)[3])["Body"].read().decode()
    record = json.loads(raw)
    assert {g["name"] for g in record["gates"] if not g["passed"]} == failing
    # The halt path records no secret: not the API user's password, not the S3 secret key.
    for secret in [*use_config["secrets"], s3env.secret_key]:
        assert secret not in raw and secret not in json.dumps(halt) and secret not in json.dumps(xcoms, default=str)


def test_fixed_qa_then_resume_unpauses_only_what_the_halt_paused(use_config, s3, buckets):
    qa, prod = buckets
    area, api = use_config["area"], use_config["api"]
    api.set_paused(CONSUMER, False)
    api.set_paused(HAND_PAUSED, True)
    use_config["seed"]("renamed_column")
    state, _, _, _ = run_dag("artefact_promotion", {})
    assert state == "failed" and api.get_dag(CONSUMER)["is_paused"] is True

    # QA is fixed; a clean run promotes but, without the param, leaves the consumers paused.
    use_config["seed"]("clean")
    state, tis, xcoms, _ = run_dag("artefact_promotion", {})
    assert state == "success", tis
    assert _value(xcoms["resume_consumers"])["resumed"] == []
    assert api.get_dag(CONSUMER)["is_paused"] is True and _halt_variable(api)["halted"] is True

    state, tis, xcoms, _ = run_dag("artefact_promotion", {"resume_consumers": True})
    assert state == "success", tis
    assert _value(xcoms["resume_consumers"])["resumed"] == [CONSUMER]
    assert api.get_dag(CONSUMER)["is_paused"] is False
    assert api.get_dag(HAND_PAUSED)["is_paused"] is True  # never resumes what it did not pause
    assert _halt_variable(api)["halted"] is False
    for rel, _ in PREFIXES.values():
        assert rel_listing(s3, prod, area + rel) == rel_listing(s3, qa, area + rel)


def test_rollback_after_a_halt_resumes_consumers_when_asked(use_config, s3, buckets):
    """``artefact_rollback`` with ``resume_consumers``: prod goes back to before this test's
    promotion, and only the consumer the halt paused is unpaused."""
    qa, prod = buckets
    area, api = use_config["area"], use_config["api"]
    first = use_config["promote_clean"]()  # this test's own promotion: the one rolled back
    api.set_paused(CONSUMER, False)
    api.set_paused(HAND_PAUSED, True)
    use_config["seed"]("dropped_column")
    state, _, _, _ = run_dag("artefact_promotion", {})
    assert state == "failed" and api.get_dag(CONSUMER)["is_paused"] is True

    state, tis, xcoms, _ = run_dag("artefact_rollback", {"manifest": first, "resume_consumers": True})

    assert state == "success", tis
    for rel, _ in PREFIXES.values():
        assert rel_listing(s3, prod, area + rel) == {}  # prod had none of it before the first promotion
    assert _value(xcoms["resume_consumers"])["resumed"] == [CONSUMER]
    assert api.get_dag(CONSUMER)["is_paused"] is False and api.get_dag(HAND_PAUSED)["is_paused"] is True
    assert _halt_variable(api)["halted"] is False
