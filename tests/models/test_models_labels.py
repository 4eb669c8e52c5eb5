"""Label files, Ultralytics names and the COCO list."""

from __future__ import annotations

from pathlib import Path

import pytest

from panoptes.core.errors import ModelError
from panoptes.models.labels import COCO_LABELS, labels_from_metadata, load_labels


def test_coco_labels() -> None:
    assert len(COCO_LABELS) == 80
    assert (COCO_LABELS[0], COCO_LABELS[15], COCO_LABELS[79]) == ("person", "cat", "toothbrush")


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("person\ncar\n", ["person", "car"]),
        ("person\r\n  traffic light \r\n\n\n", ["person", "traffic light"]),
        ("person\n\nbus\n", ["person", "", "bus"]),
        ("Car;Bicycle;Person;Roadsign\n", ["Car", "Bicycle", "Person", "Roadsign"]),
        ("face;", ["face"]),
    ],
    ids=["lines", "spaces and crlf", "blank kept in place", "deepstream", "trailing separator"],
)
def test_load_labels(tmp_path: Path, text: str, labels: list[str]) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes(text.encode())
    assert load_labels(path) == labels


def test_load_labels_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_labels(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ModelError, match="is empty"):
        load_labels(tmp_path / "empty.txt")


@pytest.mark.parametrize(
    ("names", "labels"),
    [
        ("{0: 'person', 1: 'bicycle'}", ["person", "bicycle"]),
        ("{0: 'a', 2: 'c'}", ["a", "class_1", "c"]),
        ("['x', 'y']", ["x", "y"]),
        (None, None),
    ],
)
def test_labels_from_metadata(names: str | None, labels: list[str] | None) -> None:
    metadata = {"task": "detect"} if names is None else {"names": names}
    assert labels_from_metadata(metadata) == labels


@pytest.mark.parametrize("names", ["{0: 'a'", "{'a': 0}", "__import__('os')", "42"])
def test_labels_from_bad_metadata(names: str) -> None:
    with pytest.raises(ModelError, match=r"m\.onnx: metadata 'names'"):
        labels_from_metadata({"names": names}, model="m.onnx")
