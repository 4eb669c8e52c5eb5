"""CPU benchmark: four camera streams of the shared clips through yolox-nano into a fakesink.

Measured in one run, on the same frames:
- model-only FPS: the backend alone (onnxruntime ``run`` on pre-decoded, pre-processed frames,
  the pipeline's own session settings and batch composition);
- panoptes end-to-end FPS (decode, mux, pre-processing, inference, parsing, sink) and the
  pipeline efficiency = end-to-end / model-only (target >= 0.8);
- a plain loop a user would write (OpenCV capture per camera, round robin, the same model and
  the same pre- and post-processing, frame by frame) and panoptes' speed-up over it (>= 1.2x);
- peak RSS of a looping run after 500 and after 5,000 frames (growth target <= 10%).

Run: ``make bench`` or ``.venv/bin/python benchmarks/cpu_pipeline.py [--frames 300]``; writes
``benchmarks/results/cpu_pipeline.json``. Warm-up runs are excluded from every timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from panoptes import Pipeline
from panoptes.elements.infer import default_threads
from panoptes.media.reader import open_reader
from panoptes.models.detector import Detector
from panoptes.models.preprocess import preprocess_batch

REPO = Path(__file__).resolve().parents[1]
VIDEOS = (REPO / ".." / "shared" / "assets" / "videos").resolve()
MODELS = (REPO / ".." / "shared" / "assets" / "models").resolve()
CLIPS = [
    "one-by-one-person-detection.mp4",
    "person-bicycle-car-detection.mp4",
    "Retail02_short.mp4",
    "one-by-one-person-detection.mp4",
]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def decode_frames(paths: list[Path], frames_per_stream: int) -> list[list[np.ndarray]]:
    streams = []
    for path in paths:
        reader = open_reader(str(path))
        reader.open()
        frames = []
        for decoded in reader.frames():
            frames.append(decoded.image)
            if len(frames) == frames_per_stream:
                break
        reader.close()
        streams.append(frames)
    return streams


def model_only(detector: Detector, streams: list[list[np.ndarray]], repeats: int) -> dict[str, Any]:
    """The backend alone, on batches of one frame per stream, pre-processed beforehand."""
    count = min(len(s) for s in streams)
    batches = [
        preprocess_batch([s[i] for s in streams], detector.preprocess)[0] for i in range(count)
    ]
    chunk = detector.batch_size or len(streams)
    for batch in batches[:5]:  # warm-up
        for start in range(0, len(batch), chunk):
            detector.run_tensors(batch[start : start + chunk])
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        for batch in batches:
            for start in range(0, len(batch), chunk):
                detector.run_tensors(batch[start : start + chunk])
        runs.append(count * len(streams) / (time.perf_counter() - began))
    return {"fps_runs": runs, "fps": statistics.median(runs), "frames": count * len(streams)}


def end_to_end(paths: list[Path], frames_per_stream: int, threads: int | None) -> dict[str, Any]:
    config = {
        "sources": [
            {"uri": str(p), "max_frames": frames_per_stream, "name": f"cam{i}"}
            for i, p in enumerate(paths)
        ],
        "mux": {"batch_size": len(paths)},
        "infer": [{"name": "detector", "model": "yolox-nano", "threads": threads}],
        "sinks": [{"type": "fakesink"}],
        "perf": {"interval_s": 0},
    }
    pipeline = Pipeline(config)
    pipeline.build()  # model loading is not part of the timing
    first_output: list[float] = []

    def stamp(batch: Any) -> None:
        if not first_output:
            first_output.append(time.perf_counter())

    pipeline.add_probe("detector", stamp)
    began = time.perf_counter()
    summary = pipeline.run()
    elapsed = time.perf_counter() - began
    errors = [str(m) for m in summary.errors]
    return {
        "fps": summary.frames / elapsed,
        "frames": summary.frames,
        "elapsed_s": elapsed,
        "first_output_s": first_output[0] - began if first_output else None,
        "errors": errors,
    }


def plain_loop(paths: list[Path], frames_per_stream: int, detector: Detector) -> dict[str, Any]:
    """What a user writes: one cv2.VideoCapture per camera, round robin, one frame at a time."""
    captures = [cv2.VideoCapture(str(p)) for p in paths]
    for capture in captures:  # warm-up: the first frame and first inference are not timed
        ok, frame = capture.read()
        detector.detect([frame])
    for capture in captures:
        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    frames = 0
    began = time.perf_counter()
    for _ in range(frames_per_stream):
        for capture in captures:
            ok, frame = capture.read()
            if not ok:
                continue
            detector.detect([frame])
            frames += 1
    elapsed = time.perf_counter() - began
    for capture in captures:
        capture.release()
    return {"fps": frames / elapsed, "frames": frames, "elapsed_s": elapsed}


def memory_growth(paths: list[Path], total_frames: int, threads: int | None) -> dict[str, Any]:
    config = {
        "sources": [{"uri": str(p), "loop": True, "name": f"cam{i}"} for i, p in enumerate(paths)],
        "mux": {"batch_size": len(paths)},
        "infer": [{"name": "detector", "model": "yolox-nano", "threads": threads}],
        "sinks": [{"type": "fakesink"}],
        "perf": {"interval_s": 0},
    }
    pipeline = Pipeline(config)
    marks: dict[int, float] = {}
    seen = [0]
    done = threading.Event()

    def count(batch: Any) -> None:
        seen[0] += len(batch)
        for mark in (500, total_frames):
            if seen[0] >= mark and mark not in marks:
                marks[mark] = peak_rss_mb()
        if seen[0] >= total_frames:
            done.set()

    pipeline.add_probe("detector", count)
    pipeline.start()
    done.wait()
    pipeline.stop()
    pipeline.wait()
    growth = marks[total_frames] / marks[500] - 1
    return {
        "peak_rss_mb_at_500": marks[500],
        f"peak_rss_mb_at_{total_frames}": marks[total_frames],
        "growth": growth,
        "frames": seen[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=300, help="frames per stream (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="model-only repeats (median taken)")
    parser.add_argument("--rss-frames", type=int, default=5000, help="frames of the memory run")
    parser.add_argument(
        "--threads", type=int, default=None, help="onnxruntime threads (default: all)"
    )
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "cpu_pipeline.json"
    )
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("PANOPTES_MODEL_PATH", str(MODELS))
    paths = [VIDEOS / name for name in CLIPS]
    if args.memory_only:
        print(json.dumps(memory_growth(paths, args.rss_frames, args.threads)))
        return

    threads = args.threads or default_threads()
    detector = Detector("yolox-nano", threads=threads)
    streams = decode_frames(paths, args.frames)
    results: dict[str, Any] = {
        "benchmark": "cpu_pipeline",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "inputs": {"streams": CLIPS, "frames_per_stream": args.frames},
        "model": {
            "name": "yolox-nano",
            "path": str(detector.model_path),
            "input_size_wh": list(detector.input_size_wh),
            "batch_size": detector.batch_size,
            "threads": args.threads,
        },
    }
    print("model only ...", flush=True)
    results["model_only"] = model_only(detector, streams, args.repeats)
    del streams
    print("end to end ...", flush=True)
    results["end_to_end"] = end_to_end(paths, args.frames, threads)
    print("plain loop ...", flush=True)
    detector.close()
    # A user's loop gets onnxruntime's own default threading (all cores); the same loop with the
    # pipeline's thread count is reported too.
    with Detector("yolox-nano") as user_detector:
        results["plain_loop"] = plain_loop(paths, args.frames, user_detector)
    with Detector("yolox-nano", threads=threads) as user_detector:
        results["plain_loop_same_threads"] = plain_loop(paths, args.frames, user_detector)
    results["pipeline_efficiency"] = results["end_to_end"]["fps"] / results["model_only"]["fps"]
    results["speedup_over_plain_loop"] = results["end_to_end"]["fps"] / results["plain_loop"]["fps"]
    print("memory ...", flush=True)
    # In a process of its own: the peak RSS of this one already holds the decoded frames above.
    memory_run = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-only",
            "--rss-frames",
            str(args.rss_frames),
            "--threads",
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    results["memory"] = json.loads(memory_run.stdout.strip().splitlines()[-1])
    results["targets"] = {
        "pipeline_efficiency >= 0.8": results["pipeline_efficiency"] >= 0.8,
        "speedup_over_plain_loop >= 1.2": results["speedup_over_plain_loop"] >= 1.2,
        "rss_growth <= 0.10": results["memory"]["growth"] <= 0.10,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"model only      {results['model_only']['fps']:7.1f} fps")
    print(
        f"end to end      {results['end_to_end']['fps']:7.1f} fps   efficiency "
        f"{results['pipeline_efficiency']:.2f}"
    )
    print(
        f"plain loop      {results['plain_loop']['fps']:7.1f} fps   speed-up "
        f"{results['speedup_over_plain_loop']:.2f}x"
    )
    memory = results["memory"]
    print(
        f"peak RSS        {memory['peak_rss_mb_at_500']:.0f} MiB at 500 frames, "
        f"{memory[f'peak_rss_mb_at_{args.rss_frames}']:.0f} MiB at {args.rss_frames} "
        f"({memory['growth']:+.1%})"
    )
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
