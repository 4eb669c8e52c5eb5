"""The classifier: one or more attributes (colour, make, type...) of each image it is given.

A classifier takes one NCHW image tensor and gives one output per attribute, each [batch, classes]
(or [batch, classes, 1, 1], as many Caffe-era classifiers do). Each image gets the best class of
every output, with its confidence. Secondary ``infer`` elements run it on the crops of objects.

Everything about the model is worked out when the :class:`Classifier` is built (input size, batch
size, outputs, labels) and checked there, with errors that name the model file.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from panoptes.core.errors import ConfigError, ModelError
from panoptes.core.geometry import Letterbox
from panoptes.models.backends import Backend, TensorInfo, load_backend
from panoptes.models.detector import ModelWarning
from panoptes.models.image_input import check_image_input, describe_shape, image_input_size
from panoptes.models.labels import (
    labels_from_metadata,
    load_labels,
    read_label_lines,
    split_labels,
)
from panoptes.models.preprocess import Preprocessor, PreprocessSpec
from panoptes.models.zoo import resolve_model

__all__ = [
    "DYNAMIC_BATCH_LIMIT",
    "PROBABILITY_TOLERANCE",
    "Classifications",
    "Classifier",
    "classifier_labels",
    "to_probabilities",
]

#: Images per model call for a model with a dynamic batch dimension: the input buffers grow to
#: the largest call (a 224×224 classifier takes 0.6 MB an image), so a crowd's crops go in parts.
DYNAMIC_BATCH_LIMIT = 64

#: How far outside [0, 1] a score may stray (float rounding in a softmax) and still count as a
#: probability, for :func:`to_probabilities`.
PROBABILITY_TOLERANCE = 1e-4


def to_probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores [N, C] as probabilities, float32 [N, C].

    A row whose values all lie in [0, 1] already went through a softmax or a sigmoid in the model
    and is kept as it is; any other row holds logits and goes through a softmax. The rule is per
    row and cannot tell logits that all happen to lie in [0, 1] from probabilities, but the best
    class is the same either way (a softmax keeps the order): only its confidence differs.
    """
    scores = np.asarray(scores, np.float32)
    logits = ~np.all(
        (scores >= -PROBABILITY_TOLERANCE) & (scores <= 1.0 + PROBABILITY_TOLERANCE), axis=1
    )
    if not logits.any():
        return scores
    rows = scores[logits]
    exp = np.exp(rows - rows.max(axis=1, keepdims=True))
    out = scores.copy()
    out[logits] = exp / exp.sum(axis=1, keepdims=True)
    return out


def classifier_labels(
    labels: Sequence[str] | str | Path | None,
    *,
    outputs: int,
    metadata: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    model: str = "the model",
) -> list[list[str]]:
    """The class names of each of a classifier's ``outputs``.

    ``labels`` is a labels file or a list. With one output: one label per line (or list item),
    or DeepStream's single line ``black;blue;red``. With several outputs, as DeepStream's
    classifier label files are: one line (or list item) per output, its labels separated by
    ``;``. None: the model's ``names`` metadata for a single output, else no names (the classes
    are then called ``class_<id>``). Raises :class:`ConfigError` (place ``labels``) when the
    lines do not match the outputs.
    """
    if labels is None:
        from_metadata = labels_from_metadata(metadata or {}, model=model) if outputs == 1 else None
        return [from_metadata or [] for _ in range(outputs)]
    if isinstance(labels, str | Path):
        path = Path(labels).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if outputs == 1:
            return [load_labels(path)]
        lines = read_label_lines(path)
        where = f"labels file {path}"
    else:
        lines = [str(label) for label in labels]
        if outputs == 1:
            return [split_labels(lines[0]) if len(lines) == 1 and ";" in lines[0] else lines]
        where = "the labels list"
    if len(lines) != outputs:
        raise ConfigError(
            f"{where} has {len(lines)} line(s) for the {outputs} outputs of {model}: give one "
            "line per output, its labels separated by ';'",
            "labels",
        )
    return [split_labels(line) for line in lines]


@dataclass
class Classifications:
    """The best class of each output for N images, outputs in the classifier's order.

    ``class_id`` int32 [N, O]; ``confidence`` float32 [N, O] (a probability, see
    :func:`to_probabilities`); ``labels`` [N][O] the class names; ``probabilities`` float32
    [N, C] per output name. ``letterboxes`` maps each image's pixels to network-input pixels.
    ``tensors`` holds the raw outputs (batch first) when asked for with ``keep_tensors``.
    """

    class_id: np.ndarray
    confidence: np.ndarray
    labels: list[list[str]]
    probabilities: dict[str, np.ndarray]
    letterboxes: list[Letterbox]
    tensors: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.class_id)


class Classifier:
    """An image classifier over BGR images (object crops, or whole frames).

    ``model`` is a path (relative to ``base_dir``) or a zoo name. ``preprocess`` overrides fields
    of the default :class:`PreprocessSpec`: the model's input size, stretched to it (DeepStream's
    ``maintain-aspect-ratio=0``; letterboxed with ``keep_ratio``, padded with 0), BGR 0..255.
    ``labels``: see :func:`classifier_labels`. ``max_batch`` bounds the images of one model call
    when the model's batch dimension is dynamic.

    Not thread-safe: its buffers are reused from call to call.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        base_dir: Path | None = None,
        backend: str = "onnxruntime",
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        preprocess: Mapping[str, object] | None = None,
        labels: Sequence[str] | str | Path | None = None,
        max_batch: int = DYNAMIC_BATCH_LIMIT,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._max_batch = max_batch
        resolved = resolve_model(str(model), base_dir=base_dir)
        self.model_path: Path = resolved.path
        self._backend: Backend = load_backend(
            backend, self.model_path, providers=providers, threads=threads
        )
        try:
            self._build(dict(preprocess or {}), labels, base_dir)
        except BaseException:
            self._backend.close()
            raise

    def _build(
        self,
        preprocess: dict[str, object],
        labels: Sequence[str] | str | Path | None,
        base_dir: Path | None,
    ) -> None:
        model = str(self.model_path)
        image_input = check_image_input(self._backend.inputs, model, "classifier")
        self.batch_size: int | None = image_input.shape[0]
        input_size_wh = image_input_size(image_input, preprocess.pop("input_size_wh", None), model)
        spec = PreprocessSpec(input_size_wh, keep_ratio=False, pad_value=0.0)
        self.preprocess: PreprocessSpec = spec.replace(**preprocess)
        self.input_size_wh: tuple[int, int] = self.preprocess.input_size_wh
        self._preprocessor = Preprocessor(self.preprocess)

        self.output_names: list[str] = []
        self.num_classes: list[int | None] = []
        for info in self._backend.outputs:
            self.output_names.append(info.name)
            self.num_classes.append(self._check_output(model, info))
        self.labels: list[list[str]] = classifier_labels(
            labels,
            outputs=len(self.output_names),
            metadata=self._backend.metadata,
            base_dir=base_dir,
            model=model,
        )
        for name, names, classes in zip(
            self.output_names, self.labels, self.num_classes, strict=True
        ):
            if names and classes is not None and len(names) < classes:
                warnings.warn(
                    f"model {model} output {name!r} has {classes} classes but only "
                    f"{len(names)} labels; the others are named class_<id>",
                    ModelWarning,
                    stacklevel=4,
                )

    @staticmethod
    def _check_output(model: str, info: TensorInfo) -> int | None:
        """The number of classes of an output [batch, classes] (or [batch, classes, 1, 1])."""
        shape = info.shape
        pooled = len(shape) == 4 and all(dim in (1, None) for dim in shape[2:])
        if (len(shape) != 2 and not pooled) or info.dtype.kind != "f":
            raise ConfigError(
                f"model {model} output {info.name!r} is {info.dtype} "
                f"{describe_shape(shape)}, not scores [batch, classes]: a classifier gives one "
                "score per class; for other outputs use network_type: other (tensor meta for a "
                "probe) or detector",
                "network_type",
            )
        return shape[1]

    def label(self, output: int, class_id: int) -> str:
        """The name of ``class_id`` of output number ``output`` (``class_<id>`` beyond the
        labels)."""
        names = self.labels[output]
        return names[class_id] if 0 <= class_id < len(names) else f"class_{class_id}"

    def run(self, images: Sequence[np.ndarray]) -> tuple[dict[str, np.ndarray], list[Letterbox]]:
        """The raw outputs for BGR HWC uint8 ``images``, each [len(images), classes] (trailing
        1×1 dimensions dropped), and per image the letterbox from its pixels to network-input
        pixels.

        A model with a dynamic batch dimension runs the images in calls of up to ``max_batch``;
        a fixed batch runs them in chunks of that size (the last one padded with blank images).
        """
        if not images:
            empty = {
                name: np.zeros((0, classes or 0), np.float32)
                for name, classes in zip(self.output_names, self.num_classes, strict=True)
            }
            return empty, []
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        letterboxes: list[Letterbox] = []
        step = self.batch_size or self._max_batch
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            batch, chunk_letterboxes = self._preprocessor(chunk)
            if self.batch_size is not None and len(chunk) < self.batch_size:
                blank = np.zeros((self.batch_size - len(chunk), *batch.shape[1:]), np.float32)
                batch = np.concatenate([batch, blank])
            outputs = self._backend.run(batch)
            for name in self.output_names:
                scores = outputs[name]
                if scores.ndim not in (2, 4) or (scores.ndim == 4 and scores.shape[2:] != (1, 1)):
                    raise ModelError(
                        f"model {self.model_path} output {name!r} came back with shape "
                        f"{list(scores.shape)}, not [batch, classes]"
                    )
                parts[name].append(scores[: len(chunk)].reshape(len(chunk), scores.shape[1]))
            letterboxes.extend(chunk_letterboxes)
        return {name: np.concatenate(arrays) for name, arrays in parts.items()}, letterboxes

    def classify(
        self, images: Sequence[np.ndarray], *, keep_tensors: bool = False
    ) -> Classifications:
        """The best class of every output for each of the BGR HWC uint8 ``images``."""
        outputs, letterboxes = self.run(images)
        probabilities = {name: to_probabilities(outputs[name]) for name in self.output_names}
        count = len(images)
        class_id = np.zeros((count, len(self.output_names)), np.int32)
        confidence = np.zeros((count, len(self.output_names)), np.float32)
        for column, name in enumerate(self.output_names):
            scores = probabilities[name]
            if scores.shape[1] == 0:
                continue
            best = scores.argmax(axis=1)
            class_id[:, column] = best
            confidence[:, column] = scores[np.arange(count), best]
        labels = [
            [self.label(column, int(c)) for column, c in enumerate(row)]
            for row in class_id.tolist()
        ]
        return Classifications(
            class_id,
            confidence,
            labels,
            probabilities,
            letterboxes,
            outputs if keep_tensors else None,
        )

    def close(self) -> None:
        """Release the model."""
        self._backend.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        width, height = self.input_size_wh
        outputs = ", ".join(
            f"{name}[{classes or '?'}]"
            for name, classes in zip(self.output_names, self.num_classes, strict=True)
        )
        return (
            f"Classifier({str(self.model_path)!r}, outputs={outputs}, "
            f"input={width}×{height}, batch={self.batch_size or 'dynamic'})"
        )
