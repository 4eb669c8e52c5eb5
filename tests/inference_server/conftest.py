"""Fixtures of the Triton tests: a real Triton server (see ``triton_server.py``) for the session."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from triton_server import VENV, TritonEnvironment, TritonServer, triton_environment


@pytest.fixture(scope="session")
def triton_env() -> TritonEnvironment:
    """PyTriton's environment; the tests that need it are skipped, saying why, without it."""
    try:
        return triton_environment()
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        pytest.skip(
            f"cannot make the PyTriton environment {VENV} for a real Triton server: {error}"
        )


@pytest.fixture(scope="session")
def triton_server(
    triton_env: TritonEnvironment,
    assets: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TritonServer]:
    """One server for the session. A test that stops it starts it again before it ends."""
    server = TritonServer(
        triton_env,
        assets / "models" / "yolox_nano.onnx",
        tmp_path_factory.mktemp("triton") / "server.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_server(triton_server: TritonServer) -> TritonServer:
    """The session's server, started again if a test before left it stopped."""
    if not triton_server.running:
        triton_server.start()
    return triton_server
