"""Modules that run only in their own process (``bentoml serve``); never imported by a DAG file."""
