"""The human-readable gate report: one self-contained HTML file with embedded PNG plots.

Plots are drawn with matplotlib's object API (``Figure`` + Agg), never ``pyplot``: no global
backend state, safe in worker threads and without a display.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core.conventions import TaskType
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.metrics import class_labels, positive_class

if TYPE_CHECKING:
    from airflow_mlpipe.evaluation.criteria import Scored
    from airflow_mlpipe.evaluation.gate import GateOutcome

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.pass{color:#0a7d28;font-weight:600}.fail{color:#b00020;font-weight:600}
.banner{padding:12px;border-radius:6px;font-size:1.3em}.ok{background:#e3f6e8}.no{background:#fde7ea}
img{max-width:520px;margin:6px;border:1px solid #eee}
"""


def _figure(width: float = 5.0, height: float = 4.0) -> Any:
    figure_mod = require("matplotlib.figure")
    return figure_mod.Figure(figsize=(width, height), dpi=90)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    # Fixed margins: tight_layout costs a third of the rendering time for no visible gain here.
    fig.subplots_adjust(left=0.14, bottom=0.13, right=0.97, top=0.9)
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def _models(outcome: GateOutcome) -> list[tuple[str, Scored]]:
    ev = outcome.evidence
    out = [(f"challenger v{ev.challenger.version}", ev.challenger)]
    if ev.champion is not None:
        out.append((f"champion v{ev.champion.version}", ev.champion))
    return out


def _classification_plots(outcome: GateOutcome) -> list[tuple[str, str]]:
    skm = require("sklearn.metrics")
    np = require("numpy")
    ev = outcome.evidence
    plots: list[tuple[str, str]] = []
    labels = class_labels(ev.y_true, ev.challenger.preds)
    with_proba = [(n, s) for n, s in _models(outcome) if s.preds.proba is not None and s.preds.classes]
    if with_proba and len(labels) <= 2 and len(np.unique(ev.y_true)) == 2:
        pos = positive_class(labels, ev.positive_label)
        roc, pr = _figure(), _figure()
        ax_roc, ax_pr = roc.add_subplot(), pr.add_subplot()
        for name, s in with_proba:
            assert s.preds.proba is not None and s.preds.classes is not None
            score = s.preds.proba[:, list(s.preds.classes).index(pos)]
            fpr, tpr, _ = skm.roc_curve(ev.y_true == pos, score)
            ax_roc.plot(fpr, tpr, label=name)
            prec, rec, _ = skm.precision_recall_curve(ev.y_true == pos, score)
            ax_pr.plot(rec, prec, label=name)
        ax_roc.plot([0, 1], [0, 1], ls="--", c="grey")
        ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
        ax_pr.set(xlabel="recall", ylabel="precision", title=f"Precision-recall (positive: {pos})")
        ax_roc.legend(), ax_pr.legend()
        plots += [("ROC curve", _png(roc)), ("Precision-recall curve", _png(pr))]
    elif with_proba:
        name, s = with_proba[0]
        assert s.preds.proba is not None and s.preds.classes is not None
        fig = _figure()
        ax = fig.add_subplot()
        for i, cls in enumerate(s.preds.classes):
            truth = ev.y_true == cls
            if 0 < truth.sum() < len(truth):
                fpr, tpr, _ = skm.roc_curve(truth, s.preds.proba[:, i])
                ax.plot(fpr, tpr, label=f"class {cls}")
        ax.plot([0, 1], [0, 1], ls="--", c="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC one-vs-rest, {name}")
        ax.legend()
        plots.append(("ROC curves (one-vs-rest)", _png(fig)))
    for name, s in _models(outcome):
        matrix = skm.confusion_matrix(ev.y_true, s.preds.y_pred, labels=labels)
        fig = _figure(4.5, 4.0)
        ax = fig.add_subplot()
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), [str(x) for x in labels])
        ax.set_yticks(range(len(labels)), [str(x) for x in labels])
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(v), ha="center", va="center")
        ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix, {name}")
        plots.append((f"Confusion matrix ({name})", _png(fig)))
    return plots


def _regression_plots(outcome: GateOutcome) -> list[tuple[str, str]]:
    ev = outcome.evidence
    y = ev.y_true.astype(float)
    scatter, resid = _figure(), _figure()
    ax_s, ax_r = scatter.add_subplot(), resid.add_subplot()
    for name, s in _models(outcome):
        ax_s.scatter(y, s.preds.y_pred, s=8, alpha=0.6, label=name)
        ax_r.scatter(s.preds.y_pred, y - s.preds.y_pred, s=8, alpha=0.6, label=name)
    lo, hi = float(y.min()), float(y.max())
    ax_s.plot([lo, hi], [lo, hi], ls="--", c="grey")
    ax_s.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
    ax_r.axhline(0, ls="--", c="grey")
    ax_r.set(xlabel="predicted", ylabel="residual (actual - predicted)", title="Residuals")
    ax_s.legend(), ax_r.legend()
    return [("Predicted vs actual", _png(scatter)), ("Residuals", _png(resid))]


def _slice_plots(outcome: GateOutcome) -> list[tuple[str, str]]:
    plots = []
    seen = set()
    for r in outcome.results:
        values = r.details.get("values") if r.kind == "slice" else None
        key = r.name.rsplit(".", 1)[0]
        if not values or key in seen:
            continue
        seen.add(key)
        fig = _figure(5.5, 3.5)
        ax = fig.add_subplot()
        names = list(values)
        ax.bar(names, [values[n] for n in names], color="#5b8def")
        for other in outcome.results:
            if other.name == f"{key}.bound" and isinstance(other.threshold, (int, float)):
                ax.axhline(other.threshold, ls="--", c="#b00020", label=f"{other.op} {other.threshold}")
                ax.legend()
        ax.set(title=f"{r.metric} by {r.details['column']}", ylabel=str(r.metric))
        plots.append((f"{r.metric} per slice of {r.details['column']}", _png(fig)))
    return plots


def render(outcome: GateOutcome) -> str:
    """The report as one HTML document (plots embedded as base64 PNG)."""
    e = html.escape
    summary = outcome.summary(report_uri="")
    verdict = "BLESSED" if outcome.blessed else "NOT BLESSED"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Evaluation of {e(outcome.model_name)} "
        f"v{e(outcome.challenger_version)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Evaluation gate: {e(outcome.model_name)} v{e(outcome.challenger_version)}</h1>",
        f"<div class='banner {'ok' if outcome.blessed else 'no'}'>{verdict}</div>",
        f"<p>Task: {e(outcome.task_type)} · label <code>{e(outcome.label)}</code> · holdout "
        f"<code>{e(outcome.holdout_uri)}</code> ({summary['row_count']} rows) · champion: "
        f"{e('v' + outcome.champion_version if outcome.champion_version else 'none')}</p>",
    ]
    if outcome.evidence.champion_note:
        parts.append(f"<p><em>{e(outcome.evidence.champion_note)}</em></p>")
    parts.append(
        "<h2>Criteria</h2><table><tr><th>criterion</th><th>observed</th><th>threshold</th>"
        "<th>result</th><th>why</th></tr>"
    )
    for r in outcome.results:
        observed = "n/a" if r.observed is None else f"{r.observed:.4g}"
        threshold = "" if r.threshold is None else f"{r.op} {r.threshold}"
        cls, word = ("pass", "pass") if r.passed else ("fail", "FAIL")
        parts.append(
            f"<tr><td>{e(r.name)}</td><td>{observed}</td><td>{e(threshold)}</td>"
            f"<td class='{cls}'>{word}</td><td>{e(r.reason)}</td></tr>"
        )
    parts.append(
        "</table><h2>Metrics</h2><table><tr><th>metric</th><th>challenger</th><th>champion</th></tr>"
    )
    metrics = summary["metrics"]
    unavailable = summary["unavailable_metrics"]
    names = list(metrics["challenger"]) + [
        m for m in unavailable["challenger"] if m not in metrics["challenger"]
    ]
    for m in names:
        ch = metrics["challenger"].get(m)
        cp = (metrics["champion"] or {}).get(m)
        ch_txt = f"{ch:.4g}" if ch is not None else e(unavailable["challenger"].get(m, "n/a"))
        cp_txt = f"{cp:.4g}" if cp is not None else ("" if metrics["champion"] is None else "n/a")
        parts.append(f"<tr><td>{e(m)}</td><td>{ch_txt}</td><td>{cp_txt}</td></tr>")
    parts.append("</table><h2>Plots</h2>")
    kind = TaskType.parse(outcome.task_type)
    plots = _classification_plots(outcome) if kind is TaskType.CLASSIFICATION else _regression_plots(outcome)
    plots += _slice_plots(outcome)
    for title, data in plots:
        parts.append(
            f"<figure><img alt='{e(title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(title)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
