"""The ML loop inside the Airflow UI: the provider's Airflow 3 plugin.

``plugin`` registers a FastAPI app (mounted by the api-server under ``/mlpipe``, same origin, behind
Airflow's authentication) and a **Models** entry in the Airflow navigation. The app serves the
reports the stages write (Data Docs, Evidently and evaluation reports) from the artifact root, and
the Models page built from the registry and the Airflow metadata DB (``loop``) by ``page``.

Nothing here is imported when a DAG file is parsed; heavy libraries are imported per request.
"""
