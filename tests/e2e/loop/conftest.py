"""One run of the demo loop (LocalExecutor, SQLite), shared by the loop checks and the browser tests.

The loop takes 5-12 minutes, so it runs once for this package: the stack (MLflow, Airflow, the model
services) stays up until the package's last test ended and is stopped before the rest of the suite
runs. ``pytest -m e2e`` or ``pytest -m browser`` alone still run it (once).

The browser tests drive Debian's Chromium (``make system-deps``) with Playwright, launched by path:
Playwright's own browser download is never used. Their screenshots go to ``<pytest base temp>/screenshots``.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_mlpipe.core.timing import scaled
from mlpipe_dev.demo.runner import REPO_DAGS, Demo, DemoConfig, DemoResult
from mlpipe_dev.local.stack import LocalAirflow

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, WebError

#: The OS's Chromium (Debian package ``chromium``).
CHROMIUM = Path("/usr/bin/chromium")
#: DAGs the browser tests add to the repository's (a release approval tagged with the model's name).
TEST_DAGS = Path(__file__).parent / "dags"


@dataclass
class LiveLoop:
    """The loop's result, its still running Airflow and what the demo printed while it ran."""

    result: DemoResult
    airflow: LocalAirflow
    output: str


class _Tee(io.StringIO):
    """Keeps what is written and passes it on (the progress still shows with ``pytest -s``)."""

    def __init__(self, passthrough: Any) -> None:
        super().__init__()
        self._passthrough = passthrough

    def write(self, text: str) -> int:
        self._passthrough.write(text)
        return super().write(text)

    def isatty(self) -> bool:
        return False


@pytest.fixture(scope="package")
def live_loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveLoop]:
    work = tmp_path_factory.mktemp("loop")
    dags = work / "dags"
    shutil.copytree(REPO_DAGS, dags, ignore=shutil.ignore_patterns("__pycache__"))
    for path in TEST_DAGS.glob("*.py"):
        shutil.copy(path, dags)
    printed = _Tee(sys.stdout)
    demo = Demo(DemoConfig(workdir=work / "demo", dags_folder=dags, run_timeout=900))
    with contextlib.ExitStack() as running:
        with contextlib.redirect_stdout(printed):
            result, airflow = running.enter_context(demo.live())
        yield LiveLoop(result, airflow, printed.getvalue())


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    """Headless Chromium; every ``expect`` waits up to a load-scaled deadline."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run `make system-deps`.")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=scaled(20) * 1000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def signed_in(chromium: Browser, live_loop: LiveLoop) -> Iterator[BrowserContext]:
    """A browser session signed in through Airflow's login form (the simple auth manager's)."""
    from playwright.sync_api import expect

    airflow = live_loop.airflow
    context = chromium.new_context(base_url=airflow.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(scaled(30) * 1000)
    page = context.new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/auth/login"))
    page.get_by_label("Username").fill(airflow.username)
    page.get_by_label("Password").fill(airflow.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Models")).to_be_visible()
    page.close()
    yield context
    context.close()


@pytest.fixture
def page(signed_in: BrowserContext) -> Iterator[Page]:
    """A new tab of the signed-in session; a script error on any page it opens fails the test."""
    errors: list[str] = []

    def record(error: WebError) -> None:
        errors.append(f"{error.page.url if error.page else '?'}: {error.error}")

    signed_in.on("weberror", record)
    tab = signed_in.new_page()
    yield tab
    tab.close()
    signed_in.remove_listener("weberror", record)
    assert not errors, f"script errors: {errors}"


@pytest.fixture(scope="package")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save their screenshots (kept with pytest's temporary files)."""
    return tmp_path_factory.mktemp("screenshots", numbered=False)
