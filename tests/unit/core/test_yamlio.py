"""The one YAML loader: libyaml when PyYAML has it, the same safe types as ``yaml.safe_load``."""

from __future__ import annotations

import pytest
import yaml

from airflow_mlpipe.core import yamlio

DOC = """
name: churn
when: 2024-01-01
ratio: 0.3
flags: [yes, no, ~]
nested: {a: [1, 2.5, "x"]}
"""


def test_same_result_as_safe_load() -> None:
    assert yamlio.load_yaml(DOC) == yaml.safe_load(DOC)


def test_uses_libyaml_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[type] = []
    real_load = yaml.load

    def spy(stream: object, Loader: type) -> object:
        used.append(Loader)
        return real_load(stream, Loader=Loader)

    monkeypatch.setattr(yaml, "load", spy)
    yamlio.load_yaml("a: 1")
    assert used == [yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader]
    monkeypatch.delattr(yaml, "CSafeLoader")
    yamlio.load_yaml("a: 1")
    assert used[-1] is yaml.SafeLoader


def test_refuses_python_tags() -> None:
    with pytest.raises(yaml.YAMLError):
        yamlio.load_yaml("!!python/object/apply:os.system ['true']")
