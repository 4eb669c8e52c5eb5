"""CPU benchmark: four camera streams of the shared clips through yolox-nano into a fakesink.

Measured in one run, on the same frames:
- model-only FPS: the backend alone (onnxruntime ``run`` on pre-decoded, pre-processed frames,
  the pipeline's own session settings and batch composition);
- panoptes end-to-end FPS (decode, mux, pre-processing, inference, parsing, sink) and the
  pipeline efficiency = end-to-end / model-only (target >= 0.8);
- a plain loop a user would write (OpenCV capture per camera, round robin, the same model and
  the same pre- and post-processing, frame by frame) and panoptes' speed-up over it (>= 1.2x);
- peak RSS of a looping run after 500 and after 5,000 frames (growth target <= 10%).

Each set is measured ``--runs`` times (default 3); the summary gives the medians.

Two sets of four streams are measured: ``mixed`` (all three shared clips, one twice, with the
1080p HEVC clip) and ``h264`` (the two 768x432 H.264 clips, twice each). The memory run uses
``mixed``.

Run: ``make bench`` or ``.venv/bin/python benchmarks/cpu_pipeline.py [--frames 300]``; writes
``benchmarks/results/cpu_pipeline.json``. Warm-up runs are excluded from every timing.
"""

from __future__ import annotations

import argparse
import json
import os
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

from _live import machine
from panoptes import Pipeline
from panoptes.elements.infer import default_instances
from panoptes.media.reader import open_reader
from panoptes.models.detector import Detector
from panoptes.models.pool import DetectorPool
from panoptes.models.preprocess import preprocess_batch

REPO = Path(__file__).resolve().parents[1]
VIDEOS = (REPO / ".." / "shared" / "assets" / "videos").resolve()
MODELS = (REPO / ".." / "shared" / "assets" / "models").resolve()
CLIP_SETS = {
    # Every shared clip, the 1080p HEVC one included: decoding it costs about 10 ms of CPU a
    # frame here, a fifth of the machine at this frame rate.
    "mixed": [
        "one-by-one-person-detection.mp4",
        "person-bicycle-car-detection.mp4",
        "Retail02_short.mp4",
        "one-by-one-person-detection.mp4",
    ],
    # The two 768x432 H.264 clips, twice each: where decoding is cheap.
    "h264": [
        "one-by-one-person-detection.mp4",
        "person-bicycle-car-detection.mp4",
        "one-by-one-person-detection.mp4",
        "person-bicycle-car-detection.mp4",
    ],
}


def rss_mb() -> float:
    """Current resident set size of this process (VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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


def model_only(
    detector: DetectorPool, streams: list[list[np.ndarray]], repeats: int
) -> dict[str, Any]:
    """The backend alone, on batches of one frame per stream, pre-processed beforehand."""
    count = min(len(s) for s in streams)
    batches = [
        preprocess_batch([s[i] for s in streams], detector.preprocess)[0] for i in range(count)
    ]
    for batch in batches[:5]:  # warm-up
        detector.run_tensors(batch)
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        for batch in batches:
            detector.run_tensors(batch)
        runs.append(count * len(streams) / (time.perf_counter() - began))
    return {"fps_runs": runs, "fps": statistics.median(runs), "frames": count * len(streams)}


def end_to_end(paths: list[Path], frames_per_stream: int, infer: dict[str, Any]) -> dict[str, Any]:
    config = {
        "sources": [
            {"uri": str(p), "max_frames": frames_per_stream, "name": f"cam{i}"}
            for i, p in enumerate(paths)
        ],
        "mux": {"batch_size": len(paths)},
        "infer": [{"name": "detector", "model": "yolox-nano", **infer}],
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


def memory_growth(paths: list[Path], total_frames: int, infer: dict[str, Any]) -> dict[str, Any]:
    config = {
        "sources": [{"uri": str(p), "loop": True, "name": f"cam{i}"} for i, p in enumerate(paths)],
        "mux": {"batch_size": len(paths)},
        "infer": [{"name": "detector", "model": "yolox-nano", **infer}],
        "sinks": [{"type": "fakesink"}],
        "perf": {"interval_s": 0},
    }
    pipeline = Pipeline(config)
    marks: dict[int, float] = {}
    seen = [0]
    done = threading.Event()
    samples: list[tuple[int, float, float]] = []

    def count(batch: Any) -> None:
        before = seen[0]
        seen[0] += len(batch)
        if seen[0] // 250 != before // 250:
            samples.append((seen[0], round(rss_mb(), 1), round(peak_rss_mb(), 1)))
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
        "samples_frames_rss_peak_mb": samples,
    }


def measure_set(
    paths: list[Path], args: argparse.Namespace, instances: int, threads: int
) -> dict[str, Any]:
    infer = {"instances": instances, "threads": threads}
    result: dict[str, Any] = {"streams": [p.name for p in paths]}
    with DetectorPool("yolox-nano", instances=instances, threads=threads) as detector:
        print("  model only ...", flush=True)
        result["model_only"] = model_only(detector, decode_frames(paths, args.frames), args.repeats)
    print("  end to end ...", flush=True)
    result["end_to_end"] = end_to_end(paths, args.frames, infer)
    print("  plain loop ...", flush=True)
    # A user's loop gets onnxruntime's own default threading; a single-threaded one is shown too.
    with Detector("yolox-nano") as user_detector:
        result["plain_loop"] = plain_loop(paths, args.frames, user_detector)
    with Detector("yolox-nano", threads=1) as user_detector:
        result["plain_loop_one_thread"] = plain_loop(paths, args.frames, user_detector)
    result["pipeline_efficiency"] = result["end_to_end"]["fps"] / result["model_only"]["fps"]
    result["speedup_over_plain_loop"] = result["end_to_end"]["fps"] / result["plain_loop"]["fps"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=300, help="frames per stream (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="model-only repeats (median taken)")
    parser.add_argument("--rss-frames", type=int, default=5000, help="frames of the memory run")
    parser.add_argument(
        "--sets", nargs="+", choices=sorted(CLIP_SETS), default=["mixed", "h264"], help="clip sets"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per set (medians reported)")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per model instance (default: infer's)"
    )
    parser.add_argument(
        "--instances", type=int, default=None, help="model instances (default: infer's)"
    )
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "cpu_pipeline.json"
    )
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("PANOPTES_MODEL_PATH", str(MODELS))
    instances = args.instances or default_instances()
    threads = args.threads or max(1, (os.cpu_count() or 1) // instances)
    mixed = [VIDEOS / name for name in CLIP_SETS["mixed"]]
    if args.memory_only:
        infer = {"instances": instances, "threads": threads}
        print(json.dumps(memory_growth(mixed, args.rss_frames, infer)))
        return

    results: dict[str, Any] = {
        "benchmark": "cpu_pipeline",
        "machine": machine(),
        "model": {
            "name": "yolox-nano",
            "input_size_wh": [416, 416],
            "batch_size": 1,
            "instances": instances,
            "threads_per_instance": threads,
        },
        "frames_per_stream": args.frames,
        "sets": {},
    }
    # Each run measures model-only, end-to-end and the plain loop back to back, so its ratios
    # see the same machine; the summary takes the median ratio over the runs.
    for name in args.sets:
        paths = [VIDEOS / clip for clip in CLIP_SETS[name]]
        runs = []
        for run in range(args.runs):
            print(f"{name}, run {run + 1} of {args.runs}:", flush=True)
            runs.append(measure_set(paths, args, instances, threads))
        results["sets"][name] = {
            "runs": runs,
            **{
                key: statistics.median(r[key] for r in runs)
                for key in ("pipeline_efficiency", "speedup_over_plain_loop")
            },
            **{
                f"{key}_fps": statistics.median(r[key]["fps"] for r in runs)
                for key in ("model_only", "end_to_end", "plain_loop", "plain_loop_one_thread")
            },
        }
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
            "--instances",
            str(instances),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    memory = json.loads(memory_run.stdout.strip().splitlines()[-1])
    results["memory"] = memory
    results["targets"] = {
        **{
            f"{name}: pipeline_efficiency >= 0.8": r["pipeline_efficiency"] >= 0.8
            for name, r in results["sets"].items()
        },
        **{
            f"{name}: speedup_over_plain_loop >= 1.2": r["speedup_over_plain_loop"] >= 1.2
            for name, r in results["sets"].items()
        },
        "rss_growth <= 0.10": memory["growth"] <= 0.10,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"medians of {args.runs} runs (fps; eff = e2e / model; x = e2e / plain loop)")
    print(f"{'set':<6} {'model':>7} {'e2e':>7} {'eff':>5} {'loop':>7} {'x':>5} {'runs: eff':>18}")
    for name, r in results["sets"].items():
        each = " ".join(f"{run['pipeline_efficiency']:.2f}" for run in r["runs"])
        print(
            f"{name:<6} {r['model_only_fps']:7.1f} {r['end_to_end_fps']:7.1f} "
            f"{r['pipeline_efficiency']:5.2f} {r['plain_loop_fps']:7.1f} "
            f"{r['speedup_over_plain_loop']:5.2f} {each:>18}"
        )
    peak_end = memory[f"peak_rss_mb_at_{args.rss_frames}"]
    print(
        f"peak RSS {memory['peak_rss_mb_at_500']:.0f} MiB at 500 frames, {peak_end:.0f} MiB at "
        f"{args.rss_frames} ({memory['growth']:+.1%})"
    )
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
