"""greenlight: safe, verifiable promotion and reconciliation of ML/data artefacts.

The core modules (config, s3, sync, manifest, cli) do not import Airflow; the Airflow glue lives
in :mod:`greenlight.dagsupport` and is imported only by DAG files and task code.
"""

__version__ = "0.1.0"
