"""docker-compose.yaml and the Dockerfile, checked without a Docker engine.

The compose file is validated against the Compose specification JSON schema (vendored in
tests/data, see compose-spec.NOTICE), and everything it names must exist in the project: the build
context and Dockerfile, bind-mounted files, the programs services run, the services they depend on.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
OUR_IMAGE = "airflow-mlpipe:local"
VENV_BIN = ROOT / ".venv" / "bin"


# Compose durations are Go durations ("30s", "1m30s"), not the ISO 8601 durations of JSON Schema's
# own "duration" format: check them as Compose reads them.
_GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
FORMATS = jsonschema.FormatChecker()
FORMATS.checks("duration")(lambda value: not isinstance(value, str) or bool(_GO_DURATION.match(value)))


def _ours(service: dict) -> bool:
    return service.get("image") == OUR_IMAGE


def test_compose_file_matches_the_compose_specification():
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema, format_checker=FORMATS)
    errors = sorted(validator.iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_compose_file():
    """The validator is really applied: a typo in a service key is an error."""
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema, format_checker=FORMATS)
    assert list(validator.iter_errors({"services": {"x": {"image": "a", "comand": ["oops"]}}}))
    bad_duration = {"services": {"x": {"image": "a", "healthcheck": {"interval": "ten seconds"}}}}
    assert list(validator.iter_errors(bad_duration))


def test_every_component_of_the_stack_is_there():
    commands = {name: s.get("command") for name, s in SERVICES.items()}
    assert commands["airflow-apiserver"][:2] == ["airflow", "api-server"]
    assert commands["airflow-scheduler"] == ["airflow", "scheduler"]
    assert commands["airflow-dag-processor"] == ["airflow", "dag-processor"]
    assert commands["airflow-triggerer"] == ["airflow", "triggerer"]
    assert commands["airflow-worker"] == ["airflow", "celery", "worker"]
    assert commands["mlflow"][:2] == ["mlflow", "server"]
    assert commands["model-service"][:2] == ["bentoml", "serve"]
    assert SERVICES["serving-proxy"]["image"].startswith("haproxy:")
    env = SERVICES["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert "mlpipe-data" in COMPOSE["volumes"]


def test_build_context_and_dockerfile_exist_and_install_from_the_lock():
    build = next(s["build"] for s in SERVICES.values() if "build" in s)
    context = ROOT / build["context"]
    dockerfile = (context / build["dockerfile"]).read_text()
    assert "uv sync --frozen" in dockerfile
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _dest = line.split()[1:]
            for src in sources:
                assert (context / src).exists(), f"Dockerfile copies {src}, which does not exist"
    ignored = (context / ".dockerignore").read_text().split()
    assert ".venv" in ignored  # the host venv must never be sent as build context


def test_bind_mounts_exist():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"


def test_programs_run_in_our_image_are_installed_entry_points():
    for name, service in SERVICES.items():
        command = service.get("command")
        if _ours(service) and command:
            program = command[0]
            assert (VENV_BIN / program).exists() or shutil.which(program), f"{name} runs {program}"
        healthcheck = service.get("healthcheck", {}).get("test", [])
        if _ours(service) and healthcheck[:1] == ["CMD"]:
            assert healthcheck[1] in (ROOT / "Dockerfile").read_text(), (
                f"{name} healthcheck needs {healthcheck[1]}"
            )


def test_dependencies_and_connections_point_at_defined_services():
    for name, service in SERVICES.items():
        for dep in service.get("depends_on", {}):
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
    env = SERVICES["airflow-scheduler"]["environment"]
    mlflow_conn = json.loads(env["AIRFLOW_CONN_MLPIPE_MLFLOW_DEFAULT"])
    assert mlflow_conn["conn_type"] == "mlpipe_mlflow"
    host, port = re.match(r"http://([^:/]+):(\d+)", mlflow_conn["host"]).groups()
    assert host in SERVICES and port in SERVICES[host]["command"]
    proxy_cfg = (ROOT / "docker" / "haproxy" / "haproxy.cfg").read_text()
    port = SERVICES["model-service"]["command"][SERVICES["model-service"]["command"].index("--port") + 1]
    proxy_env = SERVICES["serving-proxy"]["environment"]
    assert proxy_env["MLPIPE_MODEL_SERVICE"] == f"model-service:{port}"
    for variable in proxy_env:
        assert f'"${{{variable}}}"' in proxy_cfg, f"haproxy.cfg does not read {variable}"


@pytest.mark.parametrize(
    "variable",
    [
        "MLPIPE_ARTIFACT_ROOT",
        "MLPIPE_DATA_DIR",
        "AIRFLOW_CONN_MLPIPE_MLFLOW_DEFAULT",
        "AIRFLOW_CONN_MLPIPE_FEAST_DEFAULT",
    ],
)
def test_locations_the_reference_dags_read_are_set(variable):
    for name in ("airflow-worker", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert variable in SERVICES[name]["environment"], f"{name} lacks {variable}"


def test_feast_connection_uses_the_stack_services():
    extra = json.loads(SERVICES["airflow-worker"]["environment"]["AIRFLOW_CONN_MLPIPE_FEAST_DEFAULT"])[
        "extra"
    ]
    assert "@postgres:5432/feast" in extra["registry"]["path"]
    assert extra["online_store"]["connection_string"].startswith("redis:6379")
    assert "CREATE DATABASE feast" in (ROOT / "docker" / "postgres" / "init-databases.sql").read_text()


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags: ``!reset`` clears what the base file set."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)
OVERRIDE = yaml.load((ROOT / "docker" / "compose.test.yaml").read_text(), Loader=_ComposeLoader)


def test_test_override_swaps_every_upstream_image_for_its_standin():
    """What the compose test runs differs from the file users get only by the override, and the
    override names a stand-in (mlpipe_dev/containers/standin.py) for every upstream image."""
    from mlpipe_dev.containers.standin import STANDINS, standin_tag

    for name, service in SERVICES.items():
        image = service.get("image")
        if image and image != OUR_IMAGE:
            assert OVERRIDE["services"][name]["image"] == standin_tag(STANDINS[image]), name
    args = OVERRIDE["x-airflow-test"]["build"]["args"]
    assert args["PYTHON_IMAGE"] == standin_tag(STANDINS["python:3.11-slim-bookworm"])
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in (ROOT / "Dockerfile").read_text()


def test_test_override_puts_every_service_on_the_host_network_without_published_ports():
    for name in SERVICES:
        override = OVERRIDE["services"][name]
        assert override["network_mode"] == "host", name
        assert not override.get("ports"), name


def test_container_id_is_read_from_the_hostname_mount():
    from mlpipe_dev.containers.hostname import container_id

    cid = "ab" * 32
    mountinfo = (
        "95 78 254:0 /var/lib/docker/volumes/x/_data /opt/x rw - ext4 /dev/vda rw\n"
        f"96 78 254:0 /var/lib/docker/containers/{cid}/hostname /etc/hostname rw - ext4 /dev/vda rw\n"
    )
    assert container_id(mountinfo) == cid
    assert container_id("25 1 0:22 / /proc rw - proc proc rw\n") is None
