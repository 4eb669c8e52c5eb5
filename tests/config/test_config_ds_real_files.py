"""Quirks that NVIDIA's own sample files and the community's showed, each in a config of this
project's writing: the keys are read as deepstream-app and nvinfer read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnx_classifier import colour_classifier
from panoptes import Batch, ConfigError, Pipeline
from panoptes.config.deepstream import translate
from panoptes.config.deepstream.translate import translate_app_config
from panoptes.config.loader import load_config

ASSETS = (Path(__file__).resolve().parents[2].parent / "shared" / "assets").resolve()
YOLOX = ASSETS / "models" / "yolox_nano.onnx"
CLIP = ASSETS / "videos" / "one-by-one-person-detection.mp4"


@pytest.fixture(autouse=True)
def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(translate, "gpu_available", lambda: False)


def _app(folder: Path, sgie: str, *, extra: str = "") -> Path:
    colour_classifier(folder / "types.onnx")
    (folder / "pgie.txt").write_text(
        f"[property]\nonnx-file={YOLOX}\nnet-scale-factor=1\nmodel-color-format=1\n"
        "maintain-aspect-ratio=true\nsymmetric-padding=false\ncluster-mode=2\n"
    )
    (folder / "sgie.txt").write_text(sgie)
    (folder / "app.txt").write_text(
        f"[source0]\nenable=1\ntype=2\nuri=file://{CLIP}\n{extra}"
        "[primary-gie]\nenable=1\ngie-unique-id=1\nconfig-file=pgie.txt\n"
        "[secondary-gie0]\nenable=1\ngie-unique-id=4\noperate-on-gie-id=1\n"
        "operate-on-class-ids=0;\nconfig-file=sgie.txt\n"
        "[sink0]\nenable=1\ntype=1\nplane-id=0\nconn-id=1\n"
    )
    return folder / "app.txt"


# The secondary classifiers of deepstream-app's samples still say is-classifier=1, the key
# network-type replaced, with the keys of their TAO days around it.
SGIE = """\
[property]
gpu-id=0
net-scale-factor=1
onnx-file=types.onnx
labelfile-path=types.txt
force-implicit-batch-dim=1
batch-size=16
model-color-format=1
network-mode=1
is-classifier=1
process-mode=2
uff-input-blob-name=input_1
output-blob-names=predictions/Softmax
classifier-async-mode=1
classifier-threshold=0.0
operate-on-gie-id=1
operate-on-class-ids=0
classifier-type=vehicletype
infer-dims=3;224;224
"""


def test_is_classifier_makes_a_classifier_that_runs(tmp_path: Path) -> None:
    translation = translate_app_config(_app(tmp_path, SGIE))
    primary, secondary = translation.config["infer"]
    assert secondary["network_type"] == "classifier"
    # nvinfer reads its switches as GLib booleans: true and false as well as 1 and 0.
    assert primary["preprocess"]["keep_ratio"] is True
    assert primary["preprocess"]["pad_position"] == "top-left"
    notes = [str(note) for note in translation.notes]
    assert not any(": unknown:" in note for note in notes), notes
    unsupported = [note for note in notes if ": unsupported:" in note]
    # Screens' keys are named as what they are.
    assert unsupported == [
        "app.txt:18 [sink0] plane-id: unsupported: no screen output",
        "app.txt:19 [sink0] conn-id: unsupported: no screen output",
    ]
    assert any("sgie.txt:18 [property] classifier-type: approximated" in n for n in notes)
    assert any("sgie.txt:12 [property] uff-input-blob-name: approximated" in n for n in notes)
    # A classifier has no clusters: no note about cluster-mode for it.
    assert not any("sgie.txt" in note and "cluster-mode" in note for note in notes), notes
    config, base_dir = load_config(
        tmp_path / "app.txt", ["sources[0].max_frames=80", "sources[0].drop_frame_interval=4"]
    )
    labels: list[str] = []

    def collect(batch: Batch) -> None:
        labels.extend(
            label for frame in batch for obj in frame.objects for _, label, _ in obj.classifications
        )

    pipeline = Pipeline(config, base_dir=base_dir)
    pipeline.add_probe("secondary-gie0", collect)
    assert pipeline.run().ok
    assert labels and set(labels) <= {"blue", "green", "red"}


def test_network_type_wins_over_is_classifier(tmp_path: Path) -> None:
    translation = translate_app_config(_app(tmp_path, SGIE + "network-type=100\n"))
    assert translation.config["infer"][1]["network_type"] == "other"


def test_a_boolean_switch_that_is_not_a_glib_boolean_is_an_error(tmp_path: Path) -> None:
    app = _app(tmp_path, SGIE)
    (tmp_path / "pgie.txt").write_text(
        (tmp_path / "pgie.txt")
        .read_text()
        .replace("maintain-aspect-ratio=true", "maintain-aspect-ratio=yes")
    )
    with pytest.raises(ConfigError, match=r"pgie\.txt:5 \[property\] maintain-aspect-ratio"):
        translate_app_config(app)


def test_a_source_s_own_file_loop_and_the_older_smart_record_cache(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        SGIE,
        extra="file-loop=1\nsmart-record=1\nsmart-rec-video-cache=12\n",
    )
    config = translate_app_config(app).config
    assert config["sources"][0]["loop"] is True
    assert config["record"]["cache_s"] == 12
