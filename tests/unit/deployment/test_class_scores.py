"""Class probabilities beside the labels: the one definition used by the service and batch scoring."""

from __future__ import annotations

import numpy as np
import pytest

from airflow_mlpipe.core.class_scores import class_scores


def _data(classes):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = np.array(classes)[(x[:, 0] > 0).astype(int) + (len(classes) > 2) * (x[:, 1] > 0)]
    return x, y


def test_binary_classifier_gets_positive_class_scores():
    from sklearn.linear_model import LogisticRegression

    x, y = _data(["stay", "churn"])
    model = LogisticRegression().fit(x, y)
    out = class_scores(model, x[:5])
    assert out["classes"] == ["churn", "stay"]  # scikit-learn's sorted order; scores = P(classes[1])
    assert out["scores"] == pytest.approx(model.predict_proba(x[:5])[:, 1].tolist())
    assert all(sum(row) == pytest.approx(1.0) for row in out["probabilities"])


def test_multiclass_has_probabilities_only_and_labels_without_proba_have_none():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    x, y = _data([0, 1, 2])
    multi = make_pipeline(StandardScaler(), SVC(probability=True, random_state=0)).fit(x, y)
    out = class_scores(multi, x[:4])
    assert out["classes"] == [0, 1, 2] and "scores" not in out
    assert np.array(out["probabilities"]).shape == (4, 3)
    # a pipeline whose last step has no predict_proba answers labels only
    assert class_scores(make_pipeline(StandardScaler(), LinearSVC()).fit(x, y), x[:4]) == {}
