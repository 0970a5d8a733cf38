from __future__ import annotations

import pendulum
import pytest


@pytest.mark.integration
def test_dag_test_with_asset_and_link(run_dag):
    from airflow.sdk import DAG, Asset, BaseOperator

    from airflow_mlpipe.operators._context import XComLink, emit_asset_metadata, push_link

    class L(XComLink):
        link_name = "Thing"
        key = "thing_link"

    class Op(BaseOperator):
        operator_extra_links = (L(),)

        def execute(self, context):
            push_link(context, L, "http://x/y")
            emit_asset_metadata(context, self.outlets, {"rows": 3})
            return {"ok": True}

    a = Asset(name="smoke", uri="mlpipe://smoke/a")
    with DAG("smoke", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        Op(task_id="op", outlets=[a])
    res = run_dag(dag)
    assert res.state == "success"
    assert res.xcom("op") == {"ok": True}
    assert res.xcom("op", key="thing_link") == "http://x/y"
    assert ("mlpipe://smoke/a", {"rows": 3}) in res.asset_events()
