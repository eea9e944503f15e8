# Airflow image for the greenlight stack (used by docker-compose.yaml).
#
# The base tag must match the apache-airflow pin in requirements.txt; constraints.txt locks the
# full resolved set (it pins apache-airflow itself too), so the install below cannot silently
# up- or downgrade Airflow. tests/unit/test_docker_compose.py checks that the two stay in step.
FROM apache/airflow:3.3.0-python3.11

# Dependency files live outside AIRFLOW_HOME so they do not clutter /opt/airflow.
WORKDIR /opt/greenlight-deps
COPY requirements.txt constraints.txt ./

# The official image installs packages as the unprivileged `airflow` user, never as root.
USER airflow
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

# Fail the build early if the image lost something the stack relies on: the Celery provider
# (bundled with the base image, used by CeleryExecutor), the MLflow server's PostgreSQL and S3
# drivers (the `mlflow` service runs from this image), and Great Expectations 1.x (an unpinned
# resolve can silently fall back to GX 0.18).
RUN python -c "import airflow.providers.celery, boto3, mlflow, psycopg2, great_expectations as gx; \
assert gx.__version__.startswith('1.'), gx.__version__"

WORKDIR /opt/airflow
