# The airflow-mlpipe image: Airflow 3.3 + the provider + every stage's libraries, installed from the
# lock (uv sync --frozen), so the image runs exactly the versions the test suite ran.
# Used by every Airflow component, the MLflow server and the model service in docker-compose.yaml.
#
# PYTHON_IMAGE: the base image (the official one; the compose test passes a stand-in built from
# Debian's packages, mlpipe_dev/containers/standin.py, where no image registry is reachable).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/mlpipe/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    AIRFLOW_HOME=/opt/airflow \
    MLFLOW_DISABLE_TELEMETRY=true \
    BENTOML_DO_NOT_TRACK=true \
    GX_ANALYTICS_ENABLED=false

# Behind a TLS-inspecting proxy, pass the CA bundle that trusts it as a build secret (used while
# downloading packages only, never stored in the image):
#   --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt
# haproxy: the serving proxy the deployment stage drives (local target); libgomp1: scikit-learn.
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends haproxy libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir 'uv>=0.5'

WORKDIR /opt/mlpipe
# Dependencies first (a layer rebuilt only when the lock changes), then the provider itself. uv's
# download cache is a BuildKit cache mount: a rebuild after a lock change downloads only what changed.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,id=mlpipe-uv-cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && uv sync --frozen --extra all --no-dev --no-install-project
COPY airflow_mlpipe ./airflow_mlpipe
RUN --mount=type=cache,id=mlpipe-uv-cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && uv sync --frozen --extra all --no-dev
# The example use case the reference DAGs run (churn data generator and estimator); not in the wheel.
COPY mlpipe_dev ./mlpipe_dev

COPY dags /opt/airflow/dags
ENV PATH=/opt/mlpipe/.venv/bin:$PATH
RUN useradd --create-home --uid 50000 airflow \
    && mkdir -p /opt/mlpipe-data /opt/airflow/logs \
    && chown -R airflow /opt/airflow /opt/mlpipe-data
USER airflow
CMD ["airflow", "version"]
