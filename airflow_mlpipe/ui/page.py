"""The Models page as server-rendered HTML: tables, an inline SVG timeline and an SVG lineage graph.

No build step and nothing fetched from the network: the page is one HTML document with its CSS and
a few lines of script. Actions call Airflow's own REST API from the browser (same origin, the
session cookie), so answering an approval or starting a rollback run is authorised and audited by
Airflow exactly like the same action in Airflow's own pages.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from airflow_mlpipe.core.links import audit_url
from airflow_mlpipe.ui.lineage import task_page
from airflow_mlpipe.ui.loop import Approval, Batch, ModelLoop

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.2rem;color:#1a202c;background:#fff}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:1.8rem;border-bottom:1px solid #e2e8f0}
table{border-collapse:collapse;margin:.4rem 0;font-size:.9rem}
th,td{border:1px solid #e2e8f0;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#f7fafc}.ok{color:#276749;font-weight:600}.bad{color:#c53030;font-weight:600}
.alias{display:inline-block;border-radius:.6rem;padding:0 .5rem;margin:0 .15rem;background:#ebf4ff;
color:#2c5282;font-size:.8rem}.alias.champion{background:#c6f6d5;color:#22543d}
.muted{color:#718096}button{margin:.1rem .3rem .1rem 0;padding:.25rem .7rem;cursor:pointer}
svg a:hover rect{fill:#ebf8ff}svg text{font-size:11px}
"""

_SCRIPT = """
async function mlpipeCall(method, url, body, out) {
  const el = document.getElementById(out);
  el.textContent = "…";
  const resp = await fetch(url, {method: method, credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  el.textContent = resp.ok ? "done (HTTP " + resp.status + ")" : "refused: HTTP " + resp.status + " " +
    (await resp.text()).slice(0, 200);
  if (resp.ok) { setTimeout(function () { location.reload(); }, 800); }
}
"""


def _a(href: str | None, text: str, *, new_tab: bool = False) -> str:
    if not href:
        return escape(text)
    target = ' target="_blank" rel="noopener"' if new_tab else ""
    return f'<a href="{escape(href)}"{target}>{escape(text)}</a>'


def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, an ellipsis marking the cut (the box has fixed width)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else escape(str(value))


def document(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body>{body}</body></html>"
    )


def render_index(models: list[str], prefix: str) -> str:
    """The list of models the provider manages."""
    if not models:
        items = '<p class="muted">No model trained by airflow-mlpipe is registered yet.</p>'
    else:
        items = "<ul>" + "".join(f"<li>{_a(f'{prefix}/models/{m}', m)}</li>" for m in models) + "</ul>"
    return document("Models", f"<h1>Models</h1>{items}")


def _verdict(value: bool | None, yes: str, no: str, unknown: str) -> str:
    if value is None:
        return f'<span class="muted">{unknown}</span>' if unknown else ""
    return f'<span class="ok">{yes}</span>' if value else f'<span class="bad">{no}</span>'


def _criteria(criteria: list[dict[str, Any]]) -> str:
    rows = []
    for c in criteria:
        mark = '<span class="ok">pass</span>' if c.get("passed") else '<span class="bad">fail</span>'
        if c.get("threshold") is not None:
            bound = f"{escape(str(c.get('op') or ''))} {_num(c.get('threshold'))}"
        else:  # e.g. a change criterion while there is no champion to compare with
            bound = f"({escape(str(c.get('reason') or 'no bound'))})"
        rows.append(f"{mark} {escape(str(c.get('name')))}: observed {_num(c.get('observed'))} {bound}")
    return "<br>".join(rows) or '<span class="muted">—</span>'


def _versions(loop: ModelLoop) -> str:
    rows = []
    for v in loop.versions:
        aliases = "".join(f'<span class="alias {escape(a)}">{escape(a)}</span>' for a in v.aliases)
        verdict = _verdict(v.blessed, "blessed", "blocked", "not gated")
        run = v.training_run
        trained = _a(task_page(run["dag_id"], run["run_id"]), run["run_id"]) if run.get("run_id") else ""
        rows.append(
            f'<tr data-version="{escape(v.version)}"><td>v{escape(v.version)}</td><td>{aliases}</td>'
            f"<td>{verdict}</td><td>{_criteria(v.criteria)}</td>"
            f"<td>{_a(v.report_url, 'evaluation report')} {_a(audit_url(loop.name, v.version), 'audit')}</td>"
            f"<td>{_a(v.run_url, 'MLflow run', new_tab=True)}</td><td>{trained}</td>"
            f"<td>{escape(v.deployed_at or '')}{' rolled back ' + escape(v.rolled_back_at) if v.rolled_back_at else ''}</td></tr>"
        )
    head = (
        "<tr><th>Version</th><th>Aliases</th><th>Gate</th><th>Criteria</th><th>Reports</th>"
        "<th>Run</th><th>Trained by</th><th>Deployed</th></tr>"
    )
    return f'<table id="versions">{head}{"".join(rows)}</table>'


def _check(result: dict[str, Any] | None) -> str:
    if not result:
        return '<span class="muted">—</span>'
    mark = _verdict(result.get("passed", result.get("ok")), "passed", "failed", "")
    details = ", ".join(
        f"{k}={_num(v)}"
        for k, v in sorted(result.items())
        if isinstance(v, (int, float, str)) and k != "passed"
    )
    reasons = "; ".join(map(str, result.get("reasons") or []))
    return f"{mark} <span class='muted'>{escape(details)[:300]}</span>" + (
        f"<br><span class='bad'>{escape(reasons)}</span>" if reasons else ""
    )


def _rollouts(loop: ModelLoop) -> str:
    if not loop.rollouts:
        return '<p class="muted">No deployment yet.</p>'
    rows = []
    for r in reversed(loop.rollouts):
        reason = r.reason or (f"rolled back from v{r.rolled_back_from}" if r.rolled_back_from else "")
        rows.append(
            f'<tr data-task="{escape(r.task_id)}"><td>{_a(task_page(r.dag_id, r.run_id, r.task_id), r.run_id)}</td>'
            f"<td>v{escape(r.version)}"
            f"{' (from v' + escape(str(r.previous_version)) + ')' if r.previous_version else ''}</td>"
            f"<td>{escape(r.status)}</td><td>{escape(r.deployed_at or '')}</td><td>{_check(r.smoke_test)}</td>"
            f"<td>{_check(r.canary)}</td><td>{_check(r.watch)}</td><td>{escape(reason)}</td>"
            f"<td>{escape(r.approver or '')}</td><td>{escape(r.task_id)}</td></tr>"
        )
    head = (
        "<tr><th>Run</th><th>Version</th><th>Status</th><th>Switched at</th><th>Smoke test</th>"
        "<th>Canary</th><th>Watch window</th><th>Reason</th><th>Approved by</th><th>Task</th></tr>"
    )
    return f'<table id="rollouts">{head}{"".join(rows)}</table>'


def drift_chart(batches: list[Batch], retrainings: list[dict[str, str]]) -> str:
    """Drift share and live quality per batch (0–1 axis); retraining runs as dashed markers."""
    if not batches:
        return '<p class="muted">No monitored batch yet.</p>'
    width, height, pad = 640, 220, 36
    times = sorted({b.at for b in batches} | {t["at"] for t in retrainings})
    step = (width - 2 * pad) / max(1, len(times) - 1)

    def x(at: str) -> float:
        return pad + times.index(at) * step

    def y(value: float) -> float:
        return height - pad - max(0.0, min(1.0, value)) * (height - 2 * pad)

    parts = [
        f'<svg id="drift-chart" width="{width}" height="{height}" role="img" '
        'aria-label="drift share and live quality per batch">',
        f'<line x1="{pad}" y1="{y(0)}" x2="{width - pad}" y2="{y(0)}" stroke="#a0aec0"/>',
        f'<text x="4" y="{y(1) + 4}">1.0</text><text x="4" y="{y(0) + 4}">0</text>',
    ]
    threshold = next((b.threshold for b in batches if b.threshold is not None), None)
    if threshold is not None:
        parts.append(
            f'<line x1="{pad}" y1="{y(threshold)}" x2="{width - pad}" y2="{y(threshold)}" '
            'stroke="#e53e3e" stroke-dasharray="2 3"/>'
        )
    for t in retrainings:
        # the label stays inside the chart: left of a marker in the right half, else right of it
        at = x(t["at"])
        label = f'x="{at - 3}" text-anchor="end"' if at > width / 2 else f'x="{at + 3}"'
        parts.append(
            f'<a href="{escape(task_page(t["dag_id"], t["run_id"]))}" class="retraining">'
            f'<line x1="{at}" y1="{pad - 10}" x2="{at}" y2="{y(0)}" stroke="#805ad5" '
            f'stroke-dasharray="5 3" stroke-width="2"/><text {label} y="{pad - 12}">retraining</text></a>'
        )
    for series, color, values in (
        ("drift share", "#dd6b20", [(b.at, b.drift_share) for b in batches]),
        ("live quality", "#3182ce", [(b.at, b.quality) for b in batches if b.quality is not None]),
    ):
        if values:
            points = " ".join(f"{x(at):.1f},{y(v):.1f}" for at, v in values)
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"><title>{series}</title></polyline>'
            )
    for b in batches:
        fill = "#e53e3e" if b.drift_detected else "#dd6b20"
        circle = f'<circle cx="{x(b.at):.1f}" cy="{y(b.drift_share):.1f}" r="5" fill="{fill}"><title>{escape(b.at)}: drift share {b.drift_share:.3f}</title></circle>'
        parts.append(
            f'<a href="{escape(b.report_url)}" class="batch">{circle}</a>' if b.report_url else circle
        )
    parts.append(
        f'<text x="{pad}" y="{height - 8}" fill="#dd6b20">● drift share</text>'
        f'<text x="{pad + 110}" y="{height - 8}" fill="#3182ce">● live quality</text>'
        f'<text x="{pad + 225}" y="{height - 8}" fill="#805ad5">┆ retraining run</text></svg>'
    )
    rows = "".join(
        f"<tr><td>{_a(task_page(b.dag_id, b.run_id), b.at)}</td><td>{b.drift_share:.3f}</td>"
        f"<td>{'<span class=bad>drift</span>' if b.drift_detected else 'no drift'}</td>"
        f"<td>{'' if b.quality is None else f'{b.quality_metric} {b.quality:.3f}'}</td>"
        f"<td>{escape(', '.join(b.retrain_reasons))}</td><td>{_a(b.report_url, 'Evidently report')}</td></tr>"
        for b in batches
    )
    table = (
        '<table id="batches"><tr><th>Batch run</th><th>Drift share</th><th>Verdict</th><th>Live quality</th>'
        f"<th>Retrain reasons</th><th>Report</th></tr>{rows}</table>"
    )
    return "".join(parts) + table


def lineage_graph(loop: ModelLoop) -> str:
    """The serving version's lineage, left to right, one linked box per stage."""
    if not loop.lineage_nodes:
        return '<p class="muted">No serving version (no champion alias) yet.</p>'
    box_w, box_h, gap = 150, 56, 26
    n = len(loop.lineage_nodes)
    parts = [
        f'<svg id="lineage" width="{n * (box_w + gap)}" height="{box_h + 20}" role="img" aria-label="lineage">'
    ]
    for i, node in enumerate(loop.lineage_nodes):
        x = i * (box_w + gap) + 2
        box = (
            f'<rect x="{x}" y="8" width="{box_w}" height="{box_h}" rx="6" fill="#fff" stroke="#4a5568"/>'
            f'<text x="{x + 8}" y="28" font-weight="600">{escape(node.label)}</text>'
            f'<text x="{x + 8}" y="46" fill="#4a5568">{escape(_clip(node.detail, 22))}</text>'
            f"<title>{escape(node.tooltip or node.detail)}</title>"
        )
        if node.href:
            box = f'<a href="{escape(node.href)}" class="lineage-node" data-kind="{node.kind}">{box}</a>'
        parts.append(box)
        if i < n - 1:
            parts.append(
                f'<line x1="{x + box_w}" y1="{8 + box_h / 2}" x2="{x + box_w + gap}" y2="{8 + box_h / 2}" '
                'stroke="#4a5568" marker-end="url(#arrow)"/>'
            )
    parts.insert(
        1,
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="7" refY="3" orient="auto">'
        '<path d="M0,0 L7,3 L0,6 z" fill="#4a5568"/></marker></defs>',
    )
    return "".join(parts) + "</svg>"


def _approvals(approvals: list[Approval], can_answer: set[str], api: str) -> str:
    pending = [a for a in approvals if a.responded_by is None and a.chosen is None]
    if not pending:
        return '<p class="muted">No approval is waiting.</p>'
    rows = []
    for i, a in enumerate(pending):
        url = f"{api}/dags/{a.dag_id}/dagRuns/{a.run_id}/taskInstances/{a.task_id}/{a.map_index}/hitlDetails"
        if a.dag_id in can_answer:
            buttons = "".join(
                f'<button onclick=\'mlpipeCall("PATCH", {escape(json.dumps(url))}, '
                f'{escape(json.dumps({"chosen_options": [o], "params_input": {}}))}, "approval-{i}")\'>'
                f"{escape(o)}</button>"
                for o in a.options
            )
        else:
            buttons = '<span class="muted">you may not answer this request</span>'
        rows.append(
            f'<tr class="approval"><td>{_a(task_page(a.dag_id, a.run_id, a.task_id), a.subject)}</td>'
            f'<td>{buttons} <span id="approval-{i}" class="muted"></span></td></tr>'
        )
    return f'<table id="approvals"><tr><th>Request</th><th>Answer</th></tr>{"".join(rows)}</table>'


def _rollback(loop: ModelLoop, rollback_dag: str | None, allowed: bool, api: str) -> str:
    previous = next((v.version for v in loop.versions if "previous" in v.aliases), None)
    if rollback_dag is None:
        return f'<p class="muted">No rollback DAG ({escape(loop.name)}_rollback) is deployed.</p>'
    if not allowed:
        return f'<p class="muted">You may not trigger {escape(rollback_dag)}.</p>'
    if previous is None:
        return '<p class="muted">No previous version to roll back to.</p>'
    body = {
        "logical_date": None,
        "conf": {"model_name": loop.name, "reason": "requested from the Models page"},
    }
    return (
        f"<button id='rollback' onclick='mlpipeCall(\"POST\", {escape(json.dumps(f'{api}/dags/{rollback_dag}/dagRuns'))}, "
        f'{escape(json.dumps(body))}, "rollback-out")\'>Roll back to v{escape(previous)}</button>'
        f'<span id="rollback-out" class="muted"></span> (starts a run of {escape(rollback_dag)})'
    )


def render_model(
    loop: ModelLoop, *, api: str, can_answer: set[str], rollback_dag: str | None, can_rollback: bool
) -> str:
    """The page of one model: versions, rollouts, drift timeline, lineage and actions."""
    champion = next((v.version for v in loop.versions if "champion" in v.aliases), None)
    root = api.removesuffix("/api/v2")
    body = [
        f"<h1>Model {escape(loop.name)}</h1>",
        f"<p>Serving: <b id='champion'>{'v' + escape(champion) if champion else 'nothing'}</b>. "
        f"DAGs: {', '.join(_a(f'{root}/dags/{d}', d) for d in loop.dag_ids)}</p>",
        "<h2>Versions</h2>",
        _versions(loop),
        "<h2>Deployments</h2>",
        _rollouts(loop),
        "<h2>Drift and quality</h2>",
        drift_chart(loop.batches, loop.retrainings),
        "<h2>Lineage of the serving version</h2>",
        lineage_graph(loop),
        "<h2>Actions</h2><h3>Approvals</h3>",
        _approvals(loop.approvals, can_answer, api),
        "<h3>Rollback</h3>",
        _rollback(loop, rollback_dag, can_rollback, api),
    ]
    return document(f"Model {loop.name}", "".join(body))
