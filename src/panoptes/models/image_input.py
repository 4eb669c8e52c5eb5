"""The image input of a detector or classifier: checked once, and its size decided, for both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from panoptes.core.errors import ModelError
from panoptes.models.backends import TensorInfo
from panoptes.models.preprocess import PreprocessSpec


def describe_shape(shape: Sequence[int | None]) -> str:
    """``[1, 3, ?, ?]``: a tensor shape with its dynamic dimensions as ``?``."""
    return "[" + ", ".join("?" if dim is None else str(dim) for dim in shape) + "]"


def size_text(width: int | None, height: int | None) -> str:
    return f"{'?' if width is None else width}×{'?' if height is None else height}"


def check_image_input(inputs: Sequence[TensorInfo], model: str, role: str) -> TensorInfo:
    """The model's one NCHW float image input; ModelError naming the model otherwise.

    ``role`` (``"detector"``, ``"classifier"``) words the errors.
    """
    if len(inputs) != 1:
        described = ", ".join(f"{i.name!r} {describe_shape(i.shape)}" for i in inputs)
        raise ModelError(
            f"model {model} has {len(inputs)} inputs ({described}); a {role} takes one "
            "NCHW image tensor"
        )
    found = inputs[0]
    shape = found.shape
    where = f"model {model}: input {found.name!r} {describe_shape(shape)}"
    if len(shape) != 4:
        raise ModelError(f"{where} is not a 4-D NCHW image tensor [batch, 3, height, width]")
    if shape[1] not in (3, None):
        if shape[3] == 3:
            raise ModelError(f"{where} looks channels-last (NHWC); export it with NCHW input")
        raise ModelError(f"{where} has {shape[1]} channels; a {role} takes 3 (colour)")
    if found.dtype.kind != "f":
        raise ModelError(f"{where} takes {found.dtype}; a {role} feeds float input")
    return found


def image_input_size(
    found: TensorInfo,
    requested: Any,
    model: str,
    *,
    fallback: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """The (width, height) to run the model at: ``requested`` (preprocess input_size_wh), which
    must agree with the model's fixed dimensions, else the model's own size, else ``fallback``
    (a size its metadata gives) for a dynamic one."""
    model_wh = (found.shape[3], found.shape[2])
    if requested is not None:
        # PreprocessSpec checks and normalises the value (a list from YAML, say).
        size = PreprocessSpec(cast(Any, requested)).input_size_wh
        if any(m is not None and m != r for m, r in zip(model_wh, size, strict=True)):
            raise ModelError(
                f"model {model} expects {size_text(*model_wh)} input, config asks for "
                f"{size_text(*size)}: leave preprocess input_size_wh out, or "
                "re-export the model at that size (or with a dynamic size)"
            )
        return size
    if model_wh[0] is not None and model_wh[1] is not None:
        return (model_wh[0], model_wh[1])
    if fallback is not None:
        return fallback
    raise ModelError(
        f"model {model} has a dynamic input size {size_text(*model_wh)}: set "
        "preprocess input_size_wh (width, height) to the size to run it at"
    )
