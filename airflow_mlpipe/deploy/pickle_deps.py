"""The Python distributions a pickled model needs to be loaded again.

A bento installs only the packages it declares. A model pickle names the module of every class and
function it rebuilds, and those can come from packages the training code never mentioned: a library
imported anywhere in the process may have changed how some objects pickle (``dill`` registers its
own reducers with the pure-Python pickler that ``joblib`` uses, so an estimator dumped after any
import of ``dill`` needs ``dill`` to load). A local target runs the bento in the worker's
environment and never notices; a container built from the bento's declared packages fails at start
with ``ModuleNotFoundError``. Pickling the object once more with the same pickler and reading the
modules out of the stream tells which distributions to declare.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import sys
from collections.abc import Iterable
from importlib import metadata
from typing import Any

#: opcodes that push a string (a ``STACK_GLOBAL`` takes module and name from the last two pushed)
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})


def pickled_modules(obj: Any) -> set[str]:
    """The modules a pickle of ``obj`` imports when it is loaded.

    ``obj`` is pickled with the pure-Python pickler, whose dispatch table ``joblib`` extends and
    other libraries (``dill``) patch, into memory; the modules are then read from the stream's
    ``GLOBAL``/``STACK_GLOBAL`` opcodes (string operands followed through the memo).
    """
    buffer = io.BytesIO()
    # protocol 4: the pure-Python pickler mis-memoizes protocol 5 buffers of some arrays
    pickle._Pickler(buffer, protocol=4).dump(obj)
    return stream_modules(buffer.getvalue())


def stream_modules(data: bytes) -> set[str]:
    """The modules named by the ``GLOBAL``/``STACK_GLOBAL`` opcodes of one pickle stream."""
    modules: set[str] = set()
    memo: dict[int, object] = {}
    pushed: list[object] = [None, None]  # the two values most recently pushed (None: not a string)
    for op, arg, _ in pickletools.genops(data):
        value: object = None
        if op.name in _STRINGS:
            value = arg
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            value = memo.get(int(arg))  # type: ignore[arg-type]
        elif op.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1]
            continue
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = pushed[-1]  # type: ignore[arg-type]
            continue
        elif op.name == "GLOBAL":
            modules.add(str(arg).split(" ", 1)[0])
        elif op.name == "STACK_GLOBAL" and isinstance(pushed[-2], str):
            modules.add(pushed[-2])
        pushed = [pushed[-1], value]
    return modules


def distributions(modules: Iterable[str]) -> dict[str, str]:
    """``{distribution: version}`` of the installed distributions providing ``modules``.

    Modules of the standard library need none. Distributions installed from a local directory or
    a VCS checkout (a ``direct_url.json``, e.g. the project's own editable install) are left out:
    a package index cannot supply them, so the bento's image build could only fail on them.
    """
    owners = metadata.packages_distributions()
    found: dict[str, str] = {}
    for module in modules:
        top = module.split(".", 1)[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            continue
        for name in owners.get(top, []):
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:  # pragma: no cover - listed means installed
                continue
            if dist.read_text("direct_url.json") is None:
                found[name] = dist.version
    return found


def requirements(obj: Any) -> list[str]:
    """Pinned requirements (``name==version``) a pickle of ``obj`` needs, sorted."""
    return sorted(f"{dist}=={version}" for dist, version in distributions(pickled_modules(obj)).items())
