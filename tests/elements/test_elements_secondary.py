"""Secondary ``infer`` elements: models on the crops of other models' objects.

The classifier is a real ONNX "dominant colour" model (tests/onnx_classifier.py), so the label
every crop should get is known from its pixels.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import skimage.data

from onnx_classifier import COLOURS, colour_classifier, expected_scores, feature_model
from panoptes import Batch, Bus, ConfigError, Frame, Letterbox, MessageType, Pipeline, StreamEvent
from panoptes.config.loader import parse_config
from panoptes.config.validate import check_config
from panoptes.core.element import BuildContext
from panoptes.core.meta import NO_ID, TensorMeta
from panoptes.elements.infer import Infer, ObjectTensorMeta
from panoptes.tracking.results import FinishedTrack

VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"
ONE_BY_ONE = VIDEOS / "one-by-one-person-detection.mp4"

BLUE, GREEN, RED = (220, 40, 30), (30, 200, 40), (40, 30, 220)
GREY = (128, 128, 128)
FRAME_WH = (640, 360)
CAR, PERSON, TRUCK = 2, 0, 7


@pytest.fixture
def colour_model(tmp_path: Path) -> Path:
    return colour_classifier(tmp_path / "colour.onnx")


def secondary(tmp_path: Path, bus: Bus | None = None, **props: Any) -> Infer:
    """The built secondary element ``infer[1]`` (gie 2) of a config whose primary model is
    ``infer[0]`` (gie 1); the primary itself is not built."""
    props.setdefault("process_mode", "secondary")
    props.setdefault("network_type", "classifier")
    config = parse_config(
        {"sources": [{"uri": "clip.mp4"}], "infer": [{"model": "yolox-nano"}, props]}
    )
    context = BuildContext(bus or Bus(), tmp_path, "infer[1]", config)
    element = Infer(config.infer[1], name="colour", context=context, gie_id=2)
    element.build()
    return element


def scene(rectangles: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]]) -> np.ndarray:
    """A grey 640×360 BGR frame with filled rectangles (xyxy, BGR colour)."""
    image = np.full((FRAME_WH[1], FRAME_WH[0], 3), GREY, np.uint8)
    for (x1, y1, x2, y2), colour in rectangles:
        image[y1:y2, x1:x2] = colour
    return image


def frame_of(
    image: np.ndarray,
    objects: list[tuple[tuple[int, int, int, int], int, int]],
    *,
    transform: Letterbox | None = None,
    image_wh: tuple[int, int] | None = None,
    source_id: int = 0,
    frame_num: int = 0,
    track_ids: list[int] | None = None,
) -> Frame:
    """A frame whose objects are (xyxy, class id, component id) in original pixels and whose
    ``image`` is the original warped by ``transform`` to ``image_wh`` (as the mux resizes)."""
    size_wh = (image.shape[1], image.shape[0])
    pixels = image
    if transform is not None and image_wh is not None:
        pixels = transform.warp(image, image_wh, pad_value=0)
    frame = Frame(source_id, f"cam{source_id}", frame_num, None, 0.0, size_wh, pixels)
    if transform is not None:
        frame.transform = transform
    for index, (xyxy, class_id, component_id) in enumerate(objects):
        frame.objects.add(
            np.array([xyxy], np.float32),
            np.array([0.9], np.float32),
            np.array([class_id]),
            [f"class{class_id}"],
            component_id=component_id,
            track_id=None if track_ids is None else np.array([track_ids[index]]),
        )
    frame.meta.inferred_by.add(1)
    return frame


def colours_of(frame: Frame) -> list[list[str]]:
    return [[label for _, label, _ in found] for found in frame.objects.classifications]


MUX_TRANSFORMS = {
    "same-size": (None, None),
    "half-size": (Letterbox((0.5, 0.5)), (320, 180)),
    "letterboxed": (Letterbox.fit(FRAME_WH, (416, 416)), (416, 416)),
}


@pytest.mark.parametrize("mux", MUX_TRANSFORMS.values(), ids=MUX_TRANSFORMS.keys())
def test_each_chosen_object_gets_the_colour_of_its_crop(
    tmp_path: Path, colour_model: Path, mux: tuple[Letterbox | None, tuple[int, int] | None]
) -> None:
    element = secondary(
        tmp_path,
        model=str(colour_model),
        labels=str(colour_model.with_suffix(".txt")),
        operate_on_class_ids=[CAR, TRUCK],
        input_object_min_width=12,
        input_object_min_height=12,
    )
    boxes = {
        "blue car": (40, 40, 200, 150),
        "red car": (300, 60, 420, 300),
        "green person": (450, 100, 600, 330),
        "tiny red car": (10, 300, 20, 330),
        "green car of another model": (220, 200, 290, 340),
        "green truck": (520, 10, 630, 90),
    }
    image = scene(
        [
            (boxes["blue car"], BLUE),
            (boxes["red car"], RED),
            (boxes["green person"], GREEN),
            (boxes["tiny red car"], RED),
            (boxes["green car of another model"], GREEN),
            (boxes["green truck"], GREEN),
        ]
    )
    objects = [
        (boxes["blue car"], CAR, 1),
        (boxes["red car"], CAR, 1),
        (boxes["green person"], PERSON, 1),
        (boxes["tiny red car"], CAR, 1),
        (boxes["green car of another model"], CAR, 3),
        (boxes["green truck"], TRUCK, 1),
    ]
    frame = frame_of(image, objects, transform=mux[0], image_wh=mux[1])
    out = element.process(Batch([frame]))
    element.close()
    assert out is not None and out.frames == [frame]
    assert colours_of(frame) == [["blue"], ["red"], [], [], [], ["green"]]
    for row in (0, 1, 5):
        ((component_id, _, confidence),) = frame.objects.classifications[row]
        assert component_id == 2 and confidence > 0.99
    assert frame.meta.inferred_by == {1, 2}
    assert frame.objects.to_dicts()[0]["classifications"] == [
        {"component_id": 2, "label": "blue", "confidence": 1.0}
    ]
    # The secondary adds nothing else: no objects, no extra columns, no tensor meta.
    assert len(frame.objects) == len(objects) and not frame.objects.extra
    assert not frame.meta.tensor_meta


@pytest.mark.parametrize(("threshold", "attached"), [(0.5, True), (0.6, False)])
def test_classifier_threshold(tmp_path: Path, threshold: float, attached: bool) -> None:
    """softmax(0.02 · (80, 80, 120)) gives red 0.527: attached at 0.5, not at 0.6."""
    model = colour_classifier(tmp_path / "soft.onnx", scale=0.02)
    element = secondary(tmp_path, model=str(model), classifier_threshold=threshold)
    frame = frame_of(scene([((100, 100, 200, 200), (80, 80, 120))]), [((100, 100, 200, 200), 0, 1)])
    element.process(Batch([frame]))
    expected = expected_scores([[80, 80, 120]], 0.02)[0, 2]
    assert expected == pytest.approx(0.527, abs=1e-3)
    if attached:
        # No labels file: the model has no names, so the classes are named by id.
        ((_, label, confidence),) = frame.objects.classifications[0]
        assert label == "class_2" and confidence == pytest.approx(expected, rel=1e-4)
    else:
        assert frame.objects.classifications == [[]]
    assert 2 in frame.meta.inferred_by


def test_fixed_batch_model_takes_the_crops_of_a_batch_in_chunks(tmp_path: Path) -> None:
    model = colour_classifier(tmp_path / "colour4.onnx", batch=4)
    element = secondary(tmp_path, model=str(model), labels=str(model.with_suffix(".txt")))
    assert element.classifier.batch_size == 4
    colours = [BLUE, GREEN, RED]
    frames = []
    for source_id in range(3):
        boxes = [(20 + 150 * i, 50, 120 + 150 * i, 250) for i in range(3)]
        shifted = colours[source_id:] + colours[:source_id]
        image = scene(list(zip(boxes, shifted, strict=True)))
        frames.append(frame_of(image, [(box, 0, 1) for box in boxes], source_id=source_id))
    element.process(Batch(frames))
    assert [colours_of(frame) for frame in frames] == [
        [["blue"], ["green"], ["red"]],
        [["green"], ["red"], ["blue"]],
        [["red"], ["blue"], ["green"]],
    ]


def test_interval_counts_the_frames_of_each_stream(tmp_path: Path, colour_model: Path) -> None:
    element = secondary(tmp_path, model=str(colour_model), interval=1)
    image = scene([((10, 10, 100, 100), RED)])
    inferred = []
    for frame_num in range(3):
        frames = [
            frame_of(image, [((10, 10, 100, 100), 0, 1)], source_id=s, frame_num=frame_num)
            for s in (0, 1)
        ]
        element.process(Batch(frames))
        inferred.append(
            [2 in f.meta.inferred_by and bool(f.objects.classifications[0]) for f in frames]
        )
    assert inferred == [[True, True], [False, False], [True, True]]
    # A stream that ends starts counting again when its id comes back.
    element.process(Batch([], events=[StreamEvent("ended", 1, "cam1")]))
    frame = frame_of(image, [((10, 10, 100, 100), 0, 1)], source_id=1, frame_num=3)
    element.process(Batch([frame]))
    assert 2 in frame.meta.inferred_by


def test_reinfer_interval_reuses_a_tracks_results(tmp_path: Path, colour_model: Path) -> None:
    """Track 7 is classified at frame 0 (red); its crop turns blue, but its cached result holds
    until more than 3 frames have passed, or its box grows by more than a fifth."""
    element = secondary(tmp_path, model=str(colour_model), reinfer_interval=3)
    box = (100, 100, 200, 200)

    def step(
        frame_num: int,
        colour: tuple[int, int, int],
        xyxy: tuple[int, int, int, int] = box,
        **batch: Any,
    ) -> list[str]:
        frame = frame_of(
            scene([(xyxy, colour)]), [(xyxy, 0, 1)], frame_num=frame_num, track_ids=[7]
        )
        element.process(Batch([frame], **batch))
        return colours_of(frame)[0]

    assert step(0, RED) == ["class_2"]
    assert step(1, BLUE) == ["class_2"]
    assert step(3, BLUE) == ["class_2"]
    assert step(4, BLUE) == ["class_0"]  # 4 frames since the last look
    assert step(5, GREEN) == ["class_0"]
    assert step(6, GREEN, (100, 100, 200, 219)) == ["class_0"]  # area grown by 19 %
    assert step(7, GREEN, (100, 100, 200, 225)) == ["class_1"]  # by 25 %
    # A track the tracker ended is forgotten.
    ended = FinishedTrack(7, 0, 0, 7, 8, 8, (100, 100, 200, 225), "lost", source_id=0)
    element.process(Batch([], terminated_tracks=[ended]))
    assert step(8, RED, (100, 100, 200, 225)) == ["class_2"]
    # As is every track of a stream that ended.
    element.process(Batch([], events=[StreamEvent("ended", 0, "cam0")]))
    assert step(9, BLUE, (100, 100, 200, 225)) == ["class_0"]
    # Untracked objects are classified every time.
    frame = frame_of(scene([(box, GREEN)]), [(box, 0, 1)], frame_num=10, track_ids=[NO_ID])
    element.process(Batch([frame]))
    assert colours_of(frame) == [["class_1"]]


def test_secondary_detector_adds_children_in_frame_pixels(tmp_path: Path) -> None:
    """A person detector on the crop of a "picture" object: the astronaut, pasted at (300, 100)
    into a larger frame that the mux halved. yolox-nano finds her at about [11, 20, 369, 507] of
    the photo (shared assets' reference)."""
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    image = np.full((720, 1000, 3), 90, np.uint8)
    image[100:612, 300:812] = photo
    half = Letterbox((0.5, 0.5))
    frame = frame_of(image, [((290, 90, 822, 622), 62, 1)], transform=half, image_wh=(500, 360))
    element = secondary(
        tmp_path, model="yolox-nano", network_type="detector", instances=1, classes=[PERSON]
    )
    element.process(Batch([frame]))
    element.close()
    objects = frame.objects
    children = np.flatnonzero(objects.parent == 0)
    assert len(children) == 1
    (child,) = children.tolist()
    assert objects.labels[child] == "person" and objects.component_id[child] == 2
    assert objects.confidence[child] > 0.8
    np.testing.assert_allclose(objects.xyxy[child], [311, 120, 669, 607], atol=12)
    assert frame.objects.to_dicts()[child]["parent"] == 0
    assert objects.classifications == [[], []]


def test_other_network_attaches_each_crops_tensors(tmp_path: Path, colour_model: Path) -> None:
    element = secondary(tmp_path, model=str(colour_model), network_type="other")
    half = Letterbox((0.5, 0.5))
    boxes = [(40, 40, 200, 150), (300, 60, 420, 300)]
    image = scene([(boxes[0], BLUE), (boxes[1], RED)])
    frame = frame_of(image, [(box, 0, 1) for box in boxes], transform=half, image_wh=(320, 180))
    element.process(Batch([frame]))
    assert frame.objects.classifications == [[], []] and len(frame.objects) == 2
    metas = frame.meta.tensor_meta
    assert [type(meta) for meta in metas] == [ObjectTensorMeta, ObjectTensorMeta]
    assert [meta.row for meta in metas] == [0, 1]
    for meta, box, colour in zip(metas, boxes, ("blue", "red"), strict=True):
        assert meta.component_id == 2 and meta.input_size_wh == (32, 32)
        assert COLOURS[int(meta.tensors["output"].argmax())] == colour
        # The letterbox takes the object's box (original pixels) onto the whole network input.
        corners = meta.letterbox.to_destination(np.array(box, np.float32))
        np.testing.assert_allclose(corners, [0, 0, 32, 32], atol=1e-3)


def test_primary_other_network_gives_whole_frame_tensors(
    tmp_path: Path, colour_model: Path
) -> None:
    """As ``parser: none`` with ``output_tensor_meta``: no objects, each frame's raw outputs."""
    config = parse_config(
        {
            "sources": [{"uri": "clip.mp4"}],
            "infer": [{"model": str(colour_model), "network_type": "other", "instances": 1}],
        }
    )
    context = BuildContext(Bus(), tmp_path, "infer[0]", config)
    element = Infer(config.infer[0], name="infer0", context=context)
    element.build()
    frame = frame_of(np.full((90, 160, 3), BLUE, np.uint8), [])
    element.process(Batch([frame]))
    (out,) = element.drain()
    element.close()
    assert out.frames == [frame] and len(frame.objects) == 0
    (meta,) = frame.meta.tensor_meta
    assert type(meta) is TensorMeta and meta.component_id == 1
    assert COLOURS[int(meta.tensors["output"].argmax())] == "blue"


def test_a_failing_model_is_reported_and_the_frames_go_on(
    tmp_path: Path, colour_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = Bus()
    element = secondary(tmp_path, bus=bus, model=str(colour_model))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(element.classifier, "classify", broken)
    frame = frame_of(scene([((10, 10, 100, 100), RED)]), [((10, 10, 100, 100), 0, 1)])
    out = element.process(Batch([frame], batch_num=5))
    assert out is not None and out.frames == [frame]
    assert frame.objects.classifications == [[]] and frame.meta.inferred_by == {1}
    (error,) = bus.errors()
    assert error.origin == "colour" and "batch 5" in error.text and "out of memory" in error.text
    assert element.failures == 1


def test_primary_model_warns_about_secondary_properties(tmp_path: Path) -> None:
    bus = Bus()
    config = parse_config(
        {"sources": [{"uri": "clip.mp4"}], "infer": [{"instances": 1, "operate_on_class_ids": [0]}]}
    )
    element = Infer(
        config.infer[0], name="infer0", context=BuildContext(bus, tmp_path, "infer[0]", config)
    )
    element.build()
    element.close()
    assert element.gie_id == 1
    warnings = [m for m in iter(lambda: bus.poll(0), None) if m.type is MessageType.WARNING]
    assert [m.text for m in warnings] == [
        "infer[0].operate_on_class_ids is ignored: it is for process_mode: secondary, and this "
        "model is primary"
    ]


# -- configuration errors ------------------------------------------------------------------------

PRIMARY = {"model": "yolox-nano", "instances": 1}
CLASSIFIER = {"model": "COLOUR", "process_mode": "secondary", "network_type": "classifier"}

CONFIG_ERRORS = {
    "unknown-gie": (
        [PRIMARY, {**CLASSIFIER, "operate_on_gie_id": 5}],
        "infer[1].operate_on_gie_id",
        "no primary model .*has gie_id 5",
    ),
    "no-primary": ([CLASSIFIER], "infer[0].operate_on_gie_id", "no primary infer element"),
    "gie-of-a-classifier": (
        [PRIMARY, CLASSIFIER, {**CLASSIFIER, "operate_on_gie_id": 2}],
        "infer[2].operate_on_gie_id",
        "the models whose objects can be cropped: 1$",
    ),
    "not-class-scores": (
        [PRIMARY, {**CLASSIFIER, "model": "FEATURES"}],
        "infer[1].network_type",
        r"'features' is float32 \[\?, 3, 8, 8\], not scores",
    ),
    "primary-classifier": (
        [{**PRIMARY, "network_type": "classifier"}],
        "infer[0].network_type",
        "set process_mode: secondary",
    ),
    "reinfer-not-classifier": (
        [PRIMARY, {**CLASSIFIER, "network_type": "detector", "reinfer_interval": 5}],
        "infer[1].reinfer_interval",
        "only a classifier",
    ),
    "other-with-parser": (
        [PRIMARY, {**CLASSIFIER, "network_type": "other", "parser": "yolox"}],
        "infer[1].parser",
        "runs no parser",
    ),
    "labels-per-output": (
        [PRIMARY, {**CLASSIFIER, "model": "TWO_OUTPUTS", "labels": ["a;b;c", "d;e", "f"]}],
        "infer[1].labels",
        r"the labels list has 3 line\(s\) for the 2 outputs",
    ),
}


def with_models(tmp_path: Path, infer: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``infer`` with the placeholder model names (COLOUR, FEATURES, TWO_OUTPUTS) replaced by
    the paths of test models."""
    paths = {
        "COLOUR": colour_classifier(tmp_path / "colour.onnx"),
        "FEATURES": feature_model(tmp_path / "features.onnx"),
        "TWO_OUTPUTS": colour_classifier(tmp_path / "two.onnx", brightness=True),
    }
    return [
        {**props, "model": str(paths[props["model"]])}
        if props.get("model") in paths
        else dict(props)
        for props in infer
    ]


@pytest.mark.parametrize(
    ("infer", "place", "reason"), CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys()
)
def test_config_errors_name_their_place(
    tmp_path: Path, infer: list[dict[str, Any]], place: str, reason: str
) -> None:
    config = {"sources": [{"uri": str(ONE_BY_ONE)}], "infer": with_models(tmp_path, infer)}
    with pytest.raises(ConfigError, match=rf"^{re.escape(place)}: .*{reason}"):
        Pipeline(config).build()


def test_validate_reports_the_place_and_accepts_a_chain(tmp_path: Path) -> None:
    """``panoptes validate`` builds each infer element on its own: the gie ids still come from
    the positions. A secondary may crop the objects of a secondary detector listed before it."""
    chain = [
        PRIMARY,
        {"model": "yolox-nano", "process_mode": "secondary", "instances": 1, "classes": [0]},
        {**CLASSIFIER, "operate_on_gie_id": 2},
    ]
    wrong = [PRIMARY, {**CLASSIFIER, "operate_on_gie_id": 3}]
    problems = []
    for name, infer in (("chain", chain), ("wrong", wrong)):
        path = tmp_path / f"{name}.yaml"
        config = {"sources": [{"uri": str(ONE_BY_ONE)}], "infer": with_models(tmp_path, infer)}
        path.write_text(json.dumps(config))
        problems.append(check_config(path))
    assert problems[0] == []
    assert len(problems[1]) == 1 and problems[1][0].startswith("infer[1].operate_on_gie_id: ")


# -- in pipelines --------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pipeline_classifies_the_objects_a_probe_puts_on_image_frames(
    tmp_path: Path, colour_model: Path
) -> None:
    """Image frames with coloured rectangles, halved by the mux; a probe on the primary model
    stands in for its detections (cars and a person); the secondary classifies the cars."""
    folder = tmp_path / "frames"
    folder.mkdir()
    layouts = [
        [((40, 40, 200, 150), BLUE, CAR), ((300, 60, 420, 300), RED, CAR)],
        [((40, 40, 200, 150), GREEN, CAR), ((300, 60, 420, 300), GREEN, PERSON)],
        [((500, 200, 630, 350), RED, CAR), ((10, 10, 30, 30), BLUE, CAR)],
    ]
    for index, layout in enumerate(layouts):
        image = scene([(xyxy, colour) for xyxy, colour, _ in layout])
        cv2.imwrite(str(folder / f"{index:03d}.png"), image)

    def detections(batch: Batch) -> None:
        for frame in batch.frames:
            frame.objects.keep(np.zeros(len(frame.objects), bool))
            for xyxy, _, class_id in layouts[frame.frame_num]:
                frame.objects.add(
                    np.array([xyxy], np.float32),
                    np.array([0.9], np.float32),
                    np.array([class_id]),
                    ["car" if class_id == CAR else "person"],
                    component_id=1,
                )

    config = {
        "sources": [{"uri": str(folder)}],
        "mux": {"width": 320, "height": 180},
        "infer": [
            {"name": "detector", "model": "yolox-nano", "instances": 1},
            {
                "name": "colour",
                "model": str(colour_model),
                "labels": str(colour_model.with_suffix(".txt")),
                "process_mode": "secondary",
                "network_type": "classifier",
                "operate_on_class_ids": [CAR],
                "input_object_min_width": 24,
            },
        ],
        "sinks": [{"type": "jsonl", "path": str(tmp_path / "meta.jsonl")}],
        "perf": {"interval_s": 0},
    }
    pipeline = Pipeline(config)
    pipeline.add_probe("detector", detections)
    summary = pipeline.run()
    assert summary.ok, summary.errors
    records = read_jsonl(tmp_path / "meta.jsonl")
    found = [
        [[c["label"] for c in obj.get("classifications", [])] for obj in record["objects"]]
        for record in records
    ]
    assert found == [[["blue"], ["red"]], [["green"], []], [["red"], []]]


def run_one_by_one(tmp_path: Path, colour_model: Path, **config: Any) -> list[dict[str, Any]]:
    """Frames 0, 10, ..., 190 of the one-by-one clip (a person from frame 70 on) through
    yolox-nano and the colour classifier on persons; returns the jsonl records and checks, in a
    probe on the secondary, every person's colour against the pixels of its crop."""
    checked: list[tuple[str, float, float]] = []

    def check(batch: Batch) -> None:
        for frame in batch.frames:
            objects = frame.objects
            for row in range(len(objects)):
                found = objects.classifications[row]
                if objects.class_id[row] != PERSON:
                    assert found == []
                    continue
                # No mux resize: the original box is in frame.image's pixels.
                x1, y1, x2, y2 = objects.xyxy[row].tolist()
                crop = frame.image[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))]
                means = crop.reshape(-1, 3).mean(axis=0)
                scores = expected_scores(means[None], scale=0.2)[0]
                ((component_id, label, confidence),) = found
                assert component_id == 2
                checked.append((label, confidence, float(scores.max())))
                assert label == COLOURS[int(means.argmax())]

    config.update(
        sources=[{"uri": str(ONE_BY_ONE), "max_frames": 20, "drop_frame_interval": 10}],
        infer=[
            {"model": "yolox-nano"},
            {
                "name": "colour",
                "model": str(colour_model),
                "labels": str(colour_model.with_suffix(".txt")),
                "process_mode": "secondary",
                "network_type": "classifier",
                "operate_on_class_ids": [PERSON],
            },
        ],
        sinks=[{"type": "jsonl", "path": str(tmp_path / "meta.jsonl")}],
        perf={"interval_s": 0},
    )
    pipeline = Pipeline(config)
    pipeline.add_probe("colour", check)
    summary = pipeline.run()
    assert summary.ok, summary.errors
    assert len(checked) >= 10
    for _, confidence, expected in checked:
        # The model sees the crop at 32×32: its means differ a little from the full crop's.
        assert confidence == pytest.approx(expected, abs=0.02)
    return read_jsonl(tmp_path / "meta.jsonl")


@pytest.fixture
def soft_colour_model(tmp_path: Path) -> Path:
    """Scale 0.2: a person's crop here (BGR means about 93, 94, 105) is red at about 0.8."""
    return colour_classifier(tmp_path / "colour.onnx", scale=0.2)


def test_real_clip_people_get_the_colour_of_their_crops(
    tmp_path: Path, soft_colour_model: Path
) -> None:
    records = run_one_by_one(tmp_path, soft_colour_model)
    assert len(records) == 20
    people = [obj for r in records for obj in r["objects"] if obj["label"] == "person"]
    assert len(people) >= 10
    for person in people:
        (classification,) = person["classifications"]
        assert classification["component_id"] == 2 and classification["label"] == "red"
        assert 0.5 <= classification["confidence"] <= 1
        assert person["track_id"] is None


def test_real_clip_secondary_runs_after_the_tracker(
    tmp_path: Path, soft_colour_model: Path
) -> None:
    records = run_one_by_one(tmp_path, soft_colour_model, tracker={"type": "bytetrack"})
    people = [obj for r in records for obj in r["objects"] if obj["classifications"]]
    assert len(people) >= 10
    assert all(person["track_id"] is not None for person in people)
