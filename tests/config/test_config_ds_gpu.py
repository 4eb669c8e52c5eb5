"""The keys of DeepStream files that assume a GPU: gpu-id, batch-size, network-mode,
int8-calib-file, cudadec-memtype, and model-engine-file as a cache path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from panoptes import ConfigError, Pipeline
from panoptes.config.deepstream import translate
from panoptes.config.deepstream.translate import translate_app_config
from panoptes.config.loader import load_config, parse_config
from panoptes.models.backends.onnxruntime import OnnxRuntimeBackend, saved_model_key
from panoptes.models.detector import ModelWarning
from panoptes.models.gpu.cache import cache_root

ASSETS = (Path(__file__).resolve().parents[2].parent / "shared" / "assets").resolve()
YOLOX = ASSETS / "models" / "yolox_nano.onnx"
CLIP = ASSETS / "videos" / "one-by-one-person-detection.mp4"

APP = f"""\
[source0]
enable=1
type=3
num-sources=2
uri=file://{CLIP}
gpu-id=1
cudadec-memtype=2

[streammux]
batch-size=2
gpu-id=1

[primary-gie]
enable=1
gpu-id=1
batch-size=2
config-file=pgie.txt

[secondary-gie0]
enable=1
config-file=sgie.txt

[sink0]
enable=1
type=1
"""

PGIE = f"""\
[property]
gpu-id=0
onnx-file={YOLOX}
model-engine-file=pgie_b2_gpu1_int8.engine
int8-calib-file=calib.table
batch-size=8
network-mode=1
net-scale-factor=1
model-color-format=1
maintain-aspect-ratio=1
"""

SGIE = f"""\
[property]
onnx-file={YOLOX}
model-engine-file=sgie.engine
network-type=1
process-mode=2
network-mode=2
"""


def _write(folder: Path) -> Path:
    (folder / "app.txt").write_text(APP)
    (folder / "pgie.txt").write_text(PGIE)
    (folder / "sgie.txt").write_text(SGIE)
    return folder / "app.txt"


def _notes(translation: translate.Translation) -> list[str]:
    return [str(note) for note in translation.notes]


def test_without_a_gpu_the_models_run_on_the_cpu_and_the_keys_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(translate, "gpu_available", lambda: False)
    translation = translate_app_config(_write(tmp_path))
    config = translation.config
    assert all("decoder" not in source and "gpu_id" not in source for source in config["sources"])
    primary, secondary = config["infer"]
    for infer in (primary, secondary):
        assert not {"backend", "device", "precision", "batch_size", "gpu_id"} & set(infer)
    # The model is built from onnx-file, and saved where model-engine-file says.
    assert primary["engine_file"] == str(tmp_path / "pgie_b2_gpu1_int8.engine")
    notes = _notes(translation)
    expected = [
        "app.txt:6 [source0] gpu-id: approximated: there is no CUDA GPU with PyTorch here",
        "app.txt:7 [source0] cudadec-memtype: approximated",
        "app.txt:15 [primary-gie] gpu-id: approximated: there is no CUDA GPU",
        "app.txt:16 [primary-gie] batch-size: approximated: batches come from the mux",
        "pgie.txt:7 [property] network-mode: approximated: INT8 (network-mode=1)",
        "pgie.txt:5 [property] int8-calib-file: approximated: TensorRT's INT8 calibration",
        "pgie.txt:4 [property] model-engine-file: approximated: onnxruntime saves the model it "
        f"builds from onnx-file at {tmp_path / 'pgie_b2_gpu1_int8.engine'}",
        "sgie.txt:6 [property] network-mode: approximated: FP16 (network-mode=2)",
        "sgie.txt:3 [property] model-engine-file: approximated: a classifier is built from "
        "onnx-file",
    ]
    for text in expected:
        assert any(note.startswith(text) for note in notes), (text, notes)
    # The app's gpu-id and batch-size override the model file's, which are not reported twice.
    assert not any("pgie.txt:2 " in note or "pgie.txt:6 " in note for note in notes)


def test_with_a_gpu_detectors_take_the_gpu_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(translate, "gpu_available", lambda: True)
    translation = translate_app_config(_write(tmp_path))
    config = translation.config
    assert [(s["decoder"], s["gpu_id"]) for s in config["sources"]] == [("auto", 1)] * 2
    primary, secondary = config["infer"]
    assert {key: primary[key] for key in ("backend", "device", "precision")} == {
        "backend": "torch",
        "device": "cuda",
        "precision": "fp16",
    }
    assert primary["gpu_id"] == 1 and primary["batch_size"] == 2
    assert "engine_file" not in primary
    # A classifier stays with onnxruntime on the CPU.
    assert "backend" not in secondary and "engine_file" not in secondary
    notes = _notes(translation)
    for text in (
        "app.txt:7 [source0] cudadec-memtype: approximated: NVDEC's frames stay in GPU",
        "pgie.txt:7 [property] network-mode: approximated: INT8 (network-mode=1) runs in FP16",
        "pgie.txt:5 [property] int8-calib-file: approximated: TensorRT's INT8 calibration table "
        "is not used by backend torch: the model runs in FP16",
        "pgie.txt:4 [property] model-engine-file: approximated: backend torch keeps the model "
        f"it builds from onnx-file in the panoptes cache folder ({cache_root() / 'torch'})",
        "sgie.txt:6 [property] network-mode: approximated: FP16 (network-mode=2): classifiers "
        "run with onnxruntime on the CPU",
    ):
        assert any(note.startswith(text) for note in notes), (text, notes)
    assert not any("[source0] gpu-id" in note or "[primary-gie] gpu-id" in note for note in notes)
    # The native schema takes it as it is.
    parsed = parse_config(config)
    assert parsed.infer[0].backend == "torch"
    assert getattr(parsed.sources[0], "decoder", None) == "auto"


def test_an_unknown_network_mode_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "pgie.txt").write_text(PGIE.replace("network-mode=1", "network-mode=3"))
    with pytest.raises(ConfigError, match=r"pgie\.txt:7 \[property\] network-mode"):
        translate_app_config(tmp_path / "app.txt")


def _one_source_app(folder: Path, engine: str) -> Path:
    (folder / "pgie.txt").write_text(
        f"[property]\nonnx-file={YOLOX}\nmodel-engine-file={engine}\nnet-scale-factor=1\n"
        "model-color-format=1\nmaintain-aspect-ratio=1\n"
    )
    (folder / "app.txt").write_text(
        f"[source0]\nenable=1\ntype=2\nuri=file://{CLIP}\n"
        "[primary-gie]\nenable=1\nconfig-file=pgie.txt\n[sink0]\nenable=1\ntype=1\n"
    )
    return folder / "app.txt"


def _run(app: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(translate, "gpu_available", lambda: False)
    config, base_dir = load_config(app, ["sources[0].max_frames=3"])
    assert Pipeline(config, base_dir=base_dir).run().ok


def test_the_model_is_saved_at_model_engine_file_and_used_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _one_source_app(tmp_path, "engines/yolox_b1_gpu0_fp32.engine")
    engine = tmp_path / "engines" / "yolox_b1_gpu0_fp32.engine"
    _run(app, monkeypatch)
    key = saved_model_key(engine)
    assert key is not None
    assert key["source_sha256"] == hashlib.sha256(YOLOX.read_bytes()).hexdigest()
    # Next time it matches: used as it is, honoured without a note.
    translation = translate_app_config(app)
    assert translation.config["infer"][0]["engine_file"] == str(engine)
    assert not any("model-engine-file" in str(note) for note in translation.notes)
    saved = OnnxRuntimeBackend(YOLOX, saved_model=engine)
    fresh = OnnxRuntimeBackend(YOLOX)
    assert saved.saved_model_used
    batch = np.random.default_rng(0).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    np.testing.assert_allclose(saved.run(batch)["output"], fresh.run(batch)["output"], atol=1e-4)
    _run(app, monkeypatch)  # and the pipeline runs from it
    assert saved_model_key(engine) == key


def test_a_tensorrt_engine_is_left_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = tmp_path / "model_b1_gpu0_fp16.engine"
    engine.write_bytes(b"ftrt" + bytes(range(256)) * 64)  # a TensorRT plan's first bytes
    before = engine.read_bytes(), engine.stat().st_mtime_ns
    app = _one_source_app(tmp_path, engine.name)
    translation = translate_app_config(app)
    assert "engine_file" not in translation.config["infer"][0]
    assert any(
        "pgie.txt:3 [property] model-engine-file: approximated: model_b1_gpu0_fp16.engine is "
        "not a model panoptes saved (a TensorRT engine?): it is left as it is, and the model is "
        "built from onnx-file" in str(note)
        for note in translation.notes
    ), translation.notes
    _run(app, monkeypatch)
    assert (engine.read_bytes(), engine.stat().st_mtime_ns) == before
    # Named to the backend directly, it is not overwritten either.
    with pytest.warns(ModelWarning, match="is not a model panoptes saved"):
        backend = OnnxRuntimeBackend(YOLOX, saved_model=engine)
    assert not backend.saved_model_used
    assert (engine.read_bytes(), engine.stat().st_mtime_ns) == before


def test_a_saved_model_of_another_model_is_built_again(tmp_path: Path) -> None:
    engine = tmp_path / "detector.engine"
    other = ASSETS / "models" / "light_person_detector_192.onnx"
    OnnxRuntimeBackend(other, saved_model=engine)
    yolox_sha256 = hashlib.sha256(YOLOX.read_bytes()).hexdigest()
    assert (saved_model_key(engine) or {}).get("source_sha256") != yolox_sha256
    backend = OnnxRuntimeBackend(YOLOX, saved_model=engine)
    assert not backend.saved_model_used  # panoptes' own file, built from another model: rebuilt
    assert (saved_model_key(engine) or {}).get("source_sha256") == yolox_sha256
    assert OnnxRuntimeBackend(YOLOX, saved_model=engine).saved_model_used
