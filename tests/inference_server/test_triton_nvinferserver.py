"""DeepStream's nvinferserver configs: the text-format reader, the translation into the infer
element's properties with a note for every field not honoured as it is, and a deepstream-app
config with ``plugin-type=1`` running on a real Triton server, boxes as onnxruntime's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from triton_server import MODEL_NAME, TritonServer

from panoptes import Pipeline
from panoptes.config.deepstream.nvinferserver import (
    Name,
    TextMessage,
    field_table_markdown,
    parse_text_format,
    read_nvinferserver_config,
)
from panoptes.config.deepstream.translate import Note, translate_app_config
from panoptes.config.loader import load_config
from panoptes.core.errors import ConfigError

# As NVIDIA's samples write them, with the fields panoptes approximates or does not know.
TRITON_CONFIG = """\
# YOLOX-Nano on a Triton server
infer_config {
  unique_id: 1
  gpu_ids: [0]
  max_batch_size: 8
  backend {
    triton {
      model_name: "yolox_nano"
      version: -1
      grpc {
        url: "{url}"
        enable_cuda_buffer_sharing: true
      }
    }
  }
  preprocess {
    network_format: IMAGE_FORMAT_BGR
    tensor_order: TENSOR_ORDER_LINEAR
    tensor_name: "images"
    maintain_aspect_ratio: 1
    frame_scaling_hw: FRAME_SCALING_HW_DEFAULT
    frame_scaling_filter: 1
    symmetric_padding: 0
    normalize {
      scale_factor: 1.0
      channel_offsets: [0, 0, 0]
    }
  }
  postprocess {
    labelfile_path: "labels.txt"
    detection {
      num_detected_classes: 80
      custom_parse_bbox_func: "NvDsInferParseCustomYoloX"
      per_class_params {
        key: 0
        value { pre_threshold: 0.4 }
      }
      nms { confidence_threshold: 0.3, iou_threshold: 0.5, topk: 100 }
    }
  }
  custom_lib { path: "/opt/nvidia/deepstream/lib/libnvds_infercustomparser.so" }
  extra { copy_input_to_host_buffers: false }
}
input_control {
  process_mode: PROCESS_MODE_FULL_FRAME
  interval: 0
}
output_control {
  output_tensor_meta: false
  detect_control {
    default_filter { bbox_filter { min_width: 16, min_height: 16 } roi_top_offset: 8 }
  }
  colour: 3
}
"""


def write_triton_config(folder: Path, url: str) -> Path:
    (folder / "labels.txt").write_text("person\nbicycle\n")
    path = folder / "config_triton.txt"
    path.write_text(TRITON_CONFIG.replace("{url}", url))
    return path


# -- the text format -----------------------------------------------------------------------------


def _value(message: TextMessage, name: str) -> Any:
    found = message.last(name)
    assert found is not None, name
    return found.value


def test_the_text_format_is_read_as_protobuf_writes_it() -> None:
    message = parse_text_format(
        "a: 1 b: -2.5e1 c: \"x\" 'y'  # a comment\n"
        "d: ENUM_NAME e: true f: [1, 2, 3]; g { h: 0x10 } g < h: 2 >\n"
        'i: [ { j: "k" }, { j: "l" } ]\n'
        "m { }\n"
    )
    assert _value(message, "a") == 1
    assert _value(message, "b") == -25.0
    assert _value(message, "c") == "xy"  # adjacent strings join
    assert isinstance(_value(message, "d"), Name) and _value(message, "d") == "ENUM_NAME"
    assert _value(message, "e") is True
    assert [item.value for item in message.all("f")] == [1, 2, 3]
    assert [_value(item.value, "h") for item in message.all("g")] == [16, 2]  # type: ignore[arg-type]
    assert [_value(item.value, "j") for item in message.all("i")] == ["k", "l"]  # type: ignore[arg-type]
    m = message.last("m")
    assert m is not None and m.line == 4 and m.value == TextMessage(line=4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb {\n c: 2\n", r"t\.txt:4: expected '}' to close the message of line 2"),
        ("a 1", r"t\.txt:1: expected ':' after a"),
        ("a: [1 2]", r"t\.txt:1: expected ',' or '\]' in the list a"),
        ("a: }", r"t\.txt:1: expected a value, found '}'"),
        ("a: 1 ?", r"t\.txt:1: unexpected character '\?'"),
        ("\n\n: 1", r"t\.txt:3: expected a field name, found ':'"),
    ],
)
def test_malformed_text_names_file_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_text_format(text, "t.txt")


# -- the translation -----------------------------------------------------------------------------


def test_an_nvinferserver_config_becomes_infer_properties(tmp_path: Path) -> None:
    notes: list[Note] = []
    infer = read_nvinferserver_config(
        write_triton_config(tmp_path, "triton.example:8001"), notes=notes
    )
    assert infer == {
        "gie_id": 1,
        "backend": "triton",
        "model": "yolox_nano",
        "model_name": "yolox_nano",
        "url": "triton.example:8001",
        "protocol": "grpc",
        "labels": str(tmp_path / "labels.txt"),
        "network_type": "detector",
        "class_thresholds": {0: 0.4},
        "threshold": 0.3,
        "nms_iou": 0.5,
        "topk": 100,
        "preprocess": {
            "color_order": "bgr",
            "keep_ratio": True,
            "pad_position": "top-left",
            "pad_value": 0.0,
            "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0],
        },
        "process_mode": "primary",
        "interval": 0,
        "box_limits": {"min_width": 16, "min_height": 16, "top_margin": 8},
    }
    said = [str(note) for note in notes]
    for expected in (
        "config_triton.txt:4 infer_config.gpu_ids: approximated",
        "config_triton.txt:5 infer_config.max_batch_size: approximated",
        "config_triton.txt:12 infer_config.backend.triton.grpc.enable_cuda_buffer_sharing: "
        "approximated",
        "config_triton.txt:19 infer_config.preprocess.tensor_name: approximated",
        "config_triton.txt:32 infer_config.postprocess.detection.num_detected_classes: "
        "approximated",
        "config_triton.txt:41 infer_config.custom_lib: approximated: C libraries are not loaded",
        "config_triton.txt:53 output_control.colour: unknown: unknown field, not used",
    ):
        assert any(line.startswith(expected) for line in said), (expected, said)
    # The C parser of YOLOX is a known one: the built-in parser decodes its outputs.
    assert not [line for line in said if "is not a parser panoptes knows" in line]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("TENSOR_ORDER_LINEAR", "TENSOR_ORDER_NHWC"),
            r"config_triton\.txt:18 infer_config\.preprocess\.tensor_order: NHWC",
        ),
        (
            ("IMAGE_FORMAT_BGR", "IMAGE_FORMAT_GRAY"),
            r"config_triton\.txt:17 infer_config\.preprocess\.network_format: grey",
        ),
        (("unique_id: 1", 'unique_id: "one"'), r"config_triton\.txt:3 infer_config\.unique_id"),
        (('model_name: "yolox_nano"', ""), r"triton needs its model_name"),
        (("infer_config {", "infer_configs {"), r"no infer_config"),
    ],
)
def test_bad_configs_name_file_line_and_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    path = write_triton_config(tmp_path, "localhost:8001")
    path.write_text(path.read_text().replace(*change))
    with pytest.raises(ConfigError, match=expected):
        read_nvinferserver_config(path, notes=[])


def test_a_segmentation_model_is_left_out_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "seg.txt"
    path.write_text(
        'infer_config { backend { triton { model_name: "unet" grpc { url: "h:8001" } } }\n'
        "  postprocess { segmentation { threshold: 0.5 } } }\n"
    )
    notes: list[Note] = []
    assert read_nvinferserver_config(path, notes=notes) is None
    assert any(
        "seg.txt:2 infer_config.postprocess.segmentation: unsupported" in str(note)
        and "left out" in str(note)
        for note in notes
    )


def test_a_local_model_repository_runs_its_onnx_file(tmp_path: Path, assets: Path) -> None:
    model = tmp_path / "repo" / "yolox_nano" / "1" / "model.onnx"
    model.parent.mkdir(parents=True)
    model.symlink_to(assets / "models" / "yolox_nano.onnx")
    path = tmp_path / "local.txt"
    path.write_text(
        'infer_config { backend { triton { model_name: "yolox_nano" version: -1\n'
        '  model_repo { root: "./repo" strict_model_config: true } } } }\n'
    )
    notes: list[Note] = []
    infer = read_nvinferserver_config(path, notes=notes)
    assert infer is not None and infer["model"] == str(model) and "backend" not in infer
    assert any("model_repo: approximated: no Triton runs inside panoptes" in str(n) for n in notes)
    path.write_text(path.read_text().replace("./repo", "./elsewhere"))
    with pytest.raises(ConfigError, match=r"local\.txt:2 .*model_repo: .*no model\.onnx"):
        read_nvinferserver_config(path, notes=[])


def test_the_documentation_table_is_the_readers() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "triton.md").read_text()
    assert field_table_markdown() in page


# -- a deepstream-app config on a real server ----------------------------------------------------

APP_CONFIG = """\
[application]
enable-perf-measurement=0

[source0]
enable=1
type=3
uri=file://{clip}
num-sources=1

[sink0]
enable=1
type=1

[primary-gie]
enable=1
plugin-type=1
config-file=config_triton.txt
gpu-id=0
"""


def _objects(path: Path) -> dict[int, list[dict[str, Any]]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {record["frame_num"]: record["objects"] for record in records}


def test_a_deepstream_app_config_runs_its_model_on_triton(
    running_server: TritonServer, assets: Path, tmp_path: Path
) -> None:
    clip = assets / "videos" / "one-by-one-person-detection.mp4"
    app = tmp_path / "app.txt"
    app.write_text(APP_CONFIG.format(clip=clip))
    write_triton_config(tmp_path, running_server.grpc_url)
    (tmp_path / "labels.txt").unlink()  # the model's COCO labels
    text = (tmp_path / "config_triton.txt").read_text()
    (tmp_path / "config_triton.txt").write_text(text.replace('labelfile_path: "labels.txt"', ""))

    translation = translate_app_config(app)
    said = translation.report()
    assert "app.txt:18 [primary-gie] gpu-id: approximated: the Triton server runs the model" in said
    assert "config_triton.txt:4 infer_config.gpu_ids: approximated" in said

    outputs = {}
    for backend in ("triton", "onnxruntime"):
        output = tmp_path / f"{backend}.jsonl"
        overrides = ["sources[0].max_frames=80", f"sinks[0]={{type: jsonl, path: {output}}}"]
        if backend == "onnxruntime":  # the same settings, the model run here
            overrides += ["infer[0].backend=onnxruntime", "infer[0].model=yolox-nano"]
        config, base_dir = load_config(app, overrides)
        (infer,) = config.infer
        assert infer.url == running_server.grpc_url and infer.model_name == MODEL_NAME
        assert infer.box_limits.min_width == 16 and infer.class_thresholds == {0: 0.4}
        assert Pipeline(config, base_dir=base_dir).run().ok
        outputs[backend] = _objects(output)
    served, local = outputs["triton"], outputs["onnxruntime"]
    assert len(served) == 80 and served.keys() == local.keys()
    assert sum(len(objects) for objects in served.values()) >= 20
    for frame, objects in local.items():
        assert [o["label"] for o in served[frame]] == [o["label"] for o in objects], frame
        for want, got in zip(objects, served[frame], strict=True):
            np.testing.assert_allclose(got["bbox"], want["bbox"], atol=0.05)
