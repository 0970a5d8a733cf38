"""The ``mlpipe`` command line.

* ``mlpipe lineage --model NAME [--alias champion] [--json]`` — which data, features, params and
  code version produced the model now serving, and when it was deployed.
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
