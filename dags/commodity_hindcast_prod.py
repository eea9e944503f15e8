"""
### commodity_hindcast_prod — example prod consumer of promoted artefacts

Runs when **every** prod prefix of the promotion config has a new Asset event, i.e. after
`artefact_promotion` verified prod equals QA for all of them. A promotion that fails, is refused or
is a dry run emits no event, so this DAG does not run on half-promoted or unverified inputs. It
also runs when `model_promotion` moves the head of a model that lists it under `consumers` in
`include/config/models.yaml` (the model's `current/models/<name>.json` Asset).

This is the runbook's "prod hindcast" stand-in: it logs the triggering events (run id, copied /
deleted counts, the manifest that can roll the inputs back) where a real consumer would start its
job, and resolves the model heads it would load (`models:/<name>/<version>` from each model's
pointer): its task manifest records them, which is what `greenlight model check-consumer --name X`
reads to say whether the first run after a model promotion used the new version.
"""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import Asset, AssetAll, AssetAny, dag, task

from greenlight.dagsupport.defaults import add_run_check, default_args
from greenlight.models import config as models_config
from greenlight.models.consumers import head_asset, models_of_consumer
from greenlight.promotion.config import load_config

log = logging.getLogger("greenlight.consumer")

# The prod prefixes come from the same promotion.yaml the producer uses (a local file read: no
# connection, no Variable, no network at parse time).
PROD_ASSETS = [Asset(uri=str(p.destination), name=p.asset_name) for p in load_config().prefixes]
# A new head of a model this DAG consumes (models.yaml, a local file read) also starts a run.
_MODELS = models_config.load()
MODEL_HEADS = [Asset(**head_asset(_MODELS, m)) for m in models_of_consumer(_MODELS, "commodity_hindcast_prod")]
SCHEDULE = AssetAll(*PROD_ASSETS) | AssetAny(*MODEL_HEADS) if MODEL_HEADS else PROD_ASSETS


@dag(
    dag_id="commodity_hindcast_prod",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=default_args(owner="forecasting", retries=1),
    tags=["greenlight", "consumer", "example"],
)
def commodity_hindcast_prod():
    @task(inlets=PROD_ASSETS)
    def run_hindcast(triggering_asset_events=None, dag=None) -> dict:
        """The prod hindcast stand-in: runs on verified prod inputs only and logs which run verified each;
        resolves the model heads it loads (recorded in its task manifest: `models`).

        Retry category: A — reads prod and the model pointers; clear in place.
        """
        seen = {}
        for asset, events in (triggering_asset_events or {}).items():
            for event in events:
                extra = dict(event.extra or {})
                seen[str(getattr(asset, "uri", asset))] = extra
                log.info(
                    "input %s verified by run %s (copied=%s, deleted=%s, manifest=%s)",
                    getattr(asset, "uri", asset),
                    extra.get("run_id"),
                    extra.get("copied"),
                    extra.get("deleted"),
                    extra.get("manifest"),
                )
        from greenlight.dagsupport.models import consumer_heads

        return {"inputs": len(seen), "models": consumer_heads(dag.dag_id)}

    run_hindcast()


add_run_check(commodity_hindcast_prod())
