"""nvinfer's detection filters: ``[class-attrs-*]`` size and position limits, and
``filter-out-class-ids``, read from DeepStream files and applied to the detector's boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panoptes import Batch, ConfigError, Pipeline
from panoptes.config.deepstream.translate import translate_app_config
from panoptes.config.loader import load_config
from panoptes.models.postprocess import BoxLimits, boxes_within_limits

VIDEOS = (Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos").resolve()
MODELS = (Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "models").resolve()

# The parking-lot clip (768×432) scaled by the mux to 1280×720: limits are in mux pixels, 5/3 of
# the original frame's.
MUX_SCALE = 1280 / 768

APP = f"""\
[source0]
enable=1
type=2
uri=file://{VIDEOS}/person-bicycle-car-detection.mp4
drop-frame-interval=20

[streammux]
batch-size=1
width=1280
height=720
enable-padding=0

[primary-gie]
enable=1
config-file=pgie.txt

[sink0]
enable=1
type=1
"""

MODEL = f"""\
[property]
onnx-file={MODELS}/yolox_nano.onnx
net-scale-factor=1
model-color-format=1
maintain-aspect-ratio=1
cluster-mode=2
"""

# What the limited run asks for: persons (class 0) no higher than 120 px, every class at least
# 60×100 px, no box starting within 20 px of the top or ending within 50 px of the bottom, and
# no airplanes (class 4: the clip's road markings, seen on most frames).
LIMITS = """\
filter-out-class-ids=4;

[class-attrs-all]
pre-cluster-threshold=0.2
detected-min-w=60
detected-min-h=100
roi-top-offset=20
roi-bottom-offset=50

[class-attrs-0]
detected-max-h=120
"""


def _expected_kept(class_id: int, xyxy_mux: list[float]) -> bool | None:
    """Whether a box (mux pixels) passes LIMITS; None when it is within half a pixel of one."""
    x1, y1, x2, y2 = xyxy_mux
    width, height = x2 - x1, y2 - y1
    tests = [(width, 60, ">="), (height, 100, ">="), (y1, 20, ">="), (y2, 720 - 50, "<=")]
    if class_id == 0:
        tests.append((height, 120, "<="))
    if any(abs(value - limit) < 0.5 for value, limit, _ in tests):
        return None
    return class_id != 4 and all(
        value >= limit if op == ">=" else value <= limit for value, limit, op in tests
    )


def _run(folder: Path) -> list[tuple[int, int, list[float]]]:
    """(frame_num, class_id, xyxy in mux pixels) of every object of the primary model."""
    config, base_dir = load_config(folder / "app.txt", ["sources[0].max_frames=24"])
    found: list[tuple[int, int, list[float]]] = []

    def collect(batch: Batch) -> None:
        for frame in batch:
            objects = frame.objects
            for xyxy, class_id in zip(
                objects.xyxy.tolist(), objects.class_id.tolist(), strict=True
            ):
                found.append((frame.frame_num, class_id, [v * MUX_SCALE for v in xyxy]))

    pipeline = Pipeline(config, base_dir=base_dir)
    pipeline.add_probe("primary-gie", collect)
    assert pipeline.run().ok
    return found


def test_boxes_outside_the_limits_are_gone_and_the_others_kept(tmp_path: Path) -> None:
    reference, limited = tmp_path / "reference", tmp_path / "limited"
    for folder, model in (
        (reference, MODEL + "[class-attrs-all]\npre-cluster-threshold=0.2\n"),
        (limited, MODEL + LIMITS),
    ):
        folder.mkdir()
        (folder / "app.txt").write_text(APP)
        (folder / "pgie.txt").write_text(model)
    every = _run(reference)
    kept = _run(limited)

    verdicts = [(row, _expected_kept(row[1], row[2])) for row in every]
    expected = [row for row, verdict in verdicts if verdict]
    dropped = [row for row, verdict in verdicts if verdict is False]
    # The clip exercises each limit: some boxes pass, and each rule drops some.
    assert len(expected) >= 3 and len(dropped) >= 10
    assert any(row[1] == 4 for row in dropped)
    assert any(row[1] == 0 and row[2][3] - row[2][1] > 120 for row in dropped)
    assert any(row[2][3] > 670 for row in dropped)
    assert any(row[2][2] - row[2][0] < 60 for row in dropped)

    def near(row: tuple[int, int, list[float]], rows: list[tuple[int, int, list[float]]]) -> bool:
        return any(
            other[0] == row[0] and other[1] == row[1] and np.allclose(other[2], row[2], atol=0.5)
            for other in rows
        )

    assert all(near(row, kept) for row in expected), "a box within every limit went missing"
    assert not any(near(row, kept) for row in dropped), "a box outside a limit was kept"
    # Nothing is kept that the limits would drop, borderline boxes aside.
    assert all(_expected_kept(row[1], row[2]) is not False for row in kept)


@pytest.mark.parametrize(
    ("xyxy", "class_id", "kept"),
    [
        ([10, 30, 80, 150], 0, True),  # 70×120, within everything
        ([10, 30, 50, 150], 0, False),  # 40 wide: below min_width
        ([10, 30, 80, 100], 0, False),  # 70 high: below min_height
        ([10, 30, 300, 150], 0, False),  # 290 wide: above max_width
        ([10, 10, 80, 150], 0, False),  # top edge above top_margin
        ([10, 200, 80, 460], 0, False),  # bottom edge below height - bottom_margin
        ([10, 30, 80, 250], 1, True),  # class 1 has no max_height of its own... only max 300
        ([10, 30, 80, 350], 1, False),  # ...which its own limits cap at 300
        ([10, 30, 80, 150], 2, False),  # an excluded class
    ],
)
def test_limits_per_box(xyxy: list[float], class_id: int, kept: bool) -> None:
    everything = BoxLimits(
        min_width=60, min_height=100, max_width=200, top_margin=20, bottom_margin=30
    )
    class_one = BoxLimits(min_width=60, min_height=100, max_height=300)
    mask = boxes_within_limits(
        np.array([xyxy], np.float32),
        np.array([class_id]),
        480,
        limits=everything,
        class_limits={1: class_one},
        excluded_classes=[2],
    )
    assert mask.tolist() == [kept]


def test_a_class_group_starts_from_the_all_classes_values(tmp_path: Path) -> None:
    (tmp_path / "app.txt").write_text(APP)
    (tmp_path / "pgie.txt").write_text(
        MODEL + LIMITS + "[class-attrs-2]\nnms-iou-threshold=0.3\ntopk=5\n"
        "pre-cluster-threshold=0.6\n"
    )
    translation = translate_app_config(tmp_path / "app.txt")
    (infer,) = translation.config["infer"]
    assert infer["excluded_classes"] == [4]
    assert infer["box_limits"] == {
        "min_width": 60,
        "min_height": 100,
        "top_margin": 20,
        "bottom_margin": 50,
    }
    assert infer["class_box_limits"] == {0: {**infer["box_limits"], "max_height": 120}}
    assert infer["class_thresholds"] == {2: 0.6}
    notes = [str(note) for note in translation.notes]
    # A class's own NMS settings are not kept apart: said, not silently dropped.
    assert any("pgie.txt:19 [class-attrs-2] nms-iou-threshold: approximated" in n for n in notes)
    assert any("[class-attrs-2] topk: approximated" in n for n in notes)
    config, _ = load_config(tmp_path / "app.txt")
    assert config.infer[0].class_box_limits[0].max_height == 120


def test_a_negative_limit_names_its_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "app.txt").write_text(APP)
    (tmp_path / "pgie.txt").write_text(MODEL + "[class-attrs-all]\ndetected-min-w=-4\n")
    with pytest.raises(ConfigError, match=r"pgie\.txt:8 \[class-attrs-all\] detected-min-w"):
        translate_app_config(tmp_path / "app.txt")
