"""The provider's Airflow plugin (entry point ``airflow.plugins``): a FastAPI app and a nav entry.

Airflow imports plugin modules in every component (task processes included), so this module stays
light: the FastAPI app is built on the first request by :class:`LazyApp`, not at import.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_mlpipe.core.links import UI_PREFIX


class LazyApp:
    """An ASGI app that builds :func:`airflow_mlpipe.ui.app.create_app` when first called."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_mlpipe.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class MlpipeUiPlugin(AirflowPlugin):
    """Reports of the stages over http, and the **Models** page in the Airflow navigation."""

    name = "mlpipe"
    fastapi_apps: list[Any] = [{"name": "mlpipe", "app": LazyApp(), "url_prefix": UI_PREFIX}]
    external_views: list[Any] = [
        {
            "name": "Models",
            "href": f"{UI_PREFIX}/models",
            "destination": "nav",
            "url_route": "mlpipe-models",
            "nav_top_level": True,
        }
    ]
