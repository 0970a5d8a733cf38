"""What deployment needs to know about a registry model version, read from MLflow.

Every deployment artefact (bento, served response, MLflow tags) carries the identity resolved here:
model name, version, training fingerprint, task type, label and the request schema of the
signature.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.exceptions import ConfigError

if TYPE_CHECKING:
    from airflow_mlpipe.hooks.mlflow import MlflowHook

_TAG_UNSAFE = re.compile(r"[^a-z0-9_.-]+")


@dataclass
class RegistryModel:
    """One registered model version, as deployment sees it."""

    name: str
    version: str
    fingerprint: str
    task_type: str | None
    label: str | None
    run_id: str | None
    flavors: list[str]
    #: request schema: ``[{"name", "type" (MLflow type name), "required"}]`` in model input order
    inputs: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def features(self) -> list[str]:
        return [c["name"] for c in self.inputs]

    def bento_name(self) -> str:
        return tag_part(f"mlpipe-{self.name}")[:63]

    def bento_version(self, extra: str = "") -> str:
        """Deterministic: the same registry version (and fingerprint) always maps to the same bento."""
        fp = re.sub(r"[^a-z0-9]", "", self.fingerprint.split(":")[-1].lower())[:12] or "nofp"
        return tag_part(f"v{self.version}-{fp}{extra}")


def tag_part(text: str) -> str:
    """A string usable as a BentoML tag name or version (lowercase, ``[a-z0-9_.-]``)."""
    return _TAG_UNSAFE.sub("-", text.lower()).strip("-.") or "model"


def resolve_model(
    hook: MlflowHook, name: str, *, alias: str | None = None, version: str | int | None = None
) -> RegistryModel:
    """Look up ``name`` by ``version`` or ``alias`` and read its tags and signature.

    :raises ConfigError: unknown model/alias/version, or a model without signature nor feature list.
    """
    if (alias is None) == (version is None):
        raise ConfigError("Give exactly one of alias= or version= to pick the registry model version.")
    client = hook.get_client()
    try:
        if version is not None:
            mv = client.get_model_version(name, str(version))
        else:
            mv = client.get_model_version_by_alias(name, alias)
    except Exception as exc:
        which = f"version {version}" if version is not None else f"alias '{alias}'"
        raise ConfigError(
            f"Registered model {name!r} has no {which} in {hook.registry_uri}: {exc}. "
            "Register and promote a model first, or fix the name/alias/version."
        ) from exc
    tags = dict(mv.tags or {})
    with hook.activate() as mlflow:
        info = mlflow.models.get_model_info(f"models:/{name}/{mv.version}")
    inputs = signature_inputs(info.signature, tags)
    if not inputs:
        raise ConfigError(
            f"Model {name} v{mv.version} has neither a signature nor a {cv.TAG_FEATURES} tag; log it "
            "with a signature inferred from a DataFrame with named columns."
        )
    return RegistryModel(
        name=name,
        version=str(mv.version),
        fingerprint=tags.get(cv.TAG_FINGERPRINT) or f"run:{mv.run_id}",
        task_type=tags.get(cv.TAG_TASK_TYPE),
        label=tags.get(cv.TAG_LABEL),
        run_id=mv.run_id,
        flavors=sorted(info.flavors),
        inputs=inputs,
        tags=tags,
    )


def signature_inputs(signature: Any, tags: dict[str, str]) -> list[dict[str, Any]]:
    """The column schema of an MLflow signature, or the feature tag with unchecked types."""
    schema = getattr(signature, "inputs", None)
    if schema is not None and getattr(schema, "has_input_names", lambda: False)():
        cols = []
        for spec in schema.inputs:
            kind = getattr(getattr(spec, "type", None), "name", None) or "_any"
            cols.append({"name": spec.name, "type": str(kind), "required": bool(spec.required)})
        return cols
    raw = tags.get(cv.TAG_FEATURES)
    if raw:
        return [{"name": str(n), "type": "_any", "required": True} for n in json.loads(raw)]
    return []


def load_model(hook: MlflowHook, model: RegistryModel) -> Any:
    """The model object: the sklearn estimator when the sklearn flavor exists, else the pyfunc model."""
    with hook.activate() as mlflow:
        if "sklearn" in model.flavors:
            import mlflow.sklearn

            return mlflow.sklearn.load_model(model.model_uri)
        return mlflow.pyfunc.load_model(model.model_uri)
