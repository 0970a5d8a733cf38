# The airflow-mlpipe image: Airflow 3.3 + the provider + every stage's libraries, installed from the
# lock (uv sync --frozen), so the image runs exactly the versions the test suite ran.
# Used by every Airflow component, the MLflow server and the model service in docker-compose.yaml.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/mlpipe/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    AIRFLOW_HOME=/opt/airflow \
    MLFLOW_DISABLE_TELEMETRY=true \
    BENTOML_DO_NOT_TRACK=true \
    GX_ANALYTICS_ENABLED=false

# haproxy: the serving proxy the deployment stage drives (local target); libgomp1: scikit-learn.
RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir 'uv>=0.5'

WORKDIR /opt/mlpipe
# Dependencies first (cached layer), then the provider itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --all-extras --no-dev --no-install-project
COPY airflow_mlpipe ./airflow_mlpipe
RUN uv sync --frozen --all-extras --no-dev
# The example use case the reference DAGs run (churn data generator and estimator); not in the wheel.
COPY mlpipe_dev ./mlpipe_dev

COPY dags /opt/airflow/dags
ENV PATH=/opt/mlpipe/.venv/bin:$PATH
RUN useradd --create-home --uid 50000 airflow \
    && mkdir -p /opt/mlpipe-data /opt/airflow/logs \
    && chown -R airflow /opt/airflow /opt/mlpipe-data
USER airflow
CMD ["airflow", "version"]
