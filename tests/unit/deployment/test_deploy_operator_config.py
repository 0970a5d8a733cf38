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


@pytest.mark.parametrize(
    ("batching", "expected"),
    [
        (None, (True, 64, 10_000)),  # left out: batching on with the default limits
        ({"enabled": False}, (False, 64, 10_000)),
        ({"max_batch_size": 8, "max_latency_ms": 500}, (True, 8, 500)),
    ],
)
def test_batching_argument(batching, expected):
    op = BentoDeployOperator(task_id="deploy", model_name="m", batching=batching)
    assert (op.batching.enabled, op.batching.max_batch_size, op.batching.max_latency_ms) == expected


@pytest.mark.parametrize(
    ("batching", "needle"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be in 1..10000"),
        ({"max_batch_size": 2.5}, "max_batch_size must be an integer"),
        ({"max_latency_ms": 1}, "max_latency_ms must be in 10..600000"),
        ({"enabled": "yes"}, "enabled must be true or false"),
        ({"max_rows": 5}, "unknown key(s) ['max_rows']"),
    ],
)
def test_bad_batching_is_a_config_error(batching, needle):
    with pytest.raises(ConfigError) as err:
        BentoDeployOperator(task_id="deploy", model_name="m", batching=batching)
    assert needle in str(err.value)


@pytest.mark.parametrize("promote", [True, False])
def test_a_rejected_version_fails_the_task_without_a_retry(monkeypatch, promote):
    """A rejection is final (the candidate is withdrawn): no retry that could only fail again."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlpipe.deploy import release, rollout
    from airflow_mlpipe.deploy.checks import CanaryFailed

    summary = {"status": "rejected", "check": "canary", "reasons": ["canary p95 900 ms > 120 ms"]}

    def reject(*args, **kwargs):  # the injected fault: the canary judged the version worse
        raise CanaryFailed("canary p95 900 ms > 120 ms", summary)

    monkeypatch.setattr(release, "release", reject)
    monkeypatch.setattr(rollout, "deploy", reject)
    op = BentoDeployOperator(task_id="deploy", model_name="m", promote=promote, retries=3)
    monkeypatch.setattr(op, "_check_ref", lambda: None)
    monkeypatch.setattr(op, "_target", lambda: type("T", (), {"endpoint": "http://127.0.0.1:1"})())
    monkeypatch.setattr(op, "_resolve", lambda: (None, None))
    pushed: dict[str, object] = {}
    ti = type("TI", (), {"xcom_push": lambda self, key, value: pushed.update({key: value})})()
    with pytest.raises(AirflowFailException, match="CanaryFailed: canary p95 900 ms") as err:
        op.execute({"ti": ti})
    assert isinstance(err.value.__cause__, CanaryFailed)
    assert pushed["return_value"] == summary
