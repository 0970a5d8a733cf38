"""Deployment targets are chosen by configuration: one resolver, the rollout sees only the protocol."""

from __future__ import annotations

import json

import pytest

from airflow_mlpipe.config.deploy import TARGET_ENV, TargetSpec
from airflow_mlpipe.config.pipeline import DeploymentSection
from airflow_mlpipe.deploy.targets import TARGETS, resolve_target, site_target
from airflow_mlpipe.deploy.targets.base import DeploymentTarget
from airflow_mlpipe.deploy.targets.local import LocalTarget
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.operators.bentoml import BentoDeployOperator, BentoHealthCheckOperator
from mlpipe_dev.local.stack import free_port


class RecordingTarget:
    """A target from outside the package, plugged in by its import path only."""

    def __init__(self, deployment_name: str, *, region: str) -> None:
        self.deployment_name, self.region = deployment_name, region


def test_local_kind_builds_the_local_target_with_its_options(tmp_path):
    import os

    port = free_port()
    # BentoML's home is fixed per process once it is initialised (an earlier test in the same
    # process may have done so): pass the home in effect, as a worker with BENTOML_HOME would.
    home = os.environ.get("BENTOML_HOME") or str(tmp_path)
    target = resolve_target(
        {"kind": "local", "state_dir": str(tmp_path / "state"), "port": port, "bentoml_home": home},
        deployment_name="churn",
    )
    assert isinstance(target, LocalTarget) and isinstance(target, DeploymentTarget)
    assert target.name == "churn" and target.dir == tmp_path / "state" and target.port == port
    assert sorted(TARGETS) == ["docker", "local"]


def test_a_new_target_plugs_in_by_configuration():
    spec = {"kind": f"{__name__}:RecordingTarget", "region": "eu"}
    target = resolve_target(spec, deployment_name="churn")
    assert isinstance(target, RecordingTarget) and (target.deployment_name, target.region) == ("churn", "eu")
    # the operators resolve through the same function: nothing hard-codes the local target
    op = BentoHealthCheckOperator(task_id="health", deployment_name="churn", target=spec)
    assert isinstance(op._target(), RecordingTarget)
    deploy = BentoDeployOperator(task_id="deploy", model_name="m", target=spec, port=8080)
    with pytest.raises(ConfigError, match=r"\['port'\] are options of the local target"):
        deploy._target()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"kind": "kubernetes"},
            "Unknown deployment target kind 'kubernetes'; use one of \\['docker', 'local'\\]",
        ),
        ({"kind": "no.such.module:Target"}, "cannot be imported"),
        ({"kind": f"{__name__}:RecordingTarget"}, "Invalid options \\[\\] for target"),
        ({"kind": "local", "colour": "red"}, "Invalid options \\['colour'\\]"),
        ({"kind": ""}, "target.kind must name a deployment target"),
        (42, "target must be a mapping"),
    ],
)
def test_bad_target_specs_say_what_to_change(spec, message):
    with pytest.raises(ConfigError, match=message):
        resolve_target(spec, deployment_name="churn")


def test_state_options_belong_to_the_spec_not_to_the_factory():
    spec = TargetSpec.from_mapping({"kind": "local", "port": 9000, "state_conn_id": "pg", "state_table": "t"})
    assert spec == TargetSpec("local", {"port": 9000}, state_conn_id="pg", state_table="t")
    assert TargetSpec.from_mapping(spec) == spec
    assert TargetSpec.from_mapping({"kind": "local"}).state_table == "mlpipe_deployment_state"
    with pytest.raises(ConfigError, match="state_conn_id must name an Airflow connection"):
        TargetSpec.from_mapping({"kind": "local", "state_conn_id": " "})


def test_pipeline_deployment_config_carries_the_target():
    assert DeploymentSection().target is None  # the workers' default
    assert TargetSpec.from_mapping(
        DeploymentSection(target={"kind": "local", "port": 9000}).target
    ) == TargetSpec("local", {"port": 9000})
    with pytest.raises(ConfigError, match="deployment.target must be a mapping"):
        DeploymentSection(target="local")  # type: ignore[arg-type]


def test_a_config_without_target_deploys_where_the_worker_environment_says(monkeypatch):
    spec = {"kind": f"{__name__}:RecordingTarget", "region": "eu"}
    op = BentoHealthCheckOperator(task_id="health", deployment_name="churn")
    monkeypatch.delenv(TARGET_ENV, raising=False)
    assert site_target() is None

    monkeypatch.setenv(TARGET_ENV, json.dumps(spec))
    assert site_target() == spec
    target = op._target()
    assert isinstance(target, RecordingTarget) and target.region == "eu"
    # a target the config names wins over the worker's default
    named = BentoHealthCheckOperator(
        task_id="named",
        deployment_name="churn",
        target={"kind": f"{__name__}:RecordingTarget", "region": "us"},
    )
    assert named._target().region == "us"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", r"\$MLPIPE_DEPLOYMENT_TARGET is not valid JSON"),
        ('["docker"]', "must be a JSON object with a 'kind'"),
        ('{"state_conn_id": "pg"}', "must be a JSON object with a 'kind'"),
        ('{"kind": "docker", "state_conn_id": " "}', "state_conn_id must name an Airflow connection"),
    ],
)
def test_a_bad_worker_default_target_says_which_variable(monkeypatch, value, message):
    monkeypatch.setenv(TARGET_ENV, value)
    with pytest.raises(ConfigError, match=message):
        BentoHealthCheckOperator(task_id="health", deployment_name="churn")._target()
