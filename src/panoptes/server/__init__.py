"""The HTTP server: a web page with the live view and the streams, a REST API to list, add and
remove streams (panoptes's own and DeepStream's), health, and Prometheus metrics.

Serve a pipeline::

    from panoptes.server import HttpServer

    pipeline = Pipeline.from_config("pipeline.yaml")  # with a web-view sink for video
    server = HttpServer(pipeline, port=8080)
    server.start()
    pipeline.run()
    server.stop()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from panoptes.elements.web_view import HttpProperties
    from panoptes.server.app import create_app
    from panoptes.server.http import HttpServer, ServerError, find_view, start_http
    from panoptes.server.live_view import JpegPicture, LiveView

# Imported when first asked for: the stream table (``panoptes.server.streams``), which worker
# processes use too, needs neither FastAPI nor uvicorn.
_EXPORTS = {
    "HttpProperties": "panoptes.elements.web_view",
    "create_app": "panoptes.server.app",
    "HttpServer": "panoptes.server.http",
    "ServerError": "panoptes.server.http",
    "find_view": "panoptes.server.http",
    "start_http": "panoptes.server.http",
    "JpegPicture": "panoptes.server.live_view",
    "LiveView": "panoptes.server.live_view",
}


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


__all__ = [
    "HttpProperties",
    "HttpServer",
    "JpegPicture",
    "LiveView",
    "ServerError",
    "create_app",
    "find_view",
    "start_http",
]
