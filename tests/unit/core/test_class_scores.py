"""Labels taken from the class probabilities are exactly ``predict``'s, and only where that holds."""

from __future__ import annotations

import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from airflow_mlpipe.core.class_scores import (
    labels_are_argmax,
    predict_with_probabilities,
    predictions_and_scores,
)


class Thresholded(RandomForestClassifier):
    """A subclass may define ``predict`` its own way: not the class of the highest probability."""

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 0] > 0.9).astype(int)]


@pytest.mark.parametrize(
    "model",
    [
        RandomForestClassifier(n_estimators=10, random_state=0),
        HistGradientBoostingClassifier(max_iter=10),
        DecisionTreeClassifier(max_depth=2),
        make_pipeline(StandardScaler(), ExtraTreesClassifier(n_estimators=5, random_state=0)),
        LogisticRegression(max_iter=500),
        Thresholded(n_estimators=10, random_state=0),
    ],
)
def test_labels_equal_predict(model):
    X, y = load_iris(return_X_y=True, as_frame=True)
    model.fit(X, y)
    labels, scores = predictions_and_scores(model, X, True)
    assert labels == model.predict(X).tolist()
    assert scores["classes"] == [0, 1, 2]


def test_only_listed_classifiers_skip_predict():
    assert labels_are_argmax(RandomForestClassifier())
    assert labels_are_argmax(make_pipeline(StandardScaler(), HistGradientBoostingClassifier()))
    assert labels_are_argmax(LogisticRegression())
    assert not labels_are_argmax(Thresholded())
    assert not labels_are_argmax(make_pipeline(StandardScaler(), Thresholded()))


def test_a_tie_at_the_top_goes_to_predict():
    """Binary logistic regression: a decision value of 1e-20 is positive (``predict`` says the
    positive class) while its probability rounds to exactly 0.5 on both sides (argmax says the
    first class). Only such rows are handed to ``predict``."""
    import numpy as np
    import pandas as pd

    model = LogisticRegression().fit(pd.DataFrame({"x": [-1.0, 1.0]}), ["no", "yes"])
    model.coef_, model.intercept_ = np.array([[1.0]]), np.array([0.0])
    X = pd.DataFrame({"x": [1e-20, -1e-20, 3.0, -3.0]})
    proba = model.predict_proba(X)
    assert proba[0, 0] == proba[0, 1] == 0.5  # a tie, which argmax alone gets wrong
    assert model.classes_[proba.argmax(axis=1)].tolist()[0] == "no"
    calls = []
    predict = model.predict
    model.predict = lambda frame: calls.append(len(frame)) or predict(frame)
    labels, found = predict_with_probabilities(model, X)
    assert labels.tolist() == predict(X).tolist() == ["yes", "no", "yes", "no"]
    assert calls == [2]  # the two tied rows, nothing else
    assert found is not None and found[0] == ["no", "yes"]


def test_a_nan_probability_leaves_the_row_to_predict():
    import numpy as np

    from airflow_mlpipe.core.class_scores import _highest

    proba = np.array([[0.2, 0.8], [np.nan, 0.5], [0.5, np.nan], [0.7, 0.3], [0.4, 0.4]])
    top, undecided = _highest(proba)
    assert top[[0, 3]].tolist() == [1, 0]
    assert undecided.tolist() == [False, True, True, False, True]
