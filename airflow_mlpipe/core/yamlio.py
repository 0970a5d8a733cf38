"""Reading YAML: one loader for every config, suite and repository file the provider reads.

Config files are read when a DAG file is parsed, so the loader is the C one (libyaml, shipped in
PyYAML's wheels) where available: it reads the reference pipeline config about 20× faster than
the pure-Python ``SafeLoader``, which stays the fallback. Both construct the same safe types.
"""

from __future__ import annotations

from typing import IO, Any


def load_yaml(source: str | bytes | IO[str] | IO[bytes]) -> Any:
    """``yaml.safe_load`` through libyaml when PyYAML was built with it; raises ``yaml.YAMLError``."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(source, Loader=loader)
