"""The model registry, read one way by every stage: the version behind an alias, its tags and
signature, the model object, the tags a stage records on it.

Functions take an ``mlflow.MlflowClient`` (``MlflowHook.get_client()``). Reading a signature or
loading a model goes through ``models:/`` URIs, so those calls run inside ``MlflowHook.activate()``.

MLflow 3.17 refuses to deserialize any model — skops included, because a model's skops allow-list
is read from the model itself — unless ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true``. Models in this
pipeline's registry are produced by its own training stage, so :func:`load_model` opts in for the
duration of the load only (``trusted=True``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import ConfigError

_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
_env_lock = threading.Lock()
#: the input type of a column known by name only (from the feature tag, not a signature)
ANY_TYPE = "_any"


@dataclass
class RegistryModel:
    """One registered model version: its identity, tags and request schema."""

    name: str
    version: str
    run_id: str | None = None
    flavors: list[str] = field(default_factory=list)
    #: request schema: ``[{"name", "type" (MLflow type name), "required"}]`` in model input order
    inputs: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def features(self) -> list[str]:
        return [c["name"] for c in self.inputs]

    @property
    def input_types(self) -> dict[str, str]:
        """Column -> MLflow type name, for the columns the signature types."""
        return {c["name"]: c["type"] for c in self.inputs if c["type"] != ANY_TYPE}

    @property
    def fingerprint(self) -> str:
        return self.tags.get(cv.TAG_FINGERPRINT) or f"run:{self.run_id}"

    @property
    def task_type(self) -> str | None:
        return self.tags.get(cv.TAG_TASK_TYPE)

    @property
    def label(self) -> str | None:
        return self.tags.get(cv.TAG_LABEL)


@dataclass(kw_only=True)
class LoadedModel(RegistryModel):
    """A registered model version with its model object, ready to score."""

    model: Any


def untyped_inputs(names: Sequence[str]) -> list[dict[str, Any]]:
    """A request schema of columns known by name only."""
    return [{"name": str(n), "type": ANY_TYPE, "required": True} for n in names]


def _not_found(exc: Exception) -> bool:
    code = str(getattr(exc, "error_code", ""))
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


def version_by_alias(client: Any, name: str, alias: str) -> str | None:
    """The version the alias points at, or ``None`` when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise


def version_exists(client: Any, name: str, version: str | int) -> bool:
    """Whether ``name`` has a version ``version`` (a missing model is no error either)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        if _not_found(exc):
            return False
        raise
    return True


def get_version(client: Any, name: str, *, alias: str | None = None, version: str | int | None = None) -> Any:
    """The MLflow ``ModelVersion`` of ``name`` by ``version`` or ``alias`` (exactly one).

    :raises ConfigError: unknown model, alias or version (the message lists the model's aliases).
    """
    from mlflow.exceptions import MlflowException

    if (alias is None) == (version is None):
        raise ConfigError("Give exactly one of alias= or version= to pick the registry model version.")
    try:
        if version is not None:
            return client.get_model_version(name, str(version))
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if not _not_found(exc) and str(getattr(exc, "error_code", "")) != "INVALID_PARAMETER_VALUE":
            raise
        cause = exc
    try:
        aliases = sorted(client.get_registered_model(name).aliases)
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        raise ConfigError(
            f"Registered model {name!r} not found in the MLflow registry; register a model first."
        ) from exc
    wanted = f"version {version}" if version is not None else f"alias {alias!r}"
    raise ConfigError(
        f"Model {name!r} has no {wanted}; its aliases are {aliases or 'none'}. "
        "Register and promote a model first, or fix the name, alias or version."
    ) from cause


def versions(client: Any, name: str, *, tags: Mapping[str, str] | None = None) -> list[Any]:
    r"""The ``ModelVersion``\ s of ``name`` (with these tag values, if given), newest first; none
    when the model does not exist."""
    from mlflow.exceptions import MlflowException

    query = f"name = '{name}'" + "".join(f" and tags.`{k}` = '{v}'" for k, v in (tags or {}).items())
    try:
        found = client.search_model_versions(query)
    except MlflowException as exc:
        if _not_found(exc):
            return []
        raise
    return sorted(found, key=lambda v: int(v.version), reverse=True)


def aliases(client: Any, name: str) -> dict[str, str]:
    """Alias -> version of every alias ``name`` has."""
    return {str(a): str(v) for a, v in (client.get_registered_model(name).aliases or {}).items()}


def set_tags(client: Any, name: str, version: str | int, tags: Mapping[str, Any]) -> None:
    """Record ``tags`` on the model version (values as strings)."""
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def delete_tags(client: Any, name: str, version: str | int, keys: Iterable[str]) -> None:
    """Remove the tags ``keys`` from the model version."""
    for key in keys:
        client.delete_model_version_tag(name, str(version), key)


def resolve_model(
    client: Any, name: str, *, alias: str | None = None, version: str | int | None = None
) -> RegistryModel:
    """Look up ``name`` by ``version`` or ``alias`` and read its tags and signature.

    Runs inside ``MlflowHook.activate()`` (the signature is read through the ``models:/`` URI).

    :raises ConfigError: unknown model/alias/version, or a model without signature nor feature list.
    """
    mv = get_version(client, name, alias=alias, version=version)
    tags = dict(mv.tags or {})
    info = require("mlflow.models").get_model_info(f"models:/{name}/{mv.version}")
    inputs = signature_inputs(info.signature, tags)
    if not inputs:
        raise ConfigError(
            f"Model {name} v{mv.version} has neither a named input signature nor a {cv.TAG_FEATURES!r} "
            "tag; log it with a signature inferred from a DataFrame with named columns."
        )
    return RegistryModel(
        name=name,
        version=str(mv.version),
        run_id=mv.run_id,
        flavors=sorted(info.flavors),
        inputs=inputs,
        tags=tags,
    )


def signature_inputs(signature: Any, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The column schema of an MLflow signature, else the feature tag's columns with unchecked types."""
    schema = getattr(signature, "inputs", None)
    if schema is not None and getattr(schema, "has_input_names", lambda: False)():
        cols = []
        for spec in schema.inputs:
            kind = getattr(getattr(spec, "type", None), "name", None) or ANY_TYPE
            cols.append({"name": str(spec.name), "type": str(kind), "required": bool(spec.required)})
        return cols
    raw = tags.get(cv.TAG_FEATURES)
    return untyped_inputs(json.loads(raw)) if raw else []


@contextlib.contextmanager
def trusted_deserialization(trusted: bool = True) -> Iterator[None]:
    """Allow MLflow to deserialize models inside the block (restores the previous setting)."""
    if not trusted:
        yield
        return
    with _env_lock:
        saved = os.environ.get(_ENV)
        os.environ[_ENV] = "true"
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop(_ENV, None)
            else:
                os.environ[_ENV] = saved


def load_model(model: RegistryModel | str, *, trusted: bool = True) -> Any:
    """The model object: the scikit-learn estimator when the sklearn flavor exists (``predict_proba``
    stays available), else the pyfunc model. Runs inside ``MlflowHook.activate()``.

    :param model: a resolved version, or a ``models:/`` URI of a scikit-learn model.
    :param trusted: allow deserialization (the registry is this pipeline's own); with ``False``
        MLflow's own setting decides.
    """
    uri, sklearn = (model, True) if isinstance(model, str) else (model.model_uri, "sklearn" in model.flavors)
    flavor = require("mlflow.sklearn" if sklearn else "mlflow.pyfunc")
    with trusted_deserialization(trusted):
        return flavor.load_model(uri)


def load_version(
    client: Any,
    name: str,
    *,
    alias: str | None = None,
    version: str | int | None = None,
    trusted: bool = True,
) -> LoadedModel:
    """Resolve ``name`` by ``version`` or ``alias`` and load it. Runs inside ``MlflowHook.activate()``."""
    entry = resolve_model(client, name, alias=alias, version=version)
    return LoadedModel(**vars(entry), model=load_model(entry, trusted=trusted))
