"""Rebuild a registered version from its lineage and compare it with the registered model.

The reproduction reads what the training stage recorded — the specification tag (estimator,
parameters, split, seed), the feature list and label, the environment tags of the run and the
training-set snapshot — refits on the snapshot, and compares: the metrics of the run, and the
predictions of both models on the holdout the gate used (its snapshot; without one, the training
split's holdout rows). A deterministic estimator (every ``random_state`` fixed) must match exactly;
otherwise within :attr:`ReproduceConfig.tolerance`.

When it does not match, the report says what differs: data digest, parameters (recorded run versus
specification), package versions, code version, the record digest. A different scikit-learn, numpy
or scipy refuses the reproduction up front (:class:`ReproductionRefused`) unless explicitly allowed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core import registry
from airflow_mlpipe.core.datasets import file_digest
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.core.storage import artifact_root, safe_segment
from airflow_mlpipe.exceptions import ConfigError, DataError, MlpipeError
from airflow_mlpipe.governance import records, snapshots

#: packages whose version changes the numbers a fit produces: a difference refuses the reproduction
NUMERIC_PACKAGES = {"sklearn": "scikit-learn", "numpy": "numpy", "scipy": "scipy"}


class ReproductionRefused(MlpipeError):
    """The environment differs in a way that decides the result (the message names the packages)."""


@dataclass
class ReproduceConfig:
    """How strictly to compare.

    :param tolerance: largest absolute difference allowed for metrics and predicted values when the
        estimator is not deterministic (a ``random_state`` left unset); deterministic ones must match
        exactly.
    :param allow_environment_drift: compare anyway when scikit-learn, numpy or scipy differ.
    :param code_version: the code version of this environment, compared with the recorded one.
    """

    tolerance: float = 1e-6
    allow_environment_drift: bool = False
    code_version: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tolerance, (int, float)) or self.tolerance < 0:
            raise ConfigError(f"tolerance must be a number >= 0, not {self.tolerance!r}.")


def environment_differences(recorded: Mapping[str, str], here: Mapping[str, str]) -> list[dict[str, Any]]:
    """Packages whose recorded version differs from the installed one."""
    out = []
    for key in sorted(set(recorded) | set(here)):
        if recorded.get(key) != here.get(key):
            out.append(
                {
                    "kind": "environment",
                    "name": NUMERIC_PACKAGES.get(key, key),
                    "recorded": recorded.get(key),
                    "reproduced": here.get(key),
                    "decisive": key in NUMERIC_PACKAGES,
                }
            )
    return out


def _logged(value: Any) -> str:
    return "None" if value is None else str(value)


def parameter_differences(spec: Mapping[str, Any], logged: Mapping[str, str]) -> list[dict[str, Any]]:
    """Estimator parameters where the specification disagrees with what the run logged at training."""
    out = []
    params = dict(spec.get("params") or {})
    estimator_params = {k: v for k, v in logged.items() if not k.startswith("training.")}
    for name in sorted(set(params) | set(estimator_params)):
        used = _logged(params[name]) if name in params else None
        if used != estimator_params.get(name):
            out.append(
                {
                    "kind": "parameters",
                    "name": name,
                    "recorded": estimator_params.get(name),
                    "reproduced": used,
                }
            )
    for key, spec_key in (("training.estimator", "estimator"), ("training.seed", "seed")):
        if key in logged and logged[key] != _logged(spec.get(spec_key)):
            out.append(
                {"kind": "parameters", "name": key, "recorded": logged[key], "reproduced": spec.get(spec_key)}
            )
    return out


def _deterministic(estimator: Any) -> bool:
    params = estimator.get_params(deep=True)
    seeds = [v for k, v in params.items() if k == "random_state" or k.endswith("__random_state")]
    return all(v is not None for v in seeds)


def _compare_arrays(recorded: Any, reproduced: Any, exact: bool, tolerance: float) -> dict[str, Any]:
    import numpy as np

    a, b = np.asarray(recorded), np.asarray(reproduced)
    if a.shape != b.shape:
        return {"equal": False, "rows": int(len(a)), "differing_rows": int(len(a)), "max_abs_diff": None}
    if a.dtype.kind in "fiub" and b.dtype.kind in "fiub":
        diff = np.abs(a.astype(float) - b.astype(float))
        bad = diff > (0.0 if exact else tolerance)
        rows = bad.reshape(len(a), -1).any(axis=1) if a.ndim > 1 else bad
        return {
            "equal": not bool(rows.any()),
            "rows": int(len(a)),
            "differing_rows": int(rows.sum()),
            "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        }
    rows = a != b
    return {"equal": not bool(rows.any()), "rows": int(len(a)), "differing_rows": int(rows.sum())}


def _predictions(model: Any, X: Any, task_type: str) -> dict[str, Any]:
    out = {"predict": model.predict(X)}
    if task_type == cv.TaskType.CLASSIFICATION.value and hasattr(model, "predict_proba"):
        out["predict_proba"] = model.predict_proba(X)
    return out


def _holdout(tags: Mapping[str, str], data: Any, training: Any, task_type: cv.TaskType) -> tuple[Any, str]:
    uri = tags.get(cv.TAG_SNAPSHOT_HOLDOUT_URI)
    if uri:
        from airflow_mlpipe.core.datasets import read_table

        return read_table(uri)[data.features], f"gate holdout snapshot {uri}"
    if training.cv_folds:
        return data.X, "every training row (the version was cross-validated)"
    from sklearn.model_selection import train_test_split

    classification = task_type is cv.TaskType.CLASSIFICATION
    _, X_te, _, _ = train_test_split(
        data.X,
        data.y,
        test_size=training.test_size,
        random_state=training.seed,
        stratify=data.y if classification else None,
    )
    return X_te, "the training split's holdout rows (no gate holdout snapshot recorded)"


def reproduce(client: Any, model_name: str, version: str, config: ReproduceConfig) -> dict[str, Any]:
    """Rebuild ``model_name`` version ``version`` and compare; return the report (JSON-safe).

    Must run inside ``MlflowHook.activate()`` (the registered model is loaded by URI).

    :raises ReproductionRefused: scikit-learn, numpy or scipy differ from the recorded versions.
    :raises DataError: the training-set snapshot is missing.
    :raises ConfigError: the version has no recorded specification.
    """
    from airflow_mlpipe.config.training import EstimatorConfig, TrainingConfig
    from airflow_mlpipe.training.data import load_training_set
    from airflow_mlpipe.training.estimators import build_estimator, estimator_factory
    from airflow_mlpipe.training.fit import fit_and_score
    from airflow_mlpipe.training.tracking import environment

    where = f"{model_name} v{version}"
    mv = registry.get_version(client, model_name, version=version)
    tags = dict(mv.tags or {})
    run = client.get_run(mv.run_id)
    run_tags = dict(run.data.tags)
    recorded_env = {
        k.removeprefix(cv.TAG_ENV_PREFIX): v for k, v in run_tags.items() if k.startswith(cv.TAG_ENV_PREFIX)
    }
    env_diffs = environment_differences(recorded_env, environment())
    decisive = [d for d in env_diffs if d["decisive"]]
    if decisive and not config.allow_environment_drift:
        listed = "; ".join(
            f"{d['name']}: recorded {d['recorded']}, installed {d['reproduced']}" for d in decisive
        )
        raise ReproductionRefused(
            f"Cannot reproduce {where} here: {listed}. These packages decide the fitted numbers; install "
            "the recorded versions (or allow environment drift to compare anyway)."
        )
    spec = records.parse_spec(run_tags.get(cv.TAG_TRAINING_SPEC) or tags.get(cv.TAG_TRAINING_SPEC), where)
    differences: list[dict[str, Any]] = [*env_diffs]
    differences += parameter_differences(spec, run.data.params)
    if tags.get(cv.TAG_RECORD_DIGEST) and records.record_digest(tags) != tags[cv.TAG_RECORD_DIGEST]:
        differences.append(
            {
                "kind": "record",
                "name": cv.TAG_RECORD_DIGEST,
                "recorded": tags[cv.TAG_RECORD_DIGEST],
                "reproduced": records.record_digest(tags),
            }
        )
    recorded_code = tags.get(cv.TAG_CODE_VERSION)
    if config.code_version and config.code_version != recorded_code:
        differences.append(
            {
                "kind": "code",
                "name": "code_version",
                "recorded": recorded_code,
                "reproduced": config.code_version,
            }
        )
    if spec.get("mlpipe_version") != records.package_version():
        differences.append(
            {
                "kind": "code",
                "name": "airflow-mlpipe",
                "recorded": spec.get("mlpipe_version"),
                "reproduced": records.package_version(),
            }
        )

    snapshot_uri, snapshot_digest = (
        tags.get(cv.TAG_SNAPSHOT_TRAINING_URI),
        tags.get(cv.TAG_SNAPSHOT_TRAINING_DIGEST),
    )
    if not snapshot_uri or not snapshot_digest:
        raise ConfigError(f"{where} records no training-set snapshot; it cannot be retrained as it was.")
    actual = snapshots.verify(snapshot_uri, snapshot_digest)
    if actual is None:
        raise DataError(f"The training-set snapshot of {where} is gone: {snapshot_uri}.")
    if actual != snapshot_digest:
        differences.append(
            {"kind": "data", "name": "training snapshot", "recorded": snapshot_digest, "reproduced": actual}
        )

    task_type = cv.TaskType.parse(spec.get("task_type") or tags.get(cv.TAG_TASK_TYPE) or "")
    training = TrainingConfig(
        label=tags.get(cv.TAG_LABEL),
        features=json.loads(tags[cv.TAG_FEATURES]) if tags.get(cv.TAG_FEATURES) else None,
        task_type=task_type,
        test_size=float(spec.get("test_size", 0.2)),
        cv_folds=spec.get("cv_folds"),
        seed=int(spec.get("seed", 42)),
        # versions recorded before the option existed were trained on their columns as they were
        encode_categorical=bool(spec.get("encode_categorical", False)),
        refit_on_all=bool(spec.get("refit_on_all", False)),
    )
    estimator = EstimatorConfig(str(spec["estimator"]), dict(spec.get("params") or {}))
    data = load_training_set(snapshot_uri, training)
    probe = build_estimator(estimator, training.seed)
    exact = _deterministic(probe)
    make_estimator, _ = estimator_factory(estimator, training, data.X)
    outcome = fit_and_score(make_estimator, data.X, data.y, task_type, training, estimator.name)
    recorded_metrics = {k: v for k, v in run.data.metrics.items() if k in outcome.metrics}
    for name in sorted(set(recorded_metrics) | set(outcome.metrics)):
        a, b = recorded_metrics.get(name), outcome.metrics.get(name)
        same = a is not None and b is not None and (a == b if exact else abs(a - b) <= config.tolerance)
        if not same:
            differences.append({"kind": "metrics", "name": name, "recorded": a, "reproduced": b})

    X_hold, holdout_source = _holdout(tags, data, training, task_type)
    registered = registry.load_model(f"models:/{model_name}/{version}")
    before, after = (
        _predictions(registered, X_hold, task_type.value),
        _predictions(outcome.model, X_hold, task_type.value),
    )
    predictions = {k: _compare_arrays(before[k], after.get(k), exact, config.tolerance) for k in before}
    for name, result in predictions.items():
        if not result["equal"]:
            differences.append(
                {
                    "kind": "predictions",
                    "name": name,
                    "recorded": f"{result['rows']} holdout rows",
                    "reproduced": f"{result['differing_rows']} differ"
                    + (f" (max |diff| {result['max_abs_diff']:.3g})" if result.get("max_abs_diff") else ""),
                }
            )
    failing = {"data", "parameters", "record", "metrics", "predictions"}
    return jsonable(
        {
            "model_name": model_name,
            "version": str(version),
            "run_id": mv.run_id,
            "match": not any(d["kind"] in failing for d in differences),
            "comparison": "exact" if exact else f"within {config.tolerance}",
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "specification": spec,
            "snapshot": {"uri": snapshot_uri, "recorded_digest": snapshot_digest, "digest": actual},
            "data_digest": data.digest,
            "metrics": {"recorded": recorded_metrics, "reproduced": outcome.metrics},
            "holdout": {"source": holdout_source, "rows": int(len(X_hold))},
            "predictions": predictions,
            "environment": {"recorded": recorded_env, "reproduced": environment()},
            "code_version": {"recorded": recorded_code, "reproduced": config.code_version},
            "differences": differences,
        }
    )


def record(client: Any, report: Mapping[str, Any]) -> str:
    """Store the report under the artifact root and tag the version with its outcome and digest."""
    name, version = str(report["model_name"]), str(report["version"])
    stamp = str(report["at"]).replace(":", "").replace("+", "Z")
    path = artifact_root() / "reproductions" / safe_segment(name) / f"v{version}" / f"{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True))
    uri = str(path)
    registry.set_tags(
        client,
        name,
        version,
        {
            cv.TAG_REPRODUCE_STATUS: "match" if report["match"] else "mismatch",
            cv.TAG_REPRODUCE_AT: str(report["at"]),
            cv.TAG_REPRODUCE_REPORT_URI: uri,
            cv.TAG_REPRODUCE_REPORT_DIGEST: file_digest(uri),
        },
    )
    return uri


def render_text(report: Mapping[str, Any]) -> str:
    """A human summary of a reproduction report."""
    lines = [
        f"{report['model_name']} v{report['version']}: "
        + ("REPRODUCED" if report["match"] else "MISMATCH")
        + f" ({report['comparison']}; holdout: {report['holdout']['source']}, {report['holdout']['rows']} rows)",
    ]
    for name, value in sorted(report["metrics"]["reproduced"].items()):
        lines.append(
            f"  metric  {name}: recorded {report['metrics']['recorded'].get(name)}, reproduced {value}"
        )
    for d in report["differences"]:
        lines.append(
            f"  differs [{d['kind']}] {d['name']}: recorded {d['recorded']!r}, reproduced {d['reproduced']!r}"
        )
    return "\n".join(lines)
