from __future__ import annotations

import pytest

from airflow_mlpipe.deploy.targets.local.proxy import HAProxy, ServerEntry, short_socket_path
from mlpipe_dev.local.stack import free_port


def test_short_state_dir_keeps_socket_inside(tmp_path):
    assert short_socket_path(tmp_path) == tmp_path / "haproxy.sock"


def test_deep_state_dir_gets_a_short_stable_socket_path(tmp_path):
    deep = tmp_path.joinpath(*["a_rather_long_directory_name"] * 5)
    path = short_socket_path(deep)
    assert len(str(path)) <= 97  # HAProxy's limit for a stats socket path
    assert path == short_socket_path(deep)  # every task of the deployment finds the same socket
    assert path != short_socket_path(deep / "other")


@pytest.mark.integration
def test_haproxy_starts_from_a_deep_state_dir(tmp_path):
    deep = tmp_path.joinpath(*["a_rather_long_directory_name"] * 5)
    deep.mkdir(parents=True)
    proxy = HAProxy(deep, name="deep", port=free_port())
    try:
        proxy.apply([ServerEntry(name="b1", port=free_port(), weight=100)])
        assert proxy.running()
    finally:
        proxy.stop()
