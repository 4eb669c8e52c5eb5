"""Analytics benchmark: what the ``analytics`` element adds per frame with 100 tracked objects.

Synthetic input, so that the numbers measure the rules and nothing else: one 1920×1080 stream,
100 objects walking straight lines across the frame (each its own track id, some classes of
two kinds), and per stream three zones, three counting lines, two overcrowding zones and four
named directions plus the eight compass ones. Measured in one run, on the same frames:

- the analytics element's ``process`` per frame, with drawing (the default) and without;
- the ``tracker`` element (ByteTrack) on the same 100 boxes per frame, the stage before it,
  and the ratio analytics / tracker.

Each is measured ``--runs`` times (default 5) over ``--frames`` frames after ``--warmup``
frames that are not timed; the summary gives the median of the runs' per-frame means.

Run: ``.venv/bin/python benchmarks/analytics.py``; writes ``benchmarks/results/analytics.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from _live import machine
from panoptes import Batch, Bus, Frame
from panoptes.core.element import BuildContext, Element
from panoptes.core.meta import FrameMeta, Objects
from panoptes.elements.analytics import Analytics, AnalyticsProperties
from panoptes.elements.tracker import Tracker, TrackerProperties

REPO = Path(__file__).resolve().parents[1]
SIZE_WH = (1920, 1080)
OBJECTS = 100

RULES: dict[str, Any] = yaml.safe_load(
    """
streams:
  - source: "*"
    rois:
      - {name: left, polygon: [[0, 0], [640, 0], [640, 1080], [0, 1080]]}
      - {name: centre, polygon: [[700, 300], [1200, 250], [1250, 800], [650, 850]]}
      - {name: cars, polygon: [[1300, 0], [1920, 0], [1920, 1080], [1300, 1080]], class_ids: [2]}
    lines:
      - {name: middle, direction: [[960, 400], [960, 700]], line: [[100, 540], [1820, 540]]}
      - name: door
        direction: [[800, 500], [1100, 500]]
        line: [[960, 100], [960, 1000]]
        mode: strict
      - {name: diagonal, direction: [[0, 0], [1, 1]], line: [[0, 1080], [1920, 0]], extended: true}
    overcrowding:
      - {name: queue, polygon: [[0, 700], [900, 700], [900, 1080], [0, 1080]], threshold: 10}
      - name: hall
        polygon: [[400, 100], [1500, 100], [1500, 600], [400, 600]]
        threshold: 20
        time_threshold_ms: 1000
    directions:
      - {name: to-door, vector: [[0, 0], [1, 0]]}
      - {name: to-exit, vector: [[1, 0], [0, 0]]}
      - {name: up, vector: [[0, 1], [0, 0]]}
      - {name: down, vector: [[0, 0], [0, 1]], mode: strict}
    compass: true
"""
)


def make_frames(count: int, seed: int = 0) -> list[Objects]:
    """``count`` frames of ``OBJECTS`` tracked boxes walking across the frame, wrapping at
    its edges (a wrapped walker gets a new track id, as a tracker would give it)."""
    rng = np.random.default_rng(seed)
    start = rng.uniform((0, 0), SIZE_WH, (OBJECTS, 2))
    velocity = rng.uniform(-12, 12, (OBJECTS, 2))
    size_wh = rng.uniform((30, 60), (90, 200), (OBJECTS, 2))
    class_id = np.where(rng.random(OBJECTS) < 0.8, 0, 2).astype(np.int32)
    labels = ["person" if c == 0 else "car" for c in class_id]
    frames = []
    for frame_num in range(count):
        travelled = start + velocity * frame_num
        laps = np.floor_divide(travelled, SIZE_WH).astype(np.int64)
        xy = np.mod(travelled, SIZE_WH)
        track_id = np.arange(1, OBJECTS + 1) + OBJECTS * (np.abs(laps).sum(axis=1))
        boxes = np.column_stack(
            [
                xy[:, 0] - size_wh[:, 0] / 2,
                xy[:, 1] - size_wh[:, 1],
                xy[:, 0] + size_wh[:, 0] / 2,
                xy[:, 1],
            ]
        )
        objects = Objects()
        objects.add(boxes, np.full(OBJECTS, 0.9, np.float32), class_id, labels, track_id=track_id)
        frames.append(objects)
    return frames


def batches(frames: list[Objects]) -> list[Batch]:
    """One single-frame batch per frame, with fresh copies of the objects."""
    image = np.zeros((8, 8, 3), np.uint8)
    return [
        Batch(
            [Frame(0, "cam0", frame_num, frame_num / 30, 0.0, SIZE_WH, image, meta=_meta(objects))],
            batch_num=frame_num,
        )
        for frame_num, objects in enumerate(frames)
    ]


def _meta(objects: Objects) -> FrameMeta:
    return FrameMeta(objects=objects.copy())


def build(kind: str, props: Any) -> Element:
    element: Element
    context = BuildContext(bus=Bus(), place=kind)
    if kind == "analytics":
        element = Analytics(AnalyticsProperties.model_validate(props), name=kind, context=context)
    else:
        element = Tracker(TrackerProperties.model_validate(props), name=kind, context=context)
    element.build()
    return element


def time_element(kind: str, props: Any, frames: list[Objects], warmup: int) -> float:
    """Mean seconds per frame of ``process`` after ``warmup`` frames."""
    element = build(kind, props)
    work = batches(frames)
    for batch in work[:warmup]:
        element.process(batch)
    began = time.perf_counter()
    for batch in work[warmup:]:
        element.process(batch)
    return (time.perf_counter() - began) / (len(work) - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/analytics.json")
    args = parser.parse_args()
    frames = make_frames(args.warmup + args.frames)
    measured: dict[str, list[float]] = {"analytics": [], "analytics_no_draw": [], "tracker": []}
    for _ in range(args.runs):
        # Interleaved, so that a noisy moment of the machine falls on every set alike.
        measured["analytics"].append(time_element("analytics", RULES, frames, args.warmup))
        no_draw = {**RULES, "draw": False}
        measured["analytics_no_draw"].append(
            time_element("analytics", no_draw, frames, args.warmup)
        )
        tracker = {"type": "bytetrack", "min_hits": 1}
        measured["tracker"].append(time_element("tracker", tracker, frames, args.warmup))
    ratios = [a / t for a, t in zip(measured["analytics"], measured["tracker"], strict=True)]
    summary = {name: statistics.median(runs) * 1000 for name, runs in measured.items()}
    results = {
        "benchmark": "analytics",
        "machine": machine(),
        "inputs": {
            "stream_wh": list(SIZE_WH),
            "tracked_objects": OBJECTS,
            "rules": {"zones": 3, "lines": 3, "overcrowding": 2, "directions": 4, "compass": 8},
            "frames": args.frames,
            "warmup_frames": args.warmup,
            "runs": args.runs,
        },
        "per_frame_ms": {name: [s * 1000 for s in runs] for name, runs in measured.items()},
        "summary": {
            "analytics_ms_per_frame": round(summary["analytics"], 3),
            "analytics_no_draw_ms_per_frame": round(summary["analytics_no_draw"], 3),
            "tracker_ms_per_frame": round(summary["tracker"], 3),
            "analytics_over_tracker": round(statistics.median(ratios), 3),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
    main()
