"""The embedded stack's REST client rides out a slow or failing api-server on reads, never on writes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlpipe_dev.local.stack import AirflowApi, StackError

pytestmark = pytest.mark.unit


class _Flaky(BaseHTTPRequestHandler):
    failures_left = 0
    calls = 0

    def _answer(self) -> None:
        type(self).calls += 1
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps({"access_token": "t", "dag_runs": [{"dag_run_id": "r1"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_reads_are_retried_through_transient_5xx(server: str) -> None:
    api = AirflowApi(server, "admin", "pw")
    api.token()
    _Flaky.failures_left, _Flaky.calls = 2, 0
    assert api.get("/dags/d/dagRuns") == {"access_token": "t", "dag_runs": [{"dag_run_id": "r1"}]}
    assert _Flaky.calls == 3


def test_reads_give_up_with_a_clear_error_and_writes_are_not_repeated(server: str) -> None:
    api = AirflowApi(server, "admin", "pw")
    api.token()
    _Flaky.failures_left, _Flaky.calls = 100, 0
    with pytest.raises(StackError, match="GET /api/v2/dags/d/dagRuns failed 4 times"):
        api.get("/dags/d/dagRuns")
    _Flaky.calls = 0
    with pytest.raises(StackError):
        api.post("/dags/d/dagRuns", {})
    assert _Flaky.calls == 1  # a trigger is never sent twice
