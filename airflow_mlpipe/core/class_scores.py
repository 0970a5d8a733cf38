"""Class probabilities next to the predicted labels: one definition for online and batch serving,
and the per-row scoring of the served model's batches.

Copied beside the service into every bento (as ``mlpipe_scores.py``) and imported by batch
scoring, so ``scores`` means the same number in both. It imports only numpy (which the model's
arrays are): it calls the model's ``predict`` / ``predict_proba``, reads ``classes_`` and slices
frames.
"""

from __future__ import annotations

from typing import Any


def proba_model(model: Any) -> Any | None:
    """The object with ``predict_proba`` and ``classes_`` behind ``model`` (an estimator, a
    pipeline, or an MLflow pyfunc wrapping one), or ``None`` when it has no probabilities."""
    candidates = [model]
    raw = getattr(model, "get_raw_model", None)
    if callable(raw):
        try:
            candidates.append(raw())
        except Exception:  # a pyfunc without a raw model: labels only
            pass
    for candidate in candidates:
        # hasattr is False for a pipeline whose last step has no predict_proba (available_if)
        if hasattr(candidate, "predict_proba") and hasattr(candidate, "classes_"):
            return candidate
    return None


#: scikit-learn classifiers whose ``predict`` is the class of the highest ``predict_proba`` wherever
#: that is unique: the trees and boosting by definition (first on ties), logistic regression
#: because its probabilities are a monotone map of the decision values ``predict`` takes the
#: highest of (a sigmoid, a softmax). Their labels need no second pass over the model; a row whose
#: two highest probabilities are equal goes through ``predict``, which may break the tie otherwise.
_LABELS_ARE_ARGMAX = frozenset(
    {
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.linear_model._logistic.LogisticRegression",
    }
)


def labels_are_argmax(model: Any) -> bool:
    """Whether ``model``'s predicted labels are the classes of its highest probabilities (where
    that is unique): one of the classifiers listed above (the exact class, not a subclass that may
    override ``predict``), with one output, alone or as a scikit-learn pipeline's last step."""
    final = model
    if f"{type(model).__module__}.{type(model).__qualname__}" == "sklearn.pipeline.Pipeline":
        final = model.steps[-1][1]
    name = f"{type(final).__module__}.{type(final).__qualname__}"
    return name in _LABELS_ARE_ARGMAX and getattr(final, "n_outputs_", 1) == 1


def reads_its_input(model: Any) -> bool:
    """Whether ``model`` is one of the classifiers listed above on its own (no pipeline): what it
    computes on is the values it is given."""
    return labels_are_argmax(model) and not hasattr(model, "steps")


def predict_with_probabilities(model: Any, frame: Any) -> tuple[Any, tuple[list[Any], Any] | None]:
    """``model.predict(frame)`` and :func:`class_probabilities` (``None`` without probabilities),
    with one pass over the model when :func:`labels_are_argmax`: the labels are read off the
    probabilities, and only rows with a tie at the top go through ``predict``."""
    estimator = proba_model(model)
    if estimator is None:
        return model.predict(frame), None
    found = _probabilities(estimator, frame)
    if not labels_are_argmax(model):
        return model.predict(frame), found
    top, tied = _highest(found[1])
    labels = estimator.classes_.take(top)
    if tied.any():
        labels[tied] = model.predict(frame[tied])
    return labels, found


def _highest(proba: Any) -> tuple[Any, Any]:
    """Per row of ``proba``, the column of the highest value (the first on ties) and whether
    another column ties with it, or a value is NaN (such a row is not decided here); column by
    column, as argmax does it, and the ties in the same pass."""
    import numpy as np

    best = proba[:, 0]
    top = np.zeros(len(proba), dtype=np.intp)
    for column in range(1, proba.shape[1]):
        values = proba[:, column]
        top += (values > best) * (column - top)  # (copyto or where with a mask is ~5x slower)
        best = np.maximum(best, values)
    seen = np.zeros(len(proba), dtype=bool)
    tied = np.zeros(len(proba), dtype=bool)
    for column in range(proba.shape[1]):
        values = proba[:, column]
        at_best = values == best
        tied |= (seen & at_best) | (values != values)
        seen |= at_best
    return top, tied


def predictions_and_scores(model: Any, frame: Any, classifier: bool) -> tuple[list[Any], dict[str, Any]]:
    """The predicted labels (or values) of ``frame`` as a list, and :func:`found_scores` when
    ``classifier`` (see :func:`predict_with_probabilities`)."""
    predictions, found = (
        predict_with_probabilities(model, frame) if classifier else (model.predict(frame), None)
    )
    return predictions.tolist() if hasattr(predictions, "tolist") else list(predictions), found_scores(found)


def class_scores(model: Any, frame: Any) -> dict[str, Any]:
    """:func:`found_scores` of ``model``'s class probabilities for ``frame``."""
    return found_scores(class_probabilities(model, frame))


def found_scores(found: tuple[list[Any], Any] | None) -> dict[str, Any]:
    """:func:`class_probabilities`' answer as the answer's fields: ``{"classes", "probabilities"}``
    (per row, ordered as ``classes``) and, for two classes, ``"scores"`` (the probability of
    ``classes[1]``, the positive class); ``{}`` without probabilities."""
    if found is None:
        return {}
    classes, proba = found
    return scores_of(classes, proba.tolist() if hasattr(proba, "tolist") else [list(r) for r in proba])


def class_probabilities(model: Any, frame: Any) -> tuple[list[Any], Any] | None:
    """The model's classes and ``predict_proba`` of ``frame`` as the model returns it (an array, a
    row per row of ``frame``, a column per class); ``None`` when the model has no probabilities."""
    estimator = proba_model(model)
    return None if estimator is None else _probabilities(estimator, frame)


def _probabilities(estimator: Any, frame: Any) -> tuple[list[Any], Any]:
    """:func:`class_probabilities` of the estimator :func:`proba_model` found."""
    classes = [c.item() if hasattr(c, "item") else c for c in estimator.classes_]
    return classes, estimator.predict_proba(frame)


def positive_class(classes: list[Any]) -> int | None:
    """The index of the positive class, whose probability is ``scores``: ``1`` when there are two
    classes, else ``None`` (no ``scores``)."""
    return 1 if len(classes) == 2 else None


def scores_of(classes: list[Any], probabilities: list[list[float]]) -> dict[str, Any]:
    """The answer's class-score fields from ``classes`` and per-row ``probabilities`` (ordered as
    ``classes``): also how the batched service joins the rows of one request back together."""
    out: dict[str, Any] = {"classes": classes, "probabilities": probabilities}
    positive = positive_class(classes)
    if positive is not None:
        out["scores"] = [r[positive] for r in probabilities]
    return out


def score_rows(model: Any, frame: Any, classifier: bool) -> list[dict[str, Any]]:
    """Per row of ``frame``: ``{"prediction", "probabilities", "classes"}`` (the last two ``None``
    without class probabilities), or ``{"error"}`` for a row the model raises on.

    A batch holds the rows of several requests, so one row the model cannot score must not fail
    the others: on an exception the frame is halved until the failing rows stand alone (a few extra
    model calls, and only when something failed).
    """
    try:
        values, scores = predictions_and_scores(model, frame, classifier)
    except Exception as exc:  # whatever the model raises, the other rows still get answers
        if len(frame) == 1:
            return [{"error": f"{type(exc).__name__}: {exc}"}]
        half = len(frame) // 2
        return score_rows(model, frame.iloc[:half], classifier) + score_rows(
            model, frame.iloc[half:], classifier
        )
    probabilities, classes = scores.get("probabilities"), scores.get("classes")
    return [
        {
            "prediction": value,
            "probabilities": probabilities[i] if probabilities else None,
            "classes": classes,
        }
        for i, value in enumerate(values)
    ]
