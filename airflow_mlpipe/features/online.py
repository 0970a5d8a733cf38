"""Online features for serving: the same feature service the model was trained on.

The training-set operator returns an ``online_spec`` (a JSON-able dict). The deployment stage
hands it to the serving process, which builds an :class:`OnlineFeatureReader` from it and turns
entity keys into a feature frame whose columns have the training set's names and order::

    reader = OnlineFeatureReader.from_spec(spec)
    frame = reader.read([{"customer_id": 17}, {"customer_id": 42}])
    model.predict(frame[reader.features])

The spec pins the feature service's *version* (a digest of its definition, see
:mod:`airflow_mlpipe.features.registry`). When the registry's service no longer matches it, reading
fails instead of feeding the model features it was not trained on (``strict=False`` turns the
failure into a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

    from airflow_mlpipe.features.registry import ServiceInfo

log = logging.getLogger(__name__)
SPEC_KIND = "feast"


class OnlineFeatureReader:
    """Reads a feature service's features from the online store for given entity rows.

    :param repo_config: Feast configuration dict (``FeastHook.repo_config()``).
    :param feature_service: feature service name.
    :param version: expected feature service version (``None``: accept the current one).
    :param full_feature_names: name columns ``<view>__<feature>`` (as the training set did).
    :param strict: fail (rather than warn) when the service's version differs from ``version``.
    """

    def __init__(
        self,
        repo_config: Mapping[str, Any],
        feature_service: str,
        *,
        version: str | None = None,
        full_feature_names: bool = False,
        strict: bool = True,
    ) -> None:
        if not isinstance(repo_config, Mapping) or "project" not in repo_config:
            raise ConfigError("repo_config must be a Feast configuration mapping with a 'project'.")
        if not isinstance(feature_service, str) or not feature_service:
            raise ConfigError(f"feature_service must be a name, got {feature_service!r}.")
        self.repo_config = dict(repo_config)
        self.feature_service = feature_service
        self.version = version
        self.full_feature_names = bool(full_feature_names)
        self.strict = bool(strict)
        self._store: FeatureStore | None = None
        self._service: Any = None
        self._info: ServiceInfo | None = None

    # -- spec ------------------------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> OnlineFeatureReader:
        """Rebuild a reader from :meth:`to_spec` output (as found in the training-set XCom)."""
        if not isinstance(spec, Mapping):
            raise ConfigError(f"An online feature spec must be a mapping, got {type(spec).__name__}.")
        missing = [k for k in ("repo_config", "feature_service") if k not in spec]
        if missing:
            raise ConfigError(f"Online feature spec lacks {missing}; it has {sorted(spec)}.")
        if spec.get("kind", SPEC_KIND) != SPEC_KIND:
            raise ConfigError(f"Online feature spec of kind {spec.get('kind')!r} is not a Feast spec.")
        return cls(
            spec["repo_config"],
            spec["feature_service"],
            version=spec.get("feature_service_version"),
            full_feature_names=bool(spec.get("full_feature_names", False)),
            strict=bool(spec.get("strict", True)),
        )

    def to_spec(self) -> dict[str, Any]:
        """A JSON-able dict that :meth:`from_spec` turns back into an equivalent reader."""
        info = self._info
        return {
            "kind": SPEC_KIND,
            "repo_config": dict(self.repo_config),
            "feature_service": self.feature_service,
            "feature_service_version": self.version or (info.version if info else None),
            "full_feature_names": self.full_feature_names,
            "strict": self.strict,
            "features": list(info.features) if info else None,
            "entity_keys": list(info.entity_keys) if info else None,
        }

    # -- store -----------------------------------------------------------------------------------

    @property
    def store(self) -> FeatureStore:
        if self._store is None:
            from airflow_mlpipe.hooks.feast import build_store

            self._store = build_store(self.repo_config)
        return self._store

    def _resolve(self) -> ServiceInfo:
        if self._info is None:
            from airflow_mlpipe.features.registry import feature_service

            service, info = feature_service(
                self.store, self.feature_service, full_feature_names=self.full_feature_names
            )
            if self.version and info.version != self.version:
                message = (
                    f"Feature service {self.feature_service!r} is now version {info.version}, but the "
                    f"model was trained on version {self.version}: serving would feed it different "
                    "features. Retrain, or re-apply the definitions it was trained with."
                )
                if self.strict:
                    raise ConfigError(message)
                log.warning("%s", message)
            self._service, self._info = service, info
        return self._info

    @property
    def entity_keys(self) -> list[str]:
        """Join keys each entity row must carry."""
        return list(self._resolve().entity_keys)

    @property
    def features(self) -> list[str]:
        """Feature column names, in the training set's order."""
        return list(self._resolve().features)

    # -- reading ---------------------------------------------------------------------------------

    def _rows(self, entity_rows: Sequence[Mapping[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
        if isinstance(entity_rows, (str, bytes, Mapping)) or not isinstance(entity_rows, Sequence):
            raise DataError("entity_rows must be a list of mappings such as [{'customer_id': 1}].")
        rows: list[dict[str, Any]] = []
        for i, row in enumerate(entity_rows):
            if not isinstance(row, Mapping):
                raise DataError(f"entity_rows[{i}] is {type(row).__name__}, not a mapping of join keys.")
            missing = [k for k in keys if k not in row or row[k] is None]
            if missing:
                raise DataError(f"entity_rows[{i}] lacks join key(s) {missing}; every row needs {keys}.")
            rows.append({k: row[k] for k in keys})
        return rows

    def read(self, entity_rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """Online feature values: one row per entity row (same order), feature columns only.

        A value the online store does not have (entity never materialized) is missing (NaN/None).
        """
        pd = require("pandas")
        info = self._resolve()
        rows = self._rows(entity_rows, info.entity_keys)
        if not rows:
            return pd.DataFrame({name: pd.Series(dtype="object") for name in info.features})
        response = self.store.get_online_features(
            features=self._service, entity_rows=rows, full_feature_names=self.full_feature_names
        )
        frame = response.to_df()
        return frame[info.features].reset_index(drop=True)


def fetch_online_features(
    spec: Mapping[str, Any] | OnlineFeatureReader, entity_rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Online features of ``entity_rows`` as JSON-able records (entity keys + features), for smoke tests."""
    from airflow_mlpipe.core.results import jsonable

    reader = spec if isinstance(spec, OnlineFeatureReader) else OnlineFeatureReader.from_spec(spec)
    frame = reader.read(entity_rows)
    keys = reader.entity_keys
    records = frame.to_dict(orient="records")
    return [
        jsonable({**{k: row[k] for k in keys}, **rec}) for row, rec in zip(entity_rows, records, strict=True)
    ]
