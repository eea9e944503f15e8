"""Reconciliation of DVC remotes, MLflow artifacts and git/DVC locks against object storage
(``run`` drives a config of targets; ``dvc``, ``gitdvc``, ``mlflow`` check one kind each)."""
