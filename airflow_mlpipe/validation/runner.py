"""Run an expectation suite on a DataFrame with Great Expectations 1.x and summarise the result.

One ephemeral context per run (nothing written outside the Data Docs folder), progress bars off,
pandas data source + dataframe asset + whole-dataframe batch definition, a ValidationDefinition and
a Checkpoint whose UpdateDataDocsAction writes the site into ``docs_dir``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.validation import SuiteSpec, ValidationOptions
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.validation.precheck import refuse_unusable
from airflow_mlpipe.validation.shift import META_KEY
from airflow_mlpipe.validation.sql import SqlData, add_batch

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SITE_NAME = "mlpipe"
_SAMPLE = 10  # unexpected values kept per failed expectation in the XCom summary


def check_frame(df: pd.DataFrame, suite: SuiteSpec, *, where: str, options: ValidationOptions) -> None:
    """Reject input the suite cannot meaningfully validate (see :func:`.precheck.refuse_unusable`).

    :raises DataError: no rows, duplicate or missing columns, entirely null columns.
    """
    refuse_unusable(
        where,
        rows=len(df),
        names=[str(c) for c in df.columns],
        non_null=[int(n) for n in df.notna().sum().to_numpy()],
        suite=suite,
        options=options,
    )


def build_suite(gx: Any, suite: SuiteSpec) -> Any:
    """A GE ``ExpectationSuite`` from a spec; unknown types or bad arguments raise ConfigError."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    gx_suite = gx.ExpectationSuite(name=suite.name)
    for spec in suite.expectations:
        try:
            expectation = ExpectationConfiguration(
                type=spec.type, kwargs=dict(spec.kwargs), meta=dict(spec.meta) or None
            ).to_domain_obj()
        except Exception as exc:  # GE raises its own errors and pydantic ValidationError
            raise ConfigError(
                f"Invalid expectation {spec.type} with kwargs {jsonable(spec.kwargs)!r} in suite "
                f"{suite.name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        gx_suite.add_expectation(expectation)
    return gx_suite


def run_suite(
    data: pd.DataFrame | SqlData,
    suite: SuiteSpec,
    *,
    docs_dir: str | None,
    result_format: str = "SUMMARY",
) -> tuple[Any, str | None]:
    """Validate ``data`` with ``suite``; build Data Docs into ``docs_dir`` when given.

    A DataFrame runs on GE's pandas engine; a :class:`~airflow_mlpipe.validation.sql.SqlData`
    (a table or query) on its SQL engine, in the database.

    :returns: the GE ``ExpectationSuiteValidationResult`` and the local path of its Data Docs page.
    """
    gx = require("great_expectations")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    actions = []
    if docs_dir is not None:
        Path(docs_dir).mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            site_name=SITE_NAME,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(docs_dir).resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[SITE_NAME]))
    if isinstance(data, SqlData):
        batch, parameters = add_batch(context, data), None
    else:
        batch = (
            context.data_sources.add_pandas("mlpipe")
            .add_dataframe_asset("dataset")
            .add_batch_definition_whole_dataframe("whole")
        )
        parameters = {"dataframe": data}
    gx_suite = context.suites.add(build_suite(gx, suite))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite.name}-validation", data=batch, suite=gx_suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite.name}-checkpoint",
            validation_definitions=[definition],
            actions=actions,
            result_format=result_format,
        )
    )
    result = checkpoint.run(batch_parameters=parameters)
    identifier, validation = next(iter(result.run_results.items()))
    page = None
    if docs_dir is not None:
        urls = context.get_docs_sites_urls(resource_identifier=identifier, site_names=[SITE_NAME])
        page = urls[0].get("site_url") if urls else None
    return validation, page


def _observed(result: Mapping[str, Any]) -> Any:
    if "observed_value" in result:
        return result["observed_value"]
    keys = ("unexpected_count", "unexpected_percent", "missing_count", "element_count")
    observed: dict[str, Any] = {k: result[k] for k in keys if k in result}
    if result.get("partial_unexpected_counts"):
        observed["unexpected_sample"] = list(result["partial_unexpected_counts"])[:_SAMPLE]
    elif "partial_unexpected_list" in result:
        observed["unexpected_sample"] = list(result["partial_unexpected_list"])[:_SAMPLE]
    return observed or None


def _column(kwargs: Mapping[str, Any]) -> str | None:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs and "column_B" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if "column_list" in kwargs:
        return ",".join(map(str, kwargs["column_list"]))
    return None


def summarize(validation: Any, *, suite: str, dataset_uri: str, row_count: int) -> dict[str, Any]:
    """The XCom summary (see docs/stages/validation.md) of a GE suite validation result."""
    data = validation.to_json_dict()
    failed: list[dict[str, Any]] = []
    shift: dict[str, Any] = {}
    for item in data["results"]:
        config = item["expectation_config"]
        kwargs = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
        result = item.get("result") or {}
        exception = item.get("exception_info") or {}
        message = exception.get("exception_message") if isinstance(exception, Mapping) else None
        if META_KEY in (config.get("meta") or {}):
            shift[kwargs["column"]] = {
                "kl_divergence": result.get("observed_value"),
                "threshold": kwargs.get("threshold"),
                "shifted": not item["success"],
                "kind": config["meta"][META_KEY]["kind"],
            }
        if item["success"]:
            continue
        details: dict[str, Any] = {k: v for k, v in kwargs.items() if k != "partition_object"}
        if "details" in result:
            details["result"] = result["details"]
        if message:
            details["exception"] = message
        failed.append(
            {
                "expectation": config["type"],
                "column": _column(kwargs),
                "observed": _observed(result),
                "details": details,
            }
        )
    stats = data["statistics"]
    summary = {
        "success": bool(data["success"]),
        "dataset_uri": dataset_uri,
        "suite": suite,
        "row_count": int(row_count),
        "statistics": {
            k: stats.get(k)
            for k in (
                "evaluated_expectations",
                "successful_expectations",
                "unsuccessful_expectations",
                "success_percent",
            )
        },
        "failed": failed,
        "shift": shift or None,
    }
    return jsonable(summary)


def failure_message(summary: Mapping[str, Any], *, limit: int = 10) -> str:
    """A one-paragraph explanation naming each failed expectation and its observed value."""
    stats = summary.get("statistics") or {}
    parts = [
        f"Data validation failed: suite {summary.get('suite')!r} on {summary.get('dataset_uri')}: "
        f"{stats.get('unsuccessful_expectations')} of {stats.get('evaluated_expectations')} "
        "expectations failed."
    ]
    for item in list(summary.get("failed") or [])[:limit]:
        column = f" column={item['column']!r}" if item.get("column") else ""
        extra = item.get("details", {}).get("exception")
        type_error = item.get("details", {}).get("type_error")
        observed = type_error or f"observed {item.get('observed')!r}"
        text = f"- {item['expectation']}{column}: {observed}"
        if "column_dtype" in item.get("details", {}):
            text += f" (column dtype {item['details']['column_dtype']})"
        if "threshold" in item.get("details", {}):
            text += f" (threshold {item['details']['threshold']})"
        if extra:
            text += f" [error: {extra}]"
        parts.append(text)
    more = len(summary.get("failed") or []) - limit
    if more > 0:
        parts.append(f"... and {more} more (see the XCom summary and Data Docs).")
    if summary.get("data_docs_uri"):
        parts.append(f"Data Docs: {summary['data_docs_uri']}")
    return "\n".join(parts)
