"""The tracking/display issue's YAML, run with the CLI as a user would."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import av
import pytest

from cli_tools import ffprobe, panoptes

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "videos"

DISPLAY_EXAMPLE = f"""
sources:
  - uri: {VIDEOS}/one-by-one-person-detection.mp4
  - uri: {VIDEOS}/Retail02_short.mp4
infer:
  - model: yolox-nano
tracker: {{type: bytetrack}}
tiler: {{width: 1280, height: 720}}
osd: {{show_confidence: true}}
sinks:
  - type: file
    path: out/tiled.mp4
  - type: jsonl
    path: out/meta.jsonl
"""


def check_run(tmp_path: Path, frames: dict[int, int]) -> None:
    """The jsonl holds every frame of both streams with track ids; the tiled mp4 plays."""
    records = [json.loads(line) for line in (tmp_path / "out" / "meta.jsonl").open()]
    assert Counter(r["source_id"] for r in records) == frames
    objects = [o for r in records for o in r["objects"]]
    assert objects and all(isinstance(o["track_id"], int) for o in objects)
    # The shop camera has several people at once, each with an id of their own.
    shop_ids = [
        [o["track_id"] for o in r["objects"] if o["label"] == "person"]
        for r in records
        if r["source_id"] == 1
    ]
    assert max(len(ids) for ids in shop_ids) >= 3
    assert all(len(ids) == len(set(ids)) for ids in shop_ids)
    video = tmp_path / "out" / "tiled.mp4"
    probe = ffprobe(video)
    assert probe["codec_name"] == "h264" and (probe["width"], probe["height"]) == (1280, 720)
    # The tiled video runs at the faster stream's rate, one picture per batch: at least as many
    # pictures as that stream has frames.
    assert probe["r_frame_rate"] == "30/1"
    count = int(str(probe["nb_read_frames"]))
    assert count >= max(frames.values())
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == count


def test_display_example_short(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(DISPLAY_EXAMPLE)
    result = panoptes(
        "run",
        "pipeline.yaml",
        "--set",
        "sources[0].max_frames=40",
        "--set",
        "sources[1].max_frames=40",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    check_run(tmp_path, {0: 40, 1: 40})


@pytest.mark.slow
def test_display_example_as_written(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(DISPLAY_EXAMPLE)
    result = panoptes("run", "pipeline.yaml", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr
    check_run(tmp_path, {0: 1394, 1: 603})


def test_validate_checks_the_display_sections_and_probes(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(DISPLAY_EXAMPLE)
    result = panoptes("validate", "good.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "out" / "tiled.mp4").exists()  # checked, not written
    bad = DISPLAY_EXAMPLE.replace("out/tiled.mp4", "out/tiled.avi").replace(
        "tracker: {type: bytetrack}", "tracker: {type: bytetrack, operate_on_gie_id: 4}"
    )
    bad += "probes:\n  - {element: trackr, function: nowhere.py:f}\n"
    (tmp_path / "bad.yaml").write_text(bad)
    result = panoptes("validate", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 2
    for expected in (
        "sinks[0].path: 'out/tiled.avi' is not a video file name",
        "tracker.operate_on_gie_id: no infer element has gie_id 4",
        "probes[0].element: no element named 'trackr'",
        "probes[0].function: no Python file",
    ):
        assert expected in result.stderr, result.stderr
