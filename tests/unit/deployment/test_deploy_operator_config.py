"""BentoDeployOperator's canary argument means what the deployment docs say."""

from __future__ import annotations

import pytest

from airflow_mlpipe.config.deploy import CanaryConfig
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.operators.bentoml import BentoDeployOperator


@pytest.mark.parametrize(
    ("kwargs", "enabled", "share"),
    [
        ({}, True, 0.1),  # left out: the default canary
        ({"canary": None}, False, 0.1),  # None disables it, as CanaryConfig.from_mapping(None) does
        ({"canary": {"enabled": False}}, False, 0.1),
        ({"canary": {"share": 0.3}}, True, 0.3),
        ({"canary": CanaryConfig(share=0.2)}, True, 0.2),
    ],
)
def test_canary_argument(kwargs, enabled, share):
    op = BentoDeployOperator(task_id="deploy", model_name="m", **kwargs)
    assert (op.canary.enabled, op.canary.share) == (enabled, share)


def test_bad_canary_is_a_config_error():
    with pytest.raises(ConfigError, match="canary must be"):
        BentoDeployOperator(task_id="deploy", model_name="m", canary=0.1)  # type: ignore[arg-type]
