"""A bento declares every distribution its model's pickle imports, also ones the training code never
named (dill's reducers on the pure-Python pickler joblib uses)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from collections import OrderedDict
from decimal import Decimal
from importlib import metadata

import pytest

from airflow_mlpipe.deploy.pickle_deps import distributions, pickled_modules, requirements, stream_modules


def _fitted() -> object:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    X = np.arange(40, dtype=float).reshape(20, 2)
    return LogisticRegression().fit(X, (X[:, 0] > 20).astype(int))


def test_standard_library_objects_need_no_distribution():
    assert pickled_modules(OrderedDict(a=Decimal("1.5"))) >= {"collections", "decimal"}
    assert requirements(OrderedDict(a=Decimal("1.5"))) == []


def test_a_fitted_estimator_needs_its_libraries_pinned_to_the_installed_versions():
    found = requirements(_fitted())
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in found
    assert f"numpy=={metadata.version('numpy')}" in found


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_modules_are_read_from_every_protocol_through_the_memo(protocol):
    # the same class twice: protocol 4+ names its module once and fetches it from the memo
    data = pickle.dumps([Decimal("1"), Decimal("2"), OrderedDict()], protocol=protocol)
    assert {"decimal", "collections"} <= stream_modules(data)


def test_locally_installed_distributions_are_left_out():
    # the project itself is installed from its checkout (editable): no index could supply it
    from airflow_mlpipe.config.deploy import TargetSpec

    assert "airflow_mlpipe.config.deploy" in pickled_modules(TargetSpec())
    assert "airflow-mlpipe" not in distributions(["airflow_mlpipe"])
    assert distributions(["airflow_mlpipe", "os"]) == {}


_DILL_FIRST = textwrap.dedent(
    """
    import dill  # imported before joblib, as Airflow's task process does (airflow.models)
    import io, sys, joblib, numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder
    from airflow_mlpipe.deploy.pickle_deps import requirements
    X = np.array([[i % 3, i] for i in range(20)], dtype=float)
    # a fitted ColumnTransformer keeps slices (output_indices_): dill pickles slices its own way
    prepare = ColumnTransformer([("c", OneHotEncoder(), [0])], remainder="passthrough")
    model = Pipeline([("prepare", prepare), ("model", LogisticRegression())])
    model.fit(X, (X[:, 1] > 10).astype(int))
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    sys.stdout.buffer.write(buffer.getvalue())
    sys.stderr.write(" ".join(requirements(model)))
    """
)

_LOAD_WITHOUT_DILL = textwrap.dedent(
    """
    import sys
    sys.modules["dill"] = None  # an environment without dill, like an image of the declared packages
    import io, joblib
    joblib.load(io.BytesIO(sys.stdin.buffer.read()))
    """
)


def test_dill_imported_before_joblib_is_declared_because_the_dump_needs_it():
    dumped = subprocess.run([sys.executable, "-c", _DILL_FIRST], capture_output=True, check=True, timeout=300)
    declared = dumped.stderr.decode().split()
    assert any(r.startswith("dill==") for r in declared), declared
    # the guard matters: without dill installed, the model cannot be loaded
    loaded = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_DILL], input=dumped.stdout, capture_output=True, timeout=300
    )
    assert loaded.returncode != 0 and b"dill" in loaded.stderr, loaded.stderr[-2000:]


def test_stream_modules_stops_at_the_end_of_the_pickle():
    data = pickle.dumps(Decimal("3"), protocol=4) + b"\xffraw bytes after STOP are no opcodes"
    assert stream_modules(data) == {"decimal"}
