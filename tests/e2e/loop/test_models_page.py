"""The Models page in a real browser, after the real loop: what it shows matches the MLflow registry
and the Airflow runs, every link on it resolves, and a pending approval is answered through it."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from airflow_mlpipe.core.timing import scaled
from mlpipe_dev.demo.runner import MONITORING_DAG, TRAINING_DAG
from tests.e2e.loop.conftest import LiveLoop
from tests.e2e.loop.links import check_resolves

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import FrameLocator, Page

pytestmark = [pytest.mark.browser, pytest.mark.timeout(2400)]

MODEL = "churn"
APPROVAL_DAG, APPROVAL_TASK = "churn_release_approval", "approve_release"


def _open_from_navigation(page: Page) -> FrameLocator:
    """Home -> "Models" in Airflow's navigation -> the model: the plugin's page inside the UI."""
    from playwright.sync_api import expect

    page.goto("/")
    page.get_by_role("link", name="Models").click()
    expect(page).to_have_url(re.compile(r"/plugin/mlpipe-models$"))
    frame = page.frame_locator("iframe")
    frame.get_by_role("link", name=MODEL).click()
    expect(frame.get_by_role("heading", name=f"Model {MODEL}")).to_be_visible()
    return frame


def _registry(loop: LiveLoop) -> dict[str, list[str]]:
    """Version -> its aliases, as the MLflow registry has them."""
    from mlflow import MlflowClient

    url = loop.result.mlflow_url
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    aliases = client.get_registered_model(MODEL).aliases
    return {
        str(mv.version): sorted(a for a, v in aliases.items() if str(v) == str(mv.version))
        for mv in client.search_model_versions(f"name='{MODEL}'")
    }


def _runs(loop: LiveLoop, dag_id: str) -> list[dict[str, Any]]:
    return [r for r in loop.result.runs if r["dag_id"] == dag_id]


def test_models_page_shows_the_registry_and_the_runs(
    page: Page, live_loop: LiveLoop, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    frame = _open_from_navigation(page)
    page.screenshot(path=screenshots / "models-in-airflow.png")

    # Versions and aliases: exactly the registry's.
    registry = _registry(live_loop)
    shown = {
        str(row.get_attribute("data-version")): sorted(row.locator(".alias").all_inner_texts())
        for row in frame.locator("#versions tr[data-version]").all()
    }
    assert shown == registry
    before = str(live_loop.result.champion_before["version"])
    after = str(live_loop.result.champion_after["version"])
    assert "champion" in registry[after] and "previous" in registry[before], registry
    expect(frame.locator("#champion")).to_have_text(f"v{after}")

    # The champion was trained by the retraining run, which the drift asset event started.
    first, retraining = _runs(live_loop, TRAINING_DAG)
    champion_row = frame.locator(f'#versions tr[data-version="{after}"]')
    expect(champion_row.get_by_role("link", name=retraining["run_id"], exact=True)).to_be_visible()
    expect(frame.locator("#drift-chart a.retraining")).to_have_attribute(
        "href", re.compile(re.escape(quote(retraining["run_id"], safe="")) + "$")
    )

    # One rollout per training run and serving mode (HTTP, stream), as its deploy task reported it.
    for run in (first, retraining):
        for task_id in ("deploy.serve", "deploy.stream"):
            deployed = run["results"][task_id]
            row = frame.locator(
                f'#rollouts tr[data-task="{task_id}"]',
                has=frame.get_by_role("link", name=run["run_id"], exact=True),
            )
            expect(row).to_have_count(1)
            expect(row.locator("td").nth(1)).to_contain_text(f"v{deployed['version']}")
            expect(row.locator("td").nth(2)).to_have_text(str(deployed["status"]))
            expect(row.locator("td").last).to_have_text(task_id)
    second = frame.locator(
        '#rollouts tr[data-task="deploy.serve"]',
        has=frame.get_by_role("link", name=retraining["run_id"], exact=True),
    )
    expect(second.locator("td").nth(1)).to_have_text(f"v{after} (from v{before})")
    expect(second.locator("td").nth(5)).to_contain_text("passed")  # the canary under live traffic

    # The drift the monitoring run detected, with its share.
    (monitoring,) = _runs(live_loop, MONITORING_DAG)
    drift = live_loop.result.drift
    batch = frame.locator(
        "#batches tr", has=frame.locator(f'a[href$="{quote(monitoring["run_id"], safe="")}"]')
    )
    expect(batch).to_have_count(1)
    expect(batch.locator("td").nth(1)).to_have_text(f"{drift['drift_share']:.3f}")
    expect(batch.locator("td").nth(2)).to_have_text("drift")
    expect(batch.get_by_role("link", name="Evidently report")).to_be_visible()

    # The lineage of the serving version ends at its deployment.
    expect(frame.locator("#lineage a.lineage-node[data-kind=version]")).to_contain_text(f"{MODEL} v{after}")
    expect(frame.locator("#lineage a.lineage-node[data-kind=deployment]")).to_be_visible()

    page.goto(f"/mlpipe/models/{MODEL}")
    page.screenshot(path=screenshots / "models-page.png", full_page=True)


def test_every_link_on_the_models_page_resolves(page: Page, live_loop: LiveLoop) -> None:
    links: set[str] = set()
    for path in ("/mlpipe/models", f"/mlpipe/models/{MODEL}"):
        page.goto(path)
        links |= set(
            page.eval_on_selector_all(
                "a[href]", "els => els.map(e => new URL(e.getAttribute('href'), document.baseURI).href)"
            )
        )
    airflow = live_loop.airflow
    reports = {u for u in links if "/mlpipe/reports/" in u}
    # Evaluation reports, Evidently report, MLflow runs and versions, Airflow runs and tasks.
    assert len(reports) >= 2 and any(u.startswith(live_loop.result.mlflow_url) for u in links), links
    for url in sorted(links):
        check_resolves(
            page.request,
            url,
            airflow_url=airflow.url,
            api=airflow.api,
            mlflow_url=live_loop.result.mlflow_url,
        )


def _wait_for_state(loop: LiveLoop, run_id: str, state: str, timeout: float) -> None:
    api, deadline = loop.airflow.api, time.monotonic() + scaled(timeout)
    seen = None
    while time.monotonic() < deadline:
        instances = api.task_instances(APPROVAL_DAG, run_id)
        seen = next((t["state"] for t in instances if t["task_id"] == APPROVAL_TASK), None)
        if seen == state:
            return
        time.sleep(1)
    raise AssertionError(f"{APPROVAL_DAG}.{APPROVAL_TASK} is {seen!r}, not {state!r}, after {timeout} s")


def _why(loop: LiveLoop, run_id: str) -> str:
    """The approval task's states and its log, to tell why the run did not succeed."""
    from mlpipe_dev.demo.progress import task_log_file

    logs = loop.airflow.home / "logs"
    parts = []
    for ti in loop.airflow.api.task_instances(APPROVAL_DAG, run_id):
        path = task_log_file(logs, APPROVAL_DAG, run_id, ti)
        text = path.read_text(errors="replace")[-6000:] if path.exists() else f"(no log at {path})"
        parts.append(f"{ti['task_id']}: {ti['state']} (try {ti.get('try_number')})\n{text}")
    for component in ("scheduler", "triggerer"):
        path = logs / f"{component}.log"
        if path.exists():
            parts.append(
                f"--- {component}.log, last lines\n"
                + "\n".join(path.read_text(errors="replace").splitlines()[-60:])
            )
    return "\n".join(parts)


def test_a_pending_approval_is_answered_through_the_page(
    page: Page, live_loop: LiveLoop, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    api = live_loop.airflow.api
    run_id = api.trigger(APPROVAL_DAG)
    _wait_for_state(live_loop, run_id, "awaiting_input", timeout=180)

    page.goto(f"/mlpipe/models/{MODEL}")
    request = page.locator("#approvals tr.approval", has_text="Release churn")
    expect(request).to_have_count(1)
    request.scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "models-approval.png")
    request.get_by_role("button", name="Approve").click()
    expect(request.locator("[id^=approval-]")).to_have_text("done (HTTP 200)")

    # Airflow recorded who answered what, and the run went on.
    detail = api.get(
        f"/dags/{APPROVAL_DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/{APPROVAL_TASK}/-1/hitlDetails"
    )
    assert detail["chosen_options"] == ["Approve"], detail
    assert (detail["responded_by_user"] or {}).get("name") == live_loop.airflow.username, detail
    state = api.wait_run(APPROVAL_DAG, run_id, timeout=scaled(120))
    assert state == "success", _why(live_loop, run_id)
    # The page reloads after the answer: nothing is waiting any more.
    expect(page.get_by_text("No approval is waiting.")).to_be_visible()
