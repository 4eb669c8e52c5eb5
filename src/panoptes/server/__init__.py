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

from panoptes.elements.web_view import HttpProperties
from panoptes.server.app import create_app
from panoptes.server.http import HttpServer, ServerError, find_view, start_http
from panoptes.server.live_view import JpegPicture, LiveView

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
