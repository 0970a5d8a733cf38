"""Loading expectation suites from JSON/YAML files or inline lists.

Accepted shapes, in Great Expectations 1.x naming:

* a list of expectations ``[{"type": "expect_...", "kwargs": {...}}, ...]``;
* a suite mapping ``{"name": "...", "expectations": [...]}`` (what ``ExpectationSuite.to_json_dict()``
  writes, so suites exported from a GE project load as they are).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_mlpipe.config.validation import ExpectationSpec, SuiteSpec
from airflow_mlpipe.core.yamlio import load_yaml
from airflow_mlpipe.exceptions import ConfigError

SUITE_SUFFIXES = (".json", ".yaml", ".yml")


def find_suite_file(
    path: str | os.PathLike[str], search_paths: Iterable[str | os.PathLike[str]] = ()
) -> Path:
    """Resolve a suite file: absolute, or relative to the first of ``search_paths`` that has it.

    :param search_paths: e.g. the DAG file's folder and the DAG's ``template_searchpath``.
    :raises ConfigError: the file is nowhere to be found (the message lists where it looked).
    """
    candidate = Path(os.fspath(path)).expanduser()
    if candidate.is_absolute():
        if candidate.is_file():
            return candidate
        raise ConfigError(f"Expectation suite file not found: {candidate}")
    looked = []
    for base in search_paths:
        full = Path(os.fspath(base)) / candidate
        looked.append(str(full))
        if full.is_file():
            return full
    if candidate.is_file():  # relative to the working directory, as a last resort
        return candidate.resolve()
    raise ConfigError(f"Expectation suite file {str(path)!r} not found; looked in {looked or ['.']}.")


def read_suite_file(path: Path) -> Any:
    """Parse a JSON or YAML suite file."""
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        if path.suffix.lower() in (".yaml", ".yml"):
            return load_yaml(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError (not a ValueError)
        raise ConfigError(f"Could not parse expectation suite {path}: {exc}") from exc
    raise ConfigError(f"Expectation suite {path} must be a {'/'.join(SUITE_SUFFIXES)} file.")


def load_suite(
    source: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | Mapping[str, Any] | SuiteSpec,
    *,
    name: str | None = None,
    search_paths: Iterable[str | os.PathLike[str]] = (),
) -> SuiteSpec:
    """Build a :class:`SuiteSpec` from a file path or inline expectations.

    :param source: suite file path (JSON/YAML), list of expectation dicts, suite mapping or spec.
    :param name: suite name; defaults to the file's ``name`` key, its stem, or ``"mlpipe_suite"``.
    :param search_paths: folders for a relative file path.
    """
    if isinstance(source, SuiteSpec):
        return source if name is None else SuiteSpec(name=name, expectations=list(source.expectations))
    default_name = "mlpipe_suite"
    data: Any = source
    if isinstance(source, (str, os.PathLike)):
        path = find_suite_file(source, search_paths)
        default_name = path.stem
        data = read_suite_file(path)
    if isinstance(data, Mapping):
        if "expectations" not in data:
            raise ConfigError(
                "A suite mapping needs an 'expectations' list (and optionally 'name'); "
                f"got keys {sorted(data)}."
            )
        default_name = str(data.get("name") or data.get("expectation_suite_name") or default_name)
        items = data["expectations"]
    else:
        items = data
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise ConfigError(f"Expectations must be a list of mappings, got {type(items).__name__}.")
    specs = [ExpectationSpec.from_mapping(item) for item in items]
    return SuiteSpec(name=name or default_name, expectations=specs)
