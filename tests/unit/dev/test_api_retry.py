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


class _Runs(BaseHTTPRequestHandler):
    """Creates a run per POSTed id; the first answer is lost (HTTP 500 after creating the run)."""

    created: list[str] = []
    lose_first = True

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path == "/auth/token":
            self._send(200, {"access_token": "t"})
        elif body["dag_run_id"] in type(self).created:
            self._send(409, {"detail": "already exists"})
        else:
            type(self).created.append(body["dag_run_id"])
            if type(self).lose_first:
                type(self).lose_first = False
                self._send(500, {"detail": "database is locked"})
            else:
                self._send(200, {"dag_run_id": body["dag_run_id"]})

    def _send(self, code: int, payload: dict[str, str]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


def test_a_trigger_whose_answer_was_lost_is_sent_again_and_creates_one_run() -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Runs)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        api = AirflowApi(f"http://127.0.0.1:{srv.server_address[1]}", "admin", "pw")
        _Runs.created, _Runs.lose_first = [], True
        run_id = api.trigger("d")
        assert _Runs.created == [run_id]  # the repeat found the run the lost answer had created
        _Runs.lose_first = False
        assert api.trigger("d") != run_id and len(_Runs.created) == 2
    finally:
        srv.shutdown()
        srv.server_close()
