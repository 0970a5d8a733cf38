"""Class probabilities next to the predicted labels: one definition for online and batch serving.

Copied beside the service into every bento (as ``mlpipe_scores.py``) and imported by batch
scoring, so ``scores`` means the same number in both. It imports nothing: it only calls the
model's ``predict_proba`` and reads ``classes_``.
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


def class_scores(model: Any, frame: Any) -> dict[str, Any]:
    """``{"classes", "probabilities"}`` (per row, ordered as ``classes``) and, for two classes,
    ``"scores"`` (the probability of ``classes[1]``, the positive class); ``{}`` without probabilities.
    """
    found = proba_model(model)
    if found is None:
        return {}
    proba = found.predict_proba(frame)
    classes = [c.item() if hasattr(c, "item") else c for c in found.classes_]
    rows = proba.tolist() if hasattr(proba, "tolist") else [list(r) for r in proba]
    out: dict[str, Any] = {"classes": classes, "probabilities": rows}
    if len(classes) == 2:
        out["scores"] = [r[1] for r in rows]
    return out
