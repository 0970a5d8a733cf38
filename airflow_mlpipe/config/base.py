"""The one way a config object is built from a mapping (a YAML section, a rendered template, an
operator argument): every config class has a ``from_mapping`` classmethod that ends here.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from airflow_mlpipe.exceptions import ConfigError

C = TypeVar("C")


def from_mapping(cls: type[C], value: C | Mapping[str, Any] | None, where: str | None = None) -> C:
    """``value`` as a ``cls``: a config object (copied), a mapping of its fields, or ``None`` (the defaults).

    :param where: what the mapping is, for messages (``"training"``, ``"deployment.canary"`` …);
        ``None``: named after the class.
    :raises ConfigError: not a mapping, unknown keys (listing the allowed ones), missing fields, or
        whatever the class's own validation rejects.
    """
    if value is None:
        value = {}
    if isinstance(value, cls):
        return copy.deepcopy(value)
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where or cls.__name__} must be a mapping of {cls.__name__} fields, got "
            f"{type(value).__name__}: {value!r}."
        )
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(value) - names)
    if unknown:
        head = f"Invalid {where}: unknown key(s)" if where else f"Unknown {cls.__name__} field(s)"
        raise ConfigError(f"{head} {unknown}; allowed keys are {sorted(names)}.")
    try:
        return cls(**dict(value))
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"Invalid {where or cls.__name__}: {exc}") from None


class MappingConfig:
    """Gives a config dataclass the one builder every config has: :meth:`from_mapping`."""

    @classmethod
    def from_mapping(cls, value: Self | Mapping[str, Any] | None, where: str | None = None) -> Self:
        """Build from a config object (copied), a mapping of its fields, or ``None`` (the defaults)."""
        return from_mapping(cls, value, where)
