"""The probe API: reading and changing metadata on the way, from Python and from the config."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from panoptes import Batch, ConfigError, Pipeline

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "videos"
CLIP = VIDEOS / "one-by-one-person-detection.mp4"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def clip_pipeline(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "sources": [{"uri": str(CLIP), "max_frames": 4}],
        "infer": [{"model": "yolox-nano", "output_tensor_meta": True}],
        "sinks": [{"type": "jsonl", "path": str(tmp_path / "meta.jsonl")}],
        "perf": {"interval_s": 0},
        **extra,
    }


def test_probe_reads_changes_adds_and_removes_objects(tmp_path: Path) -> None:
    seen: list[int] = []

    def probe(batch: Batch) -> None:
        for frame in batch:
            seen.append(len(frame.objects))
            for obj in frame.objects:
                obj.label = "visitor"
                obj.confidence = 0.5
                x1, y1, x2, y2 = obj.bbox
                obj.bbox = (x1 + 1, y1, x2, y2)
                obj.user_meta["zone"] = "table"
            frame.objects.add(
                np.array([[1, 2, 30, 40]], np.float32),
                np.array([0.99], np.float32),
                np.array([56], np.int32),
                ["chair"],
            )
            frame.objects.remove(0)  # the first detection
            frame.meta.user_meta["note"] = {"frame": frame.frame_num, "cameras": ["a"]}

    pipeline = Pipeline(clip_pipeline(tmp_path))
    pipeline.add_probe("infer0", probe)
    summary = pipeline.run()
    assert summary.ok
    records = read_jsonl(tmp_path / "meta.jsonl")
    assert len(records) == 4 and len(seen) == 4
    for record, before in zip(records, seen, strict=True):
        objects = record["objects"]
        assert len(objects) == before  # one removed, one added
        assert objects[-1]["label"] == "chair" and objects[-1]["bbox"] == [1, 2, 30, 40]
        for obj in objects[:-1]:
            assert obj["label"] == "visitor" and obj["confidence"] == 0.5
            assert obj["user_meta"] == {"zone": "table"}
        assert record["user_meta"] == {"note": {"frame": record["frame_num"], "cameras": ["a"]}}


def test_tensor_meta_gives_named_arrays_and_the_way_back_to_the_frame(tmp_path: Path) -> None:
    """A probe decoding yolox's raw output finds the element's own best box again."""
    checked: list[float] = []

    def probe(batch: Batch) -> None:
        for frame in batch:
            (meta,) = frame.meta.tensor_meta
            output = meta.tensors["output"]
            assert output.shape == (3549, 85) and output.dtype == np.float32
            assert meta.input_size_wh == (416, 416)
            # YOLOX decoding of the best row (ASSETS.md): grid cell + offset times stride.
            scores = output[:, 4] * output[:, 5:].max(axis=1)
            row = int(np.argmax(scores))
            strides = np.concatenate([np.full(52 * 52, 8), np.full(26 * 26, 16), np.full(169, 32)])
            cells = np.concatenate([np.arange(52 * 52), np.arange(26 * 26), np.arange(169)])
            widths = np.concatenate([np.full(52 * 52, 52), np.full(26 * 26, 26), np.full(169, 13)])
            stride, cell, grid = strides[row], cells[row], widths[row]
            cx = (output[row, 0] + cell % grid) * stride
            cy = (output[row, 1] + cell // grid) * stride
            w, h = np.exp(output[row, 2:4]) * stride
            box = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], np.float32)
            in_frame = meta.letterbox.to_source(box)[0]
            best = frame.objects[int(np.argmax(frame.objects.confidence))]
            assert np.allclose(in_frame, best.bbox, atol=2.0)
            checked.append(float(scores[row]))

    pipeline = Pipeline(clip_pipeline(tmp_path, mux={"width": 640, "height": 640}))
    pipeline.add_probe("infer0", probe)
    assert pipeline.run().ok
    assert len(checked) == 4


def test_probes_named_in_the_config_run_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "my_probes.py").write_text(
        textwrap.dedent(
            """
            def tag(batch):
                for frame in batch:
                    frame.meta.user_meta["people"] = sum(o.label == "person" for o in frame.objects)
            """
        )
    )
    config = clip_pipeline(tmp_path, probes=[{"element": "infer0", "function": "my_probes.py:tag"}])
    summary = Pipeline(config, base_dir=tmp_path).run()
    assert summary.ok
    records = read_jsonl(tmp_path / "meta.jsonl")
    assert [r["user_meta"]["people"] for r in records] == [
        sum(o["label"] == "person" for o in r["objects"]) for r in records
    ]


@pytest.mark.parametrize(
    ("probe", "place", "message"),
    [
        ({"element": "nowhere", "function": "x.py:f"}, "probes[0].element", "no element named"),
        ({"element": "infer0", "function": "missing.py:f"}, "probes[0].function", "no Python file"),
        ({"element": "infer0", "function": "json:nothing"}, "probes[0].function", "has no"),
        ({"element": "infer0", "function": "not a reference"}, "probes[0].function", "not"),
    ],
)
def test_bad_probe_references_name_their_place(
    tmp_path: Path, probe: dict[str, str], place: str, message: str
) -> None:
    pipeline = Pipeline(clip_pipeline(tmp_path, probes=[probe]), base_dir=tmp_path)
    with pytest.raises(ConfigError, match=message) as caught:
        pipeline.build()
    assert place in caught.value.places
