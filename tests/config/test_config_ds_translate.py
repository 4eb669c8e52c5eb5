"""deepstream-app configurations run as they are: translation, notes, and end-to-end runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import pytest

from cli_tools import panoptes
from onnx_classifier import colour_classifier
from panoptes import Batch, ConfigError, Pipeline
from panoptes.config.deepstream.translate import translate_app_config
from panoptes.config.loader import load_config

DATA = Path(__file__).resolve().parents[1] / "data" / "deepstream"
VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"


def test_app_config_becomes_the_native_pipeline() -> None:
    translation = translate_app_config(DATA / "deepstream_app_config.txt")
    config = translation.config
    # type=3 with num-sources=2 repeats the first source; [source3] is switched off.
    assert [Path(s["uri"]).name for s in config["sources"]] == [
        "one-by-one-person-detection.mp4",
        "one-by-one-person-detection.mp4",
        "Retail02_short.mp4",
        "person-bicycle-car-detection.mp4",
    ]
    assert config["mux"] == {
        "batch_size": 4,
        "batched_push_timeout_ms": 40.0,
        "width": 1280,
        "height": 720,
        "keep_aspect": False,
    }
    (infer,) = config["infer"]
    assert Path(infer["model"]).name == "yolox_nano.onnx" and infer["gie_id"] == 1
    assert infer["preprocess"]["color_order"] == "bgr" and infer["preprocess"]["std"] == [1.0] * 3
    assert infer["threshold"] == 0.25 and infer["nms_iou"] == 0.45
    assert config["tracker"] == {"type": "bytetrack", "max_lost_frames": 42, "min_hits": 2}
    assert config["tiler"] == {"rows": 2, "columns": 2, "width": 1280, "height": 720}
    assert config["osd"]["class_colors"] == {0: [255, 0, 0], 2: [0, 255, 255]}
    assert [s["type"] for s in config["sinks"]] == ["fakesink", "file", "rtsp"]
    assert config["sinks"][1]["bitrate_kbps"] == 2000
    assert config["sinks"][2] == {
        "type": "rtsp",
        "name": "sink2",
        "path": "/ds-test",
        "port": 8554,
        "bitrate_kbps": 4000,
    }
    # [nvds-analytics] names its rules file, read as it is.
    assert config["analytics"]["config_width"] == 1920
    rules = {entry["source"]: entry for entry in config["analytics"]["streams"]}
    assert [roi["name"] for roi in rules[0]["rois"]] == ["RF"]
    notes = {str(note) for note in translation.notes}
    assert not [note for note in notes if "[sink2]" in note and "unsupported" in note]
    assert any("[sink0] type: approximated: type=2 (a screen)" in n for n in notes)
    assert any("NvDCF (visual features) is approximated by ByteTrack" in n for n in notes)
    # The GLib quirks of real files: `type=3 # multi uri` is 3, `codec=1 #h264` is 1.
    load_config(DATA / "deepstream_app_config.txt")  # valid in the native schema


def test_app_config_runs_end_to_end_with_the_cli(tmp_path: Path) -> None:
    limits = [f"sources[{i}].max_frames=12" for i in range(4)]
    limits.append("sinks[2].port=0")  # the RTSP server on any free port
    result = panoptes(
        "run",
        str(DATA / "deepstream_app_config.txt"),
        *[arg for limit in limits for arg in ("--set", limit)],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # Each note is said before the run, with its file and line.
    assert "warning: deepstream_app_config.txt:71 [sink2] udp-port: approximated" in result.stderr
    # output-file is relative to the working folder, as deepstream-app opens it.
    with av.open(str(tmp_path / "out.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (1280, 720)
        assert sum(1 for _ in container.decode(video=0)) >= 12


def test_yolov7_style_model_config_runs(tmp_path: Path) -> None:
    """A dstest1 YOLOv7 config: its C parser name maps to the parser the model's outputs need."""
    config, base_dir = load_config(
        DATA / "dstest1_app_yolov7.txt",
        ["sources[0].max_frames=2", f"sinks[0]={{type: jsonl, path: {tmp_path}/m.jsonl}}"],
    )
    pipeline = Pipeline(config, base_dir=base_dir)
    pipeline.build()
    detector = pipeline.element("primary-gie").detector  # type: ignore[attr-defined]
    assert detector.parser_name == "ultralytics"
    (infer,) = config.infer
    assert infer.preprocess.color_order == "rgb" and infer.preprocess.pad_position == "center"
    assert pipeline.run().ok
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 2


def test_yaml_app_config_with_a_sources_csv(tmp_path: Path) -> None:
    out = tmp_path / "meta.jsonl"
    config, base_dir = load_config(
        DATA / "deepstream_app_config.yml",
        [
            "sources[0].max_frames=10",
            "sources[1].max_frames=10",
            f"sinks[0]={{type: jsonl, path: {out}}}",
        ],
    )
    assert [Path(s.uri).name for s in config.sources] == [
        "one-by-one-person-detection.mp4",
        "Retail02_short.mp4",
    ]
    assert config.tracker is not None and config.tiler is not None
    assert Pipeline(config, base_dir=base_dir).run().ok
    records = [json.loads(line) for line in out.open()]
    assert len(records) == 20
    assert all(isinstance(o["track_id"], int) for r in records for o in r["objects"])


def test_secondary_classifier_runs_on_the_primary_detections(tmp_path: Path) -> None:
    model = colour_classifier(tmp_path / "colour.onnx")
    (tmp_path / "sgie.txt").write_text(
        "[property]\n"
        "onnx-file=colour.onnx\n"
        "labelfile-path=colour.txt\n"
        "net-scale-factor=1\n"
        "model-color-format=1\n"
        "network-type=1\n"
        "process-mode=2\n"
        "gie-unique-id=2\n"
        "operate-on-gie-id=1\n"
        "operate-on-class-ids=0;\n"
        "classifier-threshold=0.0\n"
    )
    assert model.exists()
    (tmp_path / "app.txt").write_text(
        f"[source0]\nenable=1\ntype=2\nuri=file://{VIDEOS}/one-by-one-person-detection.mp4\n\n"
        "[streammux]\nbatch-size=1\nbatched-push-timeout=40000\n\n"
        f"[primary-gie]\nenable=1\nconfig-file={DATA}/config_infer_primary_yolox.txt\n\n"
        "[secondary-gie0]\nenable=1\nconfig-file=sgie.txt\ngie-unique-id=2\n"
        "operate-on-gie-id=1\noperate-on-class-ids=0\n\n"
        "[tracker]\nenable=1\nll-config-file="
        f"{DATA}/config_tracker_NvDCF_perf.yml\n\n"
        "[sink0]\nenable=1\ntype=1\n"
    )
    config, base_dir = load_config(
        tmp_path / "app.txt",
        [
            "sources[0].max_frames=80",
            "sources[0].drop_frame_interval=4",
            f"sinks[0]={{type: jsonl, path: {tmp_path}/m.jsonl}}",
        ],
    )
    seen: list[Any] = []
    pipeline = Pipeline(config, base_dir=base_dir)

    def people(batch: Batch) -> None:
        seen.extend(o for f in batch for o in f.objects if o.label == "person")

    pipeline.add_probe("secondary-gie0", people)
    assert pipeline.run().ok
    assert seen, "the clip shows a person in its first 320 frames"
    assert all(len(o.classifications) == 1 and o.classifications[0][0] == 2 for o in seen), (
        "each person classified once, by gie 2"
    )
    assert {o.classifications[0][1] for o in seen} <= {"blue", "green", "red"}


@pytest.mark.parametrize(
    ("app", "model", "message"),
    [
        ("[source0\nenable=1\n", None, "app.txt:1"),
        (
            "[source0]\nenable=1\ntype=file\nuri=x.mp4\n",
            None,
            "app.txt:3 [source0] type",
        ),
        (
            "[source0]\nenable=1\ntype=2\nuri=x.mp4\n[primary-gie]\nenable=1\n"
            "config-file=missing.txt\n",
            None,
            "missing.txt",
        ),
        (
            "[source0]\nenable=1\ntype=2\nuri=x.mp4\n[primary-gie]\nenable=1\n"
            "config-file=model.txt\n",
            "[property]\nmodel-file=yolo.weights\ncustom-network-config=yolo.cfg\n",
            "Darknet models cannot run here",
        ),
        ("[sink0]\nenable=1\ntype=1\n", None, "no enabled [sourceN] group"),
    ],
)
def test_broken_configs_say_file_line_and_key(
    tmp_path: Path, app: str, model: str | None, message: str
) -> None:
    (tmp_path / "app.txt").write_text(app)
    if model is not None:
        (tmp_path / "model.txt").write_text(model)
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(tmp_path / "app.txt")
    assert message in str(caught.value), str(caught.value)
    result = panoptes("validate", str(tmp_path / "app.txt"), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_the_documentation_table_is_the_translators() -> None:
    from panoptes.config.deepstream.translate import key_table_markdown

    page = (Path(__file__).resolve().parents[2] / "docs" / "deepstream.md").read_text()
    assert page.endswith(key_table_markdown())


def test_smart_record_keys_become_the_record_section(tmp_path: Path) -> None:
    clip = VIDEOS / "person-bicycle-car-detection.mp4"
    (tmp_path / "app.txt").write_text(
        "[source0]\nenable=1\ntype=3\nnum-sources=2\n"
        f"uri=file://{clip}\n"
        "smart-record=2\nsmart-rec-dir-path=clips\nsmart-rec-file-prefix=cam\n"
        "smart-rec-container=1\nsmart-rec-cache=15\nsmart-rec-start-time=3\n"
        "smart-rec-duration=8\nsmart-rec-interval=4\n"
        "[source1]\nenable=1\ntype=2\n"
        f"uri=file://{clip}\n"
        "[source2]\nenable=1\ntype=2\nsmart-record=1\n"
        f"uri=file://{clip}\n"
        "[sink0]\nenable=1\ntype=1\n"
    )
    translation = translate_app_config(tmp_path / "app.txt")
    assert translation.config["record"] == {
        "sources": [0, 1, 3],
        "dir": "clips",
        "prefix": "cam",
        "container": "mkv",
        "cache_s": 15,
        "after_s": 8,
        "before_s": 3,
        "min_interval_s": 4,
    }
    notes = [str(note) for note in translation.notes]
    assert any("[source0] smart-record: approximated" in note for note in notes), notes
    config, _ = load_config(tmp_path / "app.txt")
    assert config.record is not None and config.record.sources == [0, 1, 3]
