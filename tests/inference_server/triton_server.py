"""A real Triton Inference Server for the tests and the benchmark: the one PyTriton bundles,
serving the shared yolox-nano model through onnxruntime (``serve_yolox.py``) on free ports of
127.0.0.1.

PyTriton pins numpy < 2, which panoptes' own environment does not take, so it lives in a virtual
environment of its own, ``.venv-triton`` at the repository root: made by the first test session
that needs it (under a minute with PyPI at hand), reused by the next ones. The tests are skipped,
saying why, only when it cannot be made (no network, no libpython for the server's Python
backend).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-triton"
REQUIREMENTS = ("nvidia-pytriton~=0.7.0", "onnxruntime>=1.17")
SERVE = Path(__file__).with_name("serve_yolox.py")
MODEL_NAME = "yolox_nano"
MAX_BATCH_SIZE = 8
START_TIMEOUT_S = 120.0


def _run(command: list[str], timeout_s: float) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(command[:4])}... failed: " + " | ".join(tail))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One test session at a time makes the environment; the others wait for it."""
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _make_venv() -> Path:
    """``.venv-triton``'s python, the environment made first when it is missing or stale."""
    python = VENV / "bin" / "python"
    marker = VENV / ".installed"
    wanted = " ".join(REQUIREMENTS)
    with _locked(REPO / ".venv-triton.lock"):
        if marker.is_file() and marker.read_text() == wanted and python.exists():
            return python
        # The interpreter panoptes' own environment was made from: a python the server's
        # Python backend has a stub for (3.8 to 3.12).
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", "--clear", str(VENV)], timeout_s=300)
        _run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], timeout_s=600)
        _run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], timeout_s=1200)
        marker.write_text(wanted)
    return python


def _library_dir(python: Path) -> str:
    """The folder of the environment's libpython, which the server's Python backend stub loads:
    without it first on LD_LIBRARY_PATH the stub may find the system's, of another build."""
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import sysconfig as s; print(s.get_config_var('LIBDIR'), "
            "s.get_config_var('INSTSONAME'), sep='\\n')",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    library_dir, soname = out[0], out[1]
    if not (Path(library_dir) / soname).exists():
        raise RuntimeError(
            f"tritonserver's Python backend needs {soname}, not found in {library_dir}: a "
            "Python built with --enable-shared (Debian's python3 with its libpython3.X package)"
        )
    return library_dir


@dataclass(frozen=True)
class TritonEnvironment:
    python: Path
    library_dir: str


def triton_environment() -> TritonEnvironment:
    """The PyTriton environment, made when missing; RuntimeError or OSError when it cannot be."""
    python = _make_venv()
    return TritonEnvironment(python, _library_dir(python))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class TritonServer:
    """``serve_yolox.py`` in its own process group; stopped with SIGTERM as an operator would."""

    environment: TritonEnvironment
    model: Path
    log: Path
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def url(self, protocol: str) -> str:
        return self.grpc_url if protocol == "grpc" else self.http_url

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        env = os.environ.copy()
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            part for part in (self.environment.library_dir, env.get("LD_LIBRARY_PATH")) if part
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.environment.python),
                    str(SERVE),
                    str(self.model),
                    *("--model-name", MODEL_NAME, "--max-batch-size", str(MAX_BATCH_SIZE)),
                    *("--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port)),
                    *("--metrics-port", str(self.metrics_port)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        ready = f"http://{self.http_url}/v2/models/{MODEL_NAME}/ready"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Triton server exited at start:\n{self._log_tail()}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(ready, timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(
            f"the Triton server was not ready in {START_TIMEOUT_S:g} s:\n{self._log_tail()}"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # PyTriton ignores SIGINT
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # Its tritonserver child is in the same process group, which this test started.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def _log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
