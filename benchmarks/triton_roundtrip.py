"""Triton round trip: what a batch costs through a Triton server against the same model run here.

Measured in one run, on the same batches of real frames (the indoor clip, pre-processed for
yolox-nano: float32 [N, 3, 416, 416]) at N = 1, 4 and 8:
- ``onnxruntime``: the local backend, one session (the model file fixes its batch at one, so the
  N images run one after another), with as many threads as the server's session;
- ``triton_*``: :class:`~panoptes.models.backends.triton.TritonBackend` to a Triton server on
  this host (PyTriton's tritonserver, the same ONNX file in onnxruntime behind its Python
  backend), the whole batch in one request: over gRPC and HTTP, tensors through system shared
  memory and over the socket;
- per batch: the median round trip, the median overhead over the local run of the same repeat,
  the ratio triton / local, and the server's own mean compute time per request (Triton's
  statistics: the model's time, its Python backend included) to tell the transport apart.

Every repeat runs every configuration on the same batch, interleaved, so that a noisy moment of
the shared machine falls on all alike; warm-up requests are not counted.

Run: ``.venv/bin/python benchmarks/triton_roundtrip.py`` (``--url HOST:PORT`` for a gRPC server
already serving ``yolox_nano``; by default the PyTriton server of the tests is started, its
environment made first when missing); writes ``benchmarks/results/triton.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import numpy as np
import tritonclient.grpc

from _live import machine
from panoptes.models.backends.onnxruntime import OnnxRuntimeBackend
from panoptes.models.backends.triton import TritonBackend
from panoptes.models.preprocess import Preprocessor, PreprocessSpec

REPO = Path(__file__).resolve().parents[1]
ASSETS = (REPO / ".." / "shared" / "assets").resolve()
MODEL = ASSETS / "models" / "yolox_nano.onnx"
CLIP = ASSETS / "videos" / "one-by-one-person-detection.mp4"
RESULT = REPO / "benchmarks" / "results" / "triton.json"
BATCH_SIZES = (1, 4, 8)
CONFIGS = {
    "triton_grpc_shm": ("grpc", "system"),
    "triton_grpc": ("grpc", "off"),
    "triton_http_shm": ("http", "system"),
    "triton_http": ("http", "off"),
}


def _test_server_module() -> ModuleType:
    """The tests' server helper (one definition of how the PyTriton server is made and run),
    loaded from its file: the tests folder is not a package."""
    path = REPO / "tests" / "triton" / "triton_server.py"
    spec = importlib.util.spec_from_file_location("triton_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@contextmanager
def triton_urls(grpc_url: str | None, http_url: str | None) -> Iterator[dict[str, str]]:
    """The gRPC and HTTP addresses of a server serving yolox_nano: the given ones, else those of
    the tests' PyTriton server, started here and stopped at the end."""
    if grpc_url is not None:
        yield {"grpc": grpc_url, **({"http": http_url} if http_url else {})}
        return
    helper = _test_server_module()
    with tempfile.TemporaryDirectory() as folder:
        server = helper.TritonServer(helper.triton_environment(), MODEL, Path(folder) / "log")
        server.start()
        try:
            yield {"grpc": server.grpc_url, "http": server.http_url}
        finally:
            server.stop()


def clip_batch(size: int) -> np.ndarray:
    """``size`` frames of the clip, 10 apart, as yolox-nano's input."""
    images: list[np.ndarray] = []
    with av.open(str(CLIP)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 10 == 0:
                images.append(frame.to_ndarray(format="bgr24"))
            if len(images) == size:
                break
    spec = PreprocessSpec((416, 416), pad_position="top-left", pad_value=114.0)
    batch, _ = Preprocessor(spec)(images)
    return batch


def server_statistics(url: str) -> Callable[[], tuple[float, int]]:
    """A reader of the server's total compute time (ms) and images inferred for yolox_nano."""
    client = tritonclient.grpc.InferenceServerClient(url)

    def read() -> tuple[float, int]:
        stats = client.get_inference_statistics("yolox_nano", as_json=True)
        model = stats["model_stats"][0]
        compute = model["inference_stats"]["compute_infer"]
        return int(compute.get("ns", 0)) / 1e6, int(model.get("inference_count", 0))

    return read


def compute_ms(
    read: Callable[[], tuple[float, int]], before: tuple[float, int], size: int
) -> float:
    """The server's compute time of the request made since ``before``, once its statistics
    count it (they are updated after the response leaves)."""
    deadline = time.monotonic() + 2.0
    after = read()
    while after[1] < before[1] + size and time.monotonic() < deadline:
        time.sleep(0.005)
        after = read()
    return after[0] - before[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=None, help="gRPC host:port of a running server")
    parser.add_argument("--http-url", default=None, help="its HTTP host:port (with --url)")
    parser.add_argument("--repeats", type=int, default=30, help="timed batches per setting")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per setting")
    parser.add_argument("--threads", type=int, default=1, help="local onnxruntime threads")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()

    batches = {size: clip_batch(size) for size in BATCH_SIZES}
    with triton_urls(args.url, args.http_url) as urls:
        local = OnnxRuntimeBackend(MODEL, threads=args.threads)
        remotes = {
            name: TritonBackend(
                "yolox-nano", url=urls[protocol], protocol=protocol, shared_memory=memory
            )
            for name, (protocol, memory) in CONFIGS.items()
            if protocol in urls
        }
        stats = server_statistics(urls["grpc"])

        def run_local(batch: np.ndarray) -> None:
            for index in range(len(batch)):
                local.run(batch[index : index + 1])

        runners: dict[str, Callable[[np.ndarray], Any]] = {"onnxruntime": run_local}
        runners.update({name: backend.run for name, backend in remotes.items()})
        timings: dict[int, dict[str, list[float]]] = {}
        compute: dict[int, dict[str, float]] = {}
        for size, batch in batches.items():
            for run in runners.values():
                for _ in range(args.warmup):
                    run(batch)
            timings[size] = {name: [] for name in runners}
            server_ms = {name: 0.0 for name in remotes}
            for _ in range(args.repeats):
                for name, run in runners.items():
                    before = stats() if name in remotes else None
                    started = time.perf_counter()
                    run(batch)
                    timings[size][name].append((time.perf_counter() - started) * 1000)
                    if before is not None:
                        server_ms[name] += compute_ms(stats, before, size)
            compute[size] = {name: total / args.repeats for name, total in server_ms.items()}
        for backend in remotes.values():
            backend.close()
        local.close()

    per_batch: dict[str, Any] = {}
    for size, measured in timings.items():
        local_ms = measured["onnxruntime"]
        entry: dict[str, Any] = {"onnxruntime_ms": round(statistics.median(local_ms), 2)}
        for name in remotes:
            remote_ms = measured[name]
            overheads = [r - o for r, o in zip(remote_ms, local_ms, strict=True)]
            ratios = [r / o for r, o in zip(remote_ms, local_ms, strict=True)]
            entry[name] = {
                "round_trip_ms": round(statistics.median(remote_ms), 2),
                "overhead_ms": round(statistics.median(overheads), 2),
                "overhead_ms_per_image": round(statistics.median(overheads) / size, 2),
                "over_local": round(statistics.median(ratios), 3),
                "server_compute_ms": round(compute[size][name], 2),
            }
        per_batch[f"batch_{size}"] = entry
    results = {
        "benchmark": "triton",
        "machine": machine(),
        "inputs": {
            "model": MODEL.name,
            "frames": f"{CLIP.name}, every 10th frame, letterboxed to 416x416",
            "batch_sizes": list(BATCH_SIZES),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "local_threads": args.threads,
            "server": "the tests' PyTriton server on this host "
            "(tests/inference_server/serve_yolox.py): tritonserver, Python backend, "
            "onnxruntime with 1 thread, max_batch_size 8"
            if args.url is None
            else args.url,
            "tritonclient": version("tritonclient"),
            "onnxruntime": version("onnxruntime"),
        },
        "per_batch": per_batch,
        "per_batch_ms": {
            f"batch_{size}": {name: [round(v, 2) for v in runs] for name, runs in measured.items()}
            for size, measured in timings.items()
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["per_batch"], indent=2))


if __name__ == "__main__":
    main()
