"""The pipeline on real clips and the real default detector."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

import panoptes
from panoptes import Batch, MessageType, Pipeline

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "videos"

PERSON_275 = [382, 9, 544, 376]  # ASSETS.md: yolox_nano on one-by-one frame 275


def iou(a: Any, b: Any) -> float:
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    return inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter)


@pytest.fixture(scope="module")
def frame_275_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frame275")
    with av.open(str(VIDEOS / "one-by-one-person-detection.mp4")) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == 275:
                cv2.imwrite(str(folder / "frame275.png"), frame.to_ndarray(format="bgr24"))
                break
    return folder


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    "mux",
    [
        {},
        {"width": 640, "height": 640},
        {"width": 1280, "height": 720},
        {"width": 500, "height": 300, "keep_aspect": False},
    ],
)
def test_boxes_come_back_in_original_pixels(
    frame_275_folder: Path, tmp_path: Path, mux: dict[str, Any]
) -> None:
    out = tmp_path / "meta.jsonl"
    pipeline = Pipeline(
        {
            "sources": [{"uri": str(frame_275_folder), "name": "table"}],
            "mux": mux,
            "infer": [{"name": "detector", "model": "yolox-nano", "threshold": 0.5}],
            "sinks": [{"type": "jsonl", "path": str(out)}],
            "perf": {"interval_s": 0},
        }
    )
    summary = pipeline.run()
    assert summary.ok and summary.frames == 1
    (record,) = read_jsonl(out)
    people = [o for o in record["objects"] if o["label"] == "person"]
    assert len(people) == 1 and people[0]["confidence"] > 0.8
    # Stretching changes what the model sees; the box must still land on the person.
    assert iou(people[0]["bbox"], PERSON_275) > (0.8 if mux.get("keep_aspect", True) else 0.6)


def test_two_clips_batched_with_metadata_for_every_frame(tmp_path: Path) -> None:
    out = tmp_path / "meta.jsonl"
    batch_sizes: list[int] = []
    pipeline = Pipeline(
        {
            "sources": [
                {"uri": str(VIDEOS / "one-by-one-person-detection.mp4"), "max_frames": 20},
                {"uri": str(VIDEOS / "Retail02_short.mp4"), "name": "shop", "max_frames": 20},
            ],
            "mux": {"batch_size": 2, "width": 1280, "height": 720, "batched_push_timeout_ms": 40},
            "infer": [{"name": "detector", "model": "yolox-nano", "threshold": 0.35}],
            "sinks": [{"type": "jsonl", "path": str(out)}],
            "perf": {"interval_s": 0},
        }
    )
    pipeline.add_probe("detector", lambda batch: batch_sizes.append(len(batch)))
    summary = pipeline.run()
    assert summary.ok, summary.errors
    assert [s.frames for s in summary.streams] == [20, 20]
    records = read_jsonl(out)
    assert len(records) == 40
    by_source = {r["source"]: r for r in records}
    assert set(by_source) == {str(VIDEOS / "one-by-one-person-detection.mp4"), "shop"}
    for record in records:
        width, height = (1920, 1080) if record["source"] == "shop" else (768, 432)
        for obj in record["objects"]:
            x1, y1, x2, y2 = obj["bbox"]
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    shop_people = [
        o for r in records if r["source"] == "shop" for o in r["objects"] if o["label"] == "person"
    ]
    assert len(shop_people) >= 20  # a shop with several people in every frame
    assert max(batch_sizes) == 2


def test_bad_sources_beside_a_good_one(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.mp4"
    data = (VIDEOS / "Retail02_short.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / "corrupt.mp4"
    data = bytearray((VIDEOS / "one-by-one-person-detection.mp4").read_bytes())
    rng = np.random.default_rng(0)
    for start in range(400_000, 2_400_000, 200_000):
        data[start : start + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    corrupt.write_bytes(bytes(data))
    (tmp_path / "notes.mp4").write_text("not a video")
    out = tmp_path / "meta.jsonl"
    pipeline = Pipeline(
        {
            "sources": [
                {"uri": "person-bicycle-car-detection.mp4", "name": "good"},
                {"uri": str(truncated), "name": "truncated"},
                {"uri": str(tmp_path / "missing.mp4"), "name": "missing"},
                {"uri": str(tmp_path / "notes.mp4"), "name": "text"},
                {"uri": str(corrupt), "name": "corrupt"},
            ],
            "infer": [{"model": "yolox-nano", "interval": 4}],
            "sinks": [{"type": "jsonl", "path": str(out)}],
            "perf": {"interval_s": 0},
        },
        base_dir=VIDEOS,
    )
    summary = pipeline.run()
    streams = {s.name: s for s in summary.streams}
    assert streams["good"].state == "ended" and streams["good"].frames == 459
    assert streams["corrupt"].frames > 1000  # the damaged frames are skipped, the rest decoded
    for name in ("truncated", "missing", "text"):
        assert streams[name].state == "failed" and streams[name].frames == 0
    errors = {m.origin: m.text for m in summary.errors}
    assert set(errors) >= {"truncated", "missing", "text"}
    assert errors["missing"].startswith("sources[2].uri: ") and "no such file" in errors["missing"]
    assert errors["truncated"].startswith("sources[1].uri: ")
    assert not summary.ok
    assert sum(1 for r in read_jsonl(out) if r["source"] == "good") == 459


def test_probes_change_metadata_drop_frames_and_attach_user_meta(
    frame_275_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "meta.jsonl"
    pipeline = Pipeline(
        {
            "sources": [
                {"uri": "test://ball?width=320&height=240&fps=10&frames=10", "name": "pattern"},
                {"uri": str(frame_275_folder), "name": "table", "loop": True, "max_frames": 10},
            ],
            "infer": [{"name": "detector", "model": "yolox-nano", "output_tensor_meta": True}],
            "sinks": [{"type": "jsonl", "path": str(out)}],
            "perf": {"interval_s": 0},
        }
    )
    tensor_shapes: list[tuple[int, ...]] = []

    def relabel(batch: Batch) -> None:
        for frame in batch:
            for tensor_meta in frame.meta.tensor_meta:
                tensor_shapes.append(tensor_meta.tensors["output"].shape)
            if frame.source_name == "pattern" and frame.frame_num % 2:
                batch.drop(frame)
                continue
            frame.meta.user_meta["checked"] = True
            for obj in frame.meta.objects:
                if obj.label == "person":
                    obj.label = f"visitor {obj.confidence:.2f}"

    pipeline.add_probe("detector", relabel)
    summary = pipeline.run()
    assert summary.ok
    records = read_jsonl(out)
    assert sorted(r["frame_num"] for r in records if r["source"] == "pattern") == [0, 2, 4, 6, 8]
    table = [r for r in records if r["source"] == "table"]
    assert len(table) == 10 and all(r["user_meta"] == {"checked": True} for r in table)
    assert all(any(o["label"].startswith("visitor 0.") for o in r["objects"]) for r in table)
    assert tensor_shapes and set(tensor_shapes) == {(3549, 85)}


def test_interval_skips_inference_per_stream() -> None:
    inferred: dict[str, list[int]] = {"a": [], "b": []}

    def record(batch: Batch) -> None:
        for frame in batch:
            if frame.meta.inferred_by:
                inferred[frame.source_name].append(frame.frame_num)

    pipeline = Pipeline(
        {
            "sources": [
                {"type": "test-source", "name": "a", "frames": 9, "width": 160, "height": 120},
                {"type": "test-source", "name": "b", "frames": 9, "width": 160, "height": 120},
            ],
            "infer": [{"name": "detector", "interval": 2}],
            "perf": {"interval_s": 0},
        }
    )
    pipeline.add_probe("detector", record)
    assert pipeline.run().ok
    assert inferred == {"a": [0, 3, 6], "b": [0, 3, 6]}


def test_sources_added_and_removed_while_running() -> None:
    pipeline = Pipeline(
        {
            "sources": [
                {
                    "uri": "test://ball?width=160&height=120&fps=50",
                    "name": "first",
                    "real_time": True,
                }
            ],
            "perf": {"interval_s": 0},
        }
    )
    seen: dict[str, int] = {}
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def count(batch: Batch) -> None:
        with lock:
            for frame in batch:
                seen[frame.source_name] = seen.get(frame.source_name, 0) + 1
            events.extend((e.kind, e.source_name) for e in batch.events)

    pipeline.add_probe("mux", count)
    pipeline.start()
    deadline = time.monotonic() + 20
    while seen.get("first", 0) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    second = pipeline.add_source(
        {"uri": "test://ball?width=200&height=100&fps=50", "name": "second", "real_time": True}
    )
    while seen.get("second", 0) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    pipeline.remove_source(second)
    with lock:
        first_at_removal = seen.get("first", 0)
    # The stream that stays plays on after the other is removed.
    deadline = time.monotonic() + 20
    while seen.get("first", 0) < first_at_removal + 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    pipeline.stop()
    assert pipeline.wait(10)
    assert seen["second"] >= 5 and seen["first"] >= first_at_removal + 20
    assert ("added", "second") in events and ("removed", "second") in events
    kinds = [m.type for m in pipeline.bus.history]
    assert MessageType.STREAM_REMOVED in kinds and kinds[-1] is MessageType.EOS


def test_public_api_is_curated() -> None:
    assert set(panoptes.__all__) == {name for name in dir(panoptes) if not name.startswith("_")} - {
        "core",
        "config",
        "elements",
        "media",
        "models",
        "demo",
        "cli",
        "render",
        "tracking",
        "analytics",
        "events",
        "server",
        "workers",
    }
