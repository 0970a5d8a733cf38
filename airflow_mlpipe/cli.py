"""The ``mlpipe`` command line.

* ``mlpipe lineage --model NAME [--alias champion] [--json]`` — which data, features, params and
  code version produced the model now serving, and when it was deployed.
* ``mlpipe churn-data OUT_DIR [--days N] [--drift-day D] [--seed S]`` — write the reference churn
  batches (seeded, offline).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from airflow_mlpipe.core.conventions import ALIAS_CHAMPION
from airflow_mlpipe.exceptions import MlpipeError


def _client(args: argparse.Namespace) -> Any:
    from airflow_mlpipe.core.deps import require

    require("mlflow")
    from mlflow import MlflowClient

    if args.tracking_uri:
        return MlflowClient(
            tracking_uri=args.tracking_uri, registry_uri=args.registry_uri or args.tracking_uri
        )
    from airflow_mlpipe.hooks.mlflow import MlflowHook

    return MlflowHook(args.conn_id).get_client()


def _lineage(args: argparse.Namespace) -> int:
    from airflow_mlpipe.provenance import airflow_asset_events, model_lineage, render_text

    record = model_lineage(_client(args), args.model, args.alias)
    if not args.no_airflow:
        record["asset_events"] = airflow_asset_events(record)
    if args.json:
        print(json.dumps(record, indent=2, sort_keys=True))
    else:
        print(render_text(record))
    return 0


def _churn_data(args: argparse.Namespace) -> int:
    from airflow_mlpipe.datasets import churn

    spec = churn.ChurnSpec(
        seed=args.seed,
        start=args.start,
        days=args.days,
        rows_per_day=args.rows_per_day,
        customers=max(args.customers, args.rows_per_day),
        drift_day=None if args.drift_day < 0 else args.drift_day,
    )
    info = churn.write_batches(args.out, spec)
    print(json.dumps({k: info[k] for k in ("days", "drift_date", "drifted_features")}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpipe", description="airflow-mlpipe command line")
    sub = parser.add_subparsers(dest="command", required=True)

    lin = sub.add_parser("lineage", help="provenance of the model behind a registry alias")
    lin.add_argument("--model", required=True, help="registered model name")
    lin.add_argument("--alias", default=ALIAS_CHAMPION, help="registry alias (default: champion)")
    lin.add_argument("--tracking-uri", help="MLflow tracking URI (default: the Airflow connection)")
    lin.add_argument("--registry-uri", help="MLflow registry URI when it differs from the tracking URI")
    lin.add_argument("--conn-id", default="mlpipe_mlflow_default", help="Airflow connection of MLflow")
    lin.add_argument("--no-airflow", action="store_true", help="do not read asset events from Airflow")
    lin.add_argument("--json", action="store_true", help="machine-readable output")
    lin.set_defaults(func=_lineage)

    data = sub.add_parser("churn-data", help="write the seeded reference churn batches")
    data.add_argument("out", help="output directory")
    data.add_argument("--seed", type=int, default=42)
    data.add_argument("--start", default="2024-01-01")
    data.add_argument("--days", type=int, default=10)
    data.add_argument("--rows-per-day", type=int, default=500)
    data.add_argument("--customers", type=int, default=3000)
    data.add_argument("--drift-day", type=int, default=7, help="0-based; negative for no drift")
    data.set_defaults(func=_churn_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MlpipeError as exc:
        print(f"mlpipe {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
