"""What a feature service is made of, read from the Feast registry: features, join keys, version.

Feast gives a feature service no version number. Its *version* here is a digest of everything that
decides the values a model sees — each view's name, features and types, join keys, TTL and batch
source — in the service's order, without registry timestamps. Re-applying the same definitions keeps
the version; changing a feature, a type, a TTL or a source changes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.exceptions import ConfigError

if TYPE_CHECKING:
    from feast import FeatureStore


@dataclass(frozen=True)
class ServiceInfo:
    """A resolved feature service.

    :param name: service name.
    :param version: content digest (see the module docstring).
    :param features: output column names, in the service's order.
    :param refs: ``view:feature`` references, in the same order.
    :param entity_keys: join keys every entity row must carry.
    :param views: feature view names.
    """

    name: str
    version: str
    features: list[str]
    refs: list[str]
    entity_keys: list[str]
    views: list[str]


def _source_of(view: Any) -> dict[str, Any]:
    source = getattr(view, "batch_source", None)
    if source is None:
        return {}
    return {
        "name": getattr(source, "name", None),
        "path": getattr(source, "path", None),
        "timestamp_field": getattr(source, "timestamp_field", None),
        "field_mapping": dict(getattr(source, "field_mapping", None) or {}),
    }


def feature_service(
    store: FeatureStore, name: str, *, full_feature_names: bool = False
) -> tuple[Any, ServiceInfo]:
    """The Feast ``FeatureService`` called ``name`` and its :class:`ServiceInfo`.

    :raises ConfigError: no such service in the store's project (lists the ones that exist).
    """
    from feast.errors import FeastObjectNotFoundException

    try:
        service = store.get_feature_service(name)
    except FeastObjectNotFoundException:
        known = sorted(s.name for s in store.list_feature_services())
        raise ConfigError(
            f"Feature service {name!r} does not exist in Feast project {store.project!r}; "
            f"known services: {known}. Apply the feature definitions first or fix the name."
        ) from None
    features: list[str] = []
    refs: list[str] = []
    keys: list[str] = []
    views: list[str] = []
    canonical: list[dict[str, Any]] = []
    for projection in service.feature_view_projections:
        view_name = projection.name_to_use()
        try:
            view: Any = store.get_feature_view(projection.name)
        except FeastObjectNotFoundException:
            view = store.get_on_demand_feature_view(projection.name)
        join_keys = [projection.join_key_map.get(k, k) for k in getattr(view, "join_keys", [])]
        for key in join_keys:
            if key not in keys:
                keys.append(key)
        views.append(view_name)
        cols = [(f.name, str(f.dtype)) for f in projection.features]
        for feature, _ in cols:
            refs.append(f"{view_name}:{feature}")
            features.append(f"{view_name}__{feature}" if full_feature_names else feature)
        ttl = getattr(view, "ttl", None)
        canonical.append(
            {
                "view": view_name,
                "features": cols,
                "join_keys": join_keys,
                "ttl": ttl.total_seconds() if ttl is not None else None,
                "source": _source_of(view),
            }
        )
    if len(set(features)) != len(features):
        dup = sorted({f for f in features if features.count(f) > 1})
        raise ConfigError(
            f"Feature service {name!r} has the feature name(s) {dup} in more than one view; "
            "use full_feature_names=True."
        )
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()
    info = ServiceInfo(
        name=name,
        version=f"sha256:{digest[:16]}",
        features=features,
        refs=refs,
        entity_keys=keys,
        views=views,
    )
    return service, info


def check_feature_views(store: FeatureStore, names: list[str] | None) -> list[str]:
    """The batch feature views to materialize: ``names`` checked against the registry, or all of them.

    :raises ConfigError: an unknown name (lists the known views).
    """
    known = [v.name for v in store.list_feature_views()]
    if names is None:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"Unknown feature view(s) {unknown} in Feast project {store.project!r}; known: {sorted(known)}."
        )
    return list(names)
