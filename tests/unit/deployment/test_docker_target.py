"""The container target's pieces that need no engine: its Containerfile, proxy config and options."""

from __future__ import annotations

import pytest

from airflow_mlpipe.deploy.targets.docker.image import containerfile, image_tag
from airflow_mlpipe.deploy.targets.local.proxy import ServerEntry, parse_stats, render_config
from airflow_mlpipe.exceptions import ConfigError

GENERATED = """# Block SETUP_BENTO_BASE_IMAGE
FROM python:3.11-slim AS base-container

ENV LANG=C.UTF-8
RUN uv pip install -r requirements.txt
"""


def test_containerfile_takes_the_deployments_base_image_and_build_ca():
    text = containerfile(GENERATED, base_image="mlpipe-standin/python:latest", ca_bundle=True)
    lines = text.splitlines()
    assert lines[1] == "FROM mlpipe-standin/python:latest AS base-container"
    assert "python:3.11-slim" not in text
    # the bundle reaches the build's RUN steps as ARGs (not ENV: it does not stay in the image)
    assert (
        "ARG PIP_CERT=/tmp/mlpipe-build-ca.crt" in lines
        and "ARG SSL_CERT_FILE=/tmp/mlpipe-build-ca.crt" in lines
    )
    assert not any(line.startswith("ENV PIP_CERT") for line in lines)
    assert lines.index("COPY env/docker/mlpipe-build-ca.crt /tmp/mlpipe-build-ca.crt") == 2
    assert text.endswith("RUN uv pip install -r requirements.txt\n")
    assert containerfile(GENERATED, base_image=None, ca_bundle=False) == GENERATED


def test_containerfile_without_a_base_stage_is_refused():
    with pytest.raises(Exception, match="base-container"):
        containerfile("FROM scratch\n", base_image=None, ca_bundle=False)


def test_image_tag_names_the_bento():
    assert image_tag("mlpipe-iris:v1-abc") == "mlpipe/mlpipe-iris:v1-abc"


def test_proxy_config_is_one_template_with_an_http_stats_listener_for_containers():
    servers = [ServerEntry("b_v1", 4001, 70), ServerEntry("b_v2", 4002, 30)]
    common = dict(name="iris", port=4000, bind_host="127.0.0.1", pid_file="/tmp/p", stats_socket="/tmp/s")
    local = render_config(servers, **common)
    container = render_config(servers, **common, stats_port=4009)
    assert "stats uri" not in local and "4009" not in local
    assert "bind 127.0.0.1:4009" in container and "stats uri /stats" in container
    for text in (local, container):
        assert "server b_v1 127.0.0.1:4001 weight 70 check" in text
        assert "server b_v2 127.0.0.1:4002 weight 30 check" in text
        assert "stats socket /tmp/s mode 600 level admin expose-fd listeners" in text


def test_stats_csv_is_parsed_per_server():
    raw = (
        "# pxname,svname,stot,hrsp_5xx,econ,eresp,wretr,wredis,status,weight\n"
        "iris,FRONTEND,9,0,,,,,OPEN,\n"
        "iris_model,b_v1,7,1,0,0,0,0,UP,70\n"
        "iris_model,BACKEND,7,1,0,0,0,0,UP,70\n"
    )
    assert parse_stats(raw, "iris") == {
        "b_v1": {
            "requests": 7,
            "http_5xx": 1,
            "connection_errors": 0,
            "response_errors": 0,
            "retries": 0,
            "redispatches": 0,
            "status": "UP",
            "weight": 70,
        }
    }


def test_docker_kind_refuses_a_worker_local_state_store_unless_asked(tmp_path):
    from airflow_mlpipe.deploy.targets import resolve_target

    with pytest.raises(ConfigError, match="state_conn_id"):
        resolve_target({"kind": "docker"}, deployment_name="iris")
    with pytest.raises(ConfigError, match="single_host: true"):
        resolve_target({"kind": "docker", "state_dir": str(tmp_path)}, deployment_name="iris")


def test_proxy_access_log_is_off_unless_a_destination_is_given():
    servers = [ServerEntry("b_v1", 4001, 100)]
    common = dict(name="iris", port=4000, bind_host="127.0.0.1", pid_file="/tmp/p", stats_socket="/tmp/s")
    assert "httplog" not in render_config(servers, **common)
    logged = render_config(servers, **common, access_log="127.0.0.1:5140")
    assert "log 127.0.0.1:5140 len 2048 local0 info" in logged and "option httplog" in logged
    for bad in ("", "127.0.0.1:5140 local7", "a\nb"):
        with pytest.raises(ConfigError, match="access_log"):
            render_config(servers, **common, access_log=bad)
