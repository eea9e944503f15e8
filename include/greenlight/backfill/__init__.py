"""Resumable backfills (runbook 003): :mod:`~greenlight.backfill.plan` decides which partitions to
run and keeps the summary (plain logic); :mod:`~greenlight.backfill.airflowapi` holds the REST calls;
:mod:`~greenlight.backfill.records` the per-partition records a backfill's runs write and the
summary merged from them; :mod:`~greenlight.backfill.runner` drives Airflow 3's backfill API and
follows the runs for ``greenlight backfill``."""
