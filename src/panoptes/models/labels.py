"""Class names: the COCO-80 list, label files and the names Ultralytics stores in its models."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

from panoptes.core.errors import ModelError

__all__ = [
    "COCO_LABELS",
    "labels_from_metadata",
    "load_labels",
    "read_label_lines",
    "split_labels",
]

#: The 80 COCO detection classes in the order COCO-trained detectors number them (ids 0..79).
COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


def load_labels(path: str | Path) -> list[str]:
    """Read class names from a text file: one per line (line i is class i).

    DeepStream's single-line form, ``person;bicycle;car``, is read too. Surrounding spaces are
    stripped; trailing blank lines are ignored, blank lines in between keep their place (as "").
    """
    path = Path(path)
    lines = read_label_lines(path)
    if len(lines) == 1 and ";" in lines[0]:
        lines = split_labels(lines[0])
    if not lines:
        raise ModelError(f"labels file {path} is empty")
    return lines


def read_label_lines(path: Path) -> list[str]:
    """The stripped lines of a labels file, without trailing blank lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"labels file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"labels file {path} cannot be read: {exc}") from exc
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def split_labels(line: str) -> list[str]:
    """DeepStream's ``a;b;c`` (a trailing ``;`` allowed) as a list of names."""
    labels = [label.strip() for label in line.split(";")]
    while labels and not labels[-1]:
        labels.pop()
    return labels


def labels_from_metadata(
    metadata: Mapping[str, str], *, model: str = "the model"
) -> list[str] | None:
    """Class names from an Ultralytics model's ``names`` metadata, or None when it has none.

    The value is a Python literal, ``"{0: 'person', 1: 'bicycle'}"`` (or a list). Ids missing from
    a dict are named ``class_<id>``.
    """
    text = metadata.get("names")
    if text is None:
        return None
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ModelError(f"{model}: metadata 'names' is not a Python literal: {exc}") from None
    if isinstance(names, list | tuple) and all(isinstance(name, str) for name in names):
        return list(names)
    if isinstance(names, dict) and all(
        isinstance(key, int) and key >= 0 and isinstance(name, str) for key, name in names.items()
    ):
        if not names:
            return []
        by_id: dict[int, str] = names
        return [by_id.get(index, f"class_{index}") for index in range(max(by_id) + 1)]
    raise ModelError(f"{model}: metadata 'names' should map class ids to names, got {text[:80]!r}")
