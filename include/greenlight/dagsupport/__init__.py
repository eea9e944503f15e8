"""Airflow glue: connections, error triage for tasks, and the task bodies of the DAGs.

DAG files import only this package's light modules at parse time; everything heavy (boto3,
the provider hooks, the engine) is imported inside the functions that tasks call.
"""
