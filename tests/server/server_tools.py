"""Helpers of the HTTP server tests: test patterns played in real time, and polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from panoptes import Pipeline
from panoptes.server import HttpServer

Serve = Callable[[dict[str, Any]], tuple[Pipeline, HttpServer]]


def pattern(name: str, **extra: Any) -> dict[str, Any]:
    """An endless ball pattern, 160x90 at 15 fps, paced like a camera."""
    return {
        "type": "test-source",
        "name": name,
        "width": 160,
        "height": 90,
        "fps": 15,
        "frames": None,
        "real_time": True,
        **extra,
    }


PATTERN_URI = "test://ball?width=160&height=90&fps=15"


def tiled_config(*names: str, **extra: Any) -> dict[str, Any]:
    """Streams ``names`` tiled into 320x180 for a web-view sink, kept alive for added streams."""
    return {
        "sources": [pattern(name) for name in names or ("a", "b")],
        "tiler": {"width": 320, "height": 180},
        "sinks": [{"type": "web-view"}],
        "keep_alive": True,
        "perf": {"interval_s": 0},
        **extra,
    }


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 15.0) -> Any:
    """Poll ``condition`` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)
