"""Run benchmarks: ``python -m bench`` (all) or ``python -m bench validation training …``.

Each benchmark module ``bench/<name>.py`` defines ``run(quick: bool) -> list[Result]``. Ratios are
computed against a baseline measured in the same run (absolute times are not comparable between
machines). Results are printed and written to ``bench/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import tempfile
import time
from pathlib import Path

from bench._util import Result, print_table

HERE = Path(__file__).resolve().parent


#: long benchmarks run only when named (whole loops, or data sets of millions of rows)
ON_REQUEST = frozenset({"demo", "loop", "startup", "scale"})


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {available()})")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    args = parser.parse_args(argv)
    names = args.names or [n for n in available() if n not in ON_REQUEST]
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {available()}")
    (HERE / "results").mkdir(exist_ok=True)
    # Libraries that default to the working directory (MLflow's ./mlruns) write into a scratch dir.
    os.chdir(tempfile.mkdtemp(prefix="mlpipe-bench-"))
    all_ok = True
    # Long runs show where they are as they go, also when stdout is a pipe or a CI log.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    for index, name in enumerate(names, 1):
        print(f"[{index}/{len(names)}] {name}: running … (load {os.getloadavg()[0]:.1f})")
        module = importlib.import_module(f"bench.{name}")
        started = time.perf_counter()
        results: list[Result] = module.run(quick=args.quick)
        print(f"\n## {name}  ({time.perf_counter() - started:.0f} s)")
        print_table(results)
        (HERE / "results" / f"{name}.json").write_text(
            json.dumps([r.as_dict() for r in results], indent=2) + "\n"
        )
        all_ok &= all(r.met is not False for r in results)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
