"""Task logs show what the stage did: a model save and load and a validation, run as a task runs
them (a fresh process with Airflow imported, warnings and log records going to the task log,
stderr kept apart as the task supervisor keeps it), leave no library noise, and real warnings
still show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

TASK = textwrap.dedent(
    """
    import logging, warnings

    import airflow.sdk  # noqa: F401  (a task process has Airflow's modules loaded)

    logging.captureWarnings(True)
    warnings.simplefilter("default")

    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from airflow_mlpipe.core.registry import load_model
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from airflow_mlpipe.validation.dataset import validate_frame
    from airflow_mlpipe.validation.suite import load_suite

    X, y = load_iris(return_X_y=True, as_frame=True)
    hook = MlflowHook("mlpipe_mlflow_quiet")
    with hook.activate() as mlflow:
        import mlflow.sklearn

        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                LogisticRegression(max_iter=300).fit(X, y),
                name="model",
                pip_requirements=["scikit-learn"],
                serialization_format="skops",
                skops_trusted_types=[],
                registered_model_name="quiet",
            )
        load_model("models:/quiet/1")
        warnings.warn("a real warning from the stage", FutureWarning)
    suite = load_suite([{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}])
    summary = validate_frame(pd.DataFrame({"a": [1, 2, 3]}), suite, dataset_uri="mem://a")
    logging.getLogger("great_expectations").warning("a real warning from Great Expectations")
    print("VALIDATED", summary["success"])
    """
)


def test_model_save_load_and_validation_leave_no_library_noise_in_the_task_log(tmp_path):
    conn = {"conn_type": "mlpipe_mlflow", "host": f"sqlite:///{tmp_path}/mlflow.db"}
    conn["extra"] = {"artifact_location": str(tmp_path / "artifacts")}
    # a fresh task process: no MLflow run or experiment state left in this process's environment
    # by the tests before (e.g. MLFLOW_EXPERIMENT_ID of another store)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "AIRFLOW_CONN_MLPIPE_MLFLOW_QUIET": json.dumps(conn),
        "MLPIPE_ARTIFACT_ROOT": f"file://{tmp_path}/root",
    }
    env.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
    done = subprocess.run(
        [sys.executable, "-c", TASK], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    log, stderr = done.stdout, done.stderr
    assert done.returncode == 0, stderr[-3000:]
    assert "VALIDATED True" in log
    assert "DeprecatedImportWarning" not in log + stderr
    assert "Skipping registering" not in log + stderr
    # MLflow's own log records reach the task log at their level, none through stderr (shown as ERROR)
    assert "[info     ] Creating initial MLflow database tables... [mlflow.store.db.utils]" in log
    assert "[info     ] Created version '1' of model 'quiet'. [mlflow]" in log
    assert "mlflow.store" not in stderr and "Created version" not in stderr, stderr[-3000:]
    # real warnings still show
    assert "FutureWarning: a real warning from the stage" in log
    assert "[warning  ] a real warning from Great Expectations [great_expectations]" in log
