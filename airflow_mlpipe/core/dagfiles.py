"""Finding files that ship with a DAG (suites, feature definitions, configs) when a task runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def dag_search_paths(context: Any, task: Any = None) -> list[str]:
    """Directories to resolve a DAG-relative path in, most specific first.

    The DAG file's directory, the DAG's ``template_searchpath`` entries, then the configured
    ``[core] dags_folder``.
    """
    dag = context.get("dag") or getattr(task, "dag", None)
    paths: list[str] = []
    fileloc = getattr(dag, "fileloc", None)
    if fileloc:
        paths.append(str(Path(fileloc).parent))
    searchpath = getattr(dag, "template_searchpath", None) or []
    paths.extend([searchpath] if isinstance(searchpath, str) else list(searchpath))
    from airflow.configuration import conf

    folder = conf.get("core", "dags_folder", fallback="")
    if folder:
        paths.append(folder)
    return paths
