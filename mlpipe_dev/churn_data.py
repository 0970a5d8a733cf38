"""A seeded customer-churn use case: daily feature batches, a label table and a known drift.

The generator models a subscription business. Every day a few hundred customers (out of a fixed
population) produce a feature snapshot — tenure, monthly charges, support calls, usage, contract
type, region, payment method — and, some hours later, a label saying whether they churned. This is
the shape a Feast feature view and a point-in-time training set expect: an entity id
(``customer_id``), a tz-aware UTC ``event_timestamp`` on the features and a ``label_timestamp`` on
the labels that is always *after* the features it depends on.

**The injected drift.** From day ``drift_day`` on (0-based, default 7) the world changes on purpose,
so that monitoring has something real to detect and retraining something real to fix:

* ``monthly_charges`` rises by 30 % × ``drift_strength`` (a price increase),
* ``support_calls_30d`` doubles its rate (× (1 + drift_strength)) (a service incident),
* ``usage_gb`` drops by 35 % × ``drift_strength``,
* the contract mix moves towards ``month-to-month`` (from 50 % to 70 %),
* **the label relation changes**: support calls weigh 2.5× more on churn and high charges weigh
  more too, so a model trained before the drift loses accuracy on the drifted days; the churn
  rate goes from about 19 % to about 30 %.

``tenure_months``, ``region`` and ``payment_method`` keep their distribution: a drift report should
flag the shifted columns and not these.

Everything is derived from ``seed`` and the day index only, so a fixed seed gives identical values
and identical parquet bytes (for the same pyarrow version). numpy/pandas are imported inside the
functions: importing this module is free.

Layout written by :func:`write_batches`::

    <root>/features/<YYYY-MM-DD>.parquet   one file per day (customer features)
    <root>/labels/<YYYY-MM-DD>.parquet     one file per day (customer_id, label_timestamp, churned)
    <root>/reference/features.parquet      the days before the drift: the monitoring reference
    <root>/manifest.json                   the spec, the days, the drift day and the columns

Command line: ``python -m mlpipe_dev.churn_data OUT_DIR [--days N] [--drift-day D] [--seed S]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import ConfigError

if TYPE_CHECKING:
    import pandas as pd

ENTITY = "customer_id"
TIMESTAMP = "event_timestamp"
LABEL = "churned"
LABEL_TIMESTAMP = "label_timestamp"
NUMERIC_FEATURES = ["tenure_months", "monthly_charges", "support_calls_30d", "usage_gb"]
CATEGORICAL_FEATURES = ["contract_type", "region", "payment_method"]
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
#: features whose distribution changes on the drift day (documented above)
DRIFTED_FEATURES = ["monthly_charges", "support_calls_30d", "usage_gb", "contract_type"]

CONTRACTS = ["month-to-month", "one-year", "two-year"]
REGIONS = ["north", "south", "east", "west"]
PAYMENT_METHODS = ["card", "bank-transfer", "invoice"]
_POPULATION = 2**31 - 1  # stream id of the static population (never a day index)


@dataclass(frozen=True)
class ChurnSpec:
    """What to generate.

    :param seed: the only source of randomness.
    :param start: first day (``YYYY-MM-DD``, UTC).
    :param days: number of daily batches.
    :param rows_per_day: feature rows (customers seen) per day.
    :param customers: size of the customer population ids are drawn from.
    :param drift_day: 0-based index of the first drifted day; ``None`` for no drift.
    :param drift_strength: scale of the shift (0 = none, 1 = the documented shift).
    """

    seed: int = 42
    start: str = "2024-01-01"
    days: int = 10
    rows_per_day: int = 500
    customers: int = 3000
    drift_day: int | None = 7
    drift_strength: float = 1.0

    def __post_init__(self) -> None:
        try:
            dt.date.fromisoformat(self.start)
        except (TypeError, ValueError):
            raise ConfigError(f"ChurnSpec.start={self.start!r} is not a date; use YYYY-MM-DD.") from None
        if self.days < 1:
            raise ConfigError(f"ChurnSpec.days={self.days} must be at least 1.")
        if self.rows_per_day < 10:
            raise ConfigError(f"ChurnSpec.rows_per_day={self.rows_per_day} must be at least 10.")
        if self.customers < self.rows_per_day:
            raise ConfigError(
                f"ChurnSpec.customers={self.customers} must be >= rows_per_day={self.rows_per_day} "
                "(each customer appears at most once a day)."
            )
        if self.drift_day is not None and not 0 <= self.drift_day < self.days:
            raise ConfigError(
                f"ChurnSpec.drift_day={self.drift_day} must be within 0..{self.days - 1} or None."
            )
        if not 0.0 <= self.drift_strength <= 5.0:
            raise ConfigError(f"ChurnSpec.drift_strength={self.drift_strength} must be within 0..5.")

    def day(self, index: int) -> dt.date:
        """The calendar date of day ``index``."""
        return dt.date.fromisoformat(self.start) + dt.timedelta(days=index)

    def is_drifted(self, index: int) -> bool:
        return self.drift_day is not None and index >= self.drift_day


def _rng(spec: ChurnSpec, index: int, stream: int) -> Any:
    np = require("numpy")
    # One independent stream per (seed, day, purpose): adding days never changes earlier days.
    return np.random.default_rng(np.random.SeedSequence([spec.seed, index, stream]))


def _customers(spec: ChurnSpec) -> pd.DataFrame:
    """Static attributes of the population (signup tenure, region, payment method)."""
    pd = require("pandas")
    rng = _rng(spec, _POPULATION, 0)
    n = spec.customers
    return pd.DataFrame(
        {
            ENTITY: (100_000 + rng.permutation(n)).astype("int64"),
            "tenure_at_start": rng.gamma(2.0, 12.0, n).clip(0, 96),
            "region": rng.choice(REGIONS, n, p=[0.3, 0.25, 0.25, 0.2]),
            "payment_method": rng.choice(PAYMENT_METHODS, n, p=[0.55, 0.3, 0.15]),
            "usage_level": rng.lognormal(3.0, 0.5, n),
        }
    )


def generate_day(spec: ChurnSpec, index: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and labels of day ``index``: ``(features, labels)``, both sorted by ``customer_id``."""
    np = require("numpy")
    pd = require("pandas")
    if not 0 <= index < spec.days:
        raise ConfigError(f"Day index {index} is outside 0..{spec.days - 1}.")
    population = _customers(spec)
    rng = _rng(spec, index, 1)
    n = spec.rows_per_day
    rows = population.iloc[np.sort(rng.choice(spec.customers, n, replace=False))].reset_index(drop=True)
    drifted = spec.is_drifted(index)
    s = spec.drift_strength if drifted else 0.0

    tenure = np.floor(rows["tenure_at_start"].to_numpy() + index / 30.0).astype("int64")
    m2m = 0.5 + 0.2 * min(s, 1.0)
    rest = (1.0 - m2m) / 2
    contract = rng.choice(CONTRACTS, n, p=[m2m, rest + 0.05, rest - 0.05])
    base_charge = 35.0 + 0.4 * np.minimum(tenure, 60) + rng.normal(30.0, 12.0, n)
    base_charge += np.where(contract == "two-year", -8.0, 0.0)
    monthly = np.round(np.clip(base_charge * (1.0 + 0.3 * s), 15.0, 250.0), 2)
    calls = rng.poisson(1.2 * (1.0 + s), n).astype("int64")
    usage_factor = max(1.0 - 0.35 * s, 0.1)
    usage = np.round(rows["usage_level"].to_numpy() * rng.lognormal(0.0, 0.25, n) * usage_factor, 3)

    day = spec.day(index)
    midnight = pd.Timestamp(day.isoformat(), tz="UTC")
    seconds = np.sort(rng.integers(0, 20 * 3600, n))  # events during the day, labels up to 4 h later
    event_ts = midnight + pd.to_timedelta(seconds, unit="s")

    w_calls = 0.35 * (1.0 + 1.5 * s)
    w_charge = 0.02 * (1.0 + 1.5 * s)
    logit = (
        -1.6
        - 2.9 * s  # keeps the churn rate plausible while the relation changes
        + 1.1 * (contract == "month-to-month")
        - 0.6 * (contract == "two-year")
        - 0.035 * tenure
        + w_charge * (monthly - 65.0)
        + w_calls * calls
        - 0.015 * usage
        + 0.25 * (rows["payment_method"].to_numpy() == "invoice")
    )
    churned = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")
    label_ts = event_ts + pd.to_timedelta(rng.integers(60, 4 * 3600, n), unit="s")

    features = pd.DataFrame(
        {
            ENTITY: rows[ENTITY].to_numpy(),
            TIMESTAMP: event_ts,
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "support_calls_30d": calls,
            "usage_gb": usage,
            "contract_type": contract,
            "region": rows["region"].to_numpy(),
            "payment_method": rows["payment_method"].to_numpy(),
        }
    )
    labels = pd.DataFrame({ENTITY: rows[ENTITY].to_numpy(), LABEL_TIMESTAMP: label_ts, LABEL: churned})
    order = np.argsort(features[ENTITY].to_numpy(), kind="stable")
    return (
        features.iloc[order].reset_index(drop=True),
        labels.iloc[order].reset_index(drop=True),
    )


def write_day(root: str | os.PathLike[str], spec: ChurnSpec, index: int) -> dict[str, str]:
    """Write day ``index`` as ``features/<date>.parquet`` and ``labels/<date>.parquet`` under ``root``.

    Files are written under a temporary name and renamed, so a watcher never sees half a batch.
    """
    features, labels = generate_day(spec, index)
    date = spec.day(index).isoformat()
    out = {}
    for kind, frame in (("features", features), ("labels", labels)):
        directory = Path(root) / kind
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / f"{date}.parquet"
        tmp = directory / f".{date}.parquet.tmp-{os.getpid()}"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, final)
        out[kind] = str(final)
    return out


def manifest(spec: ChurnSpec) -> dict[str, Any]:
    """What a directory written with ``spec`` contains (JSON-able)."""
    return {
        "dataset": "churn",
        "spec": asdict(spec),
        "days": [spec.day(i).isoformat() for i in range(spec.days)],
        "drift_date": spec.day(spec.drift_day).isoformat() if spec.drift_day is not None else None,
        "drifted_features": DRIFTED_FEATURES if spec.drift_day is not None else [],
        "entity": ENTITY,
        "timestamp": TIMESTAMP,
        "label": LABEL,
        "label_timestamp": LABEL_TIMESTAMP,
        "numeric_features": NUMERIC_FEATURES,
        "categorical_features": CATEGORICAL_FEATURES,
    }


def write_batches(
    root: str | os.PathLike[str], spec: ChurnSpec | None = None, *, days: range | None = None
) -> dict[str, Any]:
    """Write the daily batches of ``spec`` (all days, or only ``days``) and ``manifest.json``.

    :return: the manifest, with ``files`` listing the written paths by date.
    """
    spec = spec or ChurnSpec()
    Path(root).mkdir(parents=True, exist_ok=True)
    written = {spec.day(i).isoformat(): write_day(root, spec, i) for i in (days or range(spec.days))}
    write_reference(root, spec)
    info = manifest(spec)
    (Path(root) / "manifest.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return {**info, "files": written}


def write_reference(root: str | os.PathLike[str], spec: ChurnSpec) -> str:
    """Write ``reference/features.parquet``: the features of every day before the drift day."""
    pd = require("pandas")
    last = spec.drift_day if spec.drift_day is not None else spec.days
    frame = pd.concat([generate_day(spec, i)[0] for i in range(max(last, 1))], ignore_index=True)
    directory = Path(root) / "reference"
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".features.parquet.tmp-{os.getpid()}"
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, directory / "features.parquet")
    return str(directory / "features.parquet")


def load(
    root: str | os.PathLike[str], kind: str = "features", *, days: list[str] | None = None
) -> pd.DataFrame:
    """Read the ``features`` or ``labels`` batches of ``root`` (all days, or the given dates) as one frame."""
    pd = require("pandas")
    if kind not in ("features", "labels"):
        raise ConfigError(f"kind={kind!r}: use 'features' or 'labels'.")
    directory = Path(root) / kind
    files = sorted(directory.glob("*.parquet"))
    if days is not None:
        files = [f for f in files if f.stem in set(days)]
    if not files:
        from airflow_mlpipe.exceptions import DataError

        raise DataError(f"No {kind} batches under {directory}" + (f" for {days}" if days else ""))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def churn_model() -> Any:
    """The reference churn estimator: one-hot encoded categoricals + gradient-boosted trees.

    Use it as ``training.estimator: mlpipe_dev.churn_data.churn_model``; search its
    parameters with the ``model__`` prefix (``model__learning_rate``). Plain scikit-learn objects
    only, so the model serializes with skops' default trusted types.
    """
    return boosted_trees(CATEGORICAL_FEATURES)


def boosted_trees(categorical: list[str]) -> Any:
    """A pipeline one-hot encoding ``categorical`` (other columns pass through) into
    ``HistGradientBoostingClassifier(max_iter=100)`` (step names ``prepare`` and ``model``)."""
    require("sklearn")
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    prepare = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore"), categorical)],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    return Pipeline([("prepare", prepare), ("model", HistGradientBoostingClassifier(max_iter=100))])


def main(argv: Sequence[str] | None = None) -> int:
    """Write the seeded churn batches to a directory and print what was written.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="python -m mlpipe_dev.churn_data", description="write the seeded reference churn batches"
    )
    parser.add_argument("out", help="output directory")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--rows-per-day", type=int, default=500)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--drift-day", type=int, default=7, help="0-based; negative for no drift")
    args = parser.parse_args(argv)
    spec = ChurnSpec(
        seed=args.seed,
        start=args.start,
        days=args.days,
        rows_per_day=args.rows_per_day,
        customers=max(args.customers, args.rows_per_day),
        drift_day=None if args.drift_day < 0 else args.drift_day,
    )
    info = write_batches(args.out, spec)
    print(json.dumps({k: info[k] for k in ("days", "drift_date", "drifted_features")}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
