"""Fixtures of the HTTP server tests: real pipelines served on 127.0.0.1 at a free port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from server_tools import Serve

from panoptes import Pipeline
from panoptes.server import HttpServer


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(config)``: a started pipeline and its HTTP server, both stopped afterwards."""
    running: list[tuple[Pipeline, HttpServer]] = []

    def start(config: dict[str, Any]) -> tuple[Pipeline, HttpServer]:
        pipeline = Pipeline(config)
        server = HttpServer(pipeline, host="127.0.0.1", port=0)
        server.start()
        running.append((pipeline, server))
        pipeline.start()
        return pipeline, server

    yield start
    for pipeline, server in running:
        server.stop()
        pipeline.stop()
        assert pipeline.wait(15), "the pipeline did not stop"
