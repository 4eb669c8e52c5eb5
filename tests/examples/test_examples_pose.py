"""examples/pose: YOLO-Pose decoded in a probe from tensor meta, tracked, drawn as skeletons."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data

from panoptes import Pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pose" / "pose.yaml"


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("astronaut") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def run_example(tmp_path: Path, uri: Path, *more: str) -> Pipeline:
    overrides = [
        f"sources[0].uri={uri}",
        f"sinks[0].path={tmp_path / 'pose.mp4'}",
        f"sinks[1].path={tmp_path / 'pose.jsonl'}",
        "perf.interval_s=0",
        *more,
    ]
    pipeline = Pipeline.from_config(EXAMPLE, overrides=overrides)
    summary = pipeline.run()
    assert summary.ok, summary.errors
    return pipeline


def test_the_probe_finds_the_astronaut_and_her_keypoints(tmp_path: Path, astronaut: Path) -> None:
    run_example(tmp_path, astronaut)
    (record,) = [json.loads(line) for line in (tmp_path / "pose.jsonl").open()]
    people = [o for o in record["objects"] if o["label"] == "person"]
    assert len(people) == 1
    (person,) = people
    # ASSETS.md: person 0.88 with at least 8 of 17 keypoints confident, box near yolov8n's.
    assert person["confidence"] > 0.8 and isinstance(person["track_id"], int)
    x1, y1, x2, y2 = person["bbox"]
    assert x1 < 40 and y1 < 50 and x2 > 330 and y2 > 480
    keypoints = np.array(person["keypoints"])
    assert keypoints.shape == (17, 3)
    confident = keypoints[keypoints[:, 2] >= 0.5]
    assert len(confident) >= 8
    # Confident keypoints lie on the person, in the photo's own pixels.
    assert np.all((confident[:, 0] >= x1 - 5) & (confident[:, 0] <= x2 + 5))
    assert np.all((confident[:, 1] >= y1 - 5) & (confident[:, 1] <= y2 + 5))
    # The nose is in the upper part of the box (the face is at about y = 100 in this photo).
    nose = keypoints[0]
    assert nose[2] > 0.5 and 60 < nose[1] < 160


def test_skeletons_are_drawn_into_the_video(tmp_path: Path, astronaut: Path) -> None:
    run_example(tmp_path, astronaut, "osd.border_width=0", "osd.show_label=false")
    person = json.loads((tmp_path / "pose.jsonl").read_text())["objects"][0]
    # One file per stream (no tiler): the stream's id is added to the name.
    with av.open(str(tmp_path / "pose_0.mp4")) as container:
        (drawn,) = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    plain = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    # Along the line between the shoulders (keypoints 5 and 6, both confident) the video differs
    # from the photo: the skeleton's line (no boxes or labels are drawn in this run).
    keypoints = np.array(person["keypoints"])
    assert keypoints[5, 2] >= 0.5 and keypoints[6, 2] >= 0.5
    (sx, sy, _), (ex, ey, _) = keypoints[5], keypoints[6]
    points = [(round(sx + (ex - sx) * t), round(sy + (ey - sy) * t)) for t in (0.3, 0.5, 0.7)]
    diffs = [np.abs(drawn[y, x].astype(int) - plain[y, x].astype(int)).sum() for x, y in points]
    assert min(diffs) > 60
    # Far from the person, the picture is the photo (up to the encoder's loss).
    assert np.abs(drawn[:40, -40:].astype(int) - plain[:40, -40:].astype(int)).mean() < 6
