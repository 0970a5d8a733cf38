"""The local proxy's per-request log reaches a syslog receiver, from the real HAProxy."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from airflow_mlpipe.core.timing import scaled
from airflow_mlpipe.deploy.targets.local import free_port
from airflow_mlpipe.deploy.targets.local.proxy import HAProxy, ServerEntry
from tests.fixtures.syslog import SyslogReceiver, abnormal

pytestmark = pytest.mark.integration


def test_every_request_is_logged_with_its_server_status_and_termination_state(tmp_path):
    with SyslogReceiver() as receiver:
        proxy = HAProxy(tmp_path, name="logged", port=free_port(), access_log=receiver.address)
        # no backend listens on this port: the proxy answers 503 and logs why
        proxy.apply([ServerEntry("gone", free_port(), 100)])
        try:
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"http://127.0.0.1:{proxy.port}/predict", timeout=scaled(10))
            assert err.value.code == 503
            deadline = time.monotonic() + scaled(10)
            while not any('"GET /predict' in line for line in receiver.lines()):
                assert time.monotonic() < deadline, receiver.lines()
                time.sleep(0.05)
        finally:
            proxy.stop()
    request = next(line for line in receiver.lines() if '"GET /predict' in line)
    assert " 503 " in request and abnormal(request), request
    assert request in receiver.abnormal()


def test_a_normal_answer_is_not_abnormal():
    line = (
        "<134>Dec  4 20:54:47 haproxy[7]: 127.0.0.1:37784 [04/Dec/2026:20:54:47.400] iris "
        'iris_model/b_v1 0/0/0/3/3 200 180 - - ---- 1/1/0/0/0 0/0 "POST /predict HTTP/1.1"'
    )
    assert not abnormal(line)
    assert abnormal(line.replace("0/0/0/3/3", "0/0/0/9000/9000"))  # answered, but slowly
    assert abnormal(line.replace(" 200 ", " 504 ").replace(" ---- ", " sH-- "))
    assert abnormal("<133>Dec  4 20:54:47 haproxy[7]: Server iris_model/b_v2 is DOWN")
    assert not abnormal(
        "<132>Dec  4 20:57:05 haproxy[7]: Proxy iris_model stopped (cumulated conns: FE: 0, BE: 1)."
    )
