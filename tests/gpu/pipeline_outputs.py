"""Running one configuration with its sources decoded on the CPU and by NVDEC (or its stand-in),
and reading what the sinks wrote, to compare the two."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import numpy as np

from panoptes import Pipeline


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def video_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def run_both(config: dict[str, Any], tmp_path: Path) -> dict[str, Path]:
    """Run ``config`` with ``{decoder}`` set to ``cpu``, then ``nvdec`` (NVDEC, or the stand-in
    a test put in its place); the sinks' ``{out}`` paths go into one folder per run. Returns
    the folders by decoder."""
    folders = {}
    for decoder in ("cpu", "nvdec"):
        folder = tmp_path / decoder
        folder.mkdir()
        text = json.dumps(config).replace("{out}", str(folder)).replace("{decoder}", decoder)
        pipeline = Pipeline({"perf": {"interval_s": 0}, **json.loads(text)})
        summary = pipeline.run()
        assert summary.ok, summary.errors
        folders[decoder] = folder
    return folders


def iou(a: list[float], b: list[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_same_objects(cpu: list[dict[str, Any]], gpu: list[dict[str, Any]]) -> int:
    """Check that every confident object (over 0.5) of either run's jsonl records has one of
    its class in the other's record of the frame, with IoU > 0.85 and a confidence within 0.1
    (the pixels the detector saw differ by a grey level here and there). Returns how many."""
    matched = 0
    for ours, theirs in [(gpu, cpu), (cpu, gpu)]:
        for mine, other in zip(ours, theirs, strict=True):
            for obj in (o for o in mine["objects"] if o["confidence"] > 0.5):
                same_class = [o for o in other["objects"] if o["class_id"] == obj["class_id"]]
                assert same_class, f"frame {mine['frame_num']}: no {obj['label']} in the other"
                best = max(same_class, key=lambda o: iou(o["bbox"], obj["bbox"]))
                assert iou(best["bbox"], obj["bbox"]) > 0.85
                assert abs(best["confidence"] - obj["confidence"]) < 0.1
                matched += 1
    return matched
