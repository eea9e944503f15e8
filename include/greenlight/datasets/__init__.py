"""Staged dataset versions (runbook 002): a primary and staged versions of each dataset's update
and validate jobs, generated as Airflow DAGs from ``include/config/datasets.yaml``.

``config`` loads and validates the file: ``model`` holds its shape (pydantic) and the resolved
dataclasses, ``rules`` the runbook's rules that resolve one into the other; ``naming`` holds
the one naming convention (DAG ids, pools, Kubernetes names, branches, store paths), ``factory``
builds the DAGs, ``jobs`` runs an update/validate job with its path guard, ``ops`` promotes and
cleans up. No Airflow import at module level except in ``factory``.
"""
