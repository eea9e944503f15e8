"""Local development only: the demo, its data, and local S3/PostgreSQL/Redis/Airflow stacks.

Never imported by DAGs or the engine; not needed in a deployment image."""
