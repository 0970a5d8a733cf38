"""The whole loop on a real scheduler, as `make demo` runs it: LocalExecutor with SQLite.

First training run deploys a model that answers HTTP; a drifted batch lands; the monitoring DAG
starts from the asset watcher and detects the drift; its asset event starts retraining; the new
champion is rolled out (canary under live traffic) without failing a single client request.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.checks import check_loop
from tests.e2e.loop.conftest import LiveLoop

# The loop (run by the first test of the package that needs it) takes 5-12 minutes on a 2-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]


def test_loop_on_local_executor_with_sqlite(live_loop: LiveLoop) -> None:
    check_loop(live_loop.result)
    # The live progress named every task as it started and ended (stdout is not a terminal here).
    out = live_loop.output
    for task in ("validate.check_batch", "features.training_set", "deploy.serve"):
        assert re.search(rf"▶ {re.escape(task)}\s+running", out), out[-3000:]
        assert re.search(rf"✓ {re.escape(task)}\s+success in \d+ s", out), out[-3000:]
    assert "waiting for churn_monitoring: monitoring run (asset watcher)" in out
