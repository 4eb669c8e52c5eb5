"""The command line, run as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import av
import pytest

from cli_tools import PANOPTES, panoptes

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "videos"

ISSUE_EXAMPLE = f"""
sources:
  - uri: {VIDEOS}/one-by-one-person-detection.mp4
  - uri: {VIDEOS}/Retail02_short.mp4
    name: shop
mux: {{batch_size: 2, width: 1280, height: 720, batched_push_timeout_ms: 40}}
infer:
  - name: detector
    model: yolox-nano
    threshold: 0.35
sinks:
  - type: jsonl
    path: out/meta.jsonl
"""


def write(folder: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_run_issue_example_short(tmp_path: Path) -> None:
    config = write(tmp_path, ISSUE_EXAMPLE)
    result = panoptes(
        "run",
        str(config),
        "--set",
        "sources[0].max_frames=30",
        "--set",
        "sources[1].max_frames=30",
        "--set",
        "perf.interval_s=1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "stream" in result.stderr and "total" in result.stderr  # the summary table
    lines = (tmp_path / "out" / "meta.jsonl").read_text().splitlines()  # relative to the config
    records = [json.loads(line) for line in lines]
    assert len(records) == 60
    assert {r["source"] for r in records} == {f"{VIDEOS}/one-by-one-person-detection.mp4", "shop"}
    first = records[0]
    assert set(first) == {"source_id", "source", "frame_num", "pts_s", "objects"}
    people = [
        o for r in records if r["source"] == "shop" for o in r["objects"] if o["label"] == "person"
    ]
    assert people and set(people[0]) >= {"class_id", "label", "confidence", "bbox", "track_id"}
    assert people[0]["track_id"] is None and people[0]["class_id"] == 0


@pytest.mark.slow
def test_run_issue_example_as_written(tmp_path: Path) -> None:
    result = panoptes("run", str(write(tmp_path, ISSUE_EXAMPLE)), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "**PERF:" in result.stderr
    lines = (tmp_path / "out" / "meta.jsonl").read_text().splitlines()
    assert len(lines) == 1394 + 603


def test_run_reports_failed_source_and_exits_1(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        f"""
sources:
  - uri: {VIDEOS}/person-bicycle-car-detection.mp4
    max_frames: 15
  - uri: nowhere.mp4
    name: ghost
sinks: [{{type: jsonl, path: meta.jsonl}}]
""",
    )
    result = panoptes("run", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "ERROR: ghost: sources[1].uri: no such file" in result.stderr
    assert len((tmp_path / "meta.jsonl").read_text().splitlines()) == 15


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources:\n  - uri: a.mp4\n    loops: true\n", "sources[0].loops: unknown key"),
        ("sources: [{uri: a.mp4}]\ninfer: [{threshold: high}]\n", "infer[0].threshold: "),
        ("sources: [{uri: a.mp4}]\ninfer: [{model: notes.txt}]\n", "not an ONNX model"),
        ("sources: [{uri: a.mp4}]\ninfer: [{model: no-such-model}]\n", "no-such-model"),
    ],
)
def test_run_refuses_bad_config_with_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = panoptes("run", str(write(tmp_path, text)), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr


def test_validate(tmp_path: Path) -> None:
    good = write(tmp_path, ISSUE_EXAMPLE, "good.yaml")
    result = panoptes("validate", str(good), cwd=tmp_path)
    assert result.returncode == 0 and "valid" in result.stdout, result.stderr
    bad = write(tmp_path, ISSUE_EXAMPLE.replace("Retail02_short.mp4", "Retail03.mp4"), "bad.yaml")
    result = panoptes("validate", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "sources[1].uri: " in result.stderr and "no such file" in result.stderr


def test_inspect_lists_kinds_and_properties(tmp_path: Path) -> None:
    listing = panoptes("inspect", cwd=tmp_path)
    assert listing.returncode == 0
    for kind in ("uri-source", "test-source", "mux", "infer", "fakesink", "jsonl"):
        assert f"  {kind} " in listing.stdout
    infer = panoptes("inspect", "infer", cwd=tmp_path)
    assert infer.returncode == 0
    for prop in ("model", "threshold", "nms_iou", "interval", "preprocess.pad_position"):
        assert f"  {prop}\n" in infer.stdout
    assert "default: 0.45" in infer.stdout
    unknown = panoptes("inspect", "nvinfer", cwd=tmp_path)
    assert unknown.returncode == 2 and "known kinds: " in unknown.stderr


def test_models_list_finds_the_shared_model(tmp_path: Path) -> None:
    result = panoptes("models", "list", cwd=tmp_path)
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("yolox-nano"))
    assert "yolox_nano.onnx" in line


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_leaves_whole_lines(
    tmp_path: Path, signum: signal.Signals
) -> None:
    config = write(
        tmp_path,
        f"""
sources:
  - uri: {VIDEOS}/person-bicycle-car-detection.mp4
    loop: true
infer: [{{model: yolox-nano}}]
sinks: [{{type: jsonl, path: meta.jsonl}}]
""",
    )
    process = subprocess.Popen(
        [*PANOPTES, "run", str(config)],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out = tmp_path / "meta.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 2000):
        time.sleep(0.2)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert f"{signum.name}: stopping" in stderr
    assert "total" in stderr  # the summary was printed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and [r["frame_num"] for r in records] == list(range(len(records)))


def test_demo_with_generated_clips(tmp_path: Path) -> None:
    result = panoptes(
        "demo",
        "--videos",
        str(tmp_path / "none"),
        "--max-frames",
        "12",
        "--output",
        str(tmp_path / "demo.jsonl"),
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "demo.jsonl").read_text().splitlines()]
    assert len(records) == 36
    labels = {o["label"] for r in records for o in r["objects"]}
    assert {"person", "cat"} <= labels
    assert all(isinstance(o["track_id"], int) for r in records for o in r["objects"])
    # The tiled video, beside the metadata: one picture per batch of the three streams.
    with av.open(str(tmp_path / "tiled.mp4")) as container:
        pictures = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(pictures) >= 12 and pictures[0].shape == (720, 1280, 3)


def test_progress_bar_for_file_runs(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        f"""
sources:
  - uri: {VIDEOS}/person-bicycle-car-detection.mp4
    max_frames: 120
perf: {{interval_s: 0.5}}
""",
    )
    result = panoptes("run", str(config), "--progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "120/120" in result.stderr and "frame" in result.stderr
