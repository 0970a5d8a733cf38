"""Turn a :class:`~airflow_mlpipe.factories.graph.Graph` into an Airflow DAG.

One task group per graph group, one operator per node (chosen by the node's stage kind in
:mod:`airflow_mlpipe.factories.stages`; the training search is a nested group with dynamic task
mapping), assets for outlets, and the schedule (cron, assets, or an ``AssetWatcher``). Only cheap Airflow SDK
objects are created: no data is read and no service contacted.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from airflow_mlpipe.core.lineage import stage_asset
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.factories.graph import Graph, Ref


def mlpipe_env(name: str, default: str = "") -> str:
    """Jinja macro ``mlpipe_env``: environment variable ``name`` of the running task, else ``default``.

    ``{airflow_home}`` in the default is replaced by ``$AIRFLOW_HOME`` (``~/airflow`` when unset).
    """
    value = os.environ.get(name)
    if value:
        return value
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return default.replace("{airflow_home}", home)


#: macros available in every template of a factory-built DAG
MACROS = {"mlpipe_env": mlpipe_env}


def render_now(text: str) -> str:
    """Render a location template with the factory macros immediately.

    Only for values Airflow never templates — the path an ``AssetWatcher``'s trigger watches is
    fixed when the DAG is parsed, so it is read from the DAG processor's environment.
    """
    if "{{" not in text:
        return text
    import jinja2

    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(text).render(**MACROS)


def asset(key: tuple[str, str]) -> Any:
    """The Airflow ``Asset`` of a graph asset key ``(stage, name)``."""
    return stage_asset(*key)


def schedule_of(graph: Graph) -> Any:
    """Airflow ``schedule`` for the graph: cron/preset/None, an asset condition or a watched asset."""
    schedule = graph.schedule
    if schedule is None or isinstance(schedule, str):
        return schedule
    kind, spec = schedule
    if kind == "assets_all":
        from airflow.sdk import AssetAll

        return AssetAll(*[asset(k) for k in spec])
    if kind == "assets_any":
        from airflow.sdk import AssetAny

        return AssetAny(*[asset(k) for k in spec])
    if kind == "watch":
        from airflow_mlpipe.factories.stages import new_batch_watcher

        stage, name = spec["asset"]
        from airflow.sdk import Asset

        watcher = new_batch_watcher(
            f"{graph.dag_id}.watch",
            render_now(spec["path"]),
            spec["pattern"],
            spec["poll_interval"],
            include_existing=spec.get("include_existing", False),
            min_age=spec["min_age"],
        )
        return [
            Asset(
                name=f"mlpipe.{stage}.{name}",
                uri=f"mlpipe://{stage}/{name}",
                group="mlpipe",
                watchers=[watcher],
            )
        ]
    raise ConfigError(f"Unknown schedule kind {kind!r} in graph {graph.dag_id}.")


def render(graph: Graph, *, start_date: str, retries: int = 1, extra_dag_kwargs: dict | None = None) -> Any:
    """Build the Airflow ``DAG`` of ``graph``."""
    import pendulum
    from airflow.sdk import DAG, TaskGroup

    from airflow_mlpipe.factories.stages import build_task

    start = pendulum.instance(dt.datetime.fromisoformat(start_date), tz="UTC")
    with DAG(
        dag_id=graph.dag_id,
        schedule=schedule_of(graph),
        start_date=start,
        catchup=False,
        max_active_runs=1,
        description=graph.description,
        doc_md=_doc(graph),
        tags=sorted(set(graph.tags)),
        default_args={"retries": retries, "retry_delay": dt.timedelta(seconds=30)},
        user_defined_macros=dict(MACROS),
        # lists read from an upstream result (e.g. a sensor's files) must stay lists
        render_template_as_native_obj=graph.native_templates,
        **(extra_dag_kwargs or {}),
    ) as dag:
        groups: dict[str, Any] = {}
        tasks: dict[str, Any] = {}
        for node in graph.nodes.values():
            if node.group not in groups:
                groups[node.group] = TaskGroup(group_id=node.group, tooltip=f"{node.group} stage")
            params = {k: _resolve(v, tasks) for k, v in node.params.items() if v is not None}
            with groups[node.group]:
                tasks[node.task_id] = build_task(node, params, [asset(k) for k in node.outlets])
        for up, down in graph.edges:
            tasks[up] >> tasks[down]
    return dag


def _resolve(value: Any, tasks: dict[str, Any]) -> Any:
    """Replace :class:`Ref` values (also nested in dicts/lists) by XCom references."""
    if isinstance(value, Ref):
        # A key of a result dict is read with a template: ``output["k"]`` would name an XCom *key*.
        if value.template or value.key is not None:
            suffix = "" if value.key is None else f"[{value.key!r}]"
            return f"{{{{ ti.xcom_pull(task_ids={value.task_id!r}){suffix} }}}}"
        return tasks[value.task_id].output
    if isinstance(value, dict):
        return {k: _resolve(v, tasks) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, tasks) for v in value]
    return value


def _doc(graph: Graph) -> str:
    lines = [f"### {graph.dag_id}", "", graph.description, "", "| task | stage |", "|---|---|"]
    lines += [f"| `{n.task_id}` | {n.kind} |" for n in graph.nodes.values()]
    return "\n".join(lines)
