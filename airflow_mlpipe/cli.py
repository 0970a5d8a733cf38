"""The ``mlpipe`` command line.

* ``mlpipe lineage --model NAME [--alias champion] [--json]`` — which data, features, params and
  code version produced the model now serving, and when it was deployed.
* ``mlpipe reproduce --model NAME --version V [--tolerance T] [--allow-environment-drift] [--json]``
  — retrain a version from its snapshot and recorded specification and compare (exit 1 on mismatch).
* ``mlpipe audit --model NAME --version V [--json]`` — write the version's audit report (HTML and
  JSON) and check every recorded digest (exit 1 when one does not match).
* ``mlpipe snapshots --model NAME [--keep-last N] [--dry-run]`` — delete the snapshots that no
  retained version needs (never those of ``champion`` or ``previous``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
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


def _reproduce(args: argparse.Namespace) -> int:
    from airflow_mlpipe.training.reproduce import ReproduceConfig, record, render_text, reproduce

    config = ReproduceConfig(
        tolerance=args.tolerance,
        allow_environment_drift=args.allow_environment_drift,
        code_version=args.code_version,
    )
    with _activated(args) as client:
        report = reproduce(client, args.model, args.version, config)
        report["report_uri"] = record(client, report)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else render_text(report))
    return 0 if report["match"] else 1


def _audit(args: argparse.Namespace) -> int:
    from airflow_mlpipe.governance import audit

    with _activated(args) as client:
        report = audit.collect(client, args.model, args.version, airflow=not args.no_airflow)
    files = audit.write(report)
    if args.json:
        print(json.dumps({**report, **files}, indent=2, sort_keys=True))
    else:
        print(f"{files['html_uri']}\n{files['json_uri']}")
        for name in report["tampered"]:
            print(f"integrity: {name} does not match its recorded digest", file=sys.stderr)
    return 1 if report["tampered"] else 0


def _snapshots(args: argparse.Namespace) -> int:
    from airflow_mlpipe.governance.snapshots import RetentionConfig, prune

    with _activated(args) as client:
        result = prune(client, args.model, RetentionConfig(keep_last=args.keep_last), dry_run=args.dry_run)
    print(json.dumps(result, indent=2))
    return 0


@contextlib.contextmanager
def _activated(args: argparse.Namespace) -> Iterator[Any]:
    """An MLflow client with its tracking/registry URIs active (models load by ``models:/`` URI)."""
    if args.tracking_uri:
        from airflow_mlpipe.core.deps import require

        mlflow = require("mlflow")
        saved = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
        mlflow.set_tracking_uri(args.tracking_uri)
        mlflow.set_registry_uri(args.registry_uri or args.tracking_uri)
        try:
            yield _client(args)
        finally:
            mlflow.set_tracking_uri(saved[0])
            mlflow.set_registry_uri(saved[1])
        return
    from airflow_mlpipe.hooks.mlflow import MlflowHook

    hook = MlflowHook(args.conn_id)
    with hook.activate():
        yield hook.get_client()


def _registry_args(parser: argparse.ArgumentParser, *, version: bool = True) -> None:
    parser.add_argument("--model", required=True, help="registered model name")
    if version:
        parser.add_argument("--version", required=True, help="model version")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the Airflow connection)")
    parser.add_argument("--registry-uri", help="MLflow registry URI when it differs from the tracking URI")
    parser.add_argument("--conn-id", default="mlpipe_mlflow_default", help="Airflow connection of MLflow")


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

    rep = sub.add_parser("reproduce", help="retrain a version from its lineage and compare")
    _registry_args(rep)
    rep.add_argument("--tolerance", type=float, default=1e-6, help="for non-deterministic estimators")
    rep.add_argument(
        "--allow-environment-drift",
        action="store_true",
        help="compare even when scikit-learn/numpy/scipy differ",
    )
    rep.add_argument("--code-version", help="the code version here, compared with the recorded one")
    rep.add_argument("--json", action="store_true", help="machine-readable output")
    rep.set_defaults(func=_reproduce)

    aud = sub.add_parser("audit", help="audit report (HTML and JSON) of a version, digests checked")
    _registry_args(aud)
    aud.add_argument("--no-airflow", action="store_true", help="do not read events from Airflow")
    aud.add_argument("--json", action="store_true", help="print the record instead of the file paths")
    aud.set_defaults(func=_audit)

    snap = sub.add_parser("snapshots", help="delete snapshots no retained version needs")
    _registry_args(snap, version=False)
    snap.add_argument("--keep-last", type=int, default=10, help="keep the snapshots of the newest N versions")
    snap.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    snap.set_defaults(func=_snapshots)

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
