"""Turn a registry model version into a bento: model in the BentoML store + the generated service.

Builds are idempotent (the bento tag is derived from model name, version and training fingerprint,
so a second build of the same version reuses the existing bento) and work offline
(``lock_packages: false``). The BentoML home must lie outside the temporary build context.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.deploy import BatchingConfig
from airflow_mlpipe.config.monitoring import PredictionLogWriterConfig
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.registry import RegistryModel, load_model
from airflow_mlpipe.exceptions import ConfigError

if TYPE_CHECKING:
    from airflow_mlpipe.hooks.mlflow import MlflowHook

SERVICE_MODULE = "mlpipe_service"
SERVICE_CLASS = "MlpipeModelService"
CONFIG_FILE = "mlpipe_service.json"  # must match airflow_mlpipe._serving.service.CONFIG_FILE
_PACKAGE = Path(__file__).resolve().parents[1]
#: the top-level modules of a bento's ``src`` and their sources: the service imports the others
#: by these names (a bento runs without the provider installed)
BENTO_SOURCES = {
    SERVICE_MODULE: _PACKAGE / "_serving" / "service.py",
    "mlpipe_schema": _PACKAGE / "deploy" / "schema.py",
    "mlpipe_scores": _PACKAGE / "core" / "class_scores.py",
    "mlpipe_log_parts": _PACKAGE / "monitoring" / "log_parts.py",
    "mlpipe_request_log": _PACKAGE / "_serving" / "request_log.py",
}
BENTO_MODULES = tuple(BENTO_SOURCES)
_TAG_UNSAFE = re.compile(r"[^a-z0-9_.-]+")
#: where the service module reads its configuration from (else the file beside it)
CONFIG_ENV = "MLPIPE_SERVICE_CONFIG"


@contextlib.contextmanager
def bento_service_imports(src: str | os.PathLike[str]) -> Iterator[None]:
    """Within: ``import mlpipe_service`` imports the copy in ``src`` (a bento's ``src`` or a build
    context) with the configuration beside it; after: ``sys.modules``, ``sys.path`` and
    ``MLPIPE_SERVICE_CONFIG`` are as they were.

    The service module reads its configuration when it is imported, and every bento's copy has the
    same module name: without this, the first bento imported in a process (a build imports its
    service too) would answer every later import, with its model and request schema.
    """
    path = str(Path(src))
    saved = {name: sys.modules.pop(name) for name in BENTO_MODULES if name in sys.modules}
    previous = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(Path(path) / CONFIG_FILE)
    sys.path.insert(0, path)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(path)
        for name in BENTO_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        if previous is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = previous


def tag_part(text: str) -> str:
    """A string usable as a BentoML tag name or version (lowercase, ``[a-z0-9_.-]``)."""
    return _TAG_UNSAFE.sub("-", text.lower()).strip("-.") or "model"


def bento_name(model: RegistryModel) -> str:
    return tag_part(f"mlpipe-{model.name}")[:63]


def bento_version(model: RegistryModel, extra: str = "") -> str:
    """Deterministic: the same registry version (and fingerprint) always maps to the same bento."""
    fp = re.sub(r"[^a-z0-9]", "", model.fingerprint.split(":")[-1].lower())[:12] or "nofp"
    return tag_part(f"v{model.version}-{fp}{extra}")


@dataclass
class BuiltBento:
    """A bento ready to serve."""

    tag: str
    model_tag: str
    created: bool
    config: dict[str, Any]


def use_bentoml_home(home: str | os.PathLike[str] | None) -> str:
    """Point BentoML at ``home`` (before it is first imported) and return the home in effect."""
    if home:
        os.environ["BENTOML_HOME"] = os.fspath(home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    bentoml = require("bentoml")
    from bentoml._internal.configuration.containers import BentoMLContainer

    effective = str(BentoMLContainer.bentoml_home.get())
    if home and os.path.abspath(effective) != os.path.abspath(os.fspath(home)):
        raise ConfigError(
            f"BentoML was already initialised with home {effective} in this process; "
            f"cannot switch to {home}. Set BENTOML_HOME for the worker instead."
        )
    del bentoml
    return effective


def _dist_name(requirement: str) -> str:
    """The normalised distribution name of ``name==version`` (PEP 503)."""
    return re.sub(r"[-_.]+", "-", requirement.split("==", 1)[0]).lower()


def _pkg(name: str) -> str:
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:  # pragma: no cover - deploy extra installs them
        return name


def build_bento(
    hook: MlflowHook,
    model: RegistryModel,
    *,
    online_spec: dict[str, Any] | None = None,
    workers: int = 1,
    max_rows: int = 10_000,
    batching: BatchingConfig | None = None,
    prediction_log: PredictionLogWriterConfig | None = None,
) -> BuiltBento:
    """Build (or reuse) the bento serving ``model``.

    :param online_spec: Feast online spec (``OnlineFeatureReader.from_spec``); the service then takes
        entity keys and reads the model's features from the online store.
    :param workers: BentoML worker processes of the service's HTTP front (validation); with batching
        on, one more process holds the model.
    :param max_rows: largest batch one request may carry.
    :param batching: adaptive batching of concurrent requests (default: on, with
        :class:`~airflow_mlpipe.config.deploy.BatchingConfig`'s limits).
    :param prediction_log: the service logs every scored row to this prediction log (a local
        directory the serving process can write to).
    """
    bentoml = require("bentoml")
    # `bentoml build` freezes requirements with uv: from PATH if one is there, else `python -m uv`
    # of this environment (the deploy extra installs it). Without either it would try
    # `pip install uv` at task time, which fails in pip-less (uv-made) or offline environments.
    if shutil.which("uv") is None:
        require("uv")
    batching_settings = dataclasses.asdict(BatchingConfig() if batching is None else batching)
    extra = ""
    if online_spec is not None:
        extra = f"-o{_digest(online_spec)}"
    # Batching changes the service a bento runs: another setting is another bento.
    extra += f"-b{_digest(batching_settings)}"
    log_settings = None
    if prediction_log is not None:
        from airflow_mlpipe.monitoring.prediction_log import log_directory

        log_settings = {
            "directory": log_directory(prediction_log.uri),
            "keys": list(prediction_log.keys),
            "timestamp_column": prediction_log.timestamp_column,
        }
        extra += f"-l{_digest(log_settings)}"
    name, version = bento_name(model), bento_version(model, extra)
    tag = f"{name}:{version}"
    try:
        bento = bentoml.bentos.get(tag)
        return BuiltBento(tag=str(bento.tag), model_tag=tag, created=False, config=_read_config(bento))
    except bentoml.exceptions.NotFound:
        pass

    model_tag, model_requirements = _store_model(hook, model, f"{name}:{version}")
    config = {
        "model_name": model.name,
        "model_version": model.version,
        "fingerprint": model.fingerprint,
        "task_type": model.task_type,
        "label": model.label,
        "run_id": model.run_id,
        "framework": "sklearn" if "sklearn" in model.flavors else "mlflow",
        "bento_model": model_tag,
        "bento_tag": tag,
        "inputs": model.inputs,
        "online_spec": online_spec,
        "entity_keys": (online_spec or {}).get("entity_keys"),
        "workers": workers,
        "max_rows": max_rows,
        "batching": batching_settings,
        "prediction_log": log_settings,
    }
    packages = [_pkg(p) for p in ("bentoml", "pandas", "scikit-learn")]
    if config["framework"] == "mlflow":
        packages.append(_pkg("mlflow"))
    if online_spec is not None:
        packages.append(_pkg("feast"))
    if log_settings is not None:
        packages.append(_pkg("pyarrow"))  # the log's parquet parts
    # What the model's pickle imports when loaded (e.g. dill, or a library of a custom estimator).
    declared = {_dist_name(p) for p in packages}
    packages += [r for r in model_requirements if _dist_name(r) not in declared]
    ctx = Path(tempfile.mkdtemp(prefix="mlpipe-bento-"))
    try:
        for module, source in BENTO_SOURCES.items():
            shutil.copyfile(source, ctx / f"{module}.py")
        (ctx / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        with bento_service_imports(ctx):  # the build imports this context's service
            bento = bentoml.bentos.build(
                f"{SERVICE_MODULE}:{SERVICE_CLASS}",
                name=name,
                version=version,
                build_ctx=str(ctx),
                include=[*(f"{m}.py" for m in BENTO_MODULES), CONFIG_FILE],
                labels={
                    "mlpipe.model_name": model.name,
                    "mlpipe.model_version": model.version,
                    "mlpipe.fingerprint": model.fingerprint,
                },
                description=f"{model.name} v{model.version} (fingerprint {model.fingerprint})",
                python={"lock_packages": False, "packages": packages},
                models=[model_tag],
            )
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return BuiltBento(tag=str(bento.tag), model_tag=model_tag, created=True, config=config)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _store_model(hook: MlflowHook, model: RegistryModel, tag: str) -> tuple[str, list[str]]:
    """Put the model into the BentoML model store under ``tag`` (reused when already there);
    return its tag and the pinned requirements its pickle needs beyond the bento's own packages
    (:mod:`airflow_mlpipe.deploy.pickle_deps`, kept in the stored model's metadata)."""
    bentoml = require("bentoml")
    try:
        stored = bentoml.models.get(tag)
        return str(stored.tag), _stored_requirements(stored)
    except bentoml.exceptions.NotFound:
        pass
    labels = {"mlpipe.model_name": model.name, "mlpipe.model_version": model.version}
    meta = {"fingerprint": model.fingerprint, "model_uri": model.model_uri, "run_id": model.run_id or ""}
    if "sklearn" in model.flavors:
        from airflow_mlpipe.deploy.pickle_deps import requirements

        with hook.activate():
            estimator = load_model(model)
        meta[_REQUIREMENTS_KEY] = " ".join(requirements(estimator))
        saved = bentoml.sklearn.save_model(tag, estimator, labels=labels, metadata=meta)
    else:
        with hook.activate():
            saved = bentoml.mlflow.import_model(tag, model.model_uri, labels=labels, metadata=meta)
    return str(saved.tag), _stored_requirements(saved)


#: stored model metadata: the requirements its pickle needs, space-separated
_REQUIREMENTS_KEY = "pickle_requirements"


def _stored_requirements(stored: Any) -> list[str]:
    return str(stored.info.metadata.get(_REQUIREMENTS_KEY, "")).split()


def bento_service_config(bento_tag: str) -> dict[str, Any]:
    """The service configuration the bento ``bento_tag`` was built with (model, inputs, batching,
    prediction log, ...), from the BentoML store in effect."""
    bentoml = require("bentoml")
    return _read_config(bentoml.bentos.get(bento_tag))


def _read_config(bento: Any) -> dict[str, Any]:
    path = Path(bento.path) / "src" / CONFIG_FILE
    return dict(json.loads(path.read_text())) if path.exists() else {}
