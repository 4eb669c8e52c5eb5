"""Serving the app: uvicorn in a background thread, beside the pipeline's threads."""

from __future__ import annotations

import errno
import socket
import threading
import time
from typing import Self

import uvicorn
from fastapi import FastAPI

from panoptes.core.errors import PanoptesError
from panoptes.core.pipeline import Pipeline
from panoptes.elements.web_view import HttpProperties, WebView
from panoptes.server.app import create_app
from panoptes.server.live_view import LiveView

STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 5


class ServerError(PanoptesError, OSError):
    """The HTTP server cannot listen (address in use, no permission) or failed to start."""


def find_view(pipeline: Pipeline) -> LiveView | None:
    """The view of ``pipeline``'s first web-view sink (building the pipeline if it was not);
    None when it has none."""
    pipeline.build()
    for stats in pipeline.element_stats():
        element = pipeline.element(stats.name)
        if isinstance(element, WebView):
            return element.view
    return None


class AppServer:
    """Serves an app with uvicorn in a background thread. ``app.state.closing`` (a
    ``threading.Event``) is set when it stops, to end the open video streams. ``port=0`` picks a
    free port, which ``port`` tells once started. :class:`HttpServer` serves a pipeline's app;
    the worker supervisor serves its own (``panoptes.workers``)."""

    def __init__(self, app: FastAPI, host: str = "0.0.0.0", port: int = 8080) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port``, with a wildcard host given as 127.0.0.1 (where a browser on
        this machine reaches it)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> None:
        """Listen and serve in a background thread; returns once requests are answered.

        Raises ServerError naming host:port when the address is taken or not allowed.
        """
        if self._thread is not None or self.app.state.closing.is_set():
            raise ServerError("a server starts once; make another to serve again")
        sock = self._listen()
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,  # leave the application's logging as it is
            log_level="warning",
            access_log=False,
            ws="none",
            lifespan="on",
            timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="http-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise ServerError(f"the HTTP server on {self.host}:{self.port} failed to start")
            time.sleep(0.01)

    def _listen(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError as error:
            sock.close()
            where = f"{self.host}:{self.port}"
            if error.errno == errno.EADDRINUSE:
                reason = "the address is already in use; choose another http.port (0 = any free)"
            elif error.errno == errno.EACCES:
                reason = "permission denied; ports below 1024 need privileges"
            else:
                reason = error.strerror or str(error)
            raise ServerError(f"cannot listen on {where}: {reason}") from error
        return sock

    def stop(self) -> None:
        """End the open video streams, stop serving and wait for the thread (a few seconds at
        most). Safe to call twice."""
        self.app.state.closing.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(SHUTDOWN_TIMEOUT_S + 2)
        self._thread = None
        self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class HttpServer(AppServer):
    """Serves :func:`~panoptes.server.app.create_app` for ``pipeline`` with uvicorn in a
    background thread::

        server = HttpServer(pipeline, port=8080)
        server.start()  # returns once it listens; server.url
        ...
        server.stop()

    ``view`` is the live view to show; None finds the pipeline's web-view sink, if any.
    ``port=0`` picks a free port, which ``port`` tells once started.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        host: str = "0.0.0.0",
        port: int = 8080,
        view: LiveView | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.view = view if view is not None else find_view(pipeline)
        super().__init__(create_app(pipeline, self.view), host, port)


def start_http(pipeline: Pipeline, props: HttpProperties) -> HttpServer:
    """Start the HTTP server of ``pipeline`` as the config's ``http`` section says, showing the
    view of its web-view sink if it has one (no video otherwise); returns the running server."""
    server = HttpServer(pipeline, host=props.host, port=props.port)
    server.start()
    return server
