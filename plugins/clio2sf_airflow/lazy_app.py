"""An ASGI app that imports the real one on its first request.

Airflow loads the plugins in every task process (an ``ObjectStoragePath``'s lineage collector does),
not only in the api-server: a plugin module that builds its FastAPI app on import made every task
import FastAPI, about 1 s of CPU per task (``benchmarks.bench_dag_transform``).  The plugins give
the api-server a :class:`LazyApp` instead; it mounts it like any ASGI app.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyApp:
    """``LazyApp("package.module:app")``, or ``factory=True`` for a function that returns the app."""

    def __init__(self, target: str, *, factory: bool = False) -> None:
        self.target, self.factory = target, factory
        self._app: Any = None

    def load(self) -> Any:
        if self._app is None:
            module, _, name = self.target.partition(":")
            obj = getattr(importlib.import_module(module), name)
            self._app = obj() if self.factory else obj
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.load()(scope, receive, send)
