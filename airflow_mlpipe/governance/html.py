"""The audit record as one self-contained HTML page: inline CSS and SVG, no scripts, no external
assets, so it renders offline and can be archived as one file."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#1d2330;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #dde3ee;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{border:1px solid #dde3ee;padding:.3em .5em;
text-align:left;vertical-align:top}th{background:#f3f5fa}code,pre{font:12px ui-monospace,monospace}
pre{white-space:pre-wrap;word-break:break-all;margin:0}.ok{color:#176b2c;font-weight:600}
.bad{color:#b3261e;font-weight:700}.muted{color:#6b7385}.banner{padding:.6em 1em;border-radius:6px;margin:1em 0}
.banner.ok{background:#e6f4ea}.banner.bad{background:#fce8e6}
"""


def _e(value: Any) -> str:
    if value is None or value == "":
        return '<span class="muted">—</span>'
    if isinstance(value, (dict, list)):
        return f"<pre>{html.escape(json.dumps(value, indent=1, sort_keys=True, default=str))}</pre>"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], raw: Sequence[int] = ()) -> str:
    body = "".join(
        "<tr>" + "".join(f"<td>{c if i in raw else _e(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    if not body:
        return '<p class="muted">none recorded</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pairs(mapping: Mapping[str, Any]) -> str:
    return _table(("key", "value"), sorted(mapping.items()))


def _status(text: str) -> str:
    css = "ok" if text in ("ok", "match", "true") else ("muted" if text == "not recorded" else "bad")
    return f'<span class="{css}">{html.escape(text)}</span>'


def metrics_chart(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """Inline SVG bars: challenger versus champion for each gate metric."""
    challenger, champion = metrics.get("challenger") or {}, metrics.get("champion") or {}
    names = sorted(set(challenger) | set(champion))
    if not names:
        return ""
    values = [abs(float(v)) for m in (challenger, champion) for v in m.values()]
    top = max(values) or 1.0
    row, width, label = 34, 360, 150
    parts = []
    for i, name in enumerate(names):
        y = i * row + 6
        parts.append(f'<text x="0" y="{y + 17}" font-size="12">{html.escape(name)}</text>')
        for j, (role, colour) in enumerate((("challenger", "#3b6fd8"), ("champion", "#9aa3b5"))):
            value = (challenger if role == "challenger" else champion).get(name)
            if value is None:
                continue
            w = max(1.0, width * abs(float(value)) / top)
            yy = y + j * 13
            parts.append(f'<rect x="{label}" y="{yy}" width="{w:.1f}" height="11" fill="{colour}"/>')
            parts.append(
                f'<text x="{label + w + 4:.1f}" y="{yy + 10}" font-size="11">{role} {value:.4g}</text>'
            )
    height = len(names) * row + 10
    return f'<svg role="img" width="{label + width + 160}" height="{height}">' + "".join(parts) + "</svg>"


def render(report: Mapping[str, Any]) -> str:
    """The HTML page of an audit record (:func:`airflow_mlpipe.governance.audit.collect`)."""
    m, data, feats, train, gate = (report[k] for k in ("model", "data", "features", "training", "gate"))
    tampered = report.get("tampered") or []
    repro = report.get("reproduction") or {}
    title = f"Audit: {m['name']} version {m['version']}"
    banner = (
        f'<div class="banner bad">Integrity: {len(tampered)} record(s) changed after the fact: '
        f"{_e(', '.join(tampered))}</div>"
        if tampered
        else '<div class="banner ok">Integrity: every recorded digest matches what it describes.</div>'
    )
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">generated {_e(report.get("generated_at"))} · registered {_e(m.get("registered_at"))}'
        f" · aliases {_e(', '.join(m.get('aliases') or []))} · code {_e(report.get('code_version'))}</p>",
        banner,
        "<h2>Why this version was trained</h2>",
        _table(
            ("asset", "time", "from", "drift share", "drifted columns", "reasons"),
            (
                (
                    e["asset"],
                    e["timestamp"],
                    f"{e.get('dag_id')}.{e.get('task_id')}",
                    e["extra"].get("drift_share"),
                    e["extra"].get("drifted_columns"),
                    e["extra"].get("retrain_reasons"),
                )
                for e in report.get("triggered_by") or []
            ),
        ),
        "<h2>Data</h2>",
        _pairs(
            {
                "source": data.get("uri"),
                "source digest": data.get("digest"),
                "snapshot": (data.get("snapshot") or {}).get("uri"),
                "snapshot digest": (data.get("snapshot") or {}).get("digest"),
            }
        ),
        "<h3>Batches and validation</h3>",
        _table(
            ("asset", "time", "task", "result"),
            ((e["asset"], e["timestamp"], e["task_id"], e["extra"]) for e in data.get("batches") or []),
        ),
        "<h2>Features</h2>",
        _pairs(
            {
                "feature service": feats.get("service"),
                "service version": feats.get("service_version"),
                "columns": ", ".join(map(str, feats.get("columns") or [])),
            }
        ),
        _table(
            ("definitions", "digest", "time"),
            (
                (e["extra"].get("definitions"), e["extra"].get("digest"), e["timestamp"])
                for e in feats.get("definitions") or []
            ),
        ),
        "<h2>Training</h2>",
        _pairs({"run": train["run"].get("run_id"), "specification": train.get("specification")}),
        "<h3>Parameters</h3>",
        _pairs(train["run"].get("params") or {}),
        "<h3>Metrics</h3>",
        _pairs(train["run"].get("metrics") or {}),
        "<h3>Environment</h3>",
        _pairs(train.get("environment") or {}),
        "<h2>Evaluation gate</h2>",
        _pairs(
            {
                "blessed": gate.get("blessed"),
                "compared with champion": gate.get("champion_version"),
                "holdout": gate.get("holdout_uri"),
                "holdout snapshot": (gate.get("holdout_snapshot") or {}).get("uri"),
                "report": gate.get("report_uri"),
            }
        ),
        metrics_chart(gate.get("metrics") or {}),
        _table(
            ("criterion", "metric", "observed", "threshold", "passed"),
            (
                (
                    c.get("name"),
                    c.get("metric"),
                    c.get("observed"),
                    f"{c.get('op', '')} {c.get('threshold', '')}",
                    _status(str(c.get("passed")).lower()),
                )
                for c in gate.get("criteria") or []
            ),
            raw=(4,),
        ),
        "<h3>Approval</h3>",
        _table(
            ("task", "responded by", "choice", "at"),
            (
                (a["task_id"], a["responded_by"], a["chosen"], a["responded_at"])
                for a in report.get("approvals") or []
            ),
        )
        if report.get("approvals")
        else '<p class="muted">no approval step: promotion followed the gate automatically</p>',
        "<h2>Promotion, rollouts and rollbacks</h2>",
        _pairs(report.get("lifecycle") or {}),
        _table(
            ("time", "task", "status", "endpoint", "reason"),
            (
                (
                    e["timestamp"],
                    e["task_id"],
                    e["extra"].get("status"),
                    e["extra"].get("endpoint"),
                    e["extra"].get("reason"),
                )
                for e in report.get("deployments") or []
            ),
        ),
        "<h2>Drift while serving</h2>",
        f'<p class="muted">served from {_e(report["served"].get("from"))} until '
        f"{_e(report['served'].get('until') or 'now')}"
        + (
            f" (replaced by v{_e(report['served']['replaced_by'])})"
            if report["served"].get("replaced_by")
            else ""
        )
        + "</p>",
        _table(
            ("time", "drift share", "drifted columns", "report"),
            (
                (
                    e["timestamp"],
                    e["extra"].get("drift_share"),
                    e["extra"].get("drifted_columns"),
                    e["extra"].get("report_uri"),
                )
                for e in report.get("drift_while_serving") or []
            ),
        ),
        "<h2>Reproduction</h2>",
        (
            _pairs(
                {
                    "result": "match" if repro.get("match") else "mismatch",
                    "at": repro.get("at"),
                    "comparison": repro.get("comparison"),
                    "differences": repro.get("differences"),
                }
            )
            if repro
            else '<p class="muted">not reproduced yet (mlpipe reproduce)</p>'
        ),
        "<h2>Integrity</h2>",
        _table(
            ("record", "location", "recorded digest", "digest now", "status"),
            (
                (c["record"], c["uri"], c["recorded"], c["actual"], _status(c["status"]))
                for c in report["integrity"]
            ),
            raw=(4,),
        ),
    ]
    if report.get("airflow_error"):
        sections.append(f'<p class="muted">Airflow: {_e(report["airflow_error"])}</p>')
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>"
    )
