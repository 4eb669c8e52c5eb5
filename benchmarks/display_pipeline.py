"""CPU benchmark of tracking, drawing and encoding (extends ``cpu_pipeline.py``).

Measured in one run:
- tracker time per frame, per algorithm (bytetrack, sort, iou), with 10 and 100 objects moving
  through a 1280x720 frame: the ``tracker`` element's ``process`` on one-frame batches, so the
  figure includes writing ids and columns into the metadata (median over frames, warm-up
  excluded);
- the four-stream pipeline (the ``mixed`` clips of cpu_pipeline: the shared clips, the 1080p
  HEVC one included) with yolox-nano and a ByteTrack tracker, into a 1280x720 tiler, the osd and
  an H.264 file sink, against the same pipeline into a fakesink (no tiler, osd or encoding):
  the ratio of their frame rates is the cost of drawing and encoding.

Each pipeline pair is measured ``--runs`` times (default 3), alternating, and the summary gives
medians. Run: ``make bench`` or ``.venv/bin/python benchmarks/display_pipeline.py``; writes
``benchmarks/results/display_pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _live import machine
from panoptes import Batch, Frame, Pipeline
from panoptes.core.bus import Bus
from panoptes.core.element import BuildContext
from panoptes.elements.tracker import Tracker, TrackerProperties

REPO = Path(__file__).resolve().parents[1]
VIDEOS = (REPO / ".." / "shared" / "assets" / "videos").resolve()
MODELS = (REPO / ".." / "shared" / "assets" / "models").resolve()
CLIPS = [
    "one-by-one-person-detection.mp4",
    "person-bicycle-car-detection.mp4",
    "Retail02_short.mp4",
    "one-by-one-person-detection.mp4",
]


def moving_objects(count: int, frames: int, seed: int = 0) -> list[np.ndarray]:
    """xyxy [count, 4] per frame: boxes of 30-80 px moving at constant speed in 1280x720,
    bouncing off the borders, with a pixel of noise."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(30, 80, (count, 2))
    position = rng.uniform(0, 1, (count, 2)) * (np.array([1280, 720]) - size)
    velocity = rng.uniform(-6, 6, (count, 2))
    out = []
    for _ in range(frames):
        position += velocity
        for axis, limit in ((0, 1280), (1, 720)):
            low = position[:, axis] < 0
            high = position[:, axis] + size[:, axis] > limit
            velocity[low | high, axis] *= -1
            position[:, axis] = np.clip(position[:, axis], 0, limit - size[:, axis])
        noisy = position + rng.normal(0, 1, position.shape)
        out.append(np.concatenate([noisy, noisy + size], axis=1).astype(np.float32))
    return out


def tracker_time(algorithm: str, count: int, frames: int, warmup: int = 20) -> dict[str, Any]:
    tracker = Tracker(
        TrackerProperties(type=algorithm),
        name="tracker",
        context=BuildContext(Bus()),
    )
    tracker.build()
    image = np.zeros((720, 1280, 3), np.uint8)
    times = []
    ids: set[int] = set()
    for index, xyxy in enumerate(moving_objects(count, frames + warmup)):
        frame = Frame(0, "bench", index, None, 0.0, (1280, 720), image)
        frame.objects.add(
            xyxy, np.full(count, 0.9, np.float32), np.zeros(count, np.int32), ["person"] * count
        )
        batch = Batch([frame], index)
        began = time.perf_counter()
        tracker.process(batch)
        elapsed = time.perf_counter() - began
        if index >= warmup:
            times.append(elapsed)
            ids.update(int(t) for t in frame.objects.track_id if t >= 0)
    tracker.close()
    return {
        "objects": count,
        "frames": frames,
        "median_ms": 1000 * statistics.median(times),
        "p90_ms": 1000 * float(np.percentile(times, 90)),
        "track_ids_used": len(ids),
    }


def pipeline_run(frames_per_stream: int, display: bool, folder: Path) -> dict[str, Any]:
    sinks: list[dict[str, Any]] = (
        [{"type": "file", "path": str(folder / "tiled.mp4")}] if display else [{"type": "fakesink"}]
    )
    config: dict[str, Any] = {
        "sources": [
            {"uri": str(VIDEOS / clip), "max_frames": frames_per_stream, "name": f"cam{i}"}
            for i, clip in enumerate(CLIPS)
        ],
        "infer": [{"model": "yolox-nano"}],
        "tracker": {"type": "bytetrack"},
        "sinks": sinks,
        "perf": {"interval_s": 0},
    }
    if display:
        config["tiler"] = {"width": 1280, "height": 720}
        config["osd"] = {}
    pipeline = Pipeline(config)
    pipeline.build()  # model loading is not part of the timing
    began = time.perf_counter()
    summary = pipeline.run()
    elapsed = time.perf_counter() - began
    return {
        "fps": summary.frames / elapsed,
        "frames": summary.frames,
        "elapsed_s": elapsed,
        "errors": [str(m) for m in summary.errors],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=300, help="frames per stream (default 300)")
    parser.add_argument("--tracker-frames", type=int, default=300, help="frames per tracker case")
    parser.add_argument("--runs", type=int, default=3, help="pipeline runs (medians reported)")
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "display_pipeline.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("PANOPTES_MODEL_PATH", str(MODELS))
    results: dict[str, Any] = {
        "benchmark": "display_pipeline",
        "machine": machine(),
        "tracker": {},
    }
    for algorithm in ("bytetrack", "sort", "iou"):
        for count in (10, 100):
            print(f"tracker {algorithm}, {count} objects ...", flush=True)
            figures = tracker_time(algorithm, count, args.tracker_frames)
            results["tracker"][f"{algorithm}_{count}"] = figures
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            print(f"pipelines, run {run + 1} of {args.runs} ...", flush=True)
            plain = pipeline_run(args.frames, False, Path(folder))
            display = pipeline_run(args.frames, True, Path(folder))
            runs.append(
                {"fakesink": plain, "display": display, "ratio": display["fps"] / plain["fps"]}
            )
    results["pipelines"] = {
        "streams": CLIPS,
        "frames_per_stream": args.frames,
        "display": "tracker + tiler 1280x720 + osd + file (H.264, veryfast, crf 23)",
        "fakesink": "tracker + fakesink",
        "runs": runs,
        "fakesink_fps": statistics.median(r["fakesink"]["fps"] for r in runs),
        "display_fps": statistics.median(r["display"]["fps"] for r in runs),
        "display_over_fakesink": statistics.median(r["ratio"] for r in runs),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
