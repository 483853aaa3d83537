"""jitprov's sign-in service (`jitprov serve`): everything HTTP lives in this package.

`create_app(config)` builds the ASGI application (Starlette); `serve(...)` runs it under
uvicorn with one or more worker processes. Only this package imports Starlette or
uvicorn (an import-linter contract keeps them out of the rest of `engine` and `rules`).
"""

from engine.service.app import create_app

__all__ = ["create_app"]
