"""Answering the reference config's human-in-the-loop request (approve the promotion) as a person
would in the UI (*Required actions*): through Airflow's REST API, as the API client's user, so the
answer and who gave it are recorded. The demo and the compose test both answer this way."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from airflow_mlpipe.core.timing import scaled
from mlpipe_dev.local.stack import AirflowApi


def answer(
    api: AirflowApi,
    dag_id: str,
    run_id: str,
    ti: dict[str, Any],
    *,
    scheduler_log: Callable[[], str],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Answer the request of task instance ``ti`` with "Approve" (or "Retrain", else its first
    option); return what was answered and by whom.

    :param scheduler_log: returns the scheduler's log so far (see :func:`wait_pause_processed`).
    :param log: where to say what was answered.
    """
    path = (
        f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{ti['task_id']}/"
        f"{ti.get('map_index', -1)}/hitlDetails"
    )
    if not wait_pause_processed(scheduler_log, dag_id, run_id, ti):
        log(f"  {ti['task_id']}: the scheduler's pause event was not seen in its log; answering anyway")
    detail = api.get(path)
    options = list(detail.get("options") or [])
    choice = next((o for o in ("Approve", "Retrain") if o in options), options[0] if options else None)
    if choice is None:
        raise RuntimeError(f"{dag_id} {ti['task_id']} asks for input without options: {detail}")
    reply = api.patch(path, {"chosen_options": [choice]})
    who = (reply.get("responded_by") or {}).get("name") or "the API user"
    log(f"  {ti['task_id']}: {detail.get('subject')!r} answered {choice!r} by {who} (REST API)")
    return {"dag_id": dag_id, "run_id": run_id, "task_id": ti["task_id"], "chosen": choice, "by": who}


def wait_pause_processed(
    scheduler_log: Callable[[], str], dag_id: str, run_id: str, ti: dict[str, Any], timeout: float = 30
) -> bool:
    """Wait until the scheduler has processed the task's pause (its executor event); ``False`` when
    it was not seen within ``timeout`` seconds (scaled by load).

    Airflow 3.3 loses an answer that arrives before that: the answered task is queued again,
    the scheduler then reads the paused workload's "success" event against a queued task
    instance and puts it up for retry, which asks again. A person never answers that fast; an
    answering program must wait for this (observed in the scheduler's log; bounded wait).
    """
    # The paused workload is the only one of this try that has ended while the task waits.
    key = (
        f"TaskInstanceKey(dag_id='{dag_id}', task_id='{ti['task_id']}', run_id='{run_id}', "
        f"try_number={ti.get('try_number')}, map_index={ti.get('map_index', -1)})"
    )
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if any("Received executor event" in line and key in line for line in scheduler_log().splitlines()):
            return True
        time.sleep(0.5)
    return False
