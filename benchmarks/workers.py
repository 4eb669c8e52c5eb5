"""Worker processes benchmark: four camera streams through yolox-nano into a fakesink, run as
one pipeline in this process, as one worker process, and as two worker processes (``panoptes
run --workers N``), end-to-end frames per second of the whole.

The four streams are the two 768x432 H.264 shared clips twice each, looping, read as fast as
the pipeline takes them. The model keeps its defaults (``instances``, ``threads``), which a
worker takes from its share of the cores, so that the layouts run as many model threads.

For each layout the supervisor (or the pipeline) is built and started, the first frame of every
stream awaited, then ``--warmup-s`` seconds pass before the frames that leave the detector are
counted over ``--measure-s`` seconds. The layouts take turns, ``--runs`` times (default 3), so
that the machine's noise falls on all of them; the summary gives each one's median and the
ratios of the medians: two workers over one (the scaling), and one worker over the pipeline in
this process (what a worker process costs).

Run: ``make bench`` or ``.venv/bin/python benchmarks/workers.py [--runs 3]``; writes
``benchmarks/results/workers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _live import machine
from panoptes import Pipeline
from panoptes.config.loader import parse_config
from panoptes.workers import Supervisor

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("PANOPTES_TEST_ASSETS") or REPO / ".." / "shared" / "assets").resolve()
CLIPS = [
    "one-by-one-person-detection.mp4",
    "person-bicycle-car-detection.mp4",
    "one-by-one-person-detection.mp4",
    "person-bicycle-car-detection.mp4",
]
CLIP_FPS = 10.0
"""The slower clip's frame rate (the other is 12): a stream is held in real time at this."""
LAYOUTS = {"in_process": 0, "one_worker": 1, "two_workers": 2}
"""Each layout and its worker processes (0: the pipeline runs in this process)."""


def config() -> dict[str, Any]:
    return {
        "sources": [
            {"uri": str(ASSETS / "videos" / clip), "loop": True, "name": f"cam{index}"}
            for index, clip in enumerate(CLIPS)
        ],
        "infer": [{"name": "detector", "model": "yolox-nano"}],
        "sinks": [{"type": "fakesink"}],
        "perf": {"interval_s": 0},
    }


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def supervisor_fps(supervisor: Supervisor, measure_s: float) -> tuple[float, int, float]:
    """Frames/s of all of ``supervisor``'s workers over about ``measure_s`` seconds, each worker's
    counted between two of its reports by its own clock (reports come every half second, so the
    supervisor's totals alone would be off by up to a report at each end); with the frames and
    the mean window."""
    before = {info.index: info for info in supervisor.workers()}
    time.sleep(measure_s)
    after = {info.index: info for info in supervisor.workers()}
    fps, frames, windows = 0.0, 0, []
    for index, last in after.items():
        first = before[index]
        if last.elapsed_s is None or first.elapsed_s is None or last.elapsed_s <= first.elapsed_s:
            raise RuntimeError(f"worker {index} sent no report during the measurement")
        window_s = last.elapsed_s - first.elapsed_s
        fps += (last.frames_out - first.frames_out) / window_s
        frames += last.frames_out - first.frames_out
        windows.append(window_s)
    return fps, frames, sum(windows) / len(windows)


def measure(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """Frames/s of the whole with ``workers`` processes (0: a pipeline in this process)."""
    parsed = parse_config(config())
    runner: Any
    if workers == 0:
        runner = Pipeline(parsed)

        def playing() -> bool:
            return all(stream.stats.frames_out > 0 for stream in runner.streams())
    else:
        runner = Supervisor(parsed, gpus=[None] * workers, base_dir=REPO)

        def playing() -> bool:
            return all(row.frames_out > 0 for row in runner.rows())

    began = time.monotonic()
    runner.build()
    runner.start()
    try:
        wait_until(playing, args.start_timeout_s, "every stream's first frame")
        first_frames_s = time.monotonic() - began
        time.sleep(args.warmup_s)
        cpu_before = os.times()
        if workers:
            cpu_s = {info.index: info.cpu_s or 0.0 for info in runner.workers()}
            fps, frames, elapsed_s = supervisor_fps(runner, args.measure_s)
            cores = {
                f"worker{info.index}_cores": round(
                    ((info.cpu_s or 0.0) - cpu_s[info.index]) / elapsed_s, 2
                )
                for info in runner.workers()
            }
        else:
            start_frames, start_s = runner.frames_out(), time.monotonic()
            time.sleep(args.measure_s)
            frames, elapsed_s = runner.frames_out() - start_frames, time.monotonic() - start_s
            fps, cores = frames / elapsed_s, {}
        cpu_after = os.times()
    finally:
        runner.stop()
        runner.wait(60)
        if workers:
            runner.close()
    own_cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return {
        "fps": fps,
        "frames": frames,
        "elapsed_s": round(elapsed_s, 2),
        "streams_real_time": round(fps / CLIP_FPS, 2),
        "first_frames_s": round(first_frames_s, 2),
        "this_process_cores": round(own_cpu_s / elapsed_s, 2),
        **cores,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--measure-s", type=float, default=10.0)
    parser.add_argument("--start-timeout-s", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/workers.json")
    args = parser.parse_args(argv)
    # The shared models stand in for the zoo's downloads.
    os.environ.setdefault("PANOPTES_MODEL_PATH", str(ASSETS / "models"))
    started = time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in LAYOUTS}
    for run in range(args.runs):
        for name, workers in LAYOUTS.items():
            result = measure(workers, args)
            runs[name].append(result)
            print(f"run {run + 1}/{args.runs} {name}: {result['fps']:.1f} fps", flush=True)
    medians = {name: statistics.median(r["fps"] for r in results) for name, results in runs.items()}
    report = {
        "benchmark": "workers",
        "command": " ".join(["benchmarks/workers.py", *sys.argv[1:]]),
        "machine": machine(),
        "inputs": {
            "streams": CLIPS,
            "loop": True,
            "model": "yolox-nano (onnxruntime, CPU, default instances and threads: a worker's "
            "taken from its share of the cores)",
            "sink": "fakesink",
        },
        "settings": {
            "runs": args.runs,
            "warmup_s": args.warmup_s,
            "measure_s": args.measure_s,
            "clip_fps": CLIP_FPS,
        },
        "runs": runs,
        "median_fps": medians,
        "two_over_one_worker": medians["two_workers"] / medians["one_worker"],
        "one_worker_over_in_process": medians["one_worker"] / medians["in_process"],
        "total_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("median_fps", "two_over_one_worker")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
