"""The stream model calls a scikit-learn estimator on the frame's array only when the answers are
the frame's: a plain estimator does; a pipeline that reads columns by name does not."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

NAMES = ["a", "b", "c"]


def _stream_model(estimator: Any, names: list[str] = NAMES, **kwargs: Any) -> Any:
    import pandas as pd

    from airflow_mlpipe._serving.stream import BentoStreamModel

    inputs = [{"name": n, "type": "double"} for n in names]
    module = SimpleNamespace(
        to_frame=lambda rows, cols: pd.DataFrame(rows, columns=[c["name"] for c in cols])
    )
    service = SimpleNamespace(
        model=estimator,
        identity={"model_name": "m", "model_version": "1", "fingerprint": None},
        reader=None,
        inputs=inputs,
        config={"framework": "sklearn"},
    )
    return BentoStreamModel(module, service, **kwargs)


def _data() -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=NAMES)
    y = (X["a"] + 2 * X["b"] - X["c"] > 0).astype(int)
    return X, y


def _expected(estimator: Any, rows: list[dict[str, float]]) -> list[tuple[Any, float]]:
    """The model's answers for the frame the service builds of ``rows`` (a binary model: the
    positive class's probability)."""
    import pandas as pd

    X = pd.DataFrame(rows, columns=NAMES)
    labels = estimator.predict(X).tolist()
    return list(zip(labels, estimator.predict_proba(X)[:, 1].tolist(), strict=True))


def _reorder_named(X: Any) -> Any:
    # Reads columns by name from a frame; an array passes through in its own order.
    return X[["c", "b", "a"]] if hasattr(X, "columns") else X


@pytest.mark.parametrize(
    ("kind", "uses_array"),
    [("plain", True), ("by-name", False), ("named-selector", False)],
)
def test_array_only_when_answers_are_identical(kind, uses_array):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    X, y = _data()
    if kind == "plain":
        estimator = LogisticRegression()
    elif kind == "by-name":  # silently different on an array: only the comparison catches it
        estimator = make_pipeline(FunctionTransformer(_reorder_named), LogisticRegression())
    else:  # raises on an array
        estimator = make_pipeline(
            ColumnTransformer([("s", StandardScaler(), ["c", "a", "b"])]), LogisticRegression()
        )
    estimator.fit(X, y)
    model = _stream_model(estimator)
    rows = X.to_dict(orient="records")
    for start in range(0, 200, 50):
        batch = rows[start : start + 50]
        assert model.predict(batch) == _expected(estimator, batch)
    assert model._array is uses_array


def test_without_the_comparison_a_name_reading_pipeline_answers_wrongly():
    """The guard's reason: skip the first-batch comparison and the array path gives other answers."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = _data()
    estimator = make_pipeline(FunctionTransformer(_reorder_named), LogisticRegression()).fit(X, y)
    model = _stream_model(estimator)
    model._array = True  # as if the comparison had passed
    rows = X.to_dict(orient="records")
    assert model.predict(rows) != _expected(estimator, rows)


@pytest.mark.parametrize("column_major", [False, True], ids=["c-order-frame", "f-order-frame"])
def test_after_the_first_batch_no_frame_is_built(column_major):
    """Once the first batch showed the array's answers are the frame's, each batch's array is built
    from its rows directly (in the memory order of the frame's array, which can change the last bit
    of a probability), and the answers stay the frame's."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    X, y = _data()
    estimator = LogisticRegression().fit(X, y)
    model = _stream_model(estimator)
    frames = []

    def frame_of(rows: list[dict[str, float]]) -> Any:
        block = np.array([[r[n] for n in NAMES] for r in rows])
        return pd.DataFrame(np.asfortranarray(block) if column_major else block, columns=NAMES, copy=False)

    def to_frame(rows: list[dict[str, float]], cols: list[dict[str, Any]]) -> Any:
        frames.append(frame_of(rows))
        return frames[-1]

    model.module.to_frame = to_frame
    rows = X.to_dict(orient="records")
    for start in range(0, 200, 50):
        batch = rows[start : start + 50]
        frame = frame_of(batch)
        labels = estimator.predict(frame).tolist()
        proba = estimator.predict_proba(frame)
        assert model.predict(batch) == [(p, float(proba[i, 1])) for i, p in enumerate(labels)]
    assert model._array is True and len(frames) == 1


def test_binary_gives_the_positive_class_score_multiclass_the_predicted_class_probability():
    """Two classes: ``score`` is P(classes[1]) whatever is predicted — the HTTP service's ``scores``
    (:func:`class_scores`), not the predicted class's probability; more classes: ``probability``
    of the predicted class; no probabilities asked: none."""
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from airflow_mlpipe.core.class_scores import class_scores

    X, y = _data()
    binary = LogisticRegression().fit(X, y)
    model = _stream_model(binary)
    rows = X.to_dict(orient="records")
    answers = model.predict(rows)
    assert model.score_field == "score"
    assert [s for _, s in answers] == pytest.approx(class_scores(binary, X)["scores"], rel=1e-12)
    negatives = [s for p, s in answers if p == 0]
    assert negatives and all(s < 0.5 for s in negatives)  # not the predicted class's probability

    iris = load_iris(as_frame=True).frame
    names = [c for c in iris.columns if c != "target"]
    multi = LogisticRegression(max_iter=1000).fit(iris[names], iris["target"])
    model = _stream_model(multi, names)
    answers = model.predict(iris[names].to_dict(orient="records"))
    proba = multi.predict_proba(iris[names])
    assert model.score_field == "probability"
    assert [p for p, _ in answers] == multi.predict(iris[names]).tolist()
    assert np.allclose([s for _, s in answers], proba.max(axis=1))

    model = _stream_model(binary, probabilities=False)
    assert model.score_field is None
    assert [s for _, s in model.predict(rows[:5])] == [None] * 5
