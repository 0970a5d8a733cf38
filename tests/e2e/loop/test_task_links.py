"""Extra links of every stage task in Airflow's own task-instance view, in a real browser: each
link the operator declares has a visible button, and what the button opens renders (HTTP < 400, a
page with content)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin

import pytest

from tests.e2e.loop.conftest import LiveLoop

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.timeout(2400)]

RUNS = {"first training": 0, "monitoring": 1, "retraining": 2}


def _with_links(loop: LiveLoop, run: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, str | None]]]:
    """The run's task instances whose operator declares extra links, with the links' URLs."""
    api, dag_id, run_id = loop.airflow.api, run["dag_id"], quote(run["run_id"], safe="")
    out = []
    for ti in api.task_instances(run["dag_id"], run["run_id"]):
        links = api.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/links?map_index={ti['map_index']}"
        )["extra_links"]
        if links:
            out.append((ti, links))
    return out


def _details_page(ti: dict[str, Any]) -> str:
    page = (
        f"/dags/{ti['dag_id']}/runs/{quote(ti['dag_run_id'], safe='')}/tasks/{quote(ti['task_id'], safe='')}"
    )
    mapped = f"/mapped/{ti['map_index']}" if ti["map_index"] >= 0 else ""
    return f"{page}{mapped}/details"


def _open(page: Page, name: str, url: str) -> Page:
    """Open the button's link in a new tab (one page load for all of a task's buttons); check that
    it answers < 400 and shows content; return the tab."""
    from playwright.sync_api import expect

    with page.context.expect_page() as popup:
        page.get_by_role("link", name=name, exact=True).click(modifiers=["ControlOrMeta"])
    opened = popup.value
    opened.wait_for_load_state()
    assert opened.url.split("#")[0] == urljoin(page.url, url).split("#")[0], (name, opened.url, url)
    status = page.request.get(opened.url).status
    assert status < 400, f"{name} -> {url}: HTTP {status}"
    expect(opened.locator("body")).to_contain_text(re.compile(r"\w{3}"))
    return opened


@pytest.mark.parametrize("which", RUNS)
def test_every_extra_link_of_the_run_shows_and_opens(
    page: Page, live_loop: LiveLoop, screenshots: Path, which: str
) -> None:
    from playwright.sync_api import expect

    run = live_loop.result.runs[RUNS[which]]
    tasks = _with_links(live_loop, run)
    assert tasks, f"no task of {run['dag_id']} declares an extra link"
    for ti, links in tasks:
        label = f"{ti['task_id']}[{ti['map_index']}]" if ti["map_index"] >= 0 else ti["task_id"]
        missing = [name for name, url in links.items() if not url]
        assert not missing, f"{label}: links without a URL: {missing}"
        page.goto(_details_page(ti))
        for name, url in links.items():
            button = page.get_by_role("link", name=name, exact=True)
            expect(button).to_be_visible()
            expect(button).to_have_attribute("href", str(url))
        shot = f"{which.replace(' ', '-')}-{label}"
        page.screenshot(path=screenshots / f"{shot}-details.png")
        for name, url in links.items():
            opened = _open(page, name, str(url))
            opened.screenshot(path=screenshots / f"{shot}-{name.replace(' ', '-')}.png")
            opened.close()
