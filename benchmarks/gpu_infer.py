"""GPU inference benchmark: yolox-nano on backend torch, by batch size, with and without CUDA
graphs.

Measured in one run, for each batch size and each setting:
- model-only images/s: ``TorchBackend.run_device`` on a batch already on the device (random
  values, the model's precision), timed between ``torch.cuda.synchronize()`` calls;
- detector images/s: the whole device path of the infer element (``Detector.detect``): uint8
  BGR frames of the shared clips already on the device (as hardware decoding leaves them) ->
  letterbox and normalisation -> model -> YOLOX decode -> thresholds and NMS -> boxes on the
  host; and its ratio to model-only (the cost of pre- and post-processing);
- load time of the model: converted (first start) and from the cache (next starts);
- the CUDA-graph speed-up at each batch size (graphs / eager, both measured in this run).

Warm-up runs are excluded from every timing; each figure is the median of ``--repeats`` timed
runs of at least ``--seconds`` each.

Run on a GPU machine (defaults: cuda, fp16, batches 1 8 32 64 128):
``python benchmarks/gpu_infer.py``; smoke check on a CPU:
``python benchmarks/gpu_infer.py --device cpu --batches 1 4``. Writes ``$OUT/gpu_infer.json``
when ``OUT`` is set, else ``benchmarks/results/gpu_infer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from panoptes.models.backends.pytorch import TorchBackend, device_label
from panoptes.models.detector import Detector
from panoptes.models.gpu.cache import file_sha256

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("PANOPTES_TEST_ASSETS") or REPO / ".." / "shared" / "assets").resolve()
MODEL = ASSETS / "models" / "yolox_nano.onnx"
CLIPS = {
    "one-by-one-person-detection.mp4": (150, 275, 400),
    "person-bicycle-car-detection.mp4": (0, 60, 120),
    "Retail02_short.mp4": (0, 30, 60),
}


def clip_frames() -> tuple[list[np.ndarray], str]:
    """Frames of the shared clips (BGR uint8), or a random 1080p frame when they cannot be read."""
    frames: list[np.ndarray] = []
    for name, indices in CLIPS.items():
        capture = cv2.VideoCapture(str(ASSETS / "videos" / name))
        for index in range(max(indices) + 1):
            ok, frame = capture.read()
            if not ok:
                break
            if index in indices:
                frames.append(frame)
        capture.release()
    if frames:
        return frames, f"{len(frames)} frames of the shared clips ({', '.join(CLIPS)})"
    generator = np.random.default_rng(0)
    return [generator.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)], "random 1080p frame"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_s(
    run: Callable[[], object], images: int, device: torch.device, args: argparse.Namespace
) -> float:
    """Median images/s of ``run`` (``images`` each) over ``args.repeats`` timed runs."""
    for _ in range(args.warmup):
        run()
    synchronize(device)
    rates = []
    for _ in range(args.repeats):
        calls = 0
        started = time.perf_counter()
        while True:
            run()
            calls += 1
            if calls % 4 == 0 or args.seconds <= 0:
                synchronize(device)
                elapsed = time.perf_counter() - started
                if elapsed >= args.seconds:
                    break
        rates.append(calls * images / elapsed)
    return statistics.median(rates)


def measure(
    batch_size: int,
    cuda_graphs: bool,
    frames: list[np.ndarray],
    args: argparse.Namespace,
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "device": args.device,
        "precision": args.precision,
        "batch_size": batch_size,
        "cuda_graphs": cuda_graphs,
        "compile": args.compile,
        "cache_dir": args.cache_dir,
    }
    backend = TorchBackend(args.model, **options)
    device = backend.device
    shape = backend.inputs[0].shape
    model_input = torch.rand(shape, device=device).mul_(255).to(backend.input_dtype)  # type: ignore[arg-type]
    model_rate = images_per_s(lambda: backend.run_device(model_input), batch_size, device, args)
    load = {"load_s": round(backend.load_s, 3), "cache_hit": backend.cache_hit}
    backend.close()

    detector = Detector(args.model, backend="torch", backend_options=options)
    reloaded: Any = detector._backend  # the same model again: from the cache
    load["reload_s"] = round(reloaded.load_s, 3)
    load["reload_cache_hit"] = reloaded.cache_hit
    on_device = [torch.from_numpy(frames[i % len(frames)]).to(device) for i in range(batch_size)]
    detector_rate = images_per_s(
        lambda: detector.detect(on_device),  # type: ignore[arg-type]
        batch_size,
        device,
        args,
    )
    detector.close()
    return {
        "batch_size": batch_size,
        "cuda_graphs": cuda_graphs,
        "model_images_per_s": round(model_rate, 1),
        "detector_images_per_s": round(detector_rate, 1),
        "detector_over_model": round(detector_rate / model_rate, 3),
        **load,
    }


def machine(device: torch.device) -> dict[str, Any]:
    described: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "device": device_label(device),
    }
    if device.type == "cuda":
        described["cuda"] = torch.version.cuda
        described["gpu_memory_gib"] = round(
            torch.cuda.get_device_properties(device).total_memory / 2**30, 1
        )
    else:
        described["torch_threads"] = torch.get_num_threads()
    return described


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--precision", choices=["fp16", "fp32"], help="default fp16 on cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64, 128])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--seconds", type=float, default=2.0, help="per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="also torch.compile the model")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--cache-dir", type=Path, help="default: a new temporary folder")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.precision = args.precision or ("fp16" if args.device == "cuda" else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU here; use --device cpu for a smoke check")
    temporary = None
    if args.cache_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="panoptes-gpu-infer-")
        args.cache_dir = Path(temporary.name)
    out = args.out or (
        Path(os.environ["OUT"]) / "gpu_infer.json"
        if os.environ.get("OUT")
        else REPO / "benchmarks" / "results" / "gpu_infer.json"
    )

    frames, frames_source = clip_frames()
    settings = [False, True] if args.device == "cuda" else [False]
    results = []
    for batch_size in args.batches:
        for cuda_graphs in settings:
            result = measure(batch_size, cuda_graphs, frames, args)
            results.append(result)
            print(json.dumps(result), flush=True)
    graph_speedup = {
        str(batch_size): round(
            next(r for r in results if r["batch_size"] == batch_size and r["cuda_graphs"])[
                "model_images_per_s"
            ]
            / next(r for r in results if r["batch_size"] == batch_size and not r["cuda_graphs"])[
                "model_images_per_s"
            ],
            3,
        )
        for batch_size in args.batches
        if len(settings) == 2
    }
    report: dict[str, Any] = {
        "benchmark": "gpu_infer",
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine(torch.device(args.device)),
        "model": {
            "path": args.model.name,
            "sha256": file_sha256(args.model),
            "backend": "torch",
            "precision": args.precision,
            "compile": args.compile,
        },
        "inputs": {
            "model_only": "random values on the device, the model's precision",
            "detector": f"{frames_source}, uint8 BGR on the device, tiled to the batch",
        },
        "timing": {"seconds": args.seconds, "repeats": args.repeats, "warmup_runs": args.warmup},
        "results": results,
        "cuda_graph_speedup_model_only": graph_speedup,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{report['machine']['device']}, {args.precision}, {args.model.name} -> {out}")
    print(
        f"{'batch':>5} {'graphs':>6} {'model img/s':>12} {'detector img/s':>15} {'ratio':>6} "
        f"{'load s':>7} {'cached s':>8}"
    )
    for r in results:
        print(
            f"{r['batch_size']:>5} {r['cuda_graphs']!s:>6} {r['model_images_per_s']:>12.1f} "
            f"{r['detector_images_per_s']:>15.1f} {r['detector_over_model']:>6.2f} "
            f"{r['load_s']:>7.2f} {r['reload_s']:>8.2f}"
        )
    if temporary is not None:
        temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
